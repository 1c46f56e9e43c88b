"""The connection to NetSpectra's ClickHouse tables: :class:`ClickHouseStore`, over a backend.

A store is a ``clickhouse`` section made usable: its :class:`~netspectra.storage.backend.Backend`
(chosen once by :func:`~netspectra.storage.backend.select_backend`: embedded chdb or a server), its
database and table :class:`~netspectra.storage.cluster.Layout` (one node or a cluster), and the schema
version of the server. Everything that reads or writes the tables — the writer, the alert store,
migrations, retention, the query functions — goes through a store, and a store goes through its backend
only: no code here or above asks which engine it is.

Who calls what::

    ClickHouseWriter / AlertStoreSink ──insert──▶ ClickHouseStore ──insert_arrow──▶ Backend
    queries.* / alerts.alerts ─────────query────▶ ClickHouseStore ──query_arrow───▶ Backend
    migrations.migrate (ensure_schema) ─execute─▶ ClickHouseStore ──execute───────▶ Backend
    retention.expire (expire) ──────────────────▶ ClickHouseStore
                                       Backend = ChdbBackend (host empty) | ServerBackend (host set)

Imports run one way: ``store`` imports ``migrations``, ``retention`` and ``cluster``; they use a store
without importing this module (a cluster node's store comes from :meth:`ClickHouseStore.for_node`).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pyarrow as pa

from netspectra.storage import migrations, retention
from netspectra.storage.backend import Backend, select_backend
from netspectra.storage.base import StorageError
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.cluster import DISTRIBUTED_INSERT_SETTINGS, Layout
from netspectra.storage.schema import quote_identifier

log = logging.getLogger(__name__)

#: Seconds :meth:`ClickHouseStore.ping` waits for the connection and for the answer.
PING_TIMEOUT_S = 2.0

Row = tuple[Any, ...]


def parse_version(text: str) -> tuple[int, ...]:
    """``"18.16.1"`` → ``(18, 16, 1)``; the leading numeric components of a ClickHouse version."""
    parts = re.findall(r"\d+", text.split("-")[0])
    if not parts:
        raise ValueError(f"not a ClickHouse version: {text!r}")
    return tuple(int(p) for p in parts)


def rows_of(table: pa.Table) -> list[Row]:
    """The rows of an Arrow result as tuples of Python values (``None`` for NULL)."""
    columns = [c.to_pylist() for c in table.columns]
    return list(zip(*columns, strict=True)) if columns else []


class ClickHouseStore:
    """The configured ClickHouse (embedded or server), safe to share between threads.

    Contract: :meth:`open` connects (idempotent) and reads the version; every other method needs an open
    store and raises :class:`StorageError` when the engine or the server fails, or a placeholder has no
    value (bad values raise ``ValueError``/``TypeError`` from :func:`~netspectra.storage.schema.bind`;
    statements without parameters are sent as they are). After a server failure the next call
    reconnects. :meth:`ping` checks the server on a connection of its own. :meth:`close` may be called
    any number of times.
    """

    def __init__(self, cfg: ClickHouseConfig) -> None:
        self.cfg = cfg
        #: The engine, chosen once from the configuration.
        self.backend: Backend = select_backend(cfg)
        self.database = cfg.database
        self.db = quote_identifier(cfg.database)
        #: One node, or a cluster (local tables + Distributed tables under the usual names).
        self.layout = Layout.from_config(cfg)
        self.version: tuple[int, ...] = ()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClickHouseStore({self.backend.describe()}, database={self.database!r})"

    @property
    def node(self) -> str:
        """The node this store talks to, as reports name it (``host:port``, or ``embedded``)."""
        return self.backend.node

    @property
    def address(self) -> str:
        """The same as :attr:`node` (the name used before backends existed)."""
        return self.backend.node

    def describe(self) -> str:
        """Where the tables are, in words (no secrets)."""
        return self.backend.describe()

    @property
    def is_open(self) -> bool:
        return self.backend.is_open

    def open(self) -> None:
        """Connect (or attach to the process's chdb session) and read the version."""
        with self._lock:
            if self.backend.is_open:
                return
            if self.layout.clustered and not self.backend.clusterable:
                raise StorageError(
                    f"clickhouse.cluster ({self.layout.cluster!r}) needs a ClickHouse server "
                    f"(clickhouse.host): the {self.backend.describe()} is a single node"
                )
            self.backend.open()
            try:
                self.version = parse_version(str(self.query("SELECT version()")[0][0]))
            except BaseException:
                self.backend.close()
                raise
        log.info("ClickHouse %s: version %s", self, ".".join(map(str, self.version)))

    def close(self) -> None:
        """Disconnect (the shared chdb session closes with its last user)."""
        self.backend.close()

    def ping(self, timeout_s: float = PING_TIMEOUT_S) -> None:
        """``StorageError`` unless the store is open and its engine answers within about ``timeout_s``,
        on a connection of its own (never waiting for the store's queries; never opening the store or
        touching the schema)."""
        if not self.backend.is_open:
            raise StorageError(f"{self!r} is not open")
        self.backend.ping(timeout_s)

    def for_node(self, host: str, port: int) -> ClickHouseStore:
        """A (closed) single-node store on another node of the cluster: same user, password, TLS and
        database."""
        cfg = self.cfg.model_copy(update={"host": host, "port": port, "cluster": "", "replicated": False})
        return ClickHouseStore(cfg)

    def table(self, name: str) -> str:
        """``name`` qualified with the configured database, quoted."""
        return f"{self.db}.{quote_identifier(name)}"

    def query_arrow(self, sql: str, params: Mapping[str, object] | None = None) -> pa.Table:
        """The result of a SELECT as an Arrow table (types as :meth:`Backend.query_arrow` says)."""
        return self.backend.query_arrow(sql, params)

    def query(self, sql: str, params: Mapping[str, object] | None = None) -> list[Row]:
        """Rows of a SELECT as tuples of Python values; ``%(name)s`` placeholders bound by
        :func:`~netspectra.storage.schema.bind`. Both engines give the same values: integers, floats,
        strings, ``None`` for NULL, and ``DateTime`` as ``int`` seconds since the epoch."""
        return rows_of(self.backend.query_arrow(sql, params))

    def execute(self, sql: str, params: Mapping[str, object] | None = None) -> None:
        """Run a statement (DDL, ALTER, OPTIMIZE) and discard any result."""
        self.backend.execute(sql, params)

    def insert(self, table: str, data: pa.Table) -> None:
        """Insert every row of ``data`` (columns named as the table's) into ``table`` as one INSERT; in
        cluster mode into the Distributed table, returning once every shard has its rows."""
        settings = DISTRIBUTED_INSERT_SETTINGS if self.layout.clustered else None
        self.backend.insert_arrow(self.table(table), data, settings)

    def ensure_schema(self, every_node: bool = False) -> migrations.MigrationReport:
        """Create the database and the tables if missing and apply pending schema migrations (on every
        node of a cluster); refuse tables with another schema and schema versions newer than this
        NetSpectra knows. Idempotent. In cluster mode without ``every_node``, a connected node that is
        up to date is enough (:func:`netspectra.storage.migrations.migrate`)."""
        return migrations.migrate(self, every_node)

    def expire(
        self,
        retention_ns: int | None = None,
        now_ns: int | None = None,
        tables: Collection[str] | None = None,
    ) -> list[int]:
        """Drop the partitions (of ``tables``; default: every table's) whose newest row is older than the
        retention (:func:`netspectra.storage.retention.expire`); return them (``YYYYMMDD``)."""
        return retention.expire(self, retention_ns, now_ns, tables)


def connect_store(cfg: ClickHouseConfig) -> ClickHouseStore:
    """An open :class:`ClickHouseStore` with the schema in place and migrated (for the query service and
    tools); ``SchemaVersionError`` for a newer schema."""
    store = ClickHouseStore(cfg)
    store.open()
    try:
        store.ensure_schema()
    except BaseException:
        store.close()
        raise
    return store


__all__: Sequence[str] = ("PING_TIMEOUT_S", "ClickHouseStore", "connect_store", "parse_version", "rows_of")
