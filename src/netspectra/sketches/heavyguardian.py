"""Heavy hitters by packets and bytes (skt_type 0, ``variant: heavyguardian``, the default).

HeavyGuardian's layout (Yang et al., KDD 2018) with HeavyKeeper's exponential-weakening decay (Gong et
al., USENIX ATC 2018), full keys instead of fingerprints, and one entry per flow for both counters:

* ``buckets`` buckets of ``ways`` slots; a slot holds a flow key, its packets and its bytes. A flow's
  bucket is ``murmur3_32(key, seed) % buckets``. Occupied slots are always a prefix of the bucket.
* A packet of flow K (wire length ``len``):

  - K holds a slot of its bucket → packets += 1, bytes += len (exact from then on);
  - else a free slot → K takes it with (1, len);
  - else the *weakest* slot (fewest packets, the first of equals) decays with probability ``b**-C``
    (C its packets): packets −= 1 and bytes −= ⌊bytes / packets⌋ (its mean packet size); a slot that
    reaches 0 packets is taken by K with (1, len). Otherwise the packet is not counted.

* Estimates are a slot's counters: a lower bound of the flow's true totals, exact for every packet since
  the flow took its slot. A heavy flow decays with probability ``b**-C`` (1e-17 at C = 500), so it
  keeps its slot; what it loses are the few packets it sent before its bucket had room (measured
  signed error −0.1 % to 0 at 160–640 KiB, ``benchmarks/RESULTS.md``).
* Heavy hitters: the slots with packets (bytes) ``>=`` the threshold; a flow is in one slot at most.

Randomness (the decay coin) comes from a splitmix64 generator whose state is part of the sketch, so a
run is reproducible from its seed and :mod:`netspectra.sketches.heavyguardian_ref` replays it bit for
bit. One uniform is drawn per packet that meets a full bucket without its key, none otherwise.

Memory: ``buckets · ways · 8 · (⌈key_length / 8⌉ + 2)`` bytes (key words, packets, bytes, all uint64):
32 B a slot for SrcIP keys, 56 B for five-tuples. ``memory`` sizes the table: the most buckets that fit.
Counters are 64-bit (no wrap within a period).

Merge: every slot of the other sketch is folded into the same bucket — counters add where both hold the
flow (exact); then the bucket keeps the ``ways`` slots with most packets (ties: this sketch's slots
first, then the other's, each in slot order). For engines fed by flow-sharded streams (every flow in
one engine) the heavy flows keep their exact counts and the merged sketch reports what one engine fed
with both streams reports, up to which of the weakest slots survive.
"""

from __future__ import annotations

import logging
import math
import secrets
import struct

import numpy as np

from netspectra.jit import njit
from netspectra.prefetch import prefetch
from netspectra.sketches.base import HeavyHitters, HitterType, Sketch, SketchParams, check_weights
from netspectra.sketches.keys import key_length as fields_key_length
from netspectra.sketches.murmur import derive_seeds, murmur3_32_words, pack_words
from netspectra.sketches.primitives import (
    aligned_zeros,
    fastmod32,
    fastmod32_magic,
    fmix32,
    mix_key_bytes,
    mix_leading_blocks,
    murmur_round,
    row_bytes_from,
    sat_add,
    uniform,
    words_to_keys,
)

log = logging.getLogger(__name__)

#: Slots per bucket (eight 32-byte slots = four cache lines for SrcIP keys).
DEFAULT_WAYS = 8
#: HeavyKeeper's decay base: a slot of C packets decays with probability b**-C.
DEFAULT_B = 1.08
#: Memory when neither ``memory`` nor ``width`` is configured.
DEFAULT_MEMORY = 1 << 20
DEFAULT_COUNT_THRESHOLD = 512
DEFAULT_SIZE_THRESHOLD = 524288
#: ``b**-C`` is tabulated for C below this; larger counters call ``pow`` (the reference does the same).
DECAY_LEN = 4096
#: Packets of a weighted row that draw their own coin against a full bucket (as captured packets would)
#: before the rest are skipped through at once (:func:`_contest`).
REPLAY = 256

