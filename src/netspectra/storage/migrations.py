"""Schema versions of NetSpectra's ClickHouse tables and the migrations between them.

``<db>.netspectra_schema`` (one per node; a plain ``MergeTree``) holds one row per applied migration:
``Version``, ``AppliedAt`` (UTC) and ``Description``. The schema version of a node is the largest
``Version`` there (0: no row, a database of NetSpectra from before versioning, or a new one).

:data:`MIGRATIONS` is the ordered list of what this NetSpectra knows; version 1 is the schema of
docs/storage.md. :func:`migrate` (run by every ClickHouse writer's ``open()``, by the query service's
:func:`~netspectra.storage.clickhouse.connect_store` and by ``netspectra storage init``):

1. creates the database and ``netspectra_schema`` if missing;
2. reads the version of every node and **refuses** (:class:`SchemaVersionError`) when one is newer than
   :data:`LATEST` (a newer NetSpectra migrated the tables; this one would misread them);
3. runs the statements of every migration above the lowest node version, in order, and records the
   version on every node that lacks it right after its statements succeeded;
4. checks that every data table on every node has the **engine of the configured layout**
   (:func:`layout_problems`: plain tables on one node; in cluster mode ``Distributed(cluster, db,
   local table, sharding key)`` under the usual names and ``[Replicated]…MergeTree`` local tables), once
   before running any migration (tables already there) and once after (nothing missing), and refuses
   with :class:`LayoutError` otherwise: versions do not record the layout and ``CREATE … IF NOT
   EXISTS`` keeps an existing table as it is, so switching ``cluster``, ``replicated``, ``local_suffix``
   or ``sharding_key`` on an existing database would otherwise leave nodes with different engines;
5. checks that the tables have the columns the queries need (a table of the original Go2NetSpectra
   under the same name is refused, as before).

Contract of a migration: its statements are **idempotent** (``CREATE … IF NOT EXISTS``, …), so a run
interrupted between the statements and the version row, or two processes migrating at once, converge;
they work on 18.16 and current servers; they never drop data without a release note. 18.16 rejects
``ALTER … ADD COLUMN IF NOT EXISTS`` as a syntax error, so a migration that adds columns declares them
(``adds``, :class:`AddColumns`): each node runs its ``ALTER`` only after ``system.columns`` showed the
columns missing there (a new database gets them from the ``CREATE TABLE`` of the declaration; a
replicated table has them from another replica), refuses a table with only some of them, and the
``ALTER`` appends the new key columns to the sorting key in the same statement (ClickHouse, 18.16
included, allows appending only columns the same ``ALTER`` adds).

Adding a table: declare it in :data:`netspectra.storage.schema.TABLES` and append
``Migration(n + 1, "what", creates=("name",))``; the ``CREATE TABLE`` of one node or of a cluster (local +
Distributed tables), the engine and column checks and retention follow from the declaration. Every table
is created by exactly one migration (checked when this module is imported). Other DDL (an ``ALTER``, a
view) goes into ``statements(layout, on_cluster)``. Document it in docs/storage.md ("Upgrading the
schema").

This module works on a :class:`~netspectra.storage.store.ClickHouseStore` through its ``query`` and
``execute`` only (whatever engine the store's backend is); it never imports the store, which imports it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from netspectra.storage.base import StorageError
from netspectra.storage.cluster import (
    Layout,
    cluster_nodes,
    has_distributed_ddl,
    node_stores,
)
from netspectra.storage.schema import (
    ADDED_KEY_COLUMNS,
    ALERT_TABLE,
    EXPORTER_TABLE,
    FLOW_RECORDS_TABLE,
    FLOW_TABLE,
    HITTER_TABLE,
    ROLLUP_TABLES,
    TABLES,
    bind,
    quote_string,
)

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore

log = logging.getLogger(__name__)

#: The table of applied migrations (on every node).
SCHEMA_TABLE = "netspectra_schema"


@dataclass(frozen=True, slots=True)
class AddColumns:
    """Columns a migration adds to a declared table: ``columns`` (their names: the declaration gives
    their types and places), and ``sort_key``: those of them appended to the sorting key, in the
    declaration's order (its ``order_by`` must end with their :func:`key_expression`)."""

    table: str
    columns: tuple[str, ...]
    sort_key: tuple[str, ...] = ()

    def alter_sql(self, qualified_name: str, distributed: bool) -> str:
        """The ``ALTER TABLE`` adding the columns (each after the column before it in the declaration)
        and, on a MergeTree table (not a Distributed one), appending the sorting-key columns."""
        spec = TABLES[self.table]
        names = spec.column_names
        types = dict(spec.columns)
        actions = [f"ADD COLUMN {c} {types[c]} AFTER {names[names.index(c) - 1]}" for c in self.columns]
        if self.sort_key and not distributed:
            actions.append(f"MODIFY ORDER BY ({spec.order_by})")
        return f"ALTER TABLE {qualified_name} " + ", ".join(actions)


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: the tables it ``creates`` (names of
    :data:`~netspectra.storage.schema.TABLES`), the columns it ``adds`` to existing tables
    (:class:`AddColumns`: checked per node), then the DDL of ``statements(layout, on_cluster)`` if any;
    all idempotent, in order (with ``ON CLUSTER`` when ``on_cluster``, else what each node runs)."""

    version: int
    description: str
    creates: tuple[str, ...] = ()
    statements: Callable[[Layout, bool], list[str]] | None = None
    adds: tuple[AddColumns, ...] = ()

    def sql(self, layout: Layout, on_cluster: bool) -> list[str]:
        """Every statement of this migration for ``layout``, in order (the ``ALTER`` of ``adds`` as a
        node runs it when its table lacks the columns)."""
        out = layout.create_tables_sql(self.creates, on_cluster)
        out += [sql for _, sql, _ in self.column_steps(layout, on_cluster)]
        if self.statements is not None:
            out += self.statements(layout, on_cluster)
        return out

    def column_steps(
        self, layout: Layout, on_cluster: bool = False
    ) -> list[tuple[str, str, tuple[str, ...]]]:
        """``(table on the node, ALTER, columns)`` of every :class:`AddColumns`: on one node the table;
        in cluster mode the local table, then the Distributed table over it."""
        out = []
        for a in self.adds:
            if not layout.clustered:
                out.append((a.table, a.alter_sql(layout.qualified(a.table), False), a.columns))
                continue
            on = layout.on_cluster_clause(on_cluster)
            local = layout.local_name(a.table)
            out.append((local, a.alter_sql(layout.qualified(local) + on, False), a.columns))
            out.append((a.table, a.alter_sql(layout.qualified(a.table) + on, True), a.columns))
        return out


#: Every migration this NetSpectra knows, oldest first (versions 1, 2, … without gaps).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "flow_metrics, heavy_hitters, alerts (the schema of docs/storage.md)",
        creates=(FLOW_TABLE, HITTER_TABLE, ALERT_TABLE),
    ),
    Migration(2, "flows: the flow records of flows tasks (docs/flows.md)", creates=(FLOW_RECORDS_TABLE,)),
    Migration(
        3,
        "flow_metrics: key columns VlanID, ExporterAddress, InIf, OutIf and the enrichment columns",
        adds=(AddColumns(FLOW_TABLE, ADDED_KEY_COLUMNS, ADDED_KEY_COLUMNS),),
    ),
    Migration(
        4,
        "rollup_1m, rollup_5m, rollup_1h: traffic per time bucket and dimensions (docs/storage.md)",
        creates=ROLLUP_TABLES,
    ),
    Migration(
        5, "exporters: the flow exporters of exporters tasks (docs/collect.md)", creates=(EXPORTER_TABLE,)
    ),
    Migration(
        6,
        "alerts: column AiAnalysis (the AI analysis text sent with an alert)",
        adds=(AddColumns(ALERT_TABLE, ("AiAnalysis",)),),
    ),
)
#: Versions reserved for migrations of other branches that are not in this tree yet (remove each when its
#: migration is merged). A database is never at a reserved version: the runner records only real ones.
RESERVED_VERSIONS: frozenset[int] = frozenset()
#: The schema version this NetSpectra writes and reads.
LATEST = MIGRATIONS[-1].version


def _check_registry() -> None:
    """Versions 1..LATEST without gaps, and every declared table created by exactly one migration."""
    expected = [v for v in range(1, LATEST + 1) if v not in RESERVED_VERSIONS]
    if [m.version for m in MIGRATIONS] != expected:
        raise AssertionError(
            "MIGRATIONS must be versions 1, 2, ... in order, without gaps (but reserved ones)"
        )
    created = [t for m in MIGRATIONS for t in m.creates]
    if sorted(created) != sorted(TABLES):
        missing, twice = set(TABLES) - set(created), {t for t in created if created.count(t) > 1}
        unknown = set(created) - set(TABLES)
        raise AssertionError(
            f"every table of schema.TABLES must be created by exactly one migration: not created "
            f"{sorted(missing)}, created twice {sorted(twice)}, not declared {sorted(unknown)}"
        )


_check_registry()


class SchemaVersionError(StorageError):
    """The tables were migrated by a newer NetSpectra (a schema version this one does not know)."""


class LayoutError(StorageError):
    """Tables of the database have engines of another layout than the configured one (one node vs.
    cluster, replicated or not, another local suffix or sharding key)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a plan and where it runs: ``local`` (the one node), ``ON CLUSTER <name>`` (once,
    on the connected server, for every node) or ``host:port`` (that node)."""

    target: str
    sql: str
    #: The schema version this statement records as applied (0: not a version row).
    records: int = 0
    #: ``(table, columns)``: run only where the node's table lacks these columns (:class:`AddColumns`).
    unless_columns: tuple[str, tuple[str, ...]] | None = None


@dataclass
class MigrationReport:
    """What :func:`migrate` found and did."""

    #: ``single`` (one node), ``on_cluster`` (distributed DDL), ``per_host`` (each node in turn) or
    #: ``checked`` (cluster, ``every_node`` false: the connected node was up to date, nothing run).
    mode: str
    #: Version of every node before (``local`` or ``host:port`` → version).
    before: dict[str, int] = field(default_factory=dict)
    #: Versions applied, in order.
    applied: list[int] = field(default_factory=list)
    #: Tables created, and tables that were already there, as ``node: db.table``.
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    #: Every statement run, in order.
    steps: list[Step] = field(default_factory=list)

    @property
    def version(self) -> int:
        return max([*self.before.values(), *self.applied], default=0)


def schema_table_sql(layout: Layout, on_cluster: bool = False) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of ``netspectra_schema`` (local on every node)."""
    return (
        f"CREATE TABLE IF NOT EXISTS {layout.qualified(SCHEMA_TABLE)}{layout.on_cluster_clause(on_cluster)} "
        "(Version UInt32, AppliedAt DateTime('UTC'), Description String) "
        "ENGINE = MergeTree() ORDER BY Version"
    )


