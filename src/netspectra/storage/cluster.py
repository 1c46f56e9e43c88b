"""Where NetSpectra's tables live: one node, or a ClickHouse cluster (``clickhouse.cluster``).

One node (``cluster`` empty; chdb or a server): the tables are ``<db>.flow_metrics``, ``heavy_hitters``
and ``alerts``, as always.

Cluster mode (a server only): every node of the cluster (``system.clusters`` of the server NetSpectra
connects to) gets the **local** tables ``<table><local_suffix>`` (``ReplacingMergeTree``/``MergeTree``, or
their ``Replicated`` variants with ``clickhouse.replicated``), and a ``Distributed`` table under the
usual name over them. Writers insert into the Distributed tables (synchronously:
``insert_distributed_sync = 1``, so a write that returns is on every shard, and a failed one is retried
by the engine like any other); queries read the Distributed tables and so work unchanged. Rows are
spread by :data:`~netspectra.storage.schema.SHARDING_EXPRESSIONS` (``flow`` by default: all versions of a
flow's row on one shard, so ReplacingMergeTree merges and ``FINAL``, which work per shard, stay right).

DDL in cluster mode runs either once with ``ON CLUSTER`` (distributed DDL: the servers need ZooKeeper
and a ``distributed_ddl`` section) or, without ZooKeeper, on each host of the cluster in turn (logged).
:func:`cluster_nodes` asks the connected server for the hosts, :func:`node_stores` connects to each
(:meth:`~netspectra.storage.store.ClickHouseStore.for_node`: same user, password and TLS).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netspectra.storage.base import StorageError
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.schema import TABLES, quote_identifier

if TYPE_CHECKING:
    from netspectra.storage.store import ClickHouseStore

log = logging.getLogger(__name__)

# The configuration's defaults, so that a Layout built directly (tests, tools) means the same.
_DEFAULTS = {name: f.default for name, f in ClickHouseConfig.model_fields.items()}

#: The data tables, in creation order (read :data:`~netspectra.storage.schema.TABLES` itself, the
#: declarations; this is the names when this module was imported).
DATA_TABLES: tuple[str, ...] = tuple(TABLES)
#: Value of the insert setting that makes an INSERT into a Distributed table return only when every
#: shard has its rows (18.16 and current servers alike).
DISTRIBUTED_INSERT_SETTINGS: dict[str, int] = {"insert_distributed_sync": 1}


@dataclass(frozen=True, slots=True)
class Node:
    """One host of a cluster as ``system.clusters`` lists it."""

    shard: int
    replica: int
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Layout:
    """The table layout a configuration asks for (see the module docstring)."""

    database: str
    cluster: str = ""
    replicated: bool = False
    zookeeper_path: str = _DEFAULTS["zookeeper_path"]
    replica_name: str = _DEFAULTS["replica_name"]
    sharding_key: str = _DEFAULTS["sharding_key"]
    local_suffix: str = _DEFAULTS["local_suffix"]

    @classmethod
    def from_config(cls, cfg: ClickHouseConfig) -> Layout:
        """The layout of a ``clickhouse`` section (already validated: cluster only with a host)."""
        return cls(
            database=cfg.database,
            cluster=cfg.cluster.strip(),
            replicated=cfg.replicated,
            zookeeper_path=cfg.zookeeper_path,
            replica_name=cfg.replica_name,
            sharding_key=cfg.sharding_key,
            local_suffix=cfg.local_suffix,
        )

    @property
    def clustered(self) -> bool:
        return bool(self.cluster)

    @property
    def db(self) -> str:
        """The database, quoted."""
        return quote_identifier(self.database)

    def qualified(self, name: str) -> str:
        """``db.name``, quoted."""
        return f"{self.db}.{quote_identifier(name)}"

    def local_name(self, table: str) -> str:
        """Name of the table holding the rows on each node: ``table`` itself on one node."""
        return table + self.local_suffix if self.clustered else table

    def zookeeper_path_of(self, table: str) -> str:
        """The ZooKeeper path of a replicated local table (``{database}``/``{table}`` filled in; the
        server's macros such as ``{shard}`` left for the server)."""
        return self.zookeeper_path.replace("{database}", self.database).replace(
            "{table}", self.local_name(table)
        )

    def create_database_sql(self, on_cluster: bool = False) -> str:
        return f"CREATE DATABASE IF NOT EXISTS {self.db}{self._on(on_cluster)}"

    def create_data_tables_sql(self, on_cluster: bool = False) -> list[str]:
        """:meth:`create_tables_sql` of every data table."""
        return self.create_tables_sql(TABLES, on_cluster)

    def create_tables_sql(self, tables: Iterable[str], on_cluster: bool = False) -> list[str]:
        """``CREATE TABLE IF NOT EXISTS`` of the data tables named ``tables`` (keys of
        :data:`~netspectra.storage.schema.TABLES`), in order: on one node the tables; in cluster mode
        their local tables, then the Distributed tables over them. ``on_cluster``: with ``ON CLUSTER``
        (run once); else the statements to run on every node."""
        specs = [TABLES[t] for t in tables]
        if not self.clustered:
            return [t.create_sql(self.qualified(t.name)) for t in specs]
        cluster = self.cluster if on_cluster else ""
        out = []
        for t in specs:
            replicated = (self.zookeeper_path_of(t.name), self.replica_name) if self.replicated else None
            out.append(
                t.create_sql(
                    self.qualified(self.local_name(t.name)), on_cluster=cluster, replicated=replicated
                )
            )
        for t in specs:
            key = t.sharding_expression(self.sharding_key)
            distributed = (self.cluster, self.database, self.local_name(t.name), key)
            out.append(t.create_sql(self.qualified(t.name), on_cluster=cluster, distributed=distributed))
        return out

    def _on(self, on_cluster: bool) -> str:
        return f" ON CLUSTER {quote_identifier(self.cluster)}" if on_cluster and self.clustered else ""

    def on_cluster_clause(self, on_cluster: bool) -> str:
        """`` ON CLUSTER <name>`` when ``on_cluster`` in cluster mode, else empty."""
        return self._on(on_cluster)


#: Nodes of a cluster, as the connected server knows them.
CLUSTER_NODES_SQL = (
    "SELECT shard_num, replica_num, host_name, port FROM system.clusters "
    "WHERE cluster = %(cluster)s ORDER BY shard_num, replica_num"
)
#: Answers only where the server has a ZooKeeper configured (distributed DDL needs one).
ZOOKEEPER_PROBE_SQL = "SELECT count() FROM system.zookeeper WHERE path = '/'"


# --------------------------------------------------------------------------------------------------
# The nodes of a cluster
# --------------------------------------------------------------------------------------------------


def cluster_nodes(store: ClickHouseStore) -> list[Node]:
    """The nodes of the configured cluster as the connected server lists them; ``StorageError`` if it
    does not know the cluster."""
    layout = store.layout
    rows = store.query(CLUSTER_NODES_SQL, {"cluster": layout.cluster})
    if not rows:
        raise StorageError(
            f"ClickHouse {store.node} has no cluster {layout.cluster!r} in system.clusters (the "
            "server's remote_servers); fix clickhouse.cluster or the server configuration"
        )
    return [Node(int(s), int(r), str(h), int(p)) for s, r, h, p in rows]


def has_distributed_ddl(store: ClickHouseStore) -> bool:
    """Whether the connected server has a ZooKeeper, which ``ON CLUSTER`` (distributed DDL) needs."""
    try:
        store.query(ZOOKEEPER_PROBE_SQL)
    except StorageError as exc:
        log.debug("ClickHouse %s: no ZooKeeper (%s)", store.node, exc)
        return False
    return True


@contextmanager
def node_stores(store: ClickHouseStore, nodes: list[Node]) -> Iterator[dict[str, ClickHouseStore]]:
    """An open single-node store per node (``host:port`` → store; same user, password, TLS and database),
    closed on exit."""
    with ExitStack() as stack:
        out: dict[str, ClickHouseStore] = {}
        for node in nodes:
            s = store.for_node(node.host, node.port)
            s.open()
            stack.callback(s.close)
            out[node.address] = s
        yield out
