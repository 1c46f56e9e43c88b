"""The probe's local copy of what it captured: pcap, Parquet or text files, off the publishing path.

:class:`Persister` is the original's ``persistent.Worker`` done right (spec §7, §12 bug 7):

* **Never blocks the capture.** :meth:`Persister.offer` is non-blocking: a batch goes into a bounded
  queue (bounded in *packets*, ``max_queued_packets``; an empty queue always takes one batch, so a
  batch larger than the bound is not starved), and when it is full the batch is dropped and
  counted (:attr:`PersistStats.dropped_batches` / ``dropped_packets``). Drops are logged at most
  once per ``log_interval_s`` with the count suppressed meanwhile, never one line per drop (the
  queue is the project's :class:`~netspectra.bounded.BoundedQueue`).
* **One writer thread per file.** ``num_workers`` threads take whole batches from the queue; each
  owns its own series of files (``...-w<k>`` when there are several), so no two writers ever share
  a file and no stream is interleaved.
* **Rotation** by size (``rotate_bytes``: a file is closed once it reaches it, so it may exceed it
  by one write) and/or age (``rotate_seconds``, checked even while idle). Files are named by the
  UTC time they were opened, ``YYYYmmddTHHMMSS.ffffffZ[-w<k>].<ext>``, written as ``<name>.part``
  and renamed when complete: a file without ``.part`` is always whole. Nothing is truncated: a
  name in use gets a ``.1``, ``.2`` ... suffix. Files open on the first data, so idle time makes
  no empty files.
* **Clean stop.** :meth:`Persister.stop` refuses new batches (under the queue lock: no
  enqueue-after-close race), lets the writers drain the queue, then flushes, closes and renames
  every file. Files are fsync'ed on close.

Encodings (:data:`ENCODINGS`):

* ``pcap``: the captured frames with the **capture's real link type** (a :class:`RawFrames`
  per batch: raw bytes of every record, IP or not), nanosecond-resolution classic pcap readable
  by tcpdump, tshark, dpkt and :class:`~netspectra.capture.reader.CaptureReader`. A change of link
  type starts a new file.
* ``parquet``: the :class:`PacketBatch` columns (``ts_ns`` as ``timestamp[ns, UTC]``, addresses as
  ``fixed_size_binary(16)``, IPv4 mapped), zstd, one row group per write. This replaces the
  original's Go-only ``gob`` encoding.
* ``text``: the original's line format in UTC,
  ``YYYY-MM-DD HH:MM:SS.mmm - SRC:SPORT -> DST:DPORT, Proto: P, Len: L``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netspectra.batch import PacketBatch
from netspectra.bounded import BoundedQueue
from netspectra.config.models import PersistenceConfig
from netspectra.jit import njit
from netspectra.output.addr import ips_to_arrow

log = logging.getLogger(__name__)

__all__ = [
    "ENCODINGS",
    "PARQUET_SCHEMA",
    "PersistStats",
    "Persister",
    "RawFrames",
    "format_text_lines",
    "pack_pcap_records",
    "pcap_file_header",
    "write_pcap",
]

ENCODINGS: tuple[str, ...] = ("pcap", "parquet", "text")
_EXT = {"pcap": "pcap", "parquet": "parquet", "text": "log"}
PCAP_NS_MAGIC = 0xA1B23C4D

PARQUET_SCHEMA = pa.schema(
    [
        pa.field("ts_ns", pa.timestamp("ns", tz="UTC"), nullable=False),
        pa.field("src_ip", pa.binary(16), nullable=False),
        pa.field("dst_ip", pa.binary(16), nullable=False),
        pa.field("src_port", pa.uint16(), nullable=False),
        pa.field("dst_port", pa.uint16(), nullable=False),
        pa.field("protocol", pa.uint8(), nullable=False),
        pa.field("length", pa.uint32(), nullable=False),
    ]
)


@dataclass(frozen=True, slots=True)
class RawFrames:
    """The captured bytes of ``n`` records, back to back: what a pcap file needs and a batch lacks.

    Frame ``i`` is ``data[off[i] : off[i] + caplen[i]]`` (``off`` has ``n + 1`` entries, the last
    one the end of the data); ``wirelen`` is its length on the wire, ``ts_ns`` its time (ns since
    the epoch), ``linktype`` the pcap link type of every frame, ``snaplen`` the capture's snap
    length (written into the pcap header).
    """

    data: np.ndarray
    off: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    ts_ns: np.ndarray
    linktype: int
    snaplen: int

    def __len__(self) -> int:
        return int(self.caplen.shape[0])

    @classmethod
    def from_frames(
        cls,
        frames: list[bytes],
        ts_ns: list[int] | np.ndarray,
        linktype: int,
        wirelen: list[int] | None = None,
    ) -> RawFrames:
        """Build from Python ``bytes`` frames (tests, small tools; not for the capture path)."""
        caplen = np.array([len(f) for f in frames], np.uint32)
        off = np.zeros(len(frames) + 1, np.int64)
        np.cumsum(caplen, out=off[1:])
        data = np.frombuffer(b"".join(frames), np.uint8).copy()
        wl = caplen.copy() if wirelen is None else np.asarray(wirelen, np.uint32)
        snap = max(int(caplen.max()) if len(frames) else 0, 65535)
        return cls(data, off, caplen, wl, np.asarray(ts_ns, np.int64), linktype, snap)


@njit(nogil=True, cache=True)
def pack_pcap_records(data, off, caplen, wirelen, ts_ns, out):
    """Write ``len(caplen)`` nanosecond pcap records (16-byte header + frame) into ``out``.

    ``out`` needs ``16 * n + sum(caplen)`` bytes; returns the bytes written. Headers are
    little-endian (the file header written by :class:`Persister` says so with its magic).
    """
    q = 0
    for i in range(caplen.shape[0]):
        t = ts_ns[i]
        sec = t // 1_000_000_000
        nsec = t - sec * 1_000_000_000
        cap = np.int64(caplen[i])
        hdr = (np.uint32(sec), np.uint32(nsec), np.uint32(cap), np.uint32(wirelen[i]))
        for w in range(4):
            v = hdr[w]
            for k in range(4):
                out[q + 4 * w + k] = (v >> np.uint32(8 * k)) & np.uint32(0xFF)
        q += 16
        s = off[i]
        for k in range(cap):
            out[q + k] = data[s + k]
        q += cap
    return q


def pcap_file_header(linktype: int, snaplen: int) -> bytes:
    """The 24-byte header of a little-endian nanosecond pcap file."""
    return struct.pack("<IHHiIII", PCAP_NS_MAGIC, 2, 4, 0, 0, snaplen, linktype)


def write_pcap(path: str | os.PathLike[str], raw: RawFrames) -> Path:
    """Write ``raw`` as one nanosecond pcap file of its link type (tests and tools; not atomic)."""
    out = np.empty(16 * len(raw) + int(raw.caplen.sum(dtype=np.int64)), np.uint8)
    k = pack_pcap_records(raw.data, raw.off, raw.caplen, raw.wirelen, raw.ts_ns, out)
    with open(path, "wb") as fh:
        fh.write(pcap_file_header(raw.linktype, raw.snaplen))
        fh.write(out[:k])
    return Path(path)


def format_text_lines(batch: PacketBatch) -> str:
    """The batch in the original's text format, one line per packet, times in UTC.

    ``YYYY-MM-DD HH:MM:SS.mmm - SRC:SPORT -> DST:DPORT, Proto: P, Len: L`` (IPv4 dotted, IPv6 in
    RFC 5952 form, as Go prints them); every line ends with ``\\n``. Vectorised with Arrow.
    """
    n = len(batch)
    if n == 0:
        return ""
    ts = batch.ts_ns
    # Whole seconds (a "ns" timestamp would make %S print the fraction too).
    sec = pa.array(ts // 1_000_000_000, pa.timestamp("s", tz="UTC"))
    ms = pc.utf8_lpad(pa.array((ts // 1_000_000) % 1000).cast(pa.string()), 3, "0")
    parts = [
        pc.strftime(sec, format="%Y-%m-%d %H:%M:%S"),
        pa.array(np.full(n, "."), pa.string()),
        ms,
        pa.array(np.full(n, " - "), pa.string()),
        ips_to_arrow(batch.src_ip),
        pa.array(np.full(n, ":"), pa.string()),
        pa.array(batch.src_port).cast(pa.string()),
        pa.array(np.full(n, " -> "), pa.string()),
        ips_to_arrow(batch.dst_ip),
        pa.array(np.full(n, ":"), pa.string()),
        pa.array(batch.dst_port).cast(pa.string()),
        pa.array(np.full(n, ", Proto: "), pa.string()),
        pa.array(batch.protocol).cast(pa.string()),
        pa.array(np.full(n, ", Len: "), pa.string()),
        pa.array(batch.length).cast(pa.string()),
    ]
    lines = pc.binary_join_element_wise(*parts, "")
    return "\n".join(lines.to_pylist()) + "\n"


def batch_to_arrow(batch: PacketBatch) -> pa.Table:
    """The batch as an Arrow table of :data:`PARQUET_SCHEMA`."""
    n = len(batch)
    cols = [
        pa.array(batch.ts_ns, pa.int64()).cast(PARQUET_SCHEMA.field("ts_ns").type),
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(batch.src_ip.tobytes())]),
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(batch.dst_ip.tobytes())]),
        pa.array(batch.src_port, pa.uint16()),
        pa.array(batch.dst_port, pa.uint16()),
        pa.array(batch.protocol, pa.uint8()),
        pa.array(batch.length, pa.uint32()),
    ]
    return pa.Table.from_arrays(cols, schema=PARQUET_SCHEMA)


@dataclass
class PersistStats:
    """Counters of a :class:`Persister` (all exact).

    ``offered``/``accepted``: batches offered and queued; ``dropped_batches``/``dropped_packets``:
    refused because the queue was full; ``rejected_after_stop``: offered after :meth:`stop`;
    ``written_packets``/``written_bytes``: records and file bytes written; ``files``: completed
    files (final paths), in the order they were closed; ``errors``: write errors (the batch concerned
    is also counted as dropped; the next batch opens a new file).
    """

    offered: int = 0
    accepted: int = 0
    dropped_batches: int = 0
    dropped_packets: int = 0
    rejected_after_stop: int = 0
    written_packets: int = 0
    written_bytes: int = 0
    errors: int = 0
    files: list[str] = field(default_factory=list)


class _Item:
    __slots__ = ("batch", "n", "raw")

    def __init__(self, batch: PacketBatch | None, raw: RawFrames | None, n: int) -> None:
        self.batch = batch
        self.raw = raw
        self.n = n


class _FileWriter:
    """One open output file of one worker: the only code that ever writes to it."""

    def __init__(self, final: Path, encoding: str, linktype: int, snaplen: int) -> None:
        self.final = final
        self.part = final.with_name(final.name + ".part")
        self.encoding = encoding
        self.linktype = linktype
        self.opened = time.monotonic()
        self.bytes = 0
        self._fh: BinaryIO = open(self.part, "xb")  # noqa: SIM115 - closed in close()
        self._pq: pq.ParquetWriter | None = None
        if encoding == "pcap":
            self._write(pcap_file_header(linktype, snaplen))
        elif encoding == "parquet":
            self._pq = pq.ParquetWriter(self._fh, PARQUET_SCHEMA, compression="zstd")

    def _write(self, data: bytes | memoryview | np.ndarray) -> None:
        self._fh.write(data)
        self.bytes += len(data) if not isinstance(data, np.ndarray) else int(data.nbytes)

    def write(self, it: _Item) -> None:
        if self.encoding == "pcap":
            raw = it.raw
            assert raw is not None
            out = np.empty(16 * len(raw) + int(raw.caplen.sum(dtype=np.int64)), np.uint8)
            k = pack_pcap_records(raw.data, raw.off, raw.caplen, raw.wirelen, raw.ts_ns, out)
            self._write(out[:k])
        elif self.encoding == "text":
            assert it.batch is not None
            self._write(format_text_lines(it.batch).encode())
        else:
            assert self._pq is not None and it.batch is not None
            self._pq.write_table(batch_to_arrow(it.batch))
            self.bytes = self._fh.tell()

    def close(self) -> Path:
        if self._pq is not None:
            self._pq.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.bytes = self._fh.tell()
        self._fh.close()
        os.replace(self.part, self.final)
        return self.final


class Persister:
    """Bounded, non-blocking persistence of batches to rotated files (see the module docstring).

    ``offer(batch, raw)``: ``raw`` (:class:`RawFrames`) is required for ``pcap``, ``batch`` for
    ``parquet`` and ``text``. Call :meth:`start` first (or use it as a context manager).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        encoding: str = "pcap",
        *,
        num_workers: int = 1,
        max_queued_packets: int = 1_000_000,
        rotate_bytes: int | None = None,
        rotate_seconds: float | None = None,
        log_interval_s: float = 10.0,
    ) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {num_workers}")
        if max_queued_packets < 1:
            raise ValueError(f"max_queued_packets must be positive, got {max_queued_packets}")
        if rotate_bytes is not None and rotate_bytes < 1:
            raise ValueError(f"rotate_bytes must be positive (or None), got {rotate_bytes}")
        if rotate_seconds is not None and not rotate_seconds > 0:
            raise ValueError(f"rotate_seconds must be positive (or None), got {rotate_seconds}")
        self.directory = Path(directory) if str(directory) else Path(".")
        self.encoding = encoding
        self.num_workers = num_workers
        self.max_queued_packets = max_queued_packets
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.log_interval_s = log_interval_s
        self.stats = PersistStats()
        self._q: BoundedQueue[_Item] = BoundedQueue(
            max_queued_packets,
            units=lambda it: it.n,
            name="persistence queue",
            unit="packets",
            logger=log,
            log_interval_s=log_interval_s,
        )
        self._stats_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._names_lock = threading.Lock()

    @classmethod
    def from_config(
        cls,
        cfg: PersistenceConfig,
        *,
        rotate_bytes: int | None = None,
        rotate_seconds: float | None = None,
    ) -> Persister:
        """A persister for ``probe.persistence`` (not started).

        ``channel_buffer_size`` bounds the queue in packets (the original's unit: one packet per
        message); ``gob`` — a Go-only format — is written as Parquet, with a warning.
        """
        encoding = cfg.encoding
        if encoding == "gob":
            log.warning("probe.persistence.encoding 'gob' is a Go format: writing Parquet instead")
            encoding = "parquet"
        return cls(
            cfg.path,
            encoding,
            num_workers=cfg.num_workers,
            max_queued_packets=cfg.channel_buffer_size,
            rotate_bytes=rotate_bytes,
            rotate_seconds=rotate_seconds,
        )

    # -- producer side ------------------------------------------------------------------------------

    def start(self) -> Persister:
        """Create the directory and start the writer threads."""
        if self._threads:
            raise RuntimeError("Persister already started")
        self.directory.mkdir(parents=True, exist_ok=True)
        for k in range(self.num_workers):
            t = threading.Thread(target=self._worker, args=(k,), name=f"persist-{k}", daemon=True)
            t.start()
            self._threads.append(t)
        log.info(
            "persisting %s to %s (%d writer%s)",
            self.encoding,
            self.directory,
            self.num_workers,
            "s" if self.num_workers > 1 else "",
        )
        return self

    def offer(self, batch: PacketBatch | None = None, raw: RawFrames | None = None) -> bool:
        """Queue a batch without blocking; ``False`` if it was dropped (queue full or stopped)."""
        if self.encoding == "pcap":
            if raw is None:
                raise ValueError("pcap persistence needs the raw frames (RawFrames) of the batch")
            n = len(raw)
        else:
            if batch is None:
                raise ValueError(f"{self.encoding} persistence needs the PacketBatch")
            n = len(batch)
        item = _Item(batch if self.encoding != "pcap" else None, raw, n)
        accepted = self._q.put(item, block=False)
        with self._stats_lock:
            self.stats.offered += 1
            if accepted:
                self.stats.accepted += 1
            elif self._q.closed:
                self.stats.rejected_after_stop += 1
            else:
                self.stats.dropped_batches += 1
                self.stats.dropped_packets += n
        return accepted

    def stop(self, timeout: float | None = None) -> PersistStats:
        """Refuse new batches, write what is queued, close every file; return the statistics."""
        self._q.close()
        for t in self._threads:
            t.join(timeout)
        return self.stats

    @property
    def queued_packets(self) -> int:
        return self._q.queued_units

    def __enter__(self) -> Persister:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- writer side --------------------------------------------------------------------------------

    def _new_path(self, worker: int) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        suffix = f"-w{worker}" if self.num_workers > 1 else ""
        ext = _EXT[self.encoding]
        with self._names_lock:
            for i in range(1_000_000):
                name = f"{stamp}{suffix}{'' if i == 0 else f'.{i}'}.{ext}"
                p = self.directory / name
                if not p.exists() and not p.with_name(name + ".part").exists():
                    return p
        raise RuntimeError("no free file name")  # pragma: no cover

    def _take(self, deadline: float | None) -> list[_Item] | None:
        """Queued items (all of them, at most ~1M packets); [] on a rotation deadline; None when done."""
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._q.take(1_048_576, wait)

    def _worker(self, k: int) -> None:
        fw: _FileWriter | None = None

        def close() -> None:
            nonlocal fw
            if fw is None:
                return
            try:
                path = fw.close()
                with self._stats_lock:
                    self.stats.files.append(str(path))
            except OSError as exc:
                with self._stats_lock:
                    self.stats.errors += 1
                log.error("persistence: closing %s failed: %s", fw.part, exc)
            fw = None

        try:
            while True:
                deadline = None
                if fw is not None and self.rotate_seconds is not None:
                    deadline = fw.opened + self.rotate_seconds
                items = self._take(deadline)
                if items is None:
                    break
                if (
                    fw is not None
                    and self.rotate_seconds is not None
                    and time.monotonic() >= fw.opened + self.rotate_seconds
                ):
                    close()
                if not items:
                    continue
                for it in items:
                    lt = it.raw.linktype if it.raw is not None else 0
                    if fw is not None and fw.linktype != lt:
                        close()
                    try:
                        if fw is None:
                            snap = it.raw.snaplen if it.raw is not None else 0
                            fw = _FileWriter(self._new_path(k), self.encoding, lt, snap)
                        before = fw.bytes
                        fw.write(it)
                        with self._stats_lock:
                            self.stats.written_packets += it.n
                            self.stats.written_bytes += fw.bytes - before
                    except Exception as exc:  # a writer must survive anything: the queue would fill
                        with self._stats_lock:
                            self.stats.errors += 1
                            self.stats.dropped_batches += 1
                            self.stats.dropped_packets += it.n
                        log.error("persistence: writing %s failed: %r", fw.part if fw else "a new file", exc)
                        with contextlib.suppress(Exception):
                            close()
                        continue
                    if self.rotate_bytes is not None and fw.bytes >= self.rotate_bytes:
                        close()
        finally:
            close()
