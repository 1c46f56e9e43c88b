"""The packet decoder kernel: captured frames (link layer -> IP -> L4 ports) into PacketBatch columns.

:func:`decode_records` is the one hot loop between a capture container (pcap, pcapng, AF_PACKET
ring) and the columnar :class:`~netspectra.batch.PacketBatch`. Container readers locate records
in one byte buffer (usually a read-only view of an mmap) and hand their offsets, captured and wire
lengths, timestamps and link types to the kernel in one call per batch; no Python runs per packet.

Decoding rules (flows are keyed on the OUTER IP header, like NetFlow and ``tools/tshark_flows.py``):

* Link types: Ethernet (ethertype chain through 802.1Q/802.1ad/0x9100 tags at any depth, MPLS
  label stacks to the bottom of stack then IPv4/IPv6 by the first nibble, PPPoE session), Linux
  SLL and SLL2 (then the same ethertype chain), raw IP (101, 12, 14 by version nibble; 228 IPv4;
  229 IPv6), BSD null (address family in either byte order) and loop (network byte order).
* IPv4: version 4, IHL >= 5 and a total length of 0 (BIG TCP / TSO frames carry 0) or at least
  the header length, else ``IP_MALFORMED``; 20 captured bytes for the addresses; non-first
  fragments carry no ports; cut options give ``OK_L3_TRUNCATED`` (a non-first fragment is ``OK``
  even then: its key never needs more than the fixed header). The batch's length is always the
  wire length of the record, never the IP total length.
* IPv6: 40 captured bytes for the addresses; the Hop-by-Hop, Routing, Fragment, Destination
  Options and AH extension headers are walked (at most ``IPV6_MAX_EXT_HEADERS``) to the upper
  protocol; everything else ends the chain (ESP, No Next Header, Mobility, ...). An extension header
  counts as read when its next-header and length fields (Fragment: also its offset) are captured;
  a chain cut before that gives ``OK_L3_TRUNCATED`` with the last next-header value read as the
  protocol. A Fragment header with a non-zero offset ends the walk: its next header is the protocol
  and the packet has no ports.
* Ports: TCP, UDP and SCTP only, from the first four L4 bytes, only on first fragments, only when
  captured (else ports 0 and ``OK_L4_TRUNCATED``).
* Tunnels (GRE, VXLAN, IP-in-IP, ...) are not decapsulated: the outer header is the flow.
* Wire length: a record claiming more than ``MAX_WIRE_LENGTH`` (1 MiB) is damage, whatever its
  bytes hold: ``IMPLAUSIBLE_LENGTH``, not decoded, never in a batch. Capture files and the live
  ring share this rule because both go through this kernel.

Status and aux codes are those of :mod:`netspectra.capture.status`.
"""

from __future__ import annotations

import logging

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.capture.decode_ref import FlowKey
from netspectra.jit import njit

logger = logging.getLogger(__name__)

__all__ = ["DECODER_COLUMNS", "decode_arrays", "decode_packet_bytes", "decode_records", "extras_into"]

#: The optional :class:`~netspectra.batch.PacketBatch` columns the decoder fills when asked.
DECODER_COLUMNS: tuple[str, ...] = ("tcp_flags", "vlan_id", "icmp_type_code", "ip_length")
_NO_STRIPPED_VLAN = np.empty(0, np.int64)

# numba freezes module globals into the compiled code, and its on-disk cache is invalidated only
# when THIS file changes; so the codes are literals here (not attribute reads of status.py /
# linktypes.py) and a unit test checks that they equal the named constants.
_OK = 0  # status.OK
_OK_L4 = 1  # status.OK_L4_TRUNCATED
_OK_L3 = 2  # status.OK_L3_TRUNCATED
_FIRST_SKIPPED = 3  # status.FIRST_SKIPPED
_NON_IP = 3  # status.NON_IP
_UNSUPPORTED = 4  # status.LINKTYPE_UNSUPPORTED
_L2_TRUNC = 5  # status.L2_TRUNCATED
_L3_TRUNC = 6  # status.L3_TRUNCATED
_MALFORMED = 7  # status.IP_MALFORMED
_IMPLAUSIBLE = 8  # status.IMPLAUSIBLE_LENGTH
_MAX_WIRE = 1048576  # status.MAX_WIRE_LENGTH
_MAX_EXT = 256  # linktypes.IPV6_MAX_EXT_HEADERS

