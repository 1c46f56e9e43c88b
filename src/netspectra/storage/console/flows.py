"""Flows: a sorted, paged list of the flows of a source."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netspectra.storage.console.sources import (
    AXES,
    ConsoleError,
    Source,
    check_range,
    jsonable,
    qualify,
    sample_bound,
)
from netspectra.storage.filter import CompiledFilter
from netspectra.storage.schema import quote_identifier
from netspectra.storage.sums import saturating_sum

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore

#: Columns of a flows page besides the fields: first and last packet, packets, bytes.
FLOW_COLUMNS = ("FirstSeen", "LastSeen", "Packets", "Bytes")
_FLOW_EXPR = {"FirstSeen": "S", "LastSeen": "E", "Packets": "P", "Bytes": "B"}
#: Most rows of one flows page; deepest offset.
MAX_PAGE = 1000
MAX_OFFSET = 100_000


@dataclass
class FlowPage:
    """Rows ``offset`` … of the flows of a source (see :func:`flow_list`): ``columns`` then ``rows``
    (values in column order: the key fields, first/last seen ns, packets, bytes, the other fields, the
    extra columns); ``more``: whether a next page exists."""

    source: str
    axis: str
    columns: list[str]
    rows: list[list[Any]]
    offset: int
    more: bool
    sort: str
    descending: bool
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "axis": self.axis,
            "axisMeaning": AXES.get(self.axis, ""),
            "columns": self.columns,
            "rows": self.rows,
            "offset": self.offset,
            "more": self.more,
            "sort": self.sort,
            "descending": self.descending,
            "elapsedMs": round(self.elapsed_ms, 1),
        }


def flow_list(
    store: ClickHouseStore,
    src: Source,
    *,
    axis: str = "first",
    start_ns: int | None = None,
    end_ns: int | None = None,
    flt: CompiledFilter | None = None,
    sort: str = "Bytes",
    descending: bool = True,
    offset: int = 0,
    limit: int = 50,
) -> FlowPage:
    """The flows of ``src`` matching ``flt`` in the range, sorted by ``sort`` (a field or one of
    :data:`FLOW_COLUMNS`; ties by the key), rows ``offset`` to ``offset + limit``. On ``flow_metrics``
    a row is a flow in one aggregation period (axis ``first``: its state as of the newest snapshot;
    axis ``snapshot``: its traffic counted by the snapshots in the range); on ``flows`` a record, with
    every column of the table. Exact (never sampled)."""
    t_begin = time.perf_counter()
    check_range(start_ns, end_ns)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise ConsoleError(f"limit must be 1..{MAX_PAGE}")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise ConsoleError(f"offset must be 0..{MAX_OFFSET}")
    names = {c.lower(): c for c in [*src.fields, *FLOW_COLUMNS]}
    if str(sort).lower() not in names:
        from netspectra.kinds import did_you_mean

        hint = did_you_mean(sort, names.values(), case_sensitive=False)
        raise ConsoleError(
            f"cannot sort by {str(sort)[:60]!r}{hint}; sort by one of {', '.join(names.values())}"
        )
    sort = names[str(sort).lower()]
    flt = flt or CompiledFilter()
    with_extra = src.kind == "records"
    rel, params = src.relation(axis, start_ns, end_ns, flt, with_extra=with_extra)
    fields = list(src.fields)
    if axis == "snapshot" and src.kind == "snapshots":
        # one row per flow and period: its traffic in the range, first packet, last packet in the range
        keys = ", ".join(quote_identifier(c) for c in fields)
        lead = keys + ", " if keys else ""
        rel = (
            f"SELECT {lead}sP AS P, sB AS B, S, sE AS E, sT AS T FROM (SELECT {lead}S, "
            f"{saturating_sum('P')} AS sP, {saturating_sum('B')} AS sB, max(E) AS sE, max(T) AS sT "
            f"FROM ({rel}) GROUP BY {lead}S)"
        )
    sort_expr = _FLOW_EXPR.get(sort, quote_identifier(sort))
    tie = ", ".join([*(quote_identifier(k) for k in src.keys), "S"])
    extra = [c for c in src.extra] if with_extra else []
    # what a row is first (its key), then when and how much, then everything else the source has (a
    # record's state, flags, end reason, statistics; enrichment columns)
    keys_first = [c for c in src.keys if c in src.fields]
    rest = [c for c in fields if c not in keys_first]
    q = quote_identifier
    cols = [*(q(c) for c in keys_first), "S", "E", "P", "B", *(q(c) for c in rest), *(q(c) for c in extra)]
    order = f"ORDER BY {sort_expr} {'DESC' if descending else 'ASC'}, {tie} LIMIT %(fl_offset)s, %(fl_limit)s"
    page: dict[str, object] = {"fl_offset": offset, "fl_limit": limit + 1}
    rows: list[list[Any]] | None = None
    if src.kind == "snapshots" and axis == "first":
        rows = _top_by_candidates(
            store, src, start_ns, end_ns, flt, sort, descending, cols, order, page, offset + limit + 1
        )
    if rows is None:
        sql = f"SELECT {', '.join(cols)} FROM ({rel}) {order}"
        rows = [list(r) for r in store.query(qualify(store, sql), {**params, **page})]
    more = len(rows) > limit
    return FlowPage(
        src.id,
        axis,
        [*keys_first, *FLOW_COLUMNS, *rest, *extra],
        [jsonable(r) for r in rows[:limit]],
        offset,
        more,
        sort,
        descending,
        (time.perf_counter() - t_begin) * 1000,
    )


#: The stored column whose per-row values bound a flow state's sort value: a state's packets, bytes and
#: last packet are the largest of its rows (counters only grow within a period), its key fields and first
#: packet are the same in all its rows.
_RAW = {"Bytes": "ByteCount", "Packets": "PacketCount", "FirstSeen": "StartNs", "LastSeen": "EndNs"}
#: Candidates (flows, or stored rows: see :func:`_head`) read first, as a multiple of the rows a page needs
#: and at least; tries before the full query.
_CANDIDATES = 2
_MIN_CANDIDATES = 128
_TRIES = 3


def _top_by_candidates(
    store: ClickHouseStore,
    src: Source,
    start_ns: int | None,
    end_ns: int | None,
    flt: CompiledFilter,
    sort: str,
    descending: bool,
    cols: list[str],
    order: str,
    page: dict[str, object],
    needed: int,
) -> list[list[Any]] | None:
    """The first ``needed`` rows of a ``flow_metrics`` flows page without grouping every flow of the range:
    the ``k`` flows (or stored rows) with the largest (smallest) sort value name the candidate flows
    (:func:`_head`), whose states are then computed exactly. Every state left out has all its rows at or
    beyond ``c``, the last candidate's value, so its sort value is too (see :data:`_RAW`): when the
    ``needed``-th candidate lies strictly before ``c``, the page is exact. Otherwise ``k`` grows; ``None``
    after :data:`_TRIES` (the caller then groups every flow)."""
    raw = quote_identifier(_RAW.get(sort, sort))
    where = ["TaskName = %(task)s"]
    params: dict[str, object] = {"task": src.task, **flt.params}
    if flt.sql != "1":
        where.append(flt.sql)
    if start_ns is not None:
        where.append("StartNs >= %(start)s")
        params["start"] = start_ns
    if end_ns is not None:
        where.append("StartNs <= %(end)s")
        params["end"] = end_ns
    direction = "DESC" if descending else "ASC"
    at = cols.index(_FLOW_EXPR.get(sort, quote_identifier(sort)))
    k = max(_CANDIDATES * needed, _MIN_CANDIDATES)
    for _ in range(_TRIES):
        head, complete = _head(store, src, raw, where, params, direction, k, sort in _RAW)
        if not head:
            return []
        hashes = sorted({int(h) for h, _ in head})
        names = {f"fc_{i}": h for i, h in enumerate(hashes)}
        cond = f"FlowHash IN ({', '.join(f'%({n})s' for n in names)})"
        rel, rp = src.relation("first", start_ns, end_ns, flt, extra_where=cond, extra_params=names)
        sql = f"SELECT {', '.join(cols)} FROM ({rel}) {order}"
        rows = [list(r) for r in store.query(qualify(store, sql), {**rp, **page})]
        if complete:
            return rows  # every row of the range was a candidate
        c = head[-1][1]
        offset = int(page["fl_offset"])  # type: ignore[call-overload]
        last = rows[needed - 1 - offset] if len(rows) >= needed - offset else None
        beyond = last is not None and last[at] is not None and c is not None
        if beyond and ((last[at] > c) if descending else (last[at] < c)):  # type: ignore[index]
            return rows
        k *= 8
    return None


#: The threshold pass of :func:`_head`: the hash sample it reads (1/THRESHOLD_SAMPLE of the flows, by the
#: sorting key's FlowHash) and how far beyond the expected share of the ``k`` flows in it the threshold lies
#: (``THRESHOLD_SLACK`` times that share, plus four flows: the whole range then has ``k`` flows beyond it but
#: for a small chance, which is detected).
THRESHOLD_SAMPLE = 32
THRESHOLD_SLACK = 2


def _head(
    store: ClickHouseStore,
    src: Source,
    raw: str,
    where: list[str],
    params: dict[str, object],
    direction: str,
    k: int,
    numeric: bool,
) -> tuple[list[tuple[Any, ...]], bool]:
    """``(head, complete)``: candidates for the first rows of a flows page, as ``(FlowHash, value)`` sorted
    by ``value`` (``DESC``: largest first; ``ASC``: smallest), such that every flow state left out has its
    sort value at or beyond the last ``value`` (see :data:`_RAW`) — or, ``complete``, none is left out.

    On a sampled source and a numeric column, a threshold pass first: ``m``, about twice the expected
    share of ``k`` flows in a 1/:data:`THRESHOLD_SAMPLE` hash sample (the sorting key skips the other
    granules), gives the threshold — the ``m``-th largest (smallest) value of the sample's flows; then the
    ``k`` flows with the largest (smallest) value among the rows at or beyond it only: a few thousand rows
    grouped instead of every row sorted, and ``k`` distinct flows, so the candidate query that follows
    reads fewer granules. A flow left out has every row below (above) its ``k``-th value. When fewer than
    ``k`` flows lie beyond the threshold (the sample misjudged it: rare, and detected), or on other columns,
    the ``2k`` rows of ``ORDER BY value LIMIT 2k`` (``complete`` when there are fewer)."""
    table = f"%TABLE:{src.table}%"
    cond = " AND ".join(where)
    if numeric and src.sample_column == "FlowHash":
        agg = "max" if direction == "DESC" else "min"
        m = THRESHOLD_SLACK * -(-k // THRESHOLD_SAMPLE) + 4
        sample = store.query(
            qualify(
                store,
                f"SELECT {agg}({raw}) AS v FROM {table} WHERE {cond} AND FlowHash <= %(th_hi)s "
                f"GROUP BY FlowHash ORDER BY v {direction} LIMIT %(th_m)s",
            ),
            {**params, "th_hi": sample_bound(THRESHOLD_SAMPLE), "th_m": m},
        )
        if len(sample) == m and sample[-1][0] is not None:
            beyond = ">=" if direction == "DESC" else "<="
            head = store.query(
                qualify(
                    store,
                    f"SELECT FlowHash, {agg}({raw}) AS v FROM {table} WHERE {cond} AND {raw} {beyond} "
                    f"%(th_c)s GROUP BY FlowHash ORDER BY v {direction} LIMIT %(k)s",
                ),
                {**params, "th_c": sample[-1][0], "k": k},
            )
            if len(head) == k:
                return head, False
    # rows, not flows: twice as many (a flow has a row per snapshot that changed it)
    rows = 2 * k
    plain = f"SELECT FlowHash, {raw} AS v FROM {table} WHERE {cond} ORDER BY v {direction} LIMIT %(k)s"
    head = store.query(qualify(store, plain), {**params, "k": rows})
    return head, len(head) < rows
