"""The packet decoder kernel against hand-built frames, real captures and its plain-Python reference."""

from __future__ import annotations

import gzip
import random
import struct
from pathlib import Path

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.capture import decode as decode_mod
from netspectra.capture import linktypes as lt
from netspectra.capture import status as st
from netspectra.capture.decode import decode_arrays, decode_packet_bytes, decode_records
from netspectra.capture.decode_ref import decode_one, decode_one_full

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "data" / "captures"
if not CAPTURES.is_dir():
    CAPTURES = Path("/work/shared/data/captures")

MAPPED = b"\x00" * 10 + b"\xff\xff"
SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([192, 168, 7, 9])
SRC6 = bytes.fromhex("20010db8000000000000000000000001")
DST6 = bytes.fromhex("fe800000000000000211223344556677")


def test_kernel_literals_match_named_constants() -> None:
    """The kernel spells the codes as literals (numba's cache would keep stale imported values)."""
    assert (decode_mod._OK, decode_mod._OK_L4, decode_mod._OK_L3) == (
        st.OK,
        st.OK_L4_TRUNCATED,
        st.OK_L3_TRUNCATED,
    )
    assert (decode_mod._FIRST_SKIPPED, decode_mod._NON_IP, decode_mod._UNSUPPORTED) == (
        st.FIRST_SKIPPED,
        st.NON_IP,
        st.LINKTYPE_UNSUPPORTED,
    )
    assert (decode_mod._L2_TRUNC, decode_mod._L3_TRUNC, decode_mod._MALFORMED) == (
        st.L2_TRUNCATED,
        st.L3_TRUNCATED,
        st.IP_MALFORMED,
    )
    assert (decode_mod._IMPLAUSIBLE, decode_mod._MAX_WIRE) == (st.IMPLAUSIBLE_LENGTH, st.MAX_WIRE_LENGTH)
    assert decode_mod._MAX_EXT == lt.IPV6_MAX_EXT_HEADERS


# --- frame builders ----------------------------------------------------------------------------


def l4(sport: int = 1234, dport: int = 80, extra: int = 16) -> bytes:
    return struct.pack("!HH", sport, dport) + b"\xaa" * extra


def ipv4(
    proto: int, payload: bytes, *, options: bytes = b"", frag: int = 0, ver_ihl: int | None = None
) -> bytes:
    ihl = 5 + len(options) // 4
    first = (4 << 4 | ihl) if ver_ihl is None else ver_ihl
    hdr = struct.pack(
        "!BBHHHBBH4s4s", first, 0, 20 + len(options) + len(payload), 7, frag, 64, proto, 0, SRC4, DST4
    )
    return hdr + options + payload


def with_total_len(packet: bytes, total_len: int) -> bytes:
    return packet[:2] + struct.pack("!H", total_len) + packet[4:]


def ipv6(next_header: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, 64, SRC6, DST6) + payload


def ext8(next_header: int, units: int = 0) -> bytes:
    """A Hop-by-Hop / Routing / Destination Options header of (units + 1) * 8 bytes."""
    return bytes([next_header, units]) + b"\x01" * (6 + 8 * units)


def ext_frag(next_header: int, offset_units: int, more: bool = False) -> bytes:
    return struct.pack("!BBHI", next_header, 0, offset_units << 3 | int(more), 0xDEAD)


def ext_ah(next_header: int, payload_len: int = 4) -> bytes:
    """An AH header: (payload_len + 2) * 4 bytes."""
    return bytes([next_header, payload_len]) + b"\x00" * ((payload_len + 2) * 4 - 2)


def eth(ethertype: int, payload: bytes) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + payload


def vlan(tpid_inner: int, payload: bytes, vid: int = 42) -> bytes:
    """A VLAN tag body (TCI + inner ethertype) followed by ``payload``."""
    return struct.pack("!HH", vid, tpid_inner) + payload


def mpls(labels: int, payload: bytes) -> bytes:
    out = b""
    for k in range(labels):
        bottom = 1 if k == labels - 1 else 0
        out += struct.pack("!I", (100 + k) << 12 | bottom << 8 | 64)
    return out + payload


def pppoe(ppp_proto: int, payload: bytes) -> bytes:
    return struct.pack("!BBHHH", 0x11, 0, 0x1234, len(payload) + 2, ppp_proto) + payload


def sll(proto: int, payload: bytes) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, proto) + payload


def sll2(proto: int, payload: bytes) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, 3, 1, 0, 6, b"\x02" * 8) + payload


TCP4 = ipv4(6, l4())
UDP6 = ipv6(17, l4(5353, 53))

V4_KEY_TCP = (MAPPED + SRC4, MAPPED + DST4, 1234, 80, 6)
V6_KEY_UDP = (SRC6, DST6, 5353, 53, 17)


def v4key(sport: int, dport: int, proto: int) -> tuple[bytes, bytes, int, int, int]:
    return (MAPPED + SRC4, MAPPED + DST4, sport, dport, proto)


def v6key(sport: int, dport: int, proto: int) -> tuple[bytes, bytes, int, int, int]:
    return (SRC6, DST6, sport, dport, proto)


