"""Queries of the rollup tables (``rollup_1m``, ``rollup_5m``, ``rollup_1h``): top-N by any dimension and
traffic over time, each answered from the coarsest table that answers the request — and saying which.

The tables (:mod:`netspectra.storage.schema`) hold, per rollup task, the traffic of each time bucket of
the traffic's own time and tuple of dimensions; a row is cumulative for its identity (task, bucket,
dimensions, period, epoch) and the newest version of an identity wins, so every query reads ``FINAL``
and sums. All three tables hold the same totals (each rollup task counts every row into the three), so
any of them answers a range made of its buckets exactly.

Which table (:func:`choose_rollup`): the request gives a range and, optionally, the *resolution* it
needs (a series' step, or how precisely the range's edges must be met; default a hundredth of the range).
The answer comes from the coarsest table whose buckets are no wider than that resolution, unless the
range starts before that table's retention (``clickhouse.rollup_<res>_retention``, counted from now)
and the table no longer holds the range's rows: then from the finest coarser table that still holds
them. Retention drops a partition by its newest *write*, not by the traffic's time, so old traffic stored
recently (a capture from 2019 analysed today) is still in the finer tables: :func:`top_n` and
:func:`traffic_series` then look (:func:`rows_kept`: two small indexed queries) and keep the finer
table. The range read is the requested one widened to whole buckets of that table (:class:`RollupChoice`
says which table, why, and the range read).

Filters (:class:`DimensionFilter`): per dimension, a set of values it must take (or, with ``exclude``,
must not). Values are text as the tables hold them: AS numbers and interface indexes as decimal numbers
(``AS15169`` is accepted), countries as two letters, exporters as IP addresses; ``""`` (or ``0``) is
unknown.

As everywhere in :mod:`netspectra.storage`, every value is bound client-side
(:func:`~netspectra.storage.schema.bind`); dimension names are checked against the declared columns
before they name a column.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from netspectra.enrich.columns import BY_NAME as ENRICH_COLUMNS
from netspectra.kinds import shown
from netspectra.rollup.dims import BY_NAME, NAMES, RESOLUTION_BY_LABEL, RESOLUTIONS, Dimension, Resolution
from netspectra.storage.queries import _check_times, _ip_text
from netspectra.storage.sums import exact, ordered_words, saturated, total, word_sums

if TYPE_CHECKING:
    from netspectra.storage.clickhouse_config import ClickHouseConfig
    from netspectra.storage.store import ClickHouseStore

log = logging.getLogger(__name__)

#: What a top-N ranks by and a series counts.
RollupMetric = Literal["bytes", "packets"]
ROLLUP_METRICS: tuple[str, ...] = get_args(RollupMetric)
#: ``limit`` of :func:`top_n` when none is given, and the most it serves.
DEFAULT_TOP = 10
MAX_TOP = 10_000
#: Without a resolution, the range's edges are met to within this fraction of its length.
DEFAULT_POINTS = 100
#: Most points :func:`traffic_series` gives (a wider step is used above it).
MAX_POINTS = 10_000
#: Most values the filters of one request may list, all together (a value repeated counts once), and
#: most characters of those values: the values are sent in the query text, which ClickHouse bounds
#: (``max_query_size``, 256 KiB by default); beyond these a request is refused, not failed.
MAX_FILTER_VALUES = 1_000
MAX_FILTER_CHARS = 65_536
_METRIC_COLUMN = {"bytes": "Bytes", "packets": "Packets"}


@dataclass(frozen=True, slots=True)
class RollupChoice:
    """The table that answers a request: ``table``, its ``resolution`` (``1m``…) and bucket ``seconds``,
    the range read (``start_ns`` inclusive, ``end_ns`` exclusive, whole buckets; ``None`` = unbounded)
    and ``reason`` (one line for people)."""

    table: str
    resolution: str
    seconds: int
    start_ns: int | None
    end_ns: int | None
    reason: str


def _retention_ns(cfg: ClickHouseConfig, res: Resolution) -> int:
    value = getattr(cfg, res.retention_setting)
    return int(value.total_seconds() * 1e9) if value else 0


def choose_rollup(
    cfg: ClickHouseConfig,
    start_ns: int | None,
    end_ns: int | None,
    resolution_s: int | None = None,
    now_ns: int | None = None,
    *,
    held: Callable[[Resolution], bool] | None = None,
) -> RollupChoice:
    """The rollup table that answers ``[start_ns, end_ns)`` at ``resolution_s`` (see the module
    docstring); ``now_ns`` (default: the clock) dates the retentions. ``held(resolution)``, when given, says
    whether a table still holds the range's rows although the range starts before its retention (rows
    written recently: see :func:`rows_kept`); without it such a table is taken as emptied."""
    _check_times(start_ns, end_ns)
    if resolution_s is not None and (isinstance(resolution_s, bool) or resolution_s < 0):
        raise ValueError(f"resolution must be a non-negative number of seconds, got {resolution_s!r}")
    now = time.time_ns() if now_ns is None else now_ns
    if not resolution_s:
        if start_ns is None or end_ns is None:
            wanted = RESOLUTIONS[-1].seconds  # an unbounded range: the long view
        else:
            wanted = max(1, (end_ns - start_ns) // 10**9 // DEFAULT_POINTS)
        how = (
            f"with buckets within a {DEFAULT_POINTS}th of the range"
            if start_ns is not None and end_ns is not None
            else "(the range has no start or no end)"  # was "within no bound", which read as nothing
        )
    else:
        wanted = int(resolution_s)
        how = f"with buckets within the {wanted} s resolution wanted"
    fitting = [r for r in RESOLUTIONS if r.seconds <= wanted] or [RESOLUTIONS[0]]
    best = fitting[-1]
    reason = f"{best.table}: the coarsest table {how}"
    if start_ns is not None:

        def in_retention(r: Resolution) -> bool:
            keep = _retention_ns(cfg, r)
            return not keep or start_ns >= now - keep

        def holds(r: Resolution) -> bool:
            return in_retention(r) or (held is not None and held(r))

        if not in_retention(best) and held is not None and held(best):
            reason += (
                f" (the range starts before clickhouse.{best.retention_setting} but its rows were written "
                "since: still there)"
            )
        elif not in_retention(best):
            coarser = [r for r in RESOLUTIONS if r.seconds > best.seconds and holds(r)]
            fallback = coarser[0] if coarser else RESOLUTIONS[-1]
            reason = (
                f"{fallback.table}: the range starts before {best.table} keeps rows "
                f"(clickhouse.{best.retention_setting})"
            )
            best = fallback
    w = best.ns
    lo = None if start_ns is None else start_ns - start_ns % w
    hi = None if end_ns is None else -(-end_ns // w) * w
    if hi is not None and lo is not None and hi == lo:
        hi = lo + w  # an instant: its bucket
    return RollupChoice(best.table, best.label, best.seconds, lo, hi, reason)


def rows_kept(
    store: ClickHouseStore, task: str, start_ns: int | None, end_ns: int | None
) -> Callable[[Resolution], bool] | None:
    """For :func:`choose_rollup`'s ``held``: whether a table still holds rollup ``task``'s rows of
    ``[start_ns, end_ns)``. Retention drops whole partitions once their newest *write* is old, so rows of old
    traffic written recently are still there. Looked up once per table on the range's first hour with
    traffic (which ``rollup_1h``, kept longest, names): the table holds the range when it has rows in that
    hour. No range start: None (the time rule never refuses a table then)."""
    if start_ns is None:
        return None
    coarse = RESOLUTIONS[-1]
    first: list[int | None] = []
    answers: dict[str, bool] = {}

    def held(r: Resolution) -> bool:
        if not first:
            cond = "TaskName = %(task)s AND BucketNs >= %(lo)s"
            params: dict[str, object] = {"task": task, "lo": start_ns - start_ns % coarse.ns}
            if end_ns is not None:
                cond += " AND BucketNs < %(hi)s"
                params["hi"] = end_ns
            got = store.query(
                f"SELECT count(), min(BucketNs) FROM {store.table(coarse.table)} WHERE {cond}", params
            )
            first.append(int(got[0][1]) if got and int(got[0][0]) else None)
        hour = first[0]
        if hour is None:  # nothing stored in the range at all: any table answers it (with nothing)
            return False
        if r.table not in answers:
            got = store.query(
                f"SELECT count() FROM {store.table(r.table)} WHERE TaskName = %(task)s "
                "AND BucketNs >= %(a)s AND BucketNs < %(b)s",
                {"task": task, "a": hour, "b": hour + coarse.ns},
            )
            answers[r.table] = bool(got and int(got[0][0]))
        return answers[r.table]

    return held


@dataclass(frozen=True, slots=True)
class DimensionFilter:
    """A condition on one dimension: its value is one of ``values`` (with ``exclude``: none of them).
    Checked and normalised on creation (``ValueError`` naming the dimension)."""

    dimension: str
    values: tuple[str, ...]
    exclude: bool = False

    def __post_init__(self) -> None:
        dim = _dimension(self.dimension)
        values = (self.values,) if isinstance(self.values, str) else tuple(self.values)
        if not values:
            raise ValueError(f"filter on {self.dimension}: no value given")
        if len(values) > MAX_FILTER_VALUES:
            values = tuple(dict.fromkeys(values))  # repeats count once
        if len(values) > MAX_FILTER_VALUES:
            raise ValueError(
                f"filter on {self.dimension}: {len(values):,} values, at most {MAX_FILTER_VALUES:,}"
            )
        normal = tuple(dict.fromkeys(dimension_value(dim.name, v) for v in values))
        object.__setattr__(self, "values", normal)

    def condition(self, i: int) -> tuple[str, dict[str, object]]:
        """SQL of the condition and its parameters (``d<i>_<j>``)."""
        dim = BY_NAME[self.dimension]
        names = [f"d{i}_{j}" for j in range(len(self.values))]
        params: dict[str, object] = {}
        for name, v in zip(names, self.values, strict=True):
            params[name] = int(v) if dim.kind == "number" else v
        op = "NOT IN" if self.exclude else "IN"
        return f"{dim.name} {op} ({', '.join(f'%({n})s' for n in names)})", params


def _dimension(name: str) -> Dimension:
    dim = BY_NAME.get(name) if isinstance(name, str) else None
    if dim is None:
        from netspectra.kinds import did_you_mean

        raise ValueError(
            f"{shown(name, 60)} is not a dimension{did_you_mean(name, NAMES)}; "
            f"dimensions are {', '.join(NAMES)}"
        )
    return dim


def check_dimension(name: object) -> str:
    """``name`` if it is a rollup dimension; ``ValueError`` naming the valid ones otherwise."""
    return _dimension(name).name  # type: ignore[arg-type]


def dimension_value(dimension: str, value: object) -> str:
    """``value`` as the rollup tables hold it for ``dimension`` (text): numbers in decimal (``AS15169``
    → ``15169``; ``""`` → ``0``), countries upper-case, exporter addresses as IP text (``""``: none);
    ``ValueError`` for a value the dimension cannot take."""
    dim = BY_NAME[dimension]
    text = str(value).strip() if not isinstance(value, str) else value.strip()
    if dim.kind == "number":
        digits = text[2:] if text[:2].upper() == "AS" and dimension.endswith("AS") else text
        if digits == "":
            return "0"
        top = 255 if dim.clickhouse == "UInt8" else 2**32 - 1
        if not digits.isdigit() or int(digits) > top:
            raise ValueError(f"{dimension}: {shown(value, 60)} is not a number between 0 and {top}")
        return str(int(digits))
    if dim.kind == "address":
        return _ip_text(text, dimension) if text else ""
    return stored_text(dimension, text)


def stored_text(column: str, text: str) -> str:
    """A text value of enrichment ``column`` as the store holds it, for the columns whose values have one
    spelling there — a country upper-case (``fr`` → ``FR``), a class the classifiers set lower-case
    (``Cogent`` → ``cogent``, Akvorado's normalisation) —; ``ValueError`` naming the column for one no
    row can hold (not two letters, a boundary other than external or internal, a character the
    classifiers drop), which would match nothing without a word. Other columns' text (names, as
    configured) unchanged. What ``TopN``'s filters, the console's filter language and ``TraceFlow``'s
    flow keys read."""
    value, text = text, text.strip()
    if column.endswith("Country") and column in ENRICH_COLUMNS:
        if text and (len(text) != 2 or not text.isascii() or not text.isalpha()):
            raise ValueError(f"{column}: {shown(value, 60)} is not a two-letter country code")
        return text.upper()
    enriched = ENRICH_COLUMNS.get(column)
    if enriched is None or not enriched.source.startswith("classifiers."):
        return value
    from netspectra.enrich.codes import BOUNDARIES
    from netspectra.enrich.expr import normalize
    from netspectra.kinds import did_you_mean

    lower = text.lower()
    if enriched.dictionary == "boundary":
        if lower not in BOUNDARIES:
            raise ValueError(
                f"{column}: {shown(value, 60)} is not a boundary{did_you_mean(lower, BOUNDARIES[1:])}; "
                f'use external, internal or "" (unknown)'
            )
        return lower
    if normalize(lower) != lower:
        raise ValueError(
            f"{column}: {shown(value, 60)} is never a classified value (the classifiers keep only "
            f"a-z 0-9 . + - in lower case); write {normalize(lower)!r}"
        )
    return lower


def _filters_sql(filters: Sequence[DimensionFilter]) -> tuple[list[str], dict[str, object]]:
    """SQL conditions of ``filters`` and their parameters; ``ValueError`` when their values together
    exceed :data:`MAX_FILTER_VALUES` or :data:`MAX_FILTER_CHARS`."""
    count = sum(len(f.values) for f in filters)
    chars = sum(len(v) for f in filters for v in f.values)
    if count > MAX_FILTER_VALUES or chars > MAX_FILTER_CHARS:
        raise ValueError(
            f"filters: {count:,} values of {chars:,} characters in all, at most {MAX_FILTER_VALUES:,} "
            f"values and {MAX_FILTER_CHARS:,} characters"
        )
    conds: list[str] = []
    params: dict[str, object] = {}
    for i, f in enumerate(filters):
        sql, p = f.condition(i)
        conds.append(sql)
        params.update(p)
    return conds, params


def _where(
    task: str, choice: RollupChoice, filters: Sequence[DimensionFilter]
) -> tuple[str, dict[str, object]]:
    conds, params = _filters_sql(filters)
    conds.insert(0, "TaskName = %(task)s")
    params["task"] = task
    if choice.start_ns is not None:
        conds.append("BucketNs >= %(start)s")
        params["start"] = choice.start_ns
    if choice.end_ns is not None:
        conds.append("BucketNs < %(end)s")
        params["end"] = choice.end_ns
    return " AND ".join(conds), params


@dataclass(frozen=True, slots=True)
class TopValue:
    """One value of a dimension with its traffic (``value`` as text, see :func:`dimension_value`)."""

    value: str
    packets: int
    bytes: int


@dataclass(frozen=True, slots=True)
class TopN:
    """The answer of :func:`top_n`: ``values`` (largest first), the traffic of *every* value in the range
    (``total_packets``, ``total_bytes``: the rest is the total minus the values shown) and how many
    values there are (``distinct``), with the table that answered (``choice``). Sums are exact and
    ordered exactly; one above 2**64 - 1 (hostile counters) is given as 2**64 - 1
    (:mod:`netspectra.storage.sums`)."""

    task: str
    dimension: str
    metric: str
    values: list[TopValue]
    total_packets: int
    total_bytes: int
    distinct: int
    choice: RollupChoice


def _check_task(task: object) -> str:
    if not isinstance(task, str) or not task:
        raise ValueError("a rollup task name is required")
    return task


def _check_limit(limit: int, default: int, most: int, what: str) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ValueError(f"{what} must be an int, got {limit!r}")
    if limit <= 0:
        return default
    if limit > most:
        log.info("%s %d cut to %d", what, limit, most)
        return most
    return limit


def top_n(
    store: ClickHouseStore,
    task: str,
    dimension: str,
    metric: RollupMetric = "bytes",
    filters: Sequence[DimensionFilter] = (),
    start_ns: int | None = None,
    end_ns: int | None = None,
    limit: int = DEFAULT_TOP,
    resolution_s: int | None = None,
    now_ns: int | None = None,
) -> TopN:
    """The ``limit`` values of ``dimension`` with the most ``metric`` among the traffic of rollup ``task``
    in ``[start_ns, end_ns)`` (widened to whole buckets of the table chosen, see :func:`choose_rollup`)
    that matches every filter; ties by the other metric, then by value. ``limit`` <= 0 →
    :data:`DEFAULT_TOP`; above :data:`MAX_TOP` → cut. One scan: the values are grouped once, and the
    top ones and the totals are taken from the groups (``groupArray``, sorted by a lambda)."""
    task = _check_task(task)
    dim = _dimension(dimension)
    if metric not in _METRIC_COLUMN:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(ROLLUP_METRICS)}")
    limit = _check_limit(limit, DEFAULT_TOP, MAX_TOP, "limit")
    choice = choose_rollup(
        store.cfg, start_ns, end_ns, resolution_s, now_ns, held=rows_kept(store, task, start_ns, end_ns)
    )
    cond, params = _where(task, choice, filters)
    table = f"{store.table(choice.table)} FINAL"
    # tuples (V, packets' words, bytes' words): sums of the words never wrap (netspectra.storage.sums);
    # the key orders by the exact sums (bitNot: descending for every UInt64), then the value
    first, second = (4, 2) if metric == "bytes" else (2, 4)
    column = dim.name  # a declared dimension: safe as a column name
    ph, pl = ordered_words("PH", "PL")
    bh, bl = ordered_words("BH", "BL")
    groups = (
        f"SELECT {column} AS V, {word_sums('Packets', 'P')}, {word_sums('Bytes', 'B')}, "
        f"{ph} AS P1, {pl} AS P0, {bh} AS B1, {bl} AS B0 FROM {table} WHERE {cond} GROUP BY V"
    )
    key = ", ".join(f"bitNot(tupleElement(x, {k}))" for k in (first, first + 1, second, second + 1))
    sql = (
        "SELECT tupleElement(t, 1), tupleElement(t, 2), tupleElement(t, 3), tupleElement(t, 4), "
        "tupleElement(t, 5), N, TP1, TP0, TB1, TB0 FROM ("
        f"SELECT arrayJoin(arraySlice(arraySort(x -> ({key}, tupleElement(x, 1)), "
        "groupArray((V, P1, P0, B1, B0))), 1, %(limit)s)) AS t, "
        f"count() AS N, sum(P1) AS TP1, sum(P0) AS TP0, sum(B1) AS TB1, sum(B0) AS TB0 FROM ({groups}))"
    )
    rows = store.query(sql, {**params, "limit": limit})
    distinct, tp, tb = (int(rows[0][5]), total(*rows[0][6:8]), total(*rows[0][8:10])) if rows else (0, 0, 0)
    return TopN(
        task,
        dim.name,
        metric,
        [TopValue(str(r[0]), total(r[1], r[2]), total(r[3], r[4])) for r in rows],
        tp,
        tb,
        distinct,
        choice,
    )


def no_traffic(store: ClickHouseStore, top: TopN, filters: Sequence[DimensionFilter] = ()) -> str:
    """Why :func:`top_n` found no value (said with the table's ``reason``, as an empty ``ListExporters``
    says why): the task has stored no rollup rows; the range read holds none of them (and when its
    traffic is); or the filters match none of the range's traffic."""
    from netspectra.output.timefmt import format_ts_ns

    first, last = _traffic_extent(store, top.task, None, None)
    if first is None or last is None:
        return f"rollup task {shown(top.task)} has stored no traffic (yet)"
    if filters:
        cond, params = _where(top.task, top.choice, ())
        rows = store.query(f"SELECT count() FROM {store.table(top.choice.table)} WHERE {cond}", params)
        if rows and int(rows[0][0]):
            return "no traffic in the range matches the filters"
    return (
        f"no traffic in the range: rollup task {shown(top.task)} holds traffic in the hours from "
        f"{format_ts_ns(first)} to {format_ts_ns(last)}"
    )


