"""The original's "CountMin" (skt_type 0): majority-vote heavy-hitter buckets for packets and bytes.

Despite the name this is not a Count-Min sketch but an MV-Sketch-like structure: ``depth`` rows of
``width`` buckets; each bucket holds two independent (flow key, counter) pairs, *Count* (packets) and
*Size* (bytes). A packet of flow K updates bucket ``murmur3_32(K, seed_i) % width`` of every row i:

* Count: C=0 → C=1, key=K; key=K → C+=1; otherwise C-=1 and, when C reaches 0, key=K.
* Size: S=0 → S=len, key=K; key=K → S+=len; key≠K and len≤S → S-=len; key≠K and len>S →

  - ``size_rule="reduce"`` (default): S=len−S, key=K — the majority vote weighted by bytes (MV-Sketch):
    the incumbent's bytes cancel the newcomer's, so the survivor's counter stays a lower bound of
    its true excess, as the packet counter is;
  - ``size_rule="original"``: S=len, key=K — the original's rule (spec §12 bug 5): one large packet of
    any flow evicts a heavy flow and resets the bucket to that packet's length.

Two estimators read the buckets (``estimator``):

* ``"vote"`` — the original: :meth:`CountMinSketch.query` is the max over rows whose key matches (0
  when none does); :meth:`CountMinSketch.heavy_hitters` scans every bucket, keeps the max per key and
  the keys ``>=`` the threshold, sorted by value descending. The counter is a lower bound (the heavy
  flow's count minus the votes against it), so heavy hitters in busy buckets fall under the threshold.
* ``"mv"`` (default) — MV-Sketch: each pair also keeps the bucket total V (packets, bytes); a row's
  estimate of K is (V+C)/2 when the pair's key is K, else (V−C)/2, and the query is the min over rows.
  Heavy hitters are the keys held by some bucket, valued by that query. Needs ``size_rule="reduce"``.

Measured with ``benchmarks/sketch_accuracy.py`` (5 M packets, 1 M flows, Zipf 1.1, SrcIP keys,
threshold 1e-4 of the total = 500 packets / 337 896 bytes, 652 true heavy hitters; 640 KiB, depth 2):
``mv`` F1 0.995 (count) / 0.994 (size), ARE 0.05 % / 0.1 %; ``vote`` with either size rule F1 0.85,
ARE 12 % (precision 1.0, recall 0.75). The two size rules differ little with the vote on this mix. Hence
this class's defaults (``reduce`` + ``mv``, the task variant ``mv``); ``size_rule="original",
estimator="vote"`` reproduces the original (variant ``original``). A task's default for skt_type 0 is
now :mod:`netspectra.sketches.heavyguardian`, which reaches the same F1 in a quarter of the memory.

Differences from the original, on purpose: counters are uint64 (the original's uint32 wraps after
4 GiB of one flow within a reset period), seeds are reproducible (one integer or an explicit list,
where the original used an unseeded RNG), and a bucket's key fingerprints and counters live in one
contiguous run of uint64 words, so an update touches one or two cache lines per row.

Layout: ``table`` is uint64 (depth, width, 2*pw) with ``kw = ceil(key_length / 8)`` and ``pw = kw + 1``
(vote) or ``kw + 2`` (mv): words ``[0, kw)`` the count key (little-endian packed, zero-padded), ``kw``
the count, ``kw+1`` its total V (mv); then the same for the size pair from word ``pw``.
"""

from __future__ import annotations

import logging
import secrets
import struct
from collections.abc import Sequence

import numpy as np

from netspectra.jit import njit
from netspectra.prefetch import prefetch
from netspectra.sketches.base import HeavyHitters, HitterType, Sketch, SketchParams, check_weights
from netspectra.sketches.keys import key_length
from netspectra.sketches.murmur import (
    derive_seeds,
    murmur3_32_words,
    pack_words,
)
from netspectra.sketches.primitives import fmix32, mix_block, murmur_round, sat_add

log = logging.getLogger(__name__)

DEFAULT_WIDTH = 1 << 20
DEFAULT_DEPTH = 3
DEFAULT_SIZE_THRESHOLD = 524288
DEFAULT_COUNT_THRESHOLD = 512
SIZE_RULES: tuple[str, ...] = ("reduce", "original")
DEFAULT_SIZE_RULE = "reduce"
ESTIMATORS: tuple[str, ...] = ("mv", "vote")
DEFAULT_ESTIMATOR = "mv"
#: The configuration's ``variant`` key → (size_rule, estimator).
VARIANTS: dict[str, tuple[str, str]] = {
    "": ("reduce", "mv"),
    "mv": ("reduce", "mv"),
    "original": ("original", "vote"),
}

