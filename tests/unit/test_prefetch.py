"""The ``prefetch`` and ``prefetch_read`` hints compile for arrays of any element type, several in one
kernel (one declaration of ``llvm.prefetch`` per module), and change nothing."""

from __future__ import annotations

import numpy as np
from numba import njit

from netspectra.prefetch import prefetch, prefetch_read


@njit(cache=True)
def _touch_all(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> float:
    total = 0.0
    for i in range(a.shape[0]):
        j = (i * 7919) % a.shape[0]
        prefetch(a, j)
        prefetch(b, j)
        prefetch(c, j)
        prefetch(d, j)
        prefetch_read(a, j)  # the read hint in the same module as the write hint
        prefetch_read(c, j)
        total += float(a[i]) + float(b[i]) + float(c[i]) + d[i]
    return total


def test_prefetch_of_several_element_types_in_one_kernel() -> None:
    n = 10_000
    a = np.arange(n, dtype=np.uint8)
    b = np.arange(n, dtype=np.uint32)
    c = np.arange(n, dtype=np.uint64)
    d = np.arange(n, dtype=np.float64)
    before = [x.copy() for x in (a, b, c, d)]
    want = float(a.astype(np.float64).sum() + b.sum() + c.sum() + d.sum())
    assert _touch_all(a, b, c, d) == want
    for x, y in zip((a, b, c, d), before, strict=True):
        assert np.array_equal(x, y)
