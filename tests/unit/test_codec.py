"""The batch codec: fast-path round trips, strict rejection of malformed input, the original's
one-PacketInfo-per-message path, and the shard hash (numba kernel against its plain-Python reference)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.proto.v1 import traffic_pb2
from netspectra.transport import codec
from netspectra.transport.codec import (
    BatchMeta,
    PacketInfoStats,
    batch_to_packet_infos,
    decode_batch,
    encode_batch,
    packet_info_to_batch,
    shard_of,
    shard_of_ref,
    split_by_shard,
)

V4 = bytes(10) + b"\xff\xff"


def random_batch(n: int, seed: int = 0, v4_share: float = 0.5) -> PacketBatch:
    """Random packets; about ``v4_share`` of them IPv4 (IPv4-mapped), the rest IPv6."""
    rng = np.random.default_rng(seed)
    b = PacketBatch.empty(n)
    b.ts_ns[:] = rng.integers(-(2**62), 2**62, n)
    b.src_ip[:] = rng.integers(0, 256, (n, 16))
    b.dst_ip[:] = rng.integers(0, 256, (n, 16))
    v4 = rng.random(n) < v4_share
    for ip in (b.src_ip, b.dst_ip):
        ip[v4, :12] = np.frombuffer(V4, np.uint8)
    b.src_port[:] = rng.integers(0, 65536, n)
    b.dst_port[:] = rng.integers(0, 65536, n)
    b.protocol[:] = rng.integers(0, 256, n)
    b.length[:] = rng.integers(0, 2**32, n)
    return b


def assert_same(a: PacketBatch, b: PacketBatch) -> None:
    assert len(a) == len(b)
    for c in PacketBatch.COLUMNS:
        x, y = getattr(a, c), getattr(b, c)
        assert x.dtype == y.dtype and x.shape == y.shape, c
        assert np.array_equal(x, y), c


def varint(v: int) -> bytes:
    out = bytearray()
    while v > 0x7F:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def vfield(num: int, v: int) -> bytes:
    return varint(num << 3) + varint(v)


def lfield(num: int, payload: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(payload)) + payload


# ---------------------------------------------------------------------------------------------------
# fast path


def test_field_numbers_match_the_proto() -> None:
    fields = {f.name: f.number for f in traffic_pb2.PacketBatch.DESCRIPTOR.fields}
    assert fields["version"] == codec.F_VERSION and fields["count"] == codec.F_COUNT
    assert fields["seq"] == codec.F_SEQ and fields["probe_id"] == codec.F_PROBE_ID
    assert fields["shard"] == codec.F_SHARD and fields["n_shards"] == codec.F_N_SHARDS
    assert fields["link_type"] == codec.F_LINK_TYPE and fields["padding"] == codec.F_PADDING
    assert fields["kernel_dropped"] == codec.F_KERNEL_DROPPED
    assert fields["probe_dropped"] == codec.F_PROBE_DROPPED and fields["skipped"] == codec.F_SKIPPED
    assert fields["shard_packets"] == codec.F_SHARD_PACKETS
    assert {c: fields[c] for c in PacketBatch.COLUMNS} == codec.COLUMN_FIELDS
    assert {c: fields[c] for c in PacketBatch.OPTIONAL} == codec.OPTIONAL_FIELDS
    assert set(fields) == {f.name for f in BatchMeta.__dataclass_fields__.values()} | {
        "version",
        "count",
        "padding",
        *PacketBatch.COLUMNS,
        *PacketBatch.OPTIONAL,
        # layout 2 (tests/unit/test_wire_dense.py)
        "ts_base",
        "compression",
        "packed_size",
        "packed",
        *codec.DENSE_FIELDS,
    }


def with_optional(b: PacketBatch, seed: int = 0, names: tuple[str, ...] | None = None) -> PacketBatch:
    """``b`` with random values in the optional columns ``names`` (default: all of them)."""
    rng = np.random.default_rng(seed)
    n = len(b)
    cols = {}
    for c in PacketBatch.OPTIONAL if names is None else names:
        dt = PacketBatch.OPTIONAL[c]
        shape = (n, *PacketBatch.ROW_SHAPES.get(c, ()))
        # every bit pattern of the dtype (64-bit ones drawn as int64 and cast: uint64's upper half too)
        info = np.iinfo(np.int64 if dt.itemsize == 8 else dt)
        cols[c] = rng.integers(info.min, info.max, shape, dtype=np.int64, endpoint=True).astype(dt)
    return b.with_columns(**cols)


#: Sets of optional columns a round trip carries (None: every one), shared with test_wire_dense.
OPTIONAL_SETS: list[tuple[str, ...] | None] = [
    None,
    ("tcp_flags",),
    ("vlan_id", "ip_length"),
    ("icmp_type_code",),
    ("packets", "octets", "sampling_rate", "flow_start_ns", "in_if", "out_if", "exporter"),
]


@pytest.mark.parametrize("n", [1, 2, 7, 2000])
@pytest.mark.parametrize(
    "names",
    OPTIONAL_SETS,
    ids=str,
)
def test_optional_columns_round_trip(n: int, names: tuple[str, ...] | None) -> None:
    b = with_optional(random_batch(n, seed=n), seed=n + 1, names=names)
    for header in range(8):  # every header length: each optional column is an aligned view too
        data = encode_batch(b, probe_id="y" * header)
        out, _ = decode_batch(data)
        assert out.present() == b.present()
        out.validate()
        whole = np.frombuffer(data, np.uint8)
        for c in b.columns():
            x, y = getattr(b, c), getattr(out, c)
            assert x.dtype == y.dtype and np.array_equal(x, y), c
            assert np.shares_memory(y, whole) and y.flags.aligned, c
    # the generated class sees the same bytes in fields 23-26
    msg = traffic_pb2.PacketBatch.FromString(encode_batch(b))
    for c in b.present():
        assert getattr(msg, c) == getattr(b, c).astype(codec._WIRE_DTYPE[c]).tobytes(), c


def test_absent_optional_columns_stay_absent_and_cost_nothing() -> None:
    b = random_batch(100, seed=11)
    plain = encode_batch(b)
    out, _ = decode_batch(plain)
    assert out.present() == ()
    assert all(getattr(out, c) is None for c in PacketBatch.OPTIONAL)
    full = encode_batch(with_optional(b))
    per_row = sum(PacketBatch.row_bytes(c) for c in PacketBatch.OPTIONAL)  # 9 + 52 of flow exports
    assert len(full) - len(plain) >= 100 * per_row  # only when carried


def test_an_optional_column_of_the_wrong_length_is_rejected() -> None:
    b = random_batch(5, seed=12)
    msg = traffic_pb2.PacketBatch(
        version=1,
        count=5,
        tcp_flags=b"\x02" * 4,
        **{c: getattr(b, c).astype(codec._WIRE_DTYPE[c]).tobytes() for c in PacketBatch.COLUMNS},
    )
    with pytest.raises(ValueError, match="column tcp_flags is 4 bytes, expected count 5"):
        decode_batch(msg.SerializeToString())


def test_shard_split_keeps_optional_columns() -> None:
    b = with_optional(random_batch(500, seed=13))
    shards = shard_of(b, 4)
    parts = split_by_shard(b, shards, 4)
    for i, part in enumerate(parts):
        assert part.present() == b.present()
        for c in PacketBatch.OPTIONAL:
            assert np.array_equal(getattr(part, c), getattr(b, c)[shards == i]), c


@pytest.mark.parametrize("n", [0, 1, 2, 7, 2000, 65536])
@pytest.mark.parametrize("v4_share", [0.0, 0.5, 1.0], ids=["ipv6", "mixed", "ipv4"])
def test_round_trip(n: int, v4_share: float) -> None:
    b = random_batch(n, seed=n, v4_share=v4_share)
    meta = BatchMeta(seq=2**64 - 1, probe_id="probe-ü:eth0", shard=3, n_shards=4, link_type=1)
    meta = dataclasses.replace(meta, skipped=9, shard_packets=12345)
    data = encode_batch(b, **{f: getattr(meta, f) for f in BatchMeta.__dataclass_fields__})
    assert traffic_pb2.PacketBatch.FromString(data).shard_packets == 12345
    out, got = decode_batch(data)
    assert_same(b, out)
    assert got == meta
    out.validate()
    if n:  # the kernels take the read-only views as they are
        assert np.array_equal(shard_of(out, 7), shard_of(b, 7))


def test_defaults_and_link_type_presence() -> None:
    b = random_batch(3)
    assert decode_batch(encode_batch(b))[1] == BatchMeta()
    assert decode_batch(encode_batch(b, link_type=0))[1].link_type == 0  # LINKTYPE_NULL, not "absent"
    assert decode_batch(encode_batch(b))[1].link_type is None


def test_empty_batch_is_tiny_and_valid() -> None:
    data = encode_batch(PacketBatch.empty(0), seq=1)
    assert len(data) <= 6
    out, meta = decode_batch(data)
    assert len(out) == 0 and meta.seq == 1
    out.validate()


@pytest.mark.parametrize("n", [1, 3, 2000])
def test_decoded_columns_are_aligned_views_of_the_buffer(n: int) -> None:
    b = random_batch(n, seed=3)
    for header in range(12):  # every header length: the padding must realign the columns each time
        data = encode_batch(b, probe_id="x" * header)
        out, _ = decode_batch(data)
        assert_same(b, out)
        whole = np.frombuffer(data, np.uint8)
        for c in PacketBatch.COLUMNS:
            arr = getattr(out, c)
            assert np.shares_memory(arr, whole), f"{c} was copied"
            assert arr.flags.aligned and arr.flags.c_contiguous and not arr.flags.writeable, c
            assert arr.ctypes.data % arr.dtype.itemsize == 0, c


def test_unaligned_buffer_still_decodes() -> None:
    b = random_batch(100, seed=4)
    data = encode_batch(b)
    shifted = bytearray(b"\x00" + data)
    out, _ = decode_batch(memoryview(shifted)[1:])
    assert_same(b, out)
    assert all(getattr(out, c).flags.aligned for c in PacketBatch.COLUMNS)


def test_generated_class_reads_what_we_write() -> None:
    b = random_batch(50, seed=5)
    data = encode_batch(b, seq=7, probe_id="p", shard=1, n_shards=2, link_type=113, kernel_dropped=5)
    msg = traffic_pb2.PacketBatch.FromString(data)
    assert (msg.version, msg.count, msg.seq, msg.probe_id) == (1, 50, 7, "p")
    assert (msg.shard, msg.n_shards, msg.link_type, msg.kernel_dropped) == (1, 2, 113, 5)
    assert msg.ts_ns == b.ts_ns.astype("<i8").tobytes()
    assert msg.src_ip == b.src_ip.tobytes() and msg.dst_ip == b.dst_ip.tobytes()
    assert msg.src_port == b.src_port.astype("<u2").tobytes()
    assert msg.dst_port == b.dst_port.astype("<u2").tobytes()
    assert msg.protocol == b.protocol.tobytes() and msg.length == b.length.astype("<u4").tobytes()


def test_we_read_what_the_generated_class_writes() -> None:
    b = random_batch(33, seed=6)
    msg = traffic_pb2.PacketBatch(
        version=1,
        count=33,
        seq=9,
        probe_id="gen",
        link_type=0,
        skipped=4,
        **{c: getattr(b, c).astype(codec._WIRE_DTYPE[c]).tobytes() for c in PacketBatch.COLUMNS},
    )
    out, meta = decode_batch(msg.SerializeToString())
    assert_same(b, out)
    assert meta == BatchMeta(seq=9, probe_id="gen", link_type=0, skipped=4)


def test_unknown_fields_are_skipped_and_last_value_wins() -> None:
    b = random_batch(5, seed=7)
    data = encode_batch(b, seq=1)
    extra = vfield(99, 5) + lfield(100, b"future") + varint(101 << 3 | 1) + bytes(8) + varint(102 << 3 | 5)
    extra += bytes(4) + vfield(codec.F_SEQ, 2)
    out, meta = decode_batch(data + extra)
    assert_same(b, out)
    assert meta.seq == 2 == traffic_pb2.PacketBatch.FromString(data + extra).seq


# ---------------------------------------------------------------------------------------------------
# malformed input


def test_every_truncation_of_a_batch_is_rejected() -> None:
    data = encode_batch(random_batch(3, seed=8), seq=300, probe_id="p", shard=1, n_shards=2, link_type=1)
    for cut in range(len(data)):
        with pytest.raises(ValueError, match="PacketBatch"):
            decode_batch(data[:cut])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "layout version 0"),
        (vfield(1, 3), "layout version 3"),
        (vfield(1, 1) + vfield(2, 1), "column ts_ns is missing"),
        (vfield(1, 1) + vfield(2, 1) + lfield(16, bytes(7)), "column ts_ns is 7 bytes"),
        (vfield(1, 1) + lfield(16, bytes(8)), r"column ts_ns is 8 bytes, expected count 0"),
        (vfield(1, 1) + vfield(2, 2**32), "does not fit uint32"),
        (vfield(1, 1) + vfield(5, 4) + vfield(6, 4), "shard 4 is not below n_shards 4"),
        (vfield(1, 1) + lfield(4, b"\xff\xfe"), "not valid UTF-8"),
        (vfield(1, 1) + lfield(2, b"x"), "must be a varint"),
        (vfield(1, 1) + vfield(16, 0), "must be length-delimited"),
        (vfield(1, 1) + varint(3 << 3 | 5) + bytes(4), "fixed-width"),
        (vfield(1, 1) + varint(99 << 3 | 3), "unsupported wire type 3"),
        (vfield(1, 1) + varint(99 << 3 | 7), "unsupported wire type 7"),
        (b"\x00\x01", "field number 0"),
        (vfield(1, 1) + varint(3 << 3) + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
        (vfield(1, 1) + varint(3 << 3) + b"\xff" * 9 + b"\x7f", "exceeds 64 bits"),
        (vfield(1, 1) + varint(100 << 3 | 2) + varint(50) + bytes(10), "claims 50 bytes"),
        (vfield(1, 1) + varint(101 << 3 | 1) + bytes(3), "truncated fixed-width"),
    ],
)
def test_malformed_messages_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_batch(data)


def test_a_packet_info_is_not_a_batch() -> None:
    pi = batch_to_packet_infos(random_batch(1, seed=9))[0].SerializeToString()
    with pytest.raises(ValueError, match="PacketBatch"):
        decode_batch(pi)


def decoded_corruptions(
    data: bytes, seed: int, count: int, max_flips: int = 1
) -> Iterator[tuple[PacketBatch, BatchMeta] | None]:
    """``count`` copies of the message ``data``, each with 1 to ``max_flips`` bytes at random places XORed
    with a non-zero value (generator seeded with ``seed``), decoded: ``(batch, meta)``, or None where
    ``decode_batch`` refused it with ``ValueError``."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        bad = bytearray(data)
        for _ in range(1 if max_flips == 1 else int(rng.integers(1, max_flips + 1))):
            i = int(rng.integers(0, len(bad)))
            bad[i] ^= int(rng.integers(1, 256))
        try:
            yield decode_batch(bytes(bad))
        except ValueError:
            yield None


