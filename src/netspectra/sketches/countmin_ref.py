"""Plain-Python reference of the majority-vote "CountMin" sketch (skt_type 0); the twin of :mod:`countmin`.

One packet at a time, Python ints and ``bytes``, ``mmh3`` for MurmurHash3 x86_32 — deliberately a
different code path from the numba kernels, so tests can demand that both reach the same bucket state
on the same seeded input. The rules are written out as the original states them (spec §3):

* Count: C=0 → C=1, FP=flow; FP=flow → C+=1; otherwise C-=1 and, at 0, FP=flow.
* Size (``original``): S=0 → S=len, FP=flow; FP=flow → S+=len; len>S → S=len, FP=flow; else S-=len.
* Size (``reduce``, MV-Sketch style): as ``original`` but len>S → S=len-S, FP=flow.

With ``estimator="mv"`` every pair also keeps the bucket total V (packets, bytes); a row's estimate of
K is (V+C)/2 when the pair's key is K, else (V-C)/2, and the query is the min over rows (MV-Sketch).
With ``"vote"`` (the original) the query is the max over rows of the counters whose key is K, else 0.

Merging replays every bucket ``(K, v)`` of the other sketch into the same bucket as a weight-``v``
update of ``K`` (the count as ``v`` unit packets, the size as one packet of length ``v``); totals add.
"""

from __future__ import annotations

from collections.abc import Sequence

import mmh3

from netspectra.weights import COUNT_MAX, packet_sizes_ref


class CountMinRef:
    """Reference sketch: ``depth`` rows of ``width`` buckets ``[count_fp, count, size_fp, size, Vc, Vs]``."""

    def __init__(
        self, width: int, depth: int, seeds: Sequence[int], key_length: int, size_rule: str, estimator: str
    ) -> None:
        if size_rule not in ("original", "reduce"):
            raise ValueError(f"size_rule must be 'original' or 'reduce', got {size_rule!r}")
        self.width, self.depth, self.key_length = width, depth, key_length
        self.seeds = [int(s) for s in seeds]
        self.size_rule, self.estimator = size_rule, estimator
        zero = bytes(key_length)
        self.rows = [[[zero, 0, zero, 0, 0, 0] for _ in range(width)] for _ in range(depth)]

    def _bucket(self, row: int, key: bytes) -> list:
        return self.rows[row][mmh3.hash(key, self.seeds[row], signed=False) % self.width]

    @staticmethod
    def _count(b: list, key: bytes, weight: int) -> None:
        c = b[1]
        if c == 0:
            b[0], b[1] = key, weight
        elif b[0] == key:
            b[1] = c + weight
        elif weight > c:  # only when merging: weight unit packets outvote c and leave weight-c
            b[0], b[1] = key, weight - c
        else:
            b[1] = c - weight
            if b[1] == 0:
                b[0] = key

    def _size(self, b: list, key: bytes, length: int) -> None:
        s = b[3]
        if s == 0:
            b[2], b[3] = key, length
        elif b[2] == key:
            b[3] = s + length
        elif length > s:
            b[2], b[3] = key, (length if self.size_rule == "original" else length - s)
        else:
            b[3] = s - length

    def update(
        self, keys: Sequence[bytes], lengths: Sequence[int], packets: Sequence[int] | None = None
    ) -> None:
        """Feed packets in order; with ``packets``, row i is ``packets[i]`` packets of ``keys[i]`` carrying
        ``lengths[i]`` bytes in all, fed one by one with the sizes of
        :func:`~netspectra.weights.packet_sizes_ref` (counters capped at 2**64 - 1)."""
        if packets is not None:
            for key, octets, n in zip(keys, lengths, packets, strict=True):
                sizes = packet_sizes_ref(int(n), int(octets))
                self.update([key] * len(sizes), sizes)
            self._cap()
            return
        for key, length in zip(keys, lengths, strict=True):
            for i in range(self.depth):
                b = self._bucket(i, key)
                self._count(b, key, 1)
                self._size(b, key, int(length))
                b[4] += 1
                b[5] += int(length)

    def _cap(self) -> None:
        for row in self.rows:
            for b in row:
                for k in (1, 3, 4, 5):
                    b[k] = min(b[k], COUNT_MAX)

    def _estimates(self, b: list, key: bytes) -> tuple[int, int]:
        if self.estimator == "vote":
            return (b[1] if b[0] == key else 0), (b[3] if b[2] == key else 0)
        c = (b[4] + b[1]) // 2 if b[0] == key else (b[4] - b[1]) // 2
        s = (b[5] + b[3]) // 2 if b[2] == key else (b[5] - b[3]) // 2
        return c, s

    def query(self, key: bytes) -> tuple[int, int]:
        """(count, size) estimates of ``key``: vote → max over rows (0 where no key matches), mv → min."""
        rows = [self._estimates(self._bucket(i, key), key) for i in range(self.depth)]
        pick = max if self.estimator == "vote" else min
        return pick(r[0] for r in rows), pick(r[1] for r in rows)

    def heavy_hitters(self, count_threshold: int, size_threshold: int) -> tuple[dict, dict]:
        """({key: count}, {key: size}) of the heavy hitters ``>=`` the thresholds. vote: max per key over
        the buckets whose counter is positive (the original's scan); mv: every key that is a bucket's
        candidate with a positive counter, valued by :meth:`query`."""
        counts: dict[bytes, int] = {}
        sizes: dict[bytes, int] = {}
        for row in self.rows:
            for fc, c, fs, s, _, _ in row:
                if c > 0:
                    counts[fc] = max(counts.get(fc, 0), c)
                if s > 0:
                    sizes[fs] = max(sizes.get(fs, 0), s)
        if self.estimator == "mv":
            counts = {k: self.query(k)[0] for k in counts}
            sizes = {k: self.query(k)[1] for k in sizes}
        return (
            {k: v for k, v in counts.items() if v >= count_threshold},
            {k: v for k, v in sizes.items() if v >= size_threshold},
        )

    def merge(self, other: CountMinRef) -> None:
        """Replay ``other``'s buckets into the same buckets of this sketch (row by row, bucket by bucket)."""
        for i in range(self.depth):
            for j in range(self.width):
                fc, c, fs, s, vc, vs = other.rows[i][j]
                b = self.rows[i][j]
                if c > 0:
                    self._count(b, fc, c)
                if s > 0:
                    self._size(b, fs, s)
                if self.estimator == "mv":
                    b[4] += vc
                    b[5] += vs