def record_sql(layout: Layout, migration: Migration) -> str:
    """The statement recording ``migration`` as applied on a node (values bound)."""
    # values first, names after: a name containing "%(x)s" is never taken for a placeholder
    values = bind("SELECT %(v)s, now(), %(d)s", {"v": migration.version, "d": migration.description})
    return f"INSERT INTO {layout.qualified(SCHEMA_TABLE)} (Version, AppliedAt, Description) {values}"


def version_sql(layout: Layout) -> str:
    """The versions a node's ``netspectra_schema`` records (:func:`node_version` makes its version)."""
    return f"SELECT DISTINCT Version FROM {layout.qualified(SCHEMA_TABLE)}"


def node_version(recorded: Iterable[int]) -> int:
    """A node's schema version from the versions its ``netspectra_schema`` records: the newest version up
    to which every migration of :data:`MIGRATIONS` is recorded. A version recorded beyond a missing one
    does not count: a database migrated by a build that reserved the missing version for a branch not
    merged yet (recorded 1, 2, 5 while 3 was reserved) is at 2 here, so 3 runs on it (and 5 again —
    migrations are idempotent). A version newer than :data:`LATEST` is returned as it is (refused)."""
    seen = {int(v) for v in recorded}
    newest = max(seen, default=0)
    if newest > LATEST:
        return newest
    version = 0
    for m in MIGRATIONS:
        if m.version not in seen:
            break
        version = m.version
    return version


