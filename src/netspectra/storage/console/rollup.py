"""Visualize from the rollups: whether a rollup task answers a request on a source, and from which table.

A rollup task counts the same batches as the exact tasks of its engine, per bucket of the traffic's own
time and tuple of its dimensions (:mod:`netspectra.rollup`); its tables are far smaller than
``flow_metrics``. :func:`rollup_plan` answers a :func:`~netspectra.storage.console.visualize` request from
one when every condition holds, else says why not (the answer then comes from the source's own table):

* the metric is packets or bytes (a rollup does not count flows) and the axis is ``first`` (traffic time;
  the stored-time axis is a property of snapshots);
* every dimension asked for and every field the filter reads is a dimension of the rollup task (its other
  columns hold 0 / '' for every row) and a field of the source (same name, same values: unknown is 0 / ''
  in both);
* the table: :func:`~netspectra.storage.rollups.choose_rollup` — the coarsest of ``rollup_1m``/``5m``/``1h``
  with buckets no wider than the series' step (or the one asked for: ``resolution_s``), kept by its
  retention or still holding the range's rows (:func:`~netspectra.storage.rollups.rows_kept`: retention
  drops by write time); the step is a multiple of its bucket
  (:data:`~netspectra.storage.console.sources.STEPS_S` above a minute are);
* the rollup task covers the traffic asked for: ``rollup_1h`` (the smallest table, which every row reaches)
  has the task's rows from the hour of the source's first traffic in the range to the hour of its last
  (a rollup task added after the exact task, or removed since, does not answer ranges it did not count).

Among the rollup tasks that qualify, the one with the fewest dimensions (smallest rows). The range read is
the requested one widened to whole buckets of the table (never wider than one step: inside the series'
first and last buckets). What differs from the source's table, by construction: a flow's traffic lies in
the buckets of its packets (``flow_metrics`` puts a flow's traffic of a period at its first packet), and
the range selects packets, not flows by their first packet — the same totals whenever the flows of the
range start and end in it, per bucket whenever a flow stays in one bucket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netspectra.rollup.dims import BY_NAME, RESOLUTIONS
from netspectra.storage.console.sources import NS, Source
from netspectra.storage.filter import CompiledFilter, field_type
from netspectra.storage.rollups import RollupChoice, choose_rollup, rows_kept

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore


#: What the time axis means in an answer from a rollup table.
ROLLUP_AXIS = (
    "traffic time: each packet's traffic in the bucket of its own time (rollup); the range is read in whole "
    "buckets of the rollup table"
)


@dataclass(frozen=True)
class RollupPlan:
    """A rollup that answers: the ``source`` to read (kind ``rollup``: the table chosen, the rollup task, the
    fields needed), the ``choice`` of :func:`~netspectra.storage.rollups.choose_rollup` (table, bucket,
    the range read ``[start_ns, end_ns)``, why) and the rollup ``task``."""

    source: Source
    choice: RollupChoice
    task: str


def rollup_plan(
    store: ClickHouseStore,
    src: Source,
    rollups: Mapping[str, Sequence[str]],
    *,
    axis: str,
    dims: Sequence[str],
    flt: CompiledFilter,
    metric: str,
    start_ns: int,
    end_ns: int,
    step_ns: int,
    known_extent: tuple[int, int] | None = None,
    resolution_s: int | None = None,
) -> tuple[RollupPlan | None, str]:
    """``(plan, why)``: the rollup answering the request over ``[start_ns, end_ns]`` (inclusive) in buckets
    of ``step_ns``, or ``None`` and why the source's own table answers (see the module docstring).
    ``rollups``: rollup task → its dimensions (configuration order); ``known_extent``: the source's first and
    last traffic time, if known (narrows the coverage check to the traffic); ``resolution_s``: the bucket
    width of the one table asked for (60, 300 or 3600: only that table answers; ``None``: the coarsest that
    answers). A few small queries on ``rollup_1h`` (and :func:`rows_kept`'s when the range starts before a
    table's retention)."""
    if not rollups:
        return None, "no rollup task is configured"
    if metric not in ("packets", "bytes"):
        return None, f"metric {metric}: rollups count packets and bytes, not flows"
    if axis != "first":
        return None, f"axis {axis}: rollups hold the traffic's own time only"
    needed = list(dict.fromkeys([*dims, *flt.fields]))
    missing = [f for f in needed if f not in src.fields]
    if missing:  # cannot happen for checked dims and a filter compiled on src; said rather than assumed
        return None, f"{', '.join(missing)} not fields of {src.id}"
    tasks = [t for t, d in rollups.items() if set(needed) <= set(d)]
    if not tasks:
        lacking = [f for f in needed if not any(f in d for d in rollups.values())]
        if lacking:
            return None, f"no rollup task is keyed on {', '.join(lacking)}"
        return None, f"no rollup task is keyed on all of {', '.join(needed)}"
    tasks.sort(key=lambda t: len(rollups[t]))
    lo, hi = start_ns, end_ns
    if known_extent is not None:
        lo, hi = max(lo, known_extent[0]), min(hi, known_extent[1])
    hour = RESOLUTIONS[-1]
    why = ""
    for task in tasks:
        got = store.query(
            f"SELECT count(), min(BucketNs), max(BucketNs) FROM {store.table(hour.table)} "
            "WHERE TaskName = %(task)s",
            {"task": task},
        )
        if not got or not int(got[0][0]):
            why = f"rollup task {task} has no rows in this store"
            continue
        first, last = int(got[0][1]), int(got[0][2])
        if lo <= hi and (first > lo - lo % hour.ns or last < hi - hi % hour.ns):
            why = f"rollup task {task} did not count all the traffic of the range (its hours: not all there)"
            continue
        choice = choose_rollup(
            store.cfg,
            start_ns,
            end_ns + 1,
            resolution_s or step_ns // NS,
            held=rows_kept(store, task, start_ns, end_ns + 1),
        )
        if resolution_s and choice.seconds != resolution_s:
            # asked for one table: its retention dropped the range (choose_rollup fell back to another)
            why = f"the {resolution_s} s resolution asked is not kept for this range: {choice.reason}"
            continue
        if step_ns % (choice.seconds * NS):
            why = f"the {step_ns // NS} s step is not a multiple of {choice.table}'s buckets"
            continue
        if needed:
            fields = {f: src.fields[f] for f in needed}
        else:  # the total only: the rows grouped by one dimension of the task (any: they add up)
            name = rollups[task][0]
            typed = field_type(name, BY_NAME[name].clickhouse)
            if typed is None:
                why = f"{name}: no field type for {BY_NAME[name].clickhouse}"
                continue
            fields = {name: typed}
        read = Source(f"{choice.table}:{task}", choice.table, task, "rollup", fields, tuple(fields))
        return RollupPlan(read, choice, task), choice.reason
    return None, why
