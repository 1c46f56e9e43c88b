"""SuperSpread (skt_type 1): the numba kernels against the plain-Python reference, and the sketch's API."""

from __future__ import annotations

import math

import mmh3
import numpy as np
import pytest

from netspectra.batch import IPV4_MAPPED_PREFIX, PacketBatch
from netspectra.sketches.base import HitterType, SketchTask, sketch_class
from netspectra.sketches.superspread import (
    DECAY_LEN,
    SuperSpreadParams,
    SuperSpreadSketch,
    _clz32,
    murmur3_32_pair,
    p_from_registers,
    power_tables,
)
from netspectra.sketches.superspread_ref import SuperSpreadRef, clz32


def _stream(
    n: int, flows: int, seed: int, flow_len: int = 4, elem_len: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Skewed flows (a few big spreaders among many small ones) with random elements and repeats."""
    rng = np.random.default_rng(seed)
    fid = np.minimum(rng.zipf(1.3, n) - 1, flows - 1).astype(np.uint32)
    fk = np.zeros((n, flow_len), np.uint8)
    fk[:, -4:] = fid.astype(">u4").view(np.uint8).reshape(-1, 4)
    # elements: a pool per packet small enough that duplicates occur
    ek = rng.integers(0, 256, (n, elem_len), dtype=np.uint8)
    dup = rng.random(n) < 0.3
    ek[dup] = ek[rng.integers(0, max(1, n // 10), dup.sum())]
    return fk, ek


def _params(**kw) -> SuperSpreadParams:
    base = dict(
        width=16, depth=2, threshold=8, m=16, size=5, base=0.5, b=1.08, flow_len=4, elem_len=4, seed=7
    )
    base.update(kw)
    return SuperSpreadParams(**base)


def _ref(p: SuperSpreadParams) -> SuperSpreadRef:
    return SuperSpreadRef(p.width, p.depth, p.m, p.size, p.base, p.b, p.flow_len, p.seed, DECAY_LEN)


def _assert_same_state(sk: SuperSpreadSketch, ref: SuperSpreadRef) -> None:
    assert sk.row_seeds.tolist() == ref.row_seeds
    assert sk.cell_seeds.tolist() == [[list(c) for c in row] for row in ref.cell_seeds]
    assert sk.regs.tolist() == ref.regs
    assert sk.p.tolist() == ref.p  # bit-for-bit: same operations in the same order
    assert sk.values.tolist() == ref.values
    assert [[bytes(k) for k in row] for row in sk.keys] == ref.keys
    assert sk.rng_state == ref.rng.state  # the same number of random draws was consumed


# ------------------------------------------------------------------------------------ hashing helpers
def test_murmur_pair_matches_mmh3() -> None:
    rng = np.random.default_rng(3)
    for length in range(0, 41):
        data = rng.integers(0, 256, length + 3, dtype=np.uint8)
        sa, sb = (int(s) for s in rng.integers(0, 1 << 32, 2, dtype=np.uint64))
        ha, hb = murmur3_32_pair(data, length, sa, sb)
        raw = data[:length].tobytes()
        assert (int(ha), int(hb)) == (mmh3.hash(raw, sa, signed=False), mmh3.hash(raw, sb, signed=False))


def test_clz32_matches_reference() -> None:
    values = [0, 1, 2, 3, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
    values += [1 << k for k in range(32)] + [(1 << k) - 1 for k in range(1, 33)]
    for v in values:
        assert _clz32(np.uint32(v)) == clz32(v), v


# ------------------------------------------------------------------------------ kernel vs reference
@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the original's defaults at a small size
        {"size": 2, "m": 4},  # cap 3: registers saturate, the `v < cap` branch and p → 0 are exercised
        {"base": 0.7, "b": 1.5, "depth": 3, "width": 5, "seed": 99},  # inexact float p, fast decay
        {"flow_len": 5, "elem_len": 3, "m": 7},  # odd lengths: murmur tails
    ],
)
def test_kernel_agrees_with_reference(overrides: dict) -> None:
    p = _params(**overrides)
    fk, ek = _stream(6000, flows=40, seed=11, flow_len=p.flow_len, elem_len=p.elem_len)
    sk = SuperSpreadSketch(p)
    ref = _ref(p)
    _assert_same_state(sk, ref)
    # in several batches: state carries over between kernel calls
    for s in range(0, fk.shape[0], 1700):
        sk.update_pairs(fk[s : s + 1700], ek[s : s + 1700])
    ref.update(fk, ek)
    _assert_same_state(sk, ref)
    assert int(sk.values.max()) > 1  # the input did exercise the counters
    for t in (1, p.threshold, 50):
        hh = sk.super_spreaders(t)
        assert [(bytes(k), int(v)) for k, v in zip(hh.keys, hh.values, strict=True)] == ref.heavy_hitters(t)
    probe = np.unique(fk, axis=0)
    probe = np.concatenate([probe, np.full((1, p.flow_len), 0xEE, np.uint8)])  # never inserted
    assert sk.query(probe).tolist() == [ref.query(f.tobytes()) for f in probe]
    assert sk.query_one(probe[-1].tobytes()) == 1  # unknown flows read 1, as the original


def test_power_tables_match_reference() -> None:
    from netspectra.sketches.superspread_ref import power_tables as ref_tables

    pw, dec = power_tables(128, 0.5, 1.08)
    rpw, rdec = ref_tables(128, 0.5, 1.08, DECAY_LEN)
    assert pw.tolist() == rpw and dec.tolist() == rdec


def test_p_is_probability_of_change() -> None:
    """``p`` kept incrementally equals (1/m)·Σ base**reg over uncapped registers (exactly, base 0.5)."""
    p = _params(m=32, size=3)
    sk = SuperSpreadSketch(p)
    fk, ek = _stream(4000, flows=10, seed=5)
    sk.update_pairs(fk, ek)
    recomputed = np.empty_like(sk.p)
    pw, _ = power_tables(p.m, p.base, p.b)
    p_from_registers(sk.regs, pw, p.cap, recomputed)
    assert np.array_equal(recomputed, sk.p)
    i, j = np.unravel_index(np.argmin(sk.p), sk.p.shape)
    python = sum(p.base ** int(r) for r in sk.regs[i, j] if r < p.cap) / p.m
    assert sk.p[i, j] == pytest.approx(python, rel=1e-12)


# ----------------------------------------------------------------------------------------- behaviour
def test_single_flow_spread_estimate() -> None:
    """One flow with N distinct elements in an empty sketch is estimated within the HLL's error."""
    sk = SuperSpreadSketch(SuperSpreadParams(width=64, depth=2, m=128, flow_len=4, elem_len=4, seed=3))
    n = 5000
    fk = np.zeros((3 * n, 4), np.uint8)
    ek = np.tile(np.arange(n, dtype=">u4").view(np.uint8).reshape(-1, 4), (3, 1))  # each element 3 times
    sk.update_pairs(fk, ek)
    est = sk.query_one(bytes(4))
    assert abs(est - n) / n < 0.3, est


def test_duplicates_do_not_count() -> None:
    sk = SuperSpreadSketch(_params())
    fk = np.zeros((1000, 4), np.uint8)
    ek = np.zeros((1000, 4), np.uint8)  # one element, a thousand times
    sk.update_pairs(fk, ek)
    assert sk.query_one(bytes(4)) == 1
    assert int(sk.values.max()) == 1


def test_deterministic_by_seed() -> None:
    fk, ek = _stream(3000, flows=30, seed=2)
    a, b, c = (SuperSpreadSketch(_params(seed=s)) for s in (5, 5, 6))
    for sk in (a, b, c):
        sk.update_pairs(fk, ek)
    assert (
        np.array_equal(a.values, b.values) and np.array_equal(a.regs, b.regs) and a.rng_state == b.rng_state
    )
    assert not np.array_equal(a.row_seeds, c.row_seeds)


def test_reset_restores_p_unlike_the_original() -> None:
    """Spec §12 bug 2: the original's Reset left ``p`` stale, so spreads after a reset were wrong.

    With a stale (small) ``p`` the first new elements of a period are worth ``1/p`` each (too much),
    and ``p`` then falls below zero, after which nothing counts (the original's loop over a negative
    number of units does nothing): large spreads come out far too low.
    """
    p = _params(width=8, depth=1, m=64)
    fk, ek = _stream(20000, flows=200, seed=8)
    sk = SuperSpreadSketch(p)
    sk.update_pairs(fk, ek)
    assert sk.p.max() < 0.5  # the first period drove p down in every cell
    stale = sk.p.copy()
    sk.reset()
    fresh = SuperSpreadSketch(p)
    assert np.array_equal(sk.p, fresh.p) and np.array_equal(sk.regs, fresh.regs)
    assert np.array_equal(sk.keys, fresh.keys) and np.array_equal(sk.values, fresh.values)
    # the second period: a flow with 3000 distinct elements
    n = 3000
    f2 = np.full((n, 4), 3, np.uint8)
    e2 = np.arange(n, dtype=">u4").view(np.uint8).reshape(-1, 4)
    twin = SuperSpreadSketch.from_bytes(sk.to_bytes())
    sk.update_pairs(f2, e2)
    ours = sk.query_one(f2[0].tobytes())
    assert abs(ours - n) / n < 0.3, ours  # one row of m = 64: about 13 % HLL error, plus sampling
    # the original's behaviour, emulated: same state but p kept from the first period
    twin.p[:] = stale
    twin.update_pairs(f2, e2)
    theirs = twin.query_one(f2[0].tobytes())
    assert abs(theirs - n) / n > 0.5, theirs


def test_serialisation_round_trip() -> None:
    fk, ek = _stream(3000, flows=30, seed=4)
    sk = SuperSpreadSketch(_params())
    sk.update_pairs(fk[:1500], ek[:1500])
    data = sk.to_bytes()
    back = SuperSpreadSketch.from_bytes(data)
    assert back.params == sk.params and back.rng_state == sk.rng_state
    for name in ("row_seeds", "cell_seeds", "regs", "p", "keys", "values"):
        assert np.array_equal(getattr(back, name), getattr(sk, name)), name
    # the copy continues exactly like the original object
    sk.update_pairs(fk[1500:], ek[1500:])
    back.update_pairs(fk[1500:], ek[1500:])
    assert np.array_equal(back.values, sk.values) and np.array_equal(back.p, sk.p)
    with pytest.raises(ValueError, match="magic"):
        SuperSpreadSketch.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="bytes"):
        SuperSpreadSketch.from_bytes(data[:-1])


