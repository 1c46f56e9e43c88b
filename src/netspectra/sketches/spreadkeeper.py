"""Spread per flow and super-spreaders (skt_type 1, ``variant: spreadkeeper``, the default).

Two parts, in the spirit of Wang et al.'s non-duplicate sampler with exponential-weakening decay (PVLDB
17(11), 2024): a filter that passes each distinct (flow, element) pair once, and a flow table that
counts the pairs that pass, as HeavyKeeper counts packets.

* **Filter**: ``filter_words`` 64-bit words. A pair hashes to one word and ``bits`` bit positions in it
  (drawn with replacement). The pair is *new* unless all its bits are set; a new pair sets them. A
  duplicate always finds its bits set, so it never counts. A new pair is hidden (all its bits already
  set by others) with probability ``(c/64)**bits``, ``c`` the word's set bits before it — known
  exactly, so a new pair that passes counts ``1 / (1 − (c/64)**bits)`` (the historic inverse
  probability, HIP): the expected count of every distinct pair is exactly 1, and a flow's estimate is
  unbiased while it keeps its slot. The variance per pair is ``P/(1 − P)`` (P the hiding probability),
  small while the filter is sparse (``memory`` ≈ 2–3 bytes per distinct pair of the period gives
  ≈ 1 % error at a spread of 50).
* **Sampling when the filter fills** (graceful overload): a full word would hide every pair that maps
  to it, and no weight can make up for a pair that never passes. So once a share ``LEVEL_FILL[s]`` of
  the filter's bits is set (0.5 at level 0, then 0.6, 0.68, …), the sampling level goes from s to
  s + 1: a pair is considered only when the low s of its 12 sampling bits are 0 (probability 2**-s,
  and a pair left out at a level is left out at every later one, duplicates included), and one that
  passes counts ``2**s / (1 − (c/64)**bits)``. Estimates stay unbiased; their variance grows with the
  level. A filter sized for its traffic stays at level 0.
* **Flow table**: ``buckets`` buckets of ``ways`` slots (flow key, float64 count); a flow's bucket is
  ``murmur3_32(flow, flow_seed) % buckets``; occupied slots are a prefix. A passing pair of weight w:
  its flow's slot → count += w; a free slot → the flow takes it with w; else the weakest slot (smallest
  count, first of equals) decays with probability ``b**-⌊count⌋``: count −= w, and at 0 or below the
  flow takes the slot with w. A super-spreader keeps its slot (``b**-50`` = 2 %, and it would have to
  lose 50 such coins); what it can lose is the first few pairs it sent before its bucket had room.
* Estimate of a flow = its slot's count (0 without a slot), reported rounded to an integer;
  super-spreaders are the slots whose rounded count is ``>=`` the threshold.

Hashes: ``hf = murmur3_32(flow, flow_seed)``, ``he = murmur3_32(element, elem_seed ^ hf)``, and the
pair's 64-bit hash ``h = fmix64((hf << 32 | he) ^ salt)``: word ``(h >> 32) % filter_words``, bit
``i`` at ``(h >> 6i) & 63`` (``bits`` ≤ 3), sampling bits ``(h >> 20) & 0xFFF``. Seeds, salt and the
generator state derive from the task's seed; randomness (the decay coin, one uniform per passing pair
that meets a full bucket without its flow) is a splitmix64 generator in the sketch, so
:mod:`netspectra.sketches.spreadkeeper_ref` replays a run bit for bit.

Memory: ``8 · filter_words + buckets · ways · 8 · (⌈flow_len / 8⌉ + 1)`` bytes. ``memory`` gives half
to the filter and the rest to the table (24-byte slots for SrcIP flows; 2.6 MiB = 11.3 M filter bits
and 56 k slots).

Merge (same shape and seeds): filters OR (exact: the filter of the union), the sampling level is the
higher one (raised further if the union is fuller than its limit); tables merge as
HeavyGuardian's — counts add where both hold the flow, each bucket keeps its ``ways`` largest. With
flow-sharded engines (NetSpectra's SrcIP sharding: every flow's pairs reach one engine) each flow's
count comes whole from one side, so the merge reports what one engine reports, up to the sketch's
noise. A pair seen by *both* engines counts twice: shard by the flow.
"""