def test_random_corruption_never_yields_garbage() -> None:
    """A flipped byte either raises ValueError or gives a batch that satisfies every invariant (protobuf
    has no checksum: a flip inside column data is undetectable, and changes only that data)."""
    b = random_batch(20, seed=10)
    data = encode_batch(b, seq=5, probe_id="probe", n_shards=8, shard=3)
    rejected = 0
    for decoded in decoded_corruptions(data, seed=11, count=3000):
        if decoded is None:
            rejected += 1
            continue
        out, meta = decoded
        out.validate()
        assert len(out) == 20  # a single flipped byte can change values, never the packet count
        assert meta.n_shards == 0 or meta.shard < meta.n_shards
    assert rejected > 0


def test_encode_rejects_bad_input() -> None:
    b = random_batch(4)
    with pytest.raises(ValueError, match="not below"):
        encode_batch(b, shard=4, n_shards=4)
    with pytest.raises(ValueError, match="out of range"):
        encode_batch(b, seq=-1)
    with pytest.raises(ValueError, match="out of range"):
        encode_batch(b, link_type=2**32)
    with pytest.raises(TypeError):
        encode_batch(b, seq=1.5)  # type: ignore[arg-type]
    wrong = PacketBatch(*(getattr(b, c) for c in PacketBatch.COLUMNS[:-1]), b.length.astype(np.int64))
    with pytest.raises(ValueError, match="column length: dtype"):
        encode_batch(wrong)