def test_merge_registers_and_values() -> None:
    p = _params(width=32, m=32)
    fk, ek = _stream(8000, flows=60, seed=6)
    even = (fk[:, -1] % 2) == 0  # shard by flow, as engines would
    a, b = SuperSpreadSketch(p), SuperSpreadSketch(p)
    a.update_pairs(fk[even], ek[even])
    b.update_pairs(fk[~even], ek[~even])
    ra, rb, va, vb = a.regs.copy(), b.regs.copy(), a.values.copy(), b.values.copy()
    top_a, top_b = a.super_spreaders(1), b.super_spreaders(1)
    a.merge(b)
    assert np.array_equal(a.regs, np.maximum(ra, rb))
    pw, _ = power_tables(p.m, p.base, p.b)
    want_p = np.empty_like(a.p)
    p_from_registers(a.regs, pw, p.cap, want_p)
    assert np.array_equal(a.p, want_p)
    assert np.array_equal(a.values, np.maximum(va, vb))
    # every cell's key is the one of the side whose value won
    take_b = vb > va
    assert np.array_equal(a.keys[take_b], b.keys[take_b])
    # the largest spreader of each shard keeps its estimate (its counters win their cells)
    for top in (top_a, top_b):
        assert a.query(top.keys[:1]).tolist() == top.values[:1].tolist()


