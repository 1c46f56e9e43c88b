"""The ``clickhouse`` writer kind: snapshots into the ClickHouse tables of the configuration.

Follow a snapshot: the engine calls :class:`ClickHouseWriter` (``write_flows`` / ``write_hitters``), which
turns it into Arrow rows of the declared tables (:func:`flow_rows`, :func:`hitter_rows`,
:func:`flow_record_rows`; the tables are
:mod:`netspectra.storage.schema`) and inserts them through its
:class:`~netspectra.storage.store.ClickHouseStore` — which runs them on the backend the configuration
chose (:mod:`netspectra.storage.backend`: embedded chdb when ``clickhouse.host`` is empty, else a server
over the native protocol, TLS included). The writer never asks which.

:class:`ClickHouseWriter` makes one INSERT per task per snapshot (none for an empty one). For exact tasks
it writes only the flows that changed since its previous successful write of the same task and period
(rows hold cumulative counters, so an unchanged flow's newest row is still right); see docs/storage.md.
Flows tasks hand out increments (the records ended since the previous snapshot): each is written once;
rollup tasks too (rows changed since the previous snapshot, one INSERT per resolution).
At ``open()`` it creates and migrates the tables (:meth:`ClickHouseStore.ensure_schema`); retention
(:mod:`netspectra.storage.retention`) runs at ``open()`` and at most hourly after a write.

The store, :func:`connect_store` and :data:`DEFAULT_CHDB_DIR` are importable from here too.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from netspectra.fields import BY_NAME
from netspectra.storage.backend_chdb import DEFAULT_CHDB_DIR
from netspectra.storage.base import SnapshotMeta, StorageError, Writer, WriterError
from netspectra.storage.retention import expired_by, retentions
from netspectra.storage.schema import (
    ADDED_KEY_COLUMNS,
    EXPORTER_COLUMNS,
    EXPORTER_TABLE,
    FLOW_COLUMNS,
    FLOW_RECORD_COLUMNS,
    FLOW_RECORDS_TABLE,
    FLOW_TABLE,
    HITTER_COLUMNS,
    HITTER_TABLE,
    ROLLUP_COLUMNS,
    ROLLUP_TABLES,
)
from netspectra.storage.store import ClickHouseStore, connect_store, parse_version

if TYPE_CHECKING:
    from netspectra.collect.exporters_task import ExportersSnapshot
    from netspectra.config.aggregator import WriterConfig
    from netspectra.flows.records import FlowRecords
    from netspectra.rollup.task import RollupRows
    from netspectra.sketches.base import SketchSnapshot
    from netspectra.storage.clickhouse_config import ClickHouseConfig
    from netspectra.tasks.exact import FlowSnapshot

log = logging.getLogger(__name__)

#: How often (at most) a writer looks for expired periods.
RETENTION_CHECK_NS = 3600 * 10**9


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
    columns of :data:`FLOW_COLUMNS`, in order, less the key columns of fields beyond the five that the
    task does not key on (the table makes them NULL). ``hashes``: :func:`flow_hashes` of ``snap`` if
    known."""
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
        **{name: t.column(name) for name in snap.extra_fields},
        "StartNs": pa.array(snap.first_ns, pa.int64()),
        "EndNs": pa.array(snap.last_ns, pa.int64()),
        "ByteCount": t.column("ByteCount"),
        "PacketCount": t.column("PacketCount"),
    }
    extra = set(snap.extra_fields)
    assert tuple(cols) == tuple(n for n, _ in FLOW_COLUMNS if n not in ADDED_KEY_COLUMNS or n in extra)
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


#: Columns of :meth:`FlowRecords.to_arrow` stored as integer nanoseconds under another name.
_NS_COLUMNS = {
    "FirstSeen": "FirstSeenNs",
    "LastSeen": "LastSeenNs",
    "Duration": "DurationNs",
    **{
        f"{d}IAT{s}": f"{d}IAT{s}Ns"
        for d in ("SrcToDst", "DstToSrc")
        for s in ("Min", "Max", "Mean", "Stddev")
    },
}


