"""Plain-Python reference of the packet decoder, written for clarity, not speed.

It states the decoding rules once more, independently of the numba kernel in
:mod:`netspectra.capture.decode` (which is written for speed over one shared buffer); tests run
both on the same records and require identical results. Use it for single packets in tests and
debugging, never on a hot path.
"""

from __future__ import annotations

import struct

from netspectra.capture import linktypes as lt
from netspectra.capture import status as st

#: ``(src16, dst16, sport, dport, proto)``: the flow-key part of a decoded packet.
FlowKey = tuple[bytes, bytes, int, int, int]
#: ``(status, aux, key)``; ``key`` is ``None`` exactly when ``status >= FIRST_SKIPPED``.
Decoded = tuple[int, int, FlowKey | None]

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
    if linktype == lt.LINKTYPE_ETHERNET:
        if len(data) < lt.ETHERNET_HEADER_LEN:
            return st.L2_TRUNCATED, linktype, None
        (ethertype,) = struct.unpack_from("!H", data, 12)
        return _ethertype(data, lt.ETHERNET_HEADER_LEN, ethertype, linktype)
    if linktype == lt.LINKTYPE_LINUX_SLL:
        if len(data) < lt.SLL_HEADER_LEN:
            return st.L2_TRUNCATED, linktype, None
        (proto,) = struct.unpack_from("!H", data, 14)
        return _ethertype(data, lt.SLL_HEADER_LEN, proto, linktype)
    if linktype == lt.LINKTYPE_LINUX_SLL2:
        if len(data) < lt.SLL2_HEADER_LEN:
            return st.L2_TRUNCATED, linktype, None
        (proto,) = struct.unpack_from("!H", data, 0)
        return _ethertype(data, lt.SLL2_HEADER_LEN, proto, linktype)
    if linktype in (lt.LINKTYPE_RAW, lt.LINKTYPE_RAW_DLT12, lt.LINKTYPE_RAW_DLT14):
        if not data:
            return st.L3_TRUNCATED, 0, None  # not even a version nibble
        version = data[0] >> 4
        if version == 4:
            return _ipv4(data, 0)
        if version == 6:
            return _ipv6(data, 0)
        return st.IP_MALFORMED, data[0], None
    if linktype == lt.LINKTYPE_IPV4:
        return _ipv4(data, 0)
    if linktype == lt.LINKTYPE_IPV6:
        return _ipv6(data, 0)
    if linktype in (lt.LINKTYPE_NULL, lt.LINKTYPE_LOOP):
        if len(data) < lt.NULL_HEADER_LEN:
            return st.L2_TRUNCATED, linktype, None
        (af_be,) = struct.unpack_from(">I", data, 0)
        (af_le,) = struct.unpack_from("<I", data, 0)
        # LOOP is network byte order; NULL is in the capturing host's order, so try both.
        candidates = [af_be] if linktype == lt.LINKTYPE_LOOP else [af_le, af_be]
        for af in candidates:
            if af == lt.AF_INET:
                return _ipv4(data, lt.NULL_HEADER_LEN)
            if af in lt.AF_INET6_ALL:
                return _ipv6(data, lt.NULL_HEADER_LEN)
        return st.NON_IP, min(min(candidates), 0xFFFF), None
    return st.LINKTYPE_UNSUPPORTED, linktype & 0xFFFF, None


def _ethertype(data: bytes, pos: int, ethertype: int, linktype: int) -> Decoded:
    """Follow the ethertype chain from ``pos`` (VLAN tags, MPLS, PPPoE) to the IP header."""
    while True:
        if ethertype in _VLAN_TYPES:
            if len(data) < pos + lt.VLAN_TAG_LEN:
                return st.L2_TRUNCATED, linktype, None
            (ethertype,) = struct.unpack_from("!H", data, pos + 2)
            pos += lt.VLAN_TAG_LEN
            continue
        if ethertype in _MPLS_TYPES:
            while True:
                if len(data) < pos + lt.MPLS_LABEL_LEN:
                    return st.L2_TRUNCATED, linktype, None
                bottom = data[pos + 2] & 1
                pos += lt.MPLS_LABEL_LEN
                if bottom:
                    break
            if len(data) <= pos:
                return st.L2_TRUNCATED, linktype, None  # no byte tells what the label stack carries
            version = data[pos] >> 4
            if version == 4:
                return _ipv4(data, pos)
            if version == 6:
                return _ipv6(data, pos)
            return st.NON_IP, ethertype, None
        if ethertype == lt.ETHERTYPE_PPPOE_SESSION:
            if len(data) < pos + lt.PPPOE_HEADER_LEN + 2:
                return st.L2_TRUNCATED, linktype, None
            (ppp,) = struct.unpack_from("!H", data, pos + lt.PPPOE_HEADER_LEN)
            pos += lt.PPPOE_HEADER_LEN + 2
            if ppp == lt.PPP_IPV4:
                return _ipv4(data, pos)
            if ppp == lt.PPP_IPV6:
                return _ipv6(data, pos)
            return st.NON_IP, ppp, None
        if ethertype == lt.ETHERTYPE_IPV4:
            return _ipv4(data, pos)
        if ethertype == lt.ETHERTYPE_IPV6:
            return _ipv6(data, pos)
        if ethertype < lt.ETHERTYPE_MIN:
            return st.NON_IP, 0, None
        return st.NON_IP, ethertype, None