CASES: list[tuple[str, bytes, int, tuple]] = [
    # link types
    ("eth-ipv4-tcp", eth(0x0800, TCP4), 1, (st.OK, 0, V4_KEY_TCP)),
    ("eth-ipv6-udp", eth(0x86DD, UDP6), 1, (st.OK, 0, V6_KEY_UDP)),
    ("sll-ipv4", sll(0x0800, TCP4), 113, (st.OK, 0, V4_KEY_TCP)),
    ("sll-vlan-ipv6", sll(0x8100, vlan(0x86DD, UDP6)), 113, (st.OK, 0, V6_KEY_UDP)),
    ("sll-arp", sll(0x0806, b"\x00" * 28), 113, (st.NON_IP, 0x0806, None)),
    ("sll-llc", sll(0x0004, b"\x00" * 28), 113, (st.NON_IP, 0, None)),
    ("sll2-ipv6", sll2(0x86DD, UDP6), 276, (st.OK, 0, V6_KEY_UDP)),
    ("sll2-pppoe", sll2(0x8864, pppoe(0x0021, TCP4)), 276, (st.OK, 0, V4_KEY_TCP)),
    ("raw101-v4", TCP4, 101, (st.OK, 0, V4_KEY_TCP)),
    ("raw101-v6", UDP6, 101, (st.OK, 0, V6_KEY_UDP)),
    ("raw12-v4", TCP4, 12, (st.OK, 0, V4_KEY_TCP)),
    ("raw14-v6", UDP6, 14, (st.OK, 0, V6_KEY_UDP)),
    ("raw101-bad-nibble", b"\x55" + TCP4[1:], 101, (st.IP_MALFORMED, 0x55, None)),
    ("raw101-empty", b"", 101, (st.L3_TRUNCATED, 0, None)),
    ("ipv4-linktype", TCP4, 228, (st.OK, 0, V4_KEY_TCP)),
    ("ipv4-linktype-got-v6", UDP6, 228, (st.IP_MALFORMED, 0x60, None)),
    ("ipv6-linktype", UDP6, 229, (st.OK, 0, V6_KEY_UDP)),
    ("ipv6-linktype-got-v4", TCP4, 229, (st.IP_MALFORMED, 0x45, None)),
    ("null-le-inet", struct.pack("<I", 2) + TCP4, 0, (st.OK, 0, V4_KEY_TCP)),
    ("null-be-inet", struct.pack(">I", 2) + TCP4, 0, (st.OK, 0, V4_KEY_TCP)),
    *(
        (f"null-{order}-inet6-{af}", struct.pack(f"{order}I", af) + UDP6, 0, (st.OK, 0, V6_KEY_UDP))
        for af in (10, 24, 28, 30)
        for order in ("<", ">")
    ),
    ("null-le-other", struct.pack("<I", 7) + TCP4, 0, (st.NON_IP, 7, None)),
    ("null-be-other", struct.pack(">I", 7) + TCP4, 0, (st.NON_IP, 7, None)),
    ("loop-inet", struct.pack(">I", 2) + TCP4, 108, (st.OK, 0, V4_KEY_TCP)),
    ("loop-inet6", struct.pack(">I", 24) + UDP6, 108, (st.OK, 0, V6_KEY_UDP)),
    ("loop-le-is-not-inet", struct.pack("<I", 2) + TCP4, 108, (st.NON_IP, 0xFFFF, None)),
    ("unsupported-radiotap", b"\x00" * 64, 127, (st.LINKTYPE_UNSUPPORTED, 127, None)),
    ("unsupported-dsa", eth(0x0800, TCP4), 284, (st.LINKTYPE_UNSUPPORTED, 284, None)),
    ("unsupported-empty", b"", 105, (st.LINKTYPE_UNSUPPORTED, 105, None)),
    # ethertype chain
    ("eth-arp", eth(0x0806, b"\x00" * 28), 1, (st.NON_IP, 0x0806, None)),
    ("eth-lldp", eth(0x88CC, b"\x00" * 28), 1, (st.NON_IP, 0x88CC, None)),
    ("eth-802.3-llc", eth(0x0026, b"\x42\x42\x03" + b"\x00" * 35), 1, (st.NON_IP, 0, None)),
    ("vlan", eth(0x8100, vlan(0x0800, TCP4)), 1, (st.OK, 0, V4_KEY_TCP)),
    ("qinq-88a8", eth(0x88A8, vlan(0x8100, vlan(0x0800, TCP4))), 1, (st.OK, 0, V4_KEY_TCP)),
    ("qinq-9100", eth(0x9100, vlan(0x8100, vlan(0x86DD, UDP6))), 1, (st.OK, 0, V6_KEY_UDP)),
    (
        "vlan-x5",
        eth(0x8100, vlan(0x8100, vlan(0x88A8, vlan(0x9100, vlan(0x8100, vlan(0x0800, TCP4)))))),
        1,
        (st.OK, 0, V4_KEY_TCP),
    ),
    ("vlan-arp", eth(0x8100, vlan(0x0806, b"\x00" * 28)), 1, (st.NON_IP, 0x0806, None)),
    ("mpls1-v4", eth(0x8847, mpls(1, TCP4)), 1, (st.OK, 0, V4_KEY_TCP)),
    ("mpls3-v6", eth(0x8848, mpls(3, UDP6)), 1, (st.OK, 0, V6_KEY_UDP)),
    ("vlan-mpls2-v4", eth(0x8100, vlan(0x8847, mpls(2, TCP4))), 1, (st.OK, 0, V4_KEY_TCP)),
    ("mpls-ethernet-pw", eth(0x8847, mpls(2, b"\x00" * 4 + eth(0x0800, TCP4))), 1, (st.NON_IP, 0x8847, None)),
    ("mpls-mc-other", eth(0x8848, mpls(1, b"\x10" * 40)), 1, (st.NON_IP, 0x8848, None)),
    ("mpls-empty-payload", eth(0x8847, mpls(2, b"")), 1, (st.L2_TRUNCATED, 1, None)),
    ("pppoe-v4", eth(0x8864, pppoe(0x0021, TCP4)), 1, (st.OK, 0, V4_KEY_TCP)),
    ("pppoe-v6", eth(0x8864, pppoe(0x0057, UDP6)), 1, (st.OK, 0, V6_KEY_UDP)),
    ("pppoe-lcp", eth(0x8864, pppoe(0xC021, b"\x01" * 10)), 1, (st.NON_IP, 0xC021, None)),
    (
        "qinq-pppoe-v4",
        eth(0x88A8, vlan(0x8100, vlan(0x8864, pppoe(0x0021, TCP4)))),
        1,
        (st.OK, 0, V4_KEY_TCP),
    ),
    ("pppoe-discovery", eth(0x8863, b"\x11\x09" + b"\x00" * 20), 1, (st.NON_IP, 0x8863, None)),
    # IPv4
    ("v4-udp", eth(0x0800, ipv4(17, l4(53, 5353))), 1, (st.OK, 0, v4key(53, 5353, 17))),
    ("v4-sctp", eth(0x0800, ipv4(132, l4(36412, 2905))), 1, (st.OK, 0, v4key(36412, 2905, 132))),
    ("v4-icmp", eth(0x0800, ipv4(1, b"\x08\x00\x12\x34" + b"\x00" * 8)), 1, (st.OK, 0, v4key(0, 0, 1))),
    (
        "v4-gre-not-decapsulated",
        eth(0x0800, ipv4(47, b"\x00\x00\x08\x00" + TCP4)),
        1,
        (st.OK, 0, v4key(0, 0, 47)),
    ),
    ("v4-ipip-not-decapsulated", eth(0x0800, ipv4(4, TCP4)), 1, (st.OK, 0, v4key(0, 0, 4))),
    ("6in4-not-decapsulated", eth(0x0800, ipv4(41, UDP6)), 1, (st.OK, 0, v4key(0, 0, 41))),
    ("v4-options", eth(0x0800, ipv4(6, l4(), options=b"\x01" * 12)), 1, (st.OK, 0, V4_KEY_TCP)),
    ("v4-max-options", eth(0x0800, ipv4(6, l4(), options=b"\x01" * 40)), 1, (st.OK, 0, V4_KEY_TCP)),
    ("v4-first-frag-mf", eth(0x0800, ipv4(17, l4(53, 99), frag=0x2000)), 1, (st.OK, 0, v4key(53, 99, 17))),
    ("v4-df", eth(0x0800, ipv4(17, l4(53, 99), frag=0x4000)), 1, (st.OK, 0, v4key(53, 99, 17))),
    (
        "v4-nonfirst-frag",
        eth(0x0800, ipv4(17, l4(53, 99), frag=0x2000 | 185)),
        1,
        (st.OK, 0, v4key(0, 0, 17)),
    ),
    ("v4-last-frag", eth(0x0800, ipv4(6, l4(), frag=1)), 1, (st.OK, 0, v4key(0, 0, 6))),
    ("v4-total-length-0", eth(0x0800, TCP4[:2] + b"\x00\x00" + TCP4[4:]), 1, (st.OK, 0, V4_KEY_TCP)),
    ("v4-bad-version", eth(0x0800, ipv4(6, l4(), ver_ihl=0x65)), 1, (st.IP_MALFORMED, 0x65, None)),
    ("v4-ihl-4", eth(0x0800, ipv4(6, l4(), ver_ihl=0x44)), 1, (st.IP_MALFORMED, 0x44, None)),
    (
        "v4-ihl-15-cut",
        eth(0x0800, with_total_len(ipv4(6, l4(), ver_ihl=0x4F), 1500)),
        1,
        (st.OK_L3_TRUNCATED, 0, v4key(0, 0, 6)),
    ),
    ("v4-total-len-below-ihl", eth(0x0800, with_total_len(TCP4, 19)), 1, (st.IP_MALFORMED, 0x45, None)),
    ("v4-total-len-1", eth(0x0800, with_total_len(TCP4, 1)), 1, (st.IP_MALFORMED, 0x45, None)),
    ("v4-total-len-is-ihl", eth(0x0800, with_total_len(TCP4, 20)), 1, (st.OK, 0, V4_KEY_TCP)),
    (
        "v4-total-len-0-options-cut",
        eth(0x0800, with_total_len(ipv4(6, b"", ver_ihl=0x4F), 0)),
        1,
        (st.OK_L3_TRUNCATED, 0, v4key(0, 0, 6)),
    ),
    ("v4-no-ports-captured", eth(0x0800, ipv4(6, b"\x04\xd2")), 1, (st.OK_L4_TRUNCATED, 0, v4key(0, 0, 6))),
    ("v4-short", eth(0x0800, TCP4[:19]), 1, (st.L3_TRUNCATED, 4, None)),
    ("v4-empty", eth(0x0800, b""), 1, (st.L3_TRUNCATED, 4, None)),
    # IPv6
    ("v6-tcp", eth(0x86DD, ipv6(6, l4(443, 50000))), 1, (st.OK, 0, v6key(443, 50000, 6))),
    ("v6-sctp", eth(0x86DD, ipv6(132, l4(9, 10))), 1, (st.OK, 0, v6key(9, 10, 132))),
    ("v6-icmpv6", eth(0x86DD, ipv6(58, b"\x80\x00" + b"\x00" * 10)), 1, (st.OK, 0, v6key(0, 0, 58))),
    ("v6-hbh-udp", eth(0x86DD, ipv6(0, ext8(17) + l4(1, 2))), 1, (st.OK, 0, v6key(1, 2, 17))),
    ("v6-routing-tcp", eth(0x86DD, ipv6(43, ext8(6, units=2) + l4(3, 4))), 1, (st.OK, 0, v6key(3, 4, 6))),
    ("v6-dstopts-sctp", eth(0x86DD, ipv6(60, ext8(132) + l4(5, 6))), 1, (st.OK, 0, v6key(5, 6, 132))),
    ("v6-ah-tcp", eth(0x86DD, ipv6(51, ext_ah(6) + l4(7, 8))), 1, (st.OK, 0, v6key(7, 8, 6))),
    ("v6-ah-esp", eth(0x86DD, ipv6(51, ext_ah(50) + b"\x00" * 16)), 1, (st.OK, 0, v6key(0, 0, 50))),
    ("v6-esp", eth(0x86DD, ipv6(50, l4(9, 9))), 1, (st.OK, 0, v6key(0, 0, 50))),
    ("v6-no-next", eth(0x86DD, ipv6(59, b"")), 1, (st.OK, 0, v6key(0, 0, 59))),
    ("v6-mobility-final", eth(0x86DD, ipv6(135, ext8(6) + l4())), 1, (st.OK, 0, v6key(0, 0, 135))),
    (
        "v6-frag-first",
        eth(0x86DD, ipv6(44, ext_frag(17, 0, True) + l4(53, 1))),
        1,
        (st.OK, 0, v6key(53, 1, 17)),
    ),
    (
        "v6-frag-nonfirst",
        eth(0x86DD, ipv6(44, ext_frag(17, 181) + l4(53, 1))),
        1,
        (st.OK, 0, v6key(0, 0, 17)),
    ),
    (
        "v6-hbh-dst-routing-frag-ah-udp",
        eth(
            0x86DD,
            ipv6(0, ext8(60) + ext8(43, 1) + ext8(44) + ext_frag(51, 0, True) + ext_ah(17) + l4(11, 12)),
        ),
        1,
        (st.OK, 0, v6key(11, 12, 17)),
    ),
    (
        "v6-hbh-then-nonfirst-frag",
        eth(0x86DD, ipv6(0, ext8(44) + ext_frag(6, 3) + l4())),
        1,
        (st.OK, 0, v6key(0, 0, 6)),
    ),
    ("v6-ipip-not-decapsulated", eth(0x86DD, ipv6(4, TCP4)), 1, (st.OK, 0, v6key(0, 0, 4))),
    ("v6-chain-cut", eth(0x86DD, ipv6(0, ext8(60)[:1])), 1, (st.OK_L3_TRUNCATED, 0, v6key(0, 0, 0))),
    ("v6-chain-cut-2nd", eth(0x86DD, ipv6(0, ext8(43))), 1, (st.OK_L3_TRUNCATED, 0, v6key(0, 0, 43))),
    ("v6-frag-cut", eth(0x86DD, ipv6(44, b"\x11\x00\x00")), 1, (st.OK_L3_TRUNCATED, 0, v6key(0, 0, 44))),
    (
        "v6-ports-cut",
        eth(0x86DD, ipv6(0, ext8(6) + b"\x01\x02\x03")),
        1,
        (st.OK_L4_TRUNCATED, 0, v6key(0, 0, 6)),
    ),
    (
        "v6-ext-len-past-capture",
        eth(0x86DD, ipv6(0, bytes([6, 200]) + b"\x00" * 30)),
        1,
        (st.OK_L4_TRUNCATED, 0, v6key(0, 0, 6)),
    ),
    (
        "v6-256-ext-headers",
        eth(0x86DD, ipv6(60, b"".join(ext8(60) for _ in range(255)) + ext8(17) + l4(1, 2))),
        1,
        (st.OK, 0, v6key(1, 2, 17)),
    ),
    (
        "v6-257-ext-headers-capped",
        eth(0x86DD, ipv6(60, b"".join(ext8(60) for _ in range(256)) + ext8(17) + l4(1, 2))),
        1,
        (st.OK_L3_TRUNCATED, 0, v6key(0, 0, 60)),
    ),
    ("v6-bad-version", eth(0x86DD, b"\x45" + UDP6[1:]), 1, (st.IP_MALFORMED, 0x45, None)),
    ("v6-short", eth(0x86DD, UDP6[:39]), 1, (st.L3_TRUNCATED, 6, None)),
    ("v6-empty", eth(0x86DD, b""), 1, (st.L3_TRUNCATED, 6, None)),
    # link-layer truncation
    ("eth-13-bytes", eth(0x0800, b"")[:13], 1, (st.L2_TRUNCATED, 1, None)),
    ("vlan-cut", eth(0x8100, b"\x00\x2a\x08"), 1, (st.L2_TRUNCATED, 1, None)),
    ("mpls-cut", eth(0x8847, mpls(2, b"")[:6]), 1, (st.L2_TRUNCATED, 1, None)),
    ("pppoe-cut", eth(0x8864, pppoe(0x0021, b"")[:7]), 1, (st.L2_TRUNCATED, 1, None)),
    ("sll-15", sll(0x0800, b"")[:15], 113, (st.L2_TRUNCATED, 113, None)),
    ("sll2-19", sll2(0x0800, b"")[:19], 276, (st.L2_TRUNCATED, 276, None)),
    ("null-3", b"\x02\x00\x00", 0, (st.L2_TRUNCATED, 0, None)),
    ("loop-0", b"", 108, (st.L2_TRUNCATED, 108, None)),
]