# Every helper is inlined at numba-IR level (inline="always"): a plain call that passes an array
# makes numba increment and decrement its reference count atomically on every packet, which cost
# more than the decode itself (49 ns/packet before, about 10 after, measured on one core).


@njit(nogil=True, cache=True, inline="always")
def _byte(buf, p):
    # An unsigned index spares numba's negative-index wraparound test on every read, which also
    # lets LLVM merge neighbouring byte loads. Callers guarantee 0 <= p < len(buf).
    return np.int64(buf[np.uint64(p)])


@njit(nogil=True, cache=True, inline="always")
def _be16(buf, p):
    return (_byte(buf, p) << 8) | _byte(buf, p + 1)


@njit(nogil=True, cache=True, inline="always")
def _be32(buf, p):
    return (_be16(buf, p) << 16) | _be16(buf, p + 2)


@njit(nogil=True, cache=True, inline="always")
def _le32(buf, p):
    return (_byte(buf, p + 3) << 24) | (_byte(buf, p + 2) << 16) | (_byte(buf, p + 1) << 8) | _byte(buf, p)


@njit(nogil=True, cache=True, inline="always")
def _le64(buf, p):
    v = np.uint64(0)
    for k in range(8):
        v |= np.uint64(buf[np.uint64(p + k)]) << np.uint64(8 * k)
    return v


@njit(nogil=True, cache=True, inline="always")
def _store64(flat, r, v):
    for k in range(8):
        flat[r + np.uint64(k)] = (v >> np.uint64(8 * k)) & np.uint64(0xFF)


@njit(nogil=True, cache=True, inline="always")
def _put_addresses(buf, pos, ipver, flat_src, flat_dst, r):
    """Copy the addresses of the IP header at ``pos`` into byte ``r`` of the flat address columns.

    Every byte is loaded before any is stored: the output might alias ``buf`` as far as LLVM knows,
    and interleaved byte moves stay byte moves. In this order each 8-byte half compiles to one
    load and one store; the shifts keep the result independent of the host's byte order.
    """
    if ipver == 4:
        s = np.uint64(0xFFFF0000) | (np.uint64(_le32(buf, pos + 12)) << np.uint64(32))
        d = np.uint64(0xFFFF0000) | (np.uint64(_le32(buf, pos + 16)) << np.uint64(32))
        _store64(flat_src, r, np.uint64(0))
        _store64(flat_src, r + np.uint64(8), s)
        _store64(flat_dst, r, np.uint64(0))
        _store64(flat_dst, r + np.uint64(8), d)
    else:
        s0 = _le64(buf, pos + 8)
        s1 = _le64(buf, pos + 16)
        d0 = _le64(buf, pos + 24)
        d1 = _le64(buf, pos + 32)
        _store64(flat_src, r, s0)
        _store64(flat_src, r + np.uint64(8), s1)
        _store64(flat_dst, r, d0)
        _store64(flat_dst, r + np.uint64(8), d1)


@njit(nogil=True, cache=True, inline="always")
def _is_af_inet6(af):
    return af == 10 or af == 24 or af == 28 or af == 30


@njit(nogil=True, cache=True, inline="always")
def _ethertype_chain(buf, pos, end, ethertype, linktype):
    """Follow VLAN tags / MPLS / PPPoE from ``pos``; returns ``(ipver, pos, status, aux)``.

    ``ipver`` is 4 or 6 when an IP header starts at ``pos``; otherwise 0 and ``status``/``aux``
    are final.
    """
    et = ethertype
    while True:
        if et == 0x8100 or et == 0x88A8 or et == 0x9100:
            if pos + 4 > end:
                return 0, pos, _L2_TRUNC, linktype
            et = _be16(buf, pos + 2)
            pos += 4
        elif et == 0x8847 or et == 0x8848:
            # Pop labels to the bottom of stack; the payload type is not signalled, so guess it
            # from the first nibble as every router and analyser does.
            while True:
                if pos + 4 > end:
                    return 0, pos, _L2_TRUNC, linktype
                bottom = _byte(buf, pos + 2) & 1
                pos += 4
                if bottom:
                    break
            if pos >= end:
                return 0, pos, _L2_TRUNC, linktype
            nibble = _byte(buf, pos) >> 4
            if nibble == 4:
                return 4, pos, _OK, 0
            if nibble == 6:
                return 6, pos, _OK, 0
            return 0, pos, _NON_IP, et
        elif et == 0x8864:
            if pos + 8 > end:
                return 0, pos, _L2_TRUNC, linktype
            ppp = _be16(buf, pos + 6)
            pos += 8
            if ppp == 0x0021:
                return 4, pos, _OK, 0
            if ppp == 0x0057:
                return 6, pos, _OK, 0
            return 0, pos, _NON_IP, ppp
        elif et == 0x0800:
            return 4, pos, _OK, 0
        elif et == 0x86DD:
            return 6, pos, _OK, 0
        elif et < 0x0600:
            return 0, pos, _NON_IP, 0  # an 802.3 length field: LLC/SNAP follows
        else:
            return 0, pos, _NON_IP, et


