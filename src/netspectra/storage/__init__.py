"""Storage: the writers of snapshots (ClickHouse, Parquet, text) and the ClickHouse query layer.

Follow a snapshot: the engine calls a :class:`~netspectra.storage.base.Writer` found by
:func:`~netspectra.storage.base.writer_class` (kinds in :mod:`~netspectra.storage.kinds`) —
:mod:`~netspectra.storage.files` (Parquet, text) or :mod:`~netspectra.storage.clickhouse`, whose
writer turns the snapshot into Arrow rows of the tables declared in :mod:`~netspectra.storage.schema`
and inserts them through a :class:`~netspectra.storage.store.ClickHouseStore`. The store runs every
statement on the :class:`~netspectra.storage.backend.Backend` the configuration chose once
(:func:`~netspectra.storage.backend.select_backend`): :mod:`~netspectra.storage.backend_chdb` (embedded)
or :mod:`~netspectra.storage.backend_server` (a server, TLS included) — the only two modules that know
the engines.

Back out: the query service calls the named functions of :mod:`~netspectra.storage.queries` (flows, heavy
hitters, Grafana series and top flows) and :func:`~netspectra.storage.alerts.alerts`; all SQL lives in
this package. The tables are created and upgraded by :mod:`~netspectra.storage.migrations` (schema
versions; one node or a cluster, :mod:`~netspectra.storage.cluster`) and trimmed by
:mod:`~netspectra.storage.retention`. Modules of the writer kinds and of the backends are imported on
first use, so a deployment without chdb or clickhouse-driver can still write files.
"""

from netspectra.storage.base import (
    SnapshotMeta,
    StorageError,
    Writer,
    WriterError,
    known_kinds,
    writer_class,
)

__all__ = ["SnapshotMeta", "StorageError", "Writer", "WriterError", "known_kinds", "writer_class"]
