"""Sources of the console (a table and a task), the catalog of a store, the relation every view reads,
and the shared rules of ranges, buckets and samples (see :mod:`netspectra.storage.console`)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from netspectra.rollup.dims import RESOLUTIONS
from netspectra.storage.filter import CompiledFilter, FieldType, field_type
from netspectra.storage.schema import (
    ALERT_TABLE,
    EXPORTER_TABLE,
    FLOW_RECORDS_TABLE,
    FLOW_TABLE,
    HITTER_TABLE,
    KEY_COLUMNS,
    quote_identifier,
)
from netspectra.storage.sums import saturating_sum

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore

log = logging.getLogger(__name__)

#: The table of flow records (schema.FLOWS, migration 2); one source per task as soon as it exists.
RECORD_TABLE = FLOW_RECORDS_TABLE
#: The rollup table a rollup task's source is catalogued by (the smallest, which every row reaches); its
#: answers come from the coarsest table that answers (console.rollup).
ROLLUP_TABLE = RESOLUTIONS[-1].table
#: Tables the console names in its catalog when they are absent, so the page can say what is missing:
#: name → what it would hold.
EXPECTED_TABLES: dict[str, str] = {
    FLOW_TABLE: "flow states of the exact tasks (cumulative per period, one row per changed flow)",
    HITTER_TABLE: "heavy hitters and super-spreaders of the sketch tasks",
    ALERT_TABLE: "the alert history",
    RECORD_TABLE: "flow records of the flows tasks (bidirectional, with state, flags and end reason)",
    # the rollup tables (migration 4): a source per rollup task (rollup:<task>, Visualize only), and
    # Visualize reads them in place of a source's table when a rollup task answers the request
    # (console.rollup); the exporters table (migration 5) holds no traffic
    "rollup_1m": "traffic per 1-minute bucket and dimensions (rollup tasks); Visualize answers from it",
    "rollup_5m": "traffic per 5-minute bucket and dimensions (rollup tasks); Visualize answers from it",
    "rollup_1h": "traffic per 1-hour bucket and dimensions (rollup tasks); Visualize answers from it",
    EXPORTER_TABLE: "the flow exporters of exporters tasks (no traffic: not a source)",
}
#: Columns of ``flow_metrics`` that are not dimensions (times, counters, bookkeeping).
_SNAPSHOT_INTERNAL = frozenset(
    {"TimestampNs", "PeriodStartNs", "Bucket", "TaskName", "FlowHash", "StartNs", "EndNs", "ByteCount"}
    | {"PacketCount"}
)
#: Time and counter columns of a records table (what is not a dimension there).
_RECORD_TIMES = (("FirstSeenNs", "LastSeenNs"), ("FirstSeen", "LastSeen"))
_RECORD_PACKETS = (("SrcToDstPackets", "DstToSrcPackets"), ("Packets",), ("PacketCount",))
_RECORD_BYTES = (("SrcToDstBytes", "DstToSrcBytes"), ("Bytes",), ("ByteCount",))
_RECORD_KEYS = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "VlanID")
#: Columns of a records table that are neither dimensions nor shown (the writer's bookkeeping).
_RECORD_BOOKKEEPING = frozenset({"TaskName", "FlowHash", "TimestampNs", "PeriodStartNs", "Bucket"})

Axis = Literal["first", "snapshot"]
AXES: dict[str, str] = {
    "first": "traffic time: each flow's traffic at its first packet (on flow_metrics: in its aggregation "
    "period; on flows: the record's first packet); the range selects flows by their first packet",
    "snapshot": "stored time: traffic at the snapshot that counted it (increments between stored "
    "snapshots); the range selects the snapshots",
}
#: The axis of a rollup task's source (its rows have no first packet: traffic per bucket of its own time).
ROLLUP_AXES: dict[str, str] = {
    "first": "traffic time: each packet's traffic in the bucket of its own time (rollup_1m, 5m or 1h); the "
    "range is read in whole buckets",
}
Metric = Literal["packets", "bytes", "flows"]
METRICS: tuple[str, ...] = ("packets", "bytes", "flows")
METRIC_COLUMN = {"packets": "p", "bytes": "b", "flows": "f"}
#: Most series (top-N) of a visualisation; most buckets of a series.
MAX_LIMIT = 50
MAX_POINTS = 1000
#: Rows a sampled view reads at most (per query); see :func:`sample_factor`.
DEFAULT_ROW_BUDGET = 500_000
#: Largest sampling factor (1/N of the flows).
MAX_SAMPLE = 1024
#: Bucket widths a series uses (ns): the smallest that gives at most the asked number of points.
STEPS_S = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
    2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 91 * 86400, 365 * 86400,
)  # fmt: skip
NS = 10**9


class ConsoleError(ValueError):
    """A request the console cannot answer as asked (an unknown source, field or axis; a bad range)."""


# --------------------------------------------------------------------------------------------------
# Catalog
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One table and task a view can read (see the module docstring).

    ``fields``: what may be grouped by and filtered on, in the table's column order (name →
    :class:`FieldType`); ``keys``: the columns that identify a flow; ``extra``: more columns the flows
    view shows (records: state, flags, end reason, …); ``axes``: the time axes it has; ``sample_column``:
    the UInt64 hash column a sample is taken on ("" = never sampled); ``times`` and ``counters``: the SQL of
    first/last seen (ns) and of packets/bytes in a records table; ``final``: read the table ``FINAL`` (a
    ``ReplacingMergeTree`` of records, such as ``flows``, where a retried write is one record only once
    merged)."""

    id: str
    table: str
    task: str
    kind: Literal["snapshots", "records", "rollup"]
    fields: dict[str, FieldType]
    keys: tuple[str, ...]
    extra: tuple[str, ...] = ()
    axes: tuple[str, ...] = ("first",)
    sample_column: str = ""
    times: tuple[str, str] = ("", "")
    counters: tuple[str, str] = ("", "")
    final: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "table": self.table,
            "task": self.task,
            "kind": self.kind,
            "fields": [
                {"name": f.name, "kind": f.kind, "type": f.ch_type, "operators": list(f.operators)}
                for f in self.fields.values()
            ],
            "keys": list(self.keys),
            "extra": list(self.extra),
            "axes": [
                {"id": a, "meaning": (ROLLUP_AXES if self.kind == "rollup" else AXES).get(a, a)}
                for a in self.axes
            ],
            "sampled": bool(self.sample_column),
        }

    # ---- the relation every view reads -------------------------------------------------------------

    def relation(
        self,
        axis: str,
        start_ns: int | None,
        end_ns: int | None,
        flt: CompiledFilter,
        sample: int = 1,
        extra_where: str = "",
        extra_params: Mapping[str, object] | None = None,
        with_extra: bool = False,
    ) -> tuple[str, dict[str, object]]:
        """``(sql, params)`` of this source's relation on ``axis`` over ``[start_ns, end_ns]``
        (inclusive; ``None``: unbounded), rows matching ``flt`` and ``extra_where`` (a condition on the
        table's columns, with its own parameters), a 1/``sample`` sample of the flows when ``sample`` >
        1. Columns: the fields, then ``P``, ``B``, ``S``, ``E``, ``T`` (and the extra columns if asked)."""
        if axis not in self.axes:
            raise ConsoleError(f"axis {axis!r} is not one of this source's: {', '.join(self.axes)}")
        params: dict[str, object] = {"rel_task": self.task, **flt.params, **(extra_params or {})}
        where = ["TaskName = %(rel_task)s"] if self.task else []
        if flt.sql != "1":
            where.append(flt.sql)
        if extra_where:
            where.append(extra_where)
        if sample > 1 and self.sample_column:
            where.append(f"{quote_identifier(self.sample_column)} <= %(rel_sample_hi)s")
            params["rel_sample_hi"] = sample_bound(sample)
        cols = ", ".join(quote_identifier(c) for c in self.fields)
        lead = f"{cols}, " if cols else ""
        table = f"%TABLE:{self.table}%"
        if self.kind == "rollup":
            # a rollup table (see console.rollup): traffic per bucket of its own time and dimensions; a row's
            # newest version wins (FINAL), its periods and epochs add up; S = E = T = the bucket's start
            if start_ns is not None:
                where.append("BucketNs >= %(rel_start)s")
                params["rel_start"] = start_ns
            if end_ns is not None:
                where.append("BucketNs <= %(rel_end)s")
                params["rel_end"] = end_ns
            # counters up to 2**64 - 1 (hostile exporters): sums saturate there, never wrap
            sql = (
                f"SELECT {lead}{saturating_sum('Packets')} AS P, {saturating_sum('Bytes')} AS B, "
                f"toInt64(BucketNs) AS S, S AS E, S AS T FROM {table} FINAL WHERE {' AND '.join(where)} "
                f"GROUP BY {lead}BucketNs"
            )
            return sql, params
        if self.kind == "records":
            table += " FINAL" if self.final else ""
            first, last = self.times
            if start_ns is not None:
                where.append(f"{first} >= %(rel_start)s")
                params["rel_start"] = start_ns
            if end_ns is not None:
                where.append(f"{first} <= %(rel_end)s")
                params["rel_end"] = end_ns
            packets, nbytes = self.counters
            extra = "".join(f", {quote_identifier(c)}" for c in self.extra) if with_extra else ""
            sql = (
                f"SELECT {lead}toUInt64({packets}) AS P, toUInt64({nbytes}) AS B, toInt64({first}) AS S, "
                f"toInt64({last}) AS E, toInt64({first}) AS T{extra} FROM {table} "
                f"WHERE {' AND '.join(where) or '1'}"
            )
            return sql, params
        group = f"PeriodStartNs, FlowHash{', ' + cols if cols else ''}"
        if axis == "first":
            if start_ns is not None:
                where.append("StartNs >= %(rel_start)s")
                params["rel_start"] = start_ns
            if end_ns is not None:
                # no bound on PeriodStartNs: the engine's clock; a capture's packets may be years older
                where.append("StartNs <= %(rel_end)s")
                params["rel_end"] = end_ns
            sql = (
                f"SELECT {lead}max(PacketCount) AS P, max(ByteCount) AS B, min(StartNs) AS S, "
                f"max(EndNs) AS E, min(StartNs) AS T FROM {table} WHERE {' AND '.join(where)} "
                f"GROUP BY {group}"
            )
            return sql, params
        # snapshot axis: the increments of every stored version of a flow in its period
        if end_ns is not None:
            # both are the engine's clock and a period starts before its snapshots: later periods (and
            # their day partitions) are skipped
            where.append("TimestampNs <= %(rel_end)s AND PeriodStartNs <= %(rel_end)s")
            params["rel_end"] = end_ns
        versions = (
            f"SELECT {lead}arraySort(groupArray((TimestampNs, PacketCount, ByteCount, EndNs))) AS v, "
            f"min(StartNs) AS S FROM {table} WHERE {' AND '.join(where)} GROUP BY {group}"
        )
        # UInt64 increments (an Int64 difference is negative from 2**63: a hostile counter's rise was
        # left out); a counter that shrank within its period adds 0
        delta = (
            "arrayMap(i -> if(i = 1, tupleElement(v[i], {n}), toUInt64(if(tupleElement(v[i], {n}) >= "
            "tupleElement(v[i - 1], {n}), tupleElement(v[i], {n}) - tupleElement(v[i - 1], {n}), 0))), "
            "arrayEnumerate(v))"
        )
        if start_ns is not None:
            params["rel_start"] = start_ns
        sql = (
            f"SELECT {lead}toUInt64(dP) AS P, toUInt64(dB) AS B, S, toInt64(vE) AS E, toInt64(vT) AS T "
            f"FROM ({versions}) ARRAY JOIN arrayMap(x -> tupleElement(x, 1), v) AS vT, "
            f"{delta.format(n=2)} AS dP, {delta.format(n=3)} AS dB, "
            f"arrayMap(x -> tupleElement(x, 4), v) AS vE WHERE (dP > 0 OR dB > 0)"
            + (" AND vT >= %(rel_start)s" if start_ns is not None else "")
        )
        return sql, params


