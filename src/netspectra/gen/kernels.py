"""Numba kernels of the traffic generator, each with a plain-Python reference implementation.

The generator is split so that every per-packet loop lives here:

* :func:`wire_lengths` maps two uniform random numbers per packet to a realistic wire length, using
  the size profile of the packet's flow (see :data:`PROFILE_TABLE`);
* :func:`write_records` writes classic-pcap records (16-byte record header + Ethernet [+ 802.1Q] +
  IPv4/IPv6 + TCP/UDP/ICMP headers, no payload) into a preallocated byte buffer.

Randomness never comes from inside a kernel: the caller draws uniforms with a seeded numpy
``Generator`` and passes them in, so a kernel is a pure function of its inputs (plus the per-flow
state arrays it updates) and its reference implementation can be compared byte for byte.

Frame conventions shared by both kernels and by the readers of the output:

* wire length = Ethernet frame without FCS, so never below 60 bytes untagged (64 with a tag);
* when the untagged frame would be at most 60 bytes, the IP packet holds only headers and the rest
  is Ethernet padding, otherwise IP total length = wire length - Ethernet header length. A reader
  can therefore recompute the wire length as ``max(60, 14 + ip_total) + 4 * tagged``.
"""

from __future__ import annotations

import struct

import numpy as np

from netspectra.jit import njit

# ---------------------------------------------------------------------------------------------------
# sizes

ETH_HDR = 14
VLAN_TAG = 4
MIN_FRAME = 60  # minimum Ethernet frame without FCS
IPV4_HDR = 20
IPV6_HDR = 40
TCP_HDR = 20
UDP_HDR = 8
ICMP_HDR = 8
REC_HDR = 16  # classic pcap record header
#: The longest record the writer produces: record header + Ethernet + tag + IPv6 + TCP.
MAX_RECORD = REC_HDR + ETH_HDR + VLAN_TAG + IPV6_HDR + TCP_HDR

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

# flow "kind": how TCP flags are chosen
KIND_NORMAL = 0  # ACK for header-only segments, PSH|ACK with payload
KIND_SYN = 1  # scans and SYN floods: every segment is a bare SYN

# ---------------------------------------------------------------------------------------------------
# size profiles
#
# One row per profile, one column group per mixture component: (cumulative probability, lo, hi),
# wire length uniform in [lo, hi] for the untagged frame; lo = hi = 0 means "the minimum frame".
# The numbers follow the usual shape of backbone traces (CAIDA, MAWI): a mode at pure ACKs, one at
# 576-byte IP datagrams, one at full 1500-byte MTU segments, a thin spread in between.

PROFILE_TCP = 0
PROFILE_UDP = 1
PROFILE_ICMP = 2
PROFILE_MIN = 3  # SYN scans and SYN floods: minimum-size frames only
PROFILE_UDP_FLOOD = 4  # amplification-like: mostly large datagrams

_PROFILES: list[list[tuple[float, int, int]]] = [
    [(0.45, 0, 0), (0.10, 61, 200), (0.08, 590, 590), (0.07, 201, 1499), (0.30, 1514, 1514)],
    [(0.35, 60, 150), (0.25, 151, 600), (0.15, 601, 1199), (0.25, 1200, 1514)],
    [(0.85, 98, 98), (0.15, 70, 590)],
    [(1.00, 0, 0)],
    [(0.20, 60, 200), (0.30, 480, 600), (0.50, 1400, 1514)],
]


def _profile_table() -> np.ndarray:
    k = max(len(p) for p in _PROFILES)
    table = np.zeros((len(_PROFILES), k, 3), dtype=np.float64)
    for i, comps in enumerate(_PROFILES):
        cum = 0.0
        for j, (p, lo, hi) in enumerate(comps):
            cum += p
            table[i, j] = (cum, lo, hi)
        table[i, len(comps) - 1, 0] = 1.0  # no gap at the top from float rounding
        for j in range(len(comps), k):
            table[i, j] = table[i, len(comps) - 1]
    return table


