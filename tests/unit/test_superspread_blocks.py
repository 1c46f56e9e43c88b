"""SuperSpread's block-pipelined update kernel against the one-pass kernel it replaced, bit for bit.

``update_kernel`` hashes a block of packets, prefetches, then applies the block's updates in order
(issue 19). ``_one_pass_kernel`` below is the kernel as it was before (a verbatim copy, with its own
binary-search clz32): per packet and row, hash, encode, update. Both must leave the same registers,
``p`` (compared as bits), keys, values and generator state for any input — block boundaries in odd
places, blocks shorter than one block, many packets of one block in the same cell, every key width.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from netspectra.sketches.murmur import murmur3_32
from netspectra.sketches.primitives import uniform
from netspectra.sketches.superspread import (
    _BLOCK,
    SuperSpreadParams,
    SuperSpreadSketch,
    murmur3_32_pair,
)


@njit(cache=True)
def _clz32_search(x: np.uint32) -> int:
    v = np.uint64(x)
    if v == 0:
        return 32
    n = 0
    if v <= np.uint64(0x0000FFFF):
        n += 16
        v <<= np.uint64(16)
    if v <= np.uint64(0x00FFFFFF):
        n += 8
        v <<= np.uint64(8)
    if v <= np.uint64(0x0FFFFFFF):
        n += 4
        v <<= np.uint64(4)
    if v <= np.uint64(0x3FFFFFFF):
        n += 2
        v <<= np.uint64(2)
    if v <= np.uint64(0x7FFFFFFF):
        n += 1
    return n


@njit(cache=True)
def _one_pass_kernel(x, L, row_seeds, cell_seeds, regs, p, keys, values, pw_m, decay, b, cap, rng):  # type: ignore[no-untyped-def]
    n, LE = x.shape
    d, w, m = regs.shape
    nd = decay.shape[0]
    for t in range(n):
        buf = x[t]
        flow = buf
        for i in range(d):
            j = murmur3_32(flow, L, row_seeds[i]) % np.uint32(w)
            h0, h1 = murmur3_32_pair(buf, LE, cell_seeds[i, j, 0], cell_seeds[i, j, 1])
            v = _clz32_search(h0) + 1
            if v > cap:
                v = cap
            r = h1 % np.uint32(m)
            old = int(regs[i, j, r])
            if v <= old:
                continue
            regs[i, j, r] = v
            before = p[i, j]
            q = before - pw_m[old]
            if v < cap:
                q = q + pw_m[v]
            p[i, j] = q
            if before <= 0.0:
                continue
            inv = 1.0 / before
            units_f = math.ceil(inv)
            if uniform(rng) >= inv / units_f:
                continue
            units = int(units_f)
            val = np.int64(values[i, j])
            while units > 0:
                if val == 0:
                    val = 1
                    for c in range(L):
                        keys[i, j, c] = flow[c]
                    units -= 1
                    continue
                same = True
                for c in range(L):
                    if keys[i, j, c] != flow[c]:
                        same = False
                        break
                if same:
                    val += units
                    units = 0
                else:
                    units -= 1
                    prob = decay[val] if val < nd else math.pow(b, -float(val))
                    if uniform(rng) < prob:
                        val -= 1
            if val > 0xFFFFFFFF:
                val = 0xFFFFFFFF
            values[i, j] = np.uint32(val)


def _one_pass_update(sk: SuperSpreadSketch, x: np.ndarray) -> None:
    _one_pass_kernel(
        np.ascontiguousarray(x),
        sk.params.flow_len,
        sk.row_seeds,
        sk.cell_seeds,
        sk.regs,
        sk.p,
        sk.keys,
        sk.values,
        sk._pw_m,
        sk._decay,
        float(sk.params.b),
        sk.params.cap,
        sk._rng,
    )


def _rows(n: int, flows: int, elems: int, flow_len: int, elem_len: int, seed: int) -> np.ndarray:
    """flow‖element rows from small pools (so cells, flows and pairs repeat within a block)."""
    rng = np.random.default_rng(seed)
    fpool = rng.integers(0, 256, (flows, flow_len), dtype=np.uint8)
    epool = rng.integers(0, 256, (elems, elem_len), dtype=np.uint8)
    fid = np.minimum(rng.zipf(1.4, n) - 1, flows - 1)
    eid = rng.integers(0, elems, n)
    return np.concatenate([fpool[fid], epool[eid]], axis=1)


def _assert_same(a: SuperSpreadSketch, b: SuperSpreadSketch) -> None:
    assert np.array_equal(a.regs, b.regs)
    assert np.array_equal(a.p.view(np.uint64), b.p.view(np.uint64))  # bits, not just values
    assert np.array_equal(a.keys, b.keys)
    assert np.array_equal(a.values, b.values)
    assert a.rng_state == b.rng_state


# (flow_len, elem_len): IPv4 / IPv6 addresses, address + port, odd widths (tails of 1-3 bytes in the
# flow, in the row, in both), an empty element, long keys
KEY_LENGTHS = [(4, 4), (16, 16), (4, 16), (16, 4), (6, 2), (5, 3), (1, 2), (13, 7), (3, 0), (18, 37)]


@pytest.mark.parametrize(("flow_len", "elem_len"), KEY_LENGTHS)
@pytest.mark.parametrize(
    "shape",
    [
        {"width": 1, "depth": 2, "m": 16},  # every packet in one cell per row: updates inside a block collide
        {"width": 3, "depth": 3, "m": 7, "size": 2},  # odd depth and m, cap 3: saturating registers
        {"width": 64, "depth": 1, "m": 128},
        {"width": 257, "depth": 4, "m": 32, "base": 0.7, "b": 1.5},
    ],
)
def test_block_kernel_equals_one_pass_kernel(flow_len: int, elem_len: int, shape: dict) -> None:
    params = SuperSpreadParams(
        **{"threshold": 4, "size": 5, "base": 0.5, "b": 1.08, "seed": 3, **shape},
        flow_len=flow_len,
        elem_len=elem_len,
    )
    new, old = SuperSpreadSketch(params), SuperSpreadSketch(params)
    x = _rows(6 * _BLOCK + 17, flows=12, elems=40, flow_len=flow_len, elem_len=elem_len, seed=flow_len)
    # batch lengths: shorter than a block, one, exactly one block, one over, several plus a remainder
    cuts = np.cumsum([1, _BLOCK - 1, 5, _BLOCK, _BLOCK + 1, 0, 3 * _BLOCK + 11])
    assert cuts[-1] == x.shape[0]
    for lo, hi in zip(np.concatenate([[0], cuts[:-1]]), cuts, strict=True):
        new.update(x[lo:hi])
        _one_pass_update(old, x[lo:hi])
        _assert_same(new, old)
    assert int(new.values.max()) > 0 and new.rng_state != SuperSpreadSketch(params).rng_state


@pytest.mark.parametrize(("flow_len", "elem_len"), [(4, 4), (16, 16), (5, 3)])
def test_block_kernel_equals_one_pass_kernel_on_a_long_stream(flow_len: int, elem_len: int) -> None:
    # the shipped shape (depth 2, m 128) at a small width; thousands of flows, many distinct pairs
    params = SuperSpreadParams(
        width=500, depth=2, threshold=50, m=128, size=5, flow_len=flow_len, elem_len=elem_len, seed=11
    )
    new, old = SuperSpreadSketch(params), SuperSpreadSketch(params)
    x = _rows(200_003, flows=3000, elems=5000, flow_len=flow_len, elem_len=elem_len, seed=5)
    new.update(x)
    _one_pass_update(old, x)
    _assert_same(new, old)
    assert int(new.values.max()) > 50  # the heavy flows did become spreaders


def test_same_cell_twice_in_one_block_sees_the_first_update() -> None:
    # one flow, one cell per row, m = 1: every new element's rank races the previous one in the same
    # register, so reading a stale register in the block would change which packets count
    params = SuperSpreadParams(width=1, depth=2, threshold=1, m=1, size=5, flow_len=4, elem_len=4, seed=1)
    new, old = SuperSpreadSketch(params), SuperSpreadSketch(params)
    x = np.zeros((_BLOCK, 8), np.uint8)
    x[:, 4:] = np.arange(_BLOCK, dtype="<u4").view(np.uint8).reshape(-1, 4)
    new.update(x)
    _one_pass_update(old, x)
    _assert_same(new, old)
    # each row's one register holds the largest rank of the block, and p is exactly base**register
    ranks = new.regs[:, 0, 0].astype(int)
    assert ranks.min() >= 2
    assert new.p[:, 0].tolist() == [0.5**r for r in ranks]
