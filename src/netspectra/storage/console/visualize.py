"""Visualize: the top-N combinations of dimensions over time, with "other" and the total."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netspectra.rollup.dims import RESOLUTION_BY_LABEL, RESOLUTIONS
from netspectra.storage.console.rollup import ROLLUP_AXIS, rollup_plan
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
from netspectra.storage.sums import saturated, saturating_sum, scaled

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore


@dataclass
class Series:
    """One row of a visualisation: the values of its dimensions (``key``; empty for the total and for
    "other"), its totals over the range and its values per bucket."""

    key: dict[str, Any]
    packets: int
    bytes: int
    flows: int | None
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
    dimensions). ``sample``: 1 = exact, N = a 1/N sample scaled by N. ``table`` answered: the source's
    own (``resolution`` ``full``) or a rollup table (``resolution`` ``1m``/``5m``/``1h``, of
    ``rollup_task``; flows are then ``None`` — not counted). ``read_start_ns``/``read_end_ns``: the range
    read, ``[start, end)`` (from a rollup: in whole buckets); ``reason``: why that table (one line)."""

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
    elapsed_ms: float = 0.0
    resolution: str = "full"
    rollup_task: str = ""
    reason: str = ""
    read_start_ns: int = 0
    read_end_ns: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "table": self.table,
            "axis": self.axis,
            "axisMeaning": ROLLUP_AXIS if self.resolution != "full" else AXES.get(self.axis, ""),
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
            "resolution": self.resolution,
            "rollupTask": self.rollup_task,
            "reason": self.reason,
            "readStart": self.read_start_ns,
            "readEnd": self.read_end_ns,
        }


def _check_dims(src: Source, dims: Sequence[str]) -> list[str]:
    """``dims`` as the source spells its fields (matched without regard to case); an unknown one is a
    :class:`ConsoleError` naming the field meant when one is close, and every field of the source."""
    from netspectra.kinds import did_you_mean

    out: list[str] = []
    for d in dims:
        match = next((f for f in src.fields if f.lower() == str(d).lower()), None)
        if match is None:
            names = ", ".join(src.fields) or "none"
            hint = did_you_mean(d, src.fields, case_sensitive=False)  # matched in any case: dstprt too
            raise ConsoleError(
                f"{str(d)[:60]!r} is not a dimension of {src.id}{hint}; its dimensions are {names}"
            )
        if match in out:
            raise ConsoleError(f"dimension {match} is listed twice")
        out.append(match)
    return out