#: float64 (profiles, components, 3): cumulative probability, lo, hi of each mixture component.
PROFILE_TABLE: np.ndarray = _profile_table()


def header_bytes(is_v6: np.ndarray, proto: np.ndarray) -> np.ndarray:
    """IP + L4 header bytes of each flow (int64), from its IP version and protocol."""
    ip = np.where(is_v6 != 0, IPV6_HDR, IPV4_HDR)
    l4 = np.where(proto == PROTO_TCP, TCP_HDR, UDP_HDR)  # UDP, ICMP and ICMPv6 all have 8 bytes
    return (ip + l4).astype(np.int64)


# ---------------------------------------------------------------------------------------------------
# wire lengths


@njit(nogil=True, cache=True)
def wire_lengths(
    flow_idx: np.ndarray,
    u_comp: np.ndarray,
    u_size: np.ndarray,
    f_profile: np.ndarray,
    f_hdr: np.ndarray,
    f_vlan: np.ndarray,
    table: np.ndarray,
    out: np.ndarray,
) -> None:
    """Fill ``out[i]`` (uint32) with the wire length of packet ``i`` of flow ``flow_idx[i]``.

    ``u_comp``/``u_size`` are uniforms in [0, 1): the first picks the mixture component of the
    flow's profile, the second the length inside it. The result is at least the minimum frame and at
    least the captured headers, plus 4 bytes when the flow is VLAN-tagged.
    """
    k = table.shape[1]
    for i in range(flow_idx.shape[0]):
        f = flow_idx[i]
        prof = f_profile[f]
        j = 0
        while j < k - 1 and u_comp[i] >= table[prof, j, 0]:
            j += 1
        lo = int(table[prof, j, 1])
        hi = int(table[prof, j, 2])
        n = lo + int(u_size[i] * (hi - lo + 1))
        if n > hi:
            n = hi
        floor = ETH_HDR + f_hdr[f]
        if floor < MIN_FRAME:
            floor = MIN_FRAME
        if n < floor:
            n = floor
        if f_vlan[f] != 0:
            n += VLAN_TAG
        out[i] = n


def wire_lengths_ref(
    flow_idx: np.ndarray,
    u_comp: np.ndarray,
    u_size: np.ndarray,
    f_profile: np.ndarray,
    f_hdr: np.ndarray,
    f_vlan: np.ndarray,
    table: np.ndarray,
) -> np.ndarray:
    """Plain-Python reference of :func:`wire_lengths` (returns a new uint32 array)."""
    out = np.empty(len(flow_idx), dtype=np.uint32)
    for i, f in enumerate(flow_idx.tolist()):
        rows = table[int(f_profile[f])].tolist()
        comp = next((r for r in rows if u_comp[i] < r[0]), rows[-1])
        lo, hi = int(comp[1]), int(comp[2])
        n = min(lo + int(float(u_size[i]) * (hi - lo + 1)), hi)
        n = max(n, MIN_FRAME, ETH_HDR + int(f_hdr[f]))
        out[i] = n + (VLAN_TAG if f_vlan[f] else 0)
    return out


# ---------------------------------------------------------------------------------------------------
# record writer


@njit(nogil=True, cache=True, inline="always")
def _put16be(buf: np.ndarray, p: int, v: int) -> None:
    buf[p] = (v >> 8) & 0xFF
    buf[p + 1] = v & 0xFF


@njit(nogil=True, cache=True, inline="always")
def _put32be(buf: np.ndarray, p: int, v: int) -> None:
    buf[p] = (v >> 24) & 0xFF
    buf[p + 1] = (v >> 16) & 0xFF
    buf[p + 2] = (v >> 8) & 0xFF
    buf[p + 3] = v & 0xFF


