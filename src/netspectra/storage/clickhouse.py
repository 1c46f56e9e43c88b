"""ClickHouse storage: the embedded engine (chdb) or a server (native protocol), and the writer into it.

:class:`ClickHouseStore` is a connection, used by :class:`ClickHouseWriter` and by the query service:

* ``clickhouse.host`` empty → the **embedded** engine, chdb, on ``clickhouse.data_dir``. A process can use
  one data directory in its lifetime and only one process may open it, so every store of the process
  shares one chdb session through a module-level registry (reference-counted, one lock: chdb's sessions
  are not safe for concurrent inserts — measured: rows of concurrent ``Python()`` inserts went to the
  wrong table — so calls are serialised).
* ``host`` set → a **server** through clickhouse-driver (native TCP, default port 9000; ``cloud: true`` →
  TLS, default port 9440, certificate verified). One connection per store, serialised by a lock.
* ``cluster`` set (a server only) → local tables on every node of the cluster and Distributed tables
  under the usual names (:mod:`~netspectra.storage.cluster`); inserts go through the Distributed tables
  synchronously, queries read them unchanged.

:meth:`ClickHouseStore.ensure_schema` creates the tables and applies the schema migrations
(:mod:`~netspectra.storage.migrations`); every writer runs it at ``open()``.

Both run exactly the same SQL (see :mod:`netspectra.storage.schema` for the dialect rules) and take
inserts as Arrow tables: chdb reads them as an Arrow IPC stream, the server through the driver's columnar
numpy insert.

:class:`ClickHouseWriter` makes one INSERT per task per snapshot (none for an empty one). For exact tasks
it writes only the flows that changed since its previous successful write of the same task and period
(rows hold cumulative counters, so an unchanged flow's newest row is still right); see docs/storage.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from netspectra.storage.base import SnapshotMeta, StorageError, Writer, WriterError
from netspectra.storage.cluster import DISTRIBUTED_INSERT_SETTINGS, Layout
from netspectra.storage.schema import (
    ALERT_TABLE,
    EXPIRED_ALERT_PARTITIONS_SQL,
    EXPIRED_PARTITIONS_SQL,
    FLOW_COLUMNS,
    FLOW_TABLE,
    HITTER_COLUMNS,
    HITTER_TABLE,
    bind,
    quote_identifier,
)

if TYPE_CHECKING:
    from netspectra.config.aggregator import WriterConfig
    from netspectra.sketches.base import SketchSnapshot
    from netspectra.storage.clickhouse_config import ClickHouseConfig
    from netspectra.storage.migrations import MigrationReport
    from netspectra.tasks.exact import FlowSnapshot

log = logging.getLogger(__name__)

#: Data directory of the embedded engine when ``clickhouse.data_dir`` is empty.
DEFAULT_CHDB_DIR = "netspectra-data/chdb"
NATIVE_PORT = 9000
NATIVE_SECURE_PORT = 9440
#: Seconds to wait for a server connection and for each network operation.
CONNECT_TIMEOUT_S = 5.0
SEND_RECEIVE_TIMEOUT_S = 300.0
#: Seconds :meth:`ClickHouseStore.ping` waits for the connection and for the answer.
PING_TIMEOUT_S = 2.0
#: How often (at most) a writer looks for expired periods.
RETENTION_CHECK_NS = 3600 * 10**9

Row = tuple[Any, ...]


# --------------------------------------------------------------------------------------------------
# The embedded engine: one chdb session per process
# --------------------------------------------------------------------------------------------------


class _ChdbEngine:
    """The process's chdb session on ``path``, shared by every embedded store; calls hold ``lock``."""

    def __init__(self, path: str) -> None:
        from chdb import session  # imported here: a server-only deployment never loads the embedded engine

        self.path = path
        self.lock = threading.RLock()
        self.users = 0
        self.session = session.Session(path)


_CHDB_REGISTRY_LOCK = threading.Lock()
_CHDB: _ChdbEngine | None = None
#: The first data directory this process opened; chdb cannot switch to another one afterwards.
_CHDB_FIRST_PATH: str | None = None