@njit(nogil=True, cache=True, inline="always")
def _link(buf, off, end, linktype):
    """Decode the link layer at ``off``; returns ``(ipver, pos, status, aux)`` like the chain."""
    if linktype == 1:
        if off + 14 > end:
            return 0, off, _L2_TRUNC, linktype
        return _ethertype_chain(buf, off + 14, end, _be16(buf, off + 12), linktype)
    if linktype == 113:
        if off + 16 > end:
            return 0, off, _L2_TRUNC, linktype
        return _ethertype_chain(buf, off + 16, end, _be16(buf, off + 14), linktype)
    if linktype == 276:
        if off + 20 > end:
            return 0, off, _L2_TRUNC, linktype
        return _ethertype_chain(buf, off + 20, end, _be16(buf, off), linktype)
    if linktype == 101 or linktype == 12 or linktype == 14:
        if off >= end:
            return 0, off, _L3_TRUNC, 0  # not even a version nibble
        nibble = _byte(buf, off) >> 4
        if nibble == 4:
            return 4, off, _OK, 0
        if nibble == 6:
            return 6, off, _OK, 0
        return 0, off, _MALFORMED, _byte(buf, off)
    if linktype == 228:
        return 4, off, _OK, 0
    if linktype == 229:
        return 6, off, _OK, 0
    if linktype == 0 or linktype == 108:
        if off + 4 > end:
            return 0, off, _L2_TRUNC, linktype
        af_be = _be32(buf, off)
        # LOOP is always network byte order; NULL is the capturing host's order, unknown here.
        af_other = af_be if linktype == 108 else _le32(buf, off)
        if af_other == 2 or af_be == 2:
            return 4, off + 4, _OK, 0
        if _is_af_inet6(af_other) or _is_af_inet6(af_be):
            return 6, off + 4, _OK, 0
        return 0, off, _NON_IP, min(min(af_be, af_other), 0xFFFF)
    return 0, off, _UNSUPPORTED, linktype