def plan(
    layout: Layout,
    mode: str = "single",
    nodes: list[str] | None = None,
    versions: dict[str, int] | None = None,
) -> list[Step]:
    """Every statement :func:`migrate` runs, in order, for nodes at ``versions`` (default: all at 0, a new
    database): :func:`bootstrap_steps`, then :func:`migration_steps`."""
    return bootstrap_steps(layout, mode, nodes) + migration_steps(layout, mode, nodes, versions)


def _nodes(mode: str, nodes: list[str] | None) -> list[str]:
    return ["local"] if mode == "single" else list(nodes or [])


def bootstrap_steps(layout: Layout, mode: str = "single", nodes: list[str] | None = None) -> list[Step]:
    """The database and ``netspectra_schema``. ``mode``: ``single``, ``on_cluster`` (run once, ``ON
    CLUSTER``) or ``per_host``; ``nodes``: ``host:port`` of every node of the cluster."""
    if mode == "on_cluster":
        target = f"ON CLUSTER {layout.cluster}"
        return [Step(target, layout.create_database_sql(True)), Step(target, schema_table_sql(layout, True))]
    steps: list[Step] = []
    for n in _nodes(mode, nodes):
        steps += [Step(n, layout.create_database_sql()), Step(n, schema_table_sql(layout))]
    return steps


