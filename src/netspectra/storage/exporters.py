"""Queries of the stored flow exporters (the ``exporters`` table, :mod:`netspectra.storage.schema`).

Each row is an exporters task's state for one exporter in one period, as of a snapshot; the table keeps
the newest snapshot of each (task, exporter, period) (``ReplacingMergeTree``, read ``FINAL``).
:func:`list_exporters` sums the periods: per task and exporter, the first and last record time, records,
packets, bytes (scaled by the sampling rate), the records of each sampling rate and those without one;
sums are exact, saturated at 2**64 - 1 (:mod:`netspectra.storage.sums`).
A time range keeps the periods whose records overlap it (periods are the unit: records are not cut
inside a period). Every value is bound client-side, never pasted into SQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netspectra.storage.queries import _check_times
from netspectra.storage.schema import EXPORTER_TABLE
from netspectra.storage.sums import total, word_sums

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore

__all__ = ["StoredExporter", "exporter_tasks", "list_exporters"]


@dataclass
class StoredExporter:
    """One exporter of one exporters task, over the periods asked for."""

    task_name: str
    address: str
    first_seen_ns: int
    last_seen_ns: int
    records: int
    packets: int
    bytes: int
    records_without_rate: int
    #: sampling rate -> records with that rate (0: unknown)
    sampling_rates: dict[int, int] = field(default_factory=dict)


def list_exporters(
    store: ClickHouseStore,
    task: str | None = None,
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> list[StoredExporter]:
    """Every stored exporter (of ``task``, or of every exporters task), ordered by task and address."""
    _check_times(start_ns, end_ns)
    where, params = [], {}
    if task:
        where.append("TaskName = %(task)s")
        params["task"] = task
    if start_ns is not None:
        where.append("LastSeenNs >= %(start)s")
        params["start"] = start_ns
    if end_ns is not None:
        where.append("FirstSeenNs <= %(end)s")
        params["end"] = end_ns
    cond = f"WHERE {' AND '.join(where)}" if where else ""
    table = f"{store.table(EXPORTER_TABLE)} FINAL"
    # every counter summed by its 32-bit words: exact (packets and bytes are what exporters claim, up to
    # 2**64 - 1 each; netspectra.storage.sums), saturated at 2**64 - 1
    counters = ("Records", "Packets", "Bytes", "RecordsWithoutRate")
    rows = store.query(
        "SELECT TaskName, Exporter, min(FirstSeenNs), max(LastSeenNs), "
        f"{', '.join(word_sums(c, f'S{c}') for c in counters)} FROM {table} {cond} "
        "GROUP BY TaskName, Exporter ORDER BY TaskName, Exporter",
        params,
    )
    out = {
        (str(r[0]), str(r[1])): StoredExporter(
            str(r[0]), str(r[1]), int(r[2]), int(r[3]), *(total(r[k], r[k + 1]) for k in range(4, 12, 2))
        )
        for r in rows
    }
    if not out:
        return []
    rates = store.query(
        f"SELECT TaskName, Exporter, Rate, {word_sums('N', 'S')} FROM {table} "
        f"ARRAY JOIN SamplingRates AS Rate, RecordsPerRate AS N {cond} "
        "GROUP BY TaskName, Exporter, Rate ORDER BY TaskName, Exporter, Rate",
        params,
    )
    for t, e, rate, nh, nl in rates:
        x = out.get((str(t), str(e)))
        if x is not None:
            x.sampling_rates[int(rate)] = total(nh, nl)
    return list(out.values())


def exporter_tasks(store: ClickHouseStore) -> list[str]:
    """The names of the exporters tasks that stored exporters, sorted."""
    rows = store.query(f"SELECT DISTINCT TaskName FROM {store.table(EXPORTER_TABLE)} ORDER BY TaskName")
    return [str(r[0]) for r in rows]
