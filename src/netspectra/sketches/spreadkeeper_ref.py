"""Plain-Python reference of the SpreadKeeper spread sketch; the twin of :mod:`spreadkeeper`.

One pair at a time, Python ints and floats, ``mmh3`` for MurmurHash3 x86_32 and
:class:`~netspectra.sketches.primitives.SplitMix64` for the decay coin, so tests can demand the same
filter, table and generator state as the numba kernel after the same input. Every float operation is
the kernel's, in the same order (``q = c / 64``, ``hide = q * q * ...``, ``w = 1 / (1 - hide)``), so the
counts agree bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mmh3

from netspectra.sketches.primitives import SplitMix64, fmix64_py


class SpreadKeeperRef:
    """Filter as a list of ints; table as ``buckets`` lists of at most ``ways`` slots ``[flow, count]``."""

    def __init__(
        self,
        filter_words: int,
        buckets: int,
        ways: int,
        bits: int,
        b: float,
        flow_seed: int,
        elem_seed: int,
        salt: int,
        rng_state: int,
        decay_len: int,
    ) -> None:
        self.nw, self.buckets, self.ways, self.bits, self.b = filter_words, buckets, ways, bits, b
        self.flow_seed, self.elem_seed, self.salt = flow_seed, elem_seed, salt
        self.rng = SplitMix64(rng_state)
        self.decay = [math.pow(b, -float(c)) for c in range(decay_len)]
        self.filter = [0] * filter_words
        self.level = 0
        self.ones = 0
        bits_total = 64 * filter_words
        self.limits = [int(bits_total * (1.0 - 0.5 * 0.8**s)) for s in range(12)] + [bits_total + 1]
        self.table: list[list[list]] = [[] for _ in range(buckets)]

    def insert(self, flow: bytes, elem: bytes) -> None:
        """One observation of ``elem`` for ``flow`` (fixed-width key bytes)."""
        hf = mmh3.hash(flow, self.flow_seed, signed=False)
        he = mmh3.hash(elem, self.elem_seed ^ hf, signed=False)
        h = fmix64_py(((hf << 32) | he) ^ self.salt)
        wi = (h >> 32) % self.nw
        if (h >> 20) & ((1 << self.level) - 1):
            return  # outside the sample of the current level
        mask = 0
        for i in range(self.bits):
            mask |= 1 << ((h >> (6 * i)) & 63)
        word = self.filter[wi]
        if word & mask == mask:
            return
        q = bin(word).count("1") / 64.0
        hide = 1.0
        for _ in range(self.bits):
            hide *= q
        w = float(1 << self.level) / (1.0 - hide)
        self.filter[wi] = word | mask
        self.ones += bin(mask & ~word).count("1")
        if self.ones >= self.limits[self.level]:
            self.level += 1
        bucket = self.table[hf % self.buckets]
        for slot in bucket:
            if slot[0] == flow:
                slot[1] += w
                return
        if len(bucket) < self.ways:
            bucket.append([flow, w])
            return
        weak = min(range(len(bucket)), key=lambda s: (bucket[s][1], s))
        c = bucket[weak][1]
        ci = int(c)
        prob = self.decay[ci] if ci < len(self.decay) else math.pow(self.b, -float(ci))
        if self.rng.uniform() >= prob:
            return
        c = c - w
        if c > 0.0:
            bucket[weak][1] = c
        else:
            bucket[weak] = [flow, w]

    def update(self, flows: Sequence[bytes], elems: Sequence[bytes]) -> None:
        for f, e in zip(flows, elems, strict=True):
            self.insert(f, e)

    def query(self, flow: bytes) -> float:
        for slot in self.table[mmh3.hash(flow, self.flow_seed, signed=False) % self.buckets]:
            if slot[0] == flow:
                return slot[1]
        return 0.0

    def merge(self, other: SpreadKeeperRef) -> None:
        """Filters OR; same-flow slots add; each bucket keeps its ``ways`` largest (ties: own first)."""
        self.filter = [a | b for a, b in zip(self.filter, other.filter, strict=True)]
        self.ones = sum(bin(w).count("1") for w in self.filter)
        self.level = max(self.level, other.level)
        while self.level < 12 and self.ones >= self.limits[self.level]:
            self.level += 1
        for j in range(self.buckets):
            pool = [list(s) for s in self.table[j]]
            for flow, c in other.table[j]:
                for s in pool:
                    if s[0] == flow:
                        s[1] += c
                        break
                else:
                    pool.append([flow, c])
            order = sorted(range(len(pool)), key=lambda i: (-pool[i][1], i))
            self.table[j] = [pool[i] for i in order[: self.ways]]
