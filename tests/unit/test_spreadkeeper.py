"""SpreadKeeper (skt_type 1, the default variant): kernel vs plain-Python reference, duplicate
insensitivity, unbiasedness, merge, serialisation, memory and the SketchTask wiring."""

from __future__ import annotations

import numpy as np
import pytest
from allocation import sketch_allocation

from netspectra.batch import IPV4_MAPPED_PREFIX, PacketBatch
from netspectra.sketches.base import HitterType, SketchTask, sketch_class
from netspectra.sketches.primitives import words_to_keys
from netspectra.sketches.spreadkeeper import DECAY_LEN, SpreadKeeperSketch, slot_bytes
from netspectra.sketches.spreadkeeper_ref import SpreadKeeperRef


def _pairs(seed: int, n: int, flows: int, L: int, E: int) -> np.ndarray:
    """flow‖element keys: Zipf flows (a few wide spreaders), random elements, 30 % repeated pairs."""
    rng = np.random.default_rng(seed)
    fk = rng.integers(0, 256, (flows, L), dtype=np.uint8)[(rng.zipf(1.3, n) - 1) % flows]
    ek = rng.integers(0, 256, (n, E), dtype=np.uint8)
    x = np.ascontiguousarray(np.concatenate([fk, ek], axis=1))
    dup = rng.random(n) < 0.3
    x[dup] = x[rng.integers(0, n, int(dup.sum()))]
    return x


def _ref_for(sk: SpreadKeeperSketch) -> SpreadKeeperRef:
    return SpreadKeeperRef(
        sk.filter_words, sk.buckets, sk.ways, sk.bits, sk.b, sk.flow_seed, sk.elem_seed, sk.salt,
        sk.rng_state, DECAY_LEN,
    )  # fmt: skip


def _table(sk: SpreadKeeperSketch) -> list[list[list]]:
    out = []
    for j in range(sk.buckets):
        slots = []
        for s in range(sk.ways):
            c = float(sk.counts[j, s])
            if c == 0.0:
                assert not sk.counts[j, s:].any(), (j, s)  # occupied slots are a prefix
                break
            slots.append([words_to_keys(sk.keys[j, s], sk.flow_len).tobytes(), c])
        out.append(slots)
    return out


def _truth(x: np.ndarray, L: int) -> dict[bytes, int]:
    u = np.unique(x, axis=0)
    f, c = np.unique(u[:, :L], axis=0, return_counts=True)
    return {bytes(k): int(v) for k, v in zip(f, c, strict=True)}


@pytest.mark.parametrize(("L", "E", "bits"), [(4, 4, 3), (16, 16, 3), (13, 5, 1), (37, 2, 2), (3, 0, 3)])
def test_kernel_agrees_with_reference(L: int, E: int, bits: int) -> None:
    x = _pairs(L * 7 + E, 12_000, 1500, L, E)
    # a small filter (hiding happens, weights are well above 1) and a crowded table (decays happen)
    sk = SpreadKeeperSketch(seed=5, flow_len=L, elem_len=E, filter_words=96, buckets=23, ways=4, bits=bits)
    ref = _ref_for(sk)
    for o in range(0, x.shape[0], 5000):
        sk.update(x[o : o + 5000])
    ref.update([r[:L].tobytes() for r in x], [r[L:].tobytes() for r in x])
    assert sk.filter.tolist() == ref.filter
    assert _table(sk) == ref.table  # counts bit for bit: the same float operations in the same order
    assert sk.rng_state == ref.rng.state
    assert sk.state.tolist() == [ref.level, ref.ones]
    assert sk.level >= 2 or E == 0  # the filter filled: sampling (without elements: one pair a flow)
    assert 0.2 < sk.filter_fill < 0.9
    flows = np.unique(x[:, :L], axis=0)
    assert sk.estimates(flows).tolist() == [ref.query(f.tobytes()) for f in flows]


def test_duplicates_change_nothing() -> None:
    x = _pairs(1, 8000, 500, 16, 16)
    sk = SpreadKeeperSketch(seed=2, flow_len=16, elem_len=16, filter_words=400, buckets=16)
    sk.update(x)
    before = (sk.filter.copy(), sk.keys.copy(), sk.counts.copy(), sk.rng_state)
    sk.update(x[::-1])  # every pair again, in another order
    assert np.array_equal(sk.filter, before[0]) and np.array_equal(sk.keys, before[1])
    assert np.array_equal(sk.counts, before[2]) and sk.rng_state == before[3]