@dataclass(frozen=True, slots=True)
class TrafficSeries:
    """The answer of :func:`traffic_series`: per series (``"total"``, or each top value of the dimension
    and ``"other"``) the points ``(bucket start ns, value)`` of every step that has traffic, in time
    order; ``step_s`` the step; ``choice`` the table that answered. Values are exact sums, saturated
    at 2**64 - 1 (``other`` is taken from the exact sums; :mod:`netspectra.storage.sums`)."""

    task: str
    metric: str
    step_s: int
    series: dict[str, list[tuple[int, int]]]
    choice: RollupChoice
    dimension: str | None = None
    values: list[str] = field(default_factory=list)


def _hours_held(
    store: ClickHouseStore, task: str, start_ns: int | None, end_ns: int | None
) -> tuple[int, int, int]:
    """The rows of rollup ``task`` in ``rollup_1h`` (the smallest table, which every row reaches) in the hours
    of ``[start_ns, end_ns)`` (``None``: unbounded): their number, first and last bucket (0, 0 if none)."""
    coarse = RESOLUTIONS[-1]
    conds, params = ["TaskName = %(task)s"], {"task": task}
    if start_ns is not None:
        conds.append("BucketNs >= %(lo)s")
        params["lo"] = start_ns - start_ns % coarse.ns
    if end_ns is not None:
        conds.append("BucketNs < %(hi)s")
        params["hi"] = end_ns
    got = store.query(
        f"SELECT count(), min(BucketNs), max(BucketNs) FROM {store.table(coarse.table)} "
        f"WHERE {' AND '.join(conds)}",
        params,
    )
    if not got or not int(got[0][0]):
        return 0, 0, 0
    return int(got[0][0]), int(got[0][1]), int(got[0][2])


