"""Wire layout 2 (the dense layout, ``docs/wire.md``): its kernels against their plain-Python references,
round trips of every column in every form (compressed too), that layout 1 messages — those of earlier
releases included — still decode, that the generated protobuf class and our codec read each other's
layout 2 messages, and strict rejection of truncated, inconsistent and hostile input."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
from tests.unit.test_codec import (
    OPTIONAL_SETS,
    assert_same,
    decoded_corruptions,
    lfield,
    random_batch,
    vfield,
    with_optional,
)

from netspectra.batch import PacketBatch
from netspectra.probe.publisher import PublisherOptions
from netspectra.proto.v1 import traffic_pb2
from netspectra.transport import codec, dense
from netspectra.transport.codec import BatchMeta, decode_batch, encode_batch
from netspectra.transport.nats_bus import (
    BYTES_PER_PACKET,
    DENSE_MIN_BYTES_PER_PACKET,
    encode_messages,
    max_packets_for_payload,
)

V4 = np.frombuffer(bytes(10) + b"\xff\xff", np.uint8)
COMPRESSIONS = ("none", "lz4", "zstd")


def realistic_batch(n: int, seed: int = 0, v6_share: float = 0.05, span_ns: int = 10**9) -> PacketBatch:
    """Packets as a probe sends them: timestamps within ``span_ns``, frame lengths, ports and protocols
    drawn from small sets, about ``v6_share`` of the packets IPv6 (both addresses), the rest IPv4."""
    rng = np.random.default_rng(seed)
    b = PacketBatch.empty(n)
    b.ts_ns[:] = 1_765_000_000_000_000_000 + np.sort(rng.integers(0, span_ns, n))
    v6 = rng.random(n) < v6_share
    for ip in (b.src_ip, b.dst_ip):
        ip[:] = rng.integers(0, 256, (n, 16))
        ip[~v6, :12] = V4
        ip[v6, 0] = 0x20
    b.src_port[:] = rng.choice([443, 80, 53, 51000, 0], n)
    b.dst_port[:] = rng.integers(1024, 65536, n)
    b.protocol[:] = rng.choice([6, 17, 1, 58], n)
    b.length[:] = rng.choice([60, 66, 590, 1514], n)
    return b


def meta_kwargs(meta: BatchMeta) -> dict:
    return {f: getattr(meta, f) for f in BatchMeta.__dataclass_fields__}


# ---------------------------------------------------------------------------------------------------
# kernels against their references


@pytest.mark.parametrize("n", [0, 1, 5, 300])
@pytest.mark.parametrize("v4_share", [0.0, 0.3, 0.9, 1.0])
def test_address_kernels_agree_with_references(n: int, v4_share: float) -> None:
    b = random_batch(n, seed=n + int(v4_share * 10), v4_share=v4_share)
    if n > 2:  # rows where only one of the two addresses is mapped are sent whole
        b.src_ip[0, :12] = V4
        b.dst_ip[0, :12] = 1
        b.dst_ip[1, :12] = V4
        b.src_ip[1, 11] = 0
    got = dense.split_addresses(b.src_ip, b.dst_ip)
    want = dense.split_addresses_ref(b.src_ip, b.dst_ip)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and np.array_equal(g, w.reshape(g.shape))
    assert dense.count_unmapped(b.src_ip, b.dst_ip) == len(want[2])
    src, dst = dense.widen_addresses(n, *got)
    assert np.array_equal(src, b.src_ip) and np.array_equal(dst, b.dst_ip)
    ref_src, ref_dst = dense.widen_addresses_ref(n, *want)
    assert np.array_equal(ref_src, src) and np.array_equal(ref_dst, dst)


def test_widen_rejects_inconsistent_rows_like_its_reference() -> None:
    b = random_batch(10, seed=1, v4_share=0.5)
    src4, dst4, rows, src6, dst6 = dense.split_addresses(b.src_ip, b.dst_ip)
    assert len(rows) >= 2
    for bad in (rows[::-1].copy(), np.full_like(rows, rows[0]), rows + np.uint32(10)):
        with pytest.raises(ValueError, match="strictly increasing"):
            dense.widen_addresses(10, src4, dst4, bad, src6, dst6)
        with pytest.raises(ValueError, match="strictly increasing"):
            dense.widen_addresses_ref(10, src4, dst4, bad, src6, dst6)


@pytest.mark.parametrize(
    "ts",
    [
        [],
        [5],
        [-(2**63), -(2**63) + 2**32 - 1],
        [2**63 - 1, 2**63 - 2**32],
        [-3, 7, 0, 2**32 - 4],
        [0, 2**32],  # spans too much
        [-(2**63), 2**63 - 1],
    ],
)
def test_timestamp_kernels_agree_with_references(ts: list[int]) -> None:
    arr = np.array(ts, np.int64)
    got, want = dense.ts_offsets(arr), dense.ts_offsets_ref(arr)
    if want is None:
        assert got is None
        return
    assert got is not None and got[0] == want[0] and np.array_equal(got[1], want[1])
    assert got[1].dtype == np.uint32
    back = dense.ts_from_offsets(*got)
    assert np.array_equal(back, arr) and np.array_equal(dense.ts_from_offsets_ref(*want), arr)


def test_timestamp_offsets_that_overflow_int64_are_rejected() -> None:
    offsets = np.array([0, 2**32 - 1], np.uint32)
    for fn in (dense.ts_from_offsets, dense.ts_from_offsets_ref):
        with pytest.raises(ValueError, match="exceeds int64"):
            fn(2**63 - 10, offsets)


# ---------------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("n", [0, 1, 2, 7, 2000, 65536])
@pytest.mark.parametrize("v4_share", [0.0, 0.5, 0.95, 1.0], ids=["ipv6", "mixed", "mostly4", "ipv4"])
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip_of_random_values(n: int, v4_share: float, compression: str) -> None:
    """Every bit pattern of every core column: full-range timestamps and lengths take the wide forms."""
    b = random_batch(n, seed=n, v4_share=v4_share)
    meta = BatchMeta(seq=2**64 - 1, probe_id="probe-ü:eth0", shard=3, n_shards=4, link_type=1)
    meta = dataclasses.replace(meta, skipped=9, shard_packets=12345, kernel_dropped=1, probe_dropped=2)
    data = encode_batch(b, layout=2, compression=compression, **meta_kwargs(meta))
    out, got = decode_batch(data)
    assert_same(b, out)
    assert got == meta
    out.validate()
    assert len(data) <= len(encode_batch(b, **meta_kwargs(meta))) + 16


@pytest.mark.parametrize("n", [1, 3, 2000])
@pytest.mark.parametrize("v6_share", [0.0, 0.05, 0.5, 0.9])
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip_of_probe_like_batches(n: int, v6_share: float, compression: str) -> None:
    b = realistic_batch(n, seed=n, v6_share=v6_share)
    data = encode_batch(b, layout=2, compression=compression, seq=1)
    out, meta = decode_batch(data)
    assert_same(b, out)
    assert meta.seq == 1
    msg = traffic_pb2.PacketBatch.FromString(data)
    assert msg.version == 2 and msg.count == n
    if compression == "none":
        assert msg.ts_delta and not msg.ts_ns and msg.length16 and not msg.length
        if v6_share < 0.8:
            assert msg.src_ip4 and not msg.src_ip


@pytest.mark.parametrize("n", [1, 7, 2000])
@pytest.mark.parametrize(
    "names",
    OPTIONAL_SETS,
    ids=str,
)
@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_optional_columns_round_trip(n: int, names: tuple[str, ...] | None, compression: str) -> None:
    b = with_optional(realistic_batch(n, seed=n, v6_share=0.3), seed=n, names=names)
    out, _ = decode_batch(encode_batch(b, layout=2, compression=compression))
    assert_same(b, out)
    for c in PacketBatch.OPTIONAL:
        want, got = getattr(b, c), getattr(out, c)
        if want is None:
            assert got is None, c
        else:
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), c


def test_dense_forms_are_used_exactly_when_they_are_smaller() -> None:
    b = realistic_batch(4000, seed=2, v6_share=0.0)
    data = encode_batch(b, layout=2)
    assert len(data) < 4000 * 19 + 64  # 4 + 4 + 4 + 2 + 2 + 1 + 2 bytes a packet
    # a span of 2**32 ns or more, a length over 65535: the full-width column for that column only
    wide = b.copy()
    wide.ts_ns[-1] = wide.ts_ns[0] + 2**32
    wide.length[0] = 65536
    msg = traffic_pb2.PacketBatch.FromString(encode_batch(wide, layout=2))
    assert msg.ts_ns and not msg.ts_delta and msg.length and not msg.length16 and msg.src_ip4
    assert_same(wide, decode_batch(msg.SerializeToString())[0])
    # almost every packet IPv6: the split form would be larger, the addresses go whole
    six = realistic_batch(700, seed=3, v6_share=1.0)
    six.src_ip[:99, :12] = V4
    six.dst_ip[:99, :12] = V4
    msg = traffic_pb2.PacketBatch.FromString(encode_batch(six, layout=2))
    assert msg.src_ip and not msg.src_ip4 and not msg.ip6_rows
    # never more than layout 1's 49 bytes a packet (what max_packets_for_payload assumes)
    for v4_share in (0.0, 0.14, 0.15, 0.5, 1.0):
        r = random_batch(1000, seed=4, v4_share=v4_share)
        for compression in COMPRESSIONS:
            assert len(encode_batch(r, layout=2, compression=compression)) <= 1000 * BYTES_PER_PACKET + 64


def test_compression_is_kept_only_when_it_saves_bytes() -> None:
    rand = random_batch(500, seed=5, v4_share=1.0)  # random bits: nothing to gain
    assert not traffic_pb2.PacketBatch.FromString(encode_batch(rand, layout=2, compression="lz4")).packed
    b = realistic_batch(5000, seed=6)
    plain = encode_batch(b, layout=2)
    for compression in ("lz4", "zstd"):
        data = encode_batch(b, layout=2, compression=compression)
        msg = traffic_pb2.PacketBatch.FromString(data)
        assert msg.packed and msg.compression == codec.COMPRESSIONS[compression]
        assert msg.packed_size > len(msg.packed) and len(data) < len(plain)
        assert not msg.ts_delta and not msg.src_port  # every column is inside the frame


def test_decoded_plain_columns_are_still_views() -> None:
    b = realistic_batch(1000, seed=7)
    for header in range(8):
        data = encode_batch(b, layout=2, probe_id="x" * header)
        out, _ = decode_batch(data)
        whole = np.frombuffer(data, np.uint8)
        for c in ("src_port", "dst_port", "protocol"):
            arr = getattr(out, c)
            assert np.shares_memory(arr, whole) and arr.flags.aligned, c
        for c in PacketBatch.COLUMNS:
            assert getattr(out, c).flags.c_contiguous and getattr(out, c).flags.aligned, c


def test_unaligned_layout2_buffer_still_decodes() -> None:
    b = realistic_batch(100, seed=8, v6_share=0.2)
    data = encode_batch(b, layout=2)
    shifted = bytearray(b"\x00" + data)
    assert_same(b, decode_batch(memoryview(shifted)[1:])[0])


def test_empty_batch_in_layout_2() -> None:
    data = encode_batch(PacketBatch.empty(0), layout=2, compression="lz4", seq=4)
    out, meta = decode_batch(data)
    assert len(out) == 0 and meta.seq == 4 and len(data) <= 6


# ---------------------------------------------------------------------------------------------------
# compatibility: layout 1, the generated class


#: A layout 1 message as NetSpectra before layout 2 wrote it (commit db00d0b): three packets, IPv4 and
#: IPv6, a negative timestamp and a length over 65535.
OLD_MESSAGE = bytes.fromhex(
    "100308011807280130044002380122036f6c647a0082011815cd853dfe9c971716cd853dfe9c9717fbffffffffffffff"
    "7a03000000b2010c3c000000ea050000a08601007a01009a0106d204000035007a0100a2010650000000409c8a013000"
    "000000000000000000ffff0a00000120010db800000000000000000000000100000000000000000000ffff0808080892"
    "013000000000000000000000ffffc0a8010220010db800000000000000000000000200000000000000000000ffff0101"
    "0101aa0103063a11"
)


def old_batch() -> PacketBatch:
    b = PacketBatch.empty(3)
    b.ts_ns[:] = [1_700_000_000_123_456_789, 1_700_000_000_123_456_790, -5]
    for row, (s, d) in enumerate(
        [
            (V4.tobytes() + bytes([10, 0, 0, 1]), V4.tobytes() + bytes([192, 168, 1, 2])),
            (bytes.fromhex("20010db8" + "00" * 11 + "01"), bytes.fromhex("20010db8" + "00" * 11 + "02")),
            (V4.tobytes() + bytes([8, 8, 8, 8]), V4.tobytes() + bytes([1, 1, 1, 1])),
        ]
    ):
        b.src_ip[row] = np.frombuffer(s, np.uint8)
        b.dst_ip[row] = np.frombuffer(d, np.uint8)
    b.src_port[:] = [1234, 0, 53]
    b.dst_port[:] = [80, 0, 40000]
    b.protocol[:] = [6, 58, 17]
    b.length[:] = [60, 1514, 100000]
    return b


def test_messages_of_earlier_releases_still_decode_and_layout_1_is_unchanged() -> None:
    meta = BatchMeta(seq=7, probe_id="old", shard=1, n_shards=4, link_type=1, kernel_dropped=2)
    out, got = decode_batch(OLD_MESSAGE)
    assert_same(old_batch(), out)
    assert got == meta
    assert encode_batch(old_batch(), **meta_kwargs(meta)) == OLD_MESSAGE  # layout 1 stays byte-identical
    # and the same packets in layout 2, compressed or not
    for compression in COMPRESSIONS:
        data = encode_batch(old_batch(), layout=2, compression=compression, **meta_kwargs(meta))
        assert_same(old_batch(), decode_batch(data)[0])


def test_generated_class_reads_what_layout_2_writes() -> None:
    b = realistic_batch(50, seed=9, v6_share=0.2)
    b.ts_ns[:] -= 1_765_000_000_000_000_000 + 10**12  # a negative ts_base: int64 on the wire
    data = encode_batch(b, layout=2, seq=7, probe_id="p", shard=1, n_shards=2, link_type=113)
    msg = traffic_pb2.PacketBatch.FromString(data)
    assert (msg.version, msg.count, msg.seq, msg.probe_id, msg.link_type) == (2, 50, 7, "p", 113)
    assert msg.ts_base == int(b.ts_ns.min()) < 0
    ts = msg.ts_base + np.frombuffer(msg.ts_delta, "<u4").astype(np.int64)
    assert np.array_equal(ts, b.ts_ns)
    assert np.array_equal(np.frombuffer(msg.length16, "<u2"), b.length)
    rows = np.frombuffer(msg.ip6_rows, "<u4")
    v4 = np.ones(50, bool)
    v4[rows] = False
    assert np.array_equal(np.frombuffer(msg.src_ip4, np.uint8).reshape(-1, 4), b.src_ip[v4, 12:])
    assert np.array_equal(np.frombuffer(msg.dst_ip4, np.uint8).reshape(-1, 4), b.dst_ip[v4, 12:])
    assert np.array_equal(np.frombuffer(msg.src_ip6, np.uint8).reshape(-1, 16), b.src_ip[~v4])
    assert np.array_equal(np.frombuffer(msg.dst_ip6, np.uint8).reshape(-1, 16), b.dst_ip[~v4])
    assert msg.src_port == b.src_port.astype("<u2").tobytes() and msg.protocol == b.protocol.tobytes()


def test_we_read_layout_2_as_the_generated_class_writes_it() -> None:
    """Another producer: no padding, fields in the class's order, an lz4-packed frame built with it."""
    b = realistic_batch(40, seed=10, v6_share=0.25)
    src4, dst4, rows, src6, dst6 = dense.split_addresses_ref(b.src_ip, b.dst_ip)
    base, offsets = dense.ts_offsets_ref(b.ts_ns)
    columns = {
        "ts_delta": offsets.astype("<u4").tobytes(),
        "length16": b.length.astype("<u2").tobytes(),
        "src_ip4": src4.tobytes(),
        "dst_ip4": dst4.tobytes(),
        "ip6_rows": rows.astype("<u4").tobytes(),
        "src_ip6": src6.tobytes(),
        "dst_ip6": dst6.tobytes(),
        "src_port": b.src_port.astype("<u2").tobytes(),
        "dst_port": b.dst_port.astype("<u2").tobytes(),
        "protocol": b.protocol.tobytes(),
    }
    msg = traffic_pb2.PacketBatch(version=2, count=40, seq=3, ts_base=base, **columns)
    out, meta = decode_batch(msg.SerializeToString())
    assert_same(b, out)
    assert meta.seq == 3
    import pyarrow as pa

    inner = traffic_pb2.PacketBatch(**columns).SerializeToString()
    packed = pa.Codec("lz4").compress(inner, asbytes=True)
    msg = traffic_pb2.PacketBatch(
        version=2, count=40, ts_base=base, compression=1, packed_size=len(inner), packed=packed
    )
    assert_same(b, decode_batch(msg.SerializeToString())[0])


