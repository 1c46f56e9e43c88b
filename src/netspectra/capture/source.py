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
  decompressed streaming into one bounded buffer that the window is a view of. Damaged gzip data
  ends the stream early with :attr:`ByteSource.damage` set instead of raising at once, so that the
  caller can hand out every record decompressed before the damage and then raise it.

The format is decided by magic numbers (:func:`sniff`), never by the file name.
"""

from __future__ import annotations

import logging
import mmap
import os
import stat
import struct
import zlib
from abc import ABC, abstractmethod
from os import PathLike
from pathlib import Path
from types import TracebackType

import numpy as np

from netspectra.capture.errors import CaptureError
from netspectra.hugepages import advise_huge_pages

log = logging.getLogger(__name__)

DEFAULT_WINDOW_BYTES = 64 << 20
#: No single record/block may need a window bigger than this; a longer length field is bogus.
HARD_CAP_BYTES = 256 << 20
#: Compressed bytes read from a gzip file per ``read`` call. Small, because every member copies what is
#: left of them a few times (its header and trailer cut off the front of the input, zlib hands back the
#: input after its end): with 1 MiB reads a member cost ~70 us whatever its size, and a 4 MB file of
#: 200,000 empty members took 45 s to read; 32 KiB bounds that copying 32 times lower (0.4 s for
#: 100,000 members) for ~3 % more time on a large member (54 MB decompressed, best of 7).
_GZIP_READ_BYTES = 32 << 10
#: Decompressed bytes produced per ``zlib`` call. Small enough that the CRC-32 pass and the copy
#: into the window read the output while it is still in cache: with 4 MiB steps those passes made
#: a 140 MB capture decompress about 30 % slower than zlib's own gzip mode; with 256 KiB steps the
#: two take the same time (measured on the project VM, best of 6).
_GZIP_STEP_BYTES = 256 << 10
# GzipSource phases and RFC 1952 header flags.
_GZ_HEADER, _GZ_DEFLATE, _GZ_TRAILER, _GZ_AFTER = range(4)
_FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 0x02, 0x04, 0x08, 0x10

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
    #: Set when the stream ended early because the file is damaged (``at_eof`` is then true): the
    #: windows still hold every byte before the damage, and the caller raises this error once it
    #: has handed out every record those bytes hold. ``None`` for an intact stream.
    damage: CaptureError | None
    #: One line (naming the file and offset) per thing accepted that is not normal, e.g. trailing
    #: garbage after gzip data.
    warnings: list[str]

    def __init__(self, path: str | PathLike[str], window_bytes: int) -> None:
        if window_bytes < 64:
            raise ValueError(f"window_bytes must be at least 64, got {window_bytes}")
        if window_bytes > HARD_CAP_BYTES:
            raise ValueError(f"window_bytes must be at most {HARD_CAP_BYTES}, got {window_bytes}")
        self.path = str(path)
        self.window_bytes = window_bytes
        self.start = 0
        self.at_eof = False
        self.damage = None
        self.warnings = []

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
                # a file the page cache holds in 2 MB folios maps 2 MB a fault (a 341 MB capture: 2 ms of
                # faults instead of 26-57 ms); read from disk, it is read into such folios
                advise_huge_pages(self._mm)
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
    """A gzip file (RFC 1952, one or more members), decompressed streaming into one bounded buffer.

    The members are parsed here (header, raw deflate through zlib, CRC-32 and ISIZE trailer) rather
    than by zlib's gzip mode, so that nothing decompressed before damage is lost: zlib's gzip mode
    checks the trailer inside the same call that returns the member's last data, and an error
    there discards that data. Concatenated members are one stream, as ``gzip -dc`` treats them.

    What may follow a member: another member (``1f 8b``, or a lone ``1f`` at the end: a member cut
    short, as ``gzip -dc`` sees it); zero bytes (tape/pad blocks), skipped silently as Python's
    ``gzip`` module does; anything else is trailing garbage, ignored with a line in
    :attr:`warnings`, as ``gzip -dc`` does ("decompression OK, trailing garbage ignored").

    Damage ends the stream early: :attr:`damage` is set, ``at_eof`` becomes true, and every byte
    decompressed before the damage stays in the windows for the caller to walk before it raises
    :attr:`damage`. Damage is: a member header that is not gzip/deflate or is cut short; corrupt
    deflate data (the bytes zlib decompresses before the error are kept: the failing call is
    replayed on a copy of the decompressor in shrinking pieces up to the byte that fails); a member
    cut short (end of file inside its deflate data or its 8-byte trailer); a CRC-32 or length in
    the trailer that does not match the data (all of the data is handed out first). The error's
    offset is the decompressed offset reached; its text also names the compressed offset.
    """

    compressed = True

    def __init__(self, path: str | PathLike[str], window_bytes: int = DEFAULT_WINDOW_BYTES) -> None:
        super().__init__(path, window_bytes)
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        try:
            self.total_bytes = os.fstat(self._file.fileno()).st_size
            self._buf = np.empty(window_bytes, np.uint8)
            self._filled = 0
            self._in = b""  # compressed input read from the file, not yet consumed
            self._comp_pos = 0  # compressed bytes read from the file
            self._produced = 0  # decompressed bytes produced (the stream offset of the next one)
            self._phase = _GZ_HEADER
            self._d = zlib.decompressobj(-zlib.MAX_WBITS)
            self._out_pending = False  # the last zlib call stopped at its output limit
            self._crc = 0  # CRC-32 of the current member's data so far
            self._member_start = 0  # decompressed offset where the current member's data starts
            self._member_comp_start = 0  # compressed offset of the current member's header
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

    # -- compressed input ------------------------------------------------------------------------

    @property
    def _in_offset(self) -> int:
        """Compressed offset of ``self._in[0]``."""
        return self._comp_pos - len(self._in)

    def _more(self) -> bool:
        """Append the next read of the file to ``self._in``; False at end of file."""
        data = self._file.read(_GZIP_READ_BYTES)
        if not data:
            return False
        self._comp_pos += len(data)
        self._in = self._in + data if self._in else data
        return True

    def _have(self, n: int) -> bool:
        """At least ``n`` bytes in ``self._in`` (reading as needed); False if the file ends first."""
        while len(self._in) < n:
            if not self._more():
                return False
        return True

    def _skip(self, n: int) -> bool:
        """Drop ``n`` input bytes without holding them all at once; False if the file ends first."""
        while n > 0:
            if not self._in and not self._more():
                return False
            k = min(n, len(self._in))
            self._in = self._in[k:]
            n -= k
        return True

    def _skip_string(self) -> bool:
        """Drop a zero-terminated header string (file name, comment) of any length; False at EOF."""
        while True:
            z = self._in.find(0)
            if z >= 0:
                self._in = self._in[z + 1 :]
                return True
            self._in = b""
            if not self._more():
                return False

    # -- the member state machine ----------------------------------------------------------------

    def _fail(self, expected: str, found: str) -> None:
        """Record the damage and end the stream here (what was produced stays readable)."""
        self.damage = CaptureError(self.path, self._produced, expected, found, decompressed=True)
        self._stream_end = True

    def _put(self, out: bytes) -> None:
        k = len(out)
        if not k:
            return
        if self._filled + k > self._buf.shape[0]:  # only a salvaged tail can overshoot the window
            grown = np.empty(self._filled + k, np.uint8)
            grown[: self._filled] = self._buf[: self._filled]
            self._buf = grown
        self._buf[self._filled : self._filled + k] = np.frombuffer(out, np.uint8)
        self._filled += k
        self._produced += k
        self._crc = zlib.crc32(out, self._crc)

    def _fill(self) -> None:
        """Decompress until the buffer is full or the stream ends (then ``at_eof``).

        A member's trailer and what follows it are read as soon as its data ends, even with a full
        buffer, so that the end of the stream is known with the last window (and progress reaches
        the file size).
        """
        cap = self._buf.shape[0]
        while not self._stream_end and (self._filled < cap or self._phase != _GZ_DEFLATE):
            if self._phase == _GZ_DEFLATE:
                self._inflate(cap)
            elif self._phase == _GZ_HEADER:
                self._header()
            elif self._phase == _GZ_TRAILER:
                self._trailer()
            else:
                self._after_member()
        self.at_eof = self._stream_end

    def _header(self) -> None:
        """Parse a member header (RFC 1952 section 2.3) and start its deflate data."""
        self._member_comp_start = at = self._in_offset
        if not self._have(10):
            self._fail(
                "a 10-byte gzip member header",
                f"{_bytes(len(self._in))} before end of file at compressed byte offset {at}",
            )
            return
        head = self._in[:10]
        if head[:2] != MAGIC_GZIP:
            self._fail(
                "a gzip member header (1f 8b)", f"bytes {head[:4].hex(' ')} at compressed byte offset {at}"
            )
            return
        if head[2] != 8:
            self._fail(
                "gzip compression method 8 (deflate)", f"method {head[2]} at compressed byte offset {at}"
            )
            return
        flags = head[3]
        if flags & 0xE0:
            self._fail(
                "a gzip header with the reserved flag bits 5-7 clear",
                f"flags 0x{flags:02x} at compressed byte offset {at}",
            )
            return
        self._in = self._in[10:]
        ok = True
        if flags & _FEXTRA:
            ok = self._have(2) and self._skip(2 + int.from_bytes(self._in[:2], "little"))
        if ok and flags & _FNAME:
            ok = self._skip_string()
        if ok and flags & _FCOMMENT:
            ok = self._skip_string()
        if ok and flags & _FHCRC:
            ok = self._skip(2)
        if not ok:
            self._fail(
                "a complete gzip member header (extra field, name, comment, header CRC)",
                f"end of file in the header starting at compressed byte offset {at}",
            )
            return
        self._d = zlib.decompressobj(-zlib.MAX_WBITS)
        self._out_pending = False
        self._crc = 0
        self._member_start = self._produced
        self._phase = _GZ_DEFLATE

    def _inflate(self, cap: int) -> None:
        # After a call cut short by its output limit, zlib may hold output for input it has already
        # consumed: ask for it (with no new input) before concluding anything from end of file.
        if not self._in and not self._out_pending and not self._more():
            self._fail(
                "the rest of the gzip member (its deflate data and 8-byte trailer)",
                f"end of file at compressed byte offset {self._comp_pos}",
            )
            return
        saved = self._d.copy()  # about a microsecond: the price of salvaging corrupt data
        data = self._in
        limit = min(cap - self._filled, _GZIP_STEP_BYTES)
        try:
            out = self._d.decompress(data, limit)
        except zlib.error as exc:
            out, used = _salvage(saved, data)
            self._put(out)
            self._fail(
                "valid deflate data in the gzip member",
                f"corrupt data at compressed byte offset {self._in_offset + used} ({exc})",
            )
            return
        self._put(out)
        self._out_pending = len(out) == limit
        if self._d.eof:
            self._in = self._d.unused_data
            self._out_pending = False
            self._phase = _GZ_TRAILER
        else:
            self._in = self._d.unconsumed_tail

    def _trailer(self) -> None:
        at = self._in_offset
        if not self._have(8):
            self._fail(
                "the 8-byte gzip member trailer (CRC-32 and length)",
                f"{_bytes(len(self._in))} before end of file at compressed byte offset {at}",
            )
            return
        crc, isize = struct.unpack_from("<II", self._in, 0)
        self._in = self._in[8:]
        size = self._produced - self._member_start
        span = f"decompressed bytes {self._member_start}..{self._produced}"
        if crc != self._crc:
            self._fail(
                f"the member's data ({span}) to match the CRC-32 0x{crc:08x} of its gzip trailer "
                f"(compressed byte offset {at})",
                f"data whose CRC-32 is 0x{self._crc:08x}",
            )
        elif isize != size & 0xFFFFFFFF:
            self._fail(
                f"the member's data ({span}) to match the length {isize} (mod 2^32) of its gzip trailer "
                f"(compressed byte offset {at})",
                f"{size} bytes",
            )
        else:
            self._phase = _GZ_AFTER

    def _after_member(self) -> None:
        """After a complete member: another member, zero padding, end of file, or garbage."""
        while True:
            if not self._in and not self._more():
                self._stream_end = True
                return
            rest = self._in.lstrip(b"\x00")
            if rest:
                self._in = rest
                break
            self._in = b""
        self._have(2)
        if MAGIC_GZIP.startswith(self._in[:2]):  # a member, or a lone 1f: a member cut short (gzip -dc)
            self._phase = _GZ_HEADER
            return
        at = self._in_offset
        n = self.total_bytes - at
        self.warnings.append(
            f"{self.path}: compressed byte offset {at}: {_bytes(n)} of trailing garbage "
            f"after the gzip data (starting {self._in[:4].hex(' ')}) ignored, as gzip -dc does"
        )
        self._in = b""
        self._stream_end = True


def _bytes(n: int) -> str:
    return f"{n} byte{'' if n == 1 else 's'}"


def _salvage(saved: zlib._Decompress, data: bytes) -> tuple[bytes, int]:
    """Everything ``saved`` decompresses from ``data`` before the byte at which zlib reports an error.

    ``saved`` is the decompressor's state before the call that failed; it is fed ``data`` in pieces
    (halved after each failure, each tried on a copy) so that output of pieces before the failing
    byte is kept. Returns ``(output, bytes_of_data_accepted)``. Output never exceeds what the failed
    call could have produced before its error, so it stays within that call's limit.
    """
    out: list[bytes] = []
    d = saved
    i, step = 0, max(1, len(data) // 2)
    while i < len(data):
        trial = d.copy()
        try:
            piece = trial.decompress(data[i : i + step])
        except zlib.error:
            if step == 1:
                break
            step //= 2
            continue
        out.append(piece)
        d = trial
        i += step
        if d.eof:
            break
    return b"".join(out), i


def _open_error(path: str | PathLike[str], exc: OSError) -> CaptureError:
    p = Path(path)
    if isinstance(exc, FileNotFoundError):
        return CaptureError(path, None, "an existing capture file", "no such file or directory")
    if isinstance(exc, IsADirectoryError) or p.is_dir():
        return CaptureError(path, None, "a capture file", "a directory")
    if isinstance(exc, PermissionError):
        return CaptureError(path, None, "a readable capture file", "permission denied")
    return CaptureError(path, None, "a readable capture file", f"an OS error ({exc.strerror or exc})")


#: What a path that is not a regular file is, in words (see :func:`open_source`).
_NOT_REGULAR = {
    stat.S_IFIFO: "a pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def open_source(
    path: str | PathLike[str], window_bytes: int = DEFAULT_WINDOW_BYTES
) -> tuple[ByteSource, str]:
    """Open ``path`` as a byte source and detect its format by magic.

    Returns ``(source, format)`` with ``format`` ``"pcap"`` or ``"pcapng"``; the source's first
    window starts at stream offset 0. Raises :class:`CaptureError` for a missing, unreadable or
    empty file, a directory, a pipe or device (not a regular file), gzip data damaged before the
    first four bytes, or a magic that is neither pcap nor pcapng (the message lists the accepted
    magics and shows the four bytes found). Gzip damage further on is left in
    :attr:`ByteSource.damage` for the caller.
    """
    p = Path(path)
    if p.is_dir():
        raise CaptureError(path, None, "a capture file", "a directory")
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        raise _open_error(path, exc) from None
    if not stat.S_ISREG(mode):
        # Checked before opening: a FIFO's open waits for a writer, and a pipe's bytes are read once (the
        # magic read below would take them), where a file is mapped or read from its start again; its size
        # is 0 for stat, so it read as "an empty file".
        raise CaptureError(
            path,
            None,
            "a regular capture file (a pipe or a device cannot be read: write the capture to a file first)",
            _NOT_REGULAR.get(stat.S_IFMT(mode), "a special file"),
        )
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
    if len(magic) < 4 and src.damage is not None:
        raise src.damage  # the gzip data broke before a magic: that is the problem to report
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
    ``truncated`` marks an ``error`` that only says the stream ended inside a record or block:
    where the source ended early because of its own damage (:attr:`ByteSource.damage`), that
    damage is the error to report instead.
    """

    __slots__ = ("done", "error", "n", "need", "pos", "truncated")

    def __init__(
        self,
        n: int,
        pos: int,
        *,
        need: int = 0,
        error: CaptureError | None = None,
        done: bool = False,
        truncated: bool = False,
    ) -> None:
        self.n = n
        self.pos = pos
        self.need = need
        self.error = error
        self.done = done
        self.truncated = truncated

    def __repr__(self) -> str:
        state = f"need={self.need}, error={self.error!r}, done={self.done}, truncated={self.truncated}"
        return f"WalkResult(n={self.n}, pos={self.pos}, {state})"