# ---------------------------------------------------------------------------------------------------
# compatibility path: one PacketInfo per message, as the original's probe sends them


def original_packet_info(
    src: bytes, dst: bytes, sp: int, dp: int, pr: int, sec: int, ns: int, n: int
) -> bytes:
    """PacketInfo bytes laid out by hand from the original's field numbers (traffic.proto), zero values
    omitted as every proto3 encoder (Go's included) does."""

    def v(num: int, value: int) -> bytes:
        return vfield(num, value) if value else b""

    ft = lfield(1, src) + lfield(2, dst) + v(3, sp) + v(4, dp) + v(5, pr)
    return lfield(1, v(1, sec) + v(2, ns)) + lfield(2, ft) + v(3, n)


def test_packet_info_bytes_of_the_original() -> None:
    msgs = [
        original_packet_info(bytes([10, 0, 0, 1]), bytes([192, 168, 1, 2]), 1234, 80, 6, 1700000000, 5, 1514),
        original_packet_info(bytes(range(16)), bytes(range(16, 32)), 53, 5353, 17, 1700000001, 0, 90),
    ]
    stats = PacketInfoStats()
    b = packet_info_to_batch(msgs, stats)
    b.validate()
    assert bytes(b.src_ip[0]) == V4 + bytes([10, 0, 0, 1])
    assert bytes(b.dst_ip[0]) == V4 + bytes([192, 168, 1, 2])
    assert bytes(b.src_ip[1]) == bytes(range(16)) and bytes(b.dst_ip[1]) == bytes(range(16, 32))
    assert b.ts_ns.tolist() == [1_700_000_000_000_000_005, 1_700_000_001_000_000_000]
    assert b.src_port.tolist() == [1234, 53] and b.dst_port.tolist() == [80, 5353]
    assert b.protocol.tolist() == [6, 17] and b.length.tolist() == [1514, 90]
    assert (stats.messages, stats.converted, stats.skipped) == (2, 2, 0)
    # and the reverse gives exactly the original's bytes (4-byte IPv4, same field order)
    assert [m.SerializeToString() for m in batch_to_packet_infos(b)] == msgs


