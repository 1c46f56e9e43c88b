"""A ClickHouse server over the native protocol, with clickhouse-driver (a
:class:`~netspectra.storage.backend.Backend`).

One connection per backend, serialised by a lock (a driver connection runs one query at a time), and a
second one for :meth:`ServerBackend.ping`, so a readiness check never waits behind a long query. The
driver reconnects on the next call after a failure. The database is not selected at connect time (it
may not exist yet): every name in NetSpectra's SQL is qualified.

**TLS** (``clickhouse.secure: true``, or the original's ``cloud: true``): the server's
``tcp_port_secure`` (9440 unless ``clickhouse.port`` says otherwise), the certificate verified against
``clickhouse.ca_file`` (empty: the driver's default, the certifi bundle when installed, else the system's
CAs) and checked to name ``clickhouse.host``, unless ``clickhouse.verify: false``; ``cert_file`` and
``key_file`` present a client certificate (mutual TLS). The files were checked when the configuration
was loaded (:class:`~netspectra.storage.clickhouse_config.ClickHouseConfig`); a handshake that fails is
a :class:`StorageError` that says which key to look at. The password is sent to the server only, never
logged or shown.

**Results as Arrow**: SELECTs run in the driver's columnar mode with the column types and are converted
to the Arrow types chdb gives for the same SQL (``DateTime`` → ``uint32`` seconds since the epoch, UTC);
types without a mapping keep what Arrow infers (strings where it cannot). Not the driver's numpy mode:
with it, a result mixing numbers and strings comes back as strings. **Inserts** use the driver's columnar
numpy insert.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa

from netspectra.storage.backend import Params, bound, error_text, insert_head
from netspectra.storage.base import StorageError
from netspectra.storage.clickhouse_config import ClickHouseConfig

log = logging.getLogger(__name__)

NATIVE_PORT = 9000
NATIVE_SECURE_PORT = 9440
#: Seconds to wait for a server connection and for each network operation.
CONNECT_TIMEOUT_S = 5.0
SEND_RECEIVE_TIMEOUT_S = 300.0

_NUMBERS = {
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int8": pa.int8(),
    "Int16": pa.int16(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
}
_WRAPPER = re.compile(r"^(Nullable|LowCardinality)\((.*)\)$")

#: What a failed TLS handshake usually means, by the OpenSSL reason in the driver's message.
_TLS_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("CERTIFICATE_VERIFY_FAILED",),
        "the server's certificate was not accepted: it must be signed by a CA of clickhouse.ca_file "
        "(empty: the default CA bundle) and name clickhouse.host; give the CA that signed it in "
        "clickhouse.ca_file",
    ),
    (
        ("WRONG_VERSION_NUMBER", "record layer failure", "PACKET_LENGTH_TOO_LONG"),
        "the port does not speak TLS: clickhouse.port must be the server's tcp_port_secure (9440 by "
        "default), not its plain tcp_port",
    ),
    (
        ("UNKNOWN_CA", "BAD_CERTIFICATE", "UNSUPPORTED_CERTIFICATE", "CERTIFICATE_UNKNOWN"),
        "the server refused the client certificate (clickhouse.cert_file): it must be signed by a CA the "
        "server trusts (its openSSL.server.caConfig) and be meant for clients",
    ),
    (
        ("CERTIFICATE_REQUIRED", "EOF occurred in violation of protocol", "HANDSHAKE_FAILURE"),
        "the server ended the TLS handshake: it may require a client certificate (clickhouse.cert_file "
        "and clickhouse.key_file) signed by a CA it trusts, and got none or one it does not accept",
    ),
)


def _unwrap(ch_type: str) -> str:
    while m := _WRAPPER.match(ch_type):
        ch_type = m.group(2)
    return ch_type


def _epoch_seconds(value: datetime, server_tz: ZoneInfo | None) -> int:
    # The driver returns a DateTime column with a time zone as an aware datetime, and one without as a
    # naive datetime in the server's zone (or the client's, when they are the same): either way a point in
    # time, which chdb's Arrow output gives as seconds since the epoch.
    if value.tzinfo is None and server_tz is not None:
        value = value.replace(tzinfo=server_tz)
    return int(value.timestamp())


def _to_arrow(values: Sequence[Any], ch_type: str, server_tz: ZoneInfo | None) -> pa.Array:
    """One column of a columnar driver result as the Arrow array chdb gives for the same type."""
    inner = _unwrap(ch_type)
    if inner in _NUMBERS:
        return pa.array(values, _NUMBERS[inner])
    if inner == "String":
        return pa.array(values, pa.string())
    if inner == "Nothing":
        return pa.nulls(len(values))
    if inner.startswith("DateTime") and not inner.startswith("DateTime64"):
        seconds = [None if v is None else _epoch_seconds(v, server_tz) for v in values]
        return pa.array(seconds, pa.uint32())
    if inner == "Date":
        return pa.array(values, pa.date32())
    if inner.startswith("Array(") and inner.endswith(")"):
        lengths = [len(v) for v in values]
        offsets = np.zeros(len(values) + 1, np.int32)
        np.cumsum(lengths, out=offsets[1:])
        flat = [x for v in values for x in v]
        return pa.ListArray.from_arrays(pa.array(offsets), _to_arrow(flat, inner[6:-1], server_tz))
    try:
        return pa.array(list(values))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _numpy_column(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column as the driver's numpy insert wants it: numbers as numpy, strings/nulls as objects."""
    if pa.types.is_string(col.type):
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)  # str objects, None for NULL
    if pa.types.is_list(col.type):
        out = np.empty(len(col), dtype=object)  # one Python list per row (an Array column)
        out[:] = col.to_pylist()
        return out
    if col.null_count == len(col):
        return np.full(len(col), None, dtype=object)  # a key field the task does not use
    if col.null_count:
        # object array: None is NULL for the driver (to_numpy would give NaN floats in an integer column)
        return np.array(col.to_pylist(), dtype=object)
    return np.asarray(col.to_numpy())


