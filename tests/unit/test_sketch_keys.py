"""MurmurHash3 x86_32 kernel, seed derivation, and the sketch key encoding / DecodeFlow text."""

from __future__ import annotations

import dataclasses
import ipaddress

import mmh3
import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.fields import FIELD_BYTES as KEY_FIELD_BYTES
from netspectra.sketches import keys as keys_mod
from netspectra.sketches.keys import (
    FIELD_BYTES,
    decode_flow,
    decode_flows,
    encode_flow_element,
    encode_keys,
    encode_keys_ref,
    key_length,
    validate_fields,
)
from netspectra.sketches.murmur import derive_seeds, hash_rows, murmur3_32, murmur3_32_py


def test_murmur_matches_mmh3_on_every_length_0_to_40() -> None:
    rng = np.random.default_rng(11)
    for length in range(41):
        for _ in range(25):
            data = rng.integers(0, 256, size=length, dtype=np.uint8)
            seed = int(rng.integers(0, 2**32))
            want = mmh3.hash(data.tobytes(), seed, signed=False)
            assert int(murmur3_32(data, length, seed)) == want, (length, seed)
            assert murmur3_32_py(data.tobytes(), seed) == want


def test_murmur_hashes_only_the_first_length_bytes() -> None:
    data = np.frombuffer(b"abcdefgh", dtype=np.uint8).copy()
    assert int(murmur3_32(data, 5, 17371)) == mmh3.hash(b"abcde", 17371, signed=False)


def test_hash_rows_equals_per_row_mmh3() -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 256, size=(500, 37), dtype=np.uint8)
    got = hash_rows(keys, 0xDEADBEEF)
    assert got.dtype == np.uint32
    assert got.tolist() == [mmh3.hash(k.tobytes(), 0xDEADBEEF, signed=False) for k in keys]


def test_derive_seeds_is_reproducible_and_prefix_stable() -> None:
    a = derive_seeds(42, 3)
    assert a.dtype == np.uint32 and a.shape == (3,)
    assert np.array_equal(a, derive_seeds(42, 3))
    assert np.array_equal(derive_seeds(42, 5)[:3], a)
    assert not np.array_equal(a, derive_seeds(43, 3))
    with pytest.raises(ValueError, match="non-negative"):
        derive_seeds(-1, 2)


