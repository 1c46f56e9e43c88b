"""SpreadKeeper's block-pipelined update kernel against the kernel it replaced, bit for bit.

``sk_update`` hashes a block of pairs and prefetches their filter words, filters the block in order
listing the pairs that pass, then counts those in the table in order, three blocks in flight (issue
19). ``_old_kernel`` below is the kernel as it was before (a verbatim copy; its block constant renamed
``_OLD_BLOCK``), fed the flow and element words split as the old ``update`` split them. Both must leave
the same filter, sampling level, count of set bits, table (counts compared as bits) and generator state
for any input: block boundaries in odd places, batches of 0, 1 and 63-65 pairs, every pair in one
bucket and one filter word, the filter filling up through the sampling levels, flow and element keys
that start anywhere in a word (IPv4 4 B, IPv6 16 B, odd lengths, an empty element), weighted rows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from netspectra.sketches.base import distinct_rows
from netspectra.sketches.murmur import pack_words
from netspectra.sketches.primitives import fmix64, murmur_row, popcount64, uniform
from netspectra.sketches.spreadkeeper import _BLOCK, SpreadKeeperSketch

_OLD_BLOCK = 32


@njit(nogil=True, cache=True, inline="always")
def _pair_hash(
    fw: np.ndarray,
    ew: np.ndarray,
    p: int,
    L: int,
    E: int,
    fseed: np.uint64,
    eseed: np.uint64,
    salt: np.uint64,
) -> tuple:
    hf = murmur_row(fw, p, L, fseed)
    he = murmur_row(ew, p, E, eseed ^ hf)
    return hf, fmix64(((hf << np.uint64(32)) | he) ^ salt)


@njit(nogil=True, cache=True)
def _old_kernel(
    filt: np.ndarray,
    keys: np.ndarray,
    counts: np.ndarray,
    fw: np.ndarray,
    ew: np.ndarray,
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
) -> float:
    nw = np.uint64(filt.shape[0])
    nb, ways, kw = keys.shape
    unb = np.uint64(nb)
    n = fw.shape[0]
    nd = decay.shape[0]
    six = np.uint64(6)
    s20 = np.uint64(20)
    m63 = np.uint64(63)
    one = np.uint64(1)
    s32 = np.uint64(32)
    hb = np.empty(_OLD_BLOCK, np.uint64)
    jb = np.empty(_OLD_BLOCK, np.int64)
    sink = 0.0
    for b0 in range(0, n, _OLD_BLOCK):
        b1 = min(n, b0 + _OLD_BLOCK)
        for p in range(b0, b1):
            hf, h = _pair_hash(fw, ew, p, L, E, fseed, eseed, salt)
            hb[p - b0] = h
            j = np.int64(hf % unb)
            jb[p - b0] = j
            sink += float(filt[np.int64((h >> s32) % nw)]) + counts[j, 0]
        for p in range(b0, b1):
            h = hb[p - b0]
            wi = np.int64((h >> s32) % nw)
            level = state[0]
            if level and ((h >> s20) & ((one << np.uint64(level)) - one)) != 0:
                continue  # not in the sample of this level (nor of any later one)
            mask = np.uint64(0)
            for i in range(bits):
                mask |= one << ((h >> (six * np.uint64(i))) & m63)
            word = filt[wi]
            if (word & mask) == mask:
                continue  # a duplicate, or a new pair hidden by others (accounted for by the weights)
            q = popcount64(word) / 64.0
            hide = 1.0
            for _ in range(bits):
                hide *= q
            wt = float(one << np.uint64(level)) / (1.0 - hide)
            filt[wi] = word | mask
            state[1] += popcount64(mask & ~word)
            if state[1] >= limits[level]:
                state[0] = level + 1  # the filter is filling: sample half as many pairs from now on
            # ---- the flow table
            j = jb[p - b0]
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
                for k in range(kw - 1, -1, -1):  # last word first: it differs most (IPv4-mapped keys)
                    if keys[j, s, k] != fw[p, k]:
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
            for k in range(kw):
                keys[j, free, k] = fw[p, k]
            counts[j, free] = wt
    return sink


def _old_update(sk: SpreadKeeperSketch, x: np.ndarray, packets: np.ndarray | None = None) -> None:
    """The old ``SpreadKeeperSketch.update``: distinct rows, flow and element words packed apart."""
    a = distinct_rows(x, packets)
    fw, ew = pack_words(a[:, : sk.flow_len]), pack_words(a[:, sk.flow_len :])
    if fw.shape[0] == 0:
        return
    _old_kernel(
        sk.filter, sk.keys, sk.counts, fw, ew, sk.flow_len, sk.elem_len, np.uint64(sk.flow_seed),
        np.uint64(sk.elem_seed), np.uint64(sk.salt), sk.bits, sk.state, sk._limits, sk._decay, sk.b, sk._rng,
    )  # fmt: skip


def _rows(n: int, flows: int, elems: int, flow_len: int, elem_len: int, seed: int) -> np.ndarray:
    """flow‖element rows from small pools (flows, buckets, filter words and pairs repeat in a block)."""
    rng = np.random.default_rng(seed)
    fpool = rng.integers(0, 256, (flows, flow_len), dtype=np.uint8)
    epool = rng.integers(0, 256, (elems, elem_len), dtype=np.uint8)
    fid = np.minimum(rng.zipf(1.4, n) - 1, flows - 1)
    eid = rng.integers(0, elems, n)
    return np.ascontiguousarray(np.concatenate([fpool[fid], epool[eid]], axis=1))


def _assert_same(a: SpreadKeeperSketch, b: SpreadKeeperSketch) -> None:
    assert np.array_equal(a.filter, b.filter)
    assert np.array_equal(a.state, b.state)
    assert np.array_equal(a.keys, b.keys)
    assert np.array_equal(a.counts.view(np.uint64), b.counts.view(np.uint64))  # bits, not just values
    assert a.rng_state == b.rng_state


# (flow_len, elem_len): IPv4 / IPv6 addresses, address + port, five-tuple-like widths, flows of odd
# lengths (tails of 1-3 bytes; elements that start inside a word and straddle two: 5, 7, 13), element
# tails that straddle two words (7 + 3), an empty element, the longest keys
KEY_LENGTHS = [
    (16, 16), (4, 4), (4, 16), (16, 4), (16, 21), (6, 2), (5, 3), (7, 3), (7, 9), (1, 2), (13, 7),
    (3, 0), (8, 0), (18, 37), (74, 74),
]  # fmt: skip

SHAPES = [
    # every pair in one bucket of one slot and one filter word: levels rise within the first blocks
    {"filter_words": 1, "buckets": 1, "ways": 1, "bits": 3},
    {"filter_words": 1, "buckets": 1, "ways": 8, "bits": 1},
    {"filter_words": 7, "buckets": 3, "ways": 2, "bits": 2, "b": 1.5},
    {"filter_words": 96, "buckets": 23, "ways": 4, "bits": 3},
    {"filter_words": 4096, "buckets": 512, "ways": 8, "bits": 3},  # sparse: most new pairs pass
]


@pytest.mark.parametrize(("flow_len", "elem_len"), KEY_LENGTHS)
@pytest.mark.parametrize("shape", SHAPES)
def test_block_kernel_equals_old_kernel(flow_len: int, elem_len: int, shape: dict) -> None:
    new = SpreadKeeperSketch(seed=3, flow_len=flow_len, elem_len=elem_len, **shape)
    old = SpreadKeeperSketch(seed=3, flow_len=flow_len, elem_len=elem_len, **shape)
    x = _rows(6 * _BLOCK + 17, flows=12, elems=40, flow_len=flow_len, elem_len=elem_len, seed=flow_len)
    # batch lengths: one, shorter than a block, odd, exactly a block, one over, none, several plus a rest
    cuts = np.cumsum([1, _BLOCK - 1, 5, _BLOCK, _BLOCK + 1, 0, 3 * _BLOCK + 11])
    assert cuts[-1] == x.shape[0]
    for lo, hi in zip(np.concatenate([[0], cuts[:-1]]), cuts, strict=True):
        new.update(x[lo:hi])
        _old_update(old, x[lo:hi])
        _assert_same(new, old)
    assert new.counts.max() > 0.0
    if shape["filter_words"] == 1 and elem_len:
        assert new.level > 0  # the sampling levels were exercised (without elements: 12 pairs in all)


@pytest.mark.parametrize(("flow_len", "elem_len"), [(16, 16), (4, 4), (5, 3)])
def test_block_kernel_equals_old_kernel_on_weighted_rows(flow_len: int, elem_len: int) -> None:
    # rows of 0 packets go in not at all, rows of several once (their other packets are duplicates)
    new = SpreadKeeperSketch(seed=8, flow_len=flow_len, elem_len=elem_len, filter_words=64, buckets=9, ways=3)
    old = SpreadKeeperSketch(seed=8, flow_len=flow_len, elem_len=elem_len, filter_words=64, buckets=9, ways=3)
    x = _rows(5 * _BLOCK + 3, flows=30, elems=200, flow_len=flow_len, elem_len=elem_len, seed=2)
    packets = np.random.default_rng(4).integers(0, 4, x.shape[0]).astype(np.uint64)
    lengths = packets * np.uint64(60)
    for lo, hi in [(0, 1), (1, 70), (70, 70), (70, x.shape[0])]:
        new.update(x[lo:hi], lengths[lo:hi], packets[lo:hi])
        _old_update(old, x[lo:hi], packets[lo:hi])
        _assert_same(new, old)
    assert new.counts.max() > 0.0


@pytest.mark.parametrize(("flow_len", "elem_len"), [(16, 16), (4, 4), (5, 3)])
def test_block_kernel_equals_old_kernel_on_a_long_stream(flow_len: int, elem_len: int) -> None:
    # the default ways and bits at a small memory: the filter goes through several sampling levels and
    # the table's buckets are contested (decays, takeovers); thousands of flows, many distinct pairs
    new = SpreadKeeperSketch(48 << 10, seed=11, flow_len=flow_len, elem_len=elem_len, threshold=50)
    old = SpreadKeeperSketch(48 << 10, seed=11, flow_len=flow_len, elem_len=elem_len, threshold=50)
    x = _rows(300_007, flows=3000, elems=50_000, flow_len=flow_len, elem_len=elem_len, seed=5)
    for lo in range(0, x.shape[0], 65536):
        new.update(x[lo : lo + 65536])
        _old_update(old, x[lo : lo + 65536])
    _assert_same(new, old)
    assert new.level >= 2 and new.super_spreaders(50).keys.shape[0] > 0


def test_non_contiguous_keys_are_accepted() -> None:
    # a column slice of a wider array (as a task might hand over) goes in as its rows
    wide = _rows(3 * _BLOCK + 5, flows=20, elems=90, flow_len=16, elem_len=20, seed=9)
    x = wide[:, :32]
    new = SpreadKeeperSketch(seed=1, flow_len=16, elem_len=16, filter_words=32, buckets=5, ways=2)
    old = SpreadKeeperSketch(seed=1, flow_len=16, elem_len=16, filter_words=32, buckets=5, ways=2)
    new.update(x)
    _old_update(old, np.ascontiguousarray(x))
    _assert_same(new, old)


def test_arrays_start_on_cache_lines_and_survive_a_round_trip() -> None:
    # a bucket's counts (64 B) and keys (128 B) then span one and two lines
    sk = SpreadKeeperSketch(300_000, seed=2, flow_len=16, elem_len=16)
    sk.update(_rows(5000, flows=50, elems=500, flow_len=16, elem_len=16, seed=1))
    back = SpreadKeeperSketch.from_bytes(sk.to_bytes())
    for s in (sk, back):
        assert all(a.ctypes.data % 64 == 0 and a.flags.c_contiguous for a in (s.filter, s.keys, s.counts))
    _assert_same(sk, back)
    assert sk.memory_bytes == sk.filter.nbytes + sk.keys.nbytes + sk.counts.nbytes


@pytest.mark.parametrize(("filter_words", "bits"), [(1, 3), (1, 2), (2, 3)])
def test_block_kernel_equals_old_kernel_up_to_the_last_sampling_level(filter_words: int, bits: int) -> None:
    # a one- or two-word filter and many distinct pairs: the levels climb to the top, where the limits
    # are a bit or two apart and one pair can cross two of them (the level then rises one step per
    # passing pair, never on a pair that does not pass)
    kw = {"filter_words": filter_words, "buckets": 2, "ways": 2, "bits": bits}
    new = SpreadKeeperSketch(seed=4, flow_len=4, elem_len=4, **kw)
    old = SpreadKeeperSketch(seed=4, flow_len=4, elem_len=4, **kw)
    x = _rows(400_000, flows=3, elems=400_000, flow_len=4, elem_len=4, seed=8)
    for lo in range(0, x.shape[0], 65536):
        new.update(x[lo : lo + 65536])
        _old_update(old, x[lo : lo + 65536])
        _assert_same(new, old)
    assert new.level >= 10


@pytest.mark.parametrize("field", [6, 7])  # buckets, filter words
def test_a_header_past_32_bit_sizes_is_rejected(field: int) -> None:
    # the kernel's remainders (fastmod32) need divisors below 2**32, as the constructor does
    from netspectra.sketches.spreadkeeper import _HEADER

    data = SpreadKeeperSketch(seed=1, flow_len=4, elem_len=4, filter_words=8, buckets=2).to_bytes()
    head = list(_HEADER.unpack_from(data))
    head[field] = 1 << 32
    with pytest.raises(ValueError, match="bad SpreadKeeperSketch header"):
        SpreadKeeperSketch.from_bytes(_HEADER.pack(*head) + data[_HEADER.size :])