# ---------------------------------------------------------------------------------------------------
# malformed and hostile input


def test_every_truncation_of_a_layout_2_message_is_rejected() -> None:
    b = realistic_batch(6, seed=11, v6_share=0.4)
    for compression in ("none", "zstd"):
        data = encode_batch(b, layout=2, compression=compression, seq=300, probe_id="p", n_shards=2)
        for cut in range(len(data)):
            with pytest.raises(ValueError, match="PacketBatch"):
                decode_batch(data[:cut])


def _head(n: int, version: int = 2) -> bytes:
    return vfield(codec.F_COUNT, n) + vfield(codec.F_VERSION, version)


def _dense(name: str, payload: bytes) -> bytes:
    return lfield(codec.DENSE_FIELDS[name], payload)


def _rest(n: int) -> bytes:
    """The columns of ``n`` packets that the cases below do not vary (ports, protocol)."""
    return lfield(19, bytes(2 * n)) + lfield(20, bytes(2 * n)) + lfield(21, bytes(n))


_TS = _dense("ts_delta", bytes(8))
_LEN = _dense("length16", bytes(4))
_ADDR = lfield(17, bytes(32)) + lfield(18, bytes(32))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_head(2, 3), "layout version 3, expected one of 1, 2"),
        (_head(2, 1) + _TS, "layout 1 message carries layout 2 field"),
        (_head(2, 1) + vfield(codec.F_TS_BASE, 5), "layout 1 message carries layout 2 field.*ts_base"),
        (_head(2) + _TS + lfield(16, bytes(16)) + _LEN + _ADDR + _rest(2), "both ts_ns and ts_delta"),
        (_head(2) + _dense("ts_delta", bytes(7)) + _LEN + _ADDR + _rest(2), "column ts_delta is 7 bytes"),
        (_head(2) + vfield(codec.F_TS_BASE, 1) + lfield(16, bytes(16)) + _LEN, "ts_base is set but"),
        (
            _head(2) + vfield(codec.F_TS_BASE, 2**63 - 2) + _dense("ts_delta", b"\xff" * 8),
            "exceeds int64",
        ),
        (_head(2) + _TS + _LEN + lfield(22, bytes(8)) + _ADDR + _rest(2), "both length and length16"),
        (_head(2) + _TS + _LEN + _ADDR + _dense("src_ip4", bytes(8)) + _rest(2), "both whole"),
        (_head(2) + _TS + _LEN + _dense("ip6_rows", bytes(5)) + _rest(2), "not a whole number of rows"),
        (_head(2) + _TS + _LEN + _dense("ip6_rows", bytes(12)) + _rest(2), "not a whole number of rows"),
        (_head(2) + _TS + _LEN + _dense("src_ip4", bytes(8)) + _rest(2), "column dst_ip4 is missing"),
        (
            _head(2) + _TS + _LEN + _dense("src_ip4", bytes(4)) + _dense("dst_ip4", bytes(8)) + _rest(2),
            "column src_ip4 is 4 bytes, expected count - IPv6 rows = 2 × 4 = 8",
        ),
        (  # one IPv6 row, but its 16 bytes are missing
            _head(2) + _TS + _LEN + _dense("ip6_rows", bytes(4)) + _dense("src_ip4", bytes(4)) + _rest(2),
            "column dst_ip4 is missing",
        ),
        (  # two rows numbered 1 and 1 (not increasing)
            _head(3)
            + _dense("ts_delta", bytes(12))
            + _dense("length16", bytes(6))
            + _dense("ip6_rows", b"\x01\0\0\0\x01\0\0\0")
            + _dense("src_ip4", bytes(4))
            + _dense("dst_ip4", bytes(4))
            + _dense("src_ip6", bytes(32))
            + _dense("dst_ip6", bytes(32))
            + _rest(3),
            "strictly increasing",
        ),
        (  # a row number past count
            _head(2)
            + _TS
            + _LEN
            + _dense("ip6_rows", b"\x07\0\0\0")
            + _dense("src_ip4", bytes(4))
            + _dense("dst_ip4", bytes(4))
            + _dense("src_ip6", bytes(16))
            + _dense("dst_ip6", bytes(16))
            + _rest(2),
            "strictly increasing",
        ),
        (_head(2) + vfield(codec.F_COMPRESSION, 1), "compression is set but there is no packed field"),
        (_head(2) + vfield(codec.F_COMPRESSION, 9) + lfield(codec.F_PACKED, b"x"), "compression 9 is not"),
        (_head(2) + lfield(codec.F_PACKED, b"x"), "compression 0 is not"),
        (
            _head(2)
            + vfield(codec.F_COMPRESSION, 1)
            + vfield(codec.F_PACKED_SIZE, 10**9)
            + lfield(codec.F_PACKED, b"x"),
            "packed_size 1000000000 is not in",
        ),
        (
            _head(2)
            + vfield(codec.F_COMPRESSION, 1)
            + vfield(codec.F_PACKED_SIZE, 40)
            + lfield(codec.F_PACKED, b"garbage garbage"),
            "lz4 packed frame does not decompress",
        ),
        (
            _head(2)
            + vfield(codec.F_COMPRESSION, 2)
            + vfield(codec.F_PACKED_SIZE, 40)
            + lfield(codec.F_PACKED, b"garbage garbage"),
            "zstd packed frame does not decompress",
        ),
        (
            _head(2)
            + vfield(codec.F_COMPRESSION, 1)
            + vfield(codec.F_PACKED_SIZE, 10)
            + lfield(codec.F_PACKED, b"x")
            + _rest(2),
            "outside the packed frame",
        ),
    ],
)
def test_inconsistent_layout_2_messages_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_batch(data)