def migration_steps(
    layout: Layout,
    mode: str = "single",
    nodes: list[str] | None = None,
    versions: dict[str, int] | None = None,
) -> list[Step]:
    """The statements of every migration above the lowest of ``versions`` (node → version, default 0),
    each migration followed by its version row on every node below it (``on_cluster`` without nodes
    records none)."""
    nodes = _nodes(mode, nodes)
    versions = versions or {}
    current = min((versions.get(n, 0) for n in nodes), default=0)
    steps: list[Step] = []
    for m in MIGRATIONS:
        if m.version <= current:
            continue
        if mode == "on_cluster":
            target = f"ON CLUSTER {layout.cluster}"
            steps += [Step(target, sql) for sql in layout.create_tables_sql(m.creates, True)]
            # columns are added node by node: each node's table is checked first
            for table, sql, columns in m.column_steps(layout, False):
                steps += [Step(n, sql, unless_columns=(table, columns)) for n in nodes] or [Step(target, sql)]
            if m.statements is not None:
                steps += [Step(target, sql) for sql in m.statements(layout, True)]
        else:
            for n in nodes:
                steps += [Step(n, sql) for sql in layout.create_tables_sql(m.creates, False)]
                steps += [
                    Step(n, sql, unless_columns=(table, columns))
                    for table, sql, columns in m.column_steps(layout, False)
                ]
                if m.statements is not None:
                    steps += [Step(n, sql) for sql in m.statements(layout, False)]
        steps += [Step(n, record_sql(layout, m), m.version) for n in nodes if versions.get(n, 0) < m.version]
    return steps


# --------------------------------------------------------------------------------------------------
# Running a plan
# --------------------------------------------------------------------------------------------------