def test_exact_while_the_filter_is_sparse_and_the_table_has_room() -> None:
    x = _pairs(3, 20_000, 300, 16, 16)
    sk = SpreadKeeperSketch(seed=1, flow_len=16, elem_len=16, filter_words=1 << 20, buckets=512)
    sk.update(x)
    truth = _truth(x, 16)
    flows = np.frombuffer(b"".join(truth), np.uint8).reshape(-1, 16)
    assert sk.query(flows).tolist() == list(truth.values())


def test_estimates_are_unbiased_when_the_filter_hides_pairs() -> None:
    # one flow of spread 300 among 20 000 background pairs in a filter 40 % full: 60 seeds
    rng = np.random.default_rng(8)
    big = np.concatenate([np.full((300, 4), 9, np.uint8), rng.integers(0, 256, (300, 4), np.uint8)], 1)
    bg = rng.integers(0, 256, (20_000, 8), dtype=np.uint8)
    x = np.ascontiguousarray(np.concatenate([big, bg])[rng.permutation(20_300)])
    est = []
    for seed in range(60):
        sk = SpreadKeeperSketch(seed=seed, flow_len=4, elem_len=4, filter_words=1900, buckets=4096)
        sk.update(x)
        assert 0.25 < sk.filter_fill < 0.6
        est.append(float(sk.estimates(big[:1, :4])[0]))
    est = np.array(est)
    assert est.std() > 1.0  # the filter does hide pairs: estimates vary from seed to seed
    assert abs(est.mean() - 300) < 3 * est.std() / np.sqrt(len(est)) + 0.5


def test_estimates_stay_unbiased_when_the_filter_overflows() -> None:
    # 40 000 distinct pairs for a 4096-bit filter: it would saturate; sampling keeps the estimates
    rng = np.random.default_rng(9)
    big = np.concatenate([np.full((3000, 4), 9, np.uint8), rng.integers(0, 256, (3000, 4), np.uint8)], 1)
    bg = rng.integers(0, 256, (37_000, 8), dtype=np.uint8)
    x = np.ascontiguousarray(np.concatenate([big, bg])[rng.permutation(40_000)])
    est, levels = [], []
    for seed in range(60):
        sk = SpreadKeeperSketch(seed=seed, flow_len=4, elem_len=4, filter_words=64, buckets=4096)
        sk.update(x)
        levels.append(sk.level)
        assert sk.filter_fill < 0.9
        est.append(float(sk.estimates(big[:1, :4])[0]))
    est = np.array(est)
    assert min(levels) >= 3 and est.std() > 30
    assert abs(est.mean() - 3000) < 3 * est.std() / np.sqrt(len(est))


def test_merge_agrees_with_reference_and_flow_sharded_merge_reports_what_one_sketch_reports() -> None:
    x = _pairs(4, 60_000, 3000, 16, 16)
    shard = x[:, 15] % 2  # by flow: every flow's pairs in one half
    kw = dict(seed=6, flow_len=16, elem_len=16, filter_words=4096, buckets=64, threshold=40)
    a, b, one = SpreadKeeperSketch(**kw), SpreadKeeperSketch(**kw), SpreadKeeperSketch(**kw)
    a.update(x[shard == 0])
    b.update(x[shard == 1])
    one.update(x)
    ra, rb = _ref_for(a), _ref_for(b)
    ra.filter, ra.table, rb.filter, rb.table = a.filter.tolist(), _table(a), b.filter.tolist(), _table(b)
    a.merge(b)
    ra.merge(rb)
    assert a.filter.tolist() == ra.filter and _table(a) == ra.table
    assert np.array_equal(a.filter, one.filter)  # the filter of the union, exactly
    # the same super-spreaders with the same spreads up to the filter's noise (the HIP weights of one
    # sketch and of the two halves differ): only flows at the threshold may be on one side only
    m, o = a.super_spreaders(30), one.super_spreaders(30)
    md = {k.tobytes(): int(v) for k, v in zip(m.keys, m.values, strict=True)}
    od = {k.tobytes(): int(v) for k, v in zip(o.keys, o.values, strict=True)}
    truth = _truth(x, 16)
    assert len(od) > 50 and one.filter_fill < 0.45  # a pair is hidden with probability < 0.45**3
    for k in md.keys() & od.keys():
        bound = 4 * np.sqrt(truth[k] * 0.1) + 1  # 4 standard deviations of the HIP weights' noise
        assert abs(md[k] - truth[k]) <= bound and abs(od[k] - truth[k]) <= bound
    assert all(max(md.get(k, 0), od.get(k, 0)) < 34 for k in md.keys() ^ od.keys())
    with pytest.raises(ValueError, match="same key lengths"):
        a.merge(SpreadKeeperSketch(**{**kw, "seed": 7}))
    with pytest.raises(TypeError):
        a.merge(sketch_class(0)(seed=1))


