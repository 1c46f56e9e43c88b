"""The ClickHouse tables of NetSpectra, declared once, and the client-side binding of query parameters.

**A table is a declaration** (:class:`Table`, registered in :data:`TABLES`): its columns, sorting key,
partitions, engine, the shard of a row in cluster mode and its retention. Everything else is derived
from the declaration: the ``CREATE TABLE`` of one node, of a cluster's local and Distributed tables
(:mod:`~netspectra.storage.cluster`), the engines and columns :mod:`~netspectra.storage.migrations`
checks, and the partitions retention drops (:mod:`~netspectra.storage.retention`). A table is created by
exactly one schema migration (``Migration(n, …, creates=(name,))``, checked at import).

One schema and one SQL dialect for both engines: the embedded chdb (a current ClickHouse) and the oldest
server we support, Debian's ClickHouse 18.16. So: no DateTime64, no TTL, no CTEs, no window functions and
no server-side ``{x:Type}`` parameters; values are bound on the client by :func:`bind` (typed, quoted,
never able to change a query's structure). Retention is therefore not a table TTL but whole partitions
dropped once their newest row is older than the table's retention setting.

Tables (the original's two, with its flaws fixed; see docs/storage.md for the reasoning and numbers):

``flow_metrics``
    One row per flow *that changed* since the writer's previous snapshot of the same task and period,
    with the flow's cumulative counters since the period start. Key fields a task does not use are NULL,
    as in the original. ``FlowHash`` is a 64-bit hash of the key computed by the writer (it only orders
    rows; queries never rely on it). Times are UTC nanoseconds in integer columns (exact, engine-independent);
    ``Timestamp``, ``PeriodStart``, ``StartTime`` and ``EndTime`` are ``DateTime('UTC')`` ALIAS columns
    (seconds) computed from them, so the original's column names still work in SQL and cost nothing.
``heavy_hitters``
    One row per reported heavy hitter per snapshot, ``Type`` 0 count, 1 size, 2 spread.
``flows``
    The flow records of ``flows`` tasks (issue 14; :mod:`netspectra.flows`): one row per record, written
    once when the record ends (a snapshot of a flows task holds the records ended since the previous one).
    ``ReplacingMergeTree(TimestampNs)`` on the record's identity (task, first packet, key), so a retried
    write stores the record once; queries read ``FINAL``. Partitions are UTC days of the record's *first
    packet* (the traffic's own time: a capture from 2019 lands in 2019's partitions), retention
    (``clickhouse.flows_retention``) drops a day once its newest *write* is older than it. The sorting key
    starts with the task and the first packet's time: time-range listings read a contiguous range.
``rollup_1m``, ``rollup_5m``, ``rollup_1h``
    The rows of ``rollup`` tasks (:mod:`netspectra.rollup`): traffic (``Packets``, ``Bytes``) per bucket of
    the traffic's *own* time (``BucketNs``: the bucket's start, UTC ns; a capture from 2019 lands in
    2019) and per tuple of dimensions (``Protocol``, ``Exporter``, ``InIf``, ``OutIf`` and every
    enrichment column: AS numbers as integers, countries, names and classes as text, 0 / ``''`` unknown).
    A row is cumulative for its identity — task, bucket, dimensions, period (``PeriodStartNs``) and
    ``Epoch`` (a bucket re-opened by late traffic gets a new epoch) —: ``ReplacingMergeTree(TimestampNs)``
    keeps the newest version (a retried write, a provisional row and its final value store each count
    once) and rows of different identities add up; queries read ``FINAL`` and sum. Partitions: UTC days of
    the bucket (1 min, 5 min), months (1 h); each has its own retention key (``rollup_1m_retention``,
    ``rollup_5m_retention``, ``rollup_1h_retention``: a week, 90 days and two years by default), applied
    to the newest *write* of a partition.
``exporters``
    The flow exporters seen by ``exporters`` tasks (issue 15; :mod:`netspectra.collect.exporters_kind`):
    one row per task, exporter and period, the state at the snapshot (first and last record time,
    records, packets and bytes scaled by the sampling rate, records per sampling rate);
    ``ReplacingMergeTree(TimestampNs)`` on (task, exporter, period): the newest snapshot of a period
    stays. ``netspectra query exporters`` sums the periods.
``alerts``
    The alert history (:class:`~netspectra.storage.alerts.AlertStoreSink`): one row per fired rule per
    notification (a sketch rule: one row per flow that passed), with the notification's subject, the
    notifiers that delivered it and those that failed (JSON text), and the AI analysis status. A plain
    ``MergeTree`` ordered by time; partitions are days of the alert time.

The first two are ``ReplacingMergeTree(TimestampNs)``: rows with the same sorting key — task, period,
flow (and type), history bucket — are merged into the newest one. ``Bucket`` is the snapshot time
rounded down to the writer's ``history_resolution``; so storage holds at most one row per flow per period
per bucket, however many snapshots are taken, and queries "as of" a past time stay exact at bucket boundaries.
Queries never rely on merges having happened: they take ``argMax(…, TimestampNs)`` per flow and period.

Partitions are days of ``PeriodStart`` (UTC): every version of a flow's row lies in one partition (so
merges can replace them), and retention drops whole periods; alert days are dropped by the same
mechanism once their newest alert is older than the retention.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from netspectra.fields import BY_NAME, FIELD_NAMES, KEY_FIELDS

#: Table names (in the configured database).
FLOW_TABLE = "flow_metrics"
HITTER_TABLE = "heavy_hitters"
ALERT_TABLE = "alerts"
FLOW_RECORDS_TABLE = "flows"
EXPORTER_TABLE = "exporters"

#: ``clickhouse.sharding_key``: ``flow`` (each table's :attr:`Table.shard_by`), ``task``, ``random``.
SHARDING_KEYS: tuple[str, ...] = ("flow", "task", "random")


def seconds_of(ns_column: str) -> str:
    """SQL of a ``DateTime('UTC')`` (seconds) from a UTC nanoseconds column."""
    return f"toDateTime(intDiv({ns_column}, 1000000000), 'UTC')"


def day_of(ns_column: str) -> str:
    """SQL of the UTC day (``YYYYMMDD``) of a nanoseconds column: the usual partition key."""
    return f"toYYYYMMDD({seconds_of(ns_column)})"


@dataclass(frozen=True)
class Table:
    """The declaration of one data table (see the module docstring).

    ``columns``: the physical columns in insert order, ``(name, ClickHouse type)``. ``aliases``:
    ``(name, ns column)`` pairs made ``DateTime('UTC') ALIAS`` columns (seconds). ``engine`` and
    ``engine_args``: a ``*MergeTree`` family engine (``ReplacingMergeTree`` with ``("TimestampNs",)``,
    ``SummingMergeTree``, ``MergeTree`` with none); cluster mode with ``replicated`` makes it the
    ``Replicated`` variant. ``shard_by``: the sharding expression for ``sharding_key: flow`` — it must
    send every row that shares a sorting key (the versions the engine merges) to one shard.
    ``retention_time``: the UTC-ns column whose newest value in a partition decides when retention drops
    the partition (empty: never dropped); ``retention_setting``: the ``clickhouse`` key holding that
    duration (``retention``; a rollup would have its own).
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    order_by: str
    partition_by: str
    engine: str = "MergeTree"
    engine_args: tuple[str, ...] = ()
    #: A primary key shorter than the sorting key (a prefix of it; empty: the sorting key itself).
    primary_key: str = ""
    aliases: tuple[tuple[str, str], ...] = ()
    shard_by: str = "cityHash64(TaskName)"
    retention_time: str = ""
    retention_setting: str = "retention"
    description: str = ""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.columns)

    @property
    def required_columns(self) -> frozenset[str]:
        """The columns a table of this name must have to be NetSpectra's (physical and ALIAS)."""
        return frozenset(self.column_names) | {n for n, _ in self.aliases}

    def sharding_expression(self, sharding_key: str) -> str:
        """The Distributed table's sharding expression for a ``clickhouse.sharding_key``."""
        if sharding_key == "flow":
            return self.shard_by
        if sharding_key == "task":
            return "cityHash64(TaskName)"
        if sharding_key == "random":
            return "rand()"
        raise ValueError(f"not a sharding key: {sharding_key!r}; valid: {', '.join(SHARDING_KEYS)}")

    def create_sql(
        self,
        qualified_name: str,
        *,
        on_cluster: str = "",
        replicated: tuple[str, str] | None = None,
        distributed: tuple[str, str, str, str] | None = None,
    ) -> str:
        """``CREATE TABLE IF NOT EXISTS`` of this table as ``qualified_name`` (already quoted,
        ``db.name``), every value written as a literal.

        ``on_cluster``: a cluster name (distributed DDL, ``ON CLUSTER``). ``replicated``: (ZooKeeper path,
        replica name) → the ``Replicated`` variant of the engine. ``distributed``: (cluster, database,
        local table, sharding expression) → a ``Distributed`` table with the same columns (no partition or
        order); the expression must be one of :meth:`sharding_expression`'s (names are quoted here).
        """
        cols = [f"    {name} {typ}" for name, typ in self.columns]
        cols += [f"    {name} DateTime('UTC') ALIAS {seconds_of(src)}" for name, src in self.aliases]
        body = ",\n".join(cols)
        cluster = f" ON CLUSTER {quote_identifier(on_cluster)}" if on_cluster else ""
        head = f"CREATE TABLE IF NOT EXISTS {qualified_name}{cluster} (\n{body}\n)\n"
        if distributed is not None:
            dcluster, database, local, key = distributed
            if key not in {self.sharding_expression(k) for k in SHARDING_KEYS}:
                raise ValueError(f"not a known sharding expression of {self.name}: {key!r}")
            args = ", ".join((quote_string(dcluster), quote_string(database), quote_string(local), key))
            return f"{head}ENGINE = Distributed({args})"
        engine, params = self.engine, list(self.engine_args)
        if replicated is not None:
            engine = "Replicated" + engine
            params = [quote_string(replicated[0]), quote_string(replicated[1]), *params]
        primary = f"PRIMARY KEY ({self.primary_key})\n" if self.primary_key else ""
        return (
            f"{head}ENGINE = {engine}({', '.join(params)})\nPARTITION BY {self.partition_by}\n"
            f"{primary}ORDER BY ({self.order_by})"
        )

    def expired_partitions_sql(self, qualified_name: str) -> str:
        """The partitions whose newest :attr:`retention_time` is older than ``%(cutoff_ns)s``, oldest first
        (empty if the table is never expired)."""
        if not self.retention_time:
            return ""
        return (
            f"SELECT {self.partition_by} AS p FROM {qualified_name} "
            f"GROUP BY p HAVING max({self.retention_time}) < %(cutoff_ns)s ORDER BY p"
        )