@njit(nogil=True, cache=True, inline="always")
def _put32le(buf: np.ndarray, p: int, v: int) -> None:
    buf[p] = v & 0xFF
    buf[p + 1] = (v >> 8) & 0xFF
    buf[p + 2] = (v >> 16) & 0xFF
    buf[p + 3] = (v >> 24) & 0xFF


@njit(nogil=True, cache=True, inline="always")
def _sum16(buf: np.ndarray, p: int, n: int, s: int) -> int:
    """``s`` plus the big-endian 16-bit words of ``buf[p:p + n]`` (``n`` even)."""
    for b in range(p, p + n, 2):
        s += (int(buf[b]) << 8) | int(buf[b + 1])
    return s


@njit(nogil=True, cache=True, inline="always")
def _fold(s: int) -> int:
    """Internet checksum (ones' complement of the folded ones' complement sum)."""
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


# Documentation MAC addresses (RFC 7042, 00-00-5E-00-53-xx): the trace looks like one router link.
_DST_MAC = (0x00, 0x00, 0x5E, 0x00, 0x53, 0x02)
_SRC_MAC = (0x00, 0x00, 0x5E, 0x00, 0x53, 0x01)


@njit(nogil=True, cache=True)
def write_records(
    buf: np.ndarray,
    ts_ns: np.ndarray,
    flow_idx: np.ndarray,
    wire: np.ndarray,
    f_src: np.ndarray,
    f_dst: np.ndarray,
    f_sport: np.ndarray,
    f_dport: np.ndarray,
    f_proto: np.ndarray,
    f_v6: np.ndarray,
    f_vlan: np.ndarray,
    f_kind: np.ndarray,
    f_npk: np.ndarray,
    f_seq: np.ndarray,
    f_bytes: np.ndarray,
    nanosecond: bool,
) -> int:
    """Write one pcap record per packet into ``buf`` (uint8, at least ``MAX_RECORD * n`` long).

    Returns the number of bytes written. Per-flow state is updated in place: ``f_npk`` (int64,
    packets written so far: IPv4 ID and ICMP sequence), ``f_seq`` (int64, TCP sequence number,
    advanced by each segment's payload) and ``f_bytes`` (int64, wire bytes so far, for the truth).
    Addresses are the 16-byte IPv4-mapped/IPv6 rows of ``f_src``/``f_dst``; ``f_vlan`` is 0 for an
    untagged flow, else the 802.1Q VLAN ID. Checksums: IPv4 header checksum is valid, L4 checksums
    are computed as if the payload (not stored) were all zeros, so they are exact for that payload and
    never the "no checksum" 0 that IPv6 forbids for UDP.
    """
    p = 0
    for i in range(flow_idx.shape[0]):
        f = flow_idx[i]
        w = int(wire[i])
        v6 = f_v6[f] != 0
        proto = int(f_proto[f])
        tagged = f_vlan[f] != 0
        eth = ETH_HDR + (VLAN_TAG if tagged else 0)
        iph = IPV6_HDR if v6 else IPV4_HDR
        l4h = TCP_HDR if proto == PROTO_TCP else UDP_HDR
        cap = eth + iph + l4h
        # frames of the minimum size carry headers only; the rest of them is Ethernet padding
        ip_total = iph + l4h if w - eth <= MIN_FRAME - ETH_HDR else w - eth
        n = f_npk[f]
        f_npk[f] = n + 1
        f_bytes[f] += w

        # record header (little-endian)
        t = ts_ns[i]
        sec = t // 1_000_000_000
        frac = t - sec * 1_000_000_000
        if not nanosecond:
            frac //= 1000
        _put32le(buf, p, sec)
        _put32le(buf, p + 4, frac)
        _put32le(buf, p + 8, cap)
        _put32le(buf, p + 12, w)
        q = p + REC_HDR

        # Ethernet [+ 802.1Q]
        for b in range(6):
            buf[q + b] = _DST_MAC[b]
            buf[q + 6 + b] = _SRC_MAC[b]
        q += 12
        if tagged:
            _put16be(buf, q, 0x8100)
            _put16be(buf, q + 2, int(f_vlan[f]) & 0x0FFF)
            q += 4
        _put16be(buf, q, 0x86DD if v6 else 0x0800)
        q += 2

        # IP
        if v6:
            _put32be(buf, q, 0x60000000 | (f & 0xFFFFF))  # flow label: stable per flow
            _put16be(buf, q + 4, ip_total - IPV6_HDR)
            buf[q + 6] = proto
            buf[q + 7] = 64
            for b in range(16):
                buf[q + 8 + b] = f_src[f, b]
                buf[q + 24 + b] = f_dst[f, b]
        else:
            buf[q] = 0x45
            buf[q + 1] = 0
            _put16be(buf, q + 2, ip_total)
            _put16be(buf, q + 4, (n + f * 40503) & 0xFFFF)
            _put16be(buf, q + 6, 0x4000 if proto == PROTO_TCP else 0)  # DF on TCP, as stacks do
            buf[q + 8] = 64 - (f_src[f, 15] & 0x1F)  # a few hops' worth of spread in the TTL
            buf[q + 9] = proto
            buf[q + 10] = 0
            buf[q + 11] = 0
            for b in range(4):
                buf[q + 12 + b] = f_src[f, 12 + b]
                buf[q + 16 + b] = f_dst[f, 12 + b]
            _put16be(buf, q + 10, _fold(_sum16(buf, q, IPV4_HDR, 0)))
        q += iph

        # L4
        payload = ip_total - iph - l4h
        if proto == PROTO_TCP:
            _put16be(buf, q, int(f_sport[f]))
            _put16be(buf, q + 2, int(f_dport[f]))
            seq = f_seq[f]
            _put32be(buf, q + 4, seq & 0xFFFFFFFF)
            if f_kind[f] == KIND_SYN:
                _put32be(buf, q + 8, 0)
                flags = 0x02
                f_seq[f] = seq + 1
            else:
                _put32be(buf, q + 8, (f * 2654435761 + 12345) & 0xFFFFFFFF)
                flags = 0x18 if payload > 0 else 0x10
                f_seq[f] = seq + payload
            buf[q + 12] = 0x50
            buf[q + 13] = flags
            _put16be(buf, q + 14, 64240)
            _put16be(buf, q + 16, 0)
            _put16be(buf, q + 18, 0)
        elif proto == PROTO_UDP:
            _put16be(buf, q, int(f_sport[f]))
            _put16be(buf, q + 2, int(f_dport[f]))
            _put16be(buf, q + 4, ip_total - iph)
            _put16be(buf, q + 6, 0)
        else:  # ICMP echo request / ICMPv6 echo request
            buf[q] = 128 if v6 else 8
            buf[q + 1] = 0
            _put16be(buf, q + 2, 0)
            _put16be(buf, q + 4, f & 0xFFFF)
            _put16be(buf, q + 6, n & 0xFFFF)
        # L4 checksum over (pseudo-header +) header: exact for the all-zero payload we do not store
        s = _sum16(buf, q, l4h, 0)
        if proto != PROTO_ICMP:
            ip0 = q - iph
            s = _sum16(buf, ip0 + 8, 32, s) if v6 else _sum16(buf, ip0 + 12, 8, s)
            s += proto + (ip_total - iph)
        c = _fold(s)
        if c == 0 and proto == PROTO_UDP:
            c = 0xFFFF  # 0 means "no checksum" in UDP
        _put16be(buf, q + (16 if proto == PROTO_TCP else (6 if proto == PROTO_UDP else 2)), c)
        p = q + l4h
    return p


