"""CocoSketch for heavy hitters by packets and bytes (skt_type 0, ``variant: cocosketch``).

CocoSketch (Zhang et al., SIGCOMM 2021), basic version: ``depth`` arrays of ``width`` buckets, a bucket
holding a key and a counter. A packet of key K with weight w (1 for packets, the wire length for
bytes) looks at its bucket in every array (``murmur3_32(K, seed_i) % width``):

* K is in one of them → that counter += w;
* otherwise the bucket with the smallest counter (the first of equals) adds w, and K takes its key
  with probability ``w / counter`` (no coin when the counter was 0: K takes it).

This *stochastic variance minimisation* makes every key's estimate unbiased (the sum of the counters of
the buckets that hold it) — for full keys and for any partial key — at the price of variance: a flow's
estimate includes the weight of the smaller flows that passed through its bucket. Packets and bytes are
two independent structures of half the memory each (their heavy flows differ).

Randomness: a splitmix64 generator in the sketch (one uniform per replacement coin), so
:mod:`netspectra.sketches.cocosketch_ref` replays a run bit for bit. Merge (same shape and seeds): per
bucket, counters add and the key is this sketch's with probability ``C_this / (C_this + C_other)``
(one coin where both hold different keys), which keeps the estimates unbiased; not order-free.

Memory: ``2 · depth · width · 8 · (⌈key_length / 8⌉ + 1)`` bytes.
"""

from __future__ import annotations

import logging
import secrets
import struct

import numpy as np

from netspectra.jit import njit
from netspectra.sketches.base import HeavyHitters, HitterType, Sketch, SketchParams, check_weights
from netspectra.sketches.keys import key_length as fields_key_length
from netspectra.sketches.murmur import derive_seeds, murmur3_32_words, pack_words
from netspectra.sketches.primitives import (
    murmur_row,
    packet_size,
    row_bytes_from,
    sat_add,
    uniform,
    words_to_keys,
)

log = logging.getLogger(__name__)

DEFAULT_DEPTH = 2
DEFAULT_MEMORY = 1 << 20
DEFAULT_COUNT_THRESHOLD = 512
DEFAULT_SIZE_THRESHOLD = 524288

_MAGIC = b"NSCO"
_VERSION = 1
_HEADER = struct.Struct("<4sHHIIQQQ")  # magic, version, depth, key_length, width, thr c/s, rng state
_BLOCK = 32
#: Packets of a weighted row replayed one by one while its key holds no bucket (:func:`_weighted_row`).
REPLAY = 256


def _words(key_length: int) -> int:
    return (key_length + 7) // 8


def bucket_bytes(key_length: int) -> int:
    """Bytes of one bucket (key words and a counter)."""
    return 8 * (_words(key_length) + 1)


# ------------------------------------------------------------------------------------------ kernels
@njit(nogil=True, cache=True, inline="always")
def _held(tables: np.ndarray, t: int, idx: np.ndarray, r: int, words: np.ndarray, p: int, kw: int) -> int:
    """The array whose bucket of key row ``p`` holds that key in structure ``t`` (-1: none)."""
    for i in range(tables.shape[1]):
        j = idx[r, t, i]
        if tables[t, i, j, kw] != 0:
            same = True
            for k in range(kw - 1, -1, -1):
                if tables[t, i, j, k] != words[p, k]:
                    same = False
                    break
            if same:
                return i
    return -1


@njit(nogil=True, cache=True, inline="always")
def _miss(tables: np.ndarray, t: int, idx: np.ndarray, r: int, words: np.ndarray, p: int, kw: int,
          wt: np.uint64, rng: np.ndarray) -> int:  # fmt: skip
    """A weight ``wt`` of key row ``p`` that no bucket of structure ``t`` holds: the smallest counter (the
    first of equals) adds it, and the key takes that bucket with probability ``wt / counter``; returns
    the array taken (-1: the key did not take it)."""
    best = 0
    low = np.uint64(0)
    for i in range(tables.shape[1]):
        c = tables[t, i, idx[r, t, i], kw]
        if i == 0 or c < low:
            low = c
            best = i
    j = idx[r, t, best]
    c = sat_add(low, wt)
    tables[t, best, j, kw] = c
    if low == 0 or uniform(rng) < float(wt) / float(c):
        for k in range(kw):
            tables[t, best, j, k] = words[p, k]
        return best
    return -1