def rollup_rows(snap: RollupRows, meta: SnapshotMeta, resolution: int) -> pa.Table:
    """The rows of ``snap`` at ``resolution`` (an index into :data:`~netspectra.rollup.dims.RESOLUTIONS`)
    for its rollup table: the physical columns of :data:`ROLLUP_COLUMNS`, in order; the dimensions the
    task does not key on hold 0 / ''."""
    from netspectra.rollup.dims import RESOLUTIONS

    part = snap.at(resolution)
    m = len(part)
    decoded = part.columns()
    cols: dict[str, pa.Array] = {
        "TimestampNs": pa.array(np.full(m, meta.snapshot_ts_ns, np.uint64)),
        "PeriodStartNs": pa.array(np.full(m, meta.period_start_ns, np.uint64)),
        "TaskName": pa.array(np.full(m, snap.task_name, object), pa.string()),
        "BucketNs": pa.array(part.bucket * RESOLUTIONS[resolution].ns, pa.int64()),
        "Epoch": pa.array(part.epoch.astype(np.uint32), pa.uint32()),
    }
    empty = pa.array(np.full(m, "", object), pa.string())
    for name, typ in ROLLUP_COLUMNS[5:-2]:
        if name in decoded:
            values = decoded[name]
            cols[name] = values if isinstance(values, pa.Array) else pa.array(values)
        else:
            cols[name] = empty if typ == "String" else pa.array(np.zeros(m, np.uint32))
        if typ == "UInt8":
            cols[name] = cols[name].cast(pa.uint8())
    cols["Packets"] = pa.array(part.packets, pa.uint64())
    cols["Bytes"] = pa.array(part.bytes, pa.uint64())
    assert tuple(cols) == tuple(n for n, _ in ROLLUP_COLUMNS)
    return pa.table(cols)


def flow_record_hashes(snap: FlowRecords) -> np.ndarray:
    """The ``FlowHash`` of every record of ``snap`` (uint64, a function of the record's key: addresses,
    ports, protocol and VLAN as the record orients them)."""
    from netspectra.flows import kernels as kern

    o = snap.oriented()
    words = np.empty((len(snap), 5), np.uint64)
    words[:, 0:2] = o["src"]
    words[:, 2:4] = o["dst"]
    misc = snap.rows[:, kern.MISC]
    words[:, 4] = (
        (o["sport"].astype(np.uint64) << np.uint64(24))
        | (o["dport"].astype(np.uint64) << np.uint64(8))
        | (misc & np.uint64(0xFF))
        | (((misc >> np.uint64(40)) & np.uint64(0xFFF)) << np.uint64(40))
    )
    return _hash_words(words)


def flow_record_rows(snap: FlowRecords, meta: SnapshotMeta) -> pa.Table:
    """The ``flows`` rows of ``snap``: the physical columns of :data:`FLOW_RECORD_COLUMNS`, in order —
    the record's columns with times and durations as integer ns, and the SPLT lists (empty lists when
    the task keeps no SPLT)."""
    t = snap.to_arrow()
    m = t.num_rows
    cols: dict[str, pa.Array | pa.ChunkedArray] = {
        "TimestampNs": pa.array(np.full(m, meta.snapshot_ts_ns, np.uint64)),
        "PeriodStartNs": pa.array(np.full(m, meta.period_start_ns, np.uint64)),
        "FlowHash": pa.array(flow_record_hashes(snap)),
    }
    for name in t.column_names:
        col = t.column(name)
        cols[_NS_COLUMNS.get(name, name)] = col.cast(pa.int64()) if name in _NS_COLUMNS else col
    if "SpltSize" not in cols:
        offsets = pa.array(np.zeros(m + 1, np.int32))
        cols["SpltSize"] = pa.ListArray.from_arrays(offsets, pa.array([], pa.uint32()))
        cols["SpltDirection"] = pa.ListArray.from_arrays(offsets, pa.array([], pa.uint8()))
    names = [n for n, _ in FLOW_RECORD_COLUMNS]
    missing = set(names) - set(cols)
    assert not missing, f"flow record columns without a value: {sorted(missing)}"
    return pa.table({n: cols[n] for n in names})


def exporter_rows(snap: ExportersSnapshot, meta: SnapshotMeta) -> pa.Table:
    """The ``exporters`` rows of an exporters task's snapshot: one per exporter, in the columns of
    :data:`EXPORTER_COLUMNS`."""
    m = len(snap)
    rates = [sorted(r.items()) for r in snap.rates]
    cols = {
        "TimestampNs": pa.array(np.full(m, meta.snapshot_ts_ns, np.uint64)),
        "PeriodStartNs": pa.array(np.full(m, meta.period_start_ns, np.uint64)),
        "TaskName": pa.array([snap.task_name] * m, pa.string()),
        "Exporter": pa.array(snap.addresses(), pa.string()),
        "FirstSeenNs": pa.array(snap.first_ns, pa.int64()),
        "LastSeenNs": pa.array(snap.last_ns, pa.int64()),
        "Records": pa.array(snap.records, pa.uint64()),
        "Packets": pa.array(snap.packets, pa.uint64()),
        "Bytes": pa.array(snap.bytes, pa.uint64()),
        "SamplingRates": pa.array([[k for k, _ in r] for r in rates], pa.list_(pa.uint32())),
        "RecordsPerRate": pa.array([[v for _, v in r] for r in rates], pa.list_(pa.uint64())),
        "RecordsWithoutRate": pa.array(snap.records_without_rate, pa.uint64()),
    }
    return pa.table({n: cols[n] for n, _ in EXPORTER_COLUMNS})