def write_records_ref(
    ts_ns: np.ndarray,
    flow_idx: np.ndarray,
    wire: np.ndarray,
    f_src: np.ndarray,
    f_dst: np.ndarray,
    f_sport: np.ndarray,
    f_dport: np.ndarray,
    f_proto: np.ndarray,
    f_v6: np.ndarray,
    f_vlan: np.ndarray,
    f_kind: np.ndarray,
    f_npk: np.ndarray,
    f_seq: np.ndarray,
    f_bytes: np.ndarray,
    nanosecond: bool,
) -> bytes:
    """Plain-Python reference of :func:`write_records`: returns the records, updates the same state."""
    out = bytearray()
    for i in range(len(flow_idx)):
        f = int(flow_idx[i])
        w = int(wire[i])
        v6 = bool(f_v6[f])
        proto = int(f_proto[f])
        vid = int(f_vlan[f])
        eth = ETH_HDR + (VLAN_TAG if vid else 0)
        iph = IPV6_HDR if v6 else IPV4_HDR
        l4h = TCP_HDR if proto == PROTO_TCP else UDP_HDR
        ip_total = iph + l4h if w - eth <= MIN_FRAME - ETH_HDR else w - eth
        n = int(f_npk[f])
        f_npk[f] = n + 1
        f_bytes[f] += w
        sec, frac = divmod(int(ts_ns[i]), 1_000_000_000)
        if not nanosecond:
            frac //= 1000
        out += struct.pack("<IIII", sec, frac, eth + iph + l4h, w)
        out += bytes(_DST_MAC) + bytes(_SRC_MAC)
        if vid:
            out += struct.pack(">HH", 0x8100, vid & 0x0FFF)
        out += struct.pack(">H", 0x86DD if v6 else 0x0800)
        src = bytes(f_src[f])
        dst = bytes(f_dst[f])
        if v6:
            out += (
                struct.pack(">IHBB", 0x60000000 | (f & 0xFFFFF), ip_total - IPV6_HDR, proto, 64) + src + dst
            )
        else:
            hdr = bytearray(
                struct.pack(
                    ">BBHHHBBH4s4s",
                    0x45,
                    0,
                    ip_total,
                    (n + f * 40503) & 0xFFFF,
                    0x4000 if proto == PROTO_TCP else 0,
                    64 - (src[15] & 0x1F),
                    proto,
                    0,
                    src[12:],
                    dst[12:],
                )
            )
            hdr[10:12] = struct.pack(">H", _fold_ref(sum(struct.unpack(">10H", hdr))))
            out += hdr
        payload = ip_total - iph - l4h
        l4_at = len(out)
        if proto == PROTO_TCP:
            seq = int(f_seq[f])
            if int(f_kind[f]) == KIND_SYN:
                ack, flags = 0, 0x02
                f_seq[f] = seq + 1
            else:
                ack, flags = (f * 2654435761 + 12345) & 0xFFFFFFFF, (0x18 if payload > 0 else 0x10)
                f_seq[f] = seq + payload
            out += struct.pack(
                ">HHIIBBHHH",
                int(f_sport[f]),
                int(f_dport[f]),
                seq & 0xFFFFFFFF,
                ack,
                0x50,
                flags,
                64240,
                0,
                0,
            )
        elif proto == PROTO_UDP:
            out += struct.pack(">HHHH", int(f_sport[f]), int(f_dport[f]), ip_total - iph, 0)
        else:
            out += struct.pack(">BBHHH", 128 if v6 else 8, 0, 0, f & 0xFFFF, n & 0xFFFF)
        words = list(struct.unpack(f">{l4h // 2}H", out[l4_at:]))
        if proto != PROTO_ICMP:
            pseudo = (src + dst) if v6 else (src[12:] + dst[12:])
            words += [*struct.unpack(f">{len(pseudo) // 2}H", pseudo), proto, ip_total - iph]
        c = _fold_ref(sum(words))
        if c == 0 and proto == PROTO_UDP:
            c = 0xFFFF
        at = l4_at + {PROTO_TCP: 16, PROTO_UDP: 6}.get(proto, 2)
        out[at : at + 2] = struct.pack(">H", c)
    return bytes(out)


def _fold_ref(s: int) -> int:
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