def _acquire_chdb(data_dir: str) -> _ChdbEngine:
    global _CHDB, _CHDB_FIRST_PATH
    path = str(Path(data_dir or DEFAULT_CHDB_DIR).expanduser().resolve())
    with _CHDB_REGISTRY_LOCK:
        if _CHDB_FIRST_PATH is not None and path != _CHDB_FIRST_PATH:
            raise StorageError(
                f"the embedded ClickHouse engine of this process already uses {_CHDB_FIRST_PATH}; "
                f"chdb cannot open a second data directory ({path}) in the same process: give every "
                "embedded writer and query service the same clickhouse.data_dir"
            )
        if _CHDB is None:
            os.makedirs(path, exist_ok=True)
            try:
                _CHDB = _ChdbEngine(path)
            except ImportError as exc:
                raise StorageError(
                    "the embedded ClickHouse engine needs chdb (pip install chdb); or set clickhouse.host "
                    "to use a ClickHouse server"
                ) from exc
            except Exception as exc:
                # chdb raises RuntimeError subclasses; a directory locked by another process is the usual one
                hint = " (is another process using it? only one process may open a chdb data directory)"
                raise StorageError(
                    f"cannot open the embedded ClickHouse engine on {path}: {_error_text(exc)}{hint}"
                ) from exc
            _CHDB_FIRST_PATH = path
            log.info("embedded ClickHouse (chdb) opened on %s", path)
        _CHDB.users += 1
        return _CHDB


def _release_chdb(engine: _ChdbEngine) -> None:
    global _CHDB
    with _CHDB_REGISTRY_LOCK:
        engine.users -= 1
        if engine.users == 0 and _CHDB is engine:
            _CHDB = None
            with engine.lock:
                engine.session.close()
            log.info("embedded ClickHouse (chdb) on %s closed", engine.path)


def _arrow_ipc(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def _numpy_column(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as the driver's numpy insert wants it: numbers as numpy, strings/nulls as objects."""
    if pa.types.is_string(col.type):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)  # str objects, None for NULL
    if col.null_count == len(col):
        return np.full(len(col), None, dtype=object)  # a key field the task does not use
    if col.null_count:
        # object array: None is NULL for the driver (to_numpy would give NaN floats in an integer column)
        return np.array(col.to_pylist(), dtype=object)
    return np.asarray(col.to_numpy())


def _error_text(exc: BaseException) -> str:
    # a server exception carries the server's stack trace: keep the message, drop the trace
    text = str(exc).split("Stack trace:", 1)[0].strip()
    return " ".join(text.split())


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime):
        # chdb hands DateTime to Arrow as seconds since the epoch; the driver as an aware datetime: agree
        return int(value.timestamp())
    return value


def _bound(sql: str, params: Mapping[str, object] | None) -> str:
    """``sql`` with ``params`` bound; without params as it is (DDL holding quoted names is never scanned
    for placeholders). A placeholder without a value is a :class:`StorageError`."""
    if not params:
        return sql
    try:
        return bind(sql, params)
    except KeyError as exc:
        raise StorageError(f"cannot bind the query parameters: {exc.args[0] if exc.args else exc}") from exc


def parse_version(text: str) -> tuple[int, ...]:
    """``"18.16.1"`` → ``(18, 16, 1)``; the leading numeric components of a ClickHouse version."""
    parts = re.findall(r"\d+", text.split("-")[0])
    if not parts:
        raise ValueError(f"not a ClickHouse version: {text!r}")
    return tuple(int(p) for p in parts)


# --------------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------------