from __future__ import annotations

import logging
import math
import secrets
import struct

import numpy as np

from netspectra.jit import njit
from netspectra.prefetch import prefetch
from netspectra.sketches.base import HeavyHitters, HitterType, Sketch, SketchParams, distinct_rows
from netspectra.sketches.keys import key_length as fields_key_length
from netspectra.sketches.murmur import derive_seeds, murmur3_32_words, pack_words
from netspectra.sketches.primitives import (
    aligned_zeros,
    fastmod32,
    fastmod32_magic,
    fmix32,
    fmix64,
    mix_key_bytes,
    mix_leading_blocks,
    murmur_round,
    popcount64,
    uniform,
    words_to_keys,
)

log = logging.getLogger(__name__)

DEFAULT_WAYS = 8
DEFAULT_BITS = 3
DEFAULT_B = 1.08
#: Share of ``memory`` given to the filter (measured best between 0.3 and 0.7, ``benchmarks/RESULTS.md``).
FILTER_SHARE = 0.5
#: Memory when neither ``memory`` nor ``width`` is configured.
DEFAULT_MEMORY = 4 << 20
#: Sampling levels: at level s a pair is considered with probability 2**-s (12 hash bits decide).
MAX_LEVEL = 12
#: The filter moves from level s to s + 1 once this share of its bits is set: 1 − 0.5 · 0.8**s (0.5,
#: 0.6, 0.68, …, 0.96), so a pair is hidden with probability at most 0.125, 0.22, 0.31, … at each
#: level. Measured against later switches (0.7, 0.8, and per-word levels at 56 of 64 bits) on the gen
#: trace and the synthetic stream from 100 to 500 KB: the best sum of F1 (``benchmarks/RESULTS.md``).
LEVEL_FILL = tuple(1.0 - 0.5 * 0.8**s for s in range(MAX_LEVEL))
DEFAULT_THRESHOLD = 4096
#: ``b**-C`` is tabulated for C below this; larger counts call ``pow`` (the reference does the same).
DECAY_LEN = 4096

_MAGIC = b"NSSK"
_VERSION = 1
# magic, version, ways, bits, flow_len, elem_len, buckets, filter_words, threshold, b,
# flow_seed, elem_seed, salt, rng state, sampling level, set filter bits
_HEADER = struct.Struct("<4sHHHHHQQQdIIQQqq")
#: Pairs whose hashes :func:`sk_update` computes (and whose filter words it prefetches) together.
_BLOCK = 64


def _words(n: int) -> int:
    return (n + 7) // 8


def slot_bytes(flow_len: int) -> int:
    """Bytes of one table slot: the flow key's 64-bit words and a float64 count."""
    return 8 * (_words(flow_len) + 1)


def level_limits(filter_words: int) -> np.ndarray:
    """Set filter bits at which each sampling level gives way to the next (:data:`LEVEL_FILL`); the last
    level never does."""
    bits = 64 * filter_words
    return np.array([int(bits * f) for f in LEVEL_FILL] + [bits + 1], np.int64)


def decay_table(b: float) -> np.ndarray:
    """``b**-C`` for C below :data:`DECAY_LEN` (``math.pow``, as the reference computes it)."""
    return np.array([math.pow(b, -float(c)) for c in range(DECAY_LEN)], np.float64)


