"""ClickHouse tables of NetSpectra and the client-side binding of query parameters.

One schema and one SQL dialect for both engines: the embedded chdb (a current ClickHouse) and the oldest
server we support, Debian's ClickHouse 18.16. So: no DateTime64, no TTL, no CTEs, no window functions and
no server-side ``{x:Type}`` parameters; values are bound on the client by :func:`bind` (typed, quoted,
never able to change a query's structure).

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
merges can replace them), and retention drops whole periods (:data:`EXPIRED_PARTITIONS_SQL`); alert
days are dropped by the same mechanism once their newest alert is older than the retention.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

#: Table names (in the configured database).
FLOW_TABLE = "flow_metrics"
HITTER_TABLE = "heavy_hitters"
ALERT_TABLE = "alerts"

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
#: JSON list of notifier names, ``Failed`` a JSON object notifier → error; ``Final`` 1 for the stop check.
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
    ("Final", "UInt8"),
)
#: Flow-key columns of ``flow_metrics`` (NULL where the task does not key on the field).
KEY_COLUMNS: tuple[str, ...] = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")


def _seconds(ns_column: str) -> str:
    return f"toDateTime(intDiv({ns_column}, 1000000000), 'UTC')"


_PARTITION = f"toYYYYMMDD({_seconds('PeriodStartNs')})"
_FLOW_ALIASES = (
    ("Timestamp", "TimestampNs"),
    ("PeriodStart", "PeriodStartNs"),
    ("StartTime", "StartNs"),
    ("EndTime", "EndNs"),
)
_HITTER_ALIASES = (("Timestamp", "TimestampNs"), ("PeriodStart", "PeriodStartNs"))
# FlowHash first: the writer sends rows sorted by it, so the server's sort of an insert is nearly free
# (measured: 0.7 -> 1.1-1.2 M rows/s); the key columns follow, so flows with equal hashes stay distinct.
# ifNull: the sorting key may not contain Nullable columns; a field is NULL either in every row of a task
# or in none, so '' / 0 never collide with real values of the same task.
_FLOW_ORDER = (
    "TaskName, PeriodStartNs, FlowHash, ifNull(SrcIP, ''), ifNull(DstIP, ''), ifNull(SrcPort, 0), "
    "ifNull(DstPort, 0), ifNull(Protocol, 0), Bucket"
)
_HITTER_ORDER = "TaskName, Type, PeriodStartNs, Flow, Bucket"
_ALERT_PARTITION = f"toYYYYMMDD({_seconds('TimestampNs')})"
_ALERT_ORDER = "TimestampNs, TaskName, RuleName"


def _create(
    table: str,
    columns: tuple[tuple[str, str], ...],
    aliases: tuple[tuple[str, str], ...],
    order: str,
    engine: str = "ReplacingMergeTree(TimestampNs)",
    partition: str = _PARTITION,
) -> str:
    cols = [f"    {name} {typ}" for name, typ in columns]
    cols += [f"    {name} DateTime('UTC') ALIAS {_seconds(src)}" for name, src in aliases]
    body = ",\n".join(cols)
    return (
        f"CREATE TABLE IF NOT EXISTS {{db}}.{table} (\n{body}\n)\n"
        f"ENGINE = {engine}\nPARTITION BY {partition}\nORDER BY ({order})"
    )


_ALERT_ALIASES = (("Timestamp", "TimestampNs"),)


#: ``CREATE TABLE IF NOT EXISTS`` statements; ``{db}`` is replaced by the quoted database name.
CREATE_TABLES: dict[str, str] = {
    FLOW_TABLE: _create(FLOW_TABLE, FLOW_COLUMNS, _FLOW_ALIASES, _FLOW_ORDER),
    HITTER_TABLE: _create(HITTER_TABLE, HITTER_COLUMNS, _HITTER_ALIASES, _HITTER_ORDER),
    ALERT_TABLE: _create(
        ALERT_TABLE, ALERT_COLUMNS, _ALERT_ALIASES, _ALERT_ORDER, "MergeTree()", _ALERT_PARTITION
    ),
}
#: The data tables: columns, ALIAS columns, sorting key, engine name, version column, partition key.
TABLE_SPECS: dict[
    str, tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...], str, str, str, str]
] = {
    FLOW_TABLE: (FLOW_COLUMNS, _FLOW_ALIASES, _FLOW_ORDER, "ReplacingMergeTree", "TimestampNs", _PARTITION),
    HITTER_TABLE: (
        HITTER_COLUMNS,
        _HITTER_ALIASES,
        _HITTER_ORDER,
        "ReplacingMergeTree",
        "TimestampNs",
        _PARTITION,
    ),
    ALERT_TABLE: (ALERT_COLUMNS, _ALERT_ALIASES, _ALERT_ORDER, "MergeTree", "", _ALERT_PARTITION),
}
#: Cluster mode: the sharding expression of each table per ``clickhouse.sharding_key``. ``flow`` keeps every
#: row that shares a table's sorting key (the versions ReplacingMergeTree merges) on one shard.
SHARDING_EXPRESSIONS: dict[str, dict[str, str]] = {
    "flow": {
        FLOW_TABLE: "FlowHash",
        HITTER_TABLE: "cityHash64(TaskName, Flow)",
        ALERT_TABLE: "cityHash64(TaskName, RuleName)",
    },
    "task": {t: "cityHash64(TaskName)" for t in (FLOW_TABLE, HITTER_TABLE, ALERT_TABLE)},
    "random": {t: "rand()" for t in (FLOW_TABLE, HITTER_TABLE, ALERT_TABLE)},
}


def create_table_sql(
    table: str,
    qualified_name: str,
    *,
    on_cluster: str = "",
    replicated: tuple[str, str] | None = None,
    distributed: tuple[str, str, str, str] | None = None,
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of data table ``table`` (a key of :data:`TABLE_SPECS`) as
    ``qualified_name`` (already quoted, ``db.name``), with every value written as a literal.

    ``on_cluster``: a cluster name (distributed DDL, ``ON CLUSTER``). ``replicated``: (ZooKeeper path,
    replica name) → the ``Replicated`` variant of the engine. ``distributed``: (cluster, database, local
    table, sharding expression) → a ``Distributed`` table with the same columns (no partition or order).
    The sharding expression must come from :data:`SHARDING_EXPRESSIONS`; names are quoted here.
    """
    columns, aliases, order, engine, version, partition = TABLE_SPECS[table]
    cols = [f"    {name} {typ}" for name, typ in columns]
    cols += [f"    {name} DateTime('UTC') ALIAS {_seconds(src)}" for name, src in aliases]
    body = ",\n".join(cols)
    cluster = f" ON CLUSTER {quote_identifier(on_cluster)}" if on_cluster else ""
    head = f"CREATE TABLE IF NOT EXISTS {qualified_name}{cluster} (\n{body}\n)\n"
    if distributed is not None:
        dcluster, database, local, key = distributed
        if key not in {e for m in SHARDING_EXPRESSIONS.values() for e in m.values()}:
            raise ValueError(f"not a known sharding expression: {key!r}")
        args = ", ".join((quote_string(dcluster), quote_string(database), quote_string(local), key))
        return f"{head}ENGINE = Distributed({args})"
    params = [version] if version else []
    if replicated is not None:
        engine = "Replicated" + engine
        params = [quote_string(replicated[0]), quote_string(replicated[1]), *params]
    return f"{head}ENGINE = {engine}({', '.join(params)})\nPARTITION BY {partition}\nORDER BY ({order})"