_MAGIC = b"NSHG"
_VERSION = 1
# magic, version, ways, key_length, buckets, count thr, size thr, b, hash seed, rng state
_HEADER = struct.Struct("<4sHHIQQQdIQ")
#: Keys whose buckets :func:`hg_update` computes (and prefetches) before it applies any of them.
_BLOCK = 64


def _words(key_length: int) -> int:
    return (key_length + 7) // 8


def slot_bytes(key_length: int) -> int:
    """Bytes of one slot: the key's 64-bit words, packets and bytes."""
    return 8 * (_words(key_length) + 2)


def decay_table(b: float) -> np.ndarray:
    """``b**-C`` for C below :data:`DECAY_LEN` (``math.pow``, as the reference computes it)."""
    return np.array([math.pow(b, -float(c)) for c in range(DECAY_LEN)], np.float64)


# ------------------------------------------------------------------------------------------ kernels
@njit(nogil=True, cache=True)
def hg_update(
    table: np.ndarray,
    seed: np.uint64,
    words: np.ndarray,
    L: int,
    lengths: np.ndarray,
    decay: np.ndarray,
    b: float,
    rng: np.ndarray,
    packets: np.ndarray | None = None,
) -> None:
    """Feed every key (``words`` (n, kw), packed keys of ``L`` bytes) with ``lengths`` in order.

    Weighted rows (``packets`` uint64 (n,), ``lengths`` their octets): row ``p`` is ``packets[p]``
    packets of its key one after the other (:func:`_contest` when they meet a full bucket without their
    key); counters saturate at 2**64 - 1; a row of 0 packets changes nothing. ``None``: a packet per row.

    ``table`` is uint64 (buckets, ways, kw + 2). No hash depends on the table, so keys go in blocks of
    :data:`_BLOCK` through two passes: (1) hash the block's keys — MurmurHash3's rounds across the
    block, one SIMD lane per key, remainders by multiplication — and prefetch the first line of each
    key's bucket (where a heavy flow's slot usually is); (2) apply the rules of the module docstring in
    key order. The passes are software-pipelined over two blocks (pass 1 of block k, then pass 2 of
    block k - 1), so every prefetch has a pass to land. The result is a one-pass loop's (the
    reference's) bit for bit.
    """
    nb, ways, _ = table.shape
    n, kw = words.shape
    cnt = kw
    byt = kw + 1
    unb = np.uint64(nb)
    nb_magic = fastmod32_magic(unb)  # buckets < 2**32 (the constructor's limit)
    one = np.uint64(1)
    nd = decay.shape[0]
    flat = table.reshape(nb * ways * (kw + 2))
    stride = ways * (kw + 2)  # words of a bucket
    nbk = L // 4  # whole 4-byte blocks of the key
    tail = nbk  # the row of `mixed` for the tail (1-3 bytes); zero when there is none
    len_k = np.uint64(L)
    h0 = seed & np.uint64(0xFFFFFFFF)
    raw = np.empty((nbk + 1, _BLOCK), np.uint32)
    mixed = np.zeros((1, nbk + 1, _BLOCK), np.uint32)
    hl = np.empty(_BLOCK, np.uint32)  # running hashes, one lane per key
    rows = np.empty((2, _BLOCK), np.int64)  # [buffer, key of the block]: its bucket
    nblocks = (n + _BLOCK - 1) // _BLOCK
    for step in range(nblocks + 1):
        if step < nblocks:
            # ---- pass 1 (block `step`): the buckets; prefetch their first lines
            buf = step & 1
            a0 = step * _BLOCK
            na = min(n - a0, _BLOCK)
            mix_leading_blocks(words, a0, na, nbk, raw, mixed, 0)
            if L & 3:  # pack_words zero-pads: the tail needs no mask beyond its bytes
                mix_key_bytes(words, a0, na, 4 * nbk, L & 3, mixed, 0, tail)
            for tb in range(na):
                hl[tb] = h0
            for q in range(nbk):
                for tb in range(na):
                    hl[tb] = murmur_round(np.uint64(hl[tb]), np.uint64(mixed[0, q, tb]))
            for tb in range(na):
                h = fmix32(np.uint64(hl[tb]) ^ np.uint64(mixed[0, tail, tb]) ^ len_k)
                rows[buf, tb] = np.int64(fastmod32(h, nb_magic, unb))
            for tb in range(na):
                prefetch(flat, rows[buf, tb] * stride)
        if step == 0:
            continue
        # ---- pass 2 (block step - 1): the rules, in key order
        buf = (step - 1) & 1
        b0 = (step - 1) * _BLOCK
        nb2 = min(n - b0, _BLOCK)
        for tb in range(nb2):
            p = b0 + tb
            j = rows[buf, tb]
            ln = np.uint64(lengths[p])
            pk = one
            if packets is not None:
                pk = packets[p]
                if pk == 0:
                    continue
            hit = -1
            free = -1
            weak = 0
            weakest = np.uint64(0)
            for s in range(ways):
                c = table[j, s, cnt]
                if c == 0:
                    free = s  # occupied slots are a prefix: nothing after a free slot
                    break
                same = True
                for k in range(kw - 1, -1, -1):  # last word first: it differs most (IPv4-mapped keys)
                    if table[j, s, k] != words[p, k]:
                        same = False
                        break
                if same:
                    hit = s
                    break
                if s == 0 or c < weakest:
                    weakest = c
                    weak = s
            if hit >= 0:
                if packets is None:
                    table[j, hit, cnt] += one
                    table[j, hit, byt] += ln
                else:
                    table[j, hit, cnt] = sat_add(table[j, hit, cnt], pk)
                    table[j, hit, byt] = sat_add(table[j, hit, byt], ln)
                continue
            if packets is not None:
                k = np.uint64(0)
                if free < 0:
                    k = _contest(table, j, weak, cnt, byt, pk, decay, b, rng)
                    if k >= pk:
                        continue  # every packet of the row lost its coin
                    free = weak
                for w in range(kw):
                    table[j, free, w] = words[p, w]
                table[j, free, cnt] = pk - k
                table[j, free, byt] = row_bytes_from(ln, pk, k)
                continue
            if free < 0:
                # compared unsigned: a counter past 2**63 (weighted rows) is no negative index
                prob = decay[np.int64(weakest)] if weakest < np.uint64(nd) else math.pow(b, -float(weakest))
                if uniform(rng) >= prob:
                    continue
                c = weakest - one
                by = table[j, weak, byt]
                table[j, weak, byt] = by - by // weakest
                table[j, weak, cnt] = c
                if c != 0:
                    continue
                free = weak
            for k in range(kw):
                table[j, free, k] = words[p, k]
            table[j, free, cnt] = one
            table[j, free, byt] = ln