_MAGIC = b"NSCM"
_VERSION = 1
_HEADER = struct.Struct("<4sHBBIIQQQ")  # magic, version, rule, estimator, key_length, depth, width, thr c/s


def _words(key_length: int) -> int:
    return (key_length + 7) // 8


# ------------------------------------------------------------------------------------------------
# kernels

_BLOCK = 64  # packets hashed and prefetched together by cm_update
_M32 = np.uint64(0xFFFFFFFF)


@njit(nogil=True, cache=True, inline="always")
def _apply(
    bucket: np.ndarray,
    off: int,
    key: np.ndarray,
    kw: int,
    weight: np.uint64,
    replace: bool,
    key_at_zero: bool,
) -> None:
    """Majority vote of one (key, counter) pair at ``bucket[off:off+kw+1]`` for ``weight`` units of key."""
    v = bucket[off + kw]
    if v == 0:
        for k in range(kw):
            bucket[off + k] = key[k]
        bucket[off + kw] = weight
        return
    if _matches(bucket, off, key, kw):
        bucket[off + kw] = v + weight
    elif weight > v:
        for k in range(kw):
            bucket[off + k] = key[k]
        bucket[off + kw] = weight if replace else weight - v
    else:
        v = v - weight
        bucket[off + kw] = v
        if key_at_zero and v == 0:
            for k in range(kw):
                bucket[off + k] = key[k]


@njit(nogil=True, cache=True, inline="always")
def _matches(bucket: np.ndarray, off: int, key: np.ndarray, kw: int) -> bool:
    # an explicit early-exit loop: numba compiles it to straight compares (all() over a generator is slower)
    for k in range(kw):  # noqa: SIM110
        if bucket[off + k] != key[k]:
            return False
    return True


@njit(nogil=True, cache=True, inline="always")
def _apply_row(
    flat: np.ndarray,
    r: int,
    off: int,
    words: np.ndarray,
    p: int,
    kw: int,
    weight: np.uint64,
    replace: bool,
    key_at_zero: bool,
    sat: bool = False,
) -> None:
    """:func:`_apply` on bucket row ``r`` of the flattened table, for key row ``p`` (scalar indexing only);
    ``sat``: a matching key's counter saturates at 2**64 - 1 instead of wrapping (weighted rows)."""
    v = flat[r, off + kw]
    if v == 0:
        for k in range(kw):
            flat[r, off + k] = words[p, k]
        flat[r, off + kw] = weight
        return
    same = True
    for k in range(kw):
        if flat[r, off + k] != words[p, k]:
            same = False
            break
    if same:
        flat[r, off + kw] = sat_add(v, weight) if sat else v + weight
    elif weight > v:
        for k in range(kw):
            flat[r, off + k] = words[p, k]
        flat[r, off + kw] = weight if replace else weight - v
    else:
        v = v - weight
        flat[r, off + kw] = v
        if key_at_zero and v == 0:
            for k in range(kw):
                flat[r, off + k] = words[p, k]


@njit(nogil=True, cache=True, inline="always")
def _replace_run(flat: np.ndarray, r: int, off: int, words: np.ndarray, p: int, kw: int, m: np.uint64,
                 size: np.uint64) -> None:  # fmt: skip
    """``m`` packets of ``size`` bytes of key row ``p``, one after the other, into the size pair at ``off``
    of bucket row ``r`` under the *original* rule (a packet larger than a foreign counter replaces it):
    the closed form of :func:`_apply_row` with ``replace=True`` applied ``m`` times."""
    if m == 0:
        return
    v = flat[r, off + kw]
    total = m * size  # at most the row's octets: no overflow
    if v == 0:
        for k in range(kw):
            flat[r, off + k] = words[p, k]
        flat[r, off + kw] = total
        return
    same = True
    for k in range(kw):
        if flat[r, off + k] != words[p, k]:
            same = False
            break
    if same:
        flat[r, off + kw] = sat_add(v, total)
        return
    if size == 0:
        return  # packets of 0 bytes do not move a foreign counter
    # the first v // size packets each take size off the counter; the next one (if any) replaces the
    # key with its own size, and the rest add to it
    fits = v // size
    if m <= fits:
        flat[r, off + kw] = v - total
        return
    for k in range(kw):
        flat[r, off + k] = words[p, k]
    flat[r, off + kw] = (m - fits) * size


