"""Capture files (pcap, pcapng, either gzip-compressed) into columnar :class:`PacketBatch` objects.

:class:`CaptureReader` is the offline entry point of the pipeline: it detects the format by magic,
walks the container's records window by window (numba kernels in :mod:`~netspectra.capture.pcap`
and :mod:`~netspectra.capture.pcapng`), decodes each window's records in one call of
:func:`~netspectra.capture.decode.decode_records`, and yields batches of IP packets. Memory is
bounded by the window (default 64 MiB) and the batch size, whatever the file size.

Damage never loses data: the iterator yields every packet before the damaged record or block,
then raises :class:`~netspectra.capture.errors.CaptureError` naming the file and the byte offset.
This holds for every container: a pcap or pcapng file cut or corrupted anywhere, and gzip of
either, where the packets are those of every byte decompressed before the gzip damage (a member
cut short, corrupt deflate data, a CRC-32 or length that does not match the data), and then the
gzip damage is the error. Trailing garbage after gzip data is ignored with a warning (logged and
kept in ``stats.warnings``), as ``gzip -dc`` does. :attr:`CaptureReader.stats` is up to date at
that point (and after normal completion).
"""

from __future__ import annotations

import logging
import sys
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.capture.decode import DECODER_COLUMNS, decode_records, extras_into
from netspectra.capture.errors import CaptureError
from netspectra.capture.pcap import GLOBAL_HEADER_LEN, PcapWalker
from netspectra.capture.pcapng import PcapngWalker
from netspectra.capture.source import (
    DEFAULT_WINDOW_BYTES,
    ByteSource,
    RecordArrays,
    open_source,
    sniff,
)
from netspectra.capture.stats import CaptureStats

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 262_144
#: A ``ramp`` reader's first (and smallest) batches hold ``batch_size // RAMP_DIVISOR`` rows.
RAMP_DIVISOR = 16
#: A batch is handed out once fewer rows than this fit in it, so that walker calls stay large
#: (a call is ~µs of Python; calls of a handful of records would dominate the parse).
_MIN_CALL_RECORDS = 4096

ProgressCallback = Callable[[int], None]


class RecordChunk:
    """The records of one walker call: ``n`` rows of per-record arrays over the window ``buf``.

    ``off`` indexes ``buf``. Valid only until the iterator that produced it advances (the window and
    the arrays are reused); copy what must outlive that.
    """

    __slots__ = ("buf", "caplen", "linktype", "n", "off", "ts_ns", "wirelen")

    def __init__(self, buf: np.ndarray, rec: RecordArrays, n: int) -> None:
        self.buf = buf
        self.n = n
        self.off = rec.off[:n]
        self.caplen = rec.caplen[:n]
        self.wirelen = rec.wirelen[:n]
        self.ts_ns = rec.ts_ns[:n]
        self.linktype = rec.linktype[:n]


class _RecordStream:
    """Pull-based record walk over one file: :meth:`next` fills ``rec`` with up to N records."""

    def __init__(self, path: str, window_bytes: int, capacity: int) -> None:
        self.src: ByteSource
        self.src, fmt = open_source(path, window_bytes)
        try:
            dec = self.src.compressed
            buf = self.src.window()
            if fmt == "pcap":
                if buf.shape[0] < GLOBAL_HEADER_LEN and not self.src.at_eof:
                    buf = self.src.advance(0, GLOBAL_HEADER_LEN)
                if buf.shape[0] < GLOBAL_HEADER_LEN and self.src.damage is not None:
                    raise self.src.damage
                self.walker: PcapWalker | PcapngWalker = PcapWalker(
                    path, buf[:GLOBAL_HEADER_LEN].tobytes(), decompressed=dec
                )
                self.pos = GLOBAL_HEADER_LEN
            else:
                self.walker = PcapngWalker(path, decompressed=dec)
                self.pos = 0
        except BaseException:
            self.src.close()
            raise
        self.format = fmt
        self.buf = buf
        self.rec = RecordArrays(capacity)
        self._need = 0
        self._error: CaptureError | None = None
        self._done = False

    def next(self, max_records: int) -> int:
        """Walk up to ``max_records`` records into ``self.rec`` over ``self.buf``; 0 at the end.

        Raises the pending :class:`CaptureError` on the call after the records preceding the
        damage were returned.
        """
        while True:
            if self._error is not None:
                err, self._error, self._done = self._error, None, True
                raise err
            if self._done:
                return 0
            if self._need:
                # Deferred to here so that the window of the previous chunk stayed valid.
                self.buf = self.src.advance(self.pos, self._need)
                self.pos, self._need = 0, 0
            res = self.walker.walk(self.buf, self.pos, self.src.at_eof, self.src.start, self.rec, max_records)
            self.pos, self._need, self._error, self._done = res.pos, res.need, res.error, res.done
            if self.src.damage is not None and (res.done or res.truncated):
                # The stream ended early because the file's compression is damaged: that damage,
                # not "a record runs past the end", is what to report (after the records).
                self._error, self._done = self.src.damage, False
            if res.n:
                return res.n

    def bytes_done(self) -> int:
        return self.src.bytes_done(self.pos)

    def close(self) -> None:
        self.buf = np.empty(0, np.uint8)  # drop the view before unmapping
        self.src.close()