_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _key_words(snap: FlowSnapshot) -> np.ndarray:
    """Each flow's key as uint64 words: addresses, then ports and protocol (5 words), then the key
    fields beyond the five in canonical order (an address 2 words, an integer 1, a dictionary field the
    64-bit hash of its text, so that the words are a function of the stored key, whatever the codes)."""
    m = len(snap)
    extra = snap.extra_fields
    width = 5 + sum(2 if BY_NAME[f].is_ip else 1 for f in extra)
    words = np.empty((m, width), np.uint64)
    words[:, 0:2] = np.ascontiguousarray(snap.src_ip).view("<u8")
    words[:, 2:4] = np.ascontiguousarray(snap.dst_ip).view("<u8")
    words[:, 4] = (
        (snap.src_port.astype(np.uint64) << np.uint64(24))
        | (snap.dst_port.astype(np.uint64) << np.uint64(8))
        | snap.protocol.astype(np.uint64)
    )
    w = 5
    for name in extra:
        f = BY_NAME[name]
        values = snap.extra[name]
        if f.is_ip:
            words[:, w : w + 2] = np.ascontiguousarray(values).view("<u8")
            w += 2
            continue
        if f.kind == "dict":
            table = _text_hashes(snap.dictionaries.get(f.column, ()))
            codes = values.astype(np.int64)
            words[:, w] = np.where(
                codes < len(table), table[np.minimum(codes, len(table) - 1)], _UNKNOWN_HASH
            )
        else:
            words[:, w] = values.astype(np.uint64)
        w += 1
    return words


#: The hash of a dictionary code the dictionary does not know (it is stored as the empty text).
_UNKNOWN_HASH = np.uint64(0)


def _text_hashes(words: Sequence[str]) -> np.ndarray:
    """A stable 64-bit hash of each text of a dictionary (blake2b; ``""`` hashes to 0, as an unknown
    code)."""
    out = np.zeros(max(1, len(words)), np.uint64)
    for i, text in enumerate(words):
        if text:
            out[i] = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
    return out


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
    """Snapshots into ``flow_metrics`` / ``heavy_hitters`` / ``flows`` / ``rollup_*`` / ``exporters`` of the
    configured
    ClickHouse.

    One INSERT per task per snapshot, none for an empty snapshot or when no flow changed. Failures raise
    :class:`WriterError`; a retried write of the same snapshot stores the same rows (the tables replace
    rows with equal keys). Retention (``clickhouse.retention`` and the other ``*_retention`` keys) is
    applied at :meth:`open` and then at most hourly after a write, to the tables of the writer's group and
    those whose key its section sets (:func:`~netspectra.storage.retention.expired_by`); a failure there is
    logged and retried, never raised.
    """

    def __init__(self, cfg: WriterConfig, group: str) -> None:
        super().__init__(cfg, group)
        ch: ClickHouseConfig = cfg.params
        self.store = ClickHouseStore(ch)
        self._resolution_s = int(ch.history_resolution.total_seconds())
        # the tables whose retention this writer applies, and the shortest of those retentions: how often
        # expired partitions can appear at most
        self._expires = expired_by(ch, group)
        self._retention_ns = min(retentions(ch, self._expires).values(), default=0)
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

    def _write_flow_records(self, snap: FlowRecords, meta: SnapshotMeta) -> None:
        # increments: every record is written once (a retried write replaces it: the table's key is
        # the record's identity)
        if len(snap) == 0:
            return
        self._insert(FLOW_RECORDS_TABLE, flow_record_rows(snap, meta))
        self._maybe_expire()

    def _write_rollups(self, snap: RollupRows, meta: SnapshotMeta) -> None:
        # increments of cumulative rows: a row replaces the earlier version of its identity (a retried
        # write stores the same rows again: replaced), one INSERT per resolution that has rows
        if len(snap) == 0:
            return
        for r, table in enumerate(ROLLUP_TABLES):
            rows = rollup_rows(snap, meta, r)
            if rows.num_rows:
                self._insert(table, rows)
        self._maybe_expire()

    def write_exporters(self, snap: ExportersSnapshot, meta: SnapshotMeta) -> None:
        """Store an exporters task's snapshot (one row per exporter; the newest of a period stays)."""
        self._require_group("exporters", "write_exporters")
        if len(snap) == 0:
            return
        self._insert(EXPORTER_TABLE, exporter_rows(snap, meta))
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
            self.store.expire(now_ns=now, tables=self._expires)
        except StorageError as exc:
            log.warning("ClickHouse retention check failed (retried at the next write): %s", exc)
            return
        self._next_expiry_ns = now + min(RETENTION_CHECK_NS, self._retention_ns)


__all__: Sequence[str] = (
    "DEFAULT_CHDB_DIR",
    "RETENTION_CHECK_NS",
    "ClickHouseStore",
    "ClickHouseWriter",
    "StorageError",
    "bucket_of",
    "connect_store",
    "exporter_rows",
    "flow_hashes",
    "flow_record_hashes",
    "flow_record_rows",
    "flow_rows",
    "hitter_rows",
    "parse_version",
    "rollup_rows",
)
