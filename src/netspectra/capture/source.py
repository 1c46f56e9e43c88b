"""Chunked byte sources over a capture file: bounded windows of the (decompressed) byte stream.

A reader never holds a whole capture in memory. It asks a :class:`ByteSource` for a *window*, a
``uint8`` numpy array holding the stream bytes ``[start, start + len(window))``, walks every
complete record in it, and then calls :meth:`ByteSource.advance` with the number of bytes it
consumed and the number it needs next. The unconsumed tail (a record that straddles the window's
end) is carried into the next window, and a record bigger than the window grows the window up to
:data:`HARD_CAP_BYTES`; a length beyond that is bogus and the caller reports it.

* :class:`MmapSource`: an uncompressed file, memory-mapped read-only; windows are views of the
  mapping (no copy). Pages behind the consumed position are dropped with ``MADV_DONTNEED`` so the
  resident set stays bounded by about one window even for a file of many gigabytes.
* :class:`GzipSource`: a gzip file (several members allowed, as ``cat a.gz b.gz`` makes them),
  decompressed streaming into one bounded buffer that the window is a view of.

The format is decided by magic numbers (:func:`sniff`), never by the file name.
"""

from __future__ import annotations

import logging
import mmap
import os
import zlib
from abc import ABC, abstractmethod
from os import PathLike
from pathlib import Path
from types import TracebackType

import numpy as np

from netspectra.capture.errors import CaptureError

log = logging.getLogger(__name__)

DEFAULT_WINDOW_BYTES = 64 << 20
#: No single record/block may need a window bigger than this; a longer length field is bogus.
HARD_CAP_BYTES = 256 << 20
#: Compressed bytes read from a gzip file per ``read`` call.
_GZIP_READ_BYTES = 1 << 20
#: Decompressed bytes produced per ``zlib`` call, so the temporary ``bytes`` stays small.
_GZIP_STEP_BYTES = 4 << 20

MAGIC_GZIP = b"\x1f\x8b"
MAGIC_PCAP_US_LE = b"\xd4\xc3\xb2\xa1"
MAGIC_PCAP_US_BE = b"\xa1\xb2\xc3\xd4"
MAGIC_PCAP_NS_LE = b"\x4d\x3c\xb2\xa1"
MAGIC_PCAP_NS_BE = b"\xa1\xb2\x3c\x4d"
MAGIC_PCAPNG = b"\x0a\x0d\x0d\x0a"
PCAP_MAGICS = (MAGIC_PCAP_US_LE, MAGIC_PCAP_US_BE, MAGIC_PCAP_NS_LE, MAGIC_PCAP_NS_BE)

ACCEPTED_MAGICS = (
    "pcap a1b2c3d4/d4c3b2a1 (microseconds), pcap a1b23c4d/4d3cb2a1 (nanoseconds), "
    "pcapng 0a0d0d0a, or gzip 1f8b around one of them"
)


