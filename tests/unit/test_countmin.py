"""The majority-vote "CountMin" sketch (skt_type 0): kernels vs the plain-Python reference, the original's
rules on hand-made sequences, serialisation, merge, and the SketchTask wrapper."""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pytest

from netspectra.batch import PacketBatch
from netspectra.sketches import (
    HEAVY_HITTERS_SCHEMA,
    CountMinSketch,
    HeavyHitters,
    HitterType,
    Sketch,
    SketchTask,
    sketch_class,
)
from netspectra.sketches.countmin import (
    DEFAULT_COUNT_THRESHOLD,
    DEFAULT_DEPTH,
    DEFAULT_SIZE_THRESHOLD,
    DEFAULT_WIDTH,
)
from netspectra.sketches.countmin_ref import CountMinRef
from netspectra.sketches.sketch_kind import DEFAULT_SEED, SketchTaskConfig

VARIANTS = [("reduce", "mv"), ("reduce", "vote"), ("original", "vote")]


def _stream(seed: int, n: int, universe: int, key_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Zipf-ish keys over a small universe (so buckets collide a lot) and wire lengths."""
    rng = np.random.default_rng(seed)
    uniq = rng.integers(0, 256, size=(universe, key_len), dtype=np.uint8)
    ids = (rng.zipf(1.3, n) - 1) % universe
    return np.ascontiguousarray(uniq[ids]), rng.integers(40, 1515, n).astype(np.uint32)


def _as_dict(h: HeavyHitters) -> dict[bytes, int]:
    return {k.tobytes(): int(v) for k, v in zip(h.keys, h.values, strict=True)}


def _assert_same_state(cm: CountMinSketch, ref: CountMinRef) -> None:
    st = cm.state()
    for i in range(cm.depth):
        for j in range(cm.width):
            fc, c, fs, s, vc, vs = ref.rows[i][j]
            assert st["count_keys"][i, j].tobytes() == fc and int(st["counts"][i, j]) == c, (i, j)
            assert st["size_keys"][i, j].tobytes() == fs and int(st["sizes"][i, j]) == s, (i, j)
            if cm.estimator == "mv":
                assert int(st["count_totals"][i, j]) == vc and int(st["size_totals"][i, j]) == vs


@pytest.mark.parametrize(("rule", "estimator"), VARIANTS)
@pytest.mark.parametrize("key_len", [5, 16, 37])
def test_kernel_agrees_with_reference(rule: str, estimator: str, key_len: int) -> None:
    keys, lengths = _stream(key_len, 12_000, 400, key_len)
    cm = CountMinSketch(48, 3, 1234, key_length=key_len, size_rule=rule, estimator=estimator)
    for o in range(0, keys.shape[0], 5000):  # several batches: state carries over between calls
        cm.update(keys[o : o + 5000], lengths[o : o + 5000])
    ref = CountMinRef(48, 3, cm.seeds.tolist(), key_len, rule, estimator)
    ref.update([k.tobytes() for k in keys], lengths.tolist())
    _assert_same_state(cm, ref)

    probe = np.unique(keys, axis=0)
    counts, sizes = cm.query(probe)
    assert [(int(c), int(s)) for c, s in zip(counts, sizes, strict=True)] == [
        ref.query(k.tobytes()) for k in probe
    ]
    hh = cm.heavy_hitters(count_threshold=40, size_threshold=30_000)
    want_c, want_s = ref.heavy_hitters(40, 30_000)
    assert want_c and want_s  # the stream does have heavy hitters at these thresholds
    assert _as_dict(hh[HitterType.COUNT]) == want_c
    assert _as_dict(hh[HitterType.SIZE]) == want_s


@pytest.mark.parametrize(("rule", "estimator"), VARIANTS)
def test_merge_agrees_with_reference(rule: str, estimator: str) -> None:
    k1, l1 = _stream(1, 6000, 300, 16)
    k2, l2 = _stream(2, 6000, 300, 16)
    a = CountMinSketch(32, 2, 9, key_length=16, size_rule=rule, estimator=estimator)
    b = CountMinSketch(32, 2, 9, key_length=16, size_rule=rule, estimator=estimator)
    a.update(k1, l1)
    b.update(k2, l2)
    ra = CountMinRef(32, 2, a.seeds.tolist(), 16, rule, estimator)
    rb = CountMinRef(32, 2, a.seeds.tolist(), 16, rule, estimator)
    ra.update([k.tobytes() for k in k1], l1.tolist())
    rb.update([k.tobytes() for k in k2], l2.tolist())
    a.merge(b)
    ra.merge(rb)
    _assert_same_state(a, ra)


def test_merge_of_a_flow_alone_is_the_exact_sum() -> None:
    key = np.full((1, 16), 7, np.uint8)
    a, b = CountMinSketch(64, 3, 1, key_length=16), CountMinSketch(64, 3, 1, key_length=16)
    a.update(np.repeat(key, 10, 0), np.full(10, 100, np.uint32))
    b.update(np.repeat(key, 5, 0), np.full(5, 60, np.uint32))
    a.merge(b)
    c, s = a.query(key)
    assert (int(c[0]), int(s[0])) == (15, 1300)


def test_merge_refuses_incompatible_sketches() -> None:
    a = CountMinSketch(64, 2, 1, key_length=16)
    with pytest.raises(ValueError, match="same width"):
        a.merge(CountMinSketch(64, 2, 2, key_length=16))
    with pytest.raises(ValueError, match="same width"):
        a.merge(CountMinSketch(32, 2, 1, key_length=16))
    with pytest.raises(TypeError):
        a.merge(object())  # type: ignore[arg-type]


def _one_bucket(rule: str, estimator: str = "vote") -> CountMinSketch:
    return CountMinSketch(1, 1, [0], key_length=1, size_rule=rule, estimator=estimator)


def _feed(cm: CountMinSketch, seq: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    keys = np.array([[k] for k, _ in seq], np.uint8)
    cm.update(keys, np.array([ln for _, ln in seq], np.uint32))
    return cm.state()


def test_original_rules_on_a_hand_made_sequence() -> None:
    # width 1: every packet lands in the one bucket, so the rules can be followed by hand
    st = _feed(_one_bucket("original"), [(1, 100), (1, 50), (2, 30), (2, 500)])
    # count: A:1, A:2, B votes A down to 1, B votes A down to 0 -> key becomes B at 0
    assert int(st["counts"][0, 0]) == 0 and st["count_keys"][0, 0].tolist() == [2]
    # size: 100, 150, 150-30 = 120, then 500 > 120 -> replaced: 500 for B (the original's rule)
    assert int(st["sizes"][0, 0]) == 500 and st["size_keys"][0, 0].tolist() == [2]


def test_reduce_rule_keeps_the_vote_difference() -> None:
    st = _feed(_one_bucket("reduce"), [(1, 100), (1, 50), (2, 30), (2, 500)])
    # 500 > 120 -> B with 500 - 120 = 380 (MV-Sketch), not 500
    assert int(st["sizes"][0, 0]) == 380 and st["size_keys"][0, 0].tolist() == [2]
    st = _feed(_one_bucket("reduce"), [(1, 100), (2, 100)])
    assert int(st["sizes"][0, 0]) == 0  # equal votes cancel; the empty bucket goes to the next packet


def test_vote_query_is_max_of_matching_rows_and_zero_without_a_bucket() -> None:
    cm = _one_bucket("original")
    _feed(cm, [(1, 100)] * 3 + [(2, 10)])
    c, s = cm.query(np.array([[1], [2], [3]], np.uint8))
    assert c.tolist() == [2, 0, 0] and s.tolist() == [290, 0, 0]
    assert cm.query_packed(np.array([[1]], np.uint8)).tolist() == [(2 << 32) | 290]


def test_mv_estimate_is_exact_for_a_flow_that_holds_its_bucket() -> None:
    cm = _one_bucket("reduce", "mv")
    _feed(cm, [(1, 100)] * 10 + [(2, 40), (3, 60), (1, 100), (4, 20)])
    c, s = cm.query(np.array([[1], [9]], np.uint8))
    # (V + C) / 2: V = 14 packets / 1220 bytes, C = 11 - 3 = 8 / 1100 - 120 = 980
    assert c.tolist() == [11, 3] and s.tolist() == [1100, 120]


def test_heavy_hitters_sorted_deduplicated_and_thresholded() -> None:
    keys, lengths = _stream(4, 30_000, 1000, 16)
    for rule, est in VARIANTS:
        cm = CountMinSketch(512, 3, 5, key_length=16, size_rule=rule, estimator=est, count_threshold=100)
        cm.update(keys, lengths)
        h = cm.heavy_hitters()[HitterType.COUNT]
        assert len(h) > 3
        assert (h.values >= 100).all() and (np.diff(h.values.astype(np.int64)) <= 0).all()
        assert np.unique(h.keys, axis=0).shape[0] == len(h)
        assert not h.values.flags.writeable and not h.keys.flags.writeable


def test_defaults_seeds_and_argument_errors() -> None:
    cm = CountMinSketch(0, 0, 3, key_length=4)
    assert (cm.width, cm.depth) == (DEFAULT_WIDTH, DEFAULT_DEPTH)
    assert (cm.count_threshold, cm.size_threshold) == (DEFAULT_COUNT_THRESHOLD, DEFAULT_SIZE_THRESHOLD)
    assert cm.memory_bytes == DEFAULT_WIDTH * DEFAULT_DEPTH * CountMinSketch.bucket_bytes(4)
    assert np.array_equal(CountMinSketch(8, 3, 3).seeds, cm.seeds)  # one integer -> reproducible seeds
    assert CountMinSketch(8, 2, [1, 2]).seeds.tolist() == [1, 2]
    with pytest.raises(ValueError, match="seeds must be 2 integers"):
        CountMinSketch(8, 2, [1])
    with pytest.raises(ValueError, match="needs size_rule 'reduce'"):
        CountMinSketch(8, 2, 1, size_rule="original", estimator="mv")
    with pytest.raises(ValueError, match="size_rule"):
        CountMinSketch(8, 2, 1, size_rule="bogus")
    with pytest.raises(ValueError, match=r"keys must be \(n, 16\)"):
        CountMinSketch(8, 2, 1).update(np.zeros((3, 4), np.uint8), np.zeros(3, np.uint32))


@pytest.mark.parametrize(("rule", "estimator"), VARIANTS)
def test_serialisation_round_trip_and_reset(rule: str, estimator: str) -> None:
    keys, lengths = _stream(6, 5000, 200, 13)
    cm = CountMinSketch(40, 2, 77, key_length=13, size_rule=rule, estimator=estimator, count_threshold=9)
    cm.update(keys, lengths)
    data = cm.to_bytes()
    back = CountMinSketch.from_bytes(data)
    assert (back.size_rule, back.estimator, back.count_threshold) == (rule, estimator, 9)
    assert np.array_equal(back.table, cm.table) and np.array_equal(back.seeds, cm.seeds)
    assert _as_dict(back.heavy_hitters()[HitterType.COUNT]) == _as_dict(cm.heavy_hitters()[HitterType.COUNT])
    back.update(keys[:10], lengths[:10])  # the restored table is writable
    with pytest.raises(ValueError, match="bad magic"):
        CountMinSketch.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="header needs"):
        CountMinSketch.from_bytes(data[:-8])
    cm.reset()
    assert not cm.table.any() and len(cm.heavy_hitters()[HitterType.COUNT]) == 0


def test_registry() -> None:
    # one class serves both majority-vote variants; the type's default is another algorithm
    assert sketch_class(0, "mv") is CountMinSketch and sketch_class(0, "original") is CountMinSketch
    assert CountMinSketch.skt_type == 0 and sketch_class(0) is not CountMinSketch
    with pytest.raises(ValueError, match="unknown skt_type 7"):
        sketch_class(7)
    with pytest.raises(ValueError, match="unknown variant 'fancy' for skt_type 0; valid variants"):
        sketch_class(0, "fancy")


def _v4(text: str) -> np.ndarray:
    return np.frombuffer(ipaddress.IPv6Address("::ffff:" + text).packed, np.uint8)


def _batch(srcs: list[str], lengths: list[int]) -> PacketBatch:
    n = len(srcs)
    return PacketBatch(
        ts_ns=np.arange(n, dtype=np.int64),
        src_ip=np.stack([_v4(s) for s in srcs]),
        dst_ip=np.stack([_v4("10.9.9.9")] * n),
        src_port=np.full(n, 1234, np.uint16),
        dst_port=np.full(n, 80, np.uint16),
        protocol=np.full(n, 6, np.uint8),
        length=np.array(lengths, np.uint32),
    )


def test_sketch_task_from_config_snapshot_and_arrow() -> None:
    cfg = SketchTaskConfig.model_validate(
        {
            "name": "cm_src",
            "skt_type": 0,
            "flow_fields": ["SrcIP"],
            "width": 256,
            "depth": 2,
            "count_thereshold": 5,
            "size_thereshold": 2000,
            "seed": 99,
            "variant": "mv",
        }
    )
    task = SketchTask.from_config(cfg)
    assert isinstance(task.sketch, CountMinSketch) and task.memory_bytes == task.sketch.memory_bytes
    srcs = ["10.0.0.1"] * 8 + ["10.0.0.2"] * 5 + ["10.0.0.3"] * 2
    task.update(_batch(srcs, [500] * 8 + [100] * 5 + [1500] * 2))
    snap = task.snapshot()
    assert snap.count is not None and snap.size is not None and snap.spread is None
    assert snap.count.to_list() == [("10.0.0.1", 8), ("10.0.0.2", 5)]
    assert snap.size.to_list() == [("10.0.0.1", 4000), ("10.0.0.3", 3000)]
    table = snap.to_arrow()
    assert table.schema.equals(HEAVY_HITTERS_SCHEMA)
    assert table.to_pylist() == [
        {"TaskName": "cm_src", "Flow": "10.0.0.1", "Value": 8, "Type": 0},
        {"TaskName": "cm_src", "Flow": "10.0.0.2", "Value": 5, "Type": 0},
        {"TaskName": "cm_src", "Flow": "10.0.0.1", "Value": 4000, "Type": 1},
        {"TaskName": "cm_src", "Flow": "10.0.0.3", "Value": 3000, "Type": 1},
    ]
    # snapshot-and-reset in one critical section: the next snapshot is empty
    assert len(task.snapshot(reset=True)) == 4
    assert len(task.snapshot()) == 0 and task.snapshot().to_arrow().num_rows == 0


def test_sketch_task_same_seed_same_result_and_random_seed_logged(caplog: pytest.LogCaptureFixture) -> None:
    ns = SketchTaskConfig.model_validate(
        {
            "name": "t",
            "skt_type": 0,
            "flow_fields": ("SrcIP", "DstPort"),
            "width": 64,
            "depth": 2,
            "size_threshold": 1,
            "count_threshold": 1,
            "seed": 5,
        }
    )
    batch = _batch([f"10.0.{i % 7}.{i % 5}" for i in range(200)], list(range(40, 240)))
    a, b = SketchTask.from_config(ns), SketchTask.from_config(ns)
    a.update(batch)
    b.update(batch)
    assert a.snapshot().to_arrow().equals(b.snapshot().to_arrow())
    assert a.snapshot().count.flows[0].endswith(" 80")  # SrcIP then DstPort, space-joined
    # reproducible by default (issue 12): no seed means the fixed default, not a random one
    assert SketchTask("r", 0, ["SrcIP"], width=8, depth=1).params.seed == DEFAULT_SEED
    with caplog.at_level("INFO"):
        SketchTask("r", 0, ["SrcIP"], width=8, depth=1, seed="random")
    assert "random seed" in caplog.text


def test_sketch_task_rejects_bad_fields() -> None:
    with pytest.raises(ValueError, match="unknown field 'SrcMac'"):
        SketchTask("bad", 0, ["SrcMac"], seed=1, width=8, depth=1)


def test_snapshot_arrow_types_even_when_empty() -> None:
    task = SketchTask("e", 0, ["Protocol"], width=8, depth=1, seed=1)
    t = task.snapshot().to_arrow()
    assert t.num_rows == 0 and t.schema.field("Value").type == pa.uint64()
    assert isinstance(task.sketch, Sketch)


def test_variant_key_selects_the_original_rules() -> None:
    from netspectra.config import parse_config_text
    from netspectra.sketches.base import SketchTask

    text = (
        "aggregator:\n  types: [sketch]\n  sketch:\n    tasks:\n"
        "      - {name: a, skt_type: 0, flow_fields: [SrcIP], width: 64, depth: 2, seed: 1}\n"
        "      - {name: b, skt_type: 0, flow_fields: [SrcIP], width: 64, depth: 2, seed: 1,\n"
        "         variant: original}\n"
    )
    a, b = (SketchTask.from_config(t) for t in parse_config_text(text).aggregator.sketch.tasks)
    assert type(a.sketch).__name__ == "HeavyGuardianSketch"  # no variant: the default algorithm
    assert (b.sketch.size_rule, b.sketch.estimator) == ("original", "vote")
    bad = text.replace("variant: original", "variant: fancy")
    with pytest.raises(Exception, match="variant"):
        parse_config_text(bad)
