"""Plain-Python reference of :mod:`netspectra.sketches.spreadsketch` (SpreadSketch with HLL buckets).

One pair at a time, ``mmh3`` for MurmurHash3 x86_32, Python ints for the 64-bit mixing, so tests can
demand the same registers, candidates and levels as the numba kernel; estimates are computed per bucket
in plain floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mmh3

from netspectra.sketches.primitives import fmix64_py


class SpreadSketchRef:
    """``regs[i][j]`` (list of m ints), ``keys[i][j]`` (flow bytes), ``top[i][j]`` (0 = empty)."""

    def __init__(self, width: int, depth: int, m: int, flow_len: int, seeds: tuple, row_seeds: Sequence[int]):
        self.w, self.d, self.m = width, depth, m
        self.flow_seed, self.elem_seed, self.salt = seeds
        self.row_seeds = [int(s) for s in row_seeds]
        zero = bytes(8 * ((flow_len + 7) // 8))  # the kernel compares zero-padded key words
        self.regs = [[[0] * m for _ in range(width)] for _ in range(depth)]
        self.keys = [[zero] * width for _ in range(depth)]
        self.top = [[0] * width for _ in range(depth)]

    @staticmethod
    def _words(flow: bytes) -> list[int]:
        pad = flow + bytes(-len(flow) % 8)
        return [int.from_bytes(pad[i : i + 8], "little") for i in range(0, len(pad), 8)]

    def insert(self, flow: bytes, elem: bytes) -> None:
        hf = mmh3.hash(flow, self.flow_seed, signed=False)
        he = mmh3.hash(elem, self.elem_seed ^ hf, signed=False)
        h = fmix64_py(((hf << 32) | he) ^ self.salt)
        r = (h >> 32) % self.m
        low = h & 0xFFFFFFFF
        rank = 32 - low.bit_length() + 1
        t = (fmix64_py(h) >> 32) + 1
        padded = flow + bytes(-len(flow) % 8)
        for i in range(self.d):
            j = mmh3.hash(flow, self.row_seeds[i], signed=False) % self.w
            self.regs[i][j][r] = max(self.regs[i][j][r], rank)
            cur = self.top[i][j]
            if t > cur or (t == cur and self._words(padded) < self._words(self.keys[i][j])):
                self.top[i][j] = t
                self.keys[i][j] = padded

    def update(self, flows: Sequence[bytes], elems: Sequence[bytes]) -> None:
        for f, e in zip(flows, elems, strict=True):
            self.insert(f, e)

    def bucket_estimate(self, i: int, j: int) -> float:
        m = self.m
        alpha = {16: 0.673, 32: 0.697, 64: 0.709}.get(m, 0.7213 / (1.0 + 1.079 / m))
        regs = self.regs[i][j]
        raw = alpha * m * m / sum(2.0**-v for v in regs)
        zeros = regs.count(0)
        return m * math.log(m / zeros) if raw <= 2.5 * m and zeros else raw

    def query(self, flow: bytes) -> float:
        return min(
            self.bucket_estimate(i, mmh3.hash(flow, self.row_seeds[i], signed=False) % self.w)
            for i in range(self.d)
        )
