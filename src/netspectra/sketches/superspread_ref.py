"""Plain-Python reference of the SuperSpread sketch (skt_type 1); the twin of :mod:`superspread`.

This module is slow on purpose: one packet at a time, Python ints and floats, ``mmh3`` for MurmurHash3
x86_32. It exists so tests can replay the *same* seeded random stream as the numba kernels and demand
bit-for-bit equal state (registers, ``p``, keys, values and generator state) after the same input.

The algorithm and the random stream are specified in :mod:`netspectra.sketches.superspread`; every
rule here mirrors a line there, in the same order, so that the two consume random draws identically.
"""

from __future__ import annotations

import math

import mmh3
import numpy as np

from netspectra.sketches.primitives import SplitMix64


def clz32(x: int) -> int:
    """Leading zero bits of a 32-bit value (32 for 0)."""
    return 32 - x.bit_length()


def power_tables(m: int, base: float, b: float, decay_len: int) -> tuple[list[float], list[float]]:
    """``base**k / m`` for k in 0..33 and ``b**-v`` for v below ``decay_len`` (both as the kernels use)."""
    pw_m = [math.pow(base, float(k)) / float(m) for k in range(34)]
    decay = [math.pow(b, -float(v)) for v in range(decay_len)]
    return pw_m, decay


class SuperSpreadRef:
    """Reference SuperSpread: same parameters, seeding and results as ``SuperSpreadSketch``.

    State is kept in nested Python lists: ``regs[i][j][r]``, ``p[i][j]``, ``keys[i][j]`` (bytes),
    ``values[i][j]``; ``row_seeds[i]`` and ``cell_seeds[i][j] = (s0, s1)``.
    """

    def __init__(
        self,
        width: int,
        depth: int,
        m: int,
        size: int,
        base: float,
        b: float,
        flow_len: int,
        seed: int,
        decay_len: int,
    ) -> None:
        self.w, self.d, self.m, self.b = width, depth, m, b
        self.cap = min((1 << size) - 1, 33)
        self.flow_len = flow_len
        self.pw_m, self.decay = power_tables(m, base, b, decay_len)
        self.rng = SplitMix64(seed)
        # draw order: row seeds first, then (s0, s1) of every cell in row-major order
        self.row_seeds = [self.rng.seed32() for _ in range(depth)]
        self.cell_seeds = [
            [(self.rng.seed32(), self.rng.seed32()) for _ in range(width)] for _ in range(depth)
        ]
        self.reset()

    def reset(self) -> None:
        """Clear registers, p, keys and values (seeds and generator state are kept)."""
        self.regs = [[[0] * self.m for _ in range(self.w)] for _ in range(self.d)]
        self.p = [[1.0] * self.w for _ in range(self.d)]
        self.keys = [[bytes(self.flow_len)] * self.w for _ in range(self.d)]
        self.values = [[0] * self.w for _ in range(self.d)]

    def _encode(self, i: int, j: int, x: bytes) -> float:
        s0, s1 = self.cell_seeds[i][j]
        v = min(clz32(mmh3.hash(x, s0, signed=False)) + 1, self.cap)
        r = mmh3.hash(x, s1, signed=False) % self.m
        old = self.regs[i][j][r]
        if v <= old:
            return -1.0
        self.regs[i][j][r] = v
        before = self.p[i][j]
        q = before - self.pw_m[old]
        if v < self.cap:
            q = q + self.pw_m[v]
        self.p[i][j] = q
        return before

    def insert(self, flow: bytes, elem: bytes) -> None:
        """One observation of ``elem`` for ``flow`` (both fixed-width key bytes)."""
        x = flow + elem
        for i in range(self.d):
            j = mmh3.hash(flow, self.row_seeds[i], signed=False) % self.w
            p = self._encode(i, j, x)
            if p <= 0.0:  # -1: duplicate; 0 or below only when every register is at the cap
                continue
            inv = 1.0 / p
            units_f = math.ceil(inv)
            if self.rng.uniform() >= inv / units_f:
                continue
            units = int(units_f)
            val = self.values[i][j]
            while units > 0:
                if val == 0:
                    val = 1
                    self.keys[i][j] = flow
                    units -= 1
                elif self.keys[i][j] == flow:
                    val += 1
                    units -= 1
                else:
                    units -= 1
                    prob = self.decay[val] if val < len(self.decay) else math.pow(self.b, -float(val))
                    if self.rng.uniform() < prob:
                        val -= 1
            self.values[i][j] = min(val, 0xFFFFFFFF)

    def update(self, flow_keys: np.ndarray, elem_keys: np.ndarray) -> None:
        for t in range(flow_keys.shape[0]):
            self.insert(flow_keys[t].tobytes(), elem_keys[t].tobytes())

    def query(self, flow: bytes) -> int:
        est = 0
        for i in range(self.d):
            j = mmh3.hash(flow, self.row_seeds[i], signed=False) % self.w
            if self.keys[i][j] == flow and self.values[i][j] > est:
                est = self.values[i][j]
        return max(1, est)

    def heavy_hitters(self, threshold: int) -> list[tuple[bytes, int]]:
        """Distinct keys of non-empty cells, estimated by :meth:`query`, ``>= threshold``, by value desc."""
        flows = {self.keys[i][j] for i in range(self.d) for j in range(self.w) if self.values[i][j] > 0}
        out = [(f, self.query(f)) for f in flows]
        out = [(f, v) for f, v in out if v >= threshold]
        out.sort(key=lambda fv: (-fv[1], fv[0]))
        return out
