"""SpreadSketch for spread per flow and super-spreaders (skt_type 1, ``variant: spreadsketch``).

SpreadSketch (Tang, Huang and Lee, INFOCOM 2020): ``depth`` rows of ``width`` buckets; a bucket holds a
distinct counter of every pair hashed to it, a candidate flow key and the candidate's level. Here the
distinct counter is a HyperLogLog of ``m`` byte registers (the paper uses a multiresolution bitmap; an
HLL gives the same kind of estimate with a standard analysis), and the level is a 32-bit hash value
instead of its leading zeros, so that ties, and with them the order of the stream, no longer matter.

* A pair (flow, element) has the 64-bit hash ``h = fmix64((hf << 32 | he) ^ salt)`` (``hf``, ``he``
  as in :mod:`netspectra.sketches.spreadkeeper`): register ``(h >> 32) % m`` takes
  ``max(reg, clz32(h mod 2**32) + 1)``, and its level is ``t = (fmix64(h) >> 32) + 1``.
* In every row i, bucket ``murmur3_32(flow, seed_i) % width`` updates that register and keeps, as its
  candidate, the flow of the pair with the highest level (equal levels: the smaller key words), i.e. a
  flow drawn in proportion to its spread in the bucket.
* The estimate of a flow is the minimum over rows of its buckets' HLL estimates (linear counting below
  2.5·m); every flow in a bucket adds to it, so estimates are upper-biased by the bucket's other
  flows — accurate when super-spreaders dominate their buckets, not for spreads near the noise
  (``benchmarks/RESULTS.md``). Super-spreaders: the candidates whose estimate is ``>=`` the threshold.

Everything is a maximum, so the state is a function of the *set* of pairs seen: independent of their
order and of duplicates, and :meth:`SpreadSketch.merge` (register max, higher level wins) gives bit for
bit the sketch of the union of the two streams — whatever the engines' sharding.

Memory: ``depth · width · (m + 8 · ⌈flow_len / 8⌉ + 8)`` bytes. No randomness beyond the seeds.
"""

from __future__ import annotations

import logging
import secrets
import struct

import numpy as np

from netspectra.jit import njit
from netspectra.sketches.base import HeavyHitters, HitterType, Sketch, SketchParams, distinct_rows
from netspectra.sketches.keys import key_length as fields_key_length
from netspectra.sketches.murmur import derive_seeds, murmur3_32_words, pack_words
from netspectra.sketches.primitives import fmix64, murmur_row, words_to_keys

log = logging.getLogger(__name__)

DEFAULT_DEPTH = 2
DEFAULT_M = 32
DEFAULT_MEMORY = 4 << 20
DEFAULT_THRESHOLD = 4096

_MAGIC = b"NSSP"
_VERSION = 1
# magic, version, depth, m, flow_len, elem_len, width, threshold, flow seed, elem seed, salt
_HEADER = struct.Struct("<4sHHHHHQQIIQ")
_BLOCK = 32


def _words(n: int) -> int:
    return (n + 7) // 8


def bucket_bytes(flow_len: int, m: int) -> int:
    """Bytes of one bucket: ``m`` registers, the candidate key's words and its level."""
    return m + 8 * _words(flow_len) + 8


@njit(nogil=True, cache=True, inline="always")
def _clz32(x: np.uint64) -> int:
    if x == 0:
        return 32
    n = 0
    while (x & np.uint64(0x80000000)) == 0:
        x <<= np.uint64(1)
        n += 1
    return n