def _columns_missing(
    store: ClickHouseStore, layout: Layout, table: str, columns: tuple[str, ...], wait_s: float = 0.0
) -> bool:
    """Whether ``table`` on ``store``'s node lacks ``columns`` (all of them); ``StorageError`` when it has
    only some (a table this NetSpectra did not migrate). With ``wait_s``, waits that long for them to
    appear (a replicated table gets them from another replica) before answering."""
    deadline = time.monotonic() + wait_s
    while True:
        rows = store.query(
            "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(t)s",
            {"db": layout.database, "t": table},
        )
        have = {str(r[0]) for r in rows} & set(columns)
        if have and have != set(columns):
            if time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            raise StorageError(
                f"table {layout.database}.{table} on {store.node} has only some of the columns of its "
                f"schema migration ({sorted(have)} of {list(columns)}); add the others by hand (see "
                "docs/storage.md) or point clickhouse.database at a new database"
            )
        if have or time.monotonic() >= deadline:
            return not have
        time.sleep(0.2)


def _tables(store: ClickHouseStore, database: str) -> set[str]:
    return {
        str(r[0])
        for r in store.query("SELECT name FROM system.tables WHERE database = %(db)s", {"db": database})
    }


def _version(store: ClickHouseStore, layout: Layout) -> int:
    return node_version(v for (v,) in store.query(version_sql(layout)))


def migrate(store: ClickHouseStore, every_node: bool = True) -> MigrationReport:
    """Bring the tables of ``store`` (open) to :data:`LATEST` (see the module docstring).

    Raises :class:`SchemaVersionError` for a schema newer than this NetSpectra knows, ``StorageError``
    when a statement fails or a table lacks required columns. Idempotent: a second run applies nothing.

    ``every_node`` false (writers, alert sink, query service): in cluster mode, when the connected node
    is at :data:`LATEST` with the required columns, nothing else is contacted (mode ``checked``), so a
    restart does not need every replica up; otherwise the full migration runs. ``storage init`` checks
    every node. One node: always the full migration (a handful of ``IF NOT EXISTS`` statements).
    """
    layout = store.layout
    if not layout.clustered:
        return _run(store, layout, "single", {"local": store})
    if not every_node:
        try:
            version: int | None = _version(store, layout)
        except StorageError:  # no database or no netspectra_schema on this node yet
            version = None
        if version is not None and version > LATEST:
            raise _newer(layout, {store.node: version})
        if version == LATEST:
            try:
                check_columns(store, layout)
                if not layout_problems(store, layout, store.node):
                    return MigrationReport("checked", before={store.node: version})
            except StorageError:
                pass  # a table went missing: the full migration recreates it or names the problem
            # another layout (or a table missing): the full migration names the problem on every node
    nodes = cluster_nodes(store)
    mode = "on_cluster" if has_distributed_ddl(store) else "per_host"
    if mode == "per_host":
        log.info(
            "ClickHouse cluster %r: no ZooKeeper on %s, so no ON CLUSTER; running the DDL on each of its "
            "%d hosts (%s)",
            layout.cluster,
            store.node,
            len(nodes),
            ", ".join(n.address for n in nodes),
        )
    if mode == "on_cluster":
        try:  # the first statement doubles as the check that distributed DDL works (distributed_ddl set)
            store.execute(layout.create_database_sql(True))
        except StorageError as exc:
            mode = "per_host"
            log.warning(
                "ClickHouse cluster %r: distributed DDL (ON CLUSTER) failed (%s); running the DDL on each "
                "of its hosts instead",
                layout.cluster,
                exc,
            )
    with node_stores(store, nodes) as stores:
        return _run(store, layout, mode, stores)


def _newer(layout: Layout, versions: dict[str, int]) -> SchemaVersionError:
    newest = max(versions.values())
    where = ", ".join(f"{n}: {v}" for n, v in versions.items() if v > LATEST)
    return SchemaVersionError(
        f"the NetSpectra tables in database {layout.database!r} have schema version {newest} "
        f"({where}); this NetSpectra knows versions up to {LATEST}: upgrade NetSpectra (or point "
        "clickhouse.database at another database); it will not write to or read a newer schema"
    )