#: Columns each table must have; an existing table without them (e.g. the original's) is refused.
REQUIRED_COLUMNS: dict[str, frozenset[str]] = {
    FLOW_TABLE: frozenset(n for n, _ in FLOW_COLUMNS) | {n for n, _ in _FLOW_ALIASES},
    HITTER_TABLE: frozenset(n for n, _ in HITTER_COLUMNS) | {n for n, _ in _HITTER_ALIASES},
    ALERT_TABLE: frozenset(n for n, _ in ALERT_COLUMNS) | {n for n, _ in _ALERT_ALIASES},
}

#: Partitions (``YYYYMMDD`` of PeriodStart) whose newest snapshot is older than ``%(cutoff_ns)s``.
EXPIRED_PARTITIONS_SQL = (
    f"SELECT {_PARTITION} AS p FROM {{db}}.{{table}} "
    "GROUP BY p HAVING max(TimestampNs) < %(cutoff_ns)s ORDER BY p"
)
#: Partitions (``YYYYMMDD`` of the alert time) of ``alerts`` whose newest alert is older than the cutoff.
EXPIRED_ALERT_PARTITIONS_SQL = (
    f"SELECT {_ALERT_PARTITION} AS p FROM {{db}}.{{table}} "
    "GROUP BY p HAVING max(TimestampNs) < %(cutoff_ns)s ORDER BY p"
)

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
