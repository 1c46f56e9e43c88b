"""pcapng files: section and interface headers in Python, a numba kernel walking packet blocks.

Layout (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html): a sequence of blocks
``type u32, total_length u32, body, total_length u32``, in sections that each start with a Section
Header Block (SHB, type ``0x0A0D0D0A``) whose byte-order magic sets the byte order of the section.
Interface Description Blocks (IDB, type 1) declare the interfaces of the section (ids restart at 0
in every section), each with its link type, snaplen, timestamp resolution (``if_tsresol``,
option 9: ``10**-v``, or ``2**-(v & 0x7f)`` when the MSB is set; default ``10**-6``) and timestamp
offset (``if_tsoffset``, option 14, seconds added to every timestamp).

The kernel :func:`walk_pcapng_blocks` turns Enhanced (EPB, 6), Simple (SPB, 3) and obsolete
Packet Blocks (OPB, 2) into records and skips every other block type, counting it. It returns to
Python at every SHB and IDB, which :class:`PcapngWalker` parses; they are rare.

Timestamps are converted to int64 nanoseconds with integer arithmetic, exact to the nanosecond
(floor) for every resolution: ``units * 10**(9-v)``, ``units // 10**(v-9)``, or for ``2**-k``
``floor(units * 10**9 / 2**k)`` computed without 128-bit overflow. The interface's ``if_tsoffset``
(signed seconds) is then added, as Wireshark does: a negative offset gives earlier times, before
1970 if it takes them there (negative nanoseconds). A time that int64 ns cannot hold is clamped,
never wrapped, and counted (``ts_overflow``): after 2262 (bogus resolutions or offsets in real
files) it becomes :data:`TS_OVERFLOW` (``2**63 - 1``), before 1677 (a huge negative offset)
:data:`TS_UNDERFLOW` (``-(2**63 - 1)``; not ``-2**63``, which numpy and Arrow read as "no time").
A Simple Packet Block has no timestamp: it gets the timestamp of the previous packet of the same
section (0 if there is none), and the link type/snaplen of interface 0.

Damage raises :class:`~netspectra.capture.errors.CaptureError` at the offset of the block:
total length not a multiple of 4 or below 12, trailing length different from the leading one, a
block running past the end of the file, a packet block naming an interface the section has not
described, a packet block too short for its fields or captured length, a bad section header.
"""

from __future__ import annotations

import logging
import struct

import numpy as np

from netspectra.capture.errors import CaptureError
from netspectra.capture.source import HARD_CAP_BYTES, RecordArrays, WalkResult
from netspectra.jit import njit

log = logging.getLogger(__name__)

BT_SHB = 0x0A0D0D0A
BT_IDB = 1
BT_OPB = 2
BT_SPB = 3
BT_EPB = 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D
MIN_BLOCK_LEN = 12
MIN_SHB_LEN = 28
MIN_IDB_LEN = 20
MIN_EPB_LEN = 32  # type, length, iface, ts hi, ts lo, caplen, wirelen, trailer
MIN_SPB_LEN = 16
OPT_ENDOFOPT = 0
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14
#: Largest if_tsresol exponents whose scale factors fit 64-bit integers.
MAX_TSRESOL_POW10 = 27
MAX_TSRESOL_POW2 = 63

# Kernel outcomes.
NG_END = 0  # every complete block walked; pos = first block not complete in the window
NG_FULL = 1  # max_records written
NG_SHB = 2  # pos = a section header block (at least 12 bytes available)
NG_IDB = 3  # pos = an interface description block, complete, lengths checked
NG_BAD_LENGTH = 4  # total length at pos not a multiple of 4 or below 12
NG_BAD_TRAILER = 5  # trailing total length differs from the leading one
NG_BAD_IFACE = 6  # packet block naming an interface the section has not described
NG_BAD_BODY = 7  # packet block too short for its fixed fields or its captured length