def _run(
    store: ClickHouseStore, layout: Layout, mode: str, stores: dict[str, ClickHouseStore]
) -> MigrationReport:
    report = MigrationReport(mode)
    before_tables = {n: _tables(s, layout.database) for n, s in stores.items()}

    def run(step: Step) -> None:
        target = store if step.target.startswith("ON CLUSTER") else stores[step.target]
        if step.unless_columns is not None:
            if not _columns_missing(target, layout, *step.unless_columns):
                return
            try:
                target.execute(step.sql)
            except StorageError:
                # a replica may have received the columns from another one meanwhile
                if _columns_missing(target, layout, *step.unless_columns, wait_s=10.0):
                    raise
                return
        else:
            target.execute(step.sql)
        report.steps.append(step)

    # 1. the database and the version table
    for step in bootstrap_steps(layout, mode, list(stores)):
        run(step)
    # 2. versions
    report.before = {n: _version(s, layout) for n, s in stores.items()}
    if max(report.before.values()) > LATEST:
        raise _newer(layout, report.before)
    # 3. the tables already there are NetSpectra's (columns) with the configured layout (engines),
    #    checked before any DDL runs
    for s in stores.values():
        check_columns(s, layout, allow_missing=True, added=_added_columns(report.before))
    _check_layout(store, layout, stores, allow_missing=True)
    # 4. pending migrations
    for step in migration_steps(layout, mode, list(stores), report.before):
        run(step)
        if step.records and step.records not in report.applied:
            report.applied.append(step.records)
            log.info(
                "ClickHouse %s: schema of %r migrated to version %d", store, layout.database, step.records
            )
    # 5. every table is there with the configured layout, and has what the queries need
    _check_layout(store, layout, stores, allow_missing=False)
    for n, s in stores.items():
        after = _tables(s, layout.database)
        report.created += [f"{n}: {layout.database}.{t}" for t in sorted(after - before_tables[n])]
        report.existing += [f"{n}: {layout.database}.{t}" for t in sorted(after & before_tables[n])]
        check_columns(s, layout)
    return report


def expected_engines(layout: Layout) -> dict[str, str]:
    """Each data table of ``layout`` (its name on a node) → the engine it must have: on one node the
    plain engines (``ReplacingMergeTree``, ``MergeTree``); in cluster mode ``[Replicated]…MergeTree`` for
    the local tables and ``Distributed('cluster', 'db', 'local table', sharding key)`` for the usual
    names."""
    out: dict[str, str] = {}
    for t, spec in TABLES.items():
        if not layout.clustered:
            out[t] = spec.engine
            continue
        out[layout.local_name(t)] = f"Replicated{spec.engine}" if layout.replicated else spec.engine
        args = (layout.cluster, layout.database, layout.local_name(t))
        quoted = ", ".join(quote_string(a) for a in args)
        out[t] = f"Distributed({quoted}, {spec.sharding_expression(layout.sharding_key)})"
    return out


def _split_args(text: str) -> list[str]:
    """The top-level, comma-separated arguments of ``text`` (quotes and parentheses respected)."""
    args: list[str] = []
    cur: list[str] = []
    depth, quote, i = 0, "", 0
    while i < len(text):
        c = text[i]
        if quote:
            cur.append(c)
            if c == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'`\"":
            quote = c
            cur.append(c)
        elif c == "(":
            depth += 1
            cur.append(c)
        elif c == ")":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    args.append("".join(cur).strip())
    return args


def _unquote(arg: str) -> str:
    if len(arg) >= 2 and arg[0] == arg[-1] and arg[0] in "'`\"":
        body, out, i = arg[1:-1], [], 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                i += 1
            out.append(body[i])
            i += 1
        return "".join(out)
    return arg


def _distributed_args(engine_full: str) -> tuple[str, ...] | None:
    """``(cluster, database, table, sharding key)`` of a ``Distributed(...)`` engine, normalised (names
    unquoted, the key without spaces and back quotes); ``None`` if it is not one."""
    text = engine_full.strip()
    if not text.startswith("Distributed(") or not text.endswith(")"):
        return None
    args = _split_args(text[len("Distributed(") : -1])
    names = tuple(_unquote(a) for a in args[:3])
    key = "".join(",".join(args[3:]).replace("`", "").split())
    return (*names, key)