def test_serialisation_round_trip_and_errors() -> None:
    x = _pairs(5, 6000, 400, 13, 5)
    sk = SpreadKeeperSketch(seed=9, flow_len=13, elem_len=5, filter_words=300, buckets=20, threshold=7)
    sk.update(x)
    back = SpreadKeeperSketch.from_bytes(sk.to_bytes())
    assert back._shape() == sk._shape() and back.threshold == 7 and back.rng_state == sk.rng_state
    more = _pairs(6, 3000, 400, 13, 5)
    back.update(more)
    sk.update(more)
    for a, b in ((back.filter, sk.filter), (back.keys, sk.keys), (back.counts, sk.counts)):
        assert np.array_equal(a, b)
    data = sk.to_bytes()
    with pytest.raises(ValueError, match="bad magic"):
        SpreadKeeperSketch.from_bytes(b"NSHG" + data[4:])
    with pytest.raises(ValueError, match="needs"):
        SpreadKeeperSketch.from_bytes(data + b"\0")


def test_memory_sizes_both_parts_and_is_what_numpy_allocates() -> None:
    for memory, L in ((int(2.6 * 2**20), 16), (500_000, 16), (100_000, 37)):
        sk, allocated = sketch_allocation(SpreadKeeperSketch, memory, seed=1, flow_len=L, elem_len=16)
        assert memory - sk.ways * slot_bytes(L) - 8 < sk.memory_bytes <= memory
        assert abs(sk.filter.nbytes - memory / 2) <= 8
        assert sk.memory_bytes <= allocated <= sk.memory_bytes + 64 * 1024


def _batch(src: list[int], dst: list[int]) -> PacketBatch:
    def v4(a: list[int]) -> np.ndarray:
        out = np.empty((len(a), 16), np.uint8)
        out[:, :12] = IPV4_MAPPED_PREFIX
        out[:, 12:] = np.array(a, ">u4").view(np.uint8).reshape(-1, 4)
        return out

    n = len(src)
    return PacketBatch(
        ts_ns=np.arange(n, dtype=np.int64),
        src_ip=v4(src),
        dst_ip=v4(dst),
        src_port=np.full(n, 1234, np.uint16),
        dst_port=np.full(n, 80, np.uint16),
        protocol=np.full(n, 6, np.uint8),
        length=np.full(n, 60, np.uint32),
    )


def test_sketch_task_runs_the_default_variant_and_reports_spreads() -> None:
    task = SketchTask("ss", 1, ("SrcIP",), ("DstIP",), seed=3, count_threshold=20, memory=256 * 1024)
    assert isinstance(task.sketch, SpreadKeeperSketch) and task.params.variant == "spreadkeeper"
    assert sketch_class(1) is SpreadKeeperSketch
    scanner = 0x0A000001
    src = [scanner] * 50 + [0x0A000002] * 50 + [scanner] * 50
    dst = list(range(0x14000000, 0x14000032)) + [0x14000000] * 50 + list(range(0x14000000, 0x14000032))
    task.update(_batch(src, dst))
    snap = task.snapshot(reset=True)
    assert snap.spread is not None and snap.spread.to_list() == [("10.0.0.1", 50)]
    assert snap.hitters.keys() == {HitterType.SPREAD}
    assert task.snapshot().spread.to_list() == []  # reset emptied it
    # no memory: what SuperSpread takes at width x depth with m registers (switching keeps the footprint)
    t2 = SketchTask("ss", 1, ("SrcIP",), ("DstIP",), seed=3, width=2048, depth=2, m=128)
    assert 2048 * 2 * (128 + 16 + 20) - 8 * 24 - 8 < t2.memory_bytes <= 2048 * 2 * (128 + 16 + 20)