# ------------------------------------------------------------------------------------------ kernels
@njit(nogil=True, cache=True)
def sk_update(
    filt: np.ndarray,
    keys: np.ndarray,
    counts: np.ndarray,
    words: np.ndarray,
    L: int,
    E: int,
    fseed: np.uint64,
    eseed: np.uint64,
    salt: np.uint64,
    bits: int,
    state: np.ndarray,
    limits: np.ndarray,
    decay: np.ndarray,
    b: float,
    rng: np.ndarray,
) -> None:
    """Insert every (flow, element) pair — the rows of ``words`` (n, ⌈(L + E) / 8⌉), flow‖element keys
    of ``L`` + ``E`` bytes packed by :func:`~netspectra.sketches.murmur.pack_words` — in order (rules:
    module docstring).

    State: ``filt`` uint64 (filter_words,), ``keys`` uint64 (buckets, ways, ⌈L / 8⌉), ``counts``
    float64 (buckets, ways), ``state`` int64 [sampling level, set filter bits]; ``limits`` int64: the
    set bits at which each level gives way to the next; ``rng`` uint64 (1,), advanced in place.

    No hash depends on the state, and the filter never depends on the table, so pairs go in blocks of
    :data:`_BLOCK` through three passes: (1) hash every pair and prefetch its filter word; (2) filter
    the block in order — the sampling level, the filter and its count of set bits evolve exactly as in
    a one-pass loop, without a branch on whether a pair passes — listing the pairs that pass (with
    what their weights need: the word's set bits before them, the level) and prefetching their
    buckets; (3) count the listed pairs in the table, in order, drawing from the generator as a
    one-pass loop does. The passes are software-pipelined over three blocks (pass 1 of block k, pass
    2 of block k - 1, pass 3 of block k - 2), so every prefetch has two passes to land. The result is
    the one-pass loop's (the reference's) bit for bit.

    The hashing is laid out for SIMD: the 4-byte blocks of the rows are transposed to one row per
    block and mixed (MurmurHash3's seed-independent half), and the rounds, the finalisers, ``fmix64``
    and the remainders (:func:`~netspectra.sketches.primitives.fastmod32`, no division) run across the
    block's pairs, one vector lane per pair, in arrays the compiler vectorises.
    """
    nw = np.uint64(filt.shape[0])
    nb, ways, kw = keys.shape
    unb = np.uint64(nb)
    nw_magic = fastmod32_magic(nw)  # both < 2**32 (the constructor's limit): remainders by multiplying
    nb_magic = fastmod32_magic(unb)
    n = words.shape[0]
    nd = decay.shape[0]
    flat_keys = keys.reshape(nb * ways * kw)
    flat_counts = counts.reshape(nb * ways)
    span = ways * kw  # key words of a bucket
    six = np.uint64(6)
    s20 = np.uint64(20)
    s32 = np.uint64(32)
    m63 = np.uint64(63)
    one = np.uint64(1)
    m32 = np.uint64(0xFFFFFFFF)
    fseed = fseed & m32
    eseed = eseed & m32
    len_f = np.uint64(L)
    len_e = np.uint64(E)
    # the table holds the flow's words zero-padded: its last word keeps only the flow's bytes
    last_mask = (one << np.uint64(8 * (L & 7))) - one if L & 7 else ~np.uint64(0)
    nbf = L // 4  # whole 4-byte blocks of the flow and of the element
    nbe = E // 4
    flow_tail = nbf + nbe  # rows of `mixed` for the tails (1-3 bytes); zero when there is none
    elem_tail = flow_tail + 1
    n_al = nbf + nbe if L & 3 == 0 else nbf  # blocks that start on a 4-byte boundary of the row
    raw = np.empty((n_al + 1, _BLOCK), np.uint32)  # [4-byte block, pair of the block]: unmixed
    mixed = np.zeros((1, nbf + nbe + 2, _BLOCK), np.uint32)  # [-, 4-byte block, pair of the block]: mixed
    hf = np.empty(_BLOCK, np.uint32)  # running hashes, one lane per pair
    he = np.empty(_BLOCK, np.uint32)
    hs = np.empty((2, _BLOCK), np.uint64)  # [buffer, pair]: the pair's 64-bit hash
    wis = np.empty((2, _BLOCK), np.int64)  # its filter word
    masks = np.empty((2, _BLOCK), np.uint64)  # its bits in the word
    js = np.empty((2, _BLOCK), np.int64)  # its flow's bucket
    lt = np.empty((2, _BLOCK), np.int64)  # [buffer, k]: the k-th pair of the block that passed
    lj = np.empty((2, _BLOCK), np.int64)  # its bucket
    lc = np.empty((2, _BLOCK), np.int64)  # the set bits of its filter word before it
    ll = np.empty((2, _BLOCK), np.int64)  # the sampling level it passed at
    ln = np.zeros(2, np.int64)  # pairs listed in each buffer
    fk = np.empty(kw, np.uint64)  # the flow words of the pair being counted
    level = state[0]
    ones = state[1]
    nblocks = (n + _BLOCK - 1) // _BLOCK
    for step in range(nblocks + 2):
        if step < nblocks:
            # ---- pass 1 (block `step`): the pair hashes; prefetch the filter words
            buf = step & 1
            a0 = step * _BLOCK
            na = min(n - a0, _BLOCK)
            mix_leading_blocks(words, a0, na, n_al, raw, mixed, 0)
            if L & 3:
                mix_key_bytes(words, a0, na, 4 * nbf, L & 3, mixed, 0, flow_tail)
                for q in range(nbe):  # the element starts inside a 4-byte block
                    mix_key_bytes(words, a0, na, L + 4 * q, 4, mixed, 0, nbf + q)
            if E & 3:
                mix_key_bytes(words, a0, na, L + 4 * nbe, E & 3, mixed, 0, elem_tail)
            for tb in range(na):
                hf[tb] = fseed
            for q in range(nbf):
                for tb in range(na):
                    hf[tb] = murmur_round(np.uint64(hf[tb]), np.uint64(mixed[0, q, tb]))
            for tb in range(na):
                h = fmix32(np.uint64(hf[tb]) ^ np.uint64(mixed[0, flow_tail, tb]) ^ len_f)
                hf[tb] = h
                he[tb] = eseed ^ h
            for q in range(nbe):
                for tb in range(na):
                    he[tb] = murmur_round(np.uint64(he[tb]), np.uint64(mixed[0, nbf + q, tb]))
            for tb in range(na):
                he[tb] = fmix32(np.uint64(he[tb]) ^ np.uint64(mixed[0, elem_tail, tb]) ^ len_e)
            for tb in range(na):
                hs[buf, tb] = fmix64(((np.uint64(hf[tb]) << s32) | np.uint64(he[tb])) ^ salt)
            for tb in range(na):
                wis[buf, tb] = np.int64(fastmod32(hs[buf, tb] >> s32, nw_magic, nw))
                js[buf, tb] = np.int64(fastmod32(np.uint64(hf[tb]), nb_magic, unb))
            for tb in range(na):
                prefetch(filt, wis[buf, tb])
            for tb in range(na):
                masks[buf, tb] = np.uint64(0)
            for i in range(bits):
                for tb in range(na):
                    masks[buf, tb] |= one << ((hs[buf, tb] >> (six * np.uint64(i))) & m63)
        if 1 <= step <= nblocks:
            # ---- pass 2 (block step - 1): the filter, in order; list the pairs that pass. Without a
            # branch on whether a pair passes (random, so mispredicted often): a pair that does not
            # pass stores its word unchanged and is listed in the slot the next pair overwrites
            buf = (step - 1) & 1
            b0 = (step - 1) * _BLOCK
            nb2 = min(n - b0, _BLOCK)
            k = 0
            for tb in range(nb2):
                h = hs[buf, tb]
                mask = masks[buf, tb]
                wi = wis[buf, tb]
                word = filt[wi]
                new = (word & mask) != mask  # else a duplicate, or a new pair hidden by others (weights)
                if level:  # in the sample of this level (and of every earlier one) only
                    new = new & (((h >> s20) & ((one << np.uint64(level)) - one)) == 0)
                keep = mask & (np.uint64(0) - np.uint64(new))
                filt[wi] = word | keep
                ones += popcount64(keep & ~word)
                lt[buf, k] = b0 + tb
                lj[buf, k] = js[buf, tb]
                lc[buf, k] = popcount64(word)
                ll[buf, k] = level
                k += np.int64(new)
                if ones >= limits[level] and new:
                    level += 1  # the filter is filling: sample half as many pairs from now on
            ln[buf] = k
            for e in range(k):
                j = lj[buf, e]
                prefetch(flat_counts, j * ways)
                prefetch(flat_counts, j * ways + ways - 1)
                for o in range(0, span, 8):
                    prefetch(flat_keys, j * span + o)
                prefetch(flat_keys, j * span + span - 1)
        if step >= 2:
            # ---- pass 3 (block step - 2): the flow table, in order
            buf = step & 1
            for k in range(ln[buf]):
                t = lt[buf, k]
                j = lj[buf, k]
                frac = lc[buf, k] / 64.0  # the weight: the level's sampling, the word's hiding probability
                hide = 1.0
                for _ in range(bits):
                    hide *= frac
                wt = float(one << np.uint64(ll[buf, k])) / (1.0 - hide)
                for e in range(kw):
                    fk[e] = words[t, e]
                fk[kw - 1] &= last_mask
                hit = -1
                free = -1
                weak = 0
                weakest = 0.0
                for s in range(ways):
                    c = counts[j, s]
                    if c == 0.0:
                        free = s
                        break
                    same = True
                    for e in range(kw - 1, -1, -1):  # last word first: it differs most (IPv4-mapped keys)
                        if keys[j, s, e] != fk[e]:
                            same = False
                            break
                    if same:
                        hit = s
                        break
                    if s == 0 or c < weakest:
                        weakest = c
                        weak = s
                if hit >= 0:
                    counts[j, hit] += wt
                    continue
                if free < 0:
                    ci = np.int64(weakest)
                    prob = decay[ci] if ci < nd else math.pow(b, -float(ci))
                    if uniform(rng) >= prob:
                        continue
                    c = weakest - wt
                    if c > 0.0:
                        counts[j, weak] = c
                        continue
                    free = weak
                for e in range(kw):
                    keys[j, free, e] = fk[e]
                counts[j, free] = wt
    state[0] = level
    state[1] = ones


