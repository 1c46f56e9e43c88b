"""``clickhouse`` of a writer: where the ClickHouse writer stores (embedded chdb or a server) and how.

The parameters model of the ``clickhouse`` writer kind (:mod:`netspectra.storage.kinds`); the query
service and the alert store read the same section to find the tables.

TLS to a server (``secure``, ``verify``, ``ca_file``, ``cert_file``, ``key_file``) is checked when the
configuration is loaded: the files exist and are readable, ``ca_file`` holds CA certificates, the key is
the key of ``cert_file``'s certificate; each error names the key and the fix.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import ConfigDict, Field, field_validator, model_validator

from netspectra.config.base import (
    GoDuration,
    Port,
    Section,
    checked_duration,
    empty_is_default,
    format_go_duration,
    note_outside_read,
)
from netspectra.kinds import did_you_mean

#: The embedded engine's data directory when ``data_dir`` is empty (relative to the working directory).
DEFAULT_CHDB_DIR = "netspectra-data/chdb"


def data_dir_of(cfg: ClickHouseConfig) -> str:
    """The chdb data directory of an embedded ``clickhouse`` configuration, absolute."""
    return str(Path(cfg.data_dir or DEFAULT_CHDB_DIR).expanduser().resolve())


class ClickHouseConfig(Section):
    """``clickhouse`` of a writer."""

    # the section holds the password: a validation error must not echo its input
    model_config = ConfigDict(**Section.model_config, hide_input_in_errors=True)
    _hints: ClassVar[dict[str, str]] = {"user": "username"}

    host: str = ""
    #: 0 = not given (the writer picks the protocol's default port).
    port: Port = 0
    #: Empty -> ``default``, as the ClickHouse client does.
    database: Annotated[str, empty_is_default("default")] = "default"
    #: Empty -> ``default``, as the ClickHouse client does.
    username: Annotated[str, empty_is_default("default")] = "default"
    #: Secret.
    password: str = Field("", repr=False)
    #: ``true``: TLS to the server (the original's ClickHouse Cloud mode): the same as ``secure: true``.
    #: NetSpectra speaks the native protocol (secure port 9440 by default) and, unlike the original,
    #: verifies the certificate.
    cloud: bool = False
    #: ``true``: TLS to the server, on its ``tcp_port_secure`` (``port`` 0 -> 9440). An addition of
    #: NetSpectra (with the four keys below).
    secure: bool = False
    #: TLS: verify the server's certificate chain and that it names ``host``. ``false`` encrypts without
    #: knowing who answers (tests only); it cannot be combined with ``ca_file``.
    verify: bool = True
    #: TLS: PEM file of the CA certificate(s) that signed the server's certificate. Empty -> the driver's
    #: default bundle (certifi when installed, else the system's CAs).
    ca_file: str = ""
    #: Mutual TLS: PEM file of the client certificate (chain, leaf first) the server checks, and
    #: ``key_file`` its private key (PEM, unencrypted; protect it with file permissions). Both or none.
    cert_file: str = ""
    key_file: str = ""
    #: Embedded engine (``host`` empty): the chdb data directory. Empty -> ``netspectra-data/chdb``
    #: (relative to the working directory). One process at a time may open a directory, and a process
    #: can use only one: every embedded writer and query service of a process must name the same one.
    data_dir: str = ""
    #: Periods whose newest snapshot is older than this are deleted (whole periods, checked hourly);
    #: absent or 0 -> data is kept forever. An addition of NetSpectra.
    retention: GoDuration | None = None
    #: Flow records (the ``flows`` table) older than this are deleted (whole days of first packets whose
    #: newest write is older); absent or 0 -> kept forever. Flow records are the largest table: give
    #: them a shorter life than the aggregates (e.g. 168h). An addition of NetSpectra.
    flows_retention: GoDuration | None = None
    #: Rollup rows (``rollup_1m``, ``rollup_5m``, ``rollup_1h``: traffic per bucket and dimensions) are
    #: deleted by partition (days; months for ``1h``) once the partition's newest write is older than
    #: this; 0 -> kept forever. A week, 90 days and two years by default. Additions of NetSpectra.
    rollup_1m_retention: GoDuration | None = timedelta(hours=168)
    rollup_5m_retention: GoDuration | None = timedelta(hours=2160)
    rollup_1h_retention: GoDuration | None = timedelta(hours=17520)
    #: History kept inside a period: at most one row per flow per this much time (the newest snapshot
    #: of each interval survives background merges); at least 1s. An addition of NetSpectra.
    history_resolution: GoDuration = timedelta(hours=1)
    #: Cluster mode (a server only; an addition of NetSpectra): the name of a cluster of the server's
    #: ``remote_servers``. Empty -> one node, as before. Set -> ``<table><local_suffix>`` tables on every
    #: node of the cluster and ``Distributed`` tables under the usual names over them (docs/storage.md).
    cluster: str = ""
    #: Cluster mode: ``Replicated*MergeTree`` local tables (the servers need ZooKeeper and the macros
    #: used in ``zookeeper_path`` and ``replica_name``).
    replicated: bool = False
    #: ZooKeeper path of a replicated table: NetSpectra fills in ``{database}`` and ``{table}`` (the local
    #: table's name); the server fills in its macros (``{shard}``). Must contain ``{table}``.
    zookeeper_path: str = "/clickhouse/tables/{shard}/{database}/{table}"
    #: Replica name of a replicated table (the server's ``{replica}`` macro by default).
    replica_name: str = "{replica}"
    #: Cluster mode: how rows are spread over the shards: ``flow`` (a hash of the flow key: all versions
    #: of a flow's row on one shard, which ReplacingMergeTree's deduplication and FINAL need), ``task``
    #: (a hash of the task name: a task on one shard) or ``random``.
    sharding_key: str = "flow"
    #: Cluster mode: suffix of the local tables' names (the Distributed tables keep the plain names).
    local_suffix: str = "_local"

    @field_validator("sharding_key")
    @classmethod
    def _sharding_key(cls, v: str) -> str:
        valid = ("flow", "task", "random")
        if v not in valid:
            raise ValueError(
                f"{v!r} is not a sharding key{did_you_mean(v, valid)}; valid: {', '.join(valid)}"
            )
        return v

    @field_validator("local_suffix")
    @classmethod
    def _local_suffix(cls, v: str) -> str:
        if not v.strip() or "\x00" in v:
            raise ValueError("the local tables need a suffix that is not empty, e.g. _local")
        return v

    @field_validator("zookeeper_path")
    @classmethod
    def _zookeeper_path(cls, v: str) -> str:
        if "{table}" not in v or not v.startswith("/"):
            raise ValueError(
                f"{v!r} must be an absolute path containing {{table}} (one path per table), "
                "e.g. /clickhouse/tables/{shard}/{database}/{table}"
            )
        return v

    @property
    def tls(self) -> bool:
        """Whether the connection to the server uses TLS (``secure`` or ``cloud``)."""
        return self.secure or self.cloud

    @model_validator(mode="after")
    def _tls(self) -> ClickHouseConfig:
        files = {k: getattr(self, k).strip() for k in ("ca_file", "cert_file", "key_file")}
        given = [f"clickhouse.{k}" for k, v in files.items() if v]
        if (self.secure or given) and not self.host.strip():
            what = ", ".join((["clickhouse.secure"] if self.secure else []) + given)
            raise ValueError(
                f"{what} configure TLS to a ClickHouse server (clickhouse.host), which is empty: the "
                "embedded engine (chdb) runs in this process and needs no TLS; set host or remove them"
            )
        if given and not self.tls:
            raise ValueError(
                f"{', '.join(given)} set but TLS is off: set clickhouse.secure: true (the server's "
                "tcp_port_secure, 9440 by default), or remove them"
            )
        if files["ca_file"] and not self.verify:
            raise ValueError(
                "clickhouse.ca_file is set but clickhouse.verify is false, so the CA would not be used: "
                "remove verify: false (recommended) or ca_file"
            )
        if bool(files["cert_file"]) != bool(files["key_file"]):
            given_key, missing = (
                ("cert_file", "key_file") if files["cert_file"] else ("key_file", "cert_file")
            )
            raise ValueError(
                f"clickhouse.{given_key} is set but clickhouse.{missing} is empty: a client certificate "
                "(mutual TLS) needs both the certificate and its private key"
            )
        if files["ca_file"]:
            _check_ca_file(files["ca_file"])
        if files["cert_file"]:
            _check_key_pair(files["cert_file"], files["key_file"])
        return self

    @model_validator(mode="after")
    def _cluster_mode(self) -> ClickHouseConfig:
        if self.cluster.strip() and not self.host.strip():
            raise ValueError(
                f"clickhouse.cluster ({self.cluster!r}) needs a ClickHouse server (clickhouse.host): the "
                "embedded engine (chdb) is a single node; remove cluster or set host"
            )
        if self.replicated and not self.cluster.strip():
            raise ValueError("clickhouse.replicated needs clickhouse.cluster (the cluster the replicas form)")
        return self

    @field_validator(
        "retention", "flows_retention", "rollup_1m_retention", "rollup_5m_retention", "rollup_1h_retention"
    )
    @classmethod
    def _retention(cls, v: timedelta | None) -> timedelta | None:
        if v is None:
            return None
        return checked_duration(v, "write e.g. 720h, or 0 to keep data forever") or None

    @field_validator("history_resolution")
    @classmethod
    def _resolution(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1) or v % timedelta(seconds=1):
            raise ValueError(
                f"{format_go_duration(v)!r} is not a whole number of seconds >= 1s; write e.g. 1h or 10m"
            )
        return v


# --------------------------------------------------------------------------------------------------
# TLS files, checked at load time
# --------------------------------------------------------------------------------------------------


class _EncryptedKeyError(Exception):
    pass


def _readable(path: str, key: str, what: str) -> str:
    note_outside_read()  # the result depends on the file: never from the validated-configuration cache
    p = Path(path).expanduser()
    try:
        with p.open("rb") as f:
            f.read(1)
    except FileNotFoundError:
        raise ValueError(f"clickhouse.{key}: {path} does not exist; give the path of {what}") from None
    except IsADirectoryError:
        raise ValueError(f"clickhouse.{key}: {path} is a directory; give the path of {what}") from None
    except OSError as exc:
        raise ValueError(
            f"clickhouse.{key}: cannot read {path} ({exc.strerror}); give a readable {what}"
        ) from None
    return str(p)


def _check_ca_file(path: str) -> None:
    import ssl  # only where TLS files are configured: ssl is ~5 ms of every command's start-up

    real = _readable(path, "ca_file", "the PEM CA certificate(s) that signed the server's certificate")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=real)
    except (ssl.SSLError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise ValueError(
            f"clickhouse.ca_file: {path} holds no usable CA certificate ({reason}); give the PEM "
            "certificate of the CA that signed the server's certificate"
        ) from None
    if not ctx.get_ca_certs():
        raise ValueError(
            f"clickhouse.ca_file: {path} holds no CA certificate (a certificate without the CA flag?); "
            "give the PEM certificate of the CA that signed the server's certificate"
        )


def _check_key_pair(cert_file: str, key_file: str) -> None:
    import ssl

    cert = _readable(cert_file, "cert_file", "the PEM client certificate")
    key = _readable(key_file, "key_file", "the PEM private key of the client certificate")

    def no_password() -> str:
        raise _EncryptedKeyError

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_cert_chain(cert, key, password=no_password)
    except _EncryptedKeyError:
        raise ValueError(
            f"clickhouse.key_file: {key_file} is encrypted; give the key unencrypted (openssl pkey -in "
            "KEY -out KEY.pem) and protect the file with its permissions"
        ) from None
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise ValueError(
                f"clickhouse.cert_file / clickhouse.key_file: {key_file} is not the private key of the "
                f"certificate in {cert_file}; give the key that belongs to the certificate"
            ) from None
        raise ValueError(
            f"clickhouse.cert_file / clickhouse.key_file: {cert_file} and {key_file} cannot be used as a "
            f"client certificate ({reason}); give a PEM certificate and its PEM private key"
        ) from None
