"""CountMin's block kernel (hashes across a block of keys, prefetch, votes with selects) against the
plain-Python reference on the inputs where a block pipeline could go wrong (issue 19): batches shorter
than a block or not a multiple of it, every key of a block in the same bucket (each vote must see the
previous one), packets of 0 bytes and lengths equal to a counter, odd depths, every key width."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.sketches.countmin import _BLOCK, CountMinSketch
from netspectra.sketches.countmin_ref import CountMinRef

VARIANTS = [("reduce", "mv"), ("reduce", "vote"), ("original", "vote")]


def _assert_same_state(cm: CountMinSketch, ref: CountMinRef) -> None:
    st = cm.state()
    for i in range(cm.depth):
        for j in range(cm.width):
            fc, c, fs, s, vc, vs = ref.rows[i][j]
            assert st["count_keys"][i, j].tobytes() == fc and int(st["counts"][i, j]) == c, (i, j)
            assert st["size_keys"][i, j].tobytes() == fs and int(st["sizes"][i, j]) == s, (i, j)
            if cm.estimator == "mv":
                assert int(st["count_totals"][i, j]) == vc and int(st["size_totals"][i, j]) == vs


@pytest.mark.parametrize(("rule", "estimator"), VARIANTS)
@pytest.mark.parametrize("key_len", [1, 4, 8, 13, 16])
@pytest.mark.parametrize(("width", "depth"), [(1, 2), (2, 1), (7, 3), (40, 4)])
def test_block_kernel_agrees_with_reference(
    rule: str, estimator: str, key_len: int, width: int, depth: int
) -> None:
    rng = np.random.default_rng(key_len * 100 + width)
    pool = rng.integers(0, 256, (6, key_len), dtype=np.uint8)
    n = 5 * _BLOCK + 9
    keys = np.ascontiguousarray(pool[np.minimum(rng.zipf(1.5, n) - 1, 5)])
    # small lengths, zeros among them, so counters hit 0 and ties (length == counter) happen
    lengths = rng.choice(np.array([0, 1, 2, 3, 5, 8], np.uint32), n)
    cm = CountMinSketch(width, depth, 77, key_length=key_len, size_rule=rule, estimator=estimator)
    ref = CountMinRef(width, depth, cm.seeds.tolist(), key_len, rule, estimator)
    cuts = np.cumsum([1, _BLOCK - 1, _BLOCK, _BLOCK + 1, 3, 0, 2 * _BLOCK + 5])
    assert cuts[-1] == n
    lo = 0
    for hi in cuts:
        cm.update(keys[lo:hi], lengths[lo:hi])
        ref.update([k.tobytes() for k in keys[lo:hi]], lengths[lo:hi].tolist())
        _assert_same_state(cm, ref)
        lo = hi