class ClickHouseStore:
    """A connection to the configured ClickHouse (embedded or server), safe to share between threads.

    Contract: :meth:`open` connects (idempotent) and reads the version; every other method needs an open
    store and raises :class:`StorageError` when the engine or the server fails, or a placeholder has no
    value (bad values raise ``ValueError``/``TypeError`` from :func:`~netspectra.storage.schema.bind`;
    statements without parameters are sent as they are). After a server failure the next call
    reconnects. :meth:`ping` checks the server on a connection of its own. :meth:`close` may be called
    any number of times.
    """

    def __init__(self, cfg: ClickHouseConfig) -> None:
        self.cfg = cfg
        self.embedded = not cfg.host.strip()
        self.data_dir = ""
        if self.embedded:
            # Resolved and imported here, on the constructing thread (before the engine starts its threads):
            # `import chdb` changes the process's working directory for a moment, so a relative path
            # resolved by another thread meanwhile would point into chdb's package folder.
            self.data_dir = str(Path(cfg.data_dir or DEFAULT_CHDB_DIR).expanduser().resolve())
            with contextlib.suppress(ImportError):  # a missing chdb is reported by open()
                import chdb  # noqa: F401
        self.database = cfg.database
        self.db = quote_identifier(cfg.database)
        #: One node, or a cluster (local tables + Distributed tables under the usual names).
        self.layout = Layout.from_config(cfg)
        self.version: tuple[int, ...] = ()
        self._chdb: _ChdbEngine | None = None
        self._client: Any = None
        self._lock = threading.RLock()
        # ping(): a connection of its own, so a readiness check never waits behind a long query
        self._ping_client: Any = None
        self._ping_lock = threading.Lock()

    def __repr__(self) -> str:
        where = f"embedded chdb at {self.cfg.data_dir or DEFAULT_CHDB_DIR}" if self.embedded else self.address
        return f"ClickHouseStore({where}, database={self.database!r})"

    @property
    def address(self) -> str:
        """``host:port`` of the server (the port the store connects to)."""
        default = NATIVE_SECURE_PORT if self.cfg.cloud else NATIVE_PORT
        return f"{self.cfg.host}:{self.cfg.port or default}"

    @property
    def is_open(self) -> bool:
        return self._chdb is not None or self._client is not None

    def open(self) -> None:
        """Connect (or attach to the process's chdb session) and read the version."""
        with self._lock:
            if self.is_open:
                return
            if self.embedded and self.layout.clustered:
                raise StorageError(
                    f"clickhouse.cluster ({self.layout.cluster!r}) needs a ClickHouse server "
                    "(clickhouse.host): the embedded engine (chdb) is a single node"
                )
            if self.embedded:
                self._chdb = _acquire_chdb(self.data_dir)
            else:
                self._client = self._new_client()
            try:
                self.version = parse_version(str(self.query("SELECT version()")[0][0]))
            except BaseException:
                self.close()
                raise
            log.info("ClickHouse %s: version %s", self, ".".join(map(str, self.version)))

    def _new_client(
        self, connect_timeout_s: float = CONNECT_TIMEOUT_S, timeout_s: float = SEND_RECEIVE_TIMEOUT_S
    ) -> Any:
        try:  # imported here: an embedded-only deployment never needs it
            from clickhouse_driver import Client
        except ImportError as exc:
            raise StorageError(
                "a ClickHouse server (clickhouse.host is set) needs clickhouse-driver "
                "(pip install clickhouse-driver)"
            ) from exc

        cfg = self.cfg
        return Client(
            host=cfg.host,
            port=cfg.port or (NATIVE_SECURE_PORT if cfg.cloud else NATIVE_PORT),
            database="default",  # the configured database may not exist yet: names are qualified instead
            user=cfg.username,
            password=cfg.password,
            secure=cfg.cloud,
            verify=True,
            connect_timeout=connect_timeout_s,
            send_receive_timeout=timeout_s,
            sync_request_timeout=timeout_s,
            client_name="netspectra",
        )

    def ping(self, timeout_s: float = PING_TIMEOUT_S) -> None:
        """``StorageError`` unless the store is open and its server answers ``SELECT 1`` within about
        ``timeout_s``. Runs on a connection of its own (kept for the next ping), so it never waits for the
        store's queries and never opens the store or touches the schema. The embedded engine runs in this
        process: open is enough."""
        if not self.is_open:
            raise StorageError(f"{self!r} is not open")
        if self.embedded:
            return
        with self._ping_lock:
            try:
                if self._ping_client is None:
                    self._ping_client = self._new_client(timeout_s, timeout_s)
                self._ping_client.execute("SELECT 1")
            except Exception as exc:
                client, self._ping_client = self._ping_client, None
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.disconnect()
                if isinstance(exc, StorageError):
                    raise
                raise StorageError(f"ClickHouse {self.address}: ping failed: {_error_text(exc)}") from exc

    def close(self) -> None:
        """Disconnect (the shared chdb session closes with its last user)."""
        with self._lock:
            if self._chdb is not None:
                engine, self._chdb = self._chdb, None
                _release_chdb(engine)
            if self._client is not None:
                client, self._client = self._client, None
                try:
                    client.disconnect()
                except Exception as exc:  # a broken connection may fail to close; nothing to keep
                    log.debug("ClickHouse %s: disconnect failed: %s", self.address, exc)
        with self._ping_lock:
            ping, self._ping_client = self._ping_client, None
        if ping is not None:
            with contextlib.suppress(Exception):
                ping.disconnect()

    def table(self, name: str) -> str:
        """``name`` qualified with the configured database, quoted."""
        return f"{self.db}.{quote_identifier(name)}"

    def query(self, sql: str, params: Mapping[str, object] | None = None) -> list[Row]:
        """Rows of a SELECT as tuples of Python values; ``%(name)s`` placeholders bound by :func:`bind`.

        Both engines give the same values: integers, floats, strings, ``None`` for NULL, and ``DateTime``
        as ``int`` seconds since the epoch.
        """
        text = _bound(sql, params)
        with self._lock:
            if self._chdb is not None:
                result = self._on_chdb("query", lambda s: s.query(text, "ArrowTable"))
                columns = [c.to_pylist() for c in result.columns]
                return list(zip(*columns, strict=True)) if columns else []
            rows = self._on_server("query", lambda c: c.execute(text))
            return [tuple(_plain(v) for v in row) for row in rows]

    def execute(self, sql: str, params: Mapping[str, object] | None = None) -> None:
        """Run a statement (DDL, ALTER, OPTIMIZE) and discard any result."""
        text = _bound(sql, params)
        with self._lock:
            if self._chdb is not None:
                self._on_chdb("statement", lambda s: s.query(text, "CSV"))
            else:
                self._on_server("statement", lambda c: c.execute(text))

    def insert(self, table: str, data: pa.Table) -> None:
        """Insert every row of ``data`` (columns named as the table's) into ``table`` as one INSERT."""
        if data.num_rows == 0:
            return
        cols = ", ".join(quote_identifier(c) for c in data.column_names)
        head = f"INSERT INTO {self.table(table)} ({cols})"
        with self._lock:
            if self._chdb is not None:
                buf = _arrow_ipc(data)

                def send(session: Any) -> None:
                    with session.send_insert(head, "ArrowStream") as ins:
                        ins.append(memoryview(buf))
                        ins.finish()

                self._on_chdb(f"insert into {table}", send)
                return
            columns = [_numpy_column(c) for c in data.columns]
            # numpy for inserts only: with use_numpy, SELECT rows of mixed types come back as strings
            settings: dict[str, object] = {"use_numpy": True}
            if self.layout.clustered:  # into the Distributed table: return only once every shard has its rows
                settings.update(DISTRIBUTED_INSERT_SETTINGS)
            self._on_server(
                f"insert into {table}",
                lambda c: c.execute(f"{head} VALUES", columns, columnar=True, settings=settings),
            )

    def _on_chdb(self, what: str, call: Callable[[Any], Any]) -> Any:
        """``call(session)`` under the shared session's lock; engine errors become :class:`StorageError`."""
        engine = self._chdb
        if engine is None:
            raise StorageError(f"{self!r} is not open")
        with engine.lock:
            try:
                return call(engine.session)
            except Exception as exc:
                raise StorageError(f"embedded ClickHouse {what} failed: {_error_text(exc)}") from exc

    def _on_server(self, what: str, call: Callable[[Any], Any]) -> Any:
        """``call(client)``; network and server errors become :class:`StorageError`."""
        client = self._require_client()
        try:
            return call(client)
        except Exception as exc:
            raise StorageError(f"ClickHouse {self.address}: {what} failed: {_error_text(exc)}") from exc

    def ensure_schema(self, every_node: bool = False) -> MigrationReport:
        """Create the database and the tables if missing and apply pending schema migrations (on every
        node of a cluster); refuse tables with another schema and schema versions newer than this
        NetSpectra knows. Idempotent. In cluster mode without ``every_node``, a connected node that is
        up to date is enough (:func:`netspectra.storage.migrations.migrate`)."""
        from netspectra.storage.migrations import migrate  # imports this module

        return migrate(self, every_node)

    def expire(self, retention_ns: int, now_ns: int | None = None) -> list[int]:
        """Drop the periods (day partitions of PeriodStart) whose newest snapshot is older than
        ``now - retention``, and the days of alerts whose newest alert is; return the partitions dropped
        (``YYYYMMDD``)."""
        cutoff = (time.time_ns() if now_ns is None else now_ns) - retention_ns
        dropped: list[int] = []
        for table, template in (
            (FLOW_TABLE, EXPIRED_PARTITIONS_SQL),
            (HITTER_TABLE, EXPIRED_PARTITIONS_SQL),
            (ALERT_TABLE, EXPIRED_ALERT_PARTITIONS_SQL),
        ):
            sql = template.format(db=self.db, table=quote_identifier(table))
            for (partition,) in self.query(sql, {"cutoff_ns": max(cutoff, 0)}):
                day = int(partition)  # an integer from the server: safe to write into the statement
                self._drop_partition(table, day)
                log.info("ClickHouse %s: dropped %s partition %d (retention)", self, table, day)
                dropped.append(day)
        return dropped

    def _drop_partition(self, table: str, day: int) -> None:
        """Drop a day partition of ``table``; in cluster mode of its local table on every node (the
        Distributed table holds no data)."""
        if not self.layout.clustered:
            self.execute(f"ALTER TABLE {self.table(table)} DROP PARTITION {day}")
            return
        from netspectra.storage.migrations import cluster_nodes, node_stores

        local = self.layout.qualified(self.layout.local_name(table))
        with node_stores(self, cluster_nodes(self)) as stores:
            for node in stores.values():
                node.execute(f"ALTER TABLE {local} DROP PARTITION {day}")

    def _require_client(self) -> Any:
        if self._client is None:
            raise StorageError(f"{self!r} is not open")
        return self._client


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