def _packed_message(inner: bytes, compression: str = "zstd", size: int | None = None) -> bytes:
    import pyarrow as pa

    packed = pa.Codec(compression).compress(inner, asbytes=True)
    return (
        _head(2)
        + vfield(codec.F_COMPRESSION, codec.COMPRESSIONS[compression])
        + vfield(codec.F_PACKED_SIZE, len(inner) if size is None else size)
        + lfield(codec.F_PACKED, packed)
    )


def test_hostile_packed_frames_are_rejected() -> None:
    b = realistic_batch(2, seed=12)
    inner_ok = traffic_pb2.PacketBatch.FromString(encode_batch(b, layout=2))
    inner_ok.ClearField("version")
    inner_ok.ClearField("count")
    inner_ok.ClearField("ts_base")
    body = inner_ok.SerializeToString()
    # a frame that holds a scalar (count, seq, ...) besides the columns
    with pytest.raises(ValueError, match=r"holds field.*not columns"):
        decode_batch(_packed_message(body + vfield(codec.F_SEQ, 5)))
    with pytest.raises(ValueError, match=r"holds field.*not columns"):
        decode_batch(_packed_message(body + lfield(codec.F_PROBE_ID, b"x")))
    # a frame whose claimed size is not its size: zstd knows its content size
    with pytest.raises(ValueError, match="does not decompress"):
        decode_batch(_packed_message(body, size=len(body) + 8))
    # a frame that is not protobuf inside
    with pytest.raises(ValueError, match="of the packed frame"):
        decode_batch(_packed_message(b"\x00\x01" + bytes(30)))
    # lz4: a frame shorter or longer than its packed_size (two frames back to back, too)
    with pytest.raises(ValueError, match=f"holds {len(body)} bytes, not packed_size {len(body) + 64} bytes"):
        decode_batch(_packed_message(body, "lz4", size=len(body) + 64))
    with pytest.raises(ValueError, match=f"holds more than packed_size {len(body) - 10} bytes"):
        decode_batch(_packed_message(body, "lz4", size=len(body) - 10))
    import pyarrow as pa

    twice = pa.Codec("lz4").compress(body, asbytes=True) * 2
    msg = _head(2) + vfield(codec.F_COMPRESSION, 1) + vfield(codec.F_PACKED_SIZE, len(body))
    with pytest.raises(ValueError, match=f"holds more than packed_size {len(body)} bytes"):
        decode_batch(msg + lfield(codec.F_PACKED, twice))
    with pytest.raises(ValueError, match="packed frame"):
        decode_batch(msg + lfield(codec.F_PACKED, twice[:-3]))


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_random_corruption_of_layout_2_never_yields_garbage(compression: str) -> None:
    b = realistic_batch(20, seed=13, v6_share=0.3)
    data = encode_batch(b, layout=2, compression=compression, seq=5, probe_id="probe", n_shards=8, shard=3)
    rejected = 0
    for decoded in decoded_corruptions(data, seed=14, count=1500, max_flips=3):
        if decoded is None:
            rejected += 1
            continue
        out, meta = decoded
        out.validate()
        assert meta.n_shards == 0 or meta.shard < meta.n_shards
        for c in PacketBatch.COLUMNS:
            assert getattr(out, c).flags.c_contiguous
    assert rejected > 0