def sample_bound(factor: int) -> int:
    """The largest hash in a 1/``factor`` sample: hashes ``0 … 2**64 // factor - 1``."""
    return 2**64 // factor - 1


@dataclass
class Catalog:
    """What a store holds for the console: its ``sources`` (in the order the views offer them), which of
    :data:`EXPECTED_TABLES` are ``present`` (name → rows, ``None`` when absent), and the column names of
    the alert history (``alert_columns``)."""

    database: str
    sources: list[Source]
    present: dict[str, int | None]
    alert_columns: tuple[str, ...] = ()
    built_s: float = field(default_factory=time.monotonic)

    def source(self, source_id: str | None) -> Source:
        """The source named ``source_id`` (``table:task``, or a bare task name of ``flow_metrics``); the
        first one when ``None``/empty; :class:`ConsoleError` otherwise."""
        if not self.sources:
            raise ConsoleError(
                "this store has no flow data yet (no flow_metrics rows and no flows table): fill it with "
                "`netspectra analyze FILE --store`, an engine or `netspectra up`"
            )
        if not source_id:
            return self.sources[0]
        for s in self.sources:
            if source_id in (s.id, s.task) and (":" in source_id or s.table == FLOW_TABLE):
                return s
        names = ", ".join(s.id for s in self.sources)
        raise ConsoleError(f"unknown source {source_id[:80]!r}; this store has {names}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "sources": [s.to_dict() for s in self.sources],
            "tables": [
                {
                    "name": n,
                    "present": self.present.get(n) is not None,
                    "rows": self.present.get(n),
                    "holds": EXPECTED_TABLES.get(n, ""),
                }
                for n in EXPECTED_TABLES
            ],
            "alertColumns": list(self.alert_columns),
        }