@njit(nogil=True, cache=True, inline="always")
def _contest(
    table: np.ndarray,
    j: int,
    weak: int,
    cnt: int,
    byt: int,
    pk: np.uint64,
    decay: np.ndarray,
    b: float,
    rng: np.ndarray,
) -> np.uint64:
    """The packets of a weighted row of ``pk`` packets meet bucket ``j``, full and without their key:
    each draws the coin against the weakest slot ``weak`` (it stays the weakest: only it loses), which
    decays on success; returns the index of the packet that empties it and takes the slot (``pk``: none
    did). The first :data:`REPLAY` packets draw one uniform each, exactly as that many captured
    packets; for the rest the number of failed coins before the next success is drawn at once from its
    geometric law (one uniform per success), the same distribution without a loop per packet."""
    nd = decay.shape[0]
    c = table[j, weak, cnt]
    k = np.uint64(0)
    one = np.uint64(1)
    limit = pk if pk < np.uint64(REPLAY) else np.uint64(REPLAY)
    while k < pk:
        prob = decay[np.int64(c)] if c < np.uint64(nd) else math.pow(b, -float(c))  # unsigned, as above
        if k < limit:
            if uniform(rng) >= prob:
                k += one
                continue
        else:
            if prob <= 0.0:
                return pk  # b**-C underflowed: no coin can succeed any more
            # failures before a success ~ Geometric(prob): floor(log(U) / log(1 - prob)), U in (0, 1]
            fails = math.log1p(-uniform(rng)) / math.log1p(-prob)
            if fails >= float(pk - k):
                return pk
            k += np.uint64(fails)  # fails >= 0: truncation is the floor
        by = table[j, weak, byt]
        table[j, weak, byt] = by - by // c
        c -= one
        table[j, weak, cnt] = c
        if c == 0:
            return k
        k += one
    return pk