@njit(nogil=True, cache=True, inline="always")
def _ip(buf, p, end, ipver):
    """Decode the IP header at ``p``; returns ``(status, aux, sport, dport, proto, l4)``.

    A status below ``FIRST_SKIPPED`` guarantees the addresses were captured; the caller copies them
    (with :func:`_put_addresses`), so this function never touches an output row. ``l4`` is where the
    upper-layer header starts (it may lie past ``end``: cut by the snap length) on a first fragment
    whose IP headers were all captured, else -1.
    """
    if p >= end:
        return _L3_TRUNC, ipver, 0, 0, 0, -1
    b0 = _byte(buf, p)
    if ipver == 4:
        if (b0 >> 4) != 4 or (b0 & 15) < 5:
            return _MALFORMED, b0, 0, 0, 0, -1
        if p + 20 > end:
            return _L3_TRUNC, 4, 0, 0, 0, -1
        # Total length 0 is what TSO / BIG TCP frames carry (fine); any other value below the
        # header length is impossible (tshark: "Bogus IP length", no addresses).
        total_len = _be16(buf, p + 2)
        if total_len != 0 and total_len < (b0 & 15) * 4:
            return _MALFORMED, b0, 0, 0, 0, -1
        proto = _byte(buf, p + 9)
        if (_be16(buf, p + 6) & 0x1FFF) != 0:
            return _OK, 0, 0, 0, proto, -1  # non-first fragment: the key is complete without ports
        l4 = p + (b0 & 15) * 4
        if l4 > end:
            return _OK_L3, 0, 0, 0, proto, -1
    else:
        if (b0 >> 4) != 6:
            return _MALFORMED, b0, 0, 0, 0, -1
        if p + 40 > end:
            return _L3_TRUNC, 6, 0, 0, 0, -1
        proto = _byte(buf, p + 6)
        l4 = p + 40
        walked = 0
        while proto == 0 or proto == 43 or proto == 60 or proto == 44 or proto == 51:
            if walked == _MAX_EXT:
                return _OK_L3, 0, 0, 0, proto, -1
            walked += 1
            if proto == 44:
                if l4 + 4 > end:
                    return _OK_L3, 0, 0, 0, proto, -1
                proto = _byte(buf, l4)
                if (_be16(buf, l4 + 2) >> 3) != 0:
                    return _OK, 0, 0, 0, proto, -1  # non-first fragment
                l4 += 8
            else:
                if l4 + 2 > end:
                    return _OK_L3, 0, 0, 0, proto, -1
                units = _byte(buf, l4 + 1)
                # AH counts 4-octet units minus 2; the others 8-octet units minus 1.
                hlen = (units + 2) * 4 if proto == 51 else (units + 1) * 8
                proto = _byte(buf, l4)
                l4 += hlen
    if proto == 6 or proto == 17 or proto == 132:
        if l4 + 4 > end:
            return _OK_L4, 0, 0, 0, proto, l4
        return _OK, 0, _be16(buf, l4), _be16(buf, l4 + 2), proto, l4
    return _OK, 0, 0, 0, proto, l4


@njit(nogil=True, cache=True, inline="always")
def _outer_vlan(buf, off, end, linktype):
    """VLAN id of the outermost 802.1Q/802.1ad tag of the frame at ``off`` (0 if untagged).

    Only called for records that decoded to IP, so every tag the ethertype chain walked is captured.
    """
    if linktype == 1:
        et, tag = off + 12, off + 14
    elif linktype == 113:
        et, tag = off + 14, off + 16
    elif linktype == 276:
        et, tag = off, off + 20
    else:
        return 0
    if tag + 2 > end:
        return 0
    t = _be16(buf, et)
    if t == 0x8100 or t == 0x88A8 or t == 0x9100:
        return _be16(buf, tag) & 0xFFF
    return 0


@njit(nogil=True, cache=True, inline="always")
def _put_extras(buf, off, end, linktype, pos, ipver, proto, l4, wirelen, stripped, j, extras):
    """Fill row ``j`` of the optional columns (see :func:`decode_records`) for a decoded record."""
    out_flags, out_vlan, out_icmp, out_iplen, _ = extras
    flags = 0
    icmp = 0
    if l4 >= 0:
        if proto == 6:
            if l4 + 14 <= end:
                flags = _byte(buf, l4 + 13)
        elif (proto == 1 or proto == 58) and l4 + 2 <= end:
            icmp = _be16(buf, l4)
    out_flags[j] = flags
    out_icmp[j] = icmp
    # The kernel takes the outermost tag off a live frame and reports it beside the frame.
    out_vlan[j] = (stripped & 0xFFF) if stripped >= 0 else _outer_vlan(buf, off, end, linktype)
    if ipver == 4:
        total = _be16(buf, pos + 2)
    else:
        plen = _be16(buf, pos + 4)
        total = 40 + plen if plen != 0 else 0
    if total == 0:
        # TSO / BIG TCP / jumbograms say 0: the packet is what the frame holds after the link layer
        total = np.int64(wirelen) - (pos - off)
        if total < 0:
            total = 0
    out_iplen[j] = total


