"""SpreadSketch (skt_type 1, variant spreadsketch): kernel vs plain-Python reference, order and duplicate
independence, the exact merge, serialisation and memory."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.sketches.base import SketchTask
from netspectra.sketches.primitives import words_to_keys
from netspectra.sketches.spreadsketch import SpreadSketch, bucket_bytes, hll_estimates
from netspectra.sketches.spreadsketch_ref import SpreadSketchRef


def _pairs(seed: int, n: int, flows: int, L: int, E: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fk = rng.integers(0, 256, (flows, L), dtype=np.uint8)[(rng.zipf(1.3, n) - 1) % flows]
    ek = rng.integers(0, 256, (n, E), dtype=np.uint8)
    x = np.ascontiguousarray(np.concatenate([fk, ek], axis=1))
    dup = rng.random(n) < 0.3
    x[dup] = x[rng.integers(0, n, int(dup.sum()))]
    return x


def _same(a: SpreadSketch, b: SpreadSketch) -> bool:
    return all(np.array_equal(x, y) for x, y in ((a.regs, b.regs), (a.keys, b.keys), (a.top, b.top)))


@pytest.mark.parametrize(("L", "E", "m"), [(4, 4, 16), (16, 16, 32), (13, 5, 64)])
def test_kernel_agrees_with_reference(L: int, E: int, m: int) -> None:
    x = _pairs(L + E, 8000, 600, L, E)
    sk = SpreadSketch(seed=3, flow_len=L, elem_len=E, width=17, depth=2, m=m)
    sk.update(x[:3000])
    sk.update(x[3000:])
    ref = SpreadSketchRef(17, 2, m, L, (sk.flow_seed, sk.elem_seed, sk.salt), sk.row_seeds.tolist())
    ref.update([r[:L].tobytes() for r in x], [r[L:].tobytes() for r in x])
    assert sk.regs.tolist() == ref.regs and sk.top.tolist() == ref.top
    assert [[k.tobytes() for k in row] for row in words_to_keys(sk.keys, 8 * sk.keys.shape[2])] == ref.keys
    flows = np.unique(x[:, :L], axis=0)
    assert np.allclose(sk.estimates(flows), [ref.query(f.tobytes()) for f in flows], rtol=1e-12)


def test_state_is_a_function_of_the_set_of_pairs_and_merge_is_exact() -> None:
    x = _pairs(1, 20_000, 2000, 16, 16)
    kw = dict(seed=2, flow_len=16, elem_len=16, width=64, depth=2, m=32)
    one, rev, a, b = (SpreadSketch(**kw) for _ in range(4))
    one.update(x)
    rev.update(np.concatenate([x[::-1], x[:5000]]))  # another order, with duplicates
    assert _same(one, rev)
    rng = np.random.default_rng(0)
    half = rng.random(x.shape[0]) < 0.5  # any split, even one that cuts flows and repeats pairs
    a.update(x[half])
    b.update(np.concatenate([x[~half], x[half][:100]]))
    a.merge(b)
    assert _same(a, one)
    with pytest.raises(ValueError, match="same key lengths"):
        a.merge(SpreadSketch(**{**kw, "seed": 9}))


def test_estimates_find_a_dominant_spreader_and_hll_matches_linear_counting() -> None:
    rng = np.random.default_rng(5)
    big = np.concatenate([np.full((3000, 4), 7, np.uint8), rng.integers(0, 256, (3000, 4), np.uint8)], 1)
    bg = rng.integers(0, 256, (20_000, 8), dtype=np.uint8)
    sk = SpreadSketch(seed=1, flow_len=4, elem_len=4, width=256, depth=2, m=128, threshold=1000)
    sk.update(np.ascontiguousarray(np.concatenate([big, bg])[rng.permutation(23_000)]))
    hh = sk.super_spreaders()
    assert hh.keys[0].tobytes() == bytes([7] * 4) and abs(int(hh.values[0]) - 3000) < 0.3 * 3000
    regs = np.zeros((1, 64), np.uint8)
    regs[0, :10] = 1
    assert hll_estimates(regs)[0] == pytest.approx(64 * np.log(64 / 54))


def test_serialisation_memory_and_task() -> None:
    x = _pairs(3, 5000, 300, 16, 16)
    sk = SpreadSketch(500_000, seed=4, threshold=20)
    assert 500_000 - 2 * bucket_bytes(16, 32) < sk.memory_bytes <= 500_000
    sk.update(x)
    back = SpreadSketch.from_bytes(sk.to_bytes())
    assert _same(back, sk) and back.threshold == 20
    assert back.super_spreaders().keys.tobytes() == sk.super_spreaders().keys.tobytes()
    with pytest.raises(ValueError, match="needs"):
        SpreadSketch.from_bytes(sk.to_bytes()[:-1])
    task = SketchTask("s", 1, ("SrcIP",), ("DstIP",), seed=1, variant="spreadsketch", memory=100_000)
    assert isinstance(task.sketch, SpreadSketch) and task.memory_bytes <= 100_000
