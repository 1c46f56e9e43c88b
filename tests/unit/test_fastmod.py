"""``fastmod32`` (a remainder by multiplications) equals ``%`` for 32-bit numerators and divisors, and
``aligned_zeros`` gives zeroed arrays on 64-byte boundaries."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from netspectra.sketches.primitives import aligned_zeros, fastmod32, fastmod32_magic


@njit(cache=True)
def _both(a: np.ndarray, d: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    magic = fastmod32_magic(d)
    fast = np.empty(a.shape[0], np.uint64)
    slow = np.empty(a.shape[0], np.uint64)
    for i in range(a.shape[0]):
        fast[i] = fastmod32(a[i], magic, d)
        slow[i] = a[i] % d
    return fast, slow


DIVISORS = [1, 2, 3, 5, 7, 64, 1000, 1333, 27989, 671744, 2**16 + 1, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1]


@pytest.mark.parametrize("d", DIVISORS)
def test_fastmod32_equals_the_remainder(d: int) -> None:
    rng = np.random.default_rng(d)
    edges = [0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1]
    near = np.arange(1, 1000, dtype=np.uint64) * np.uint64(d) - np.uint64(1)  # just below multiples of d
    parts = [rng.integers(0, 2**32, 200_000, dtype=np.uint64), np.array(edges, np.uint64), near]
    a = np.concatenate(parts) % np.uint64(2**32)
    fast, slow = _both(a, np.uint64(d))
    assert np.array_equal(fast, slow)


@pytest.mark.parametrize(
    ("shape", "dtype"), [(1, np.uint64), ((3, 8, 2), np.uint64), ((1000, 8), np.float64), (5, np.uint8)]
)
def test_aligned_zeros(shape: int | tuple[int, ...], dtype: type) -> None:
    a = aligned_zeros(shape, dtype)
    assert a.shape == (shape if isinstance(shape, tuple) else (shape,)) and a.dtype == dtype
    assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous and a.flags.writeable
    assert not a.any()
