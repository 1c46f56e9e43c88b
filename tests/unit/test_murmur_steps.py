"""MurmurHash3 x86_32 assembled from the three steps of :mod:`netspectra.sketches.primitives` (the form the
block kernels use: mix each block once, run the rounds per seed, finalise) equals ``mmh3``."""

from __future__ import annotations

import mmh3
import numpy as np
from numba import njit

from netspectra.sketches.primitives import fmix32, mix_block, murmur_round


@njit(cache=True)
def _murmur_by_steps(data: np.ndarray, seed: int) -> int:
    n = data.shape[0]
    h = np.uint64(seed)
    for o in range(0, n - n % 4, 4):
        k = np.uint64(0)
        for b in range(4):
            k |= np.uint64(data[o + b]) << np.uint64(8 * b)
        h = murmur_round(h, mix_block(k))
    if n % 4:
        k = np.uint64(0)
        for b in range(n % 4):
            k |= np.uint64(data[n - n % 4 + b]) << np.uint64(8 * b)
        h ^= mix_block(k)
    return int(fmix32(h ^ np.uint64(n)))


def test_steps_compose_to_mmh3() -> None:
    rng = np.random.default_rng(4)
    for length in range(0, 41):
        for seed in (0, 1, 0x9747B28C, 0xFFFFFFFF, int(rng.integers(0, 1 << 32))):
            data = rng.integers(0, 256, length, dtype=np.uint8)
            want = mmh3.hash(data.tobytes(), seed, signed=False)
            assert _murmur_by_steps(data, seed) == want, (length, seed)