class CaptureReader:
    """Iterate a capture file as :class:`PacketBatch` objects (see the module docstring).

    ``CaptureReader(path)`` checks the file at once: a missing file, a directory, an unreadable,
    empty or truncated-header file, or an unknown magic raise :class:`CaptureError` here.
    Iterating opens the file again and yields batches of at most ``batch_size`` rows, fresh arrays
    that consumers may keep; batches are handed out once fewer than ``min(4096, batch_size // 16)``
    more rows fit, so all but the last are nearly full. Each iteration restarts :attr:`stats`.

    Attributes: ``format`` (``"pcap"`` or ``"pcapng"``, from the magic, whatever the file name),
    ``compressed`` (gzip), ``total_bytes`` (file size on disk, the total for ``progress``),
    ``stats`` (:class:`CaptureStats`). ``progress(bytes_done)`` is called after every window walk
    with the file bytes consumed (compressed bytes for gzip). ``extras`` makes the batches carry the
    decoder's optional columns too (:data:`~netspectra.capture.decode.DECODER_COLUMNS`: TCP flags,
    VLAN id, ICMP type and code, IP length), for the tasks that need them (flow records).

    ``ramp``: the batches at both ends of the file are smaller — the first ``batch_size // 16``
    (:data:`RAMP_DIVISOR`) rows, each next one twice the last up to ``batch_size``; and once the rest of
    the file is estimated (from the records per byte so far) to hold under two full batches, each
    batch takes half of that rest, down to the first batch's size. For a consumer that applies batches
    on other threads while this one decodes the next (the offline run's workers): they start after a
    small batch instead of a full one, and little is left to them after the last read. The rows, their
    order and every count are the same; only where batches end differs. The small batches are views
    of the reader's buffers (never copies), like full ones, successive ones of one buffer while they fit
    in it (a consumer holding many of them holds about their rows).


    A :class:`~netspectra.batch.BatchSource`: :meth:`stop` is a no-op (a file ends by itself),
    :meth:`close` (also on leaving a ``with`` block) ends iterations in progress and releases
    their files.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        progress: ProgressCallback | None = None,
        extras: bool = False,
        ramp: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.path = Path(path)
        self.batch_size = batch_size
        self.window_bytes = window_bytes
        self.progress = progress
        self.extras = extras
        self.ramp = ramp
        self.format, self.compressed, self.total_bytes = sniff(path)
        if self.format == "pcap":
            # A file shorter than the global header is refused now, not on iteration.
            _RecordStream(str(self.path), min(window_bytes, 1 << 16), 1).close()
        self.stats = CaptureStats()
        self._active: weakref.WeakSet[Generator[Any, None, None]] = weakref.WeakSet()

    def _stream(self, capacity: int) -> _RecordStream:
        return _RecordStream(str(self.path), self.window_bytes, capacity)

    def _finish_counts(self, stream: _RecordStream) -> None:
        for line in stream.src.warnings:
            log.warning("%s", line)
        self.stats.warnings.extend(stream.src.warnings)
        w = stream.walker
        if isinstance(w, PcapngWalker):
            self.stats.sections = w.sections
            self.stats.interfaces = w.interfaces
            self.stats.other_blocks = w.other_blocks
            self.stats.ts_overflow = w.ts_overflow
            if w.ts_overflow:
                log.warning(
                    "%s: %d packet timestamp%s outside the int64-nanosecond range (years 1677..2262) "
                    "clamped to its end (counted in ts_overflow)",
                    self.path,
                    w.ts_overflow,
                    "s" if w.ts_overflow != 1 else "",
                )

    # -- the BatchSource protocol (netspectra.batch.BatchSource) -----------------------------------

    def __iter__(self) -> Iterator[PacketBatch]:
        it = self._batches()
        self._active.add(it)
        return it

    def stop(self) -> None:
        """Nothing to do: a file ends by itself (part of :class:`~netspectra.batch.BatchSource`)."""

    def close(self) -> None:
        """End every iteration in progress and release its file (idempotent, safe after an error).

        Iterating again afterwards opens the file anew.
        """
        for it in list(self._active):
            it.close()
        self._active.clear()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def records(self, max_records: int | None = None) -> Iterator[RecordChunk]:
        """Iterate the container records without decoding them (counts only ``records``-level stats).

        Each :class:`RecordChunk` holds at most ``max_records`` (default ``batch_size``) records and
        is valid until the next one is requested.
        """
        it = self._records(max_records)
        self._active.add(it)
        return it

    def _records(self, max_records: int | None) -> Generator[RecordChunk, None, None]:
        cap = max_records or self.batch_size
        self.stats = CaptureStats(files=1)
        stream = self._stream(cap)
        try:
            while True:
                n = stream.next(cap)
                if n == 0:
                    break
                rec = stream.rec
                self.stats.add_records(rec.caplen[:n], rec.wirelen[:n], rec.ts_ns[:n], rec.linktype[:n])
                if self.progress is not None:
                    self.progress(stream.bytes_done())
                yield RecordChunk(stream.buf, rec, n)
        finally:
            self._finish_counts(stream)
            stream.close()

    def _batches(self) -> Generator[PacketBatch, None, None]:
        bs = self.batch_size
        min_call = max(1, min(_MIN_CALL_RECORDS, bs // 16))
        self.stats = stats = CaptureStats(files=1)
        stream = self._stream(bs)
        status = np.empty(bs, np.uint8)
        aux = np.empty(bs, np.uint16)
        optional = DECODER_COLUMNS if self.extras else ()
        outputs = _OutputPool(bs, optional)
        out = outputs.get()
        # The batch being filled is out's rows start..filled: a ramp's small batches take successive
        # rows of one buffer while the next fits, so that a consumer holding many of them at once (the
        # offline engine's queue admits two full batches' worth of rows) holds about their rows, not a
        # batch_size buffer for each.
        start = filled = 0
        smallest = max(min_call, bs // RAMP_DIVISOR)
        target = min(bs, smallest) if self.ramp else bs  # rows of the batch being filled
        try:
            while True:
                try:
                    n = stream.next(target - (filled - start))
                except CaptureError:
                    if filled > start:
                        yield _cut(out, start, filled)
                    raise
                if n == 0:
                    break
                rec = stream.rec
                stats.add_records(rec.caplen[:n], rec.wirelen[:n], rec.ts_ns[:n], rec.linktype[:n])
                k = decode_records(
                    stream.buf,
                    rec.off,
                    rec.caplen,
                    rec.wirelen,
                    rec.ts_ns,
                    rec.linktype,
                    n,
                    out.ts_ns[filled:],
                    out.src_ip[filled:],
                    out.dst_ip[filled:],
                    out.src_port[filled:],
                    out.dst_port[filled:],
                    out.protocol[filled:],
                    out.length[filled:],
                    status,
                    aux,
                    extras_into(out, filled) if self.extras else None,
                )
                stats.add_decoded(status[:n], aux[:n], out.length[filled : filled + k])
                filled += k
                if self.progress is not None:
                    self.progress(stream.bytes_done())
                if target - (filled - start) < min(min_call, max(1, target // 4)):  # a ramp's: 3/4 full
                    yield _cut(out, start, filled, view=target < bs)
                    if self.ramp:
                        target = _ramp_target(target, bs, smallest, stats.records, stream, self.total_bytes)
                    if filled + target <= bs:  # a ramp's next small batch fits after this one
                        start = filled
                    else:
                        out = outputs.get()
                        start = filled = 0
            if filled > start:
                yield _cut(out, start, filled)
        finally:
            self._finish_counts(stream)
            stream.close()

    def read_all(self) -> PacketBatch:
        """Every batch of the file concatenated (for small files and tests)."""
        return PacketBatch.concat(list(self))


#: Output batches a reader keeps for reuse (see :class:`_OutputPool`).
_OUTPUT_POOL = 4


class _OutputPool:
    """The batches a reader decodes into, reused once nothing outside the pool refers to them.

    A fresh 262 144-packet batch is ~14 MB of new memory: glibc maps it anew (its mmap threshold) and
    every page faults in on first write — measured on the 2-core VM, 24 000 minor faults and ~10 ns a
    packet of the 5 M-packet trace's reading, a quarter of it. A batch the reader handed out is reused
    only when reference counts say that no one holds it or any view of its arrays any more (a consumer
    that keeps a batch, a slice of it or one of its columns keeps it out of the pool: it is never
    overwritten); else a fresh one is made, as before. At most :data:`_OUTPUT_POOL` are kept."""

    def __init__(self, size: int, optional: tuple[str, ...]) -> None:
        self._size = size
        self._optional = optional
        # (batch, its arrays) and the reference counts of that entry when nothing else refers to it
        self._entries: list[tuple[PacketBatch, tuple[np.ndarray, ...]]] = []
        self._free: list[tuple[int, ...]] = []

    def _refs(self, i: int) -> tuple[int, ...]:
        # Reads entry i with the same references on the stack at every call (the caller holds none of
        # it), so an entry's counts equal those taken at its creation exactly when no one else refers
        # to the batch or to any of its arrays (a view of an array refers to it through its base).
        out, arrays = self._entries[i]
        return (sys.getrefcount(out), *[sys.getrefcount(a) for a in arrays])

    def get(self) -> PacketBatch:
        for i in range(len(self._entries)):
            if self._refs(i) == self._free[i]:
                return self._entries[i][0]
        if len(self._entries) >= _OUTPUT_POOL:
            return PacketBatch.empty(self._size, self._optional)
        self._entries.append(self._new())
        self._free.append(self._refs(len(self._entries) - 1))
        return self._entries[-1][0]

    def _new(self) -> tuple[PacketBatch, tuple[np.ndarray, ...]]:
        out = PacketBatch.empty(self._size, self._optional)
        return out, tuple(getattr(out, c) for c in (*PacketBatch.COLUMNS, *self._optional))


def _cut(out: PacketBatch, start: int, filled: int, *, view: bool = False) -> PacketBatch:
    """Rows ``start:filled`` of ``out``: views when at least half of it (or a ramp's small batch, whose
    buffer its successors share), else a copy (the buffer is then free for reuse at once)."""
    if start == 0 and filled == len(out):
        return out
    if view or filled - start >= len(out) // 2:
        return out.slice(start, filled)
    return out.slice(start, filled).copy()


def _ramp_target(last: int, bs: int, smallest: int, records: int, stream: _RecordStream, total: int) -> int:
    """Rows of the next batch of a ``ramp`` reader (see :class:`CaptureReader`): twice the last, at most
    ``bs``; near the end, half of the rows estimated to remain (``records`` so far over the bytes
    consumed, times the bytes left of ``total``), at least ``smallest``."""
    target = min(bs, 2 * last)
    done = stream.bytes_done()
    if 0 < done < total and records:
        left = (total - done) * records // done
        if left < 2 * bs:
            target = min(target, max(smallest, left // 2))
    return target


def read_captures(
    paths: Iterable[str | PathLike[str]],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    window_bytes: int = DEFAULT_WINDOW_BYTES,
    progress: ProgressCallback | None = None,
    stats: CaptureStats | None = None,
    extras: bool = False,
) -> Iterator[PacketBatch]:
    """Batches of several capture files, in order; the first :class:`CaptureError` stops it.

    Every batch before the damage is yielded first. ``stats``, if given, receives every file's
    statistics (merged in as each file ends, damaged ones included). ``extras``: see
    :class:`CaptureReader`.
    """
    for path in paths:
        reader = CaptureReader(
            path, batch_size=batch_size, window_bytes=window_bytes, progress=progress, extras=extras
        )
        try:
            yield from reader
        finally:
            if stats is not None:
                stats.merge(reader.stats)
