"""Plain-Python reference of :mod:`netspectra.sketches.cocosketch` (CocoSketch heavy hitters).

One packet at a time, ``mmh3`` for the bucket hashes and
:class:`~netspectra.sketches.primitives.SplitMix64` for the replacement coins, drawn exactly where the
kernel draws them, so tests can demand the same tables and generator state.
"""

from __future__ import annotations

from collections.abc import Sequence

import mmh3

from netspectra.sketches.cocosketch import REPLAY
from netspectra.sketches.primitives import SplitMix64, row_bytes_from_ref
from netspectra.weights import COUNT_MAX


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

    def _held(self, t: int, key: bytes) -> list | None:
        for i in range(self.depth):
            b = self.tables[t][i][self._index(t, i, key)]
            if b[1] != 0 and b[0] == key:
                return b
        return None

    def _miss(self, t: int, key: bytes, w: int) -> list | None:
        buckets = [self.tables[t][i][self._index(t, i, key)] for i in range(self.depth)]
        b = buckets[min(range(self.depth), key=lambda i: (buckets[i][1], i))]
        low = b[1]
        b[1] = min(low + w, COUNT_MAX)
        if low == 0 or self.rng.uniform() < w / b[1]:
            b[0] = key
            return b
        return None

    def insert_row(self, key: bytes, packets: int, octets: int) -> None:
        """A weighted row: ``packets`` packets of ``key`` (``octets`` bytes in all, sized as
        :func:`~netspectra.weights.packet_sizes_ref` says), one after the other. While the key holds no
        bucket of a structure its packets are inserted one by one (both structures per packet, as
        :meth:`insert`); after :data:`~netspectra.sketches.cocosketch.REPLAY` packets the rest goes in as
        one weighted update. Counters are capped at 2**64 - 1."""
        if packets == 0:
            return
        held = [self._held(0, key), self._held(1, key)]
        start = [0, 0]  # first packet not yet counted, in a structure that holds the key
        q, big = divmod(octets, packets)
        k = 0
        while k < min(packets, REPLAY) and (held[0] is None or held[1] is None):
            for t in (0, 1):
                if held[t] is None:
                    size = q + 1 if k >= packets - big else q
                    held[t] = self._miss(t, key, 1 if t == 0 else size)
                    start[t] = k + 1
            k += 1
        for t in (0, 1):
            b = held[t]
            if b is not None:
                if start[t] < packets:
                    rest = packets - start[t] if t == 0 else row_bytes_from_ref(octets, packets, start[t])
                    b[1] = min(b[1] + rest, COUNT_MAX)
            elif k < packets:
                self._miss(t, key, packets - k if t == 0 else row_bytes_from_ref(octets, packets, k))

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