@njit(nogil=True, cache=True)
def sp_update(
    regs: np.ndarray,
    keys: np.ndarray,
    top: np.ndarray,
    row_seeds: np.ndarray,
    fw: np.ndarray,
    ew: np.ndarray,
    L: int,
    E: int,
    fseed: np.uint64,
    eseed: np.uint64,
    salt: np.uint64,
) -> None:
    """Insert every (flow, element) pair (rows of ``fw``, ``ew``) — the module docstring's rules.

    ``regs`` uint8 (depth, width, m), ``keys`` uint64 (depth, width, kw), ``top`` uint64 (depth, width)
    (0: the bucket saw no pair yet)."""
    d, w, m = regs.shape
    kw = keys.shape[2]
    n = fw.shape[0]
    uw = np.uint64(w)
    um = np.uint64(m)
    s32 = np.uint64(32)
    m32 = np.uint64(0xFFFFFFFF)
    for p in range(n):
        hf = murmur_row(fw, p, L, fseed)
        he = murmur_row(ew, p, E, eseed ^ hf)
        h = fmix64(((hf << s32) | he) ^ salt)
        r = np.int64((h >> s32) % um)
        rank = np.uint8(_clz32(h & m32) + 1)
        t = (fmix64(h) >> s32) + np.uint64(1)
        for i in range(d):
            j = np.int64(murmur_row(fw, p, L, np.uint64(row_seeds[i])) % uw)
            if regs[i, j, r] < rank:
                regs[i, j, r] = rank
            cur = top[i, j]
            if t < cur:
                continue
            if t == cur:
                # equal levels: the smaller key (word by word) wins, so the order of the stream is moot
                smaller = False
                for k in range(kw):
                    if fw[p, k] != keys[i, j, k]:
                        smaller = fw[p, k] < keys[i, j, k]
                        break
                if not smaller:
                    continue
            top[i, j] = t
            for k in range(kw):
                keys[i, j, k] = fw[p, k]


@njit(nogil=True, cache=True)
def sp_query(est: np.ndarray, row_seeds: np.ndarray, fw: np.ndarray, L: int) -> np.ndarray:
    """Minimum over rows of the bucket estimates ``est`` (depth, width) for each flow of ``fw``."""
    d, w = est.shape
    n = fw.shape[0]
    out = np.empty(n, np.float64)
    for p in range(n):
        v = np.inf
        for i in range(d):
            j = np.int64(np.uint64(murmur3_32_words(fw[p], L, row_seeds[i])) % np.uint64(w))
            v = min(v, est[i, j])
        out[p] = v
    return out


def hll_alpha(m: int) -> float:
    """HyperLogLog's bias constant for ``m`` registers (Flajolet et al. 2007)."""
    return {16: 0.673, 32: 0.697, 64: 0.709}.get(m, 0.7213 / (1.0 + 1.079 / m))


def hll_estimates(regs: np.ndarray) -> np.ndarray:
    """HLL estimate of every register row (last axis): raw ``α m² / Σ 2^-reg``; linear counting
    ``m ln(m / zeros)`` when the raw estimate is at most 2.5 m and some register is 0."""
    m = regs.shape[-1]
    inv = np.ldexp(1.0, -regs.astype(np.int32)).sum(axis=-1)
    raw = hll_alpha(m) * m * m / inv
    zeros = (regs == 0).sum(axis=-1)
    with np.errstate(divide="ignore"):
        lc = m * np.log(m / np.maximum(zeros, 1))
    return np.where((raw <= 2.5 * m) & (zeros > 0), lc, raw)


