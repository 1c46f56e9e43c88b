"""File writers: Parquet (the Python world's answer to the original's gob files) and the original's text.

Layout under the writer's ``root_path`` (one directory per snapshot, named by its UTC time)::

    <root>/2024-01-01T00-00-00Z/<task>.parquet          ParquetWriter (kinds "parquet" and "gob")
    <root>/2024-01-01T00-00-00Z/<task>/count_hh.txt     TextWriter, CountMin task (skt_type 0)
                                      /size_hh.txt
    <root>/2024-01-01T00-00-00Z/<task>/spread_ss.txt    TextWriter, SuperSpread task (skt_type 1)
    <root>/2024-01-01T00-00-00Z/<task>/flows.txt        TextWriter, exact task
                                      /summary.json
    <root>/2024-01-01T00-00-00Z/<task>/flow_records.txt TextWriter, flows task
                                      /summary.json

Guarantees:

* **Atomic.** A Parquet file is written under a temporary name and renamed
  (:func:`~netspectra.output.flow_table.write_parquet`); a text snapshot's files are written into a
  temporary directory that is renamed into place, so a reader sees all of a snapshot's files or none.
* **Never two writers on one file.** A root directory belongs to one open writer of the process (a second
  one is refused at :meth:`~FileWriter.open`); snapshot directories are named by the snapshot time, and a
  second snapshot within the same second goes to a directory named to the nanosecond
  (``2024-01-01T00-00-00.123456789Z``). Task names are escaped into safe file names (``/`` and a leading
  ``.`` are percent-encoded), so no name can leave the snapshot directory.
* **UTC** everywhere: directory names, Parquet timestamps (``timestamp[ns, UTC]``), text timestamps.
* Empty snapshots are written too (an empty file says "nothing then"; a missing one says "no snapshot").
* A flows task's snapshots are increments: each file holds the records that ended since the previous
  snapshot (the union of a task's files is every record, each once).
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netspectra.atomic import atomic_dir
from netspectra.output.flow_table import TIMESTAMP_TYPE, write_parquet
from netspectra.sketches.base import HitterType
from netspectra.storage.base import SnapshotMeta, Writer, WriterError

if TYPE_CHECKING:
    from netspectra.config.aggregator import WriterConfig
    from netspectra.flows.records import FlowRecords
    from netspectra.rollup.task import RollupRows
    from netspectra.sketches.base import SketchSnapshot
    from netspectra.tasks.exact import FlowSnapshot

log = logging.getLogger(__name__)

#: Text file of each heavy-hitter type (the original's names).
HITTER_FILES: dict[HitterType, str] = {
    HitterType.COUNT: "count_hh.txt",
    HitterType.SIZE: "size_hh.txt",
    HitterType.SPREAD: "spread_ss.txt",
}


def _reported_types(snap: SketchSnapshot) -> tuple[HitterType, ...]:
    """The heavy-hitter types ``snap``'s sketch kind reports (what it holds, for an unknown kind)."""
    from netspectra.kinds import SKETCHES, KindError
    from netspectra.sketches.kind import sketch_kind_name

    try:
        return tuple(SKETCHES.get(sketch_kind_name(snap.skt_type)).hitter_types)
    except (KindError, ValueError):
        return tuple(sorted(snap.hitters))


#: ``netspectra.key_fields`` of a flows task's Parquet files: the bidirectional key.
FLOW_RECORD_KEY = "SrcIP,DstIP,SrcPort,DstPort,Protocol,VlanID"

_CLAIMS_LOCK = threading.Lock()
_CLAIMS: dict[Path, FileWriter] = {}


def snapshot_dir_name(ts_ns: int, precise: bool = False) -> str:
    """``2024-01-01T00-00-00Z`` (UTC, no colons: valid on every file system); ``precise`` adds ns."""
    sec, ns = divmod(int(ts_ns), 1_000_000_000)
    text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H-%M-%S")
    return f"{text}.{ns:09d}Z" if precise else f"{text}Z"


def safe_name(task: str) -> str:
    """``task`` as one safe path component: percent-encoding of everything but ``A-Za-z0-9_.-``, and of
    a leading ``.`` (no ``..``, no hidden names that could collide with temporary files)."""
    if not task:
        raise ValueError("a task name is empty")
    name = quote(task, safe="")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return name


def _iso(ns: np.ndarray) -> np.ndarray:
    text = np.datetime_as_string(np.asarray(ns, np.int64).astype("datetime64[ns]"), unit="ns")
    return np.char.add(text, "Z")


def _const_ts(ts_ns: int, m: int) -> pa.Array:
    return pa.array(np.full(m, ts_ns, np.int64)).cast(TIMESTAMP_TYPE)