@njit(nogil=True, cache=True)
def sk_query(keys: np.ndarray, counts: np.ndarray, fw: np.ndarray, L: int, fseed: np.uint64) -> np.ndarray:
    """float64 (m,) count of each flow's slot (0 when it holds none)."""
    nb, ways, kw = keys.shape
    m = fw.shape[0]
    out = np.zeros(m, np.float64)
    for p in range(m):
        j = np.int64(np.uint64(murmur3_32_words(fw[p], L, fseed)) % np.uint64(nb))
        for s in range(ways):
            if counts[j, s] == 0.0:
                break
            same = True
            for k in range(kw):
                if keys[j, s, k] != fw[p, k]:
                    same = False
                    break
            if same:
                out[p] = counts[j, s]
                break
    return out


@njit(nogil=True, cache=True)
def sk_merge_tables(keys: np.ndarray, counts: np.ndarray, okeys: np.ndarray, ocounts: np.ndarray) -> None:
    """Fold the other table into this one bucket by bucket (module docstring)."""
    nb, ways, kw = keys.shape
    pk = np.zeros((2 * ways, max(kw, 1)), np.uint64)
    pc = np.zeros(2 * ways, np.float64)
    for j in range(nb):
        n = 0
        for s in range(ways):
            if counts[j, s] == 0.0:
                break
            pk[n, :kw] = keys[j, s, :]
            pc[n] = counts[j, s]
            n += 1
        mine = n
        for s in range(ways):
            if ocounts[j, s] == 0.0:
                break
            hit = -1
            for t in range(mine):
                same = True
                for k in range(kw):
                    if pk[t, k] != okeys[j, s, k]:
                        same = False
                        break
                if same:
                    hit = t
                    break
            if hit >= 0:
                pc[hit] += ocounts[j, s]
            else:
                pk[n, :kw] = okeys[j, s, :]
                pc[n] = ocounts[j, s]
                n += 1
        order = np.arange(n)  # stable insertion sort by count, descending
        for a in range(1, n):
            x = order[a]
            t = a - 1
            while t >= 0 and pc[order[t]] < pc[x]:
                order[t + 1] = order[t]
                t -= 1
            order[t + 1] = x
        keys[j, :, :] = 0
        counts[j, :] = 0.0
        for s in range(min(ways, n)):
            keys[j, s, :] = pk[order[s], :kw]
            counts[j, s] = pc[order[s]]