def _engine_matches(expected: str, engine: str, engine_full: str) -> bool:
    if not expected.startswith("Distributed("):
        return engine == expected
    return engine == "Distributed" and _distributed_args(engine_full) == _distributed_args(expected)


def layout_problems(
    store: ClickHouseStore, layout: Layout, node: str, allow_missing: bool = False
) -> list[str]:
    """What differs between the data tables on ``store``'s node (named ``node`` in the text) and
    :func:`expected_engines` of ``layout``: ``"node: db.table is <found>, expected <engine>"`` per table
    with another engine, and ``"node: db.table is missing"`` unless ``allow_missing``."""
    try:
        rows = store.query(
            "SELECT name, engine, engine_full FROM system.tables WHERE database = %(db)s",
            {"db": layout.database},
        )
    except StorageError:  # a server without engine_full: the engine names only
        rows = [
            (n, e, e)
            for n, e in store.query(
                "SELECT name, engine FROM system.tables WHERE database = %(db)s", {"db": layout.database}
            )
        ]
    found = {str(n): (str(e), str(f)) for n, e, f in rows}
    problems = []
    for name, want in expected_engines(layout).items():
        if name not in found:
            if not allow_missing:
                problems.append(f"{node}: {layout.database}.{name} is missing (expected {want})")
            continue
        engine, full = found[name]
        if not _engine_matches(want, engine, full):
            shown = full.split(" PARTITION BY", 1)[0] if full else engine
            problems.append(f"{node}: {layout.database}.{name} is {shown}, expected {want}")
    return problems


def _describe(layout: Layout) -> str:
    if not layout.clustered:
        return "one node (clickhouse.cluster empty): plain tables"
    return (
        f"cluster {layout.cluster!r}: {'replicated ' if layout.replicated else ''}local tables "
        f"*{layout.local_suffix} and Distributed tables with sharding_key {layout.sharding_key!r}"
    )


def _check_layout(
    store: ClickHouseStore, layout: Layout, stores: dict[str, ClickHouseStore], allow_missing: bool
) -> None:
    problems: list[str] = []
    for n, s in stores.items():
        node = store.node if n == "local" else n
        problems += layout_problems(s, layout, node, allow_missing)
    if problems:
        raise LayoutError(
            f"the NetSpectra tables in database {layout.database!r} do not have the layout the "
            f"configuration asks for ({_describe(layout)}): {'; '.join(problems)}. NetSpectra never "
            "converts existing tables: point clickhouse.database at a new database, copy the data into "
            'the new layout yourself (docs/storage.md, "Changing the table layout"), or set '
            "clickhouse.cluster/replicated/local_suffix/sharding_key back to what the tables were "
            "created with"
        )


def _added_columns(versions: dict[str, int]) -> dict[str, set[str]]:
    """Table → columns that migrations above the lowest of ``versions`` add (a table may lack them yet)."""
    current = min(versions.values(), default=0)
    out: dict[str, set[str]] = {}
    for m in MIGRATIONS:
        if m.version > current:
            for a in m.adds:
                out.setdefault(a.table, set()).update(a.columns)
    return out


def check_columns(
    store: ClickHouseStore,
    layout: Layout,
    allow_missing: bool = False,
    added: dict[str, set[str]] | None = None,
) -> None:
    """``StorageError`` naming the missing columns when a table lacks what the queries need
    (``allow_missing``: tables not there are not checked; ``added``: table → columns a pending migration
    adds, not required yet)."""
    names = {layout.local_name(t): t for t in TABLES} | {t: t for t in TABLES}
    found: dict[str, set[str]] = {}
    rows = store.query(
        "SELECT table, name FROM system.columns WHERE database = %(db)s", {"db": layout.database}
    )
    for table, column in rows:
        if table in names:
            found.setdefault(str(table), set()).add(str(column))
    for name, spec in sorted(names.items()):
        if allow_missing and name not in found:
            continue
        missing = TABLES[spec].required_columns - found.get(name, set()) - (added or {}).get(spec, set())
        if missing:
            raise StorageError(
                f"table {layout.database}.{name} exists without the columns {sorted(missing)} (a table of "
                "Go2NetSpectra or of an older NetSpectra?); point clickhouse.database at another "
                "database or rename the old table"
            )