@njit(nogil=True, cache=True, inline="always")
def _weighted_row(tables: np.ndarray, idx: np.ndarray, r: int, words: np.ndarray, p: int, kw: int,
                  pk: np.uint64, octets: np.uint64, rng: np.ndarray) -> None:  # fmt: skip
    """Row ``p`` as ``pk`` packets of its key, ``octets`` bytes in all, one after the other: in a
    structure that holds the key they all add to its bucket; otherwise the packets are replayed one by
    one (interleaved across the two structures, as captured packets are, each with the size
    :func:`~netspectra.sketches.primitives.packet_size` gives it) until the key takes a bucket, and
    those after it add there. After :data:`REPLAY` packets the rest of a structure that still does not
    hold the key goes in as one weighted update, CocoSketch's own rule for a weight, which keeps every
    estimate unbiased."""
    one = np.uint64(1)
    held0 = _held(tables, 0, idx, r, words, p, kw)
    held1 = _held(tables, 1, idx, r, words, p, kw)
    from0 = np.uint64(0)  # the first packet not yet in structure 0 (1) once the key is held there
    from1 = np.uint64(0)
    k = np.uint64(0)
    limit = pk if pk < np.uint64(REPLAY) else np.uint64(REPLAY)
    while k < limit and (held0 < 0 or held1 < 0):
        if held0 < 0:
            held0 = _miss(tables, 0, idx, r, words, p, kw, one, rng)
            from0 = k + one
        if held1 < 0:
            held1 = _miss(tables, 1, idx, r, words, p, kw, packet_size(octets, pk, k), rng)
            from1 = k + one
        k += one
    if held0 >= 0:
        if from0 < pk:
            j = idx[r, 0, held0]
            tables[0, held0, j, kw] = sat_add(tables[0, held0, j, kw], pk - from0)
    elif k < pk:
        _miss(tables, 0, idx, r, words, p, kw, pk - k, rng)
    if held1 >= 0:
        if from1 < pk:
            j = idx[r, 1, held1]
            tables[1, held1, j, kw] = sat_add(tables[1, held1, j, kw], row_bytes_from(octets, pk, from1))
    elif k < pk:
        _miss(tables, 1, idx, r, words, p, kw, row_bytes_from(octets, pk, k), rng)


@njit(nogil=True, cache=True)
def coco_update(
    tables: np.ndarray,
    seeds: np.ndarray,
    words: np.ndarray,
    L: int,
    lengths: np.ndarray,
    rng: np.ndarray,
    packets: np.ndarray | None = None,
) -> np.uint64:
    """Feed every key with ``lengths`` in order; ``tables`` uint64 (2, depth, width, kw + 1): structure 0
    counts packets (weight 1), structure 1 bytes (weight = length); ``seeds`` uint32 (2, depth).

    Weighted rows (``packets`` uint64 (n,), ``lengths`` their octets): :func:`_weighted_row`; counters
    saturate at 2**64 - 1; a row of 0 packets changes nothing. ``None``: a packet per row."""
    _, d, w, _ = tables.shape
    n, kw = words.shape
    uw = np.uint64(w)
    idx = np.empty((_BLOCK, 2, d), np.int64)
    sink = np.uint64(0)
    for b0 in range(0, n, _BLOCK):
        b1 = min(n, b0 + _BLOCK)
        for p in range(b0, b1):
            for t in range(2):
                for i in range(d):
                    j = np.int64(murmur_row(words, p, L, np.uint64(seeds[t, i])) % uw)
                    idx[p - b0, t, i] = j
                    sink += tables[t, i, j, kw]
        for p in range(b0, b1):
            if packets is not None:
                if packets[p] != 0:
                    _weighted_row(tables, idx, p - b0, words, p, kw, packets[p], np.uint64(lengths[p]), rng)
                continue
            for t in range(2):
                wt = np.uint64(1) if t == 0 else np.uint64(lengths[p])
                best = 0
                low = np.uint64(0)
                found = False
                for i in range(d):
                    j = idx[p - b0, t, i]
                    c = tables[t, i, j, kw]
                    if c != 0:
                        same = True
                        for k in range(kw - 1, -1, -1):
                            if tables[t, i, j, k] != words[p, k]:
                                same = False
                                break
                        if same:
                            tables[t, i, j, kw] = c + wt
                            found = True
                            break
                    if i == 0 or c < low:
                        low = c
                        best = i
                if found:
                    continue
                j = idx[p - b0, t, best]
                c = low + wt
                tables[t, best, j, kw] = c
                if low == 0 or uniform(rng) < float(wt) / float(c):
                    for k in range(kw):
                        tables[t, best, j, k] = words[p, k]
    return sink