@njit(nogil=True, cache=True)
def hg_query(table: np.ndarray, seed: np.uint64, words: np.ndarray, L: int) -> tuple[np.ndarray, np.ndarray]:
    """(packets, bytes) uint64 (m,) of each key: its slot's counters, 0 when it holds none."""
    nb, ways, _ = table.shape
    m, kw = words.shape
    pk = np.zeros(m, np.uint64)
    by = np.zeros(m, np.uint64)
    for p in range(m):
        j = np.int64(np.uint64(murmur3_32_words(words[p], L, seed)) % np.uint64(nb))
        for s in range(ways):
            if table[j, s, kw] == 0:
                break
            same = True
            for k in range(kw):
                if table[j, s, k] != words[p, k]:
                    same = False
                    break
            if same:
                pk[p] = table[j, s, kw]
                by[p] = table[j, s, kw + 1]
                break
    return pk, by


@njit(nogil=True, cache=True)
def hg_merge(table: np.ndarray, other: np.ndarray) -> None:
    """Fold ``other`` into ``table`` bucket by bucket (see the module docstring)."""
    nb, ways, stride = table.shape
    kw = stride - 2
    pool = np.zeros((2 * ways, stride), np.uint64)
    for j in range(nb):
        n = 0
        for s in range(ways):
            if table[j, s, kw] == 0:
                break
            pool[n, :] = table[j, s, :]
            n += 1
        mine = n
        for s in range(ways):
            if other[j, s, kw] == 0:
                break
            hit = -1
            for t in range(mine):
                same = True
                for k in range(kw):
                    if pool[t, k] != other[j, s, k]:
                        same = False
                        break
                if same:
                    hit = t
                    break
            if hit >= 0:
                pool[hit, kw] += other[j, s, kw]
                pool[hit, kw + 1] += other[j, s, kw + 1]
            else:
                pool[n, :] = other[j, s, :]
                n += 1
        # keep the `ways` entries with most packets: a stable insertion sort (pool order among ties)
        order = np.arange(n)
        for a in range(1, n):
            x = order[a]
            t = a - 1
            while t >= 0 and pool[order[t], kw] < pool[x, kw]:
                order[t + 1] = order[t]
                t -= 1
            order[t + 1] = x
        table[j, :, :] = 0
        for s in range(min(ways, n)):
            table[j, s, :] = pool[order[s], :]