@njit(nogil=True, cache=True)
def decode_records(
    buf,
    rec_off,
    rec_caplen,
    rec_wirelen,
    rec_ts,
    rec_linktype,
    n,
    out_ts,
    out_src,
    out_dst,
    out_sport,
    out_dport,
    out_proto,
    out_len,
    status,
    aux,
    extras=None,
):
    """Decode records ``0 .. n-1`` of ``buf`` into compacted PacketBatch columns.

    Inputs: ``buf`` uint8[:] (may be read-only, e.g. an mmap view); per record ``rec_off`` int64
    (start of the captured bytes in ``buf``), ``rec_caplen`` uint32, ``rec_wirelen`` uint32,
    ``rec_ts`` int64 ns since the epoch, ``rec_linktype`` uint16. All must have at least ``n``
    entries. Bytes outside ``buf`` are never read: a record reaching past the end of ``buf`` is
    decoded as if its capture stopped there, one starting outside it as an empty capture.

    Outputs: the PacketBatch columns ``out_ts`` int64, ``out_src``/``out_dst`` uint8 (N, 16),
    ``out_sport``/``out_dport`` uint16, ``out_proto`` uint8, ``out_len`` uint32 (= wire length),
    all C-contiguous, with ``N >= n`` rows; rows ``0 .. k-1`` are filled with the records whose
    status is below ``FIRST_SKIPPED``, in record order; rows from ``k`` on are left as they were.
    For every record ``i < n``: ``status[i]`` uint8 and ``aux[i]`` uint16 (codes of
    :mod:`netspectra.capture.status`).

    ``extras`` (optional) asks for the optional columns of :class:`~netspectra.batch.PacketBatch`:
    a tuple ``(out_tcp_flags uint8, out_vlan_id uint16, out_icmp_type_code uint16, out_ip_length
    uint32, rec_vlan int64)``, the four outputs filled like the others (rows ``0 .. k-1``), and
    ``rec_vlan`` either empty or one entry per record: ``tpid << 16 | tci`` of a VLAN tag the capture
    layer took off the frame (AF_PACKET rings do), -1 for none; such a tag is the outermost one. Left
    out (``None``), nothing of this is computed: numba compiles that call without the code.

    Returns ``k``, the number of rows written. Raises ``ValueError`` if an array is too short.
    """
    if (
        rec_off.shape[0] < n
        or rec_caplen.shape[0] < n
        or rec_wirelen.shape[0] < n
        or rec_ts.shape[0] < n
        or rec_linktype.shape[0] < n
        or status.shape[0] < n
        or aux.shape[0] < n
    ):
        raise ValueError("decode_records: a record or status array is shorter than n")
    if (
        out_ts.shape[0] < n
        or out_src.shape[0] < n
        or out_dst.shape[0] < n
        or out_sport.shape[0] < n
        or out_dport.shape[0] < n
        or out_proto.shape[0] < n
        or out_len.shape[0] < n
        or out_src.shape[1] != 16
        or out_dst.shape[1] != 16
    ):
        raise ValueError("decode_records: output columns need at least n rows (addresses: 16 bytes)")
    # a bare `extras is not None` test: numba prunes it (and the code under it) when extras is left out
    if extras is not None:  # noqa: SIM102
        if (
            extras[0].shape[0] < n
            or extras[1].shape[0] < n
            or extras[2].shape[0] < n
            or extras[3].shape[0] < n
            or (extras[4].shape[0] != 0 and extras[4].shape[0] < n)
        ):
            raise ValueError("decode_records: extras columns need at least n rows (rec_vlan: 0 or n)")
    buflen = np.int64(buf.shape[0])
    flat_src = out_src.reshape(out_src.size)
    flat_dst = out_dst.reshape(out_dst.size)
    j = 0
    for i in range(n):
        # Never trust the container: clamp to the buffer so a bogus offset or caplen cannot make
        # the kernel read outside it (numba does not check bounds).
        off = np.int64(rec_off[i])
        if off < 0 or off > buflen:
            off = buflen
        end = off + np.int64(rec_caplen[i])
        if end > buflen:
            end = buflen
        if rec_wirelen[i] > _MAX_WIRE:
            # A length no link or super-packet has: the record is damaged, its bytes are not a
            # frame to trust, and its length must not reach any total.
            status[i] = _IMPLAUSIBLE
            aux[i] = 0
            continue
        linktype = np.int64(rec_linktype[i])
        ipver, pos, s, a = _link(buf, off, end, linktype)
        if ipver != 0:
            s, a, sport, dport, proto, l4 = _ip(buf, pos, end, ipver)
            if s < _FIRST_SKIPPED:
                _put_addresses(buf, pos, ipver, flat_src, flat_dst, np.uint64(j) * np.uint64(16))
                out_ts[j] = rec_ts[i]
                out_sport[j] = sport
                out_dport[j] = dport
                out_proto[j] = proto
                out_len[j] = rec_wirelen[i]
                if extras is not None:
                    stripped = extras[4][i] if extras[4].shape[0] != 0 else -1
                    _put_extras(
                        buf, off, end, linktype, pos, ipver, proto, l4, rec_wirelen[i], stripped, j, extras
                    )
                j += 1
        status[i] = s
        aux[i] = a
    return j


