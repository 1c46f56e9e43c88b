"""HeavyGuardian (skt_type 0, the default variant): kernel vs plain-Python reference, exactness, merge,
serialisation, memory, and the SketchTask wiring."""

from __future__ import annotations

import numpy as np
import pytest
from allocation import sketch_allocation

from netspectra.sketches.base import HitterType, SketchTask, sketch_class
from netspectra.sketches.heavyguardian import DECAY_LEN, HeavyGuardianSketch, slot_bytes
from netspectra.sketches.heavyguardian_ref import HeavyGuardianRef
from netspectra.sketches.primitives import words_to_keys


def _stream(seed: int, n: int, universe: int, key_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Zipf-ish keys over a small universe (buckets overflow, slots decay) and wire lengths."""
    rng = np.random.default_rng(seed)
    uniq = rng.integers(0, 256, size=(universe, key_len), dtype=np.uint8)
    ids = (rng.zipf(1.2, n) - 1) % universe
    return np.ascontiguousarray(uniq[ids]), rng.integers(40, 1515, n).astype(np.uint32)


def _ref_for(sk: HeavyGuardianSketch) -> HeavyGuardianRef:
    return HeavyGuardianRef(sk.buckets, sk.ways, sk.b, sk.hash_seed, sk.rng_state, DECAY_LEN)


def _state(sk: HeavyGuardianSketch) -> list[list[list]]:
    kw = sk.table.shape[2] - 2
    out = []
    for j in range(sk.buckets):
        slots = []
        for s in range(sk.ways):
            pk = int(sk.table[j, s, kw])
            if pk == 0:
                # occupied slots are a prefix of the bucket
                assert not sk.table[j, s:, kw].any(), (j, s)
                break
            key = words_to_keys(sk.table[j, s, :kw], sk.key_length).tobytes()
            slots.append([key, pk, int(sk.table[j, s, kw + 1])])
        out.append(slots)
    return out


@pytest.mark.parametrize("key_len", [5, 16, 37])
@pytest.mark.parametrize("ways", [1, 4, 8])
def test_kernel_agrees_with_reference(key_len: int, ways: int) -> None:
    keys, lengths = _stream(key_len + ways, 20_000, 3000, key_len)
    sk = HeavyGuardianSketch(seed=11, key_length=key_len, buckets=37, ways=ways)
    ref = _ref_for(sk)
    for o in range(0, keys.shape[0], 7000):  # several batches: state carries over between calls
        sk.update(keys[o : o + 7000], lengths[o : o + 7000])
    ref.update([k.tobytes() for k in keys], lengths.tolist())
    assert _state(sk) == ref.table
    assert sk.rng_state == ref.rng.state  # the same number of decay coins was drawn
    probe = np.unique(keys, axis=0)
    pk, by = sk.query(probe)
    assert [(int(a), int(b)) for a, b in zip(pk, by, strict=True)] == [ref.query(k.tobytes()) for k in probe]
    hh = sk.heavy_hitters(count_threshold=30, size_threshold=20_000)
    want_c, want_s = ref.heavy_hitters(30, 20_000)
    assert want_c and want_s
    got = {t: {k.tobytes(): int(v) for k, v in zip(h.keys, h.values, strict=True)} for t, h in hh.items()}
    assert got[HitterType.COUNT] == want_c and got[HitterType.SIZE] == want_s


def test_decay_past_the_table_uses_pow_like_the_reference() -> None:
    # a base close to 1 keeps large counters decaying: exercises the pow() path beyond DECAY_LEN
    rng = np.random.default_rng(2)
    keys = np.repeat(rng.integers(0, 256, (3, 4), dtype=np.uint8), [5000, 5000, 3000], axis=0)
    keys = np.ascontiguousarray(keys[rng.permutation(keys.shape[0])])
    lengths = np.full(keys.shape[0], 100, np.uint32)
    sk = HeavyGuardianSketch(seed=3, key_length=4, buckets=1, ways=2, b=1.0001)
    ref = _ref_for(sk)
    sk.update(keys, lengths)
    ref.update([k.tobytes() for k in keys], lengths.tolist())
    assert _state(sk) == ref.table and sk.rng_state == ref.rng.state
    assert max(s[1] for s in ref.table[0]) > DECAY_LEN


def test_counters_past_2_63_decay_like_the_reference() -> None:
    # weighted rows can push a counter past 2**63; the decay coin against it must read b**-C (0.0), not
    # the decay table at a negative index (the kernel once did: out of bounds, wrong coins or a crash)
    a, b = np.array([[1, 2, 3, 4]], np.uint8), np.array([[5, 6, 7, 8]], np.uint8)
    big = 2**63 + 5
    for weighted in (False, True):
        sk = HeavyGuardianSketch(seed=1, key_length=4, buckets=1, ways=1)
        ref = _ref_for(sk)
        sk.update(a, np.array([big], np.uint64), np.array([big], np.uint64))
        ref.update([a.tobytes()], [big], [big])
        for _ in range(50):  # packets (or rows of 3 packets) of another flow meet the full bucket
            if weighted:
                sk.update(b, np.array([180], np.uint64), np.array([3], np.uint64))
                ref.update([b.tobytes()], [180], [3])
            else:
                sk.update(b, np.array([60], np.uint32))
                ref.update([b.tobytes()], [60])
        assert _state(sk) == ref.table == [[[a.tobytes(), big, big]]]
        assert sk.rng_state == ref.rng.state


def test_counts_are_exact_without_contention() -> None:
    keys, lengths = _stream(5, 30_000, 500, 16)
    sk = HeavyGuardianSketch(seed=1, key_length=16, buckets=4096)  # 500 flows in 32768 slots
    sk.update(keys, lengths)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    pk, by = sk.query(uniq)
    assert np.array_equal(pk, np.bincount(inv.ravel()).astype(np.uint64))
    assert np.array_equal(by, np.bincount(inv.ravel(), weights=lengths).astype(np.uint64))
    assert sk.rng_state == HeavyGuardianSketch(seed=1, key_length=16, buckets=4096).rng_state  # no coin


def test_a_heavy_flow_survives_a_stream_of_mice() -> None:
    # one bucket of 2 slots: the heavy flow holds its slot while 5000 distinct mice churn the other
    rng = np.random.default_rng(4)
    mice = rng.integers(0, 256, (5000, 8), dtype=np.uint8)
    heavy = np.full((1000, 8), 7, np.uint8)
    keys = np.concatenate([heavy[:10], mice, heavy[10:]])
    sk = HeavyGuardianSketch(seed=1, key_length=8, buckets=1, ways=2)
    sk.update(keys, np.full(keys.shape[0], 60, np.uint32))
    pk, by = sk.query(heavy[:1])
    assert int(pk[0]) >= 1000 - 2 and int(by[0]) == 60 * int(pk[0])  # mean-size decay keeps bytes/packet


def test_merge_agrees_with_reference_and_flow_sharded_merge_matches_one_sketch() -> None:
    keys, lengths = _stream(9, 40_000, 4000, 16)
    h = (keys[:, -1].astype(int) + keys[:, -2]) % 2  # a flow-hash shard: every flow in one half
    a = HeavyGuardianSketch(seed=5, key_length=16, buckets=64)
    b = HeavyGuardianSketch(seed=5, key_length=16, buckets=64)
    a.update(keys[h == 0], lengths[h == 0])
    b.update(keys[h == 1], lengths[h == 1])
    ra, rb = _ref_for(a), _ref_for(b)
    ra.table, rb.table = _state(a), _state(b)
    a.merge(b)
    ra.merge(rb)
    assert _state(a) == ra.table
    one = HeavyGuardianSketch(seed=5, key_length=16, buckets=64)
    one.update(keys, lengths)
    # the heavy hitters of the merged sketch are those of one sketch fed with both halves, same counts
    for t in (HitterType.COUNT, HitterType.SIZE):
        m, o = a.heavy_hitters(300, 200_000)[t], one.heavy_hitters(300, 200_000)[t]
        assert len(o) > 10
        assert m.keys.tobytes() == o.keys.tobytes() and np.array_equal(m.values, o.values)
    with pytest.raises(ValueError, match="same buckets"):
        a.merge(HeavyGuardianSketch(seed=6, key_length=16, buckets=64))
    with pytest.raises(TypeError):
        a.merge(sketch_class(0, "mv")(64, 2, 1))


def test_serialisation_round_trip_and_errors() -> None:
    keys, lengths = _stream(3, 5000, 800, 13)
    sk = HeavyGuardianSketch(seed=8, key_length=13, buckets=50, count_threshold=20, size_threshold=9000)
    sk.update(keys, lengths)
    back = HeavyGuardianSketch.from_bytes(sk.to_bytes())
    assert np.array_equal(back.table, sk.table) and back.rng_state == sk.rng_state
    assert (back.count_threshold, back.size_threshold, back.b) == (20, 9000, sk.b)
    back.update(keys, lengths)  # the copy continues exactly as the original would
    sk.update(keys, lengths)
    assert np.array_equal(back.table, sk.table) and back.rng_state == sk.rng_state
    data = sk.to_bytes()
    with pytest.raises(ValueError, match="bad magic"):
        HeavyGuardianSketch.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="needs"):
        HeavyGuardianSketch.from_bytes(data[:-8])


def test_memory_sizes_the_table_and_is_what_numpy_allocates() -> None:
    for memory, L in ((640 * 1024, 16), (50_000, 16), (1 << 20, 37)):
        sk, allocated = sketch_allocation(HeavyGuardianSketch, memory, seed=1, key_length=L)
        assert sk.memory_bytes <= memory
        assert sk.memory_bytes > memory - sk.ways * slot_bytes(L)  # the most buckets that fit
        assert sk.memory_bytes <= allocated <= sk.memory_bytes + 64 * 1024  # + the decay table, small arrays


def test_sketch_task_runs_the_default_variant() -> None:
    task = SketchTask("hh", 0, ("SrcIP",), seed=3, memory=64 * 1024, count_threshold=2, size_threshold=100)
    assert isinstance(task.sketch, HeavyGuardianSketch) and task.params.variant == "heavyguardian"
    assert sketch_class(0) is HeavyGuardianSketch
    # with no memory, the memory the mv variant takes at width x depth (switching variant keeps it)
    t2 = SketchTask("hh", 0, ("SrcIP",), seed=3, width=1024, depth=2)
    assert t2.memory_bytes <= 1024 * 2 * 64 and t2.memory_bytes > 1024 * 2 * 64 - 8 * 32
    with pytest.raises(ValueError, match="valid variants"):
        SketchTask("hh", 0, ("SrcIP",), seed=3, variant="nope")