def test_packet_info_skips_are_counted() -> None:
    good = original_packet_info(bytes(4), bytes(4), 1, 2, 6, 1, 0, 60)
    no_tuple = lfield(1, vfield(1, 1)) + vfield(3, 60)
    bad_addr = original_packet_info(bytes(5), bytes(4), 1, 2, 6, 1, 0, 60)
    big_port = original_packet_info(bytes(4), bytes(4), 70000, 2, 6, 1, 0, 60)
    big_proto = original_packet_info(bytes(4), bytes(4), 1, 2, 256, 1, 0, 60)
    big_len = original_packet_info(bytes(4), bytes(4), 1, 2, 6, 1, 0, 2**32)
    far_time = original_packet_info(bytes(4), bytes(4), 1, 2, 6, 10**12, 0, 60)
    bad_nanos = original_packet_info(bytes(4), bytes(4), 1, 2, 6, 1, 10**9, 60)
    no_time = lfield(2, lfield(1, bytes(4)) + lfield(2, bytes(4))) + vfield(3, 60)
    garbage = b"\xff\xff\xff"
    obj = traffic_pb2.PacketInfo.FromString(good)
    stats = PacketInfoStats()
    msgs = [good, no_tuple, bad_addr, big_port, big_proto, big_len, far_time, bad_nanos, no_time]
    msgs += [garbage, obj]
    b = packet_info_to_batch(msgs, stats)
    assert len(b) == 3 and b.ts_ns.tolist() == [1_000_000_000, 0, 1_000_000_000]
    assert (stats.messages, stats.converted, stats.undecodable, stats.no_five_tuple) == (11, 3, 1, 1)
    assert (stats.bad_address, stats.out_of_range, stats.no_timestamp, stats.skipped) == (1, 5, 1, 8)
    packet_info_to_batch([no_tuple, memoryview(good)], stats)  # counters accumulate across calls
    assert (stats.messages, stats.converted, stats.no_five_tuple) == (13, 4, 2)