@njit(nogil=True, cache=True, inline="always")
def _vote_unit(lines: np.ndarray, o: np.uint64, keys: np.ndarray, ko: np.uint64, kw: int) -> None:
    """The count pair's unit vote (:func:`_apply_row` with weight 1 and ``key_at_zero``) on the pair at
    word ``o`` of the flat table, for the key at word ``ko`` of the flat key words, with selects
    instead of branches on the data (whether a key matches is data: a mispredicted branch costs more
    than both outcomes). An empty or matching bucket gains one, a foreign one loses one; the key
    becomes the packet's whenever the counter was 0 or 1 before (on a match that rewrites the same
    words). Offsets are unsigned so that indexing needs no negative-index fix-up."""
    v = lines[o + np.uint64(kw)]
    same = True
    for k in range(kw):
        same = same & (lines[o + np.uint64(k)] == keys[ko + np.uint64(k)])
    take = v <= np.uint64(1)
    for k in range(kw):
        lines[o + np.uint64(k)] = keys[ko + np.uint64(k)] if take else lines[o + np.uint64(k)]
    lines[o + np.uint64(kw)] = v + np.uint64(1) if same | (v == np.uint64(0)) else v - np.uint64(1)


@njit(nogil=True, cache=True, inline="always")
def _vote_bytes(
    lines: np.ndarray, o: np.uint64, keys: np.ndarray, ko: np.uint64, kw: int, ln: np.uint64, replace: bool
) -> None:
    """The size pair's vote of one packet of ``ln`` bytes (:func:`_apply_row` without ``key_at_zero``),
    laid out as :func:`_vote_unit`: an empty or matching bucket gains ``ln``; a foreign one loses
    ``ln`` or, when ``ln`` exceeds it, takes the packet's key with ``ln`` (``replace``) or ``ln - v``."""
    v = lines[o + np.uint64(kw)]
    same = True
    for k in range(kw):
        same = same & (lines[o + np.uint64(k)] == keys[ko + np.uint64(k)])
    grow = same | (v == np.uint64(0))
    over = ln > v
    for k in range(kw):
        lines[o + np.uint64(k)] = keys[ko + np.uint64(k)] if grow | over else lines[o + np.uint64(k)]
    beaten = ln if replace else ln - v
    lines[o + np.uint64(kw)] = v + ln if grow else (beaten if over else v - ln)


