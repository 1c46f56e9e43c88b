"""Fuzzing the transport codec: ``decode_batch`` and ``packet_info_to_batch`` on bytes from anywhere.

A message on NATS can come from any producer, so the decoders are the boundary that must hold:
``decode_batch`` raises ``ValueError`` or returns a batch that passes :meth:`PacketBatch.validate`
(never another exception, never a partial batch); every strict prefix of a non-empty batch's encoding
is refused; valid encodings round-trip, in both layouts (layout 2 compressed too);
``packet_info_to_batch`` never raises and counts every message exactly once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as hs

from netspectra.batch import PacketBatch
from netspectra.transport.codec import (
    PacketInfoStats,
    decode_batch,
    encode_batch,
    packet_info_to_batch,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzlib import fuzz_settings

pytestmark = pytest.mark.fuzz

U64 = 2**64 - 1


def check_decoded(data: bytes | bytearray | memoryview) -> tuple | None:
    """decode_batch's contract on any input: ValueError, or a batch that validates."""
    try:
        batch, meta = decode_batch(data)
    except ValueError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("PacketBatch"), str(exc)
        return None
    batch.validate()
    assert (
        0 <= meta.shard < 2**32
        and 0 <= meta.n_shards < 2**32
        and (meta.n_shards == 0 or meta.shard < meta.n_shards)
    )
    assert 0 <= meta.seq <= U64 and 0 <= meta.kernel_dropped <= U64 and 0 <= meta.probe_dropped <= U64
    assert meta.link_type is None or 0 <= meta.link_type < 2**32
    return batch, meta


@hs.composite
def batches(draw: hs.DrawFn) -> PacketBatch:
    n = draw(hs.integers(0, 20))
    rnd = np.random.default_rng(draw(hs.integers(0, 2**32 - 1)))
    return PacketBatch(
        ts_ns=rnd.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True),
        src_ip=rnd.integers(0, 255, (n, 16), dtype=np.uint8, endpoint=True),
        dst_ip=rnd.integers(0, 255, (n, 16), dtype=np.uint8, endpoint=True),
        src_port=rnd.integers(0, 65535, n, dtype=np.uint16, endpoint=True),
        dst_port=rnd.integers(0, 65535, n, dtype=np.uint16, endpoint=True),
        protocol=rnd.integers(0, 255, n, dtype=np.uint8, endpoint=True),
        length=rnd.integers(0, 2**32 - 1, n, dtype=np.uint32, endpoint=True),
    )


@hs.composite
def metas(draw: hs.DrawFn) -> dict:
    n_shards = draw(hs.integers(0, 2**32 - 1))
    return {
        "seq": draw(hs.integers(0, U64)),
        "probe_id": draw(hs.text(max_size=12)),
        "n_shards": n_shards,
        "shard": draw(hs.integers(0, max(0, n_shards - 1))),
        "link_type": draw(hs.none() | hs.integers(0, 2**32 - 1)),
        "kernel_dropped": draw(hs.integers(0, U64)),
        "probe_dropped": draw(hs.integers(0, U64)),
        "skipped": draw(hs.integers(0, U64)),
    }


@fuzz_settings(400)
@given(data=hs.binary(max_size=512))
def test_arbitrary_bytes(data: bytes) -> None:
    check_decoded(data)
    check_decoded(bytearray(data))
    check_decoded(memoryview(data)[1:])  # an unaligned view


@fuzz_settings(300)
@given(batch=batches(), meta=metas(), draw=hs.data())
def test_round_trip_cuts_and_mutations(batch: PacketBatch, meta: dict, draw: hs.DataObject) -> None:
    raw = encode_batch(batch, **meta)
    got, got_meta = decode_batch(raw)
    for c in PacketBatch.COLUMNS:
        assert np.array_equal(getattr(got, c), getattr(batch, c)), c
    assert got_meta.seq == meta["seq"] and got_meta.probe_id == meta["probe_id"]
    assert got_meta.link_type == meta["link_type"] and got_meta.shard == meta["shard"]

    _check_cuts_and_mutations(raw, len(batch), draw)


def _check_cuts_and_mutations(raw: bytes, n: int, draw: hs.DataObject, **encoding: str | int) -> None:
    """The encoding ``raw`` of an ``n``-packet batch: cut anywhere (``n`` > 0) it is refused; with 1-6
    bytes overwritten it is refused or decodes to a valid batch, which re-encodes (``encoding``: the
    layout and compression) to the same values."""
    if n:  # a message cut anywhere never reads as a (smaller) valid batch
        cut = draw.draw(hs.integers(0, len(raw) - 1))
        with pytest.raises(ValueError):
            decode_batch(raw[:cut])
    b = bytearray(raw)
    for _ in range(draw.draw(hs.integers(1, 6))):
        b[draw.draw(hs.integers(0, len(b) - 1))] = draw.draw(hs.integers(0, 255))
    res = check_decoded(bytes(b))
    if res is not None:  # what decodes re-encodes to the same values
        again, _ = decode_batch(encode_batch(res[0], **encoding, **_meta_args(res[1])))
        assert all(np.array_equal(getattr(again, c), getattr(res[0], c)) for c in PacketBatch.COLUMNS)


def _meta_args(meta) -> dict:
    return {
        "seq": meta.seq,
        "probe_id": meta.probe_id,
        "shard": meta.shard,
        "n_shards": meta.n_shards,
        "link_type": meta.link_type,
        "kernel_dropped": meta.kernel_dropped,
        "probe_dropped": meta.probe_dropped,
        "skipped": meta.skipped,
    }


@hs.composite
def dense_batches(draw: hs.DrawFn) -> PacketBatch:
    """Batches that take layout 2's dense forms: IPv4-mapped rows mixed with IPv6 ones, timestamps within
    2**32 ns of each other, lengths below 65536 — each only sometimes, so every form combination comes."""
    b = draw(batches())
    n = len(b)
    rnd = np.random.default_rng(draw(hs.integers(0, 2**32 - 1)))
    v4 = rnd.random(n) < draw(hs.floats(0, 1))
    for ip in (b.src_ip, b.dst_ip):
        ip[v4, :10] = 0
        ip[v4, 10:12] = 0xFF
    if draw(hs.booleans()) and n:
        base = int(rnd.integers(-(2**63), 2**63 - 2**32))
        b.ts_ns[:] = base + rnd.integers(0, 2**32, n)
    if draw(hs.booleans()):
        b.length[:] %= 65536
    return b


@fuzz_settings(300)
@given(
    batch=dense_batches(),
    meta=metas(),
    compression=hs.sampled_from(["none", "lz4", "zstd"]),
    draw=hs.data(),
)
def test_layout_2_round_trip_cuts_and_mutations(
    batch: PacketBatch, meta: dict, compression: str, draw: hs.DataObject
) -> None:
    raw = encode_batch(batch, layout=2, compression=compression, **meta)
    got, got_meta = decode_batch(raw)
    for c in PacketBatch.COLUMNS:
        assert np.array_equal(getattr(got, c), getattr(batch, c)), c
    assert got_meta.seq == meta["seq"] and got_meta.shard == meta["shard"]
    _check_cuts_and_mutations(raw, len(batch), draw, layout=2, compression=compression)


@fuzz_settings(300)
@given(msgs=hs.lists(hs.binary(max_size=80), max_size=12))
def test_packet_info_messages_never_raise_and_are_all_counted(msgs: list[bytes]) -> None:
    stats = PacketInfoStats()
    batch = packet_info_to_batch(msgs, stats)
    batch.validate()
    assert stats.messages == len(msgs) == stats.converted + stats.skipped
    assert len(batch) == stats.converted