# --------------------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------------------

#: Physical columns of ``flow_metrics`` in insert order, with their ClickHouse types.
FLOW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TimestampNs", "UInt64"),
    ("PeriodStartNs", "UInt64"),
    ("Bucket", "DateTime('UTC')"),
    ("TaskName", "String"),
    ("FlowHash", "UInt64"),
    ("SrcIP", "Nullable(String)"),
    ("DstIP", "Nullable(String)"),
    ("SrcPort", "Nullable(UInt16)"),
    ("DstPort", "Nullable(UInt16)"),
    ("Protocol", "Nullable(UInt8)"),
    # the other key fields (schema version 3): VlanID, ExporterAddress, InIf, OutIf, the enrichment
    # columns; addresses and dictionary text as String
    *((f.name, f"Nullable({f.clickhouse})") for f in KEY_FIELDS if not f.is_packet_field),
    ("StartNs", "Int64"),
    ("EndNs", "Int64"),
    ("ByteCount", "UInt64"),
    ("PacketCount", "UInt64"),
)
#: Physical columns of ``heavy_hitters`` in insert order.
HITTER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TimestampNs", "UInt64"),
    ("PeriodStartNs", "UInt64"),
    ("Bucket", "DateTime('UTC')"),
    ("TaskName", "String"),
    ("Flow", "String"),
    ("Value", "UInt64"),
    ("Type", "UInt8"),
)
#: Physical columns of ``alerts`` in insert order. ``Flow`` is NULL for exact rules; ``Delivered`` is a
#: JSON list of notifier names, ``Failed`` a JSON object notifier → error; ``AiAnalysis`` the AI analysis text
#: sent with the alert ('' when there was none: AI off or failed, see ``AiStatus``; migration 6 added it);
#: ``Final`` 1 for the stop check.
ALERT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TimestampNs", "UInt64"),
    ("TaskName", "String"),
    ("RuleName", "String"),
    ("Metric", "String"),
    ("Operator", "String"),
    ("Threshold", "Float64"),
    ("Value", "Float64"),
    ("Flow", "Nullable(String)"),
    ("Subject", "String"),
    ("Delivered", "String"),
    ("Failed", "String"),
    ("AiStatus", "String"),
    ("AiAnalysis", "String"),
    ("Final", "UInt8"),
)
#: Physical columns of ``flows`` in insert order: the columns of
#: :data:`netspectra.flows.records.FLOW_RECORDS_SCHEMA` (times and durations as integer ns) and the
#: first packets' sizes and directions (empty arrays when the task keeps no SPLT).
FLOW_RECORD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TimestampNs", "UInt64"),
    ("PeriodStartNs", "UInt64"),
    ("TaskName", "String"),
    ("FlowHash", "UInt64"),
    ("SrcIP", "String"),
    ("DstIP", "String"),
    ("SrcPort", "UInt16"),
    ("DstPort", "UInt16"),
    ("Protocol", "UInt8"),
    ("VlanID", "UInt16"),
    ("FirstSeenNs", "Int64"),
    ("LastSeenNs", "Int64"),
    ("DurationNs", "Int64"),
    ("SrcToDstPackets", "UInt64"),
    ("SrcToDstBytes", "UInt64"),
    ("DstToSrcPackets", "UInt64"),
    ("DstToSrcBytes", "UInt64"),
    ("EndReason", "String"),
    ("ConnState", "Nullable(String)"),
    ("SrcToDstIPBytes", "Nullable(UInt64)"),
    ("DstToSrcIPBytes", "Nullable(UInt64)"),
    ("SrcToDstTCPFlags", "Nullable(UInt8)"),
    ("DstToSrcTCPFlags", "Nullable(UInt8)"),
    ("SrcToDstSYN", "Nullable(UInt32)"),
    ("SrcToDstFIN", "Nullable(UInt32)"),
    ("SrcToDstRST", "Nullable(UInt32)"),
    ("DstToSrcSYN", "Nullable(UInt32)"),
    ("DstToSrcFIN", "Nullable(UInt32)"),
    ("DstToSrcRST", "Nullable(UInt32)"),
    ("SrcToDstICMPTypeCode", "Nullable(UInt16)"),
    ("DstToSrcICMPTypeCode", "Nullable(UInt16)"),
    *(
        (f"{d}{stat}", typ)
        for d in ("SrcToDst", "DstToSrc")
        for stat, typ in (
            ("SizeMin", "Nullable(UInt32)"),
            ("SizeMax", "Nullable(UInt32)"),
            ("SizeMean", "Nullable(Float64)"),
            ("SizeStddev", "Nullable(Float64)"),
            ("IATMinNs", "Nullable(Int64)"),
            ("IATMaxNs", "Nullable(Int64)"),
            ("IATMeanNs", "Nullable(Int64)"),
            ("IATStddevNs", "Nullable(Int64)"),
        )
    ),
    ("SpltSize", "Array(UInt32)"),
    ("SpltDirection", "Array(UInt8)"),
)
#: Physical columns of ``exporters`` in insert order: per exporters task, exporter and period, the state
#: at the snapshot (cumulative in the period; the newest row of a period replaces the older ones).
EXPORTER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("TimestampNs", "UInt64"),
    ("PeriodStartNs", "UInt64"),
    ("TaskName", "String"),
    ("Exporter", "String"),
    ("FirstSeenNs", "Int64"),
    ("LastSeenNs", "Int64"),
    ("Records", "UInt64"),
    ("Packets", "UInt64"),
    ("Bytes", "UInt64"),
    ("SamplingRates", "Array(UInt32)"),
    ("RecordsPerRate", "Array(UInt64)"),
    ("RecordsWithoutRate", "UInt64"),
)
#: Flow-key columns of ``flow_metrics`` (NULL where the task does not key on the field): every key field.
KEY_COLUMNS: tuple[str, ...] = FIELD_NAMES
#: The key columns schema version 3 added to ``flow_metrics`` (the fields beyond the original five).
ADDED_KEY_COLUMNS: tuple[str, ...] = tuple(f.name for f in KEY_FIELDS if not f.is_packet_field)