def test_packet_info_empty_input() -> None:
    b = packet_info_to_batch([])
    b.validate()
    assert len(b) == 0


@pytest.mark.parametrize("v4_share", [0.0, 0.5, 1.0], ids=["ipv6", "mixed", "ipv4"])
def test_packet_info_round_trip(v4_share: float) -> None:
    b = random_batch(300, seed=12, v4_share=v4_share)
    infos = batch_to_packet_infos(b)
    v4 = [bytes(b.src_ip[i, :12]) == V4 for i in range(len(b))]
    assert [len(m.five_tuple.src_ip) for m in infos] == [4 if x else 16 for x in v4]
    assert all(0 <= m.timestamp.nanos < 10**9 for m in infos)
    assert_same(b, packet_info_to_batch([m.SerializeToString() for m in infos]))
    assert_same(b, packet_info_to_batch(infos))


# ---------------------------------------------------------------------------------------------------
# sharding


@pytest.mark.parametrize("n_shards", [1, 3, 16, 256])
@pytest.mark.parametrize(
    "fields",
    [codec.FIVE_TUPLE, ("SrcIP",), ("DstIP",), ("DstPort", "SrcIP"), ("Protocol",)],
    ids=["five_tuple", "src_ip", "dst_ip", "dport_src", "proto"],
)
def test_shard_kernel_agrees_with_reference(n_shards: int, fields: tuple[str, ...]) -> None:
    b = random_batch(1500, seed=n_shards)
    got = shard_of(b, n_shards, fields)
    assert got.dtype == np.uint32 and got.shape == (len(b),)
    assert np.array_equal(got, shard_of_ref(b, n_shards, fields))
    assert got.max(initial=0) < n_shards


