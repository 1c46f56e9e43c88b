"""Plain-Python reference of :mod:`netspectra.sketches.cocosketch` (CocoSketch heavy hitters).

One packet at a time, ``mmh3`` for the bucket hashes and
:class:`~netspectra.sketches.primitives.SplitMix64` for the replacement coins, drawn exactly where the
kernel draws them, so tests can demand the same tables and generator state.
"""

from __future__ import annotations

from collections.abc import Sequence

import mmh3

from netspectra.sketches.primitives import SplitMix64


class CocoSketchRef:
    """``tables[t][i][j] = [key, counter]``: t = 0 packets, 1 bytes; ``seeds[t][i]`` the hash seeds."""

    def __init__(
        self, width: int, depth: int, seeds: Sequence[Sequence[int]], key_length: int, rng_state: int
    ) -> None:
        self.width, self.depth = width, depth
        self.seeds = [[int(s) for s in row] for row in seeds]
        self.rng = SplitMix64(rng_state)
        zero = bytes(key_length)
        self.tables = [[[[zero, 0] for _ in range(width)] for _ in range(depth)] for _ in range(2)]

    def _index(self, t: int, i: int, key: bytes) -> int:
        return mmh3.hash(key, self.seeds[t][i], signed=False) % self.width

    def insert(self, key: bytes, length: int) -> None:
        """One packet: weight 1 in the packet structure, ``length`` in the byte structure."""
        for t, w in ((0, 1), (1, length)):
            buckets = [self.tables[t][i][self._index(t, i, key)] for i in range(self.depth)]
            for b in buckets:
                if b[1] != 0 and b[0] == key:
                    b[1] += w
                    break
            else:
                best = min(range(self.depth), key=lambda i: (buckets[i][1], i))
                b = buckets[best]
                low = b[1]
                b[1] = low + w
                if low == 0 or self.rng.uniform() < w / b[1]:
                    b[0] = key

    def update(self, keys: Sequence[bytes], lengths: Sequence[int]) -> None:
        for k, ln in zip(keys, lengths, strict=True):
            self.insert(k, int(ln))

    def query(self, key: bytes) -> tuple[int, int]:
        out = []
        for t in range(2):
            s = 0
            for i in range(self.depth):
                b = self.tables[t][i][self._index(t, i, key)]
                if b[1] != 0 and b[0] == key:
                    s += b[1]
            out.append(s)
        return out[0], out[1]

    def merge(self, other: CocoSketchRef) -> None:
        """Counters add; the key stays with probability C / (C + C_other) (a coin where keys differ)."""
        for t in range(2):
            for i in range(self.depth):
                for j in range(self.width):
                    ok, oc = other.tables[t][i][j]
                    if oc == 0:
                        continue
                    b = self.tables[t][i][j]
                    total = b[1] + oc
                    if b[1] == 0 or (b[0] != ok and self.rng.uniform() < oc / total):
                        b[0] = ok
                    b[1] = total