def test_merge_refuses_mismatch() -> None:
    a = SuperSpreadSketch(_params())
    with pytest.raises(ValueError, match="parameters"):
        a.merge(SuperSpreadSketch(_params(width=17)))
    with pytest.raises(ValueError, match="parameters"):
        a.merge(SuperSpreadSketch(_params(seed=8)))
    with pytest.raises(TypeError):
        a.merge(object())  # type: ignore[arg-type]


def test_params_defaults_and_validation() -> None:
    p = SuperSpreadParams.from_config()
    assert (p.width, p.depth, p.threshold, p.m, p.size, p.base, p.b) == (1 << 20, 3, 4096, 128, 5, 0.5, 1.08)
    assert p.cap == 31
    assert SuperSpreadParams.from_config(size=8).cap == 33  # a register never exceeds clz32 + 1
    with pytest.raises(ValueError, match="base"):
        SuperSpreadParams.from_config(base=1.5)
    with pytest.raises(ValueError, match="b must"):
        SuperSpreadParams.from_config(b=0.9)
    with pytest.raises(ValueError, match="flow_keys"):
        SuperSpreadSketch(_params()).update_pairs(np.zeros((2, 3), np.uint8), np.zeros((2, 4), np.uint8))


def test_memory_bytes() -> None:
    sk = SuperSpreadSketch(SuperSpreadParams(width=32768, depth=2, m=128, flow_len=16, elem_len=16))
    assert sk.memory_bytes == 2 * 32768 * (128 + 16 + 4 + 8 + 8)
    assert sk.original_memory_bytes == 2 * 32768 * (8 * 128 + 16 + 8)  # ≈ 68 MB, spec §3


