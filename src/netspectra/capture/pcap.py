"""Classic pcap (libpcap) files: the global header and a numba kernel walking records in a window.

Layout (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html): a 24-byte global header
(magic, version, thiszone, sigfigs, snaplen, link type) then records of a 16-byte header
(ts_sec, ts_frac, caplen, wirelen) and ``caplen`` bytes of packet data. The magic gives the byte
order and the timestamp unit (``a1b2c3d4`` microseconds, ``a1b23c4d`` nanoseconds). The upper
bits of the link-type field carry FCS length / reserved flags and are masked off.

Damage is reported as :class:`~netspectra.capture.errors.CaptureError` at the offset of the record
header concerned, after every record before it has been handed out:

* caplen above ``max(snaplen, 262144)`` ("bogus caplen"; snaplen is only advisory, and writers
  such as ``editcap`` produce records above it);
* a record whose packet data runs past the end of the file;
* trailing bytes shorter than a record header.
"""

from __future__ import annotations

import logging
import struct

import numpy as np

from netspectra.capture.errors import CaptureError
from netspectra.capture.source import (
    HARD_CAP_BYTES,
    MAGIC_PCAP_NS_BE,
    MAGIC_PCAP_NS_LE,
    MAGIC_PCAP_US_BE,
    MAGIC_PCAP_US_LE,
    RecordArrays,
    WalkResult,
)
from netspectra.jit import njit

log = logging.getLogger(__name__)

GLOBAL_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
#: Largest caplen accepted whatever the snaplen says (libpcap's MAXIMUM_SNAPLEN).
MIN_MAX_CAPLEN = 262_144
#: The link-type field's low 28 bits; the top 4 are the FCS length (LT_FCS_LENGTH).
LINKTYPE_FIELD_MASK = 0x0FFFFFFF

# Kernel outcomes.
WALK_END = 0  # every complete record of the window walked; pos = first byte not consumed
WALK_FULL = 1  # max_records written; pos = next record header
WALK_BAD_CAPLEN = 2  # the record header at pos has caplen > max_caplen


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
def walk_pcap_records(
    buf: np.ndarray,
    pos: int,
    big_endian: bool,
    frac_to_ns: int,
    linktype: int,
    max_caplen: int,
    max_records: int,
    rec_off: np.ndarray,
    rec_caplen: np.ndarray,
    rec_wirelen: np.ndarray,
    rec_ts: np.ndarray,
    rec_linktype: np.ndarray,
) -> tuple[int, int, int]:
    """Walk complete pcap records of ``buf`` from ``pos``; return ``(n, pos, outcome)``.

    Writes at most ``max_records`` rows into the ``rec_*`` arrays. Stops at the first record that
    is not complete in ``buf`` (``WALK_END``, ``pos`` at its header), after ``max_records``
    (``WALK_FULL``) or at a header whose caplen exceeds ``max_caplen`` (``WALK_BAD_CAPLEN``, ``pos``
    at that header). ``frac_to_ns`` is 1000 for microsecond files and 1 for nanosecond files.
    """
    end = buf.shape[0]
    n = 0
    lt = np.uint16(linktype)
    while n < max_records:
        if end - pos < 16:
            return n, pos, WALK_END
        sec = np.int64(_u32(buf, pos, big_endian))
        frac = np.int64(_u32(buf, pos + 4, big_endian))
        caplen = _u32(buf, pos + 8, big_endian)
        if caplen > max_caplen:
            return n, pos, WALK_BAD_CAPLEN
        if end - pos - 16 < np.int64(caplen):
            return n, pos, WALK_END
        rec_off[n] = pos + 16
        rec_caplen[n] = caplen
        rec_wirelen[n] = _u32(buf, pos + 12, big_endian)
        rec_ts[n] = sec * 1_000_000_000 + frac * frac_to_ns
        rec_linktype[n] = lt
        pos += 16 + np.int64(caplen)
        n += 1
    return n, pos, WALK_FULL


def walk_pcap_records_py(
    buf: np.ndarray,
    pos: int,
    big_endian: bool,
    frac_to_ns: int,
    linktype: int,
    max_caplen: int,
    max_records: int,
    rec_off: np.ndarray,
    rec_caplen: np.ndarray,
    rec_wirelen: np.ndarray,
    rec_ts: np.ndarray,
    rec_linktype: np.ndarray,
) -> tuple[int, int, int]:
    """Plain-Python reference of :func:`walk_pcap_records` (same contract, for tests)."""
    data = bytes(buf)
    hdr = struct.Struct(">IIII" if big_endian else "<IIII")
    end = len(data)
    n = 0
    while n < max_records:
        if end - pos < 16:
            return n, pos, WALK_END
        sec, frac, caplen, wirelen = hdr.unpack_from(data, pos)
        if caplen > max_caplen:
            return n, pos, WALK_BAD_CAPLEN
        if end - pos - 16 < caplen:
            return n, pos, WALK_END
        rec_off[n] = pos + 16
        rec_caplen[n] = caplen
        rec_wirelen[n] = wirelen
        rec_ts[n] = sec * 1_000_000_000 + frac * frac_to_ns
        rec_linktype[n] = linktype
        pos += 16 + caplen
        n += 1
    return n, pos, WALK_FULL