def _ports(data: bytes, pos: int) -> tuple[int, int] | None:
    if len(data) < pos + 4:
        return None
    sport, dport = struct.unpack_from("!HH", data, pos)
    return sport, dport


def _ipv4(data: bytes, pos: int) -> Decoded:
    ip = data[pos:]
    if not ip:
        return st.L3_TRUNCATED, 4, None
    version, ihl = ip[0] >> 4, ip[0] & 0x0F
    if version != 4 or ihl < 5:
        return st.IP_MALFORMED, ip[0], None
    if len(ip) < lt.IPV4_MIN_HEADER_LEN:
        return st.L3_TRUNCATED, 4, None
    (total_len,) = struct.unpack_from("!H", ip, 2)
    # 0 is what TSO / BIG TCP frames carry (fine); any other value below the header length is
    # impossible (tshark: "Bogus IP length", no addresses).
    if 0 < total_len < ihl * 4:
        return st.IP_MALFORMED, ip[0], None
    src = _V4_MAPPED + ip[12:16]
    dst = _V4_MAPPED + ip[16:20]
    proto = ip[9]
    (flags_frag,) = struct.unpack_from("!H", ip, 6)
    if flags_frag & 0x1FFF:
        # A non-first fragment: the fixed header holds the whole key; no ports by definition.
        return st.OK, 0, (src, dst, 0, 0, proto)
    if ihl * 4 > len(ip):
        return st.OK_L3_TRUNCATED, 0, (src, dst, 0, 0, proto)
    if proto not in lt.PORT_PROTOCOLS:
        return st.OK, 0, (src, dst, 0, 0, proto)
    ports = _ports(ip, ihl * 4)
    if ports is None:
        return st.OK_L4_TRUNCATED, 0, (src, dst, 0, 0, proto)
    return st.OK, 0, (src, dst, ports[0], ports[1], proto)


def _ipv6(data: bytes, pos: int) -> Decoded:
    ip = data[pos:]
    if not ip:
        return st.L3_TRUNCATED, 6, None
    if ip[0] >> 4 != 6:
        return st.IP_MALFORMED, ip[0], None
    if len(ip) < lt.IPV6_HEADER_LEN:
        return st.L3_TRUNCATED, 6, None
    src, dst = ip[8:24], ip[24:40]
    next_header = ip[6]
    off = lt.IPV6_HEADER_LEN
    walked = 0
    while next_header in (*_V6_EXT_8OCTET, lt.IPPROTO_FRAGMENT, lt.IPPROTO_AH):
        if walked == lt.IPV6_MAX_EXT_HEADERS:
            return st.OK_L3_TRUNCATED, 0, (src, dst, 0, 0, next_header)
        walked += 1
        if next_header == lt.IPPROTO_FRAGMENT:
            if len(ip) < off + 4:
                return st.OK_L3_TRUNCATED, 0, (src, dst, 0, 0, next_header)
            (frag,) = struct.unpack_from("!H", ip, off + 2)
            next_header = ip[off]
            if frag >> 3:  # offset in 8-octet units, upper 13 bits
                return st.OK, 0, (src, dst, 0, 0, next_header)
            off += 8
        else:
            if len(ip) < off + 2:
                return st.OK_L3_TRUNCATED, 0, (src, dst, 0, 0, next_header)
            unit_len = ip[off + 1]
            hdr_len = (unit_len + 2) * 4 if next_header == lt.IPPROTO_AH else (unit_len + 1) * 8
            next_header = ip[off]
            off += hdr_len
    if next_header not in lt.PORT_PROTOCOLS:
        return st.OK, 0, (src, dst, 0, 0, next_header)
    ports = _ports(ip, off)
    if ports is None:
        return st.OK_L4_TRUNCATED, 0, (src, dst, 0, 0, next_header)
    return st.OK, 0, (src, dst, ports[0], ports[1], next_header)