@njit(nogil=True, cache=True)
def coco_query(tables: np.ndarray, seeds: np.ndarray, words: np.ndarray, L: int) -> np.ndarray:
    """uint64 (2, m): for each key, the sum of the counters of the buckets holding it, per structure."""
    _, d, w, _ = tables.shape
    m, kw = words.shape
    out = np.zeros((2, m), np.uint64)
    for p in range(m):
        for t in range(2):
            for i in range(d):
                j = np.int64(np.uint64(murmur3_32_words(words[p], L, seeds[t, i])) % np.uint64(w))
                c = tables[t, i, j, kw]
                if c == 0:
                    continue
                same = True
                for k in range(kw):
                    if tables[t, i, j, k] != words[p, k]:
                        same = False
                        break
                if same:
                    out[t, p] += c
    return out


@njit(nogil=True, cache=True)
def coco_merge(tables: np.ndarray, other: np.ndarray, rng: np.ndarray) -> None:
    """Bucket by bucket: counters add; the key stays with probability C / (C + C_other)."""
    two, d, w, stride = tables.shape
    kw = stride - 1
    for t in range(two):
        for i in range(d):
            for j in range(w):
                co = other[t, i, j, kw]
                if co == 0:
                    continue
                c = tables[t, i, j, kw]
                same = True
                for k in range(kw):
                    if tables[t, i, j, k] != other[t, i, j, k]:
                        same = False
                        break
                total = c + co
                if c == 0 or (not same and uniform(rng) < float(co) / float(total)):
                    for k in range(kw):
                        tables[t, i, j, k] = other[t, i, j, k]
                tables[t, i, j, kw] = total