def extras_into(out: PacketBatch, start: int = 0, rec_vlan: np.ndarray | None = None) -> tuple:
    """The ``extras`` argument of :func:`decode_records` that writes the optional columns of ``out``
    (which must carry :data:`DECODER_COLUMNS`) from row ``start`` on; ``rec_vlan`` as documented there
    (``None``: no tag was taken off any frame)."""
    missing = [c for c in DECODER_COLUMNS if getattr(out, c) is None]
    if missing:
        raise ValueError(f"the output batch lacks the optional columns {missing}")
    return (
        out.tcp_flags[start:],
        out.vlan_id[start:],
        out.icmp_type_code[start:],
        out.ip_length[start:],
        _NO_STRIPPED_VLAN if rec_vlan is None else np.ascontiguousarray(rec_vlan, np.int64),
    )


def decode_arrays(
    buf: np.ndarray,
    rec_off: np.ndarray,
    rec_caplen: np.ndarray,
    rec_wirelen: np.ndarray,
    rec_ts: np.ndarray,
    rec_linktype: np.ndarray,
    n: int | None = None,
    *,
    extras: bool = False,
    rec_vlan: np.ndarray | None = None,
) -> tuple[PacketBatch, np.ndarray, np.ndarray]:
    """Allocate the outputs, run :func:`decode_records` and return ``(batch, status, aux)``.

    ``batch`` holds the in-flow packets (views into freshly allocated columns of ``n`` rows);
    ``status`` (uint8) and ``aux`` (uint16) have one entry per record. ``n`` defaults to
    ``len(rec_off)``. Input arrays are converted to the kernel's dtypes when they differ. ``extras``
    also fills the optional columns :data:`DECODER_COLUMNS` (``rec_vlan``: see :func:`decode_records`).
    """
    if n is None:
        n = int(rec_off.shape[0])
    out = PacketBatch.empty(n, DECODER_COLUMNS if extras else ())
    status = np.empty(n, np.uint8)
    aux = np.empty(n, np.uint16)
    k = decode_records(
        buf,
        np.ascontiguousarray(rec_off, np.int64),
        np.ascontiguousarray(rec_caplen, np.uint32),
        np.ascontiguousarray(rec_wirelen, np.uint32),
        np.ascontiguousarray(rec_ts, np.int64),
        np.ascontiguousarray(rec_linktype, np.uint16),
        n,
        out.ts_ns,
        out.src_ip,
        out.dst_ip,
        out.src_port,
        out.dst_port,
        out.protocol,
        out.length,
        status,
        aux,
        extras_into(out, 0, rec_vlan) if extras else None,
    )
    return out.head(k), status, aux


def decode_packet_bytes(
    data: bytes, linktype: int, wirelen: int | None = None
) -> tuple[int, int, FlowKey | None]:
    """Decode one frame with the kernel; same result shape as :func:`decode_ref.decode_one`.

    Returns ``(status, aux, key)`` where ``key`` is ``(src16, dst16, sport, dport, proto)`` for an
    in-flow packet and ``None`` otherwise. ``wirelen`` defaults to ``len(data)``. For tests and
    debugging: one kernel call per packet is far too slow for a capture.
    """
    buf = np.frombuffer(data, np.uint8)
    batch, status, aux = decode_arrays(
        buf,
        np.zeros(1, np.int64),
        np.array([len(data)], np.uint32),
        np.array([len(data) if wirelen is None else wirelen], np.uint32),
        np.zeros(1, np.int64),
        np.array([linktype], np.uint16),
    )
    key: FlowKey | None = None
    if len(batch):
        key = (
            batch.src_ip[0].tobytes(),
            batch.dst_ip[0].tobytes(),
            int(batch.src_port[0]),
            int(batch.dst_port[0]),
            int(batch.protocol[0]),
        )
    return int(status[0]), int(aux[0]), key
