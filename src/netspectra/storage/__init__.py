"""Storage: the writers of snapshots (ClickHouse, Parquet, text) and the ClickHouse query layer.

Follow a snapshot: the engine calls a :class:`~netspectra.storage.base.Writer` found by
:func:`~netspectra.storage.base.writer_class` — :mod:`~netspectra.storage.clickhouse` (tables in
:mod:`~netspectra.storage.schema`) or :mod:`~netspectra.storage.files`; the query service reads the
tables back through :mod:`~netspectra.storage.queries`. Table layouts (one node or a cluster) are in
:mod:`~netspectra.storage.cluster`, schema versions in :mod:`~netspectra.storage.migrations`.
Modules of the writer kinds are imported on first use, so a deployment without chdb or
clickhouse-driver can still write files.
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