class PcapWalker:
    """Reads the global header and walks the records of a classic pcap stream, window by window.

    Attributes (from the global header): ``big_endian``, ``nanosecond``, ``version``, ``snaplen``,
    ``linktype`` (the masked field's low 16 bits), ``linktype_field`` (the raw 32-bit field),
    ``fcs_bytes`` (FCS length announced by the field, 0 if none) and ``max_caplen``.
    """

    header_len = GLOBAL_HEADER_LEN

    def __init__(self, path: str, header: bytes, *, decompressed: bool = False) -> None:
        """Parse the 24-byte global header ``header`` (a :class:`CaptureError` if it is short)."""
        self.path = path
        self.decompressed = decompressed
        if len(header) < GLOBAL_HEADER_LEN:
            raise self._error(0, "a 24-byte pcap global header", f"{len(header)} bytes before end of file")
        magic = header[:4]
        if magic not in (MAGIC_PCAP_US_LE, MAGIC_PCAP_US_BE, MAGIC_PCAP_NS_LE, MAGIC_PCAP_NS_BE):
            raise self._error(0, "a pcap magic number", f"bytes {magic.hex(' ')}")
        self.big_endian = magic in (MAGIC_PCAP_US_BE, MAGIC_PCAP_NS_BE)
        self.nanosecond = magic in (MAGIC_PCAP_NS_LE, MAGIC_PCAP_NS_BE)
        major, minor, _zone, _sigfigs, snaplen, lt_field = struct.unpack_from(
            ">HHiIII" if self.big_endian else "<HHiIII", header, 4
        )
        self.version = (major, minor)
        self.snaplen = snaplen
        self.linktype_field = lt_field
        self.linktype = (lt_field & LINKTYPE_FIELD_MASK) & 0xFFFF
        # LT_FCS_LENGTH_PRESENT (bit 26) says the top 4 bits hold the FCS length in 16-bit words.
        self.fcs_bytes = ((lt_field >> 28) * 2) if lt_field & 0x04000000 else 0
        if lt_field & LINKTYPE_FIELD_MASK & ~0xFFFF:
            log.debug("%s: reserved link-type bits set (field 0x%08x), ignored", path, lt_field)
        self.max_caplen = min(max(snaplen, MIN_MAX_CAPLEN), HARD_CAP_BYTES - RECORD_HEADER_LEN)
        self._frac_to_ns = 1 if self.nanosecond else 1000
        self._hdr = struct.Struct(">IIII" if self.big_endian else "<IIII")

    def _error(self, offset: int, expected: str, found: str) -> CaptureError:
        return CaptureError(self.path, offset, expected, found, decompressed=self.decompressed)

    def walk(
        self, buf: np.ndarray, pos: int, at_eof: bool, base: int, rec: RecordArrays, max_records: int
    ) -> WalkResult:
        """Walk the records of window ``buf`` (stream offset ``base``) from ``pos``.

        ``at_eof`` says that ``buf`` ends where the stream ends. Returns a :class:`WalkResult`;
        damage comes back as ``WalkResult.error`` with the records before it already written.
        """
        n, pos, outcome = walk_pcap_records(
            buf,
            pos,
            self.big_endian,
            self._frac_to_ns,
            self.linktype,
            self.max_caplen,
            max_records,
            rec.off,
            rec.caplen,
            rec.wirelen,
            rec.ts_ns,
            rec.linktype,
        )
        if outcome == WALK_FULL:
            return WalkResult(n, pos)
        rest = buf.shape[0] - pos
        if outcome == WALK_BAD_CAPLEN:
            caplen = self._hdr.unpack_from(buf[pos : pos + 16], 0)[2]
            return WalkResult(
                n,
                pos,
                error=self._error(
                    base + pos,
                    f"a record caplen of at most {self.max_caplen} bytes (snaplen {self.snaplen})",
                    f"bogus caplen {caplen}",
                ),
            )
        if rest == 0:
            return WalkResult(n, pos, done=at_eof, need=0 if at_eof else RECORD_HEADER_LEN)
        if rest < RECORD_HEADER_LEN:
            if at_eof:
                err = self._error(
                    base + pos,
                    "a 16-byte record header",
                    f"{rest} trailing byte{'s' if rest > 1 else ''} before end of file",
                )
                return WalkResult(n, pos, error=err, truncated=True)
            return WalkResult(n, pos, need=RECORD_HEADER_LEN)
        caplen = self._hdr.unpack_from(buf[pos : pos + 16], 0)[2]
        if at_eof:
            err = self._error(
                base + pos,
                f"{caplen} bytes of packet data (record caplen)",
                f"{rest - RECORD_HEADER_LEN} bytes before end of file",
            )
            return WalkResult(n, pos, error=err, truncated=True)
        return WalkResult(n, pos, need=RECORD_HEADER_LEN + caplen)