@njit(nogil=True, cache=True)
def cm_update(
    table: np.ndarray,
    seeds: np.ndarray,
    words: np.ndarray,
    L: int,
    lengths: np.ndarray,
    has_v: bool,
    replace: bool,
    packets: np.ndarray | None = None,
) -> None:
    """Feed every key (``words``: (n, kw) packed keys of ``L`` bytes, see
    :func:`~netspectra.sketches.murmur.pack_words`) with ``lengths`` (n,) in order (order matters).

    Weighted rows (``packets`` uint64 (n,), ``lengths`` then the rows' octets): row ``p`` is
    ``packets[p]`` packets of that key one after the other, and the result is the result of those
    packets, computed in closed form (a vote of weight N is N unit votes; the *reduce* size rule is
    additive, so B bytes are any packets of B bytes; the *original* rule takes the packets' sizes
    from :mod:`netspectra.weights`). Counters and totals saturate at 2**64 - 1. A row of 0 packets
    changes nothing. ``None``: a packet per row (that specialisation is the unweighted code).

    Same result as :func:`_vote` packet by packet (the reference replays that); written with scalar
    indexing only (a view per packet costs atomic reference counting), in blocks of ``_BLOCK`` packets:
    hash them all (MurmurHash3's rounds run across the block's keys, one SIMD lane per key, two rows at
    a time) and prefetch every target bucket one block ahead, then vote in packet order (the unweighted
    votes with selects instead of branches: whether a key matches is data, and a mispredicted branch
    costs more than the few instructions of both outcomes).
    """
    d, w, stride = table.shape
    n, kw = words.shape
    flat = table.reshape(d * w, stride)
    lines = table.reshape(d * w * stride)
    key_words = words.reshape(n * kw)
    pw = stride // 2  # words of one pair: key, counter and (has_v) the bucket total
    one = np.uint64(1)
    uw = np.uint64(w)
    nq = L // 4  # whole 4-byte blocks of a key; a tail of 1-3 bytes is block nq
    len_l = np.uint64(L)
    mixed = np.zeros((nq + 1, _BLOCK), np.uint32)  # [block of the key, key of the block], mixed
    ha = np.empty(_BLOCK, np.uint32)  # running hashes, one lane per key
    hb = np.empty(_BLOCK, np.uint32)
    rows = np.empty((2, _BLOCK, d), np.int64)  # [buffer, key of the block, row]: bucket row of the flat table
    nblocks = (n + _BLOCK - 1) // _BLOCK
    # software pipeline: step k hashes block k (and prefetches its buckets) before block k - 1 votes,
    # so the prefetches have a whole block of votes to arrive; blocks alternate between two buffers
    for step in range(nblocks + 1):
        if step < nblocks:
            nxt = step & 1
            a0 = step * _BLOCK
            na = min(n - a0, _BLOCK)
            for q in range(nq + (1 if L & 3 else 0)):  # words zero-pad the tail: no mask needed
                word = q >> 1
                shift = np.uint64((q & 1) * 32)
                for tb in range(na):
                    mixed[q, tb] = mix_block((words[a0 + tb, word] >> shift) & _M32)
            for i in range(0, d, 2):
                sa = np.uint64(seeds[i])
                sb = np.uint64(seeds[i + 1]) if i + 1 < d else sa
                for tb in range(na):
                    ha[tb] = sa
                    hb[tb] = sb
                for q in range(nq):
                    for tb in range(na):
                        k = np.uint64(mixed[q, tb])
                        ha[tb] = murmur_round(np.uint64(ha[tb]), k)
                        hb[tb] = murmur_round(np.uint64(hb[tb]), k)
                for tb in range(na):
                    k = np.uint64(mixed[nq, tb])  # 0 without a tail: then the xor is a no-op
                    ha[tb] = fmix32(np.uint64(ha[tb]) ^ k ^ len_l)
                    hb[tb] = fmix32(np.uint64(hb[tb]) ^ k ^ len_l)
                for tb in range(na):
                    r = i * w + np.int64(np.uint64(ha[tb]) % uw)
                    rows[nxt, tb, i] = r
                    prefetch(lines, r * stride)
                    prefetch(lines, r * stride + stride - 1)  # a bucket may straddle two cache lines
                if i + 1 < d:
                    for tb in range(na):
                        r = (i + 1) * w + np.int64(np.uint64(hb[tb]) % uw)
                        rows[nxt, tb, i + 1] = r
                        prefetch(lines, r * stride)
                        prefetch(lines, r * stride + stride - 1)
        if step == 0:
            continue
        cur = (step - 1) & 1
        b0 = (step - 1) * _BLOCK
        b1 = min(n, b0 + _BLOCK)
        for p in range(b0, b1):
            ln = np.uint64(lengths[p])
            if packets is None:
                for i in range(d):
                    r = rows[cur, p - b0, i]
                    # count: unit votes, the key takes an emptied bucket at once (the original's rule)
                    o = np.uint64(r) * np.uint64(stride)
                    ko = np.uint64(p) * np.uint64(kw)
                    _vote_unit(lines, o, key_words, ko, kw)
                    _vote_bytes(lines, o + np.uint64(pw), key_words, ko, kw, ln, replace)
                    if has_v:
                        flat[r, kw + 1] += one
                        flat[r, pw + kw + 1] += ln
                continue
            pk = packets[p]
            if pk == 0:
                continue
            q = ln // pk
            big = ln - q * pk  # the last `big` packets carry q + 1 bytes
            for i in range(d):
                r = rows[cur, p - b0, i]
                _apply_row(flat, r, 0, words, p, kw, pk, False, True, True)
                if replace:
                    _replace_run(flat, r, pw, words, p, kw, pk - big, q)
                    _replace_run(flat, r, pw, words, p, kw, big, q + one)
                else:
                    _apply_row(flat, r, pw, words, p, kw, ln, False, False, True)
                if has_v:
                    flat[r, kw + 1] = sat_add(flat[r, kw + 1], pk)
                    flat[r, pw + kw + 1] = sat_add(flat[r, pw + kw + 1], ln)


