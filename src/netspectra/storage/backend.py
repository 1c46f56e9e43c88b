"""The seam between NetSpectra's ClickHouse code and an engine: the :class:`Backend` protocol.

Everything above this seam — :class:`~netspectra.storage.store.ClickHouseStore`, the writer, the alert
store, migrations, the cluster DDL and every query function — speaks SQL through three calls and never
asks which engine answers:

* :meth:`Backend.query_arrow` — a SELECT, its ``%(name)s`` placeholders bound, the result as an Arrow
  table with the same column types on every engine (see the method);
* :meth:`Backend.execute` — DDL and DML (``CREATE``, ``ALTER``, ``OPTIMIZE``, ``INSERT … SELECT``), any
  result discarded;
* :meth:`Backend.insert_arrow` — the rows of an Arrow table into a table, as one INSERT.

Two implementations, chosen **once** by :func:`select_backend` from the ``clickhouse`` section:
``host`` empty → :class:`~netspectra.storage.backend_chdb.ChdbBackend` (the embedded engine, chdb);
``host`` set → :class:`~netspectra.storage.backend_server.ServerBackend` (a server over the native
protocol with clickhouse-driver, TLS included). Their modules are imported only then, so a deployment
with one engine never loads the other's library.

Contract of every backend: :meth:`~Backend.open` is idempotent and may fail with
:class:`~netspectra.storage.base.StorageError` (retryable); every other call needs an open backend and
turns engine, network and server errors into ``StorageError`` with the engine's message (the server's
stack trace dropped, never a password); a placeholder without a value is a ``StorageError``, a value of
the wrong type a ``TypeError``/``ValueError`` from :func:`~netspectra.storage.schema.bind`; statements
without parameters are sent exactly as written. Calls are safe from several threads (each backend
serialises what its engine cannot run concurrently). :meth:`~Backend.close` may be called any number of
times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from netspectra.storage.base import StorageError
from netspectra.storage.schema import bind, quote_identifier

if TYPE_CHECKING:
    import pyarrow as pa

    from netspectra.storage.clickhouse_config import ClickHouseConfig

Params = Mapping[str, object] | None


@runtime_checkable
class Backend(Protocol):
    """One ClickHouse engine (see the module docstring for the contract)."""

    #: ``"chdb"`` or ``"server"``: for messages and metrics only, never for branching.
    name: str
    #: How this node is named in reports and errors: ``host:port`` of a server, ``embedded`` for chdb.
    node: str
    #: Whether the engine can be one node of a cluster (``clickhouse.cluster``).
    clusterable: bool

    def describe(self) -> str:
        """One line for humans and logs (``embedded chdb at /var/lib/x``, ``server h:9440 (TLS)``); no
        secrets."""
        ...

    @property
    def is_open(self) -> bool: ...

    def open(self) -> None:
        """Connect (idempotent); :class:`StorageError` if the engine cannot be reached or loaded."""
        ...

    def close(self) -> None:
        """Disconnect (idempotent)."""
        ...

    def ping(self, timeout_s: float) -> None:
        """``StorageError`` unless the engine answers within about ``timeout_s``, on a path that never
        waits behind a long query (the embedded engine is in this process: open is enough)."""
        ...

    def query_arrow(self, sql: str, params: Params = None) -> pa.Table:
        """The result of a SELECT as an Arrow table, placeholders bound.

        Column types agree between the engines: integers as the matching Arrow integer type, floats as
        ``double``/``float``, ``String`` as ``string``, ``Nullable(T)`` as ``T`` with nulls, ``DateTime``
        as ``uint32`` seconds since the epoch (UTC, whatever the server's time zone), ``Date`` as
        ``date32``, arrays as lists.
        """
        ...

    def execute(self, sql: str, params: Params = None) -> None:
        """Run a statement and discard any result."""
        ...

    def insert_arrow(self, table: str, data: pa.Table, settings: Mapping[str, int] | None = None) -> None:
        """Insert every row of ``data`` (columns named as the table's) into ``table`` (already qualified
        and quoted) as one INSERT, with the given query ``settings``; nothing for an empty table."""
        ...


def select_backend(cfg: ClickHouseConfig) -> Backend:
    """The backend a ``clickhouse`` section asks for: the one place that chooses between the engines.
    Nothing is connected yet (:meth:`Backend.open` does that). A :class:`StorageError` names the extra
    to install when the engine's library is missing (both come with ``netspectra[store]``)."""
    from importlib.util import find_spec

    server = bool(cfg.host.strip())
    library = "clickhouse_driver" if server else "chdb"
    if find_spec(library) is None:
        what = (
            f"a ClickHouse server ({cfg.host})"
            if server
            else "the embedded ClickHouse (clickhouse.host is empty)"
        )
        raise StorageError(
            f"{what} needs the Python package {library!r}, which is not installed: "
            "pip install 'netspectra[store]'"
        )
    if server:
        from netspectra.storage.backend_server import ServerBackend

        return ServerBackend(cfg)
    from netspectra.storage.backend_chdb import ChdbBackend

    return ChdbBackend(cfg)


# --------------------------------------------------------------------------------------------------
# Helpers the backends share
# --------------------------------------------------------------------------------------------------


def bound(sql: str, params: Params) -> str:
    """``sql`` with ``params`` bound; without params as it is (DDL holding quoted names is never scanned
    for placeholders). A placeholder without a value is a :class:`StorageError`."""
    if not params:
        return sql
    try:
        return bind(sql, params)
    except KeyError as exc:
        raise StorageError(f"cannot bind the query parameters: {exc.args[0] if exc.args else exc}") from exc


def insert_head(table: str, columns: list[str]) -> str:
    """``INSERT INTO <table> (<columns>)`` (``table`` already quoted, column names quoted here)."""
    return f"INSERT INTO {table} ({', '.join(quote_identifier(c) for c in columns)})"


def error_text(exc: BaseException) -> str:
    """The message of an engine or server error on one line, without the server's stack trace."""
    text = str(exc).split("Stack trace:", 1)[0].strip()
    return " ".join(text.split())


__all__ = ["Backend", "Params", "bound", "error_text", "insert_head", "select_backend"]
