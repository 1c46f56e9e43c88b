"""Host: everything the flows, the sketches and the alerts of a store say about one address."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netspectra.storage.console.sources import (
    AXES,
    MAX_LIMIT,
    ConsoleError,
    Source,
    check_range,
    choose_step,
    extent,
    qualify,
)
from netspectra.storage.filter import CompiledFilter, ip_text
from netspectra.storage.schema import HITTER_TABLE, quote_identifier
from netspectra.storage.sums import saturating_sum

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore


@dataclass
class HostReport:
    """Everything the flows of ``source`` say about one address: traffic it sent and received
    (``totals``: direction → packets, bytes, flows), the top ``facets`` (``peers_out``: whom it sent to,
    ``peers_in``: who sent to it, ``ports_out``: destination ports it used, ``ports_in``: its
    destination ports others used, ``protocols``; for every pair of fields ``Src<X>``/``Dst<X>`` the
    source has — ``SrcAS``/``DstAS``, countries, network names — ``own_<X>``: the address's own value,
    ``peers_<X>``: its peers') as ``[value, packets, bytes, flows]`` largest bytes first, and its
    ``timeline`` per direction (bytes and packets per bucket)."""

    ip: str
    source: str
    axis: str
    start_ns: int
    end_ns: int
    step_ns: int
    times: list[int]
    totals: dict[str, dict[str, int]]
    facets: dict[str, list[list[Any]]]
    timeline: dict[str, dict[str, list[int]]]
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "source": self.source,
            "axis": self.axis,
            "axisMeaning": AXES.get(self.axis, ""),
            "start": self.start_ns,
            "end": self.end_ns,
            "step": self.step_ns,
            "times": self.times,
            "totals": self.totals,
            "facets": self.facets,
            "timeline": self.timeline,
            "elapsedMs": round(self.elapsed_ms, 1),
        }


def host_report(
    store: ClickHouseStore,
    src: Source,
    ip: str,
    *,
    axis: str = "first",
    start_ns: int | None = None,
    end_ns: int | None = None,
    limit: int = 10,
    points: int = 120,
    known_extent: tuple[int, int] | None = None,
) -> HostReport:
    """The :class:`HostReport` of address ``ip`` (any text form; normalised as stored) in ``src``: one
    scan of the flows where it is the source or the destination (the fields the source has)."""
    import ipaddress

    t_begin = time.perf_counter()
    check_range(start_ns, end_ns)
    try:
        addr = ip_text(ipaddress.ip_address(str(ip).strip()))
    except ValueError:
        raise ConsoleError(f"{str(ip)[:60]!r} is not an IP address") from None
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ConsoleError(f"limit must be 1..{MAX_LIMIT}")
    has = set(src.fields)
    if "SrcIP" not in has and "DstIP" not in has:
        raise ConsoleError(f"{src.id} has no SrcIP or DstIP field: pick a source keyed on addresses")
    lo, hi = start_ns, end_ns
    if lo is None or hi is None:
        ext = known_extent or extent(store, src, axis) or (0, 0)
        lo = ext[0] if lo is None else lo
        hi = max(lo, ext[1] if hi is None else hi)
    step = choose_step(lo, hi, points)
    t0 = lo // step * step
    nb = (hi - t0) // step + 1
    is_src = "ifNull(`SrcIP`, '') = %(h_ip)s" if "SrcIP" in has else "0"
    is_dst = "ifNull(`DstIP`, '') = %(h_ip)s" if "DstIP" in has else "0"
    conds = [c for c in (is_src, is_dst) if c != "0"]
    rel, params = src.relation(
        axis,
        lo,
        hi,
        CompiledFilter(),
        extra_where="(" + " OR ".join(conds) + ")",
        extra_params={"h_ip": addr},
    )
    params.update(h_t0=t0, h_step=step, h_n=max(limit, nb))
    bucket = "toString(intDiv(T - %(h_t0)s, %(h_step)s))"
    facets: list[tuple[str, str, str]] = [("out", is_src, "''"), ("in", is_dst, "''")]
    facets += [("time_out", is_src, bucket), ("time_in", is_dst, bucket)]
    if "DstIP" in has:
        facets.append(("peers_out", is_src, "ifNull(`DstIP`, '')"))
    if "SrcIP" in has:
        facets.append(("peers_in", is_dst, "ifNull(`SrcIP`, '')"))
    if "DstPort" in has:
        facets += [
            ("ports_out", is_src, "toString(ifNull(`DstPort`, 0))"),
            ("ports_in", is_dst, "toString(ifNull(`DstPort`, 0))"),
        ]
    if "Protocol" in has:
        facets.append(("protocols", "1", "toString(ifNull(`Protocol`, 0))"))
    # enrichment and exporter attributes that come in Src/Dst pairs (SrcAS/DstAS, SrcCountry/DstCountry,
    # SrcNetName/DstNetName, ...): the address's own value and its peers' values
    for name in src.fields:
        attr = name[3:]
        if name.startswith("Src") and name not in ("SrcIP", "SrcPort") and f"Dst{attr}" in has:
            own, peer = (f"ifNull(toString({quote_identifier(c)}), '')" for c in (name, f"Dst{attr}"))
            facets += [
                (f"own_{attr}", is_src, own),
                (f"own_{attr}", is_dst, peer),
                (f"peers_{attr}", is_src, peer),
                (f"peers_{attr}", is_dst, own),
            ]
    facets = [f for f in facets if f[1] != "0"]
    tuples = ", ".join(f"(if({cond}, '{name}', ''), {value})" for name, cond, value in facets)
    sql = (
        f"SELECT fv.1 AS facet, fv.2 AS value, {saturating_sum('P')} AS p, {saturating_sum('B')} AS b, "
        "count() AS f FROM "
        f"(SELECT P, B, arrayJoin(arrayFilter(x -> x.1 != '', [{tuples}])) AS fv FROM ({rel})) "
        "GROUP BY facet, value ORDER BY facet, b DESC, p DESC, value LIMIT %(h_n)s BY facet"
    )
    rows = store.query(qualify(store, sql), params)
    totals = {d: {"packets": 0, "bytes": 0, "flows": 0} for d in ("out", "in")}
    timeline = {d: {"packets": [0] * nb, "bytes": [0] * nb, "flows": [0] * nb} for d in ("out", "in")}
    found: dict[str, list[list[Any]]] = {}
    for facet, value, p, b, f in rows:
        facet = str(facet)
        if facet in totals:
            totals[facet] = {"packets": int(p), "bytes": int(b), "flows": int(f)}
        elif facet.startswith("time_"):
            k = int(value)
            if 0 <= k < nb:
                for m, v in (("packets", p), ("bytes", b), ("flows", f)):
                    timeline[facet[5:]][m][k] = int(v)
        else:
            shown: Any = int(value) if facet.startswith(("ports", "protocols")) else str(value)
            found.setdefault(facet, []).append([shown, int(p), int(b), int(f)])
    out_facets = {name: found.get(name, [])[:limit] for name, _, _ in facets if not name.startswith("time_")}
    out_facets.pop("out", None)
    out_facets.pop("in", None)
    return HostReport(
        addr,
        src.id,
        axis,
        lo,
        hi,
        step,
        [t0 + i * step for i in range(nb)],
        totals,
        out_facets,
        timeline,
        (time.perf_counter() - t_begin) * 1000,
    )


def host_hitters(
    store: ClickHouseStore, ip: str, start_ns: int | None = None, end_ns: int | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Heavy-hitter and super-spreader entries whose flow text names ``ip`` (a whole field of the
    space-separated key), per sketch task, type and flow: the newest value and when it was reported."""
    check_range(start_ns, end_ns)
    where = ["has(splitByChar(' ', Flow), %(ip)s)"]
    params: dict[str, object] = {"ip": ip, "limit": int(limit)}
    if start_ns is not None:
        where.append("TimestampNs >= %(start)s")
        params["start"] = start_ns
    if end_ns is not None:
        where.append("TimestampNs <= %(end)s")
        params["end"] = end_ns
    sql = (
        "SELECT TaskName, Type, Flow, argMax(Value, TimestampNs) AS V, max(TimestampNs) AS T "
        f"FROM {store.table(HITTER_TABLE)} WHERE {' AND '.join(where)} GROUP BY TaskName, Type, Flow "
        "ORDER BY TaskName, Type, V DESC, Flow LIMIT %(limit)s"
    )
    return [
        {"task": str(t), "type": int(ty), "flow": str(f), "value": int(v), "time": int(ts)}
        for t, ty, f, v, ts in store.query(sql, params)
    ]