# ------------------------------------------------------------------------------------------- sketch
class HeavyGuardianSketch(Sketch, skt_type=0):
    """Heavy hitters by packets and bytes in set-associative buckets (see the module docstring).

    ``memory`` (bytes) sizes the table: ``buckets = memory // (ways · slot_bytes(key_length))`` (at
    least 1); or give ``buckets`` directly. ``seed``: one integer from which the bucket hash seed and the
    generator state are derived (None: random, logged). ``b`` > 1 is the decay base. Thresholds of 0
    take the original's defaults (512 packets, 524288 bytes).
    """

    uses_elements = False
    accepts_weights = True

    def __init__(
        self,
        memory: int = 0,
        seed: int | None = None,
        *,
        key_length: int = 16,
        buckets: int = 0,
        ways: int = DEFAULT_WAYS,
        b: float = DEFAULT_B,
        count_threshold: int = 0,
        size_threshold: int = 0,
    ) -> None:
        if key_length < 1:
            raise ValueError(f"key_length must be at least 1 byte, got {key_length}")
        if not 1 <= ways <= 64:
            raise ValueError(f"ways must be between 1 and 64, got {ways}")
        if not b > 1.0:
            raise ValueError(f"b (the decay base) must be greater than 1, got {b}")
        if memory < 0 or buckets < 0 or count_threshold < 0 or size_threshold < 0:
            raise ValueError("memory, buckets and thresholds must be non-negative (0 = the default)")
        if not buckets:
            buckets = max(1, int(memory or DEFAULT_MEMORY) // (ways * slot_bytes(key_length)))
        if buckets >= 1 << 32:
            raise ValueError(f"{buckets} buckets is too many (at most 2^32 - 1)")
        if seed is None:
            seed = secrets.randbits(64)
            log.info("HeavyGuardianSketch: no seed given, using seed %d", seed)
        s = derive_seeds(int(seed), 3)
        self._setup(key_length, int(buckets), ways, float(b), int(s[0]), (int(s[1]) << 32) | int(s[2]))
        self.count_threshold = int(count_threshold) or DEFAULT_COUNT_THRESHOLD
        self.size_threshold = int(size_threshold) or DEFAULT_SIZE_THRESHOLD
        self.table = aligned_zeros((self.buckets, ways, self._kw + 2), np.uint64)

    def _setup(self, key_length: int, buckets: int, ways: int, b: float, hash_seed: int, state: int) -> None:
        self.key_length, self.buckets, self.ways, self.b = key_length, buckets, ways, b
        self.hash_seed = hash_seed
        self._kw = _words(key_length)
        self._decay = decay_table(b)
        self._rng = np.array([state], np.uint64)

    @classmethod
    def from_params(cls, params: SketchParams) -> HeavyGuardianSketch:
        """Reads ``memory`` (else the memory the ``mv`` variant takes at ``width`` × ``depth``, else 1
        MiB), ``b``, ``count_threshold``, ``size_threshold``, ``seed`` and the key length."""
        L = fields_key_length(params.flow_fields)
        memory = params.memory
        if not memory and params.width:
            from netspectra.sketches.countmin import CountMinSketch

            memory = params.width * (params.depth or 3) * CountMinSketch.bucket_bytes(L, "mv")
        return cls(
            memory,
            params.seed,
            key_length=L,
            b=params.b or DEFAULT_B,
            count_threshold=params.count_threshold,
            size_threshold=params.size_threshold,
        )

    def __repr__(self) -> str:
        return (
            f"HeavyGuardianSketch(buckets={self.buckets}, ways={self.ways}, key_length={self.key_length}, "
            f"b={self.b}, memory={self.memory_bytes / 2**10:.0f} KiB)"
        )

    @property
    def memory_bytes(self) -> int:
        return int(self.table.nbytes)

    @property
    def rng_state(self) -> int:
        """The generator's current 64-bit state (what a reference replay must start from)."""
        return int(self._rng[0])

    def _check_keys(self, keys: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        if keys.ndim != 2 or keys.shape[1] != self.key_length:
            raise ValueError(f"keys must be (n, {self.key_length}) uint8, got shape {keys.shape}")
        return keys

    def update(self, keys: np.ndarray, lengths: np.ndarray, packets: np.ndarray | None = None) -> None:
        """Feed ``keys`` (n, key_length) uint8 with wire ``lengths`` (n,), in row order; one kernel call.
        Weighted rows: ``packets`` (n,) and the rows' octets as ``lengths`` (see :func:`hg_update`)."""
        keys = self._check_keys(keys)
        lengths, packets = check_weights(keys.shape[0], lengths, packets)
        if keys.shape[0]:
            hg_update(
                self.table,
                np.uint64(self.hash_seed),
                pack_words(keys),
                self.key_length,
                lengths,
                self._decay,
                self.b,
                self._rng,
                packets,
            )

    def query(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(packets, bytes) uint64 (m,) for flow keys (m, key_length); 0 for a flow without a slot."""
        keys = self._check_keys(keys)
        return hg_query(self.table, np.uint64(self.hash_seed), pack_words(keys), self.key_length)

    def entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every occupied slot: keys (m, key_length) uint8, packets and bytes uint64 (m,) (copies)."""
        kw = self._kw
        flat = self.table.reshape(-1, kw + 2)
        occ = flat[:, kw] != 0
        return words_to_keys(flat[occ, :kw], self.key_length), flat[occ, kw].copy(), flat[occ, kw + 1].copy()

    def heavy_hitters(
        self, count_threshold: int | None = None, size_threshold: int | None = None
    ) -> dict[HitterType, HeavyHitters]:
        """COUNT and SIZE heavy hitters ``>=`` the threshold (the sketch's own unless given), sorted by
        value descending then key bytes."""
        ct = max(1, self.count_threshold if count_threshold is None else count_threshold)
        st = max(1, self.size_threshold if size_threshold is None else size_threshold)
        kw = self._kw
        flat = self.table.reshape(-1, kw + 2)
        pk, by = flat[:, kw], flat[:, kw + 1]
        # only the occupied slots over a threshold become candidates (what from_candidates keeps anyway):
        # not every occupied slot's key decoded and filtered twice (~5 ms of a 16 k x 8 table)
        keep = (pk != 0) & ((pk >= np.uint64(ct)) | (by >= np.uint64(st)))
        keys = words_to_keys(flat[keep, :kw], self.key_length)
        return {
            HitterType.COUNT: HeavyHitters.from_candidates(keys, pk[keep], ct),
            HitterType.SIZE: HeavyHitters.from_candidates(keys, by[keep], st),
        }

    def reset(self) -> None:
        self.table.fill(0)

    def merge(self, other: Sketch) -> None:
        """Fold ``other`` (same shape and seeds) into this sketch; see the module docstring."""
        if not isinstance(other, HeavyGuardianSketch):
            raise TypeError(f"cannot merge {type(other).__name__} into HeavyGuardianSketch")
        mine = (self.buckets, self.ways, self.key_length, self.b, self.hash_seed)
        theirs = (other.buckets, other.ways, other.key_length, other.b, other.hash_seed)
        if mine != theirs:
            raise ValueError(
                "can merge only HeavyGuardian sketches of the same buckets, ways, key_length, b and seed: "
                f"{mine} vs {theirs}"
            )
        hg_merge(self.table, other.table)

    def to_bytes(self) -> bytes:
        head = _HEADER.pack(
            _MAGIC,
            _VERSION,
            self.ways,
            self.key_length,
            self.buckets,
            self.count_threshold,
            self.size_threshold,
            self.b,
            self.hash_seed,
            self.rng_state,
        )
        return head + self.table.astype("<u8", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> HeavyGuardianSketch:
        data = bytes(data)
        if len(data) < _HEADER.size or data[:4] != _MAGIC:
            raise ValueError("not a serialised HeavyGuardianSketch (bad magic)")
        _, version, ways, L, nb, ct, st, b, hs, state = _HEADER.unpack_from(data)
        if version != _VERSION:
            raise ValueError(f"HeavyGuardianSketch serialisation version {version} is not supported")
        if not (1 <= ways <= 64 and L >= 1 and 1 <= nb < 1 << 32 and b > 1.0):  # 32-bit remainders
            raise ValueError(f"bad HeavyGuardianSketch header (ways {ways}, key {L}, buckets {nb}, b {b})")
        sk = cls.__new__(cls)
        sk._setup(L, nb, ways, b, hs, state)
        want = _HEADER.size + nb * ways * (sk._kw + 2) * 8
        if len(data) != want:
            raise ValueError(f"serialised HeavyGuardianSketch has {len(data)} bytes, its header needs {want}")
        sk.count_threshold, sk.size_threshold = ct, st
        sk.table = aligned_zeros((nb, ways, sk._kw + 2), np.uint64)
        sk.table.reshape(-1)[:] = np.frombuffer(data, "<u8", offset=_HEADER.size)
        return sk
