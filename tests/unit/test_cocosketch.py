"""CocoSketch (skt_type 0, variant cocosketch): kernel vs plain-Python reference, unbiasedness, merge,
serialisation and memory."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.sketches.base import HitterType, SketchTask
from netspectra.sketches.cocosketch import CocoSketch, bucket_bytes
from netspectra.sketches.cocosketch_ref import CocoSketchRef
from netspectra.sketches.primitives import words_to_keys


def _stream(seed: int, n: int, universe: int, key_len: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    uniq = rng.integers(0, 256, size=(universe, key_len), dtype=np.uint8)
    ids = (rng.zipf(1.2, n) - 1) % universe
    return np.ascontiguousarray(uniq[ids]), rng.integers(40, 1515, n).astype(np.uint32)


def _ref_for(sk: CocoSketch) -> CocoSketchRef:
    return CocoSketchRef(sk.width, sk.depth, sk.seeds.tolist(), sk.key_length, sk.rng_state)


def _state(sk: CocoSketch) -> list:
    kw = sk.tables.shape[-1] - 1
    keys = words_to_keys(sk.tables[..., :kw], sk.key_length)
    return [
        [
            [[keys[t, i, j].tobytes(), int(sk.tables[t, i, j, kw])] for j in range(sk.width)]
            for i in range(sk.depth)
        ]
        for t in range(2)
    ]


@pytest.mark.parametrize(("key_len", "depth"), [(5, 1), (16, 2), (37, 3)])
def test_kernel_agrees_with_reference(key_len: int, depth: int) -> None:
    keys, lengths = _stream(key_len, 15_000, 2000, key_len)
    sk = CocoSketch(seed=4, key_length=key_len, width=29, depth=depth)
    ref = _ref_for(sk)
    for o in range(0, keys.shape[0], 6000):
        sk.update(keys[o : o + 6000], lengths[o : o + 6000])
    ref.update([k.tobytes() for k in keys], lengths.tolist())
    assert _state(sk) == ref.tables and sk.rng_state == ref.rng.state
    probe = np.unique(keys, axis=0)
    pk, by = sk.query(probe)
    assert [(int(a), int(b)) for a, b in zip(pk, by, strict=True)] == [ref.query(k.tobytes()) for k in probe]
    # merge (a coin per bucket holding different keys) agrees too
    other = CocoSketch(seed=4, key_length=key_len, width=29, depth=depth)
    other.update(keys[::3], lengths[::3])
    ro = _ref_for(other)
    ro.tables = _state(other)
    sk.merge(other)
    ref.merge(ro)
    assert _state(sk) == ref.tables and sk.rng_state == ref.rng.state


def test_totals_are_conserved_and_estimates_unbiased() -> None:
    keys, lengths = _stream(7, 20_000, 3000, 8)
    sk = CocoSketch(seed=1, key_length=8, width=40, depth=2)
    sk.update(keys, lengths)
    # every packet's weight lands in exactly one bucket of each structure
    assert int(sk.tables[0, ..., -1].sum()) == 20_000 and int(sk.tables[1, ..., -1].sum()) == int(
        lengths.sum()
    )
    target = keys[np.argsort(np.bincount(np.unique(keys, axis=0, return_inverse=True)[1].ravel()))[-30]]
    true = int((keys == target).all(axis=1).sum())
    est = []
    for seed in range(40):
        s = CocoSketch(seed=seed, key_length=8, width=40, depth=2)
        s.update(keys, lengths)
        est.append(int(s.query(target[None])[0][0]))
    est = np.array(est, float)
    assert est.std() > 0 and abs(est.mean() - true) < 3 * est.std() / np.sqrt(len(est)) + 1


def test_serialisation_memory_and_task() -> None:
    keys, lengths = _stream(2, 4000, 300, 16)
    sk = CocoSketch(200 * 1024, seed=3, key_length=16, count_threshold=30, size_threshold=20_000)
    assert 200 * 1024 - 2 * 2 * bucket_bytes(16) < sk.memory_bytes <= 200 * 1024
    sk.update(keys, lengths)
    back = CocoSketch.from_bytes(sk.to_bytes())
    assert np.array_equal(back.tables, sk.tables) and back.rng_state == sk.rng_state
    hb, hs = back.heavy_hitters(), sk.heavy_hitters()
    for t in (HitterType.COUNT, HitterType.SIZE):
        assert len(hs[t]) > 0 and np.array_equal(hb[t].keys, hs[t].keys)
    with pytest.raises(ValueError, match="bad magic"):
        CocoSketch.from_bytes(b"XXXX" + sk.to_bytes()[4:])
    task = SketchTask("c", 0, ("SrcIP",), seed=1, variant="cocosketch", memory=64 * 1024)
    assert isinstance(task.sketch, CocoSketch) and task.memory_bytes <= 64 * 1024