@pytest.mark.parametrize(("data", "linktype", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hand_built(data: bytes, linktype: int, expected: tuple) -> None:
    assert decode_one(data, linktype, len(data)) == expected
    assert decode_packet_bytes(data, linktype) == expected


def test_hand_built_in_one_batch() -> None:
    """All cases in one kernel call: rows compacted in record order, ts and wire length carried over."""
    datas = [c[1] for c in CASES]
    buf = np.frombuffer(b"".join(datas), np.uint8)
    caplen = np.array([len(d) for d in datas], np.uint32)
    off = np.concatenate([[0], np.cumsum(caplen[:-1], dtype=np.int64)])
    wirelen = caplen + 1000
    ts = np.arange(len(datas), dtype=np.int64) * 1_000_000_007
    linktype = np.array([c[2] for c in CASES], np.uint16)
    batch, status, aux = decode_arrays(buf, off, caplen, wirelen, ts, linktype)
    batch.validate()
    expected = [c[3] for c in CASES]
    assert status.tolist() == [e[0] for e in expected]
    assert aux.tolist() == [e[1] for e in expected]
    in_flow = [i for i, e in enumerate(expected) if e[2] is not None]
    assert len(batch) == len(in_flow) == int((status < st.FIRST_SKIPPED).sum())
    assert batch.ts_ns.tolist() == ts[in_flow].tolist()
    assert batch.length.tolist() == wirelen[in_flow].tolist()
    for row, i in enumerate(in_flow):
        src, dst, sport, dport, proto = expected[i][2]
        assert batch.src_ip[row].tobytes() == src
        assert batch.dst_ip[row].tobytes() == dst
        assert (int(batch.src_port[row]), int(batch.dst_port[row]), int(batch.protocol[row])) == (
            sport,
            dport,
            proto,
        )


TRUNCATION_FRAMES = [
    ("eth-v4-options-tcp", eth(0x0800, ipv4(6, l4(), options=b"\x01" * 8)), 1),
    (
        "qinq-pppoe-v6-exts-udp",
        eth(
            0x88A8, vlan(0x8100, vlan(0x8864, pppoe(0x57, ipv6(0, ext8(44) + ext_frag(17, 0, True) + l4()))))
        ),
        1,
    ),
    ("eth-mpls-v4-sctp", eth(0x8847, mpls(3, ipv4(132, l4()))), 1),
    ("sll2-v6-ah-tcp", sll2(0x86DD, ipv6(51, ext_ah(6) + l4())), 276),
    ("null-v6-frag-udp", struct.pack("<I", 30) + ipv6(44, ext_frag(17, 0, True) + l4()), 0),
]


@pytest.mark.parametrize(
    ("data", "linktype"), [f[1:] for f in TRUNCATION_FRAMES], ids=[f[0] for f in TRUNCATION_FRAMES]
)
def test_truncation_at_every_byte(data: bytes, linktype: int) -> None:
    """Every prefix decodes without error, agrees with the reference and degrades monotonically."""
    full = decode_one(data, linktype, len(data))
    assert full[0] == st.OK and full[2] is not None and full[2][2] == 1234
    # One record per prefix, all in one kernel call over a single buffer.
    buf = np.frombuffer(data * (len(data) + 1), np.uint8)
    n = len(data) + 1
    off = np.arange(n, dtype=np.int64) * len(data)
    caplen = np.arange(n, dtype=np.uint32)
    _, status, aux = decode_arrays(
        buf,
        off,
        caplen,
        np.full(n, len(data), np.uint32),
        np.zeros(n, np.int64),
        np.full(n, linktype, np.uint16),
    )
    # Stage order: link header cut < addresses cut < extension headers cut < ports cut < complete.
    rank = {st.L2_TRUNCATED: 0, st.L3_TRUNCATED: 1, st.OK_L3_TRUNCATED: 2, st.OK_L4_TRUNCATED: 3, st.OK: 4}
    prev = -1
    for cut in range(n):
        ref = decode_one(data[:cut], linktype, len(data))
        assert (int(status[cut]), int(aux[cut])) == ref[:2], cut
        assert decode_packet_bytes(data[:cut], linktype, len(data)) == ref, cut
        assert rank[ref[0]] >= prev, cut
        prev = rank[ref[0]]
        if ref[2] is not None and ref[0] != st.OK:
            assert ref[2][2:4] == (0, 0)
    assert prev == rank[st.OK]


def test_readonly_and_writable_buffers_agree() -> None:
    data = eth(0x8100, vlan(0x0800, TCP4)) + eth(0x86DD, UDP6)
    ro = np.frombuffer(data, np.uint8)
    assert not ro.flags.writeable
    rw = ro.copy()
    off = np.array([0, 18 + len(TCP4)], np.int64)
    caplen = np.array([18 + len(TCP4), 14 + len(UDP6)], np.uint32)
    args = (off, caplen, caplen, np.array([5, 6], np.int64), np.ones(2, np.uint16))
    b1, s1, a1 = decode_arrays(ro, *args)
    b2, s2, a2 = decode_arrays(rw, *args)
    assert s1.tolist() == s2.tolist() == [st.OK, st.OK]
    assert a1.tolist() == a2.tolist() == [0, 0]
    for c in b1.COLUMNS:
        np.testing.assert_array_equal(getattr(b1, c), getattr(b2, c))


def test_caplen_past_buffer_end_is_clamped() -> None:
    """A bogus caplen from a corrupt container never reads past ``buf``: the record is cut there."""
    data = eth(0x0800, TCP4)
    buf = np.frombuffer(data, np.uint8)
    for start, cap in (
        (0, 10_000),
        (20, 10_000),
        (len(data), 50),
        (len(data) + 99, 50),
        (-5, 50),
        (-(2**40), 60),
    ):
        _, status, aux = decode_arrays(
            buf, np.array([start], np.int64), np.array([cap], np.uint32), np.array([cap], np.uint32),
            np.zeros(1, np.int64), np.ones(1, np.uint16),
        )  # fmt: skip
        expected = decode_one(data[start:] if start >= 0 else b"", 1, cap)
        assert (int(status[0]), int(aux[0])) == expected[:2]


def test_output_rows_past_k_untouched_and_short_outputs_rejected() -> None:
    data = eth(0x0806, b"\x00" * 28) + eth(0x0800, TCP4)
    buf = np.frombuffer(data, np.uint8)
    off = np.array([0, 42], np.int64)
    caplen = np.array([42, len(data) - 42], np.uint32)
    ts = np.array([1, 2], np.int64)
    lts = np.ones(2, np.uint16)
    cols = [
        np.full(shape, 77, dtype)
        for shape, dtype in (
            (2, np.int64),
            ((2, 16), np.uint8),
            ((2, 16), np.uint8),
            (2, np.uint16),
            (2, np.uint16),
            (2, np.uint8),
            (2, np.uint32),
        )
    ]
    status, aux = np.empty(2, np.uint8), np.empty(2, np.uint16)
    wirelen = caplen + 500  # as if cut by a snaplen: the length column is the wire length
    k = decode_records(buf, off, caplen, wirelen, ts, lts, 2, *cols, status, aux)
    assert k == 1
    assert status.tolist() == [st.NON_IP, st.OK] and aux.tolist() == [0x0806, 0]
    assert cols[0].tolist() == [2, 77] and cols[6].tolist() == [len(data) - 42 + 500, 77]
    assert cols[1][1].tolist() == [77] * 16
    short = [c[:1] for c in cols]
    with pytest.raises(ValueError, match="at least n rows"):
        decode_records(buf, off, caplen, caplen, ts, lts, 2, *short, status, aux)
    with pytest.raises(ValueError, match="shorter than n"):
        decode_records(buf, off[:1], caplen, caplen, ts, lts, 2, *cols, status, aux)


# --- real captures -------------------------------------------------------------------------------


def _pcapng_records(raw: bytes) -> list[tuple[bytes, int, int]]:
    """(data, wirelen, linktype) of every packet of a pcapng file, with per-interface link types.

    dpkt's pcapng reader applies the first interface's link type to every packet; the decoder
    must be checked on files that mix link types, so walk the blocks here (all sections).
    """
    out: list[tuple[bytes, int, int]] = []
    pos, endian, ifaces = 0, "<", []
    while pos + 12 <= len(raw):
        if raw[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if raw[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            ifaces = []
        btype, blen = struct.unpack_from(endian + "II", raw, pos)
        if blen < 12 or pos + blen > len(raw):
            break
        if btype == 1:
            ifaces.append(struct.unpack_from(endian + "H", raw, pos + 8)[0])
        elif btype == 6:
            iface, _, _, cap, wire = struct.unpack_from(endian + "IIIII", raw, pos + 8)
            out.append((raw[pos + 28 : pos + 28 + cap], wire, ifaces[iface]))
        elif btype == 3:
            (wire,) = struct.unpack_from(endian + "I", raw, pos + 8)
            out.append((raw[pos + 12 : pos + 12 + min(wire, blen - 16)], wire, ifaces[0]))
        pos += blen
    return out


def _capture_records(path: Path) -> list[tuple[bytes, int, int]] | None:
    import dpkt

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if raw[:4] == b"\x0a\x0d\x0d\x0a":
        return _pcapng_records(raw)
    import io

    try:
        reader = dpkt.pcap.Reader(io.BytesIO(raw))
    except Exception:  # no pcap header (pcapfix example): nothing to decode
        return None
    linktype = reader.datalink() & 0xFFFF
    out = []
    try:
        for _, data in reader:
            out.append((bytes(data), len(data), linktype))
    except Exception:  # a record past EOF in a corrupt file: keep what was read
        pass
    return out


def _captures() -> list[Path]:
    if not CAPTURES.is_dir():
        return []
    return sorted(p for p in CAPTURES.iterdir() if p.is_file())


def _check_agreement(records: list[tuple[bytes, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    buf = np.frombuffer(b"".join(r[0] for r in records), np.uint8)
    caplen = np.array([len(r[0]) for r in records], np.uint32)
    off = np.concatenate([[0], np.cumsum(caplen, dtype=np.int64)[:-1]]).astype(np.int64)
    wirelen = np.array([r[1] for r in records], np.uint32)
    ts = np.arange(len(records), dtype=np.int64)
    lts = np.array([r[2] for r in records], np.uint16)
    batch, status, aux = decode_arrays(buf, off, caplen, wirelen, ts, lts)
    batch.validate()
    row = 0
    for i, (data, wire, linktype) in enumerate(records):
        ref = decode_one(data, linktype, wire)
        assert (int(status[i]), int(aux[i])) == ref[:2], (i, ref)
        if ref[2] is None:
            continue
        got = (
            batch.src_ip[row].tobytes(),
            batch.dst_ip[row].tobytes(),
            int(batch.src_port[row]),
            int(batch.dst_port[row]),
            int(batch.protocol[row]),
        )
        assert got == ref[2], i
        assert int(batch.ts_ns[row]) == i and int(batch.length[row]) == wire
        row += 1
    assert row == len(batch)
    _check_extras_agreement(records, (buf, off, caplen, wirelen, ts, lts), batch, status, aux)
    return status, aux


def _check_extras_agreement(records, arrays, plain, status, aux) -> None:
    """The same records decoded with the optional columns: the key columns and codes are those of the
    plain decode, and every optional column equals the reference's (a tenth of the frames as if an
    AF_PACKET ring had taken a VLAN tag off them)."""
    rng = np.random.default_rng(len(records))
    stripped = np.where(rng.random(len(records)) < 0.1, rng.integers(0, 1 << 32, len(records)), -1)
    for rec_vlan in (None, stripped):
        batch, st2, aux2 = decode_arrays(*arrays, extras=True, rec_vlan=rec_vlan)
        batch.validate()
        assert batch.present() == decode_mod.DECODER_COLUMNS
        assert np.array_equal(st2, status) and np.array_equal(aux2, aux)
        for c in PacketBatch.COLUMNS:
            assert np.array_equal(getattr(batch, c), getattr(plain, c)), c
        row = 0
        for i, (data, wire, linktype) in enumerate(records):
            sv = -1 if rec_vlan is None else int(rec_vlan[i])
            _, _, key, extras = decode_one_full(data, linktype, wire, sv)
            if key is None:
                assert extras is None
                continue
            got = tuple(int(getattr(batch, c)[row]) for c in decode_mod.DECODER_COLUMNS)
            assert got == tuple(extras), (i, got, extras)
            row += 1
        assert row == len(batch)


@pytest.mark.shared
@pytest.mark.parametrize("path", _captures(), ids=lambda p: p.name)
def test_real_capture_agrees_with_reference(path: Path) -> None:
    records = _capture_records(path)
    if not records:
        pytest.skip("no records readable")
    status, aux = _check_agreement(records)
    counts = np.bincount(status, minlength=st.N_STATUS)
    # Facts from MANIFEST.tsv that pin the decoder's semantics on real traffic.
    facts = {
        "sctp.pcap": lambda: counts[st.OK] == 74,
        "wpa-test-decode.pcap.gz": lambda: (
            counts[st.LINKTYPE_UNSUPPORTED] == len(records) and set(aux) == {127}
        ),
        "dsa.pcap": lambda: counts[st.LINKTYPE_UNSUPPORTED] == len(records),
        "trunc-hdr.pcap": lambda: counts[st.L2_TRUNCATED] == 1,
        "QinQpacket.pcap": lambda: counts[st.OK] == 144 and counts[st.NON_IP] == 105,
        "pppoe-over-qinq.pcap": lambda: counts[st.OK] == 86,
        "mpls-in-vlan.pcap": lambda: counts[st.OK] == 3,
        "mixed-vlan-mpls.pcap": lambda: counts[st.OK] == 47,
        "local2.pcap": lambda: counts[st.OK] == 172,
        "rdp.pcap": lambda: counts[st.OK] == 2010,
        "linux_dlt_sll2.pcap": lambda: counts[: st.FIRST_SKIPPED].sum() == 4,
        "alexa-app_is_bigendian_pcap.pcapng": lambda: counts[: st.FIRST_SKIPPED].sum() == 3394 + 12,
        "grpc_stream_reassembly_sample.pcapng.gz": lambda: counts[: st.FIRST_SKIPPED].sum() == 171,
        # 100 extension headers, then UDP 12345 -> 54321 (tshark agrees).
        "ipv6_ext_headers.pcap": lambda: counts[st.OK] == 1,
    }
    if path.name in facts:
        assert facts[path.name](), counts.tolist()


def _real_packets(limit_per_file: int = 300) -> list[tuple[bytes, int, int]]:
    packets = []
    for path in _captures():
        records = _capture_records(path) or []
        packets.extend(r for r in records[:limit_per_file] if r[2] in lt.SUPPORTED_LINKTYPES)
    return packets


@pytest.mark.shared
def test_seeded_mutations_agree_with_reference() -> None:
    """Bytes flipped in the headers, random cuts and swapped link types: kernel == reference."""
    packets = _real_packets()
    if not packets:
        pytest.skip("no captures")
    rng = random.Random(20240611)
    linktypes = sorted(lt.SUPPORTED_LINKTYPES)
    interesting = [
        0x00,
        0x04,
        0x06,
        0x08,
        0x11,
        0x2B,
        0x2C,
        0x33,
        0x3C,
        0x40,
        0x45,
        0x4F,
        0x60,
        0x81,
        0x86,
        0x88,
        0xDD,
        0xFF,
    ]
    mutated = []
    for _ in range(20_000):
        data, wire, linktype = rng.choice(packets)
        b = bytearray(data[:128])
        for _ in range(rng.randint(0, 4)):
            if b:
                pos = min(int(rng.expovariate(1 / 30)), len(b) - 1)
                b[pos] = rng.choice(interesting) if rng.random() < 0.6 else rng.randrange(256)
        if b and rng.random() < 0.5:
            b = b[: rng.randrange(len(b) + 1)]
        if rng.random() < 0.1:
            linktype = rng.choice([*linktypes, 105, 127, 284])
        if rng.random() < 0.01:  # a damaged record's length: just above the limit, or nonsense
            wire = rng.choice([st.MAX_WIRE_LENGTH, st.MAX_WIRE_LENGTH + 1, 4_093_509_168, 0xFFFFFFFF])
        mutated.append((bytes(b), wire, linktype))
    status, _ = _check_agreement(mutated)
    # The mutations must reach every outcome, or the agreement proves little.
    assert set(np.unique(status).tolist()) == set(range(st.N_STATUS))


# --- the optional columns (decode_records(..., extras=...)) ---------------------------------------


def tcp(flags: int, sport: int = 1234, dport: int = 80) -> bytes:
    """A 20-byte TCP header with ``flags``."""
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 1024, 0, 0)


def icmp(type_: int, code: int) -> bytes:
    return struct.pack("!BBHI", type_, code, 0, 0x00010002) + b"\x00" * 8


EXTRA_CASES: list[tuple[str, bytes, int, int, tuple[int, int, int, int]]] = [
    # (name, frame, link type, stripped tag, (tcp_flags, vlan_id, icmp_type_code, ip_length))
    ("tcp-syn", eth(0x0800, ipv4(6, tcp(0x02))), 1, -1, (0x02, 0, 0, 40)),
    ("tcp-synack-v6", eth(0x86DD, ipv6(6, tcp(0x12))), 1, -1, (0x12, 0, 0, 60)),
    ("tcp-flags-cut", eth(0x0800, ipv4(6, tcp(0x11)))[: 14 + 20 + 13], 1, -1, (0, 0, 0, 40)),
    ("tcp-nonfirst-fragment", eth(0x0800, ipv4(6, tcp(0x02), frag=0x10)), 1, -1, (0, 0, 0, 40)),
    ("udp", eth(0x0800, ipv4(17, l4())), 1, -1, (0, 0, 0, 40)),
    ("icmp-echo", eth(0x0800, ipv4(1, icmp(8, 0))), 1, -1, (0, 0, 0x0800, 36)),
    ("icmp-unreachable-port", eth(0x0800, ipv4(1, icmp(3, 3))), 1, -1, (0, 0, 0x0303, 36)),
    ("icmpv6-after-hbh", eth(0x86DD, ipv6(0, ext8(58) + icmp(128, 0))), 1, -1, (0, 0, 0x8000, 64)),
    ("icmp-cut", eth(0x0800, ipv4(1, icmp(8, 0)))[: 14 + 21], 1, -1, (0, 0, 0, 36)),
    ("vlan", eth(0x8100, vlan(0x0800, ipv4(6, tcp(0x10)), vid=0x2ABC)), 1, -1, (0x10, 0xABC, 0, 40)),
    (
        "qinq-outer",
        eth(0x88A8, vlan(0x8100, vlan(0x0800, ipv4(6, tcp(0x10)), vid=7), vid=300)),
        1,
        -1,
        (0x10, 300, 0, 40),
    ),
    ("sll-vlan", sll(0x8100, vlan(0x86DD, UDP6, vid=9)), 113, -1, (0, 9, 0, 60)),
    ("sll2-vlan", sll2(0x8100, vlan(0x0800, TCP4, vid=4095)), 276, -1, (0xAA, 4095, 0, 40)),
    ("mpls-in-vlan", eth(0x8100, vlan(0x8847, mpls(2, ipv4(17, l4())), vid=5)), 1, -1, (0, 5, 0, 40)),
    ("stripped-tag-wins", eth(0x8100, vlan(0x0800, TCP4, vid=5)), 1, 0x81000000 | 0x2007, (0xAA, 7, 0, 40)),
    ("stripped-tag-untagged-frame", eth(0x0800, TCP4), 1, 0x88A80000 | 12, (0xAA, 12, 0, 40)),
    # total length 0 (TSO): the frame's bytes after the link layer, from the wire length
    ("tso-total-0", eth(0x0800, with_total_len(ipv4(6, tcp(0x18)), 0)), 1, -1, (0x18, 0, 0, 40)),
    ("raw-ipv4", ipv4(6, tcp(0x04)), 101, -1, (0x04, 0, 0, 40)),
]


@pytest.mark.parametrize(
    ("frame", "linktype", "stripped", "expected"),
    [c[1:] for c in EXTRA_CASES],
    ids=[c[0] for c in EXTRA_CASES],
)
def test_optional_columns_hand_built(frame: bytes, linktype: int, stripped: int, expected: tuple) -> None:
    wire = len(frame)
    status, _, key, extras = decode_one_full(frame, linktype, wire, stripped)
    assert status < st.FIRST_SKIPPED and key is not None
    assert tuple(extras) == expected
    batch, _, _ = decode_arrays(
        np.frombuffer(frame, np.uint8),
        np.zeros(1, np.int64),
        np.array([len(frame)], np.uint32),
        np.array([wire], np.uint32),
        np.zeros(1, np.int64),
        np.array([linktype], np.uint16),
        extras=True,
        rec_vlan=np.array([stripped], np.int64),
    )
    assert tuple(int(getattr(batch, c)[0]) for c in decode_mod.DECODER_COLUMNS) == expected


def test_extras_left_out_is_the_plain_decode() -> None:
    """Without ``extras`` the kernel writes no optional column (the batch has none) and the key columns
    are those of the decode with them."""
    frames = [c[1] for c in EXTRA_CASES if c[3] == -1]
    buf = np.frombuffer(b"".join(frames), np.uint8)
    caplen = np.array([len(f) for f in frames], np.uint32)
    off = np.concatenate([[0], np.cumsum(caplen)[:-1]]).astype(np.int64)
    args = (buf, off, caplen, caplen, np.arange(len(frames), dtype=np.int64), np.ones(len(frames), np.uint16))
    plain, _, _ = decode_arrays(*args)
    full, _, _ = decode_arrays(*args, extras=True)
    assert plain.present() == () and full.present() == decode_mod.DECODER_COLUMNS
    for c in PacketBatch.COLUMNS:
        assert np.array_equal(getattr(plain, c), getattr(full, c)), c
    with pytest.raises(ValueError, match="extras columns need at least n rows"):
        short = PacketBatch.empty(len(frames) - 1, decode_mod.DECODER_COLUMNS)
        out = PacketBatch.empty(len(frames))
        decode_records(
            *args[:5], args[5], len(frames), out.ts_ns, out.src_ip, out.dst_ip, out.src_port,
            out.dst_port, out.protocol, out.length, np.empty(len(frames), np.uint8),
            np.empty(len(frames), np.uint16), decode_mod.extras_into(short),
        )  # fmt: skip