@njit(nogil=True, cache=True, inline="always")
def _vote(
    bucket: np.ndarray,
    key: np.ndarray,
    kw: int,
    pw: int,
    ln: np.uint64,
    one: np.uint64,
    has_v: bool,
    replace: bool,
) -> None:
    # count: unit votes, the key takes an emptied bucket at once (the original's rule)
    _apply(bucket, 0, key, kw, one, False, True)
    _apply(bucket, pw, key, kw, ln, replace, False)
    if has_v:
        bucket[kw + 1] += one
        bucket[pw + kw + 1] += ln


@njit(nogil=True, cache=True, inline="always")
def _half_sum(v: np.uint64, c: np.uint64) -> np.uint64:
    """``(v + c) // 2`` without the wrap of ``v + c`` (totals of weighted rows reach 2**64 - 1)."""
    one = np.uint64(1)
    return (v >> one) + (c >> one) + (v & c & one)


@njit(nogil=True, cache=True, inline="always")
def _row_estimate(bucket: np.ndarray, off: int, key: np.ndarray, kw: int, has_v: bool) -> np.uint64:
    # vote: the counter when the key matches, else 0. mv: (V + C) / 2 when it matches, else (V - C) / 2
    # (V and C have the same parity under the reduce rule, so the halves are exact integers)
    c = bucket[off + kw]
    if not has_v:
        return c if _matches(bucket, off, key, kw) else np.uint64(0)
    v = bucket[off + kw + 1]
    if _matches(bucket, off, key, kw):
        return _half_sum(v, c)
    return (v - c) >> np.uint64(1)