def bucket_of(ts_ns: int, resolution_s: int) -> int:
    """The history bucket (UTC seconds, a multiple of ``resolution_s``) of a snapshot time."""
    sec = ts_ns // 1_000_000_000
    return sec - sec % resolution_s


def _meta_columns(m: int, meta: SnapshotMeta, bucket_s: int) -> dict[str, pa.Array | pa.ChunkedArray]:
    """The columns every row of one snapshot shares: snapshot time, period start, history bucket."""
    return {
        "TimestampNs": pa.array(np.full(m, meta.snapshot_ts_ns, np.uint64)),
        "PeriodStartNs": pa.array(np.full(m, meta.period_start_ns, np.uint64)),
        "Bucket": pa.array(np.full(m, bucket_s, np.uint32)),
    }


def flow_rows(
    snap: FlowSnapshot,
    meta: SnapshotMeta,
    bucket_s: int,
    index: np.ndarray | None = None,
    hashes: np.ndarray | None = None,
) -> pa.Table:
    """The ``flow_metrics`` rows of ``snap`` (of its rows ``index``, in that order, if given): the physical
    columns of :data:`FLOW_COLUMNS`, in order. ``hashes``: :func:`flow_hashes` of ``snap`` if known."""
    if hashes is None:
        hashes = flow_hashes(snap)
    if index is not None:
        snap = snap.take(index)
        hashes = hashes[index]
    t = snap.to_arrow()
    cols = {
        **_meta_columns(t.num_rows, meta, bucket_s),
        "TaskName": t.column("TaskName"),
        "FlowHash": pa.array(hashes),
        "SrcIP": t.column("SrcIP"),
        "DstIP": t.column("DstIP"),
        "SrcPort": t.column("SrcPort"),
        "DstPort": t.column("DstPort"),
        "Protocol": t.column("Protocol"),
        "StartNs": pa.array(snap.first_ns, pa.int64()),
        "EndNs": pa.array(snap.last_ns, pa.int64()),
        "ByteCount": t.column("ByteCount"),
        "PacketCount": t.column("PacketCount"),
    }
    assert tuple(cols) == tuple(n for n, _ in FLOW_COLUMNS)
    return pa.table(cols)