def test_shard_hash_is_fixed_bytes_contract() -> None:
    import mmh3

    b = random_batch(1, seed=13)
    key = bytes(b.src_ip[0]) + bytes(b.dst_ip[0]) + int(b.src_port[0]).to_bytes(2, "big")
    key += int(b.dst_port[0]).to_bytes(2, "big") + bytes([b.protocol[0]])
    assert int(shard_of(b, 1000)[0]) == mmh3.hash(key, 0x4E535348, signed=False) % 1000


def test_shard_by_source_keeps_sources_whole_and_spreads_evenly() -> None:
    b = random_batch(65536, seed=14)
    b.src_ip[:] = b.src_ip[np.arange(65536) % 512]  # 512 sources, many packets each
    s = shard_of(b, 16, ("SrcIP",))
    for src in range(512):
        assert len(set(s[np.arange(src, 65536, 512)].tolist())) == 1
    counts = np.bincount(shard_of(random_batch(65536, seed=15), 16), minlength=16)
    assert counts.min() > 0.9 * 4096 and counts.max() < 1.1 * 4096


def test_shard_of_rejects_bad_arguments() -> None:
    b = random_batch(2)
    with pytest.raises(ValueError, match="at least 1"):
        shard_of(b, 0)
    with pytest.raises(ValueError, match="unknown field"):
        shard_of(b, 2, ("SrcIp",))


def test_split_by_shard_keeps_order() -> None:
    b = random_batch(1000, seed=16)
    s = shard_of(b, 5)
    parts = split_by_shard(b, s, 5)
    assert len(parts) == 5 and sum(len(p) for p in parts) == 1000
    for i, p in enumerate(parts):
        p.validate()
        assert_same(p, b.take(np.flatnonzero(s == i)))
    assert [len(p) for p in split_by_shard(PacketBatch.empty(0), np.empty(0, np.uint32), 3)] == [0, 0, 0]
    with pytest.raises(ValueError, match="shape"):
        split_by_shard(b, s[:-1], 5)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        split_by_shard(b, np.full(1000, 5), 5)


# ---------------------------------------------------------------------------------------------------
# speed, measured for the log only (pytest -rP or -s shows it); nothing is asserted about it


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