class SpreadSketch(Sketch, skt_type=1):
    """SpreadSketch (module docstring). ``memory`` (bytes) sizes the width, or give ``width``; ``depth``
    rows, ``m`` registers per bucket; ``threshold`` 0 → 4096. Fed flow‖element keys."""

    uses_elements = True
    accepts_weights = True

    def __init__(
        self,
        memory: int = 0,
        seed: int | None = None,
        *,
        flow_len: int = 16,
        elem_len: int = 16,
        threshold: int = 0,
        width: int = 0,
        depth: int = DEFAULT_DEPTH,
        m: int = DEFAULT_M,
    ) -> None:
        if not 1 <= flow_len <= 74 or not 0 <= elem_len <= 74:
            raise ValueError(f"flow key 1..74 and element key 0..74 bytes, got {flow_len} and {elem_len}")
        if not 1 <= depth <= 16:
            raise ValueError(f"depth must be between 1 and 16, got {depth}")
        if not 4 <= m <= 4096:
            raise ValueError(f"m (registers per bucket) must be between 4 and 4096, got {m}")
        if min(memory, threshold, width) < 0:
            raise ValueError("memory, threshold and width must be non-negative (0 = the default)")
        if not width:
            width = max(1, int(memory or DEFAULT_MEMORY) // (depth * bucket_bytes(flow_len, m)))
        if width >= 1 << 32:
            raise ValueError(f"width {width} is too large (at most 2^32 - 1)")
        if seed is None:
            seed = secrets.randbits(64)
            log.info("SpreadSketch: no seed given, using seed %d", seed)
        s = [int(x) for x in derive_seeds(int(seed), 4 + depth)]
        self._setup(flow_len, elem_len, int(width), depth, m, s[0], s[1], (s[2] << 32) | s[3], s[4:])
        self.threshold = int(threshold) or DEFAULT_THRESHOLD
        self.regs = np.zeros((depth, self.width, m), np.uint8)
        self.keys = np.zeros((depth, self.width, self._kw), np.uint64)
        self.top = np.zeros((depth, self.width), np.uint64)

    def _setup(
        self, L: int, E: int, width: int, depth: int, m: int, fseed: int, eseed: int, salt: int, rows: list
    ) -> None:
        self.flow_len, self.elem_len, self.width, self.depth, self.m = L, E, width, depth, m
        self.flow_seed, self.elem_seed, self.salt = fseed, eseed, salt
        self.row_seeds = np.array(rows, np.uint32)
        self.row_seeds.flags.writeable = False
        self._kw = _words(L)

    @classmethod
    def from_params(cls, params: SketchParams) -> SpreadSketch:
        """Reads ``memory`` (sizes the width), else ``width``, else 4 MiB; ``depth`` (2 when 0), ``m`` (32
        when 0), ``count_threshold``, ``seed`` and the key lengths."""
        return cls(
            params.memory,
            params.seed,
            flow_len=fields_key_length(params.flow_fields),
            elem_len=fields_key_length(params.element_fields),
            threshold=params.count_threshold,
            width=0 if params.memory else params.width,
            depth=params.depth or DEFAULT_DEPTH,
            m=params.m or DEFAULT_M,
        )

    def __repr__(self) -> str:
        return (
            f"SpreadSketch(width={self.width}, depth={self.depth}, m={self.m}, threshold={self.threshold}, "
            f"key={self.flow_len}+{self.elem_len} B, memory={self.memory_bytes / 2**20:.2f} MiB)"
        )

    @property
    def memory_bytes(self) -> int:
        return int(self.regs.nbytes + self.keys.nbytes + self.top.nbytes)

    def _split(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = np.asarray(keys)
        want = self.flow_len + self.elem_len
        if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != want:
            raise ValueError(
                f"keys must be uint8 of shape (n, {want}) (flow‖element), got {a.dtype} {a.shape}"
            )
        return pack_words(a[:, : self.flow_len]), pack_words(a[:, self.flow_len :])

    def update(
        self, keys: np.ndarray, lengths: np.ndarray | None = None, packets: np.ndarray | None = None
    ) -> None:
        """Insert flow‖element keys, uint8 (n, flow_len + elem_len); ``lengths`` is ignored.
        A weighted row (``packets``) is its packets of one (flow, element) pair: the first is the pair,
        the others are duplicates, which change nothing, so the row goes in once (a row of 0 packets
        not at all)."""
        fw, ew = self._split(distinct_rows(keys, packets))
        if fw.shape[0]:
            sp_update(
                self.regs, self.keys, self.top, self.row_seeds, fw, ew, self.flow_len, self.elem_len,
                np.uint64(self.flow_seed), np.uint64(self.elem_seed), np.uint64(self.salt),
            )  # fmt: skip

    def bucket_estimates(self) -> np.ndarray:
        """HLL estimate of every bucket, float64 (depth, width)."""
        return hll_estimates(self.regs)

    def estimates(self, flows: np.ndarray) -> np.ndarray:
        """Unrounded spread estimates float64 (m,) of flow keys uint8 (m, flow_len)."""
        a = np.asarray(flows)
        if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != self.flow_len:
            raise ValueError(f"flows must be uint8 of shape (m, {self.flow_len}), got {a.dtype} {a.shape}")
        return sp_query(self.bucket_estimates(), self.row_seeds, pack_words(a), self.flow_len)

    def query(self, flows: np.ndarray) -> np.ndarray:
        """Spread estimates rounded to integers, uint64 (m,)."""
        return np.floor(self.estimates(flows) + 0.5).astype(np.uint64)

    def super_spreaders(self, threshold: int | None = None) -> HeavyHitters:
        """Candidate flows whose rounded estimate is ``>= threshold`` (default: the configured one)."""
        thr = self.threshold if threshold is None else int(threshold)
        held = words_to_keys(self.keys[self.top != 0], self.flow_len)
        flows = HeavyHitters.from_candidates(held, np.zeros(held.shape[0])).keys
        values = self.query(flows) if flows.shape[0] else np.zeros(0, np.uint64)
        return HeavyHitters.from_candidates(flows, values, max(thr, 1))

    def heavy_hitters(self) -> dict[HitterType, HeavyHitters]:
        return {HitterType.SPREAD: self.super_spreaders()}

    def reset(self) -> None:
        self.regs.fill(0)
        self.keys.fill(0)
        self.top.fill(0)

    def _shape(self) -> tuple:
        return (
            self.flow_len, self.elem_len, self.width, self.depth, self.m, self.flow_seed, self.elem_seed,
            self.salt, self.row_seeds.tolist(),
        )  # fmt: skip

    def merge(self, other: Sketch) -> None:
        """Fold ``other`` (same shape and seeds) in: the result is the sketch of both streams, exactly."""
        if not isinstance(other, SpreadSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into SpreadSketch")
        if self._shape() != other._shape():
            raise ValueError(
                "can merge only SpreadSketches of the same key lengths, width, depth, m and seed: "
                f"{self._shape()[:5]} vs {other._shape()[:5]}"
            )
        np.maximum(self.regs, other.regs, out=self.regs)
        take = other.top > self.top
        tie = (other.top == self.top) & (other.top != 0)
        if tie.any():
            # the smaller key words win, as in the kernel (lexicographic over the words)
            a, b = self.keys[tie], other.keys[tie]
            diff = a != b
            first = np.argmax(diff, axis=1)
            rows = np.arange(a.shape[0])
            smaller = diff.any(axis=1) & (b[rows, first] < a[rows, first])
            t = np.zeros_like(take)
            t[tie] = smaller
            take |= t
        self.top[take] = other.top[take]
        self.keys[take] = other.keys[take]

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            _MAGIC, _VERSION, self.depth, self.m, self.flow_len, self.elem_len, self.width, self.threshold,
            self.flow_seed, self.elem_seed, self.salt,
        )  # fmt: skip
        return b"".join(
            [
                head,
                self.row_seeds.astype("<u4").tobytes(),
                self.regs.tobytes(),
                self.keys.astype("<u8", copy=False).tobytes(),
                self.top.astype("<u8", copy=False).tobytes(),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SpreadSketch:
        data = bytes(data)
        if len(data) < _HEADER.size or data[:4] != _MAGIC:
            raise ValueError("not a serialised SpreadSketch (bad magic)")
        _, ver, d, m, L, E, w, thr, fs, es, salt = _HEADER.unpack_from(data)
        if ver != _VERSION:
            raise ValueError(f"SpreadSketch serialisation version {ver} is not supported")
        if not (1 <= d <= 16 and 4 <= m <= 4096 and 1 <= L <= 74 and E <= 74 and w >= 1):
            raise ValueError(f"bad SpreadSketch header (depth {d}, m {m}, keys {L}+{E}, width {w})")
        kw = _words(L)
        sizes = (4 * d, d * w * m, d * w * kw * 8, d * w * 8)
        want = _HEADER.size + sum(sizes)
        if len(data) != want:
            raise ValueError(f"serialised SpreadSketch has {len(data)} bytes, its header needs {want}")
        o = _HEADER.size
        rows = np.frombuffer(data, "<u4", d, o).tolist()
        o += sizes[0]
        sk = cls.__new__(cls)
        sk._setup(L, E, w, d, m, fs, es, salt, rows)
        sk.threshold = thr
        sk.regs = np.frombuffer(data, np.uint8, d * w * m, o).copy().reshape(d, w, m)
        o += sizes[1]
        sk.keys = np.frombuffer(data, "<u8", d * w * kw, o).astype(np.uint64).reshape(d, w, kw)
        o += sizes[2]
        sk.top = np.frombuffer(data, "<u8", d * w, o).astype(np.uint64).reshape(d, w)
        return sk
