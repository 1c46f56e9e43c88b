"""The embedded engine: chdb in this process (a :class:`~netspectra.storage.backend.Backend`).

chdb opens **one data directory per process, for the life of the process** (a second one fails even
after the first is closed), and one process at a time may open a directory. So every embedded backend of
the process shares one chdb session through a module-level registry (reference-counted; closed with its
last user) and refuses a second directory with a clear :class:`StorageError`. Every call holds the
session's lock: chdb's sessions are not safe for concurrent inserts (measured with chdb 4.4: rows of
concurrent ``Python()`` inserts went to the wrong table, and ``send_insert`` refuses to run beside another
query).

Queries come back as chdb's ``ArrowTable`` (the engine's own Arrow output: ``DateTime`` is ``uint32``
seconds); inserts go as an Arrow IPC stream through ``send_insert(…, "ArrowStream")``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow as pa

from netspectra.storage.backend import Params, bound, error_text, insert_head
from netspectra.storage.base import StorageError
from netspectra.storage.clickhouse_config import DEFAULT_CHDB_DIR, ClickHouseConfig, data_dir_of

log = logging.getLogger(__name__)

#: Data directory of the embedded engine when ``clickhouse.data_dir`` is empty.


class _ChdbEngine:
    """The process's chdb session on ``path``, shared by every embedded backend; calls hold ``lock``."""

    def __init__(self, path: str) -> None:
        from chdb import session  # imported here: a server-only deployment never loads the embedded engine

        self.path = path
        self.lock = threading.RLock()
        self.users = 0
        self.session = session.Session(path)


_REGISTRY_LOCK = threading.Lock()
_ENGINE: _ChdbEngine | None = None
#: The first data directory this process opened; chdb cannot switch to another one afterwards.
_FIRST_PATH: str | None = None


def check_not_in_use(path: str) -> None:
    """:class:`StorageError` naming the process that has the chdb data directory ``path`` open, if another
    one has: the engine holds an exclusive ``flock`` on ``<path>/status`` (with its pid in it) while open,
    and refuses a second process (after its own retries, with raw log lines). Nothing when the directory
    is free or new (the lock is only tried, never kept). Not for a directory this process opened."""
    import fcntl

    status = os.path.join(path, "status")
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return  # no engine ever opened it (or not readable: chdb will say)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 256).decode(errors="replace")
            pids = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("PID:")]
            pid = pids[0] if pids else "?"
            raise StorageError(
                f"the embedded ClickHouse data directory {path} is in use by another process (pid {pid}): "
                "only one process may open a chdb data directory; stop that one (a running `netspectra "
                "up`, `engine` or `api` on it), or give clickhouse.data_dir another directory"
            ) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(path: str) -> _ChdbEngine:
    global _ENGINE, _FIRST_PATH
    with _REGISTRY_LOCK:
        if _FIRST_PATH is not None and path != _FIRST_PATH:
            raise StorageError(
                f"the embedded ClickHouse engine of this process already uses {_FIRST_PATH}; "
                f"chdb cannot open a second data directory ({path}) in the same process: give every "
                "embedded writer and query service the same clickhouse.data_dir"
            )
        if _ENGINE is None:
            os.makedirs(path, exist_ok=True)
            check_not_in_use(path)  # at once and in one line (chdb retries, logging raw lines, then fails)
            try:
                _ENGINE = _ChdbEngine(path)
            except ImportError as exc:
                raise StorageError(
                    "the embedded ClickHouse engine needs chdb (pip install chdb); or set clickhouse.host "
                    "to use a ClickHouse server"
                ) from exc
            except Exception as exc:
                # chdb raises RuntimeError subclasses; a directory locked by another process is the usual one
                hint = " (is another process using it? only one process may open a chdb data directory)"
                raise StorageError(
                    f"cannot open the embedded ClickHouse engine on {path}: {error_text(exc)}{hint}"
                ) from exc
            _FIRST_PATH = path
            log.info("embedded ClickHouse (chdb) opened on %s", path)
        _ENGINE.users += 1
        return _ENGINE


def _release(engine: _ChdbEngine) -> None:
    global _ENGINE
    with _REGISTRY_LOCK:
        engine.users -= 1
        if engine.users == 0 and _ENGINE is engine:
            _ENGINE = None
            with engine.lock:
                engine.session.close()
            log.info("embedded ClickHouse (chdb) on %s closed", engine.path)


def _arrow_ipc(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def _settings_clause(settings: Mapping[str, int] | None) -> str:
    if not settings:
        return ""
    for k, v in settings.items():
        if not k.isidentifier() or isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"not a query setting: {k!r} = {v!r}")
    return " SETTINGS " + ", ".join(f"{k} = {v}" for k, v in settings.items())


class ChdbBackend:
    """chdb on ``clickhouse.data_dir`` (default :data:`DEFAULT_CHDB_DIR`, relative to the working
    directory); see the module docstring."""

    name = "chdb"
    node = "embedded"
    clusterable = False

    def __init__(self, cfg: ClickHouseConfig) -> None:
        # Resolved and imported here, on the constructing thread (before the engine starts its threads):
        # `import chdb` changes the process's working directory for a moment, so a relative path resolved
        # by another thread meanwhile would point into chdb's package folder.
        self.data_dir = data_dir_of(cfg)
        with contextlib.suppress(ImportError):  # a missing chdb is reported by open()
            import chdb  # noqa: F401
        self._engine: _ChdbEngine | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ChdbBackend({self.data_dir!r})"

    def describe(self) -> str:
        return f"embedded chdb at {self.data_dir}"

    @property
    def is_open(self) -> bool:
        return self._engine is not None

    def open(self) -> None:
        with self._lock:
            if self._engine is None:
                self._engine = _acquire(self.data_dir)

    def close(self) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            _release(engine)

    def ping(self, timeout_s: float) -> None:
        if self._engine is None:
            raise StorageError(f"{self.describe()} is not open")

    def query_arrow(self, sql: str, params: Params = None) -> pa.Table:
        text = bound(sql, params)
        return self._call("query", lambda s: s.query(text, "ArrowTable"))

    def execute(self, sql: str, params: Params = None) -> None:
        text = bound(sql, params)
        self._call("statement", lambda s: s.query(text, "CSV"))

    def insert_arrow(self, table: str, data: pa.Table, settings: Mapping[str, int] | None = None) -> None:
        if data.num_rows == 0:
            return
        head = insert_head(table, data.column_names) + _settings_clause(settings)
        buf = _arrow_ipc(data)

        def send(session: Any) -> None:
            with session.send_insert(head, "ArrowStream") as ins:
                ins.append(memoryview(buf))
                ins.finish()

        self._call(f"insert into {table}", send)

    def _call(self, what: str, call: Callable[[Any], Any]) -> Any:
        """``call(session)`` under the shared session's lock; engine errors become :class:`StorageError`."""
        engine = self._engine
        if engine is None:
            raise StorageError(f"{self.describe()} is not open")
        with engine.lock:
            try:
                return call(engine.session)
            except Exception as exc:
                raise StorageError(f"embedded ClickHouse {what} failed: {error_text(exc)}") from exc


__all__ = ["DEFAULT_CHDB_DIR", "ChdbBackend"]