def _traffic_extent(
    store: ClickHouseStore, task: str, start_ns: int | None, end_ns: int | None
) -> tuple[int | None, int | None]:
    """``[start_ns, end_ns)`` narrowed to the hours of rollup ``task`` that have traffic (from ``rollup_1h``);
    unchanged when the range holds none."""
    n, first, last = _hours_held(store, task, start_ns, end_ns)
    if not n:
        return start_ns, end_ns
    last += RESOLUTIONS[-1].ns
    return (first if start_ns is None else max(start_ns, first)), (
        last if end_ns is None else min(end_ns, last)
    )


def holds_traffic(store: ClickHouseStore, task: str, start_ns: int | None, end_ns: int | None) -> bool:
    """Whether rollup ``task`` stored traffic in the hours of ``[start_ns, end_ns)`` (``None``: unbounded):
    one small query on ``rollup_1h``."""
    return _hours_held(store, task, start_ns, end_ns)[0] > 0


def traffic_series(
    store: ClickHouseStore,
    task: str,
    metric: RollupMetric = "bytes",
    start_ns: int | None = None,
    end_ns: int | None = None,
    step_s: int | None = None,
    filters: Sequence[DimensionFilter] = (),
    dimension: str | None = None,
    top: int = 5,
    max_points: int = 1000,
    now_ns: int | None = None,
) -> TrafficSeries:
    """Traffic of rollup ``task`` over time: ``metric`` per step of ``step_s`` seconds (default: the range
    over ``max_points``; a multiple of the chosen table's bucket) in ``[start_ns, end_ns)``, for the
    traffic matching ``filters``. With ``dimension``: one series per value among its ``top`` values over
    the range, plus ``other`` (the rest); else one series, ``total``. Steps without traffic have no
    point (it is 0)."""
    task = _check_task(task)
    if metric not in _METRIC_COLUMN:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(ROLLUP_METRICS)}")
    max_points = _check_limit(max_points, 1000, MAX_POINTS, "max_points")
    if step_s is None:
        # the default step spreads the points over the traffic in the range, not over the range asked:
        # "everything" (from 0) of a 10-minute capture is its minutes, not one point of years
        start_ns, end_ns = _traffic_extent(store, task, start_ns, end_ns)
        if start_ns is not None and end_ns is not None:
            step_s = max(1, -(-(end_ns - start_ns) // 10**9 // max_points))
    choice = choose_rollup(
        store.cfg, start_ns, end_ns, step_s, now_ns, held=rows_kept(store, task, start_ns, end_ns)
    )
    step = max(choice.seconds, -(-(step_s or choice.seconds) // choice.seconds) * choice.seconds)
    if choice.start_ns is not None and choice.end_ns is not None:
        while (choice.end_ns - choice.start_ns) // (step * 10**9) > MAX_POINTS:
            step *= 2
    cond, params = _where(task, choice, filters)
    table = f"{store.table(choice.table)} FINAL"
    column = _METRIC_COLUMN[metric]
    step_ns = step * 10**9
    bucket = "intDiv(BucketNs, %(step)s) * %(step)s"  # floor: bucket starts are never negative here
    params["step"] = step_ns
    sums = word_sums(column, "X")  # exact sums (netspectra.storage.sums), saturated once differenced
    total_sql = f"SELECT {bucket} AS T, {sums} FROM {table} WHERE {cond} GROUP BY T ORDER BY T"
    totals = [(int(t), exact(h, lo)) for t, h, lo in store.query(total_sql, params)]
    if dimension is None:
        return TrafficSeries(task, metric, step, {"total": _saturated(totals)}, choice)
    ranked = top_n(store, task, dimension, metric, filters, start_ns, end_ns, top, choice.seconds, now_ns)
    values = [v.value for v in ranked.values]
    out: dict[str, list[tuple[int, int]]] = {v: [] for v in values}
    if values:
        dim = BY_NAME[dimension]
        names = [f"v{j}" for j in range(len(values))]
        vparams = {n: (int(v) if dim.kind == "number" else v) for n, v in zip(names, values, strict=True)}
        sql = (
            f"SELECT {dim.name} AS V, {bucket} AS T, {sums} FROM {table} WHERE {cond} "
            f"AND {dim.name} IN ({', '.join(f'%({n})s' for n in names)}) GROUP BY V, T ORDER BY V, T"
        )
        for v, t, h, lo in store.query(sql, {**params, **vparams}):
            out[str(v)].append((int(t), exact(h, lo)))
    shown: dict[int, int] = {}
    for points in out.values():
        for t, x in points:
            shown[t] = shown.get(t, 0) + x
    other = [(t, x - shown.get(t, 0)) for t, x in totals if x - shown.get(t, 0) > 0]
    out["other"] = other
    return TrafficSeries(
        task, metric, step, {k: _saturated(v) for k, v in out.items()}, choice, dimension, values
    )


def _saturated(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(t, saturated(x)) for t, x in points]


def rollup_task_names(store: ClickHouseStore) -> list[str]:
    """Names of the rollup tasks with rows in the coarsest table, sorted."""
    rows = store.query(
        f"SELECT DISTINCT TaskName FROM {store.table(RESOLUTIONS[-1].table)} ORDER BY TaskName"
    )
    return [str(r[0]) for r in rows]


def resolution_seconds(label: str) -> int:
    """``1m`` / ``5m`` / ``1h`` → seconds; ``ValueError`` otherwise."""
    res = RESOLUTION_BY_LABEL.get(label)
    if res is None:
        raise ValueError(f"{label!r} is not a rollup resolution; they are {', '.join(RESOLUTION_BY_LABEL)}")
    return res.seconds


__all__: Sequence[str] = (
    "DEFAULT_TOP",
    "MAX_TOP",
    "ROLLUP_METRICS",
    "DimensionFilter",
    "RollupChoice",
    "RollupMetric",
    "TopN",
    "TopValue",
    "TrafficSeries",
    "check_dimension",
    "choose_rollup",
    "dimension_value",
    "resolution_seconds",
    "rollup_task_names",
    "top_n",
    "traffic_series",
)
