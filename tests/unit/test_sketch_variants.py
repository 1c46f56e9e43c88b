"""The contract every variant of the variant table keeps: built from a task, fed batches, it reports its
type's heavy hitters; its memory is what numpy allocates; it serialises, merges and resets."""

from __future__ import annotations

import numpy as np
import pytest
from allocation import sketch_allocation

from netspectra.batch import IPV4_MAPPED_PREFIX, PacketBatch
from netspectra.sketches.base import HitterType, SketchTask
from netspectra.sketches.variants import DEFAULT_VARIANTS, SKETCH_VARIANTS, resolve_variant, variant_class

ALL = [(t, v) for t, vs in SKETCH_VARIANTS.items() for v in vs]


def _batch(n: int, seed: int) -> PacketBatch:
    rng = np.random.default_rng(seed)

    def v4(a: np.ndarray) -> np.ndarray:
        out = np.empty((a.shape[0], 16), np.uint8)
        out[:, :12] = IPV4_MAPPED_PREFIX
        out[:, 12:] = a.astype(">u4").view(np.uint8).reshape(-1, 4)
        return out

    src = 0x0A000000 + np.minimum(rng.zipf(1.3, n), 5000).astype(np.uint32)
    dst = 0x14000000 + rng.integers(0, 1 << 16, n).astype(np.uint32)
    return PacketBatch(
        ts_ns=np.arange(n, dtype=np.int64),
        src_ip=v4(src),
        dst_ip=v4(dst),
        src_port=rng.integers(1024, 65536, n).astype(np.uint16),
        dst_port=np.full(n, 443, np.uint16),
        protocol=np.full(n, 6, np.uint8),
        length=rng.integers(60, 1515, n).astype(np.uint32),
    )


def _task(skt_type: int, variant: str) -> SketchTask:
    return SketchTask(
        "t", skt_type, ("SrcIP",), ("DstIP",), width=512, depth=2, m=16, count_threshold=20,
        size_threshold=20_000, seed=4, variant=variant,
    )  # fmt: skip


def test_the_table_names_a_class_for_every_variant_and_a_default_for_every_type() -> None:
    for t, v in ALL:
        assert variant_class(t, v).skt_type == t
    for t, default in DEFAULT_VARIANTS.items():
        assert resolve_variant(t, "") == default and default in SKETCH_VARIANTS[t]
    with pytest.raises(ValueError, match="unknown skt_type 5"):
        resolve_variant(5)


@pytest.mark.parametrize(("skt_type", "variant"), ALL)
def test_variant_contract(skt_type: int, variant: str) -> None:
    task, allocated = sketch_allocation(_task, skt_type, variant)
    sk = task.sketch
    assert task.params.variant == variant
    # memory_bytes is what the sketch allocated (plus small tables: decay, seeds)
    assert sk.memory_bytes <= allocated <= sk.memory_bytes + 64 * 1024
    a, b = _batch(20_000, 1), _batch(20_000, 2)
    task.update(a)
    snap = task.snapshot()
    want = {HitterType.SPREAD} if skt_type == 1 else {HitterType.COUNT, HitterType.SIZE}
    assert snap.hitters.keys() == want and all(len(h) > 0 for h in snap.hitters.values())
    # serialisation: the copy reports the same and continues the same way
    cls = type(sk)
    copy = cls.from_bytes(sk.to_bytes())
    assert copy.to_bytes() == sk.to_bytes()
    keys = task.encode(b)
    copy.update(keys, b.length)
    sk.update(keys, b.length)
    assert copy.to_bytes() == sk.to_bytes()
    # merge with a sketch of the same shape and seed, then reset
    other = _task(skt_type, variant)
    other.update(a)
    sk.merge(other.sketch)
    assert len(task.snapshot(reset=True)) > 0
    assert len(task.snapshot()) == 0