def tls_hint(message: str) -> str:
    """What to check for a failed TLS handshake whose driver message is ``message`` ('' if none fits)."""
    for needles, hint in _TLS_HINTS:
        if any(n in message for n in needles):
            return hint
    return ""


class ServerBackend:
    """A ClickHouse server (``clickhouse.host``); see the module docstring."""

    name = "server"
    clusterable = True

    def __init__(self, cfg: ClickHouseConfig) -> None:
        self.cfg = cfg
        self.host = cfg.host.strip()
        self.port = cfg.port or (NATIVE_SECURE_PORT if cfg.tls else NATIVE_PORT)
        self.node = f"{self.host}:{self.port}"
        self._client: Any = None
        self._server_tz: ZoneInfo | None = None
        self._lock = threading.RLock()
        self._ping_client: Any = None
        self._ping_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ServerBackend({self.describe()!r})"

    def describe(self) -> str:
        if not self.cfg.tls:
            return f"server {self.node}"
        mutual = ", client certificate" if self.cfg.cert_file else ""
        checked = "" if self.cfg.verify else ", certificate NOT verified"
        return f"server {self.node} (TLS{mutual}{checked})"

    @property
    def is_open(self) -> bool:
        return self._client is not None

    def open(self) -> None:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
            if client is not None:
                try:
                    client.disconnect()
                except Exception as exc:  # a broken connection may fail to close; nothing to keep
                    log.debug("ClickHouse %s: disconnect failed: %s", self.node, exc)
        with self._ping_lock:
            ping, self._ping_client = self._ping_client, None
        if ping is not None:
            with contextlib.suppress(Exception):
                ping.disconnect()

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
            host=self.host,
            port=self.port,
            database="default",  # the configured database may not exist yet: names are qualified instead
            user=cfg.username,
            password=cfg.password,
            connect_timeout=connect_timeout_s,
            send_receive_timeout=timeout_s,
            sync_request_timeout=timeout_s,
            client_name="netspectra",
            **self._tls_options(),
        )

    def _tls_options(self) -> dict[str, Any]:
        cfg = self.cfg
        if not cfg.tls:
            return {"secure": False}
        options: dict[str, Any] = {"secure": True, "verify": cfg.verify}
        if cfg.ca_file.strip():
            options["ca_certs"] = str(Path(cfg.ca_file.strip()).expanduser())
        if cfg.cert_file.strip():
            options["certfile"] = str(Path(cfg.cert_file.strip()).expanduser())
            options["keyfile"] = str(Path(cfg.key_file.strip()).expanduser())
        return options

    def ping(self, timeout_s: float) -> None:
        if self._client is None:
            raise StorageError(f"ClickHouse {self.describe()} is not open")
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
                raise StorageError(f"ClickHouse {self.node}: ping failed: {self._explain(exc)}") from exc

    def query_arrow(self, sql: str, params: Params = None) -> pa.Table:
        text = bound(sql, params)
        with self._lock:
            columns, types = self._call(
                "query", lambda c: c.execute(text, with_column_types=True, columnar=True)
            )
            tz = self._timezone()
        names = [name for name, _ in types]
        if not columns:  # no rows: the driver gives no columns
            columns = [()] * len(types)
        arrays = [_to_arrow(col, ch_type, tz) for col, (_, ch_type) in zip(columns, types, strict=True)]
        return pa.Table.from_arrays(arrays, names=names)

    def execute(self, sql: str, params: Params = None) -> None:
        text = bound(sql, params)
        with self._lock:
            self._call("statement", lambda c: c.execute(text))

    def insert_arrow(self, table: str, data: pa.Table, settings: Mapping[str, int] | None = None) -> None:
        if data.num_rows == 0:
            return
        head = insert_head(table, data.column_names)
        columns = [_numpy_column(c) for c in data.columns]
        # numpy for inserts only (see the module docstring)
        options: dict[str, object] = {"use_numpy": True, **(settings or {})}
        with self._lock:
            self._call(
                f"insert into {table}",
                lambda c: c.execute(f"{head} VALUES", columns, columnar=True, settings=options),
            )

    def _timezone(self) -> ZoneInfo | None:
        if self._server_tz is None and self._client is not None:
            # no server_info before a connection; a query has connected, so this is a rare fallback in
            # which a naive DateTime is read in the client's zone, as the driver then made it
            with contextlib.suppress(Exception):
                self._server_tz = ZoneInfo(self._client.connection.server_info.get_timezone())
        return self._server_tz

    def _call(self, what: str, call: Callable[[Any], Any]) -> Any:
        """``call(client)`` (the caller holds the lock); network and server errors become
        :class:`StorageError`."""
        client = self._client
        if client is None:
            raise StorageError(f"ClickHouse {self.describe()} is not open")
        try:
            return call(client)
        except Exception as exc:
            raise StorageError(f"ClickHouse {self.node}: {what} failed: {self._explain(exc)}") from exc

    def _explain(self, exc: BaseException) -> str:
        text = error_text(exc)
        if self.cfg.tls:
            hint = tls_hint(text)
        elif self.port == NATIVE_SECURE_PORT:
            hint = f"port {NATIVE_SECURE_PORT} is ClickHouse's TLS port: set clickhouse.secure: true"
        else:
            hint = ""
        return f"{text} ({hint})" if hint else text


__all__ = ["CONNECT_TIMEOUT_S", "NATIVE_PORT", "NATIVE_SECURE_PORT", "ServerBackend", "tls_hint"]