_ARRAY_TYPES = ((1, "Int64"), (2, "UInt64"), (3, "UInt64"), (4, "UInt64"))


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
    known_extent: tuple[int, int] | None = None,
    rollups: Mapping[str, Sequence[str]] | None = None,
    resolution: str | None = None,
) -> Visualization:
    """Top ``limit`` combinations of ``dims`` by ``metric`` over the range, each with its series in
    buckets of :func:`choose_step` (at most ``points``), plus "other" and the total (see
    :class:`Visualization`). Without a start or end, the source's :func:`extent` on ``axis``
    (``known_extent`` when the caller has it). One scan of the table, plus the counts of
    :func:`sample_factor`. ``rollups`` (rollup task → its dimensions): answer from the coarsest rollup table
    that answers (:func:`~netspectra.storage.console.rollup.rollup_plan`) when one does; ``None``: always
    the source's own table. ``resolution`` (``1m``, ``5m`` or ``1h``, with ``rollups``): that rollup table
    answers, in steps of at least its bucket, or :class:`ConsoleError` says why it cannot."""
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
    ext = known_extent
    if lo is None or hi is None:
        ext = ext or extent(store, src, axis)
        bounds = ext or ((0, 0) if hi is None else (hi, hi))
        lo = bounds[0] if lo is None else lo
        hi = max(lo, bounds[1] if hi is None else hi)
    step = choose_step(lo, hi, points)
    forced = None
    if resolution is not None:
        forced = RESOLUTION_BY_LABEL.get(resolution)
        if forced is None or rollups is None:
            raise ConsoleError(
                f"resolution {str(resolution)[:40]!r}: one of {', '.join(RESOLUTION_BY_LABEL)} "
                "(a rollup table), with the rollup tasks"
            )
        # whole buckets of the table asked for (every step of STEPS_S from a bucket on is a multiple of it)
        step = max(step, forced.ns)
    if src.kind == "rollup":
        # a rollup task's own source: its rollup tables answer, in steps of at least their finest bucket
        if rollups is None or src.task not in rollups:
            raise ConsoleError(
                f"{src.id} is a rollup task's traffic: it is read from the rollup tables (resolution auto), "
                "not at full resolution (a flow_metrics source is)"
            )
        rollups = {src.task: rollups[src.task]}
        step = max(step, RESOLUTIONS[0].ns)
    t0 = lo // step * step
    nb = (hi - t0) // step + 1
    plan, reason = (None, "full resolution asked") if rollups is None else (None, "")
    if rollups is not None:
        plan, reason = rollup_plan(
            store, src, rollups, axis=axis, dims=dims, flt=flt, metric=metric, start_ns=lo, end_ns=hi,
            step_ns=step, known_extent=ext, resolution_s=forced.seconds if forced else None,
        )  # fmt: skip
    if plan is None and forced is not None:
        raise ConsoleError(f"{src.id} at resolution {forced.label}: {reason}")
    read_lo, read_hi = lo, hi + 1
    if plan is None and src.kind == "rollup":
        raise ConsoleError(f"{src.id}: {reason}")
    if plan is not None:
        read_lo, read_hi = plan.choice.start_ns or 0, plan.choice.end_ns or hi + 1
        factor, rows = 1, 0
        rel, params = plan.source.relation("first", read_lo, read_hi - 1, flt)
        src_read = plan.source
    else:
        # the stored-time axis differences every stored version of a flow: about three times the work per row
        budget = row_budget // 3 if axis == "snapshot" else row_budget
        factor, rows = (1, 0) if exact else sample_factor(store, src, axis, lo, hi, budget, ext)
        rel, params = src.relation(axis, lo, hi, flt, factor)
        src_read = src
        reason = f"{src.table} (full resolution): {reason}" if reason else f"{src.table} (full resolution)"
    params.update(v_t0=t0, v_step=step, v_n=max(nb, limit + 1))
    if not src_read.keys:
        raise ConsoleError(f"{src.id} has no key fields: nothing tells its flows apart")
    keys = ", ".join(quote_identifier(c) for c in dict.fromkeys([*src_read.keys, *dims]))
    qd = [quote_identifier(d) for d in dims]
    lead = "".join(f"{q}, " for q in qd)
    # 1. per flow key and bucket: its traffic; 2. per flow key: its buckets, in order; 3. per combination
    # of the dimensions and bucket: traffic, flow keys in the bucket (cf) and flow keys whose first bucket
    # it is (cn: a key counts once over the range); 4. role 0: the total per bucket, role 1: per
    # combination, largest first with its buckets. Plain sums and arrays, no map merges: one scan, and the
    # levels above it work on flows, not rows. (Aliases never repeat a column of the level below.)
    per_key_bucket = (
        f"SELECT {keys}, intDiv(T - %(v_t0)s, %(v_step)s) AS bk, {saturating_sum('P')} AS kP, "
        f"{saturating_sum('B')} AS kB "
        f"FROM ({rel}) GROUP BY {keys}, bk"
    )
    per_key = f"SELECT {lead}arraySort(groupArray((bk, kP, kB))) AS s FROM ({per_key_bucket}) GROUP BY {keys}"
    per_bucket = (
        f"SELECT {lead}tupleElement(e, 1) AS ebk, tupleElement(e, 2) AS ep, tupleElement(e, 3) AS eb, "
        f"i = 1 AS efirst FROM ({per_key}) ARRAY JOIN s AS e, arrayEnumerate(s) AS i"
    )
    per_combo = (
        f"SELECT {lead}ebk AS cbk, {saturating_sum('ep')} AS cp, {saturating_sum('eb')} AS cb, "
        "count() AS cf, sum(efirst) AS cn "
        f"FROM ({per_bucket}) GROUP BY {lead}ebk"
    )
    shown = "".join(f"if(role = 1, {q}, NULL) AS d{i}, " for i, q in enumerate(qd))
    group = ", ".join(["role", "gb", *(f"d{i}" for i in range(len(qd)))])
    order = ", ".join(["role", f"{METRIC_COLUMN[metric]} DESC", *(f"d{i}" for i in range(len(qd)))])
    ranked = (
        f"SELECT role, if(role = 0, cbk, -1) AS gb, {shown}{saturating_sum('cp')} AS p, "
        f"{saturating_sum('cb')} AS b, sum(cn) AS f, "
        "sum(cf) AS fb, groupArrayIf((cbk, cp, cb, cf), role = 1) AS a "
        f"FROM ({per_combo}) ARRAY JOIN [0, 1] AS role GROUP BY {group} "
        f"ORDER BY {order} LIMIT %(v_n)s BY role"
    )
    names = "".join(f"d{i}, " for i in range(len(qd)))
    sql = (
        f"SELECT role, gb, {names}p, b, f, fb, "
        # the bucket as Int64, the counters as UInt64 (a toInt64 of one >= 2**63 is negative)
        + ", ".join(f"arrayMap(x -> to{t}(tupleElement(x, {k})), a)" for k, t in _ARRAY_TYPES)
        + f" FROM ({ranked}) ORDER BY {order}"
    )
    result = store.query(qualify(store, sql), params)

    total = Series({}, 0, 0, 0, {m: [0] * nb for m in METRICS})
    top: list[Series] = []
    n = len(dims)
    for row in result:
        p, b, f, fb = (scaled(v, factor) for v in row[2 + n : 6 + n])
        if int(row[0]) == 0:  # one bucket of the total
            k = int(row[1])
            if 0 <= k < nb:
                for m, v in zip(METRICS, (p, b, fb), strict=True):
                    total.values[m][k] += v
            total.packets, total.bytes, total.flows = total.packets + p, total.bytes + b, total.flows + f
        elif len(top) < limit:
            values = {m: [0] * nb for m in METRICS}
            for k, vp, vb, vf in zip(*row[6 + n : 10 + n], strict=True):
                if 0 <= k < nb:
                    values["packets"][k] += scaled(vp, factor)
                    values["bytes"][k] += scaled(vb, factor)
                    values["flows"][k] += scaled(vf, factor)
            top.append(Series({d: row[2 + i] for i, d in enumerate(dims)}, p, b, f, values))
    # sums saturate at 2**64 - 1 in SQL (hostile counters); so do the sums over buckets and a sample's
    # estimates (scaled); the rest of a saturated total is unknown, and never below 0
    for s in (*top, total):
        s.packets, s.bytes = saturated(s.packets), saturated(s.bytes)
        s.values = {m: [saturated(v) for v in vs] for m, vs in s.values.items()}
    other = Series(
        {},
        max(0, total.packets - sum(s.packets for s in top)),
        max(0, total.bytes - sum(s.bytes for s in top)),
        total.flows - sum(s.flows or 0 for s in top),
        {
            m: [max(0, t - sum(s.values[m][i] for s in top)) for i, t in enumerate(total.values[m])]
            for m in METRICS
        },
    )
    if plan is not None:  # a rollup row is not a flow: flows are not counted
        for s in (*top, other, total):
            s.flows = None
            s.values["flows"] = []
    return Visualization(
        src.id,
        src_read.table,
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
        (time.perf_counter() - t_begin) * 1000,
        plan.choice.resolution if plan is not None else "full",
        plan.task if plan is not None else "",
        reason,
        read_lo,
        read_hi,
    )