def test_random_bytes_never_crash_the_decoder() -> None:
    rng = np.random.default_rng(15)
    head = _head(3)
    for _ in range(2000):
        tail = rng.integers(0, 256, int(rng.integers(0, 80)), dtype=np.uint8).tobytes()
        with contextlib.suppress(ValueError):
            decode_batch(head + tail)


def test_encode_rejects_bad_layout_and_compression() -> None:
    b = random_batch(2)
    with pytest.raises(ValueError, match="layout must be one of"):
        encode_batch(b, layout=3)
    with pytest.raises(ValueError, match="compression must be one of"):
        encode_batch(b, layout=2, compression="gzip")
    with pytest.raises(ValueError, match="needs layout 2"):
        encode_batch(b, compression="lz4")
    with pytest.raises(ValueError, match="wire_layout must be one of"):
        PublisherOptions(wire_layout=0)
    with pytest.raises(ValueError, match="needs wire_layout 2"):
        PublisherOptions(wire_layout=1, wire_compression="zstd")
    assert (PublisherOptions().wire_layout, PublisherOptions().wire_compression) == (2, "none")


def test_field_numbers_of_layout_2_match_the_proto() -> None:
    fields = {f.name: f.number for f in traffic_pb2.PacketBatch.DESCRIPTOR.fields}
    assert {c: fields[c] for c in codec.DENSE_FIELDS} == codec.DENSE_FIELDS
    assert fields["ts_base"] == codec.F_TS_BASE and fields["compression"] == codec.F_COMPRESSION
    assert fields["packed_size"] == codec.F_PACKED_SIZE and fields["packed"] == codec.F_PACKED


