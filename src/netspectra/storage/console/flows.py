"""Flows: a sorted, paged list of the flows of a source."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netspectra.storage.console.sources import AXES, ConsoleError, Source, check_range, qualify
from netspectra.storage.filter import CompiledFilter
from netspectra.storage.schema import quote_identifier

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
    (values in column order: fields, first/last seen ns, packets, bytes, extra columns); ``more``:
    whether a next page exists."""

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
        raise ConsoleError(f"cannot sort by {str(sort)[:60]!r}; sort by one of {', '.join(names.values())}")
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
            f"SELECT {lead}sP AS P, sB AS B, S, sE AS E, sT AS T FROM (SELECT {lead}S, sum(P) AS sP, "
            f"sum(B) AS sB, max(E) AS sE, max(T) AS sT FROM ({rel}) GROUP BY {lead}S)"
        )
    sort_expr = _FLOW_EXPR.get(sort, quote_identifier(sort))
    tie = ", ".join([*(quote_identifier(k) for k in src.keys), "S"])
    extra = [c for c in src.extra] if with_extra else []
    cols = [*(quote_identifier(c) for c in fields), "S", "E", "P", "B", *(quote_identifier(c) for c in extra)]
    params.update(fl_offset=offset, fl_limit=limit + 1)
    sql = (
        f"SELECT {', '.join(cols)} FROM ({rel}) ORDER BY {sort_expr} {'DESC' if descending else 'ASC'}, "
        f"{tie} LIMIT %(fl_offset)s, %(fl_limit)s"
    )
    rows = [list(r) for r in store.query(qualify(store, sql), params)]
    more = len(rows) > limit
    return FlowPage(
        src.id,
        axis,
        [*fields, *FLOW_COLUMNS, *extra],
        [jsonable(r) for r in rows[:limit]],
        offset,
        more,
        sort,
        descending,
        (time.perf_counter() - t_begin) * 1000,
    )


def jsonable(row: Sequence[Any]) -> list[Any]:
    out = []
    for v in row:
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, float) and not math.isfinite(v):
            v = None
        elif v is not None and not isinstance(v, int | float | str | bool):
            v = str(v)
        out.append(v)
    return out
