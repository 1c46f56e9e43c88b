"""Visualize: the top-N combinations of dimensions over time, with "other" and the total."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netspectra.storage.console.sources import (
    AXES,
    DEFAULT_ROW_BUDGET,
    MAX_LIMIT,
    MAX_POINTS,
    METRIC_COLUMN,
    METRICS,
    ConsoleError,
    Source,
    check_range,
    choose_step,
    extent,
    qualify,
    sample_factor,
)
from netspectra.storage.filter import CompiledFilter
from netspectra.storage.schema import quote_identifier

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore


@dataclass
class Series:
    """One row of a visualisation: the values of its dimensions (``key``; empty for the total and for
    "other"), its totals over the range and its values per bucket."""

    key: dict[str, Any]
    packets: int
    bytes: int
    flows: int
    values: dict[str, list[int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "packets": self.packets,
            "bytes": self.bytes,
            "flows": self.flows,
            "values": self.values,
        }


@dataclass
class Visualization:
    """The answer of :func:`visualize` (all times UTC ns). ``series``: the top rows by ``metric``,
    largest first; ``other``: everything else; ``total``: everything (``other`` = ``total`` minus the
    series, per bucket too: flows add up because every flow key belongs to one combination of
    dimensions). ``sample``: 1 = exact, N = a 1/N sample scaled by N."""

    source: str
    table: str
    axis: str
    start_ns: int
    end_ns: int
    step_ns: int
    times: list[int]
    dimensions: list[str]
    metric: str
    series: list[Series]
    other: Series
    total: Series
    sample: int = 1
    rows_in_range: int = 0
    combinations: int = 0
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "table": self.table,
            "axis": self.axis,
            "axisMeaning": AXES.get(self.axis, ""),
            "start": self.start_ns,
            "end": self.end_ns,
            "step": self.step_ns,
            "times": self.times,
            "dimensions": self.dimensions,
            "metric": self.metric,
            "series": [s.to_dict() for s in self.series],
            "other": self.other.to_dict(),
            "total": self.total.to_dict(),
            "sample": self.sample,
            "rowsInRange": self.rows_in_range,
            "elapsedMs": round(self.elapsed_ms, 1),
        }


def _check_dims(src: Source, dims: Sequence[str]) -> list[str]:
    out: list[str] = []
    for d in dims:
        match = next((f for f in src.fields if f.lower() == str(d).lower()), None)
        if match is None:
            names = ", ".join(src.fields) or "none"
            raise ConsoleError(f"{str(d)[:60]!r} is not a dimension of {src.id}; its dimensions are {names}")
        if match in out:
            raise ConsoleError(f"dimension {match} is listed twice")
        out.append(match)
    return out


def visualize(
    store: ClickHouseStore,
    src: Source,
    *,
    axis: str = "first",
    start_ns: int | None = None,
    end_ns: int | None = None,
    dims: Sequence[str] = (),
    metric: str = "bytes",
    limit: int = 10,
    flt: CompiledFilter | None = None,
    points: int = 120,
    exact: bool = False,
    row_budget: int = DEFAULT_ROW_BUDGET,
) -> Visualization:
    """Top ``limit`` combinations of ``dims`` by ``metric`` over the range, each with its series in
    buckets of :func:`choose_step` (at most ``points``), plus "other" and the total (see
    :class:`Visualization`). Without a start or end, the source's :func:`extent` on ``axis``. One scan
    of the table (plus a count when sampling may apply)."""
    t_begin = time.perf_counter()
    check_range(start_ns, end_ns)
    if metric not in METRICS:
        raise ConsoleError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ConsoleError(f"limit must be 1..{MAX_LIMIT}")
    if isinstance(points, bool) or not isinstance(points, int) or not 1 <= points <= MAX_POINTS:
        raise ConsoleError(f"points must be 1..{MAX_POINTS}")
    if axis not in src.axes:
        raise ConsoleError(f"axis {axis!r} is not one of {src.id}'s: {', '.join(src.axes)}")
    dims = _check_dims(src, dims)
    flt = flt or CompiledFilter()
    lo, hi = start_ns, end_ns
    if lo is None or hi is None:
        ext = extent(store, src, axis)
        if ext is None:
            ext = (0, 0) if hi is None else (hi, hi)
        lo = ext[0] if lo is None else lo
        hi = ext[1] if hi is None else hi
        hi = max(lo, hi)
    step = choose_step(lo, hi, points)
    t0 = lo // step * step
    nb = (hi - t0) // step + 1
    factor, rows = (1, 0) if exact else sample_factor(store, src, axis, lo, hi, row_budget)
    rel, params = src.relation(axis, lo, hi, flt, factor)
    params.update(v_t0=t0, v_step=step, v_limit=limit + 1)
    keys = list(dict.fromkeys([*src.keys, *dims]))
    qk = ", ".join(quote_identifier(c) for c in keys)
    qd = [quote_identifier(d) for d in dims]
    bucket = "intDiv(T - %(v_t0)s, %(v_step)s)"
    # per flow key: its traffic and its buckets; per combination of dimensions: totals, distinct flow
    # keys and per-bucket sums; then the total (role 0) and the combinations (role 1), largest first.
    # Aliases never repeat a column name of the level below (ClickHouse would read the alias).
    sums = (
        f"sum(P) AS kP, sum(B) AS kB, sumMap([{bucket}], [toUInt64(P)]) AS mp, "
        f"sumMap([{bucket}], [toUInt64(B)]) AS mb FROM ({rel})"
    )
    per_key = f"SELECT {', '.join([*qd, ''])}{sums} GROUP BY {qk}" if keys else f"SELECT {sums}"
    per_combo = (
        f"SELECT {', '.join([*qd, ''])}sum(kP) AS cp, sum(kB) AS cb, count() AS cf, "
        "sumMap(tupleElement(mp, 1), tupleElement(mp, 2)) AS sp, "
        "sumMap(tupleElement(mb, 1), tupleElement(mb, 2)) AS sb, "
        "sumMap(tupleElement(mp, 1), arrayMap(x -> toUInt64(1), tupleElement(mp, 1))) AS sf "
        f"FROM ({per_key}) WHERE kP > 0 OR kB > 0" + (f" GROUP BY {', '.join(qd)}" if qd else "")
    )
    shown = [f"if(role = 1, {q}, NULL) AS d{i}" for i, q in enumerate(qd)]
    group = ", ".join(["role", *(f"d{i}" for i in range(len(qd)))])
    order = ", ".join(["role", f"{METRIC_COLUMN[metric]} DESC", *(f"d{i}" for i in range(len(qd)))])
    ranked = (
        f"SELECT role, {', '.join([*shown, ''])}sum(cp) AS p, sum(cb) AS b, sum(cf) AS f, count() AS n, "
        "sumMap(tupleElement(sp, 1), tupleElement(sp, 2)) AS tp, "
        "sumMap(tupleElement(sb, 1), tupleElement(sb, 2)) AS tb, "
        f"sumMap(tupleElement(sf, 1), tupleElement(sf, 2)) AS tf FROM ({per_combo}) "
        f"ARRAY JOIN [0, 1] AS role GROUP BY {group} ORDER BY {order} LIMIT %(v_limit)s"
    )
    # tuples leave as plain arrays: (buckets, values) per metric
    names = "".join(f"d{i}, " for i in range(len(qd)))
    sql = (
        f"SELECT role, {names}p, b, f, n, tupleElement(tp, 1), tupleElement(tp, 2), tupleElement(tb, 1), "
        f"tupleElement(tb, 2), tupleElement(tf, 1), tupleElement(tf, 2) FROM ({ranked}) ORDER BY {order}"
    )
    result = store.query(qualify(store, sql), params)

    def series(row: Sequence[Any], key: dict[str, Any]) -> Series:
        n = len(dims)
        p, b, f = (int(row[1 + n + i]) * factor for i in range(3))
        values = {}
        maps = row[5 + n : 11 + n]  # (buckets, values) per metric
        for m, ks, vs in zip(METRICS, maps[0::2], maps[1::2], strict=True):
            arr = [0] * nb
            for k, v in zip(ks, vs, strict=True):
                if 0 <= int(k) < nb:
                    arr[int(k)] += int(v) * factor
            values[m] = arr
        return Series(key, p, b, f, values)

    total = Series({}, 0, 0, 0, {m: [0] * nb for m in METRICS})
    top: list[Series] = []
    combos = 0
    for row in result:
        if int(row[0]) == 0:
            total = series(row, {})
            combos = int(row[4 + len(dims)])
        else:
            top.append(series(row, {d: row[1 + i] for i, d in enumerate(dims)}))
    top = top[:limit]
    other = Series(
        {},
        total.packets - sum(s.packets for s in top),
        total.bytes - sum(s.bytes for s in top),
        total.flows - sum(s.flows for s in top),
        {m: [t - sum(s.values[m][i] for s in top) for i, t in enumerate(total.values[m])] for m in METRICS},
    )
    return Visualization(
        src.id,
        src.table,
        axis,
        lo,
        hi,
        step,
        [t0 + i * step for i in range(nb)],
        dims,
        metric,
        top,
        other,
        total,
        factor,
        rows,
        combos,
        (time.perf_counter() - t_begin) * 1000,
    )