def hitter_rows(snap: SketchSnapshot, meta: SnapshotMeta, bucket_s: int) -> pa.Table:
    """The ``heavy_hitters`` rows of ``snap``: physical columns of :data:`HITTER_COLUMNS`, in order."""
    t = snap.to_arrow()
    cols = {
        **_meta_columns(t.num_rows, meta, bucket_s),
        "TaskName": t.column("TaskName"),
        "Flow": t.column("Flow"),
        "Value": t.column("Value"),
        "Type": t.column("Type"),
    }
    assert tuple(cols) == tuple(n for n, _ in HITTER_COLUMNS)
    return pa.table(cols)


_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _key_words(snap: FlowSnapshot) -> np.ndarray:
    """Each flow's key as 5 uint64 words (addresses, then ports and protocol): (m, 5)."""
    m = len(snap)
    words = np.empty((m, 5), np.uint64)
    words[:, 0:2] = np.ascontiguousarray(snap.src_ip).view("<u8")
    words[:, 2:4] = np.ascontiguousarray(snap.dst_ip).view("<u8")
    words[:, 4] = (
        (snap.src_port.astype(np.uint64) << np.uint64(24))
        | (snap.dst_port.astype(np.uint64) << np.uint64(8))
        | snap.protocol.astype(np.uint64)
    )
    return words