def test_probe_configuration_and_command_line_choose_the_layout(tmp_path, capsys) -> None:
    from netspectra.cli.live_cmds import _wire_option
    from netspectra.config import ConfigError, parse_config_text
    from netspectra.services.probe import ProbeOptions

    pcap = tmp_path / "x.pcap"
    pcap.write_bytes(b"")
    cfg = parse_config_text("probe:\n  wire_layout: 1\n", source="t.yaml", expand=False)
    pub = ProbeOptions.from_config(cfg, files=[pcap]).publisher
    assert (pub.wire_layout, pub.wire_compression) == (1, "none")
    cfg = parse_config_text("probe:\n  wire_compression: zstd\n", source="t.yaml", expand=False)
    pub = ProbeOptions.from_config(cfg, files=[pcap]).publisher
    assert (pub.wire_layout, pub.wire_compression) == (2, "zstd")
    pub = ProbeOptions.from_config(cfg, files=[pcap], wire_layout=2, wire_compression="lz4").publisher
    assert (pub.wire_layout, pub.wire_compression) == (2, "lz4")
    with pytest.raises(ConfigError, match="wire_layout"):
        parse_config_text("probe:\n  wire_layout: 3\n", source="t.yaml", expand=False)
    with pytest.raises(ConfigError, match="wire_compression"):
        parse_config_text("probe:\n  wire_compression: gzip\n", source="t.yaml", expand=False)
    assert _wire_option(None) == (None, None)
    assert _wire_option("1") == (1, "none") and _wire_option("2+lz4") == (2, "lz4")
    import typer

    for bad in ("3", "1+lz4", "2+gzip", ""):
        with pytest.raises(typer.Exit):
            _wire_option(bad)
        assert f"--wire {bad!r}: expected 1, 2, 2+lz4 or 2+zstd" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# messages sized by their real length (encode_messages' max_bytes)