def key_default(name: str) -> str:
    """The SQL literal standing for a NULL key column in sorting keys and distinct counts."""
    return "''" if BY_NAME[name].clickhouse == "String" else "0"


def key_expression(name: str) -> str:
    """``ifNull(<column>, <default>)``: a key column as sorting keys and distinct counts take it."""
    return f"ifNull({name}, {key_default(name)})"


#: The sorting key of ``flow_metrics`` up to schema version 2 (its primary key since version 3).
FLOW_PRIMARY_KEY = (
    "TaskName, PeriodStartNs, FlowHash, ifNull(SrcIP, ''), ifNull(DstIP, ''), ifNull(SrcPort, 0), "
    "ifNull(DstPort, 0), ifNull(Protocol, 0), Bucket"
)
#: Version 3 appends the added key columns (ClickHouse lets an ALTER append only columns it adds).
FLOW_ORDER_BY = FLOW_PRIMARY_KEY + "".join(f", {key_expression(c)}" for c in ADDED_KEY_COLUMNS)

_PERIOD_DAY = day_of("PeriodStartNs")

FLOW_METRICS = Table(
    FLOW_TABLE,
    FLOW_COLUMNS,
    # FlowHash first: the writer sends rows sorted by it, so the server's sort of an insert is nearly free
    # (measured: 0.7 -> 1.1-1.2 M rows/s); the key columns follow, so flows with equal hashes stay
    # distinct. ifNull: the sorting key may not contain Nullable columns; a field is NULL either in every
    # row of a task or in none, so '' / 0 never collide with real values of the same task. The key
    # columns of version 3 follow Bucket (an ALTER can only append them); the primary key (the index)
    # stays the version-2 prefix, so a new table and a migrated one are alike.
    order_by=FLOW_ORDER_BY,
    primary_key=FLOW_PRIMARY_KEY,
    partition_by=_PERIOD_DAY,
    engine="ReplacingMergeTree",
    engine_args=("TimestampNs",),
    aliases=(
        ("Timestamp", "TimestampNs"),
        ("PeriodStart", "PeriodStartNs"),
        ("StartTime", "StartNs"),
        ("EndTime", "EndNs"),
    ),
    shard_by="FlowHash",
    retention_time="TimestampNs",
    description="exact tasks: the changed flows of each snapshot, counters cumulative in the period",
)
HEAVY_HITTERS = Table(
    HITTER_TABLE,
    HITTER_COLUMNS,
    order_by="TaskName, Type, PeriodStartNs, Flow, Bucket",
    partition_by=_PERIOD_DAY,
    engine="ReplacingMergeTree",
    engine_args=("TimestampNs",),
    aliases=(("Timestamp", "TimestampNs"), ("PeriodStart", "PeriodStartNs")),
    shard_by="cityHash64(TaskName, Flow)",
    retention_time="TimestampNs",
    description="sketch tasks: the heavy hitters of each snapshot",
)
ALERTS = Table(
    ALERT_TABLE,
    ALERT_COLUMNS,
    order_by="TimestampNs, TaskName, RuleName",
    partition_by=day_of("TimestampNs"),
    aliases=(("Timestamp", "TimestampNs"),),
    shard_by="cityHash64(TaskName, RuleName)",
    retention_time="TimestampNs",
    description="the alert history",
)