def flow_hashes(snap: FlowSnapshot) -> np.ndarray:
    """The ``FlowHash`` of every flow of ``snap`` (uint64, a function of the key fields only)."""
    return _hash_words(_key_words(snap))


def _hash_words(words: np.ndarray) -> np.ndarray:
    # splitmix64-style finaliser folded over the words: a well-spread 64-bit hash (collisions are only a
    # cost — a colliding flow is written again — never a wrong skip, because keys are compared in full)
    h = np.zeros(words.shape[0], np.uint64)
    for j in range(words.shape[1]):
        h ^= words[:, j] + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2))
        h ^= h >> np.uint64(30)
        h *= _MIX1
        h ^= h >> np.uint64(27)
        h *= _MIX2
        h ^= h >> np.uint64(31)
    return h


class _FlowKeys:
    """The flows of one snapshot as hashed keys with their counters, sorted by hash."""

    def __init__(self, snap: FlowSnapshot) -> None:
        words = _key_words(snap)
        h = _hash_words(words)
        self.order = np.argsort(h, kind="stable")
        self.hashes = h
        self.words = words
        self.packets = snap.packets
        self.bytes = snap.bytes


class _FlowTracker:
    """Keys and counters of the flows one task last wrote in one period, to find the changed ones."""

    def __init__(self, keys: _FlowKeys, period_start_ns: int) -> None:
        order = keys.order
        self.period_start_ns = period_start_ns
        self.hashes = keys.hashes[order]
        self.words = keys.words[order]
        self.packets = keys.packets[order]
        self.bytes = keys.bytes[order]

    def changed(self, keys: _FlowKeys) -> np.ndarray:
        """Boolean (m,): flows of ``keys`` not written with exactly these counters before."""
        n = self.hashes.shape[0]
        if n == 0:
            return np.ones(keys.hashes.shape[0], bool)
        order = keys.order  # looking up the new keys in hash order keeps both arrays' accesses sequential
        h = keys.hashes[order]
        idx = np.searchsorted(self.hashes, h)
        at = np.minimum(idx, n - 1)
        same = (
            (idx < n)
            & (self.hashes[at] == h)
            & (self.words[at] == keys.words[order]).all(axis=1)
            & (self.packets[at] == keys.packets[order])
            & (self.bytes[at] == keys.bytes[order])
        )
        changed = np.empty(len(order), bool)
        changed[order] = ~same
        return changed