class FileWriter(Writer):
    """Shared part of the file writers: the root directory, its claim, snapshot directory names."""

    def __init__(self, cfg: WriterConfig, group: str) -> None:
        super().__init__(cfg, group)
        root = cfg.params.root_path
        if not root.strip():
            raise ValueError(
                f"writers[type={cfg.type}].{cfg.type}.root_path is empty; set the directory for its files"
            )
        self.root = Path(root).expanduser()
        self._claimed: Path | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(group={self.group!r}, root={str(self.root)!r})"

    def open(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            resolved = self.root.resolve()
        except OSError as exc:
            raise WriterError(f"cannot create {self.root}: {exc}") from exc
        with _CLAIMS_LOCK:
            owner = _CLAIMS.get(resolved)
            if owner is not None and owner is not self:
                raise WriterError(
                    f"{resolved} is already the root_path of {owner!r}; "
                    "give every file writer its own directory"
                )
            _CLAIMS[resolved] = self
        self._claimed = resolved

    def close(self) -> None:
        with _CLAIMS_LOCK:
            if self._claimed is not None and _CLAIMS.get(self._claimed) is self:
                del _CLAIMS[self._claimed]
        self._claimed = None

    def target(self, meta: SnapshotMeta, leaf: str) -> Path:
        """``<root>/<snapshot dir>/<leaf>``: the seconds-named directory unless ``leaf`` exists there
        already (an earlier snapshot in the same second), then the nanosecond-named one."""
        if self._claimed is None:
            raise WriterError(f"{self!r} is not open")
        path = self.root / snapshot_dir_name(meta.snapshot_ts_ns) / leaf
        if path.exists():
            path = self.root / snapshot_dir_name(meta.snapshot_ts_ns, precise=True) / leaf
        return path


class ParquetWriter(FileWriter, kind="parquet", aliases=("gob",)):
    """One Parquet file per task per snapshot: ``<root>/<UTC time>/<task>.parquet``.

    Columns: ``Timestamp`` (snapshot) and ``PeriodStart``, both ``timestamp[ns, UTC]``, then the table's
    columns (:data:`~netspectra.output.flow_table.FLOW_TABLE_SCHEMA` for exact tasks,
    :data:`~netspectra.sketches.base.HEAVY_HITTERS_SCHEMA` for sketch tasks,
    :data:`~netspectra.flows.records.FLOW_RECORDS_SCHEMA` for flows tasks: the records ended since the
    previous snapshot; :meth:`~netspectra.rollup.task.RollupRows.to_arrow` for rollup tasks: the rows
    handed out since the previous snapshot, a later row replacing an earlier one of the same resolution,
    bucket, dimensions and epoch). File metadata: ``netspectra.final`` (``"true"``/``"false"``) and
    ``netspectra.key_fields`` (comma-separated; flows: the bidirectional key).
    Configured as ``gob`` (the original's Go-only format), it writes Parquet under ``gob.root_path``.
    """

    def __init__(self, cfg: WriterConfig, group: str) -> None:
        super().__init__(cfg, group)
        if cfg.type == "gob":
            log.info(
                "writer type gob: gob is the original's Go serialisation; NetSpectra writes Parquet files "
                "instead, under gob.root_path %s",
                self.root,
            )

    def _write_flows(self, snap: FlowSnapshot, meta: SnapshotMeta) -> None:
        self._write(snap.to_arrow(), snap.task_name, meta, ",".join(snap.key_fields))

    def _write_hitters(self, snap: SketchSnapshot, meta: SnapshotMeta) -> None:
        self._write(snap.to_arrow(), snap.task_name, meta, ",".join(snap.flow_fields))

    def _write_flow_records(self, snap: FlowRecords, meta: SnapshotMeta) -> None:
        self._write(snap.to_arrow(), snap.task_name, meta, FLOW_RECORD_KEY)

    def _write_rollups(self, snap: RollupRows, meta: SnapshotMeta) -> None:
        if len(snap):
            self._write(snap.to_arrow(), snap.task_name, meta, ",".join(snap.dimensions))

    def _write(self, table: pa.Table, task: str, meta: SnapshotMeta, key_fields: str) -> None:
        m = table.num_rows
        table = table.add_column(
            0, pa.field("PeriodStart", TIMESTAMP_TYPE, False), _const_ts(meta.period_start_ns, m)
        )
        table = table.add_column(
            0, pa.field("Timestamp", TIMESTAMP_TYPE, False), _const_ts(meta.snapshot_ts_ns, m)
        )
        table = table.replace_schema_metadata(
            {"netspectra.final": "true" if meta.final else "false", "netspectra.key_fields": key_fields}
        )
        path = self.target(meta, safe_name(task) + ".parquet")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_parquet(table, path)
        except OSError as exc:
            raise WriterError(f"cannot write {path}: {exc}") from exc


class TextWriter(FileWriter, kind="text"):
    """The original's text format, one directory per task per snapshot (see the module docstring).

    Sketch tasks: ``<flow> <value>`` lines, largest first, in ``count_hh.txt`` + ``size_hh.txt``
    (CountMin) or ``spread_ss.txt`` (SuperSpread). Exact tasks: ``flows.txt`` with a ``#`` header and
    ``<flow key> <packets> <bytes> <first seen> <last seen>`` lines (key as the original printed it,
    times ISO 8601 UTC), largest byte count first; and ``summary.json`` (the original gob writer's
    ``task_name``, ``total_flows``, ``total_bytes``, ``total_packets``, ``timestamp``, plus
    ``period_start`` and ``final``).
    """

    def _write_flows(self, snap: FlowSnapshot, meta: SnapshotMeta) -> None:
        ordered = snap.sorted("bytes")
        lines = ["# flow packets bytes first_seen last_seen"]
        if len(ordered):
            parts = [
                pa.array(ordered.flow_keys(), pa.string()),
                pc.cast(pa.array(ordered.packets), pa.string()),
                pc.cast(pa.array(ordered.bytes), pa.string()),
                pa.array(_iso(ordered.first_ns)),
                pa.array(_iso(ordered.last_ns)),
            ]
            lines += pc.binary_join_element_wise(*parts, " ").to_pylist()
        summary = {
            "task_name": snap.task_name,
            "total_flows": len(snap),
            "total_bytes": snap.total_bytes,
            "total_packets": snap.total_packets,
            "timestamp": _iso(np.array([meta.snapshot_ts_ns]))[0],
            "period_start": _iso(np.array([meta.period_start_ns]))[0],
            "final": meta.final,
        }
        files = {"flows.txt": "\n".join(lines) + "\n", "summary.json": json.dumps(summary, indent=1) + "\n"}
        self._write_dir(snap.task_name, meta, files)

    def _write_flow_records(self, snap: FlowRecords, meta: SnapshotMeta) -> None:
        """``flow_records.txt``: a ``#`` header, then one record per line in FirstSeen order —
        source, destination (``ip port``), protocol, VLAN, first and last seen (ISO 8601 UTC), packets
        and bytes each way, ConnState (``-`` when none), EndReason; and ``summary.json`` (records,
        by end reason, open flows at the snapshot, the snapshot's times)."""
        table = snap.to_arrow()
        table = table.take(pc.sort_indices(table, [("FirstSeen", "ascending"), ("SrcIP", "ascending")]))
        cols = (
            "SrcIP", "SrcPort", "DstIP", "DstPort", "Protocol", "VlanID", "FirstSeen", "LastSeen",
            "SrcToDstPackets", "SrcToDstBytes", "DstToSrcPackets", "DstToSrcBytes", "ConnState", "EndReason",
        )  # fmt: skip
        lines = ["# " + " ".join(cols)]
        if table.num_rows:
            parts = []
            for c in cols:
                col = table.column(c)
                if c in ("FirstSeen", "LastSeen"):
                    parts.append(pa.array(_iso(col.cast(pa.int64()).to_numpy())))
                else:
                    parts.append(pc.fill_null(pc.cast(col, pa.string()), "-"))
            lines += pc.binary_join_element_wise(*parts, " ").to_pylist()
        summary = {
            "task_name": snap.task_name,
            "records": len(snap),
            "by_end_reason": snap.reason_counts(),
            "open_flows": snap.summary.open_flows if snap.summary is not None else None,
            "timestamp": _iso(np.array([meta.snapshot_ts_ns]))[0],
            "period_start": _iso(np.array([meta.period_start_ns]))[0],
            "final": meta.final,
        }
        files = {
            "flow_records.txt": "\n".join(lines) + "\n",
            "summary.json": json.dumps(summary, indent=1) + "\n",
        }
        self._write_dir(snap.task_name, meta, files)

    def _write_hitters(self, snap: SketchSnapshot, meta: SnapshotMeta) -> None:
        # a file for every type the sketch kind reports (empty if it has no rows), then any other list
        types = _reported_types(snap)
        files: dict[str, str] = {}
        for t in (*types, *(t for t in sorted(snap.hitters) if t not in types)):
            hitters = snap.hitters.get(t)
            rows = [f"{flow} {value}\n" for flow, value in hitters] if hitters is not None else []
            files[HITTER_FILES[t]] = "".join(rows)
        self._write_dir(snap.task_name, meta, files)

    def _write_dir(self, task: str, meta: SnapshotMeta, files: dict[str, str]) -> None:
        final = self.target(meta, safe_name(task))
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            atomic_dir(final, {name: text.encode() for name, text in files.items()})
        except OSError as exc:
            raise WriterError(f"cannot write {final}: {exc}") from exc