# ------------------------------------------------------------------------------------------- sketch
class CocoSketch(Sketch, skt_type=0):
    """CocoSketch heavy hitters (module docstring). ``memory`` (bytes) sizes the width, or give ``width``;
    ``depth`` arrays (2 in the paper); thresholds of 0 take the original's defaults."""

    uses_elements = False
    accepts_weights = True

    def __init__(
        self,
        memory: int = 0,
        seed: int | None = None,
        *,
        key_length: int = 16,
        width: int = 0,
        depth: int = DEFAULT_DEPTH,
        count_threshold: int = 0,
        size_threshold: int = 0,
    ) -> None:
        if key_length < 1:
            raise ValueError(f"key_length must be at least 1 byte, got {key_length}")
        if not 1 <= depth <= 8:
            raise ValueError(f"depth must be between 1 and 8, got {depth}")
        if min(memory, width, count_threshold, size_threshold) < 0:
            raise ValueError("memory, width and thresholds must be non-negative (0 = the default)")
        if not width:
            width = max(1, int(memory or DEFAULT_MEMORY) // (2 * depth * bucket_bytes(key_length)))
        if width >= 1 << 32:
            raise ValueError(f"width {width} is too large (at most 2^32 - 1)")
        if seed is None:
            seed = secrets.randbits(64)
            log.info("CocoSketch: no seed given, using seed %d", seed)
        s = derive_seeds(int(seed), 2 * depth + 2)
        self._setup(
            key_length, int(width), depth, s[: 2 * depth].reshape(2, depth), (int(s[-2]) << 32) | int(s[-1])
        )
        self.count_threshold = int(count_threshold) or DEFAULT_COUNT_THRESHOLD
        self.size_threshold = int(size_threshold) or DEFAULT_SIZE_THRESHOLD
        self.tables = np.zeros((2, depth, self.width, self._kw + 1), np.uint64)

    def _setup(self, key_length: int, width: int, depth: int, seeds: np.ndarray, state: int) -> None:
        self.key_length, self.width, self.depth = key_length, width, depth
        self.seeds = np.array(seeds, dtype=np.uint32).reshape(2, depth)
        self.seeds.flags.writeable = False
        self._kw = _words(key_length)
        self._rng = np.array([state], np.uint64)

    @classmethod
    def from_params(cls, params: SketchParams) -> CocoSketch:
        """Reads ``memory`` (else the memory the ``mv`` variant takes at ``width`` × ``depth``, else 1
        MiB), ``depth`` (arrays, 2 when 0), thresholds, ``seed`` and the key length."""
        L = fields_key_length(params.flow_fields)
        memory = params.memory
        if not memory and params.width:
            from netspectra.sketches.countmin import CountMinSketch

            memory = params.width * (params.depth or 3) * CountMinSketch.bucket_bytes(L, "mv")
        return cls(
            memory,
            params.seed,
            key_length=L,
            depth=params.depth or DEFAULT_DEPTH,
            count_threshold=params.count_threshold,
            size_threshold=params.size_threshold,
        )

    def __repr__(self) -> str:
        return (
            f"CocoSketch(width={self.width}, depth={self.depth}, key_length={self.key_length}, "
            f"memory={self.memory_bytes / 2**10:.0f} KiB)"
        )

    @property
    def memory_bytes(self) -> int:
        return int(self.tables.nbytes)

    @property
    def rng_state(self) -> int:
        return int(self._rng[0])

    def _check_keys(self, keys: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        if keys.ndim != 2 or keys.shape[1] != self.key_length:
            raise ValueError(f"keys must be (n, {self.key_length}) uint8, got shape {keys.shape}")
        return keys

    def update(self, keys: np.ndarray, lengths: np.ndarray, packets: np.ndarray | None = None) -> None:
        """Feed ``keys`` (n, key_length) uint8 with wire ``lengths`` (n,), in row order; weighted rows with
        ``packets`` (n,) and their octets as ``lengths`` (see :func:`coco_update`)."""
        keys = self._check_keys(keys)
        lengths, packets = check_weights(keys.shape[0], lengths, packets)
        if keys.shape[0]:
            coco_update(
                self.tables, self.seeds, pack_words(keys), self.key_length, lengths, self._rng, packets
            )

    def query(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(packets, bytes) uint64 (m,): unbiased estimates (0 for a key no bucket holds)."""
        keys = self._check_keys(keys)
        out = coco_query(self.tables, self.seeds, pack_words(keys), self.key_length)
        return out[0], out[1]

    def _hitters(self, t: int, threshold: int) -> HeavyHitters:
        flat = self.tables[t].reshape(-1, self._kw + 1)
        held = flat[flat[:, self._kw] != 0, : self._kw]
        keys = HeavyHitters.from_candidates(
            words_to_keys(held, self.key_length), np.zeros(held.shape[0])
        ).keys
        values = self.query(keys)[t] if keys.shape[0] else np.zeros(0, np.uint64)
        return HeavyHitters.from_candidates(keys, values, max(1, threshold))

    def heavy_hitters(
        self, count_threshold: int | None = None, size_threshold: int | None = None
    ) -> dict[HitterType, HeavyHitters]:
        """Keys held by a bucket whose estimate is ``>=`` the threshold (the sketch's own unless given)."""
        ct = self.count_threshold if count_threshold is None else count_threshold
        st = self.size_threshold if size_threshold is None else size_threshold
        return {HitterType.COUNT: self._hitters(0, ct), HitterType.SIZE: self._hitters(1, st)}

    def reset(self) -> None:
        self.tables.fill(0)

    def merge(self, other: Sketch) -> None:
        """Fold ``other`` (same shape and seeds) into this sketch; see the module docstring."""
        if not isinstance(other, CocoSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into CocoSketch")
        mine = (self.width, self.depth, self.key_length, self.seeds.tolist())
        theirs = (other.width, other.depth, other.key_length, other.seeds.tolist())
        if mine != theirs:
            raise ValueError(
                "can merge only CocoSketches of the same width, depth, key_length and seeds: "
                f"{mine} vs {theirs}"
            )
        coco_merge(self.tables, other.tables, self._rng)

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            _MAGIC, _VERSION, self.depth, self.key_length, self.width, self.count_threshold,
            self.size_threshold, self.rng_state,
        )  # fmt: skip
        return head + self.seeds.astype("<u4").tobytes() + self.tables.astype("<u8", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> CocoSketch:
        data = bytes(data)
        if len(data) < _HEADER.size or data[:4] != _MAGIC:
            raise ValueError("not a serialised CocoSketch (bad magic)")
        _, ver, d, L, w, ct, st, state = _HEADER.unpack_from(data)
        if ver != _VERSION:
            raise ValueError(f"CocoSketch serialisation version {ver} is not supported")
        if not (1 <= d <= 8 and L >= 1 and w >= 1):
            raise ValueError(f"bad CocoSketch header (depth {d}, key {L}, width {w})")
        o = _HEADER.size + 8 * d
        want = o + 2 * d * w * (_words(L) + 1) * 8
        if len(data) != want:
            raise ValueError(f"serialised CocoSketch has {len(data)} bytes, its header needs {want}")
        sk = cls.__new__(cls)
        sk._setup(L, w, d, np.frombuffer(data, "<u4", 2 * d, _HEADER.size), state)
        sk.count_threshold, sk.size_threshold = ct, st
        sk.tables = np.frombuffer(data, "<u8", offset=o).astype(np.uint64).reshape(2, d, w, sk._kw + 1)
        return sk