def dry_run(store: ClickHouseStore, connect: bool) -> tuple[str, list[Step], str]:
    """What :func:`migrate` would run, without running anything: ``(mode, steps, note)``.

    One node, or ``connect`` false: nothing is connected, the plan is that of a new database (every
    statement is idempotent; on an existing database the migrations already applied are skipped). In
    cluster mode with ``connect`` (``store`` is then opened by the caller): the nodes, whether ZooKeeper
    is there, and each node's version are read (SELECTs only), so the plan is the one that would run.
    """
    layout = store.layout
    if not layout.clustered:
        return "single", plan(layout), "a new database assumed (dry run: nothing connected)"
    if not connect:
        note = (
            "cluster not contacted: the ON CLUSTER plan (without ZooKeeper each statement runs on every "
            "host of system.clusters instead, and a version row is inserted on each)"
        )
        return "on_cluster", plan(layout, "on_cluster"), note
    nodes = cluster_nodes(store)
    mode = "on_cluster" if has_distributed_ddl(store) else "per_host"
    versions: dict[str, int] = {}
    with node_stores(store, nodes) as stores:
        for n, s in stores.items():
            try:
                versions[n] = _version(s, layout)
            except StorageError:  # no database or no netspectra_schema yet
                versions[n] = 0
    if max(versions.values(), default=0) > LATEST:
        raise _newer(layout, versions)
    nodes_text = ", ".join(f"{n.address} (shard {n.shard}, replica {n.replica})" for n in nodes)
    note = f"cluster {layout.cluster!r}: {nodes_text}; " + (
        "ZooKeeper found: distributed DDL (ON CLUSTER)"
        if mode == "on_cluster"
        else "no ZooKeeper: the DDL runs on each host in turn"
    )
    return mode, plan(layout, mode, [n.address for n in nodes], versions), note


@dataclass
class TableStatus:
    node: str
    table: str
    engine: str
    rows: int


def status(store: ClickHouseStore) -> tuple[dict[str, int], list[TableStatus]]:
    """Schema version per node (-1: no ``netspectra_schema``) and the database's tables with their
    engines and row counts (from ``system.parts``, active parts; Distributed tables count 0)."""
    layout = store.layout

    def one(name: str, s: ClickHouseStore) -> tuple[int, list[TableStatus]]:
        tables = s.query(
            "SELECT name, engine FROM system.tables WHERE database = %(db)s ORDER BY name",
            {"db": layout.database},
        )
        counts = dict(
            s.query(
                "SELECT table, sum(rows) FROM system.parts WHERE database = %(db)s AND active GROUP BY table",
                {"db": layout.database},
            )
        )
        names = {str(t) for t, _ in tables}
        version = _version(s, layout) if SCHEMA_TABLE in names else -1
        return version, [TableStatus(name, str(t), str(e), int(counts.get(t, 0) or 0)) for t, e in tables]

    if not layout.clustered:
        v, t = one("local", store)
        return {"local": v}, t
    versions: dict[str, int] = {}
    out: list[TableStatus] = []
    with node_stores(store, cluster_nodes(store)) as stores:
        for n, s in stores.items():
            versions[n], t = one(n, s)
            out += t
    return versions, out


__all__ = [
    "LATEST",
    "MIGRATIONS",
    "SCHEMA_TABLE",
    "AddColumns",
    "LayoutError",
    "Migration",
    "MigrationReport",
    "SchemaVersionError",
    "Step",
    "bootstrap_steps",
    "dry_run",
    "expected_engines",
    "layout_problems",
    "migrate",
    "migration_steps",
    "plan",
    "status",
]