def test_field_widths_agree_with_the_configuration() -> None:
    assert FIELD_BYTES == KEY_FIELD_BYTES
    assert key_length(["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]) == 37
    assert key_length(["DstPort", "Protocol"]) == 3


def _batch(rng: np.random.Generator, n: int) -> PacketBatch:
    src = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    v4 = rng.random(n) < 0.7
    src[v4, :10] = 0
    src[v4, 10:12] = 0xFF
    dst = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    dst[v4, :10] = 0
    dst[v4, 10:12] = 0xFF
    return PacketBatch(
        ts_ns=np.arange(n, dtype=np.int64),
        src_ip=src,
        dst_ip=dst,
        src_port=rng.integers(0, 65536, size=n).astype(np.uint16),
        dst_port=rng.integers(0, 65536, size=n).astype(np.uint16),
        protocol=rng.integers(0, 256, size=n).astype(np.uint8),
        length=rng.integers(40, 1515, size=n).astype(np.uint32),
    )


@pytest.mark.parametrize(
    "fields",
    [
        ["SrcIP"],
        ["DstIP", "SrcIP"],
        ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"],
        ["Protocol", "DstPort", "SrcPort"],
        ["DstIP", "SrcPort", "DstPort", "Protocol"],
        ["SrcIP", "DstIP"],
    ],
)
def test_encode_kernel_agrees_with_reference(fields: list[str]) -> None:
    batch = _batch(np.random.default_rng(len(fields)), 300)
    got = encode_keys(batch, fields)
    assert got.dtype == np.uint8 and got.shape == (300, key_length(fields)) and got.flags.c_contiguous
    assert np.array_equal(got, encode_keys_ref(batch, fields))


@pytest.mark.parametrize("fields", [["SrcIP"], ["SrcIP", "DstIP"], ["DstIP", "SrcIP"]])
def test_address_keys_take_the_word_kernel_and_agree_with_the_byte_kernel(fields: list[str]) -> None:
    # keys of addresses only (the shipped sketches': SrcIP, SrcIP‖DstIP) are copied as 8-byte words;
    # the same bytes as the general kernel's, for aligned columns, unaligned ones (views into a layout 1
    # message) and an empty batch
    batch = _batch(np.random.default_rng(11), 257)
    codes = np.array([keys_mod._CODE[f] for f in fields], np.int64)
    bytewise = keys_mod._encode_kernel(
        batch.src_ip, batch.dst_ip, batch.src_port, batch.dst_port, batch.protocol, codes, key_length(fields)
    )
    words = keys_mod._encode_address_words(batch.src_ip.view(np.uint64), batch.dst_ip.view(np.uint64), codes)
    assert words.view(np.uint8).tobytes() == bytewise.tobytes()
    got = encode_keys(batch, fields)
    assert got.dtype == np.uint8 and got.shape == bytewise.shape and got.flags.c_contiguous
    assert np.array_equal(got, bytewise) and np.array_equal(got, encode_keys_ref(batch, fields))
    # columns at an odd address: the word view is unaligned, the byte kernel takes them
    raw = np.zeros(257 * 32 + 1, np.uint8)
    src = raw[1 : 1 + 257 * 16].reshape(257, 16)
    dst = raw[1 + 257 * 16 :].reshape(257, 16)
    src[:], dst[:] = batch.src_ip, batch.dst_ip
    assert not src.view(np.uint64).flags.aligned
    odd = dataclasses.replace(batch, src_ip=src, dst_ip=dst)
    assert np.array_equal(encode_keys(odd, fields), bytewise)
    empty = encode_keys(batch.take(np.zeros(0, np.int64)), fields)
    assert empty.shape == (0, key_length(fields)) and empty.dtype == np.uint8


def test_encoding_layout_ports_big_endian_and_ipv4_mapped() -> None:
    batch = _batch(np.random.default_rng(0), 1)
    batch.src_ip[0] = np.frombuffer(ipaddress.IPv6Address("::ffff:10.1.2.3").packed, np.uint8)
    batch.src_port[0] = 0x1234
    batch.dst_port[0] = 443
    batch.protocol[0] = 6
    key = encode_keys(batch, ["SrcIP", "SrcPort", "DstPort", "Protocol"])[0].tobytes()
    assert key == bytes(10) + b"\xff\xff\x0a\x01\x02\x03" + b"\x12\x34" + b"\x01\xbb" + b"\x06"


def test_ipv4_keys_never_carry_left_over_bytes() -> None:
    # the original's bug 1: IPv4 copied into an un-zeroed pooled 16-byte slot made equal flows differ.
    # Here a v4 row's key depends only on that row, whatever rows (v6 or garbage) came before it.
    rng = np.random.default_rng(5)
    batch = _batch(rng, 64)
    v4_row = batch.take(np.array([next(i for i in range(64) if batch.src_ip[i, 10] == 0xFF)]))
    alone = encode_keys(v4_row, ["SrcIP"])
    mixed = encode_keys(PacketBatch.concat([batch, v4_row, batch, v4_row]), ["SrcIP"])
    assert np.array_equal(mixed[64], alone[0]) and np.array_equal(mixed[129], alone[0])
    assert alone[0, :12].tolist() == [0] * 10 + [0xFF, 0xFF]


def test_flow_element_keys_are_the_concatenation() -> None:
    batch = _batch(np.random.default_rng(9), 50)
    both = encode_flow_element(batch, ["SrcIP"], ["DstIP", "DstPort"])
    assert both.shape == (50, 34)
    assert np.array_equal(both[:, :16], encode_keys(batch, ["SrcIP"]))
    assert np.array_equal(both[:, 16:], encode_keys(batch, ["DstIP", "DstPort"]))
    # a field may be both flow and element (the original allowed it); each list alone is validated
    assert encode_flow_element(batch, ["SrcIP"], ["SrcIP"]).shape == (50, 32)


def test_decode_flow_text_like_the_original() -> None:
    fields = ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
    key = (
        ipaddress.IPv6Address("::ffff:192.168.1.20").packed
        + ipaddress.IPv6Address("2001:db8::1").packed
        + (51000).to_bytes(2, "big")
        + (443).to_bytes(2, "big")
        + bytes([6])
    )
    assert decode_flow(key, fields) == "192.168.1.20 2001:db8::1 51000 443 6"
    # a longer (flow‖element) key decodes its flow part only
    assert decode_flow(key, ["SrcIP"]) == "192.168.1.20"
    assert decode_flow(np.frombuffer(key, np.uint8), ["SrcIP", "DstIP"]) == "192.168.1.20 2001:db8::1"
    with pytest.raises(ValueError, match="shorter"):
        decode_flow(key[:10], ["SrcIP"])


def test_decode_flows_round_trips_encoded_batches() -> None:
    batch = _batch(np.random.default_rng(21), 40)
    fields = ["DstIP", "SrcPort", "Protocol"]
    texts = decode_flows(encode_keys(batch, fields), fields)
    for i, text in enumerate(texts):
        ip, port, proto = text.split(" ")
        addr = ipaddress.IPv6Address(batch.dst_ip[i].tobytes())
        want_ip = str(addr.ipv4_mapped) if addr.ipv4_mapped else addr.compressed
        assert (ip, int(port), int(proto)) == (want_ip, batch.src_port[i], batch.protocol[i])


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (["srcip"], "case-sensitive: did you mean 'SrcIP'"),
        (["SrcIP", "Bogus"], "unknown field 'Bogus'"),
        (["SrcIP", "SrcIP"], "listed twice"),
        ([], "is empty"),
        ("SrcIP", "must be a list"),
    ],
)
def test_field_validation_errors(fields: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_fields(fields, "flow_fields")  # type: ignore[arg-type]
    assert validate_fields([], "element_fields", required=False) == ()


@pytest.mark.parametrize("field", ["SrcIP", "DstIP"])
def test_a_one_address_key_is_the_batch_column_unless_read_only(field: str) -> None:
    """A key of one address is the batch's own column (no copy); a read-only column (a received
    message's) is copied, so that the kernels see the writable arrays they were compiled for."""
    batch = _batch(np.random.default_rng(5), 100)
    column = batch.src_ip if field == "SrcIP" else batch.dst_ip
    got = encode_keys(batch, [field])
    assert got is column and np.array_equal(got, encode_keys_ref(batch, [field]))
    column.flags.writeable = False
    copied = encode_keys(batch, [field])
    assert copied is not column and copied.flags.writeable and np.array_equal(copied, column)