def _columns(store: ClickHouseStore) -> dict[str, list[tuple[str, str]]]:
    """Physical columns (no ALIAS ones) of every table of the store's database: table → [(name, type)]."""
    rows = store.query(
        "SELECT table, name, type, default_kind FROM system.columns WHERE database = %(db)s",
        {"db": store.database},
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for table, name, typ, kind in rows:
        if kind != "ALIAS":
            out.setdefault(str(table), []).append((str(name), str(typ)))
    return out


def _first_present(names: Sequence[Sequence[str]], have: set[str]) -> tuple[str, ...]:
    return next((tuple(n) for n in names if all(c in have for c in n)), ())


def _ns_expr(name: str, typ: str) -> str:
    """SQL of a time column as Int64 nanoseconds (integer ns columns, DateTime64, DateTime)."""
    col = quote_identifier(name)
    if typ.startswith("DateTime64"):
        return f"toUnixTimestamp64Nano({col})"
    if typ.startswith("DateTime"):
        return f"toInt64(toUInt32({col})) * 1000000000"
    return f"toInt64({col})"


def catalog(
    store: ClickHouseStore,
    exact_tasks: Mapping[str, Sequence[str]],
    rollup_tasks: Mapping[str, Sequence[str]] | None = None,
) -> Catalog:
    """The :class:`Catalog` of ``store``: one ``flow_metrics`` source per exact task of the configuration
    (``exact_tasks``: name → key fields, in configuration order; the query service answers for those
    only), one per task of a ``flows`` table when there is one, and one per rollup task of the
    configuration (``rollup_tasks``: name → its dimensions) that stored rows (:func:`_rollup_sources`). A
    few small queries (columns, tables and their rows, the tasks of ``flows`` and of ``rollup_1h``)."""
    columns = _columns(store)
    counts = {
        str(n): int(r)
        for n, r in store.query(
            "SELECT name, total_rows FROM system.tables WHERE database = %(db)s", {"db": store.database}
        )
        if n in columns
    } if _has_total_rows(store) else {}  # fmt: skip
    present: dict[str, int | None] = {}
    for name in EXPECTED_TABLES:
        present[name] = counts.get(name, 0) if name in columns else None
    sources: list[Source] = []
    if FLOW_TABLE in columns:
        cols = columns[FLOW_TABLE]
        dims = [(n, t) for n, t in cols if n not in _SNAPSHOT_INTERNAL]
        for task, keyed in exact_tasks.items():
            fields: dict[str, FieldType] = {}
            for name, typ in dims:
                if name in KEY_COLUMNS and name not in keyed:
                    continue  # NULL in every row of this task
                ft = field_type(name, typ)
                if ft is not None:
                    fields[name] = ft
            keys = tuple(c for c in KEY_COLUMNS if c in fields)
            sources.append(
                Source(
                    f"{FLOW_TABLE}:{task}",
                    FLOW_TABLE,
                    task,
                    "snapshots",
                    fields,
                    keys,
                    axes=("first", "snapshot"),
                    sample_column="FlowHash",
                )
            )
    if RECORD_TABLE in columns:
        sources += _record_sources(store, columns[RECORD_TABLE])
    if rollup_tasks and ROLLUP_TABLE in columns:
        sources += _rollup_sources(store, columns[ROLLUP_TABLE], rollup_tasks)
    alert_cols = tuple(n for n, _ in columns.get(ALERT_TABLE, ()))
    return Catalog(store.database, sources, present, alert_cols)


def _rollup_sources(
    store: ClickHouseStore, cols: list[tuple[str, str]], rollup_tasks: Mapping[str, Sequence[str]]
) -> list[Source]:
    """A source per rollup task (configuration order) with rows in ``rollup_1h`` (which every row reaches):
    id ``rollup:<task>``, its dimensions as fields (typed as the rollup tables store them) and as keys
    (a rollup row is one tuple of them per bucket), traffic time only, not sampled. Visualize answers it
    from the coarsest rollup table that answers (:mod:`netspectra.storage.console.rollup`); the flow views
    refuse it (a rollup row is not a flow)."""
    types = dict(cols)
    rows = store.query(
        qualify(store, f"SELECT TaskName, count() FROM %TABLE:{ROLLUP_TABLE}% GROUP BY TaskName")
    )
    stored = {str(r[0]) for r in rows if int(r[1])}
    out = []
    for task, dims in rollup_tasks.items():
        if task not in stored:
            continue
        fields: dict[str, FieldType] = {}
        for name in dims:
            ft = field_type(name, types[name]) if name in types else None
            if ft is not None:
                fields[name] = ft
        out.append(Source(f"rollup:{task}", ROLLUP_TABLE, task, "rollup", fields, tuple(fields)))
    return out


def _has_total_rows(store: ClickHouseStore) -> bool:
    """Whether ``system.tables`` has ``total_rows`` (not on 18.16)."""
    rows = store.query(
        "SELECT count() FROM system.columns WHERE database = 'system' AND table = 'tables' "
        "AND name = 'total_rows'"
    )
    return bool(rows and rows[0][0])


def _record_sources(store: ClickHouseStore, cols: list[tuple[str, str]]) -> list[Source]:
    """Sources of a ``flows`` table (one per task when it has ``TaskName``): its time and counter
    columns found by name (see :data:`_RECORD_TIMES`, :data:`_RECORD_PACKETS`, :data:`_RECORD_BYTES`);
    none when it lacks them (logged). NetSpectra's own ``flows`` (schema.FLOWS, migration 2) is a
    ``ReplacingMergeTree`` on the record's identity and is read ``FINAL``, as ``ListFlows`` reads it; so is
    a ``Distributed`` table over it (FINAL goes to the shards)."""
    have = {n for n, _ in cols}
    types = dict(cols)
    times = _first_present(_RECORD_TIMES, have)
    packets = _first_present(_RECORD_PACKETS, have)
    nbytes = _first_present(_RECORD_BYTES, have)
    if not (times and packets and nbytes):
        log.warning(
            "console: table %s has no first/last seen or packet/byte columns; not offered", RECORD_TABLE
        )
        return []
    used = set(times) | set(packets) | set(nbytes) | _RECORD_BOOKKEEPING
    fields: dict[str, FieldType] = {}
    extra: list[str] = []
    for name, typ in cols:
        if name in used:
            continue
        ft = field_type(name, typ)
        if ft is not None:
            fields[name] = ft
        elif not typ.startswith("Array"):
            extra.append(name)
    keys = tuple(c for c in _RECORD_KEYS if c in fields)
    first, last = (_ns_expr(t, types[t]) for t in times)
    counters = (
        " + ".join(quote_identifier(c) for c in packets),
        " + ".join(quote_identifier(c) for c in nbytes),
    )
    tasks = [""]
    if "TaskName" in have:
        table = store.table(RECORD_TABLE)
        tasks = [str(r[0]) for r in store.query(f"SELECT DISTINCT TaskName FROM {table} ORDER BY TaskName")]
    sample = "FlowHash" if types.get("FlowHash") == "UInt64" else ""
    engine = store.query(
        "SELECT engine FROM system.tables WHERE database = %(db)s AND name = %(t)s",
        {"db": store.database, "t": RECORD_TABLE},
    )
    final = bool(engine) and ("Replacing" in str(engine[0][0]) or str(engine[0][0]) == "Distributed")
    return [
        Source(
            f"{RECORD_TABLE}:{task}",
            RECORD_TABLE,
            task,
            "records",
            fields,
            keys,
            tuple(extra),
            ("first",),
            sample,
            (first, last),
            counters,
            final,
        )
        for task in tasks
    ]


def qualify(store: ClickHouseStore, sql: str) -> str:
    """``sql`` with its ``%TABLE:name%`` markers replaced by the qualified table names."""
    out = sql
    while "%TABLE:" in out:
        i = out.index("%TABLE:")
        j = out.index("%", i + 7)
        out = out[:i] + store.table(out[i + 7 : j]) + out[j + 1 :]
    return out


# --------------------------------------------------------------------------------------------------
# Ranges, steps, samples
# --------------------------------------------------------------------------------------------------


def check_range(start_ns: int | None, end_ns: int | None) -> None:
    for name, v in (("start", start_ns), ("end", end_ns)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ConsoleError(f"{name} must be a time at or after 1970-01-01 (ns), got {v!r}")
    if start_ns is not None and end_ns is not None and start_ns > end_ns:
        raise ConsoleError("start is after end")


def extent(store: ClickHouseStore, src: Source, axis: str) -> tuple[int, int] | None:
    """``(first, last)`` time on ``axis`` of the source's rows (UTC ns), ``None`` when it has none."""
    params: dict[str, object] = {"task": src.task}
    where = "TaskName = %(task)s" if src.task else "1"
    table = src.table
    if src.kind == "records":
        first, _ = src.times
        expr = first
    elif src.kind == "rollup":  # its traffic's first and last minute (the finest table's bucket starts)
        expr, table = "BucketNs", RESOLUTIONS[0].table
    else:
        expr = "StartNs" if axis == "first" else "TimestampNs"
    rows = store.query(
        qualify(store, f"SELECT min({expr}), max({expr}), count() FROM %TABLE:{table}% WHERE {where}"),
        params,
    )
    if not rows or not rows[0][2]:
        return None
    last = int(rows[0][1]) + (RESOLUTIONS[0].ns - 1 if src.kind == "rollup" else 0)
    return int(rows[0][0]), last


def parts_version(store: ClickHouseStore, table: str) -> str | None:
    """A fingerprint of the data of ``table`` on one node: the names of its active parts (a part's name
    changes with every insert, merge, mutation or dropped partition, so equal names mean equal rows), or
    ``None`` where it does not say so (a cluster: the parts lie on the shards). One small query of
    ``system.parts``."""
    if store.layout.clustered:
        return None
    rows = store.query(
        "SELECT name FROM system.parts WHERE database = %(db)s AND table = %(t)s AND active ORDER BY name",
        {"db": store.database, "t": table},
    )
    return ",".join(str(r[0]) for r in rows)


def choose_step(start_ns: int, end_ns: int, points: int) -> int:
    """The bucket width (ns) of a series over ``[start_ns, end_ns]`` with at most ``points`` buckets:
    the smallest of :data:`STEPS_S` that fits (a larger multiple of a year beyond)."""
    span = max(end_ns - start_ns, 1)
    for s in STEPS_S:
        if math.ceil((span + 1) / (s * NS)) <= points:
            return s * NS
    return math.ceil(span / points / (365 * 86400 * NS)) * 365 * 86400 * NS


#: A range's rows are estimated from a 1/ESTIMATE hash sample when the table is too big to read whole.
ESTIMATE = 64


def sample_factor(
    store: ClickHouseStore,
    src: Source,
    axis: str,
    start_ns: int | None,
    end_ns: int | None,
    budget: int,
    extent: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """``(factor, rows)``: the rows of the source the range reads (before any filter) and the smallest
    power of two ``factor`` with ``rows / factor <= budget`` (1 when the source cannot be sampled or
    ``budget`` <= 0). Cheap: the task's rows are counted from the sorting key's head; only when they
    exceed the budget and the range is not the whole ``extent`` are the range's rows estimated, from a
    1/:data:`ESTIMATE` hash sample (a few granules)."""
    if not src.sample_column or budget <= 0:
        return 1, 0
    where = ["TaskName = %(task)s"] if src.task else []
    params: dict[str, object] = {"task": src.task}
    count = f"SELECT count() FROM %TABLE:{src.table}% WHERE "
    total = int(store.query(qualify(store, count + (" AND ".join(where) or "1")), params)[0][0])
    if total <= budget:
        return 1, total
    col = src.times[0] if src.kind == "records" else ("StartNs" if axis == "first" else "TimestampNs")
    rows = total
    if start_ns is None and end_ns is None:
        whole = True
    else:
        whole = extent is not None and (start_ns is None or start_ns <= extent[0])
        whole = whole and (end_ns is None or (extent is not None and end_ns >= extent[1]))
    if not whole:
        if start_ns is not None and (src.kind == "records" or axis == "first"):
            where.append(f"{col} >= %(start)s")
            params["start"] = start_ns
        if end_ns is not None:
            where.append(f"{col} <= %(end)s")
            params["end"] = end_ns
        where.append(f"{quote_identifier(src.sample_column)} <= %(hi)s")
        params["hi"] = sample_bound(ESTIMATE)
        rows = ESTIMATE * int(store.query(qualify(store, count + " AND ".join(where)), params)[0][0])
    factor = 1
    while rows / factor > budget and factor < MAX_SAMPLE:
        factor *= 2
    return factor, rows


def jsonable(row: Sequence[Any]) -> list[Any]:
    """Values of a result row fit for JSON (bytes decoded, non-finite floats as null, others as text)."""
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
