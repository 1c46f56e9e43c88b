"""HeavyGuardian's block-pipelined update kernel against the kernel it replaced, bit for bit.

``hg_update`` hashes a block of keys across SIMD lanes and prefetches their buckets, then applies the
block in key order, two blocks in flight (issue 19). ``_old_kernel`` below is the kernel as it was
before (a verbatim copy, with its ``_contest``; the block constant renamed ``_OLD_BLOCK``). Both must
leave the same table and generator state for any input: block boundaries in odd places, batches of 0,
1 and 63-65 keys, every key in one bucket, keys of every length (IPv4 4 B, IPv6 16 B, five-tuples,
odd lengths with tails of 1-3 bytes), weighted rows (several packets, none, saturating counters).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from netspectra.sketches.base import check_weights
from netspectra.sketches.heavyguardian import _BLOCK, REPLAY, HeavyGuardianSketch
from netspectra.sketches.murmur import pack_words
from netspectra.sketches.primitives import murmur_row, row_bytes_from, sat_add, uniform

_OLD_BLOCK = 32


@njit(nogil=True, cache=True)
def _old_kernel(
    table: np.ndarray,
    seed: np.uint64,
    words: np.ndarray,
    L: int,
    lengths: np.ndarray,
    decay: np.ndarray,
    b: float,
    rng: np.ndarray,
    packets: np.ndarray | None = None,
) -> np.uint64:
    """Feed every key (``words`` (n, kw), packed keys of ``L`` bytes) with ``lengths`` in order.

    Weighted rows (``packets`` uint64 (n,), ``lengths`` their octets): row ``p`` is ``packets[p]``
    packets of its key one after the other (:func:`_contest` when they meet a full bucket without their
    key); counters saturate at 2**64 - 1; a row of 0 packets changes nothing. ``None``: a packet per row.

    ``table`` is uint64 (buckets, ways, kw + 2). Works in blocks of ``_OLD_BLOCK`` packets: hash them and
    load their buckets' first counters (independent loads the CPU overlaps), then apply the rules of the
    module docstring in packet order. Returns a value derived from the loads (keeps them alive).
    """
    nb, ways, _ = table.shape
    n, kw = words.shape
    cnt = kw
    byt = kw + 1
    unb = np.uint64(nb)
    one = np.uint64(1)
    nd = decay.shape[0]
    rows = np.empty(_OLD_BLOCK, np.int64)
    sink = np.uint64(0)
    for b0 in range(0, n, _OLD_BLOCK):
        b1 = min(n, b0 + _OLD_BLOCK)
        for p in range(b0, b1):
            j = np.int64(murmur_row(words, p, L, seed) % unb)
            rows[p - b0] = j
            sink += table[j, 0, cnt]
        for p in range(b0, b1):
            j = rows[p - b0]
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
                    k = _old_contest(table, j, weak, cnt, byt, pk, decay, b, rng)
                    if k >= pk:
                        continue  # every packet of the row lost its coin
                    free = weak
                for w in range(kw):
                    table[j, free, w] = words[p, w]
                table[j, free, cnt] = pk - k
                table[j, free, byt] = row_bytes_from(ln, pk, k)
                continue
            if free < 0:
                ci = np.int64(weakest)
                prob = decay[ci] if ci < nd else math.pow(b, -float(ci))
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
    return sink


@njit(nogil=True, cache=True, inline="always")
def _old_contest(
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
        ci = np.int64(c)
        prob = decay[ci] if ci < nd else math.pow(b, -float(ci))
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


def _old_update(
    sk: HeavyGuardianSketch, keys: np.ndarray, lengths: np.ndarray, packets: np.ndarray | None = None
) -> None:
    """The old ``HeavyGuardianSketch.update``."""
    keys = np.ascontiguousarray(keys, dtype=np.uint8)
    lengths, packets = check_weights(keys.shape[0], lengths, packets)
    if keys.shape[0]:
        _old_kernel(
            sk.table, np.uint64(sk.hash_seed), pack_words(keys), sk.key_length, lengths, sk._decay, sk.b,
            sk._rng, packets,
        )  # fmt: skip


def _keys(n: int, flows: int, key_len: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Zipf keys from a small pool (buckets overflow and slots decay) and wire lengths."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (flows, key_len), dtype=np.uint8)
    keys = np.ascontiguousarray(pool[np.minimum(rng.zipf(1.3, n) - 1, flows - 1)])
    return keys, rng.integers(40, 1515, n).astype(np.uint32)


def _assert_same(a: HeavyGuardianSketch, b: HeavyGuardianSketch) -> None:
    assert np.array_equal(a.table, b.table)
    assert a.rng_state == b.rng_state


KEY_LENGTHS = [16, 4, 37, 13, 1, 2, 3, 5, 8, 9, 74]
SHAPES = [
    {"buckets": 1, "ways": 1},  # every key in one slot: contests all the time
    {"buckets": 1, "ways": 8},
    {"buckets": 5, "ways": 3, "b": 1.5},
    {"buckets": 257, "ways": 8},  # roomy: most keys hit their slot
]


@pytest.mark.parametrize("key_len", KEY_LENGTHS)
@pytest.mark.parametrize("shape", SHAPES)
def test_block_kernel_equals_old_kernel(key_len: int, shape: dict) -> None:
    new = HeavyGuardianSketch(seed=3, key_length=key_len, **shape)
    old = HeavyGuardianSketch(seed=3, key_length=key_len, **shape)
    keys, lengths = _keys(6 * _BLOCK + 17, flows=40, key_len=key_len, seed=key_len)
    # batch lengths: one, shorter than a block, odd, exactly a block, one over, none, several plus a rest
    cuts = np.cumsum([1, _BLOCK - 1, 5, _BLOCK, _BLOCK + 1, 0, 3 * _BLOCK + 11])
    assert cuts[-1] == keys.shape[0]
    for lo, hi in zip(np.concatenate([[0], cuts[:-1]]), cuts, strict=True):
        new.update(keys[lo:hi], lengths[lo:hi])
        _old_update(old, keys[lo:hi], lengths[lo:hi])
        _assert_same(new, old)
    assert new.table[:, :, new._kw].max() > 0


@pytest.mark.parametrize("key_len", [16, 4, 13, 37])
@pytest.mark.parametrize("shape", SHAPES[:3])
def test_block_kernel_equals_old_kernel_on_weighted_rows(key_len: int, shape: dict) -> None:
    # rows of 0 packets, of one, of a few, past REPLAY (the geometric skip), of 2**40 (the old kernel
    # indexed its decay table out of bounds once a counter passed 2**63: see test_heavyguardian.py)
    new = HeavyGuardianSketch(seed=6, key_length=key_len, **shape)
    old = HeavyGuardianSketch(seed=6, key_length=key_len, **shape)
    keys, _ = _keys(5 * _BLOCK + 9, flows=25, key_len=key_len, seed=7)
    rng = np.random.default_rng(key_len)
    packets = rng.choice(np.array([0, 1, 1, 2, 5, REPLAY + 300, 2**40], np.uint64), keys.shape[0])
    octets = packets * rng.integers(40, 1515, keys.shape[0]).astype(np.uint64)
    for lo, hi in [(0, 1), (1, 64), (64, 64), (64, 129), (129, keys.shape[0])]:
        new.update(keys[lo:hi], octets[lo:hi], packets[lo:hi])
        _old_update(old, keys[lo:hi], octets[lo:hi], packets[lo:hi])
        _assert_same(new, old)
    assert new.table[:, :, new._kw].max() > 0


@pytest.mark.parametrize("key_len", [16, 4, 13])
def test_block_kernel_equals_old_kernel_on_a_long_stream(key_len: int) -> None:
    # the default ways at a small memory: thousands of flows contest the buckets
    new = HeavyGuardianSketch(32 << 10, seed=11, key_length=key_len)
    old = HeavyGuardianSketch(32 << 10, seed=11, key_length=key_len)
    keys, lengths = _keys(300_007, flows=20_000, key_len=key_len, seed=5)
    for lo in range(0, keys.shape[0], 65536):
        new.update(keys[lo : lo + 65536], lengths[lo : lo + 65536])
        _old_update(old, keys[lo : lo + 65536], lengths[lo : lo + 65536])
    _assert_same(new, old)
    assert new.heavy_hitters(100, 1 << 20)


def test_table_starts_on_a_cache_line_and_survives_a_round_trip() -> None:
    sk = HeavyGuardianSketch(100_000, seed=2, key_length=16)
    keys, lengths = _keys(5000, flows=300, key_len=16, seed=1)
    sk.update(keys, lengths)
    back = HeavyGuardianSketch.from_bytes(sk.to_bytes())
    for s in (sk, back):
        assert s.table.ctypes.data % 64 == 0 and s.table.flags.c_contiguous
    _assert_same(sk, back)


def test_a_header_past_32_bit_buckets_is_rejected() -> None:
    # the kernel's remainders (fastmod32) need a divisor below 2**32, as the constructor does
    from netspectra.sketches.heavyguardian import _HEADER

    data = HeavyGuardianSketch(seed=1, key_length=4, buckets=2).to_bytes()
    head = list(_HEADER.unpack_from(data))
    head[4] = 1 << 32
    with pytest.raises(ValueError, match="bad HeavyGuardianSketch header"):
        HeavyGuardianSketch.from_bytes(_HEADER.pack(*head) + data[_HEADER.size :])