FLOWS = Table(
    FLOW_RECORDS_TABLE,
    FLOW_RECORD_COLUMNS,
    order_by="TaskName, FirstSeenNs, SrcIP, DstIP, SrcPort, DstPort, Protocol, VlanID",
    partition_by=day_of("FirstSeenNs"),
    engine="ReplacingMergeTree",
    engine_args=("TimestampNs",),
    aliases=(
        ("Timestamp", "TimestampNs"),
        ("PeriodStart", "PeriodStartNs"),
        ("FirstSeen", "FirstSeenNs"),
        ("LastSeen", "LastSeenNs"),
    ),
    shard_by="FlowHash",
    retention_time="TimestampNs",
    retention_setting="flows_retention",
    description="flows tasks: one row per flow record, written when it ends",
)


def month_of(ns_column: str) -> str:
    """SQL of the UTC month (``YYYYMM``) of a nanoseconds column: the partitions of long-lived tables."""
    return f"toYYYYMM({seconds_of(ns_column)})"


def _rollup_columns() -> tuple[tuple[str, str], ...]:
    from netspectra.rollup.dims import DIMENSIONS

    return (
        ("TimestampNs", "UInt64"),
        ("PeriodStartNs", "UInt64"),
        ("TaskName", "String"),
        ("BucketNs", "Int64"),
        ("Epoch", "UInt32"),
        *((d.name, d.clickhouse) for d in DIMENSIONS),
        ("Packets", "UInt64"),
        ("Bytes", "UInt64"),
    )


