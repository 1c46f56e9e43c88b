"""``clickhouse`` of a writer: where the ClickHouse writer stores (embedded chdb or a server) and how.

The parameters model of the ``clickhouse`` writer kind (:mod:`netspectra.storage.kinds`); the query
service and the alert store read the same section to find the tables.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, ClassVar

from pydantic import Field, field_validator, model_validator

from netspectra.config.base import (
    GoDuration,
    Port,
    Section,
    empty_is_default,
    format_go_duration,
)
from netspectra.kinds import did_you_mean


class ClickHouseConfig(Section):
    """``clickhouse`` of a writer."""

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
    #: ``true``: TLS to the server (the original's ClickHouse Cloud mode). NetSpectra speaks the native
    #: protocol (secure port 9440 by default) and, unlike the original, verifies the certificate.
    cloud: bool = False
    #: Embedded engine (``host`` empty): the chdb data directory. Empty -> ``netspectra-data/chdb``
    #: (relative to the working directory). One process at a time may open a directory, and a process
    #: can use only one: every embedded writer and query service of a process must name the same one.
    data_dir: str = ""
    #: Periods whose newest snapshot is older than this are deleted (whole periods, checked hourly);
    #: absent or 0 -> data is kept forever. An addition of NetSpectra.
    retention: GoDuration | None = None
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

    @field_validator("retention")
    @classmethod
    def _retention(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v < timedelta(0):
            raise ValueError(
                f"{format_go_duration(v)!r} is negative; write e.g. 720h, or 0 to keep data forever"
            )
        return v or None

    @field_validator("history_resolution")
    @classmethod
    def _resolution(cls, v: timedelta) -> timedelta:
        if v < timedelta(seconds=1) or v % timedelta(seconds=1):
            raise ValueError(
                f"{format_go_duration(v)!r} is not a whole number of seconds >= 1s; write e.g. 1h or 10m"
            )
        return v
