"""Plain-Python reference of the packet decoder, written for clarity, not speed.

It states the decoding rules once more, independently of the numba kernel in
:mod:`netspectra.capture.decode` (which is written for speed over one shared buffer); tests run
both on the same records and require identical results. Use it for single packets in tests and
debugging, never on a hot path.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from netspectra.capture import linktypes as lt
from netspectra.capture import status as st

#: ``(src16, dst16, sport, dport, proto)``: the flow-key part of a decoded packet.
FlowKey = tuple[bytes, bytes, int, int, int]
#: ``(status, aux, key)``; ``key`` is ``None`` exactly when ``status >= FIRST_SKIPPED``.
Decoded = tuple[int, int, FlowKey | None]


class Extras(NamedTuple):
    """The decoder's optional columns of one in-flow packet (see :mod:`netspectra.batch`)."""

    tcp_flags: int
    vlan_id: int
    icmp_type_code: int
    ip_length: int


class _Out(NamedTuple):
    """What the walk found: the outcome, and where the IP and upper-layer headers start."""

    status: int
    aux: int
    key: FlowKey | None = None
    ip: int = -1  # offset of the IP header in the frame
    l4: int | None = None  # offset of the upper-layer header, when it is known (first fragment)
    vlan: int = 0  # VLAN id of the outermost tag


_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"
_VLAN_TYPES = (lt.ETHERTYPE_VLAN, lt.ETHERTYPE_QINQ, lt.ETHERTYPE_QINQ_OLD)
_MPLS_TYPES = (lt.ETHERTYPE_MPLS_UC, lt.ETHERTYPE_MPLS_MC)
_V6_EXT_8OCTET = (lt.IPPROTO_HOPOPTS, lt.IPPROTO_ROUTING, lt.IPPROTO_DSTOPTS)


def decode_one(data: bytes, linktype: int, wirelen: int) -> Decoded:
    """Decode one captured frame (``data`` is the captured bytes, ``len(data)`` the caplen).

    Returns ``(status, aux, key)`` with the codes of :mod:`netspectra.capture.status`. ``wirelen``
    only matters above :data:`~netspectra.capture.status.MAX_WIRE_LENGTH`: such a record is
    damaged (``IMPLAUSIBLE_LENGTH``) and not decoded; otherwise the key never depends on it (the
    batch's length column is the wire length, copied verbatim).
    """
    if wirelen > st.MAX_WIRE_LENGTH:
        return st.IMPLAUSIBLE_LENGTH, 0, None
    out = _decode(data, linktype)
    return out.status, out.aux, out.key


def decode_one_full(
    data: bytes, linktype: int, wirelen: int, stripped_vlan: int = -1
) -> tuple[int, int, FlowKey | None, Extras | None]:
    """:func:`decode_one` plus the optional columns of an in-flow packet (``None`` otherwise).

    ``stripped_vlan`` is ``tpid << 16 | tci`` of a tag the capture layer took off the frame (-1: none);
    such a tag is the outermost one.
    """
    if wirelen > st.MAX_WIRE_LENGTH:
        return st.IMPLAUSIBLE_LENGTH, 0, None, None
    out = _decode(data, linktype)
    if out.key is None:
        return out.status, out.aux, None, None
    proto = out.key[4]
    flags = icmp = 0
    if out.l4 is not None:
        if proto == lt.IPPROTO_TCP and len(data) >= out.l4 + 14:
            flags = data[out.l4 + 13]
        elif proto in (1, 58) and len(data) >= out.l4 + 2:  # ICMP, ICMPv6
            (icmp,) = struct.unpack_from("!H", data, out.l4)
    ip = data[out.ip :]
    if ip[0] >> 4 == 4:
        (total,) = struct.unpack_from("!H", ip, 2)
    else:
        (payload,) = struct.unpack_from("!H", ip, 4)
        total = lt.IPV6_HEADER_LEN + payload if payload else 0
    if total == 0:  # TSO / BIG TCP / jumbogram: what the frame holds after the link layer
        total = max(0, wirelen - out.ip)
    vlan = stripped_vlan & 0xFFF if stripped_vlan >= 0 else out.vlan
    return out.status, out.aux, out.key, Extras(flags, vlan, icmp, total)