#: Physical columns of the rollup tables in insert order: bookkeeping, the bucket, every dimension of
#: :data:`netspectra.rollup.dims.DIMENSIONS` (a task's other dimensions hold 0 / ''), the counters.
ROLLUP_COLUMNS: tuple[tuple[str, str], ...] = _rollup_columns()
#: The dimension columns of the rollup tables.
ROLLUP_DIMENSIONS: tuple[str, ...] = tuple(n for n, _ in ROLLUP_COLUMNS[5:-2])


def _rollup_table(resolution: object) -> Table:
    from netspectra.rollup.dims import Resolution

    assert isinstance(resolution, Resolution)
    return Table(
        resolution.table,
        ROLLUP_COLUMNS,
        # the bucket right after the task: a time range reads a contiguous range of the key
        order_by=f"TaskName, BucketNs, {', '.join(ROLLUP_DIMENSIONS)}, PeriodStartNs, Epoch",
        partition_by=month_of("BucketNs") if resolution.seconds >= 3600 else day_of("BucketNs"),
        engine="ReplacingMergeTree",
        engine_args=("TimestampNs",),
        aliases=(("Timestamp", "TimestampNs"), ("PeriodStart", "PeriodStartNs"), ("Bucket", "BucketNs")),
        # every version of a row on one shard (FINAL); a bucket's rows together
        shard_by="cityHash64(TaskName, BucketNs)",
        retention_time="TimestampNs",
        retention_setting=resolution.retention_setting,
        description=f"rollup tasks: traffic per {resolution.label} bucket and dimensions",
    )