# --------------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------------


class ClickHouseWriter(Writer, kind="clickhouse"):
    """Snapshots into ``flow_metrics`` / ``heavy_hitters`` of the configured ClickHouse.

    One INSERT per task per snapshot, none for an empty snapshot or when no flow changed. Failures raise
    :class:`WriterError`; a retried write of the same snapshot stores the same rows (the tables replace
    rows with equal keys). Retention (``clickhouse.retention``) is applied at :meth:`open` and then at
    most hourly after a write; a failure there is logged and retried, never raised.
    """

    def __init__(self, cfg: WriterConfig, group: str) -> None:
        super().__init__(cfg, group)
        ch: ClickHouseConfig = cfg.params
        self.store = ClickHouseStore(ch)
        self._resolution_s = int(ch.history_resolution.total_seconds())
        self._retention_ns = int(ch.retention.total_seconds() * 1e9) if ch.retention else 0
        self._next_expiry_ns = 0
        self._trackers: dict[str, _FlowTracker] = {}

    def __repr__(self) -> str:
        return f"ClickHouseWriter(group={self.group!r}, {self.store!r})"

    def open(self) -> None:
        try:
            self.store.open()
            self.store.ensure_schema()
        except StorageError as exc:
            self.store.close()
            raise WriterError(str(exc)) from exc
        # a reconnect may follow a gap during which another writer stored newer rows: start from scratch
        self._trackers.clear()
        self._maybe_expire()

    def close(self) -> None:
        self.store.close()
        self._trackers.clear()

    def _write_flows(self, snap: FlowSnapshot, meta: SnapshotMeta) -> None:
        if len(snap) == 0:
            return
        keys = _FlowKeys(snap)
        tracker = self._trackers.get(snap.task_name)
        index = keys.order  # rows sorted by FlowHash, the head of the sorting key: a cheap sort on insert
        if tracker is not None and tracker.period_start_ns == meta.period_start_ns:
            index = index[tracker.changed(keys)[index]]
        if len(index):
            bucket = bucket_of(meta.snapshot_ts_ns, self._resolution_s)
            self._insert(FLOW_TABLE, flow_rows(snap, meta, bucket, index, keys.hashes))
        if meta.final:
            self._trackers.pop(snap.task_name, None)  # the next period starts from nothing
        else:
            self._trackers[snap.task_name] = _FlowTracker(keys, meta.period_start_ns)
        self._maybe_expire()

    def _write_hitters(self, snap: SketchSnapshot, meta: SnapshotMeta) -> None:
        if len(snap) == 0:
            return
        self._insert(
            HITTER_TABLE, hitter_rows(snap, meta, bucket_of(meta.snapshot_ts_ns, self._resolution_s))
        )
        self._maybe_expire()

    def _insert(self, table: str, data: pa.Table) -> None:
        if not self.store.is_open:
            raise WriterError(f"{self!r} is not open (open() failed or was not called)")
        try:
            self.store.insert(table, data)
        except StorageError as exc:
            raise WriterError(str(exc)) from exc

    def _maybe_expire(self) -> None:
        now = time.time_ns()
        if not self._retention_ns or now < self._next_expiry_ns:
            return
        try:
            self.store.expire(self._retention_ns, now)
        except StorageError as exc:
            log.warning("ClickHouse retention check failed (retried at the next write): %s", exc)
            return
        self._next_expiry_ns = now + min(RETENTION_CHECK_NS, self._retention_ns)


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


__all__: Sequence[str] = (
    "DEFAULT_CHDB_DIR",
    "ClickHouseStore",
    "ClickHouseWriter",
    "bucket_of",
    "connect_store",
    "flow_rows",
    "hitter_rows",
    "parse_version",
)