@pytest.mark.parametrize("v6_share", [0.0, 0.05, 1.0])
@pytest.mark.parametrize("bunched", [False, True])
def test_messages_are_cut_by_length_and_lose_nothing(v6_share: float, bunched: bool) -> None:
    """Layout 2 messages of up to ``max_packets`` packets, each at most ``max_bytes`` long: consecutive
    ``seq``, exact ``shard_packets``, and the decoded messages are the batch, in order."""
    b = realistic_batch(20_000, seed=5, v6_share=v6_share)
    if bunched:  # every IPv6 row in the first quarter: an equal cut by length is still too long there
        b.src_ip[5000:, :12] = V4
        b.dst_ip[5000:, :12] = V4
        b.src_ip[:5000] = np.random.default_rng(6).integers(0, 256, (5000, 16))
    limit = 64 * 1024
    msgs = list(
        encode_messages(b, 1 << 20, 7, first_packet=100, max_bytes=limit, layout=2, shard=1, n_shards=4)
    )
    assert [s for s, _ in msgs] == list(range(7, 7 + len(msgs)))
    assert all(len(p) <= limit for _, p in msgs)
    decoded = [decode_batch(p) for _, p in msgs]
    starts = np.cumsum([0] + [len(x) for x, _ in decoded])[:-1] + 100
    assert [m.shard_packets for _, m in decoded] == list(starts)
    assert all(m.seq == s for (s, _), (_, m) in zip(msgs, decoded, strict=True))
    assert_same(PacketBatch.concat([x for x, _ in decoded]), b)
    # far fewer messages than the worst case of 49 bytes a packet would make for IPv4 traffic
    worst = -(-len(b) // max_packets_for_payload(limit, 1 << 20))
    if v6_share == 0.0 and not bunched:
        assert len(msgs) * 2 <= worst
    assert len(msgs) >= -(-sum(len(p) for _, p in msgs) // limit)


def test_max_packets_still_caps_and_one_packet_too_long_is_an_error() -> None:
    b = realistic_batch(1000, seed=7)
    msgs = list(encode_messages(b, 300, 1, max_bytes=1 << 20, layout=2))
    assert [len(decode_batch(p)[0]) for _, p in msgs] == [300, 300, 300, 100]
    # without max_bytes nothing is measured (layout 1's callers size by max_packets_for_payload)
    assert len(list(encode_messages(b, 1000, 1, layout=2))) == 1
    with pytest.raises(ValueError, match="more than max_payload 40"):
        list(encode_messages(b.head(3), 1000, 1, max_bytes=40, layout=2))


def test_publisher_default_fills_messages_by_length() -> None:
    """The probe's default: ``max_packets`` 32 768 (a probe batch split into 16 shards fits one message a
    shard), capped by what even the densest packets could fit, never beyond ``max_payload``."""
    assert PublisherOptions().max_packets == 32_768
    assert max_packets_for_payload(1 << 20, 1 << 20, per_packet=DENSE_MIN_BYTES_PER_PACKET) == (
        ((1 << 20) - 1024) // 19
    )