def _rollup_tables() -> tuple[Table, ...]:
    from netspectra.rollup.dims import RESOLUTIONS

    return tuple(_rollup_table(r) for r in RESOLUTIONS)


#: The rollup tables, finest first (one per :data:`netspectra.rollup.dims.RESOLUTIONS`).
ROLLUPS: tuple[Table, ...] = _rollup_tables()
ROLLUP_TABLES: tuple[str, ...] = tuple(t.name for t in ROLLUPS)

EXPORTERS = Table(
    EXPORTER_TABLE,
    EXPORTER_COLUMNS,
    order_by="TaskName, Exporter, PeriodStartNs",
    partition_by=_PERIOD_DAY,
    engine="ReplacingMergeTree",
    engine_args=("TimestampNs",),
    aliases=(
        ("Timestamp", "TimestampNs"),
        ("PeriodStart", "PeriodStartNs"),
        ("FirstSeen", "FirstSeenNs"),
        ("LastSeen", "LastSeenNs"),
    ),
    shard_by="cityHash64(TaskName, Exporter)",
    retention_time="TimestampNs",
    description="exporters tasks: per flow exporter and period, records, packets, bytes, sampling rates",
)

#: Every data table, in creation order: name → declaration. Adding one: declare it here and create it
#: in a new migration (:data:`netspectra.storage.migrations.MIGRATIONS`).
TABLES: dict[str, Table] = {
    t.name: t for t in (FLOW_METRICS, HEAVY_HITTERS, ALERTS, FLOWS, *ROLLUPS, EXPORTERS)
}


