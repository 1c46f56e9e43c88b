"""Live: the newest aggregation period of an exact task, as its newest snapshots show it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netspectra.storage.console.sources import (
    DEFAULT_ROW_BUDGET,
    MAX_LIMIT,
    MAX_SAMPLE,
    NS,
    ConsoleError,
    Source,
    jsonable,
    sample_bound,
)
from netspectra.storage.schema import quote_identifier

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore


@dataclass
class LiveReport:
    """The newest aggregation period of a ``flow_metrics`` task as its newest snapshot shows it:
    ``period_ns``, ``snapshot_ns`` (newest stored snapshot), ``previous_ns`` (the one before, or
    ``None``), ``totals`` (the period so far: packets, bytes, flows), ``rates`` (per second between the
    two snapshots: packets, bytes, and ``flows`` active), ``by_rate`` and ``by_total``: the top flows
    (key fields, packets, bytes, packets and bytes since the previous snapshot)."""

    source: str
    period_ns: int | None
    snapshot_ns: int | None
    previous_ns: int | None
    totals: dict[str, int]
    rates: dict[str, float]
    columns: list[str]
    by_rate: list[list[Any]]
    by_total: list[list[Any]]
    sample: int = 1
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "period": self.period_ns,
            "snapshot": self.snapshot_ns,
            "previous": self.previous_ns,
            "totals": self.totals,
            "rates": self.rates,
            "columns": self.columns,
            "byRate": self.by_rate,
            "byTotal": self.by_total,
            "sample": self.sample,
            "elapsedMs": round(self.elapsed_ms, 1),
        }


def live_report(
    store: ClickHouseStore,
    src: Source,
    *,
    limit: int = 10,
    exact: bool = False,
    row_budget: int = DEFAULT_ROW_BUDGET,
) -> LiveReport:
    """The :class:`LiveReport` of a ``flow_metrics`` source (three queries: the newest period and its
    two newest snapshots from the sorting key's head, then one scan of that period)."""
    t_begin = time.perf_counter()
    if src.kind != "snapshots":
        raise ConsoleError(f"{src.id} holds flow records; the live view reads the flow_metrics of a task")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ConsoleError(f"limit must be 1..{MAX_LIMIT}")
    table = store.table(src.table)
    p = {"task": src.task}
    period_rows = store.query(f"SELECT max(PeriodStartNs), count() FROM {table} WHERE TaskName = %(task)s", p)
    fields = list(src.fields)
    empty = LiveReport(
        src.id, None, None, None, {}, {}, [*fields, "Packets", "Bytes", "dPackets", "dBytes"], [], []
    )
    if not period_rows or not period_rows[0][1]:
        return empty
    period = int(period_rows[0][0])
    pp: dict[str, object] = {"task": src.task, "period": period}
    cond = "TaskName = %(task)s AND PeriodStartNs = %(period)s"
    t1 = int(store.query(f"SELECT max(TimestampNs) FROM {table} WHERE {cond}", pp)[0][0])
    prev = store.query(
        f"SELECT max(TimestampNs), count() FROM {table} WHERE {cond} AND TimestampNs < %(t1)s",
        {**pp, "t1": t1},
    )
    t0 = int(prev[0][0]) if prev and prev[0][1] else None
    factor, count = 1, 0
    if not exact and src.sample_column:
        count = int(store.query(f"SELECT count() FROM {table} WHERE {cond}", pp)[0][0])
        while count / factor > row_budget and factor < MAX_SAMPLE:
            factor *= 2
    where = cond + (" AND FlowHash <= %(hi)s" if factor > 1 else "")
    params: dict[str, object] = {**pp, "t0": t0 if t0 is not None else -1, "limit": limit}
    if factor > 1:
        params["hi"] = sample_bound(factor)
    qf = [quote_identifier(c) for c in fields]
    cols = ", ".join(qf)
    lead = f"{cols}, " if cols else ""
    states = (
        f"SELECT {lead}max(PacketCount) AS P, max(ByteCount) AS B, "
        "maxIf(PacketCount, toInt64(TimestampNs) <= %(t0)s) AS P0, "
        "maxIf(ByteCount, toInt64(TimestampNs) <= %(t0)s) AS B0 "
        f"FROM {table} WHERE {where} GROUP BY FlowHash{', ' + cols if cols else ''}"
    )
    shown = [f"if(role = 0, NULL, {q}) AS d{i}" for i, q in enumerate(qf)]
    group = ", ".join(["role", *(f"d{i}" for i in range(len(qf)))])
    sql = (
        f"SELECT role, {', '.join([*shown, ''])}sum(P) AS p, sum(B) AS b, sum(P - P0) AS dp, "
        f"sum(B - B0) AS db, count() AS f, countIf(P > P0) AS fa FROM ({states}) "
        f"ARRAY JOIN [0, 1, 2] AS role GROUP BY {group} HAVING role != 1 OR db > 0 "
        "ORDER BY role, if(role = 1, toInt64(db), toInt64(b)) DESC, "
        f"if(role = 1, toInt64(dp), toInt64(p)) DESC{''.join(f', d{i}' for i in range(len(qf)))} "
        "LIMIT %(limit)s BY role"
    )
    rows = store.query(sql, params)
    n = len(qf)
    totals: dict[str, int] = {"packets": 0, "bytes": 0, "flows": 0}
    rates: dict[str, float] = {}
    by_rate: list[list[Any]] = []
    by_total: list[list[Any]] = []
    for row in rows:
        role = int(row[0])
        p_, b_, dp, db, f, fa = (int(v) * factor for v in row[1 + n : 7 + n])
        if role == 0:
            totals = {"packets": p_, "bytes": b_, "flows": f}
            if t0 is not None and t1 > t0:
                secs = (t1 - t0) / NS
                rates = {"packets": dp / secs, "bytes": db / secs, "flows": fa, "seconds": secs}
        else:
            entry = [*jsonable(row[1 : 1 + n]), p_, b_, dp, db]
            (by_rate if role == 1 else by_total).append(entry)
    return LiveReport(
        src.id,
        period,
        t1,
        t0,
        totals,
        rates,
        empty.columns,
        by_rate if t0 is not None else [],
        by_total,
        factor,
        (time.perf_counter() - t_begin) * 1000,
    )