#: ``counters`` slots of the kernel.
CTR_OTHER_BLOCKS = 0
CTR_TS_OVERFLOW = 1  # packet timestamps beyond the int64-ns range (years before 1678 / after 2262)
N_COUNTERS = 2

#: The timestamp given to a packet whose time is after the int64-nanosecond range (2262).
TS_OVERFLOW = np.int64(2**63 - 1)
#: The timestamp given to a packet whose time is before the int64-nanosecond range (1677).
TS_UNDERFLOW = np.int64(-(2**63 - 1))
#: ``if_tsoffset`` values are clamped to this many seconds (about 35,000 years): beyond it every
#: packet of the interface overflows anyway, and the clamp keeps the kernel's sums within int64.
MAX_TSOFFSET_S = 1 << 40
#: An ``if_tsoffset`` beyond +-this many seconds (584 years) pushes every timestamp out of int64 ns.
_TSOFFSET_PLAUSIBLE_S = 2 * 9_223_372_036
_NS = np.uint64(1_000_000_000)
_INT64_MAX = np.uint64(2**63 - 1)
_MAX_SEC = np.uint64((2**63 - 1) // 1_000_000_000)
# int64 ns bounds in (seconds, sub-second ns): 2**63 - 1 = 9223372036 s + 854775807 ns.
_I_NS = np.int64(1_000_000_000)
_I_MAX_SEC = np.int64(9_223_372_036)
_I_MAX_SUB = np.int64(854_775_807)


# Byte readers are defined here, not imported: numba's on-disk cache only notices changes to the
# file that defines a kernel, so kernels keep their helpers and constants in their own module.
@njit(nogil=True, cache=True)
def _u32(buf: np.ndarray, p: int, big_endian: bool) -> np.uint32:
    if big_endian:
        return (
            (np.uint32(buf[p]) << 24)
            | (np.uint32(buf[p + 1]) << 16)
            | (np.uint32(buf[p + 2]) << 8)
            | np.uint32(buf[p + 3])
        )
    return (
        np.uint32(buf[p])
        | (np.uint32(buf[p + 1]) << 8)
        | (np.uint32(buf[p + 2]) << 16)
        | (np.uint32(buf[p + 3]) << 24)
    )


@njit(nogil=True, cache=True)
def _u16(buf: np.ndarray, p: int, big_endian: bool) -> np.uint32:
    if big_endian:
        return (np.uint32(buf[p]) << 8) | np.uint32(buf[p + 1])
    return np.uint32(buf[p]) | (np.uint32(buf[p + 1]) << 8)


@njit(nogil=True, cache=True)
def _units_to_ns(units: np.uint64, pow2: bool, mul: np.uint64, div: np.uint64) -> np.int64:
    """``floor(units * scale)`` in ns, or ``TS_OVERFLOW`` if that does not fit an int64.

    pow2: ``div`` is the shift k (``units / 2**k`` seconds); else ``units * mul // div`` with one
    of ``mul``/``div`` equal to 1.
    """
    if pow2:
        k = div
        sec = units >> k
        if sec > _MAX_SEC:
            return TS_OVERFLOW
        frac = units & ((np.uint64(1) << k) - np.uint64(1))
        if k <= np.uint64(32):
            # frac < 2**32, so frac * 1e9 < 2**62: no overflow.
            sub = (frac * _NS) >> k
        else:
            # frac * 1e9 may need 94 bits: split frac into 32-bit halves; floor(x / 2**k) nests exactly.
            hi = (frac >> np.uint64(32)) * _NS
            lo = ((frac & np.uint64(0xFFFFFFFF)) * _NS) >> np.uint64(32)
            sub = (hi + lo) >> (k - np.uint64(32))
        ns = sec * _NS + sub
    elif div == np.uint64(1):
        if mul > np.uint64(1) and units > _INT64_MAX // mul:
            return TS_OVERFLOW
        ns = units * mul
    else:
        ns = units // div
    if ns >= _INT64_MAX:
        return TS_OVERFLOW
    return np.int64(ns)


@njit(nogil=True, cache=True)
def _add_offset(ts: np.int64, off_s: np.int64) -> np.int64:
    """``ts + off_s * 10**9`` for ``0 <= ts < TS_OVERFLOW`` and ``|off_s| <= MAX_TSOFFSET_S``, clamped.

    Returns :data:`TS_OVERFLOW` at or after ``2**63 - 1`` ns and :data:`TS_UNDERFLOW` at or before
    ``-(2**63 - 1)``; never wraps. Works on (seconds, sub-second) so that no product overflows.
    """
    sec = ts // _I_NS
    sub = ts - sec * _I_NS
    s2 = sec + off_s
    if s2 > _I_MAX_SEC or (s2 == _I_MAX_SEC and sub >= _I_MAX_SUB):
        return TS_OVERFLOW
    # -(2**63 - 1) = -9223372037 s + 145224193 ns
    if s2 < -_I_MAX_SEC - 1 or (s2 == -_I_MAX_SEC - 1 and sub <= _I_NS - _I_MAX_SUB):
        return TS_UNDERFLOW
    return (s2 + 1) * _I_NS + (sub - _I_NS)


@njit(nogil=True, cache=True)
def walk_pcapng_blocks(
    buf: np.ndarray,
    pos: int,
    big_endian: bool,
    if_linktype: np.ndarray,
    if_pow2: np.ndarray,
    if_mul: np.ndarray,
    if_div: np.ndarray,
    if_offset_s: np.ndarray,
    if_snaplen: np.ndarray,
    n_if: int,
    last_ts: int,
    max_records: int,
    rec_off: np.ndarray,
    rec_caplen: np.ndarray,
    rec_wirelen: np.ndarray,
    rec_ts: np.ndarray,
    rec_linktype: np.ndarray,
    counters: np.ndarray,
) -> tuple[int, int, int, int]:
    """Walk the blocks of ``buf`` from ``pos`` in one section; return ``(n, pos, outcome, last_ts)``.

    Packet blocks become rows ``< max_records`` of the ``rec_*`` arrays; other non-SHB/IDB blocks
    are skipped and counted in ``counters[CTR_OTHER_BLOCKS]``. Interface ``i < n_if`` of the
    section has link type ``if_linktype[i]``, snaplen ``if_snaplen[i]`` and timestamp scale
    ``if_pow2/if_mul/if_div`` (see :func:`_units_to_ns`) plus ``if_offset_s[i]`` seconds (int64,
    within ``MAX_TSOFFSET_S``; see :func:`_add_offset`). Timestamps outside int64 ns are clamped and
    counted in ``counters[CTR_TS_OVERFLOW]``. ``last_ts`` is
    the timestamp of the section's previous packet (for SPBs), carried across calls. ``pos`` in
    the result is the first block not consumed; ``outcome`` is one of the ``NG_*`` codes.
    """
    end = buf.shape[0]
    n = 0
    while n < max_records:
        if end - pos < 12:
            return n, pos, NG_END, last_ts
        btype = _u32(buf, pos, big_endian)
        if btype == BT_SHB:
            return n, pos, NG_SHB, last_ts
        blen = np.int64(_u32(buf, pos + 4, big_endian))
        if blen < 12 or (blen & 3) != 0:
            return n, pos, NG_BAD_LENGTH, last_ts
        if blen > end - pos:
            return n, pos, NG_END, last_ts
        if np.int64(_u32(buf, pos + blen - 4, big_endian)) != blen:
            return n, pos, NG_BAD_TRAILER, last_ts
        if btype == BT_EPB or btype == BT_OPB:  # noqa: SIM109 - plain compares compile best in numba
            if blen < 32:
                return n, pos, NG_BAD_BODY, last_ts
            if btype == BT_EPB:
                iface = np.int64(_u32(buf, pos + 8, big_endian))
            else:
                iface = np.int64(_u16(buf, pos + 8, big_endian))
            if iface >= n_if:
                return n, pos, NG_BAD_IFACE, last_ts
            caplen = _u32(buf, pos + 20, big_endian)
            if np.int64(caplen) > blen - 32:
                return n, pos, NG_BAD_BODY, last_ts
            units = (np.uint64(_u32(buf, pos + 12, big_endian)) << np.uint64(32)) | np.uint64(
                _u32(buf, pos + 16, big_endian)
            )
            ts = _units_to_ns(units, if_pow2[iface], if_mul[iface], if_div[iface])
            if ts != TS_OVERFLOW and if_offset_s[iface] != 0:
                ts = _add_offset(ts, if_offset_s[iface])
            if ts == TS_OVERFLOW or ts == TS_UNDERFLOW:  # noqa: SIM109 - plain compares for numba
                counters[CTR_TS_OVERFLOW] += 1
            rec_off[n] = pos + 28
            rec_caplen[n] = caplen
            rec_wirelen[n] = _u32(buf, pos + 24, big_endian)
            rec_ts[n] = ts
            rec_linktype[n] = if_linktype[iface]
            last_ts = ts
            n += 1
        elif btype == BT_SPB:
            if blen < 16:
                return n, pos, NG_BAD_BODY, last_ts
            if n_if < 1:
                return n, pos, NG_BAD_IFACE, last_ts
            wirelen = _u32(buf, pos + 8, big_endian)
            caplen = np.int64(wirelen)
            if caplen > blen - 16:
                caplen = blen - 16
            if if_snaplen[0] > 0 and caplen > np.int64(if_snaplen[0]):
                caplen = np.int64(if_snaplen[0])
            rec_off[n] = pos + 12
            rec_caplen[n] = caplen
            rec_wirelen[n] = wirelen
            rec_ts[n] = last_ts
            rec_linktype[n] = if_linktype[0]
            n += 1
        elif btype == BT_IDB:
            return n, pos, NG_IDB, last_ts
        else:
            counters[CTR_OTHER_BLOCKS] += 1
        pos += blen
    return n, pos, NG_FULL, last_ts


def _units_to_ns_py(units: int, pow2: bool, mul: int, div: int) -> int:
    ns = (units * 10**9) >> div if pow2 else units * mul // div
    return ns if ns < 2**63 - 1 else int(TS_OVERFLOW)


def walk_pcapng_blocks_py(
    buf: np.ndarray,
    pos: int,
    big_endian: bool,
    if_linktype: np.ndarray,
    if_pow2: np.ndarray,
    if_mul: np.ndarray,
    if_div: np.ndarray,
    if_offset_s: np.ndarray,
    if_snaplen: np.ndarray,
    n_if: int,
    last_ts: int,
    max_records: int,
    rec_off: np.ndarray,
    rec_caplen: np.ndarray,
    rec_wirelen: np.ndarray,
    rec_ts: np.ndarray,
    rec_linktype: np.ndarray,
    counters: np.ndarray,
) -> tuple[int, int, int, int]:
    """Plain-Python reference of :func:`walk_pcapng_blocks` (same contract, exact big-int math)."""
    data = bytes(buf)
    bo = ">" if big_endian else "<"
    end = len(data)
    n = 0
    while n < max_records:
        if end - pos < 12:
            return n, pos, NG_END, last_ts
        btype, blen = struct.unpack_from(bo + "II", data, pos)
        if btype == BT_SHB:
            return n, pos, NG_SHB, last_ts
        if blen < 12 or blen % 4:
            return n, pos, NG_BAD_LENGTH, last_ts
        if blen > end - pos:
            return n, pos, NG_END, last_ts
        if struct.unpack_from(bo + "I", data, pos + blen - 4)[0] != blen:
            return n, pos, NG_BAD_TRAILER, last_ts
        if btype in (BT_EPB, BT_OPB):
            if blen < 32:
                return n, pos, NG_BAD_BODY, last_ts
            if btype == BT_EPB:
                iface, hi, lo, caplen, wirelen = struct.unpack_from(bo + "IIIII", data, pos + 8)
            else:
                iface, _drops, hi, lo, caplen, wirelen = struct.unpack_from(bo + "HHIIII", data, pos + 8)
            if iface >= n_if:
                return n, pos, NG_BAD_IFACE, last_ts
            if caplen > blen - 32:
                return n, pos, NG_BAD_BODY, last_ts
            ns = _units_to_ns_py(
                (hi << 32) | lo, bool(if_pow2[iface]), int(if_mul[iface]), int(if_div[iface])
            )
            hi_ts, lo_ts = int(TS_OVERFLOW), int(TS_UNDERFLOW)
            ts = ns if ns == hi_ts else ns + int(if_offset_s[iface]) * 10**9  # exact big-int sum
            ts = min(max(ts, lo_ts), hi_ts)
            if ts in (hi_ts, lo_ts):
                counters[CTR_TS_OVERFLOW] += 1
            rec_off[n], rec_caplen[n], rec_wirelen[n], rec_ts[n] = pos + 28, caplen, wirelen, ts
            rec_linktype[n] = if_linktype[iface]
            last_ts = ts
            n += 1
        elif btype == BT_SPB:
            if blen < 16:
                return n, pos, NG_BAD_BODY, last_ts
            if n_if < 1:
                return n, pos, NG_BAD_IFACE, last_ts
            (wirelen,) = struct.unpack_from(bo + "I", data, pos + 8)
            caplen = min(wirelen, blen - 16)
            if if_snaplen[0] > 0:
                caplen = min(caplen, int(if_snaplen[0]))
            rec_off[n], rec_caplen[n], rec_wirelen[n], rec_ts[n] = pos + 12, caplen, wirelen, last_ts
            rec_linktype[n] = if_linktype[0]
            n += 1
        elif btype == BT_IDB:
            return n, pos, NG_IDB, last_ts
        else:
            counters[CTR_OTHER_BLOCKS] += 1
        pos += blen
    return n, pos, NG_FULL, last_ts


class Interface:
    """One interface of a pcapng section, from its IDB."""

    __slots__ = ("linktype", "offset_s", "snaplen", "tsresol")

    def __init__(self, linktype: int, snaplen: int, tsresol: int = 6, offset_s: int = 0) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        #: The raw if_tsresol byte: ``10**-v``, or ``2**-(v & 0x7f)`` when the MSB is set.
        self.tsresol = tsresol
        #: ``if_tsoffset``: signed seconds added to every timestamp of the interface, as given.
        self.offset_s = offset_s

    def scale(self) -> tuple[bool, int, int]:
        """``(pow2, mul, div)`` for :func:`_units_to_ns` (pow2: ``div`` is the shift)."""
        if self.tsresol & 0x80:
            return True, 1, self.tsresol & 0x7F
        v = self.tsresol
        return (False, 10 ** (9 - v), 1) if v <= 9 else (False, 1, 10 ** (v - 9))


class PcapngWalker:
    """Walks a pcapng stream window by window, parsing SHBs and IDBs as it meets them.

    Counters: ``sections``, ``interfaces`` (total over all sections), ``other_blocks`` (blocks
    of a type other than SHB/IDB/EPB/SPB/OPB, skipped). ``section_interfaces`` holds the
    :class:`Interface` list of the current section.
    """

    header_len = 0  # the first SHB is parsed by walk() like every other one

    def __init__(self, path: str, *, decompressed: bool = False) -> None:
        self.path = path
        self.decompressed = decompressed
        self.big_endian = False
        self.sections = 0
        self.interfaces = 0
        self.section_interfaces: list[Interface] = []
        self._counters = np.zeros(N_COUNTERS, np.int64)
        self._last_ts = 0
        self._rebuild_interface_arrays()

    @property
    def other_blocks(self) -> int:
        return int(self._counters[CTR_OTHER_BLOCKS])

    @property
    def ts_overflow(self) -> int:
        """Packets whose timestamp did not fit int64 ns and were given :data:`TS_OVERFLOW`."""
        return int(self._counters[CTR_TS_OVERFLOW])

    def _rebuild_interface_arrays(self, capacity: int = 1) -> None:
        """The kernel's per-interface arrays, of ``capacity`` rows (at least the section's interfaces)."""
        ifs = self.section_interfaces
        k = max(len(ifs), capacity, 1)  # numba wants non-empty typed arrays to index into
        self._lt = np.zeros(k, np.uint16)
        self._pow2 = np.zeros(k, np.bool_)
        self._mul = np.ones(k, np.uint64)
        self._div = np.ones(k, np.uint64)
        self._off = np.zeros(k, np.int64)
        self._snap = np.zeros(k, np.uint32)
        for i, itf in enumerate(ifs):
            self._set_interface_row(i, itf)

    def _set_interface_row(self, i: int, itf: Interface) -> None:
        pow2, mul, div = itf.scale()
        self._lt[i], self._pow2[i], self._mul[i], self._div[i] = itf.linktype, pow2, mul, div
        self._off[i] = max(-MAX_TSOFFSET_S, min(itf.offset_s, MAX_TSOFFSET_S))
        self._snap[i] = itf.snaplen

    def _error(self, offset: int, expected: str, found: str) -> CaptureError:
        return CaptureError(self.path, offset, expected, found, decompressed=self.decompressed)

    def walk(
        self, buf: np.ndarray, pos: int, at_eof: bool, base: int, rec: RecordArrays, max_records: int
    ) -> WalkResult:
        """Walk the blocks of window ``buf`` (stream offset ``base``) from ``pos``.

        Same contract as :meth:`netspectra.capture.pcap.PcapWalker.walk`.
        """
        while True:
            n, pos, outcome, self._last_ts = walk_pcapng_blocks(
                buf,
                pos,
                self.big_endian,
                self._lt,
                self._pow2,
                self._mul,
                self._div,
                self._off,
                self._snap,
                len(self.section_interfaces),
                self._last_ts,
                max_records,
                rec.off,
                rec.caplen,
                rec.wirelen,
                rec.ts_ns,
                rec.linktype,
                self._counters,
            )
            if n or outcome == NG_FULL:
                # Hand out the records first; the next call meets the SHB/IDB/damage again.
                return WalkResult(n, pos)
            if outcome == NG_SHB:
                res = self._section(buf, pos, at_eof, base)
            elif outcome == NG_IDB:
                res = self._interface(buf, pos, base)
            elif outcome == NG_END:
                return self._end(buf, pos, at_eof, base)
            else:
                return WalkResult(0, pos, error=self._damage(buf, pos, base, outcome))
            if isinstance(res, WalkResult):
                return res
            pos = res

    def _fmt(self, big_endian: bool | None = None) -> str:
        return ">" if (self.big_endian if big_endian is None else big_endian) else "<"

    def _end(self, buf: np.ndarray, pos: int, at_eof: bool, base: int) -> WalkResult:
        rest = buf.shape[0] - pos
        if rest == 0:
            return WalkResult(0, pos, done=at_eof, need=0 if at_eof else MIN_BLOCK_LEN)
        if rest < 8:
            if at_eof:
                return WalkResult(
                    0,
                    pos,
                    error=self._error(
                        base + pos,
                        "a block header (at least 12 bytes)",
                        f"{rest} trailing bytes before end of file",
                    ),
                    truncated=True,
                )
            return WalkResult(0, pos, need=MIN_BLOCK_LEN)
        btype, blen = struct.unpack_from(self._fmt() + "II", buf[pos : pos + 8], 0)
        if btype == BT_SHB:
            blen = MIN_SHB_LEN  # its length is in the byte order it declares; ask for the minimum first
        elif blen < MIN_BLOCK_LEN or blen % 4:
            return WalkResult(0, pos, error=self._damage(buf, pos, base, NG_BAD_LENGTH))
        return self._need_block(pos, max(blen, MIN_BLOCK_LEN), rest, at_eof, base, btype)

    def _need_block(self, pos: int, blen: int, rest: int, at_eof: bool, base: int, btype: int) -> WalkResult:
        if blen > HARD_CAP_BYTES:
            err = self._error(
                base + pos,
                f"a block total length of at most {HARD_CAP_BYTES} bytes",
                f"bogus total length {blen} (block type 0x{btype:08x})",
            )
            return WalkResult(0, pos, error=err)
        if at_eof:
            err = self._error(
                base + pos,
                f"a complete block of {blen} bytes (block type 0x{btype:08x})",
                f"{rest} bytes before end of file",
            )
            return WalkResult(0, pos, error=err, truncated=True)
        return WalkResult(0, pos, need=blen)

    def _damage(self, buf: np.ndarray, pos: int, base: int, outcome: int) -> CaptureError:
        b = buf[pos : pos + 32].tobytes()
        bo = self._fmt()
        btype, blen = struct.unpack_from(bo + "II", b, 0)
        what = {
            BT_EPB: "enhanced packet block",
            BT_OPB: "packet block (obsolete)",
            BT_SPB: "simple packet block",
        }
        if outcome == NG_BAD_LENGTH:
            return self._error(
                base + pos,
                "a block total length that is a multiple of 4 and at least 12",
                f"total length {blen} (block type 0x{btype:08x})",
            )
        if outcome == NG_BAD_TRAILER:
            (trail,) = struct.unpack_from(bo + "I", buf[pos + blen - 4 : pos + blen].tobytes(), 0)
            return self._error(
                base + pos,
                f"the trailing block total length to repeat the leading one ({blen})",
                f"{trail} (block type 0x{btype:08x})",
            )
        n_if = len(self.section_interfaces)
        if outcome == NG_BAD_IFACE:
            if btype == BT_SPB:
                return self._error(
                    base + pos,
                    "an interface description block before a simple packet block",
                    "no interface in this section",
                )
            iface = struct.unpack_from(bo + ("I" if btype == BT_EPB else "H"), b, 8)[0]
            return self._error(
                base + pos,
                f"an interface id below {n_if} (the interfaces this section has described)",
                f"interface id {iface} in an {what[btype]}",
            )
        # NG_BAD_BODY
        minimum = MIN_SPB_LEN if btype == BT_SPB else MIN_EPB_LEN
        if blen < minimum:
            return self._error(
                base + pos, f"an {what[btype]} of at least {minimum} bytes", f"total length {blen}"
            )
        (caplen,) = struct.unpack_from(bo + "I", b, 20)
        return self._error(
            base + pos,
            f"an {what[btype]} whose captured length fits in its block",
            f"caplen {caplen} in a block of {blen} bytes",
        )

    def _section(self, buf: np.ndarray, pos: int, at_eof: bool, base: int) -> int | WalkResult:
        rest = buf.shape[0] - pos
        bom = buf[pos + 8 : pos + 12].tobytes()
        if bom == b"\x4d\x3c\x2b\x1a":
            big = False
        elif bom == b"\x1a\x2b\x3c\x4d":
            big = True
        else:
            return WalkResult(
                0,
                pos,
                error=self._error(
                    base + pos + 8,
                    "the byte-order magic 1a2b3c4d of a section header block",
                    f"bytes {bom.hex(' ')}",
                ),
            )
        bo = self._fmt(big)
        (blen,) = struct.unpack_from(bo + "I", buf[pos + 4 : pos + 8].tobytes(), 0)
        if blen < MIN_SHB_LEN or blen % 4:
            return WalkResult(
                0,
                pos,
                error=self._error(
                    base + pos,
                    f"a section header block total length that is a multiple of 4 and at least {MIN_SHB_LEN}",
                    f"total length {blen}",
                ),
            )
        if blen > rest:
            return self._need_block(pos, blen, rest, at_eof, base, BT_SHB)
        blk = buf[pos : pos + blen].tobytes()
        (trail,) = struct.unpack_from(bo + "I", blk, blen - 4)
        if trail != blen:
            return WalkResult(
                0,
                pos,
                error=self._error(
                    base + pos,
                    f"the trailing block total length to repeat the leading one ({blen})",
                    f"{trail} (section header block)",
                ),
            )
        major, minor = struct.unpack_from(bo + "HH", blk, 12)
        if major != 1:
            return WalkResult(
                0, pos, error=self._error(base + pos, "pcapng version 1.x", f"version {major}.{minor}")
            )
        self.big_endian = big
        self.sections += 1
        self.section_interfaces = []
        self._last_ts = 0
        self._rebuild_interface_arrays()
        log.debug(
            "%s: section %d at %d, %s-endian",
            self.path,
            self.sections,
            base + pos,
            "big" if big else "little",
        )
        return pos + blen

    def _interface(self, buf: np.ndarray, pos: int, base: int) -> int | WalkResult:
        bo = self._fmt()
        (blen,) = struct.unpack_from(bo + "I", buf[pos + 4 : pos + 8].tobytes(), 0)
        blk = buf[pos : pos + blen].tobytes()
        if blen < MIN_IDB_LEN:
            return WalkResult(
                0,
                pos,
                error=self._error(
                    base + pos,
                    f"an interface description block of at least {MIN_IDB_LEN} bytes",
                    f"{blen} bytes",
                ),
            )
        linktype, _reserved, snaplen = struct.unpack_from(bo + "HHI", blk, 8)
        itf = Interface(linktype, snaplen)
        p, stop = 16, blen - 4
        while p + 4 <= stop:
            code, olen = struct.unpack_from(bo + "HH", blk, p)
            if code == OPT_ENDOFOPT:
                break
            if p + 4 + olen > stop:
                return WalkResult(
                    0,
                    pos,
                    error=self._error(
                        base + pos + p,
                        "an interface option that fits in its block",
                        f"option {code} of {olen} bytes with {stop - p - 4} bytes left",
                    ),
                )
            if code == OPT_IF_TSRESOL and olen >= 1:
                v = blk[p + 4]
                limit = MAX_TSRESOL_POW2 if v & 0x80 else MAX_TSRESOL_POW10
                if (v & 0x7F) > limit:
                    what = f"2^-{v & 0x7F}" if v & 0x80 else f"10^-{v}"
                    return WalkResult(
                        0,
                        pos,
                        error=self._error(
                            base + pos + p,
                            f"an if_tsresol of at most 10^-{MAX_TSRESOL_POW10} or 2^-{MAX_TSRESOL_POW2}",
                            what,
                        ),
                    )
                itf.tsresol = v
            elif code == OPT_IF_TSOFFSET and olen >= 8:
                itf.offset_s = struct.unpack_from(bo + "q", blk, p + 4)[0]
                if abs(itf.offset_s) > _TSOFFSET_PLAUSIBLE_S:
                    log.warning(
                        "%s: interface %d has an if_tsoffset of %d s: its timestamps leave the years "
                        "1677..2262 that int64 nanoseconds hold and are clamped (counted in ts_overflow)",
                        self.path,
                        len(self.section_interfaces),
                        itf.offset_s,
                    )
            p += 4 + ((olen + 3) & ~3)
        self.section_interfaces.append(itf)
        self.interfaces += 1
        i = len(self.section_interfaces) - 1
        if i < self._lt.shape[0]:
            self._set_interface_row(i, itf)
        else:  # doubling: rebuilding the arrays at every IDB took O(n^2) (a file of 1 M IDBs hung)
            self._rebuild_interface_arrays(2 * (i + 1))
        return pos + blen