def _decode(data: bytes, linktype: int) -> _Out:
    if linktype == lt.LINKTYPE_ETHERNET:
        if len(data) < lt.ETHERNET_HEADER_LEN:
            return _Out(st.L2_TRUNCATED, linktype)
        (ethertype,) = struct.unpack_from("!H", data, 12)
        return _ethertype(data, lt.ETHERNET_HEADER_LEN, ethertype, linktype)
    if linktype == lt.LINKTYPE_LINUX_SLL:
        if len(data) < lt.SLL_HEADER_LEN:
            return _Out(st.L2_TRUNCATED, linktype)
        (proto,) = struct.unpack_from("!H", data, 14)
        return _ethertype(data, lt.SLL_HEADER_LEN, proto, linktype)
    if linktype == lt.LINKTYPE_LINUX_SLL2:
        if len(data) < lt.SLL2_HEADER_LEN:
            return _Out(st.L2_TRUNCATED, linktype)
        (proto,) = struct.unpack_from("!H", data, 0)
        return _ethertype(data, lt.SLL2_HEADER_LEN, proto, linktype)
    if linktype in (lt.LINKTYPE_RAW, lt.LINKTYPE_RAW_DLT12, lt.LINKTYPE_RAW_DLT14):
        if not data:
            return _Out(st.L3_TRUNCATED, 0)  # not even a version nibble
        version = data[0] >> 4
        if version == 4:
            return _ipv4(data, 0)
        if version == 6:
            return _ipv6(data, 0)
        return _Out(st.IP_MALFORMED, data[0])
    if linktype == lt.LINKTYPE_IPV4:
        return _ipv4(data, 0)
    if linktype == lt.LINKTYPE_IPV6:
        return _ipv6(data, 0)
    if linktype in (lt.LINKTYPE_NULL, lt.LINKTYPE_LOOP):
        if len(data) < lt.NULL_HEADER_LEN:
            return _Out(st.L2_TRUNCATED, linktype)
        (af_be,) = struct.unpack_from(">I", data, 0)
        (af_le,) = struct.unpack_from("<I", data, 0)
        # LOOP is network byte order; NULL is in the capturing host's order, so try both.
        candidates = [af_be] if linktype == lt.LINKTYPE_LOOP else [af_le, af_be]
        for af in candidates:
            if af == lt.AF_INET:
                return _ipv4(data, lt.NULL_HEADER_LEN)
            if af in lt.AF_INET6_ALL:
                return _ipv6(data, lt.NULL_HEADER_LEN)
        return _Out(st.NON_IP, min(min(candidates), 0xFFFF))
    return _Out(st.LINKTYPE_UNSUPPORTED, linktype & 0xFFFF)


def _ethertype(data: bytes, pos: int, ethertype: int, linktype: int) -> _Out:
    """Follow the ethertype chain from ``pos`` (VLAN tags, MPLS, PPPoE) to the IP header."""
    vlan = None  # the id of the first (outermost) tag
    while True:
        if ethertype in _VLAN_TYPES:
            if len(data) < pos + lt.VLAN_TAG_LEN:
                return _Out(st.L2_TRUNCATED, linktype)
            (tci, ethertype) = struct.unpack_from("!HH", data, pos)
            if vlan is None:
                vlan = tci & 0xFFF
            pos += lt.VLAN_TAG_LEN
            continue
        out = _after_tags(data, pos, ethertype, linktype)
        return out._replace(vlan=vlan or 0)


def _after_tags(data: bytes, pos: int, ethertype: int, linktype: int) -> _Out:
    """The rest of the chain once the VLAN tags are behind: MPLS, PPPoE, IP."""
    if ethertype in _MPLS_TYPES:
        while True:
            if len(data) < pos + lt.MPLS_LABEL_LEN:
                return _Out(st.L2_TRUNCATED, linktype)
            bottom = data[pos + 2] & 1
            pos += lt.MPLS_LABEL_LEN
            if bottom:
                break
        if len(data) <= pos:
            return _Out(st.L2_TRUNCATED, linktype)  # no byte tells what the label stack carries
        version = data[pos] >> 4
        if version == 4:
            return _ipv4(data, pos)
        if version == 6:
            return _ipv6(data, pos)
        return _Out(st.NON_IP, ethertype)
    if ethertype == lt.ETHERTYPE_PPPOE_SESSION:
        if len(data) < pos + lt.PPPOE_HEADER_LEN + 2:
            return _Out(st.L2_TRUNCATED, linktype)
        (ppp,) = struct.unpack_from("!H", data, pos + lt.PPPOE_HEADER_LEN)
        pos += lt.PPPOE_HEADER_LEN + 2
        if ppp == lt.PPP_IPV4:
            return _ipv4(data, pos)
        if ppp == lt.PPP_IPV6:
            return _ipv6(data, pos)
        return _Out(st.NON_IP, ppp)
    if ethertype == lt.ETHERTYPE_IPV4:
        return _ipv4(data, pos)
    if ethertype == lt.ETHERTYPE_IPV6:
        return _ipv6(data, pos)
    if ethertype < lt.ETHERTYPE_MIN:
        return _Out(st.NON_IP, 0)
    return _Out(st.NON_IP, ethertype)