class ByteSource(ABC):
    """A capture's byte stream handed out in bounded windows (see the module docstring).

    Invariants: ``window()`` is the stream slice ``[start, start + len(window()))``; ``at_eof``
    is true iff that slice reaches the end of the stream. A window stays valid only until the
    next :meth:`advance` or :meth:`close`.
    """

    path: str
    #: Size of the file on disk (compressed size for gzip): the total for a progress bar.
    total_bytes: int
    compressed: bool
    #: Stream offset (decompressed for gzip) of ``window()[0]``.
    start: int
    at_eof: bool

    def __init__(self, path: str | PathLike[str], window_bytes: int) -> None:
        if window_bytes < 64:
            raise ValueError(f"window_bytes must be at least 64, got {window_bytes}")
        if window_bytes > HARD_CAP_BYTES:
            raise ValueError(f"window_bytes must be at most {HARD_CAP_BYTES}, got {window_bytes}")
        self.path = str(path)
        self.window_bytes = window_bytes
        self.start = 0
        self.at_eof = False

    @abstractmethod
    def window(self) -> np.ndarray:
        """The current window (``uint8``, C-contiguous, possibly read-only)."""

    @abstractmethod
    def advance(self, consumed: int, need: int = 0) -> np.ndarray:
        """Drop the first ``consumed`` bytes of the window and return the next window.

        The new window starts at ``start + consumed`` and holds at least ``need`` bytes (and
        normally ``window_bytes``) unless the stream ends first, in which case ``at_eof`` is set.
        ``need`` above :data:`HARD_CAP_BYTES` is a ``ValueError``: callers must reject bogus
        lengths before asking.
        """

    @abstractmethod
    def bytes_done(self, pos: int) -> int:
        """Bytes of the *file* consumed when the parser stands at ``pos`` of the window (progress)."""

    @abstractmethod
    def close(self) -> None:
        """Release the file; the source cannot be used afterwards."""

    def _check_need(self, consumed: int, need: int, have: int) -> None:
        if consumed < 0 or consumed > have:
            raise ValueError(f"consumed {consumed} outside the window of {have} bytes")
        if need > HARD_CAP_BYTES:
            raise ValueError(f"need {need} exceeds the hard cap of {HARD_CAP_BYTES} bytes")

    def __enter__(self) -> ByteSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class MmapSource(ByteSource):
    """An uncompressed file, memory-mapped read-only; windows are zero-copy views."""

    compressed = False

    def __init__(self, path: str | PathLike[str], window_bytes: int = DEFAULT_WINDOW_BYTES) -> None:
        super().__init__(path, window_bytes)
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self.total_bytes = os.fstat(self._file.fileno()).st_size
            if self.total_bytes == 0:
                # mmap refuses empty files; an empty window says the same thing.
                self._mm: mmap.mmap | None = None
                self._all = np.empty(0, np.uint8)
            else:
                self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                if hasattr(mmap, "MADV_SEQUENTIAL"):
                    self._mm.madvise(mmap.MADV_SEQUENTIAL)
                self._all = np.frombuffer(self._mm, dtype=np.uint8)
        except BaseException:
            self._file.close()
            raise
        self._released = 0
        self._len = min(window_bytes, self.total_bytes)
        self.at_eof = self._len == self.total_bytes

    def window(self) -> np.ndarray:
        return self._all[self.start : self.start + self._len]

    def advance(self, consumed: int, need: int = 0) -> np.ndarray:
        self._check_need(consumed, need, self._len)
        self.start += consumed
        self._len = min(max(self.window_bytes, need), self.total_bytes - self.start)
        self.at_eof = self.start + self._len == self.total_bytes
        self._release_behind()
        return self.window()

    def _release_behind(self) -> None:
        # Clean file-backed pages are cheap to drop and would otherwise stay in the RSS of a
        # long sequential read; the parser never looks back.
        if self._mm is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        upto = (self.start // mmap.PAGESIZE) * mmap.PAGESIZE
        if upto - self._released >= self.window_bytes:
            self._mm.madvise(mmap.MADV_DONTNEED, self._released, upto - self._released)
            self._released = upto

    def bytes_done(self, pos: int) -> int:
        return self.start + pos

    def close(self) -> None:
        self._all = np.empty(0, np.uint8)
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                # A caller still holds a view of a window; the mapping goes when that view does.
                log.debug("%s: mapping still referenced by a window view; left to the GC", self.path)
            self._mm = None
        self._file.close()


class GzipSource(ByteSource):
    """A gzip file (one or more members), decompressed streaming into one bounded buffer.

    Zero bytes after the last member are accepted (tape/pad blocks, as the ``gzip`` module does);
    anything else there, a member cut short, or corrupt deflate data is a :class:`CaptureError`
    at the decompressed offset reached.
    """

    compressed = True

    def __init__(self, path: str | PathLike[str], window_bytes: int = DEFAULT_WINDOW_BYTES) -> None:
        super().__init__(path, window_bytes)
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self.total_bytes = os.fstat(self._file.fileno()).st_size
            self._buf = np.empty(window_bytes, np.uint8)
            self._filled = 0
            self._in = b""  # compressed input read from the file, not yet consumed by zlib
            self._comp_pos = 0  # compressed bytes read from the file
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._member_has_input = False
            self._stream_end = False
            self._fill()
        except BaseException:
            self._file.close()
            raise

    def window(self) -> np.ndarray:
        return self._buf[: self._filled]

    def advance(self, consumed: int, need: int = 0) -> np.ndarray:
        self._check_need(consumed, need, self._filled)
        rest = self._filled - consumed
        cap = max(self.window_bytes, need)
        if cap > self._buf.shape[0]:
            grown = np.empty(cap, np.uint8)
            grown[:rest] = self._buf[consumed : self._filled]
            self._buf = grown
        elif rest:
            # numpy copies overlapping slices correctly (through a temporary if needed).
            self._buf[:rest] = self._buf[consumed : self._filled]
        self.start += consumed
        self._filled = rest
        self._fill()
        return self.window()

    def bytes_done(self, pos: int) -> int:
        return self._comp_pos - len(self._in)

    def close(self) -> None:
        self._file.close()

    def _error(self, expected: str, found: str) -> CaptureError:
        return CaptureError(self.path, self.start + self._filled, expected, found, decompressed=True)

    def _read(self) -> bytes:
        data = self._file.read(_GZIP_READ_BYTES)
        self._comp_pos += len(data)
        return data

    def _fill(self) -> None:
        """Decompress until the buffer is full or the stream ends (then ``at_eof``)."""
        cap = self._buf.shape[0]
        while self._filled < cap and not self._stream_end:
            if not self._in:
                self._in = self._read()
                if not self._in:
                    if self._member_has_input and not self._d.eof:
                        raise self._error(
                            "the rest of the gzip member (its deflate data and 8-byte trailer)",
                            "end of file",
                        )
                    self._stream_end = True
                    break
            if self._d.eof and not self._next_member():
                continue  # what followed the member was zero padding; read on
            try:
                out = self._d.decompress(self._in, min(cap - self._filled, _GZIP_STEP_BYTES))
            except zlib.error as exc:
                raise self._error("valid gzip-compressed data", f"corrupt data ({exc})") from None
            self._member_has_input = True
            self._in = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
            k = len(out)
            if k:
                self._buf[self._filled : self._filled + k] = np.frombuffer(out, np.uint8)
                self._filled += k
        self.at_eof = self._stream_end

    def _next_member(self) -> bool:
        """After a member ended: start the next one. False if ``self._in`` was padding to skip."""
        while len(self._in) < 2:
            more = self._read()
            if not more:
                break
            self._in += more
        if self._in[:2] == MAGIC_GZIP:
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._member_has_input = False
            return True
        if self._in.count(0) == len(self._in):
            self._in = b""
            return False
        raise self._error(
            "another gzip member (1f 8b) or end of file after the gzip member",
            f"bytes {self._in[:4].hex(' ')}",
        )


def _open_error(path: str | PathLike[str], exc: OSError) -> CaptureError:
    p = Path(path)
    if isinstance(exc, FileNotFoundError):
        return CaptureError(path, None, "an existing capture file", "no such file or directory")
    if isinstance(exc, IsADirectoryError) or p.is_dir():
        return CaptureError(path, None, "a capture file", "a directory")
    if isinstance(exc, PermissionError):
        return CaptureError(path, None, "a readable capture file", "permission denied")
    return CaptureError(path, None, "a readable capture file", f"an OS error ({exc.strerror or exc})")


def open_source(
    path: str | PathLike[str], window_bytes: int = DEFAULT_WINDOW_BYTES
) -> tuple[ByteSource, str]:
    """Open ``path`` as a byte source and detect its format by magic.

    Returns ``(source, format)`` with ``format`` ``"pcap"`` or ``"pcapng"``; the source's first
    window starts at stream offset 0. Raises :class:`CaptureError` for a missing, unreadable or
    empty file, a directory, corrupt gzip, or a magic that is neither pcap nor pcapng (the
    message lists the accepted magics and shows the four bytes found).
    """
    p = Path(path)
    if p.is_dir():
        raise CaptureError(path, None, "a capture file", "a directory")
    try:
        with open(p, "rb") as f:
            head = f.read(2)
    except OSError as exc:
        raise _open_error(path, exc) from None
    if not head:
        raise CaptureError(path, 0, "a capture file header", "an empty file")
    try:
        src: ByteSource = (GzipSource if head == MAGIC_GZIP else MmapSource)(p, window_bytes)
    except OSError as exc:
        raise _open_error(path, exc) from None
    try:
        fmt = _detect(src)
    except BaseException:
        src.close()
        raise
    return src, fmt


def _detect(src: ByteSource) -> str:
    win = src.window()
    if win.shape[0] < 4 and not src.at_eof:
        win = src.advance(0, 4)
    magic = win[:4].tobytes()
    if magic in PCAP_MAGICS:
        return "pcap"
    if magic == MAGIC_PCAPNG:
        return "pcapng"
    dec = src.compressed
    if not magic:
        raise CaptureError(
            src.path, 0, "a capture file header", "an empty gzip stream" if dec else "an empty file"
        )
    if len(magic) < 4:
        raise CaptureError(
            src.path,
            0,
            f"a 4-byte capture file magic ({ACCEPTED_MAGICS})",
            f"only {len(magic)} byte{'s' if len(magic) > 1 else ''} ({magic.hex(' ')})",
            decompressed=dec,
        )
    raise CaptureError(
        src.path, 0, f"a capture file magic ({ACCEPTED_MAGICS})", f"bytes {magic.hex(' ')}", decompressed=dec
    )


def sniff(path: str | PathLike[str]) -> tuple[str, bool, int]:
    """``(format, compressed, total_bytes)`` of ``path`` without reading more than its start.

    Raises :class:`CaptureError` exactly as :func:`open_source` does.
    """
    src, fmt = open_source(path, window_bytes=1 << 16)
    try:
        return fmt, src.compressed, src.total_bytes
    finally:
        src.close()


class RecordArrays:
    """Reusable per-record output arrays that a format walker fills from one window.

    Row ``i < n`` describes one packet record: ``off[i]`` is the offset of its packet data in
    the window, ``caplen``/``wirelen`` its captured and original lengths, ``ts_ns`` its
    timestamp (ns since the epoch) and ``linktype`` its link type. These are exactly the
    ``rec_*`` inputs of :func:`netspectra.capture.decode.decode_records`.
    """

    __slots__ = ("capacity", "caplen", "linktype", "off", "ts_ns", "wirelen")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.off = np.empty(capacity, np.int64)
        self.caplen = np.empty(capacity, np.uint32)
        self.wirelen = np.empty(capacity, np.uint32)
        self.ts_ns = np.empty(capacity, np.int64)
        self.linktype = np.empty(capacity, np.uint16)


class WalkResult:
    """What one walker call gives back (see :meth:`netspectra.capture.pcap.PcapWalker.walk`).

    ``n`` records were written; ``pos`` is the first unconsumed byte of the window. Then exactly
    one of: ``need > 0`` (advance the source to ``pos`` with at least ``need`` bytes and call
    again), ``error`` (raise it after handing out the ``n`` records), ``done`` (the stream is
    complete), or none of them (``n`` reached ``max_records``: call again at ``pos``).
    """

    __slots__ = ("done", "error", "n", "need", "pos")

    def __init__(
        self, n: int, pos: int, *, need: int = 0, error: CaptureError | None = None, done: bool = False
    ) -> None:
        self.n = n
        self.pos = pos
        self.need = need
        self.error = error
        self.done = done

    def __repr__(self) -> str:
        state = f"need={self.need}, error={self.error!r}, done={self.done}"
        return f"WalkResult(n={self.n}, pos={self.pos}, {state})"