@pytest.mark.parametrize("n", [2000, 65536])
def test_codec_speed_log(n: int, record_property) -> None:
    b = random_batch(n, seed=n)
    data = encode_batch(b, seq=1, probe_id="bench")
    shard_of(b.head(1), 16)  # compiled before timing
    enc = _best(lambda: encode_batch(b, seq=1, probe_id="bench"), 20)
    dec = _best(lambda: decode_batch(data), 20)
    shard = _best(lambda: shard_of(b, 16), 5)
    msg = traffic_pb2.PacketBatch()
    pb_dec = _best(lambda: msg.ParseFromString(data), 20)
    small = b.head(min(n, 2000))
    infos = [m.SerializeToString() for m in batch_to_packet_infos(small)]
    compat = _best(lambda: packet_info_to_batch(infos), 3) / len(small) * n
    dense = encode_batch(b, layout=2)
    enc2 = _best(lambda: encode_batch(b, layout=2), 20)
    dec2 = _best(lambda: decode_batch(dense), 20)
    line = (
        f"codec n={n}: layout 2 {len(dense) / n:.1f} B/pkt (random values), encode {enc2 * 1e3:.3f} ms, "
        f"decode {dec2 * 1e3:.3f} ms; layout 1 "
        f"{len(data) / n:.1f} B/pkt; encode {enc * 1e3:.3f} ms, decode {dec * 1e3:.3f} ms "
        f"(generated-class parse {pb_dec * 1e3:.3f} ms), shard_of {shard / n * 1e9:.1f} ns/pkt; "
        f"PacketInfo compat path {compat * 1e3:.1f} ms per {n} packets"
    )
    print(line)
    record_property("codec_speed", line)
    assert len(data) > n * 49  # the message holds every column (49 bytes per packet)
    assert len(dense) <= len(data) + 16


@pytest.mark.parametrize("n_shards", [1, 3, 16])
def test_shard_order_kernel_agrees_with_a_stable_argsort(n_shards: int) -> None:
    rng = np.random.default_rng(n_shards)
    for n in (0, 1, 5, 3000):
        shards = rng.integers(0, n_shards, n).astype(np.uint32)
        order, bounds, bad = codec._shard_order(shards, n_shards)
        assert bad == -1
        assert np.array_equal(order, np.argsort(shards, kind="stable"))
        assert np.array_equal(np.diff(bounds), np.bincount(shards, minlength=n_shards))
    b = random_batch(50, seed=1)
    with pytest.raises(ValueError, match="row 3 has 7"):
        split_by_shard(b, np.where(np.arange(50) == 3, 7, 0), 4)
    with pytest.raises(ValueError, match="must be integers"):
        split_by_shard(b, np.zeros(50), 4)


def test_split_by_shard_fused_gather_and_its_fallback_agree() -> None:
    """The one-pass gather of the core columns (contiguous, aligned columns) and the per-column path
    (any other layout: here every other row of a larger batch) give the reference's parts."""
    big = random_batch(2000, seed=21)
    strided = PacketBatch(*(getattr(big, c)[::2] for c in PacketBatch.COLUMNS))
    dense = PacketBatch(*(np.ascontiguousarray(getattr(strided, c)) for c in PacketBatch.COLUMNS))
    assert not strided.src_ip.flags.c_contiguous and dense.src_ip.flags.c_contiguous
    s = shard_of(dense, 7)
    for b in (strided, dense):
        for p, i in zip(split_by_shard(b, s, 7), range(7), strict=True):
            assert_same(p, dense.take(np.flatnonzero(s == i)))


def test_split_by_shard_into_a_kept_scratch_gives_the_same_parts() -> None:
    scratch: dict = {}
    first = None
    for n, seed in ((300, 1), (100, 2), (500, 3)):  # smaller, then larger than the buffers
        b = with_optional(random_batch(n, seed=seed), seed=seed, names=("tcp_flags", "exporter"))
        shards = shard_of(b, 5)
        want = split_by_shard(b, shards, 5)
        got = split_by_shard(b, shards, 5, scratch=scratch)
        for w, g in zip(want, got, strict=True):
            for c in (*PacketBatch.COLUMNS, "tcp_flags", "exporter"):
                assert np.array_equal(getattr(w, c), getattr(g, c)), c
        if first is None:
            first = scratch["src_ip"]
        elif n <= 300:
            assert scratch["src_ip"] is first  # reused, not reallocated
    assert scratch["src_ip"].shape[0] == 500 and set(scratch) >= {"ts_ns", "exporter", "tcp_flags"}