def create_table_sql(
    table: str,
    qualified_name: str,
    *,
    on_cluster: str = "",
    replicated: tuple[str, str] | None = None,
    distributed: tuple[str, str, str, str] | None = None,
) -> str:
    """:meth:`Table.create_sql` of the table named ``table``."""
    return TABLES[table].create_sql(
        qualified_name, on_cluster=on_cluster, replicated=replicated, distributed=distributed
    )


#: ``CREATE TABLE IF NOT EXISTS {db}.<table> …`` (``{db}``: the quoted database) of the tables NetSpectra
#: created before schema versions existed (they are schema version 1): such databases are adopted.
CREATE_TABLES: dict[str, str] = {
    name: TABLES[name].create_sql("{db}." + name) for name in (FLOW_TABLE, HITTER_TABLE, ALERT_TABLE)
}
#: Derived from :data:`TABLES`, for the callers that index by name.
#: Columns each table must have; an existing table without them (e.g. the original's) is refused.
REQUIRED_COLUMNS: dict[str, frozenset[str]] = {name: t.required_columns for name, t in TABLES.items()}
#: Cluster mode: the sharding expression of each table per ``clickhouse.sharding_key``.
SHARDING_EXPRESSIONS: dict[str, dict[str, str]] = {
    key: {name: t.sharding_expression(key) for name, t in TABLES.items()} for key in SHARDING_KEYS
}

# --------------------------------------------------------------------------------------------------
# Client-side parameters
# --------------------------------------------------------------------------------------------------

#: A quoted identifier or string literal (left as it is by bind), or a placeholder (group 1).
_BIND_TOKEN = re.compile(r"`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|%\((\w+)\)s", re.S)
_IDENTIFIER_ESCAPES = {"\\": "\\\\", "`": "\\`"}
_UINT64_MAX = 2**64 - 1


def quote_identifier(name: str) -> str:
    """``name`` as a back-quoted ClickHouse identifier (any text; quotes and backslashes escaped)."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"not a usable identifier: {name!r}")
    return "`" + "".join(_IDENTIFIER_ESCAPES.get(c, c) for c in name) + "`"


def quote_string(value: str) -> str:
    """``value`` as a ClickHouse string literal that parses back to exactly ``value``.

    Backslash and quote are escaped, and every control character is written as ``\\xHH`` (so a NUL or a
    newline can neither end the query text early nor reach the server raw). Works on 18.16 and on current
    versions alike.
    """
    out = ["'"]
    for c in value:
        if c == "\\" or c == "'":
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    out.append("'")
    return "".join(out)


def literal(value: object) -> str:
    """A typed SQL literal: ``int`` (within Int64..UInt64) or ``str``; anything else is a ``TypeError``."""
    if isinstance(value, bool):
        raise TypeError("bool is not a query parameter type; pass 0 or 1")
    if isinstance(value, int):
        if not -(2**63) <= value <= _UINT64_MAX:
            raise ValueError(f"integer parameter {value} is out of the 64-bit range")
        return str(value)
    if isinstance(value, str):
        return quote_string(value)
    raise TypeError(f"query parameters must be int or str, got {type(value).__name__}")


def bind(sql: str, params: Mapping[str, object] | None = None) -> str:
    """``sql`` with every ``%(name)s`` replaced by :func:`literal` of ``params[name]``.

    The template is scanned once, so a value containing ``%(x)s`` is never expanded; text inside quoted
    identifiers and string literals (`` `db` ``, ``"x"``, ``'s'``) is never a placeholder, so a database
    or table name containing ``%(x)s`` stays as it is. A placeholder without a value is a ``KeyError``, a
    value without a placeholder a ``ValueError`` (a likely bug in the caller).
    """
    params = params or {}
    used: set[str] = set()

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:  # a quoted identifier or literal: as it is
            return m.group(0)
        if name not in params:
            raise KeyError(f"no value for query parameter {name!r}")
        used.add(name)
        return literal(params[name])

    out = _BIND_TOKEN.sub(sub, sql)
    unused = set(params) - used
    if unused:
        raise ValueError(f"query parameters not used by the query: {sorted(unused)}")
    return out