# ------------------------------------------------------------------------------------------- sketch
class SpreadKeeperSketch(Sketch, skt_type=1):
    """Distinct elements per flow: a duplicate filter and a HeavyKeeper flow table (module docstring).

    ``memory`` (bytes) sizes both parts (:data:`FILTER_SHARE` to the filter); or give ``filter_words``
    and ``buckets``. Fed flow‖element keys (``uses_elements``); packet lengths are ignored.
    ``threshold`` 0 → 4096 (the original's default). ``seed`` None → random (logged).
    """

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
        filter_words: int = 0,
        buckets: int = 0,
        ways: int = DEFAULT_WAYS,
        bits: int = DEFAULT_BITS,
        b: float = DEFAULT_B,
    ) -> None:
        if not 1 <= flow_len <= 74 or not 0 <= elem_len <= 74:
            raise ValueError(f"flow key 1..74 and element key 0..74 bytes, got {flow_len} and {elem_len}")
        if not 1 <= ways <= 64:
            raise ValueError(f"ways must be between 1 and 64, got {ways}")
        if not 1 <= bits <= 3:
            raise ValueError(f"bits (filter bits per pair) must be between 1 and 3, got {bits}")
        if not b > 1.0:
            raise ValueError(f"b (the decay base) must be greater than 1, got {b}")
        if min(memory, threshold, filter_words, buckets) < 0:
            raise ValueError("memory, threshold, filter_words and buckets must be non-negative (0 = default)")
        if not (filter_words and buckets):
            mem = int(memory or DEFAULT_MEMORY)
            filter_words = filter_words or max(1, int(mem * FILTER_SHARE) // 8)
            buckets = buckets or max(1, (mem - 8 * filter_words) // (ways * slot_bytes(flow_len)))
        if buckets >= 1 << 32 or filter_words >= 1 << 32:
            raise ValueError(f"too large: {buckets} buckets, {filter_words} filter words (at most 2^32 - 1)")
        if seed is None:
            seed = secrets.randbits(64)
            log.info("SpreadKeeperSketch: no seed given, using seed %d", seed)
        s = [int(x) for x in derive_seeds(int(seed), 6)]
        self._setup(
            flow_len, elem_len, int(filter_words), int(buckets), ways, bits, float(b),
            s[0], s[1], (s[2] << 32) | s[3], (s[4] << 32) | s[5],
        )  # fmt: skip
        self.threshold = int(threshold) or DEFAULT_THRESHOLD
        self.state = np.zeros(2, np.int64)
        self.filter = aligned_zeros(self.filter_words, np.uint64)
        self.keys = aligned_zeros((self.buckets, ways, self._kw), np.uint64)
        self.counts = aligned_zeros((self.buckets, ways), np.float64)

    def _setup(
        self,
        flow_len: int,
        elem_len: int,
        filter_words: int,
        buckets: int,
        ways: int,
        bits: int,
        b: float,
        flow_seed: int,
        elem_seed: int,
        salt: int,
        state: int,
    ) -> None:
        self.flow_len, self.elem_len = flow_len, elem_len
        self.filter_words, self.buckets, self.ways, self.bits, self.b = filter_words, buckets, ways, bits, b
        self.flow_seed, self.elem_seed, self.salt = flow_seed, elem_seed, salt
        self._kw = _words(flow_len)
        self._decay = decay_table(b)
        self._limits = level_limits(filter_words)
        self._rng = np.array([state], np.uint64)

    @classmethod
    def from_params(cls, params: SketchParams) -> SpreadKeeperSketch:
        """Reads ``memory`` (else the memory the original SuperSpread takes at ``width`` × ``depth`` with
        ``m`` registers, else 4 MiB), ``count_threshold``, ``b``, ``seed`` and the key lengths."""
        L, E = fields_key_length(params.flow_fields), fields_key_length(params.element_fields)
        memory = params.memory
        if not memory and params.width:
            memory = params.width * (params.depth or 3) * ((params.m or 128) + L + 20)
        return cls(
            memory,
            params.seed,
            flow_len=L,
            elem_len=E,
            threshold=params.count_threshold,
            b=params.b or DEFAULT_B,
        )

    def __repr__(self) -> str:
        return (
            f"SpreadKeeperSketch(filter={self.filter_words * 64} bits x {self.bits}, buckets={self.buckets}, "
            f"ways={self.ways}, threshold={self.threshold}, key={self.flow_len}+{self.elem_len} B, "
            f"memory={self.memory_bytes / 2**20:.2f} MiB)"
        )

    @property
    def memory_bytes(self) -> int:
        """Bytes of the filter, the slot keys and the slot counts."""
        return int(self.filter.nbytes + self.keys.nbytes + self.counts.nbytes)

    @property
    def rng_state(self) -> int:
        """The generator's current 64-bit state (what a reference replay must start from)."""
        return int(self._rng[0])

    @property
    def filter_fill(self) -> float:
        """Fraction of the filter's bits that are set (the hiding probability is about this ** bits)."""
        return int(self.state[1]) / (64 * self.filter_words)

    @property
    def level(self) -> int:
        """The sampling level: pairs are considered with probability 2**-level (0 until the filter fills)."""
        return int(self.state[0])

    def _rows(self, keys: np.ndarray) -> np.ndarray:
        """flow‖element keys, uint8 (n, flow_len + elem_len), as packed words (a view when the row is a
        whole number of words, as the shipped 16 + 16 bytes are)."""
        a = np.asarray(keys)
        want = self.flow_len + self.elem_len
        if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != want:
            raise ValueError(
                f"keys must be uint8 of shape (n, {want}) (flow‖element), got {a.dtype} {a.shape}"
            )
        return pack_words(a)

    def update(
        self, keys: np.ndarray, lengths: np.ndarray | None = None, packets: np.ndarray | None = None
    ) -> None:
        """Insert flow‖element keys, uint8 (n, flow_len + elem_len), in order; ``lengths`` is ignored.
        A weighted row (``packets``) is its packets of one (flow, element) pair: the first is the pair,
        the others are duplicates, which change nothing, so the row goes in once (a row of 0 packets
        not at all)."""
        words = self._rows(distinct_rows(keys, packets))
        if words.shape[0] == 0:
            return
        sk_update(
            self.filter,
            self.keys,
            self.counts,
            words,
            self.flow_len,
            self.elem_len,
            np.uint64(self.flow_seed),
            np.uint64(self.elem_seed),
            np.uint64(self.salt),
            self.bits,
            self.state,
            self._limits,
            self._decay,
            self.b,
            self._rng,
        )

    def estimates(self, flows: np.ndarray) -> np.ndarray:
        """Unrounded spread estimates, float64 (m,), of flow keys uint8 (m, flow_len) (0 without a slot)."""
        a = np.asarray(flows)
        if a.dtype != np.uint8 or a.ndim != 2 or a.shape[1] != self.flow_len:
            raise ValueError(f"flows must be uint8 of shape (m, {self.flow_len}), got {a.dtype} {a.shape}")
        return sk_query(self.keys, self.counts, pack_words(a), self.flow_len, np.uint64(self.flow_seed))

    def query(self, flows: np.ndarray) -> np.ndarray:
        """Spread estimates rounded to integers, uint64 (m,)."""
        return np.floor(self.estimates(flows) + 0.5).astype(np.uint64)

    def entries(self) -> tuple[np.ndarray, np.ndarray]:
        """Every occupied slot: flow keys uint8 (m, flow_len) and counts float64 (m,) (copies)."""
        occ = self.counts > 0.0
        return words_to_keys(self.keys[occ], self.flow_len), self.counts[occ].copy()

    def super_spreaders(self, threshold: int | None = None) -> HeavyHitters:
        """Flows whose rounded estimate is ``>= threshold`` (default: the configured one), by value desc."""
        thr = max(1, self.threshold if threshold is None else int(threshold))
        rounded = np.floor(self.counts + 0.5)
        # only the slots at or over the threshold become candidates (a rounded estimate >= 1 is an
        # occupied slot's): not every occupied slot's key decoded for from_candidates to drop (~6 ms)
        keep = (self.counts > 0.0) & (rounded >= thr)
        keys = words_to_keys(self.keys[keep], self.flow_len)
        return HeavyHitters.from_candidates(keys, rounded[keep].astype(np.uint64), thr)

    def heavy_hitters(self) -> dict[HitterType, HeavyHitters]:
        """``{SPREAD: super_spreaders()}`` at the configured threshold (Type 2 rows)."""
        return {HitterType.SPREAD: self.super_spreaders()}

    def reset(self) -> None:
        self.state.fill(0)
        self.filter.fill(0)
        self.keys.fill(0)
        self.counts.fill(0.0)

    def _shape(self) -> tuple:
        return (
            self.flow_len, self.elem_len, self.filter_words, self.buckets, self.ways, self.bits, self.b,
            self.flow_seed, self.elem_seed, self.salt,
        )  # fmt: skip

    def merge(self, other: Sketch) -> None:
        """Fold ``other`` (same shape and seeds) into this sketch; see the module docstring."""
        if not isinstance(other, SpreadKeeperSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into SpreadKeeperSketch")
        if self._shape() != other._shape():
            raise ValueError(
                "can merge only SpreadKeeper sketches of the same key lengths, filter, buckets, ways, bits, "
                f"b and seed: {self._shape()} vs {other._shape()}"
            )
        np.bitwise_or(self.filter, other.filter, out=self.filter)
        ones = int(np.unpackbits(self.filter.view(np.uint8)).sum())
        level = max(self.level, other.level)
        while level < MAX_LEVEL and ones >= self._limits[level]:
            level += 1
        self.state[:] = (level, ones)
        sk_merge_tables(self.keys, self.counts, other.keys, other.counts)

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            _MAGIC, _VERSION, self.ways, self.bits, self.flow_len, self.elem_len, self.buckets,
            self.filter_words, self.threshold, self.b, self.flow_seed, self.elem_seed, self.salt,
            self.rng_state, self.level, int(self.state[1]),
        )  # fmt: skip
        return b"".join(
            [
                head,
                self.filter.astype("<u8", copy=False).tobytes(),
                self.keys.astype("<u8", copy=False).tobytes(),
                self.counts.astype("<f8", copy=False).tobytes(),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SpreadKeeperSketch:
        data = bytes(data)
        if len(data) < _HEADER.size or data[:4] != _MAGIC:
            raise ValueError("not a serialised SpreadKeeperSketch (bad magic)")
        _, ver, ways, bits, L, E, nb, nw, thr, b, fs, es, salt, state, level, ones = _HEADER.unpack_from(data)
        if ver != _VERSION:
            raise ValueError(f"SpreadKeeperSketch serialisation version {ver} is not supported")
        ok = 1 <= ways <= 64 and 1 <= bits <= 3 and 1 <= L <= 74 and E <= 74 and b > 1.0
        ok = ok and 0 < nb < 1 << 32 and 0 < nw < 1 << 32  # the kernel's remainders need 32-bit divisors
        if not (ok and 0 <= level <= MAX_LEVEL and 0 <= ones <= 64 * nw):
            raise ValueError(f"bad SpreadKeeperSketch header (ways {ways}, bits {bits}, keys {L}+{E}, b {b})")
        sk = cls.__new__(cls)
        sk._setup(L, E, nw, nb, ways, bits, b, fs, es, salt, state)
        sk.threshold = thr
        sk.state = np.array([level, ones], np.int64)
        kw = sk._kw
        sizes = (nw * 8, nb * ways * kw * 8, nb * ways * 8)
        want = _HEADER.size + sum(sizes)
        if len(data) != want:
            raise ValueError(f"serialised SpreadKeeperSketch has {len(data)} bytes, its header needs {want}")
        o = _HEADER.size
        sk.filter = aligned_zeros(nw, np.uint64)
        sk.filter[:] = np.frombuffer(data, "<u8", nw, o)
        o += sizes[0]
        sk.keys = aligned_zeros((nb, ways, kw), np.uint64)
        sk.keys.reshape(-1)[:] = np.frombuffer(data, "<u8", nb * ways * kw, o)
        o += sizes[1]
        sk.counts = aligned_zeros((nb, ways), np.float64)
        sk.counts.reshape(-1)[:] = np.frombuffer(data, "<f8", nb * ways, o)
        return sk