# ------------------------------------------------------------------------------------ task wrapper
def _v4(a: np.ndarray) -> np.ndarray:
    out = np.empty((a.shape[0], 16), np.uint8)
    out[:, :12] = IPV4_MAPPED_PREFIX
    out[:, 12:] = a.astype(">u4").view(np.uint8).reshape(-1, 4)
    return out


def test_sketch_task_reports_spread() -> None:
    assert sketch_class(1, "original") is SuperSpreadSketch
    rng = np.random.default_rng(9)
    n_spread = 3000
    # one source with 3000 distinct destinations among 256 sources talking to 16 servers
    src = np.concatenate(
        [np.full(n_spread, 0xC6120105, np.uint32), rng.integers(0x0A000000, 0x0A000100, 20000)]
    )
    dst = np.concatenate(
        [rng.choice(1 << 32, n_spread, replace=False), rng.integers(0x64000000, 0x64000010, 20000)]
    )
    order = rng.permutation(src.shape[0])
    src, dst = src[order].astype(np.uint32), dst[order].astype(np.uint32)
    n = src.shape[0]
    batch = PacketBatch(
        ts_ns=np.arange(n, dtype=np.int64),
        src_ip=_v4(src),
        dst_ip=_v4(dst),
        src_port=np.zeros(n, np.uint16),
        dst_port=np.zeros(n, np.uint16),
        protocol=np.full(n, 6, np.uint8),
        length=np.full(n, 60, np.uint32),
    )
    task = SketchTask(
        "ss_src_dst",
        1,
        ["SrcIP"],
        ["DstIP"],
        width=1024,
        depth=2,
        count_threshold=1000,
        seed=1,
        variant="original",
    )
    task.update(batch.head(10000))
    task.update(batch.take(slice(10000, None)))
    snap = task.snapshot()
    assert snap.count is None and snap.size is None  # spread data only (the original's Size: nil)
    assert snap.spread is not None
    assert snap.spread.flows == ("198.18.1.5",)
    assert abs(int(snap.spread.values[0]) - n_spread) / n_spread < 0.3
    table = snap.to_arrow()
    assert table.column("Type").to_pylist() == [int(HitterType.SPREAD)]
    assert table.column("Flow").to_pylist() == ["198.18.1.5"]
    # snapshot with reset empties the sketch, p included
    task.snapshot(reset=True)
    sk = task.sketch
    assert isinstance(sk, SuperSpreadSketch)
    assert not sk.values.any() and (sk.p == 1.0).all()
    assert math.isclose(sk.memory_bytes, 2 * 1024 * (128 + 16 + 20))
