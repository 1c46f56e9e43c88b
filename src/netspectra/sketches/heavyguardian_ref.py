"""Plain-Python reference of the HeavyGuardian heavy-hitter sketch; the twin of :mod:`heavyguardian`.

One packet at a time, Python ints and ``bytes``, ``mmh3`` for MurmurHash3 x86_32 and
:class:`~netspectra.sketches.primitives.SplitMix64` for the decay coin — a different code path from the
numba kernel, so tests can demand the same table and generator state after the same input. The rules
are those of :mod:`netspectra.sketches.heavyguardian`, written out one by one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mmh3

from netspectra.sketches.heavyguardian import REPLAY
from netspectra.sketches.primitives import SplitMix64, row_bytes_from_ref
from netspectra.weights import COUNT_MAX


class HeavyGuardianRef:
    """``buckets`` lists of at most ``ways`` slots ``[key, packets, bytes]`` (occupied slots only)."""

    def __init__(self, buckets: int, ways: int, b: float, hash_seed: int, rng_state: int, decay_len: int):
        self.buckets, self.ways, self.b = buckets, ways, b
        self.hash_seed = hash_seed
        self.rng = SplitMix64(rng_state)
        self.decay = [math.pow(b, -float(c)) for c in range(decay_len)]
        self.table: list[list[list]] = [[] for _ in range(buckets)]

    def _bucket(self, key: bytes) -> list[list]:
        return self.table[mmh3.hash(key, self.hash_seed, signed=False) % self.buckets]

    def insert(self, key: bytes, length: int) -> None:
        """One packet of ``key`` with wire length ``length``."""
        bucket = self._bucket(key)
        for slot in bucket:
            if slot[0] == key:
                slot[1] += 1
                slot[2] += length
                return
        if len(bucket) < self.ways:
            bucket.append([key, 1, length])
            return
        weak = min(range(len(bucket)), key=lambda s: (bucket[s][1], s))  # fewest packets, first of equals
        c = bucket[weak][1]
        prob = self.decay[c] if c < len(self.decay) else math.pow(self.b, -float(c))
        if self.rng.uniform() >= prob:
            return
        bucket[weak][2] -= bucket[weak][2] // c
        bucket[weak][1] = c - 1
        if c - 1 == 0:
            bucket[weak] = [key, 1, length]

    def insert_row(self, key: bytes, packets: int, octets: int) -> None:
        """A weighted row: ``packets`` packets of ``key``, ``octets`` bytes in all, one after the other.
        The first :data:`~netspectra.sketches.heavyguardian.REPLAY` packets that meet the full bucket
        draw one coin each, as :meth:`insert` does (the sizes of the row's packets are those of
        :func:`~netspectra.weights.packet_sizes_ref`); after them, the failed coins before each success
        are drawn at once from their geometric law, as the kernel does. Counters are capped at
        2**64 - 1."""
        if packets == 0:
            return
        bucket = self._bucket(key)
        for slot in bucket:
            if slot[0] == key:
                slot[1] = min(slot[1] + packets, COUNT_MAX)
                slot[2] = min(slot[2] + octets, COUNT_MAX)
                return
        if len(bucket) < self.ways:
            bucket.append([key, packets, octets])
            return
        weak = min(range(len(bucket)), key=lambda s: (bucket[s][1], s))
        k = 0
        while k < packets:
            c = bucket[weak][1]
            prob = self.decay[c] if c < len(self.decay) else math.pow(self.b, -float(c))
            if k < REPLAY:
                if self.rng.uniform() >= prob:
                    k += 1
                    continue
            else:
                if prob <= 0.0:
                    return
                fails = math.log1p(-self.rng.uniform()) / math.log1p(-prob)
                if fails >= float(packets - k):
                    return
                k += int(fails)
            bucket[weak][2] -= bucket[weak][2] // c
            bucket[weak][1] = c - 1
            if c - 1 == 0:
                bucket[weak] = [key, packets - k, row_bytes_from_ref(octets, packets, k)]
                return
            k += 1

    def update(
        self, keys: Sequence[bytes], lengths: Sequence[int], packets: Sequence[int] | None = None
    ) -> None:
        if packets is not None:
            for k, octets, n in zip(keys, lengths, packets, strict=True):
                self.insert_row(k, int(n), int(octets))
            return
        for k, ln in zip(keys, lengths, strict=True):
            self.insert(k, int(ln))

    def query(self, key: bytes) -> tuple[int, int]:
        for slot in self._bucket(key):
            if slot[0] == key:
                return slot[1], slot[2]
        return 0, 0

    def merge(self, other: HeavyGuardianRef) -> None:
        """Same-key slots add; each bucket keeps its ``ways`` slots with most packets (ties: own first)."""
        for j in range(self.buckets):
            pool = [list(s) for s in self.table[j]]
            for key, pk, by in other.table[j]:
                for s in pool:
                    if s[0] == key:
                        s[1] += pk
                        s[2] += by
                        break
                else:
                    pool.append([key, pk, by])
            order = sorted(range(len(pool)), key=lambda i: (-pool[i][1], i))
            self.table[j] = [pool[i] for i in order[: self.ways]]

    def heavy_hitters(self, count_threshold: int, size_threshold: int) -> tuple[dict, dict]:
        """({key: packets}, {key: bytes}) of the slots at or over the thresholds."""
        count, size = {}, {}
        for bucket in self.table:
            for key, pk, by in bucket:
                if pk >= count_threshold:
                    count[key] = pk
                if by >= size_threshold:
                    size[key] = by
        return count, size