def _ports(data: bytes, pos: int) -> tuple[int, int] | None:
    if len(data) < pos + 4:
        return None
    sport, dport = struct.unpack_from("!HH", data, pos)
    return sport, dport


def _ipv4(data: bytes, pos: int) -> _Out:
    ip = data[pos:]
    if not ip:
        return _Out(st.L3_TRUNCATED, 4)
    version, ihl = ip[0] >> 4, ip[0] & 0x0F
    if version != 4 or ihl < 5:
        return _Out(st.IP_MALFORMED, ip[0])
    if len(ip) < lt.IPV4_MIN_HEADER_LEN:
        return _Out(st.L3_TRUNCATED, 4)
    (total_len,) = struct.unpack_from("!H", ip, 2)
    # 0 is what TSO / BIG TCP frames carry (fine); any other value below the header length is
    # impossible (tshark: "Bogus IP length", no addresses).
    if 0 < total_len < ihl * 4:
        return _Out(st.IP_MALFORMED, ip[0])
    src = _V4_MAPPED + ip[12:16]
    dst = _V4_MAPPED + ip[16:20]
    proto = ip[9]
    (flags_frag,) = struct.unpack_from("!H", ip, 6)
    if flags_frag & 0x1FFF:
        # A non-first fragment: the fixed header holds the whole key; no ports by definition.
        return _Out(st.OK, 0, (src, dst, 0, 0, proto), pos)
    if ihl * 4 > len(ip):
        return _Out(st.OK_L3_TRUNCATED, 0, (src, dst, 0, 0, proto), pos)
    l4 = pos + ihl * 4
    if proto not in lt.PORT_PROTOCOLS:
        return _Out(st.OK, 0, (src, dst, 0, 0, proto), pos, l4)
    ports = _ports(ip, ihl * 4)
    if ports is None:
        return _Out(st.OK_L4_TRUNCATED, 0, (src, dst, 0, 0, proto), pos, l4)
    return _Out(st.OK, 0, (src, dst, ports[0], ports[1], proto), pos, l4)


def _ipv6(data: bytes, pos: int) -> _Out:
    ip = data[pos:]
    if not ip:
        return _Out(st.L3_TRUNCATED, 6)
    if ip[0] >> 4 != 6:
        return _Out(st.IP_MALFORMED, ip[0])
    if len(ip) < lt.IPV6_HEADER_LEN:
        return _Out(st.L3_TRUNCATED, 6)
    src, dst = ip[8:24], ip[24:40]
    next_header = ip[6]
    off = lt.IPV6_HEADER_LEN
    walked = 0
    while next_header in (*_V6_EXT_8OCTET, lt.IPPROTO_FRAGMENT, lt.IPPROTO_AH):
        if walked == lt.IPV6_MAX_EXT_HEADERS:
            return _Out(st.OK_L3_TRUNCATED, 0, (src, dst, 0, 0, next_header), pos)
        walked += 1
        if next_header == lt.IPPROTO_FRAGMENT:
            if len(ip) < off + 4:
                return _Out(st.OK_L3_TRUNCATED, 0, (src, dst, 0, 0, next_header), pos)
            (frag,) = struct.unpack_from("!H", ip, off + 2)
            next_header = ip[off]
            if frag >> 3:  # offset in 8-octet units, upper 13 bits
                return _Out(st.OK, 0, (src, dst, 0, 0, next_header), pos)
            off += 8
        else:
            if len(ip) < off + 2:
                return _Out(st.OK_L3_TRUNCATED, 0, (src, dst, 0, 0, next_header), pos)
            unit_len = ip[off + 1]
            hdr_len = (unit_len + 2) * 4 if next_header == lt.IPPROTO_AH else (unit_len + 1) * 8
            next_header = ip[off]
            off += hdr_len
    l4 = pos + off
    if next_header not in lt.PORT_PROTOCOLS:
        return _Out(st.OK, 0, (src, dst, 0, 0, next_header), pos, l4)
    ports = _ports(ip, off)
    if ports is None:
        return _Out(st.OK_L4_TRUNCATED, 0, (src, dst, 0, 0, next_header), pos, l4)
    return _Out(st.OK, 0, (src, dst, ports[0], ports[1], next_header), pos, l4)