@njit(nogil=True, cache=True)
def cm_query(
    table: np.ndarray, seeds: np.ndarray, words: np.ndarray, L: int, has_v: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(counts, sizes) uint64 (m,). vote: max over rows of the matching counters (0 where none matches);
    mv: min over rows of the MV-Sketch estimate."""
    d, w, stride = table.shape
    m, kw = words.shape
    pw = stride // 2
    counts = np.zeros(m, np.uint64)
    sizes = np.zeros(m, np.uint64)
    uw = np.uint64(w)
    for p in range(m):
        key = words[p]
        for i in range(d):
            bucket = table[i, np.int64(np.uint64(murmur3_32_words(key, L, seeds[i])) % uw)]
            ec = _row_estimate(bucket, 0, key, kw, has_v)
            es = _row_estimate(bucket, pw, key, kw, has_v)
            if has_v and i > 0:
                counts[p] = min(counts[p], ec)
                sizes[p] = min(sizes[p], es)
            else:
                counts[p] = max(counts[p], ec)
                sizes[p] = max(sizes[p], es)
    return counts, sizes


@njit(nogil=True, cache=True)
def cm_candidates(flat: np.ndarray, off: int, kw: int, has_v: bool, threshold: np.uint64) -> np.ndarray:
    """Indices of the buckets (rows of the (d*w, stride) table) whose pair at ``off`` holds a key with a
    non-zero counter and a bucket estimate (vote: the counter; mv: (V + C) / 2) ``>= threshold``."""
    found = 0
    out = np.empty(flat.shape[0], np.int64)
    for r in range(flat.shape[0]):
        c = flat[r, off + kw]
        if c == 0:
            continue
        e = _half_sum(flat[r, off + kw + 1], c) if has_v else c
        if e >= threshold:
            out[found] = r
            found += 1
    return out[:found].copy()


@njit(nogil=True, cache=True)
def cm_merge(table: np.ndarray, other: np.ndarray, kw: int, has_v: bool, replace: bool) -> None:
    """Replay every bucket (K, v) of ``other`` into the same bucket of ``table`` as a weight-v update;
    bucket totals (mv) add exactly."""
    d, w, stride = table.shape
    pw = stride // 2
    key = np.zeros(kw, np.uint64)
    for i in range(d):
        for j in range(w):
            src = other[i, j]
            dst = table[i, j]
            for off in (0, pw):
                c = src[off + kw]
                if c != 0:
                    key[:] = src[off : off + kw]
                    # count (off 0) never replaces; size follows the sketch's rule
                    _apply(dst, off, key, kw, c, replace and off != 0, off == 0)
                if has_v:
                    dst[off + kw + 1] += src[off + kw + 1]


# ------------------------------------------------------------------------------------------------
# the sketch


class CountMinSketch(Sketch, skt_type=0):
    """Majority-vote heavy-hitter sketch over fixed-width keys (see the module docstring).

    ``width``/``depth``/thresholds of 0 take the original's defaults (2^20, 3, 512 packets, 524288
    bytes). ``seeds``: a sequence of ``depth`` explicit 32-bit row seeds, one integer from which they are
    derived (:func:`~netspectra.sketches.murmur.derive_seeds`), or None for a random integer (logged).
    ``key_length`` is the byte length of every key fed to :meth:`update`. ``size_rule`` and
    ``estimator`` are described in the module docstring; ``estimator="mv"`` needs ``size_rule="reduce"``
    (its estimate relies on the counter being the vote difference).
    """

    uses_elements = False
    accepts_weights = True

    def __init__(
        self,
        width: int = 0,
        depth: int = 0,
        seeds: Sequence[int] | int | None = None,
        *,
        key_length: int = 16,
        size_rule: str = DEFAULT_SIZE_RULE,
        estimator: str = DEFAULT_ESTIMATOR,
        count_threshold: int = 0,
        size_threshold: int = 0,
    ) -> None:
        width = int(width) or DEFAULT_WIDTH
        depth = int(depth) or DEFAULT_DEPTH
        if not 1 <= width < 1 << 32:
            raise ValueError(f"width must be between 1 and 2^32-1 (0 = {DEFAULT_WIDTH}), got {width}")
        if not 1 <= depth <= 64:
            raise ValueError(f"depth must be between 1 and 64 (0 = {DEFAULT_DEPTH}), got {depth}")
        if key_length < 1:
            raise ValueError(f"key_length must be at least 1 byte, got {key_length}")
        if size_rule not in SIZE_RULES:
            raise ValueError(f"size_rule must be one of {SIZE_RULES}, got {size_rule!r}")
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if estimator == "mv" and size_rule != "reduce":
            raise ValueError(
                "estimator 'mv' needs size_rule 'reduce' (the replace rule breaks its estimate); "
                "use estimator 'vote' with size_rule 'original' for the original's behaviour"
            )
        if count_threshold < 0 or size_threshold < 0:
            raise ValueError("thresholds must be non-negative (0 = the default)")
        if seeds is None:
            seeds = secrets.randbits(64)
            log.info("CountMinSketch: no seed given, using seed %d", seeds)
        if isinstance(seeds, int | np.integer):
            row_seeds = derive_seeds(int(seeds), depth)
        else:
            row_seeds = np.array([int(s) for s in seeds], dtype=np.int64)
            if row_seeds.shape != (depth,) or (row_seeds < 0).any() or (row_seeds >= 1 << 32).any():
                raise ValueError(f"seeds must be {depth} integers in [0, 2^32), got {list(seeds)}")
            row_seeds = row_seeds.astype(np.uint32)
        self._setup(width, depth, int(key_length), size_rule, estimator, row_seeds)
        self.count_threshold = int(count_threshold) or DEFAULT_COUNT_THRESHOLD
        self.size_threshold = int(size_threshold) or DEFAULT_SIZE_THRESHOLD
        self.table = np.zeros((depth, width, self._stride), dtype=np.uint64)

    def _setup(
        self, width: int, depth: int, key_length: int, size_rule: str, estimator: str, seeds: np.ndarray
    ) -> None:
        self.width, self.depth, self.key_length = width, depth, key_length
        self.size_rule, self.estimator = size_rule, estimator
        self.seeds: np.ndarray = _readonly_copy(seeds.astype(np.uint32))
        self._kw = _words(key_length)
        self._has_v = estimator == "mv"
        self._pw = self._kw + 1 + int(self._has_v)  # words of one (key, counter[, total]) pair
        self._stride = 2 * self._pw

    @classmethod
    def from_params(cls, params: SketchParams) -> CountMinSketch:
        """``params.variant``: "" or "mv" → the defaults; "original" → the original's replace rule and
        max-over-matching-rows vote query."""
        if params.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {params.variant!r}")
        size_rule, estimator = VARIANTS[params.variant]
        return cls(
            params.width,
            params.depth,
            params.seed,
            key_length=key_length(params.flow_fields),
            count_threshold=params.count_threshold,
            size_threshold=params.size_threshold,
            size_rule=size_rule,
            estimator=estimator,
        )

    def __repr__(self) -> str:
        return (
            f"CountMinSketch(width={self.width}, depth={self.depth}, key_length={self.key_length}, "
            f"size_rule={self.size_rule!r}, estimator={self.estimator!r}, "
            f"memory={self.memory_bytes / 2**20:.1f} MiB)"
        )

    @property
    def memory_bytes(self) -> int:
        return int(self.table.nbytes)

    def thresholds(self) -> dict[HitterType, int]:
        return {HitterType.COUNT: self.count_threshold, HitterType.SIZE: self.size_threshold}

    @staticmethod
    def bucket_bytes(key_length: int, estimator: str = DEFAULT_ESTIMATOR) -> int:
        """Bytes of one bucket (two pairs of key words, counter and, for ``mv``, the bucket total)."""
        return 2 * (_words(key_length) + 1 + int(estimator == "mv")) * 8

    @classmethod
    def width_for_memory(
        cls, memory_bytes: int, depth: int, key_length: int, estimator: str = DEFAULT_ESTIMATOR
    ) -> int:
        """The largest width whose table fits ``memory_bytes`` (at least 1)."""
        return max(1, memory_bytes // (depth * cls.bucket_bytes(key_length, estimator)))

    def _check_keys(self, keys: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        if keys.ndim != 2 or keys.shape[1] != self.key_length:
            raise ValueError(f"keys must be (n, {self.key_length}) uint8, got shape {keys.shape}")
        return keys

    def update(self, keys: np.ndarray, lengths: np.ndarray, packets: np.ndarray | None = None) -> None:
        """Feed ``keys`` (n, key_length) uint8 with wire ``lengths`` (n,), in row order; one kernel call.
        Weighted rows: ``packets`` (n,) and the rows' octets as ``lengths`` (see :func:`cm_update`)."""
        keys = self._check_keys(keys)
        lengths, packets = check_weights(keys.shape[0], lengths, packets)
        if keys.shape[0]:
            cm_update(
                self.table,
                self.seeds,
                pack_words(keys),
                self.key_length,
                lengths,
                self._has_v,
                self.size_rule == "original",
                packets,
            )

    def query(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(counts, sizes) uint64 (m,) for flow keys (m, key_length). ``vote``: max over the rows whose
        key matches, else 0 (the original). ``mv``: min over rows of the MV-Sketch estimate."""
        keys = self._check_keys(keys)
        return cm_query(self.table, self.seeds, pack_words(keys), self.key_length, self._has_v)

    def query_packed(self, keys: np.ndarray) -> np.ndarray:
        """The original's ``Query`` value ``count << 32 | size`` (each saturated to 32 bits), uint64 (m,)."""
        c, s = self.query(keys)
        cap = np.uint64(0xFFFFFFFF)
        return (np.minimum(c, cap) << np.uint64(32)) | np.minimum(s, cap)

    def _pair_keys(self, words: np.ndarray) -> np.ndarray:
        # (..., kw) uint64 words -> (..., key_length) uint8 key bytes (little-endian packing)
        w = np.ascontiguousarray(words).astype("<u8")
        return w.view(np.uint8).reshape(*w.shape[:-1], self._kw * 8)[..., : self.key_length]

    def _hitters(self, which: int, threshold: int) -> HeavyHitters:
        off = which * self._pw
        flat = self.table.reshape(-1, self._stride)
        idx = cm_candidates(flat, off, self._kw, self._has_v, np.uint64(threshold))
        keys = np.ascontiguousarray(self._pair_keys(flat[idx, off : off + self._kw]))
        if self._has_v:
            # the sketch's estimate of a candidate is the min over all its rows, not this bucket's
            keys = HeavyHitters.from_candidates(keys, np.zeros(keys.shape[0], np.uint64)).keys
            values = self.query(keys)[which]
        else:
            values = flat[idx, off + self._kw]
        return HeavyHitters.from_candidates(keys, values, threshold)

    def heavy_hitters(
        self, count_threshold: int | None = None, size_threshold: int | None = None
    ) -> dict[HitterType, HeavyHitters]:
        """COUNT and SIZE heavy hitters, ``>=`` the threshold (the sketch's own unless given), sorted by
        value descending then key bytes. ``vote``: max per key over all buckets (the original's full
        scan). ``mv``: every key that is a bucket's candidate, with its :meth:`query` estimate."""
        ct = self.count_threshold if count_threshold is None else count_threshold
        st = self.size_threshold if size_threshold is None else size_threshold
        return {HitterType.COUNT: self._hitters(0, ct), HitterType.SIZE: self._hitters(1, st)}

    def snapshot(self) -> dict[HitterType, HeavyHitters]:
        """Read-only copies of the current heavy-hitter lists (same as :meth:`heavy_hitters`)."""
        return self.heavy_hitters()

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the bucket contents, for tests and inspection: ``count_keys``/``size_keys``
        (d, w, key_length) uint8, ``counts``/``sizes`` (d, w) uint64 and, for ``mv``,
        ``count_totals``/``size_totals`` (d, w) uint64."""
        kw, pw, t = self._kw, self._pw, self.table
        out = {
            "count_keys": self._pair_keys(t[:, :, 0:kw]).copy(),
            "counts": t[:, :, kw].copy(),
            "size_keys": self._pair_keys(t[:, :, pw : pw + kw]).copy(),
            "sizes": t[:, :, pw + kw].copy(),
        }
        if self._has_v:
            out["count_totals"] = t[:, :, kw + 1].copy()
            out["size_totals"] = t[:, :, pw + kw + 1].copy()
        return out

    def reset(self) -> None:
        self.table.fill(0)

    def _compatible(self, other: object) -> CountMinSketch:
        if not isinstance(other, CountMinSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into CountMinSketch")
        mine = (self.width, self.depth, self.key_length, self.size_rule, self.estimator)
        theirs = (other.width, other.depth, other.key_length, other.size_rule, other.estimator)
        if mine != theirs or not np.array_equal(self.seeds, other.seeds):
            raise ValueError(
                "can merge only sketches of the same width, depth, key_length, size_rule, estimator and "
                f"seeds: {mine} seeds {self.seeds.tolist()} vs {theirs} seeds {other.seeds.tolist()}"
            )
        return other

    def merge(self, other: Sketch) -> None:
        """Fold ``other`` into this sketch — an approximation, not an exact union.

        The majority vote is order-dependent, so there is no exact merge. Each bucket ``(K, v)`` of
        ``other`` is replayed into the same bucket here as ``v`` unit packets of ``K`` (count) and one
        packet of ``v`` bytes (size), by the same rules; bucket totals (``mv``) add exactly. Where both
        hold the same key (the usual case for a heavy flow) the merged counter is the exact sum; where
        they differ the larger side wins with the difference, as if the two streams had been
        concatenated in an adversarial order. The result depends on which sketch is merged into which.
        """
        o = self._compatible(other)
        cm_merge(self.table, o.table, self._kw, self._has_v, self.size_rule == "original")

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            _MAGIC,
            _VERSION,
            SIZE_RULES.index(self.size_rule),
            ESTIMATORS.index(self.estimator),
            self.key_length,
            self.depth,
            self.width,
            self.count_threshold,
            self.size_threshold,
        )
        return head + self.seeds.astype("<u4").tobytes() + self.table.astype("<u8", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> CountMinSketch:
        data = bytes(data)
        if len(data) < _HEADER.size or data[:4] != _MAGIC:
            raise ValueError("not a serialised CountMinSketch (bad magic)")
        _, version, rule, est, L, d, w, ct, st = _HEADER.unpack_from(data)
        if version != _VERSION:
            raise ValueError(
                f"CountMinSketch serialisation version {version} is not supported (want {_VERSION})"
            )
        if rule >= len(SIZE_RULES) or est >= len(ESTIMATORS) or not (L and d and w):
            raise ValueError(f"bad CountMinSketch header (rule {rule}, estimator {est}, L {L}, d {d}, w {w})")
        seeds_end = _HEADER.size + 4 * d
        sk = cls.__new__(cls)
        if len(data) < seeds_end:
            raise ValueError("serialised CountMinSketch is truncated")
        sk._setup(w, d, L, SIZE_RULES[rule], ESTIMATORS[est], np.frombuffer(data, "<u4", d, _HEADER.size))
        want = seeds_end + d * w * sk._stride * 8
        if len(data) != want:
            raise ValueError(f"serialised CountMinSketch has {len(data)} bytes, its header needs {want}")
        sk.count_threshold, sk.size_threshold = ct, st
        sk.table = np.frombuffer(data, "<u8", offset=seeds_end).astype(np.uint64).reshape(d, w, sk._stride)
        return sk


def _readonly_copy(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a
