"""Weighted rows (flow-export records): every task counts a record of N packets as its N packets.

The central property: a batch of weighted rows and the batch of captured packets it stands for
(:func:`netspectra.weights.expand_rows`: each row repeated ``packets`` times, with the packet sizes and
times of :mod:`netspectra.weights`) leave every task in the same state — the exact task's flows, every
sketch's bytes (``to_bytes``: tables, counters and generator state), the flow records' counts and
times. Then the kernels against their Python references with weights, the limits (huge weights), and
the laws of the shortcuts the sketches take for rows of many packets.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netspectra.batch import PacketBatch
from netspectra.flows.records import FlowRecords
from netspectra.flows.ref import ReferenceFlows
from netspectra.flows.task import FlowParams, FlowTask
from netspectra.sketches.base import Sketch, SketchTask
from netspectra.sketches.cocosketch import REPLAY as COCO_REPLAY
from netspectra.sketches.cocosketch import CocoSketch
from netspectra.sketches.cocosketch_ref import CocoSketchRef
from netspectra.sketches.countmin import CountMinSketch
from netspectra.sketches.countmin_ref import CountMinRef
from netspectra.sketches.heavyguardian import DECAY_LEN, HeavyGuardianSketch
from netspectra.sketches.heavyguardian import REPLAY as HG_REPLAY
from netspectra.sketches.heavyguardian_ref import HeavyGuardianRef
from netspectra.sketches.keys import encode_keys
from netspectra.tasks import exact_kernels as kern
from netspectra.tasks.exact import MAX_LOAD_DEN, MAX_LOAD_NUM, ExactTask, FlowSnapshot
from netspectra.tasks.exact_ref import ReferenceFlows as ReferenceExact
from netspectra.tasks.exact_ref import reference_table
from netspectra.weights import COUNT_MAX, exact_sum, expand_rows, packet_sizes_ref

NS = 1_000_000_000
FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
KEY_SETS = [FIVE, ("SrcIP",), ("DstIP", "DstPort"), ("Protocol",)]
V4 = np.frombuffer(bytes(10) + b"\xff\xff", np.uint8)
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def weighted_batch(
    rng: np.random.Generator,
    n: int,
    *,
    max_packets: int = 12,
    pool: int = 5,
    zero_share: float = 0.08,
    v6_share: float = 0.3,
    t0: int = 1_700_000_000 * NS,
    span_s: float = 60.0,
    flags: bool = False,
) -> PacketBatch:
    """``n`` flow-export rows over a small pool of endpoints (rows of one flow repeat): 0 to
    ``max_packets`` packets each (some 0), sampled 1-in-1, 10 or 100 (packets and octets already
    scaled, as the batch contract says), spans of up to a second (none for one-packet rows)."""
    cols = PacketBatch.EXPORT_COLUMNS + (("tcp_flags",) if flags else ())
    b = PacketBatch.empty(n, cols)
    hosts = rng.integers(0, 256, (pool, 16)).astype(np.uint8)
    v4 = rng.random(pool) >= v6_share
    hosts[v4, :12] = V4
    b.src_ip[:] = hosts[rng.integers(0, pool, n)]
    b.dst_ip[:] = hosts[rng.integers(0, pool, n)]
    ports = np.array([53, 80, 443], np.uint16)
    b.src_port[:] = ports[rng.integers(0, 3, n)]
    b.dst_port[:] = ports[rng.integers(0, 3, n)]
    b.protocol[:] = np.array([6, 17], np.uint8)[rng.integers(0, 2, n)]
    rate = np.array([1, 10, 100], np.uint32)[rng.integers(0, 3, n)]
    exported = rng.integers(1, max_packets + 1, n).astype(np.uint64)
    exported[rng.random(n) < zero_share] = 0
    b.sampling_rate[:] = rate
    b.packets[:] = np.minimum(exported * rate, max_packets * 10)  # keep the expanded batch small
    b.octets[:] = b.packets * rng.integers(40, 1500, n).astype(np.uint64) + rng.integers(0, 40, n).astype(
        np.uint64
    )
    b.length[:] = np.minimum(b.octets // np.maximum(b.packets, 1), 0xFFFF_FFFF).astype(np.uint32)
    b.ts_ns[:] = t0 + np.sort(rng.integers(0, int(span_s * NS), n))
    b.flow_start_ns[:] = b.ts_ns - rng.integers(0, NS, n)
    one = b.packets <= 1
    b.flow_start_ns[one] = b.ts_ns[one]  # one packet is at one time (expand_rows can only say that)
    b.in_if[:] = rng.integers(0, 4, n)
    b.out_if[:] = rng.integers(0, 4, n)
    b.exporter[:] = hosts[0]
    if flags:
        choices = np.array([0x02, 0x12, 0x10, 0x18, 0x11, 0x1B, 0x04, 0x00], np.uint8)
        b.tcp_flags[:] = np.where(b.protocol == 6, rng.choice(choices, n), 0)
    b.validate()
    return b


def flows_of(snap: FlowSnapshot) -> dict[tuple, list[int]]:
    return {
        (bytes(snap.src_ip[i]), bytes(snap.dst_ip[i]), int(snap.src_port[i]), int(snap.dst_port[i]),
         int(snap.protocol[i])): [int(snap.first_ns[i]), int(snap.last_ns[i]), int(snap.packets[i]),
                                  int(snap.bytes[i])]
        for i in range(len(snap))
    }  # fmt: skip


def test_expand_rows_is_what_a_row_stands_for() -> None:
    rng = np.random.default_rng(0)
    b = weighted_batch(rng, 200)
    e = expand_rows(b)
    assert len(e) == exact_sum(b.packets) and not e.weighted
    assert exact_sum(e.length) == exact_sum(b.octets[b.packets > 0])
    assert packet_sizes_ref(4, 10) == [2, 2, 3, 3] and packet_sizes_ref(3, 2) == [0, 1, 1]
    assert packet_sizes_ref(0, 7) == []


# --- exact --------------------------------------------------------------------------------------------


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 150), keys=st.sampled_from(KEY_SETS))
def test_exact_weighted_rows_equal_their_packets(seed: int, n: int, keys: tuple[str, ...]) -> None:
    rng = np.random.default_rng(seed)
    batches = [weighted_batch(rng, n) for _ in range(2)]
    weighted = ExactTask("w", keys, capacity_hint=1)
    packets = ExactTask("p", keys, capacity_hint=1)
    ref = ReferenceExact(keys)
    for b in batches:
        weighted.update(b)
        packets.update(expand_rows(b))
        ref.update(b)
    assert flows_of(weighted.snapshot()) == flows_of(packets.snapshot()) == ref.flows
    assert (weighted.packets, weighted.bytes) == (packets.packets, packets.bytes)
    assert weighted.empty_rows == sum(int((b.packets == 0).sum()) for b in batches)


@pytest.mark.parametrize("keys", KEY_SETS, ids=["-".join(k) for k in KEY_SETS])
def test_exact_kernel_matches_its_reference_with_weights(keys: tuple[str, ...]) -> None:
    """Slot by slot, row by row, through growth: the weighted kernel and its Python twin."""
    rng = np.random.default_rng(11)
    batches = [weighted_batch(rng, 400, pool=9) for _ in range(3)]
    task = ExactTask("t", keys, capacity_hint=1)
    for b in batches:
        task.update(b)
    index, rows, wide = reference_table(batches, keys, 16, (MAX_LOAD_NUM, MAX_LOAD_DEN))
    np.testing.assert_array_equal(task._index, index)
    got = task._rows.array[: int(task._state[0]) * kern.ROW_WORDS].reshape(-1, kern.ROW_WORDS)
    got_wide = task._wide.array[: int(task._state[1]) * kern.WIDE_ROW_WORDS].reshape(-1, kern.WIDE_ROW_WORDS)
    np.testing.assert_array_equal(got, rows)
    np.testing.assert_array_equal(got_wide, wide)


def test_exact_sampled_rows_count_the_scaled_packets() -> None:
    """A record of 10 packets sampled 1-in-100 arrives as 1000 packets (the collector scales): the task
    counts 1000, and its span is the record's."""
    b = PacketBatch.empty(2, PacketBatch.EXPORT_COLUMNS)
    b.src_ip[:] = np.concatenate([V4, [10, 0, 0, 1]])
    b.dst_ip[:] = np.concatenate([V4, [10, 0, 0, 2]])
    b.src_port[:], b.dst_port[:], b.protocol[:] = 1234, 80, 6
    b.sampling_rate[:] = 100
    b.packets[:] = [10 * 100, 3 * 100]
    b.octets[:] = [15_000 * 100, 180 * 100]
    b.length[:] = b.octets // b.packets
    b.ts_ns[:] = [2 * NS, 9 * NS]
    b.flow_start_ns[:] = [1 * NS, 5 * NS]
    b.in_if[:], b.out_if[:], b.exporter[:] = 1, 2, 0
    task = ExactTask("t", FIVE)
    task.update(b)
    snap = task.snapshot()
    assert len(snap) == 1 and (task.packets, task.bytes) == (1300, 1_518_000)
    assert (int(snap.packets[0]), int(snap.bytes[0])) == (1300, 1_518_000)
    assert (int(snap.first_ns[0]), int(snap.last_ns[0])) == (1 * NS, 9 * NS)


def test_exact_span_of_a_row_whose_times_are_swapped() -> None:
    b = weighted_batch(np.random.default_rng(1), 1, max_packets=5, zero_share=0)
    b.flow_start_ns[:] = b.ts_ns + 7 * NS  # an exporter that swapped start and end
    task = ExactTask("t", FIVE)
    task.update(b)
    snap = task.snapshot()
    assert (int(snap.first_ns[0]), int(snap.last_ns[0])) == (int(b.ts_ns[0]), int(b.ts_ns[0]) + 7 * NS)


def test_exact_huge_weights_saturate_and_totals_stay_exact() -> None:
    """Counters of a flow stop at 2**64 - 1 (a hostile exporter cannot wrap the largest flow into a small
    one); the task's totals and a snapshot's totals are exact integers."""
    b = PacketBatch.empty(3, PacketBatch.EXPORT_COLUMNS)
    b.src_ip[:] = np.concatenate([V4, [10, 0, 0, 1]])
    b.dst_ip[:] = np.concatenate([V4, [10, 0, 0, 2]])
    b.src_port[:], b.dst_port[:], b.protocol[:] = 1, 2, 17
    b.packets[:] = [1 << 63, 1 << 63, 5]
    b.octets[:] = [COUNT_MAX, COUNT_MAX, 500]
    b.dst_port[2] = 3  # another flow
    b.length[:] = 0xFFFF_FFFF
    b.ts_ns[:] = b.flow_start_ns[:] = NS
    b.sampling_rate[:], b.in_if[:], b.out_if[:], b.exporter[:] = 1, 0, 0, 0
    task = ExactTask("t", FIVE)
    task.update(b)
    snap = task.snapshot().sorted("packets")
    assert int(snap.packets[0]) == COUNT_MAX and int(snap.bytes[0]) == COUNT_MAX
    assert int(snap.packets[1]) == 5
    assert task.packets == (1 << 64) + 5 and task.bytes == 2 * COUNT_MAX + 500
    assert snap.total_packets == COUNT_MAX + 5 and snap.total_bytes == COUNT_MAX + 500
    ref = ReferenceExact(FIVE)
    ref.update(b)
    assert flows_of(task.snapshot()) == ref.flows


def test_exact_row_of_zero_packets_counts_nothing() -> None:
    b = weighted_batch(np.random.default_rng(2), 50, zero_share=1.0)
    task = ExactTask("t", FIVE)
    task.update(b)
    assert len(task) == 0 and (task.packets, task.bytes, task.empty_rows) == (0, 0, 50)


# --- sketches -----------------------------------------------------------------------------------------

#: (skt_type, variant, element fields, parameters): small sketches, so that rows meet full buckets.
SKETCHES = [
    (0, "heavyguardian", (), {"memory": 2048}),
    (0, "mv", (), {"width": 16, "depth": 2}),
    (0, "original", (), {"width": 16, "depth": 2}),
    (0, "cocosketch", (), {"memory": 1024}),
    (1, "spreadkeeper", ("DstIP", "DstPort"), {"memory": 4096}),
    (1, "original", ("DstIP", "DstPort"), {"width": 16, "depth": 2}),
    (1, "spreadsketch", ("DstIP", "DstPort"), {"width": 16, "depth": 2}),
]
SKETCH_IDS = [f"{t}-{v}" for t, v, _, _ in SKETCHES]


def sketch_task(skt_type: int, variant: str, elements: tuple[str, ...], params: dict) -> SketchTask:
    return SketchTask("s", skt_type, ("SrcIP", "SrcPort"), elements, variant=variant, seed=7,
                      count_threshold=1, size_threshold=1, **params)  # fmt: skip


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 120), which=st.integers(0, len(SKETCHES) - 1))
def test_sketch_weighted_rows_equal_their_packets(seed: int, n: int, which: int) -> None:
    """Every sketch, fed a record of N packets, ends bit for bit where its N packets leave it (rows of
    at most REPLAY packets: beyond, the sketches that draw coins skip through them, see below)."""
    rng = np.random.default_rng(seed)
    weighted, packets = sketch_task(*SKETCHES[which]), sketch_task(*SKETCHES[which])
    for _ in range(2):
        b = weighted_batch(rng, n, max_packets=25, pool=7)
        weighted.update(b)
        packets.update(expand_rows(b))
    assert weighted.sketch.to_bytes() == packets.sketch.to_bytes()
    assert weighted.snapshot().to_arrow().equals(packets.snapshot().to_arrow())


def _sketch_keys(rng: np.random.Generator, n: int, pool: int) -> np.ndarray:
    return np.ascontiguousarray(rng.integers(0, 256, (pool, 6), dtype=np.uint8)[rng.integers(0, pool, n)])


@pytest.mark.parametrize(("rule", "estimator"), [("reduce", "mv"), ("reduce", "vote"), ("original", "vote")])
def test_countmin_kernel_matches_its_reference_with_weights(rule: str, estimator: str) -> None:
    """The closed forms of the kernel against the reference, which feeds each row's packets one by one."""
    rng = np.random.default_rng(5)
    n = 600
    keys = _sketch_keys(rng, n, 40)
    packets = rng.integers(0, 60, n).astype(np.uint64)
    octets = packets * rng.integers(0, 1500, n).astype(np.uint64) + rng.integers(0, 60, n).astype(np.uint64)
    sk = CountMinSketch(8, 3, [1, 2, 3], key_length=6, size_rule=rule, estimator=estimator)
    ref = CountMinRef(8, 3, [1, 2, 3], 6, rule, estimator)
    for part in range(0, n, 200):
        sl = slice(part, part + 200)
        sk.update(keys[sl], octets[sl], packets[sl])
        ref.update([bytes(k) for k in keys[sl]], octets[sl].tolist(), packets[sl].tolist())
    state = sk.state()
    for i in range(3):
        for j in range(8):
            fc, c, fs, s, vc, vs = ref.rows[i][j]
            assert (int(state["counts"][i, j]), int(state["sizes"][i, j])) == (c, s)
            if c:
                assert bytes(state["count_keys"][i, j]) == fc
            if s:
                assert bytes(state["size_keys"][i, j]) == fs
            if estimator == "mv":
                assert (int(state["count_totals"][i, j]), int(state["size_totals"][i, j])) == (vc, vs)


def test_heavyguardian_kernel_matches_its_reference_beyond_replay() -> None:
    """Rows of up to 5000 packets against full buckets (the geometric skip after REPLAY coins) and
    unit packets between them: the same table and generator state as the reference."""
    rng = np.random.default_rng(6)
    n = 3000
    keys = _sketch_keys(rng, n, 300)
    packets = np.where(rng.random(n) < 0.3, rng.integers(HG_REPLAY, 5000, n), rng.integers(0, 4, n))
    packets = packets.astype(np.uint64)
    octets = packets * np.uint64(100) + rng.integers(0, 50, n).astype(np.uint64)
    sk = HeavyGuardianSketch(seed=3, key_length=6, buckets=4, ways=4)
    ref = HeavyGuardianRef(4, 4, sk.b, sk.hash_seed, sk.rng_state, DECAY_LEN)
    for part in range(0, n, 500):
        sl = slice(part, part + 500)
        sk.update(keys[sl], octets[sl], packets[sl])
        ref.update([bytes(k) for k in keys[sl]], octets[sl].tolist(), packets[sl].tolist())
    assert sk.rng_state == ref.rng.state
    got = {(bytes(k), int(p), int(b)) for k, p, b in zip(*sk.entries(), strict=True)}
    want = {(key, p, b) for bucket in ref.table for key, p, b in bucket}
    assert got == want


def test_cocosketch_kernel_matches_its_reference_beyond_replay() -> None:
    rng = np.random.default_rng(8)
    n = 3000
    keys = _sketch_keys(rng, n, 200)
    packets = np.where(rng.random(n) < 0.2, rng.integers(COCO_REPLAY, 3000, n), rng.integers(0, 5, n))
    packets = packets.astype(np.uint64)
    octets = packets * np.uint64(60) + rng.integers(0, 80, n).astype(np.uint64)
    sk = CocoSketch(seed=4, key_length=6, width=8, depth=2)
    ref = CocoSketchRef(8, 2, sk.seeds.tolist(), 6, sk.rng_state)
    for part in range(0, n, 500):
        sl = slice(part, part + 500)
        sk.update(keys[sl], octets[sl], packets[sl])
        ref.update([bytes(k) for k in keys[sl]], octets[sl].tolist(), packets[sl].tolist())
    assert sk.rng_state == ref.rng.state
    for t in range(2):
        for i in range(2):
            for j in range(8):
                key, c = ref.tables[t][i][j]
                assert int(sk.tables[t, i, j, -1]) == c
                if c:
                    assert sk.tables[t, i, j, :-1].astype("<u8").tobytes()[:6] == key


def test_heavyguardian_skip_has_the_law_of_its_coins() -> None:
    """Beyond REPLAY packets the row's failed coins are drawn at once; the packet that takes the slot
    has the same law as when every packet draws its coin: compare its mean over many runs."""
    n_rows, pk = 400, 1400
    key_a, key_b = np.zeros((1, 6), np.uint8), np.ones((1, 6), np.uint8)

    def taken(weighted: bool, seed: int) -> int:
        sk = HeavyGuardianSketch(seed=seed, key_length=6, buckets=1, ways=1)
        sk.update(key_a, np.array([60 * 60], np.uint64), np.array([60], np.uint64))  # A holds 60 packets
        if weighted:
            sk.update(key_b, np.array([pk * 60], np.uint64), np.array([pk], np.uint64))
        else:
            sk.update(np.repeat(key_b, pk, axis=0), np.full(pk, 60, np.uint32))
        keys, counts, _ = sk.entries()
        return int(counts[0]) if bytes(keys[0]) == bytes(key_b[0]) else 0

    w = np.array([taken(True, s) for s in range(n_rows)], np.float64)
    p = np.array([taken(False, s + 10_000) for s in range(n_rows)], np.float64)
    assert 0.05 < (w > 0).mean() < 0.95  # the test sees both outcomes (B takes the slot or not)
    se = np.sqrt(w.var() / n_rows + p.var() / n_rows)
    assert abs(w.mean() - p.mean()) < 4 * se


def test_cocosketch_rest_of_a_long_row_keeps_estimates_unbiased() -> None:
    """A row longer than REPLAY whose key has not taken its bucket goes in as one weighted update: in a
    one-bucket sketch, the key ends there with probability (its weight) / (the bucket's total)."""
    runs, pk = 3000, 4 * COCO_REPLAY
    held = 0
    for seed in range(runs):
        sk = CocoSketch(seed=seed, key_length=6, width=1, depth=1)
        sk.update(
            np.zeros((1, 6), np.uint8), np.array([3 * pk * 100], np.uint64), np.array([3 * pk], np.uint64)
        )
        sk.update(np.ones((1, 6), np.uint8), np.array([pk * 100], np.uint64), np.array([pk], np.uint64))
        held += int(sk.query(np.ones((1, 6), np.uint8))[0][0] > 0)
    share = held / runs
    assert abs(share - 0.25) < 4 * np.sqrt(0.25 * 0.75 / runs)


@pytest.mark.parametrize("cls", [CountMinSketch, HeavyGuardianSketch, CocoSketch])
def test_sketch_counters_saturate_on_huge_weights(cls: type[Sketch]) -> None:
    sk = cls(seed=1, key_length=6) if cls is not CountMinSketch else cls(64, 2, 1, key_length=6)
    key = np.ones((2, 6), np.uint8)
    sk.update(key, np.array([COUNT_MAX, COUNT_MAX], np.uint64), np.array([1 << 63, 1 << 63], np.uint64))
    packets, octets = sk.query(key[:1])
    assert int(packets[0]) == COUNT_MAX and int(octets[0]) == COUNT_MAX


@pytest.mark.parametrize("cls", [HeavyGuardianSketch, CocoSketch])
def test_rows_of_huge_weights_are_fast(cls: type[Sketch]) -> None:
    """10 000 rows of 10**18 packets each, most meeting full buckets of heavy flows: no loop per packet."""
    rng = np.random.default_rng(9)
    sk = cls(seed=2, key_length=6, memory=4096)
    keys = _sketch_keys(rng, 10_000, 3000)
    pk = np.full(10_000, 10**18, np.uint64)
    sk.update(keys[:100], pk[:100] * np.uint64(10), pk[:100])  # warm up (compiles)
    t0 = time.perf_counter()
    sk.update(keys, pk * np.uint64(10), pk)
    assert time.perf_counter() - t0 < 2.0


def test_sketch_task_leaves_out_empty_rows_and_tells_about_plugins_without_weights(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = weighted_batch(np.random.default_rng(3), 100, zero_share=0.3)
    task = sketch_task(0, "mv", (), {"width": 64, "depth": 2})
    task.update(b)
    assert task.empty_rows == int((b.packets == 0).sum()) > 0

    class NoWeights(CountMinSketch):  # a plugin written before weighted rows
        accepts_weights = False

        def update(self, keys: np.ndarray, lengths: np.ndarray) -> None:  # type: ignore[override]
            super().update(keys, lengths)

    task = sketch_task(0, "mv", (), {"width": 64, "depth": 2})
    task.sketch = NoWeights(64, 2, 1, key_length=18)
    task._weights = False
    with caplog.at_level(logging.WARNING, "netspectra.sketches.base"):
        task.update(b)
        task.update(b)
    nonzero = int((b.packets > 0).sum())
    assert task.unweighted_rows == 2 * nonzero
    assert sum("does not take weighted rows" in r.message for r in caplog.records) == 1
    counts, _ = task.sketch.query(encode_keys(b.take(b.packets > 0), ("SrcIP", "SrcPort")))
    assert int(counts.max()) >= 1


# --- flow records -------------------------------------------------------------------------------------


def _records(batches: list[PacketBatch], params: FlowParams) -> list[dict]:
    task = FlowTask("t", params, capacity_hint=1, outbox_rows=2)
    parts = []
    for b in batches:
        task.update(b)
        parts.append(task.drain())
    task.finish("end_of_input")
    parts.append(task.drain())
    return sorted(rows_of(FlowRecords.concat(parts)), key=_order)


def rows_of(records: FlowRecords) -> list[dict]:
    """The records as the reference writes them: times and durations as integer nanoseconds."""
    table = records.to_arrow()
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type) or pa.types.is_duration(col.type):
            col = col.cast(pa.int64())
        cols[name] = col.to_pylist()
    return [dict(zip(cols, v, strict=True)) for v in zip(*cols.values(), strict=True)]


def _order(r: dict) -> tuple:
    return (r["FirstSeen"], r["SrcIP"], r["DstIP"], r["SrcPort"], r["DstPort"], r["Protocol"], r["LastSeen"])


FLOW_PARAMS = [
    FlowParams(idle_timeout_ns=5 * NS, active_timeout_ns=30 * NS, splt=4),
    FlowParams(idle_timeout_ns=3 * NS, active_timeout_ns=20 * NS, tcp_end=True, tcp_end_grace_ns=NS),
    FlowParams(statistics=False),
]


@pytest.mark.parametrize("params", FLOW_PARAMS, ids=["splt", "tcp_end", "no-stats"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flows_weighted_rows_agree_with_the_reference(params: FlowParams, seed: int) -> None:
    """Records from batches that mix one-packet rows and records of many packets (spans, sampling,
    swapped directions, flags, time-outs): the kernel and the reference, record by record."""
    rng = np.random.default_rng(seed)
    batches = [weighted_batch(rng, 300, pool=6, span_s=40.0, flags=True, t0=(1_700_000_000 + 40 * k) * NS)
               for k in range(3)]  # fmt: skip
    ref = ReferenceFlows("t", params)
    for b in batches:
        ref.update(b)
    ref.finish("end_of_input")
    got = _records(batches, params)
    want = sorted(ref.records, key=_order)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g == w, {k: (g[k], w.get(k)) for k in g if g[k] != w.get(k)}


def test_flows_record_of_n_packets_counts_as_its_packets() -> None:
    """A record of N packets and its N packets make records with the same key, counts, bytes, times and
    flags; the record's direction keeps its size mean and leaves what needs each packet null."""
    rng = np.random.default_rng(4)
    b = weighted_batch(rng, 40, pool=3, zero_share=0.0, flags=True)
    # spans that do not overlap, so the packets a record stands for arrive in time order (a late packet
    # would be accounted at the newest time, a record at its own)
    b.ts_ns[:] = 1_700_000_000 * NS + np.arange(40) * 2 * NS
    b.flow_start_ns[:] = np.where(b.packets > 1, b.ts_ns - rng.integers(0, NS, 40), b.ts_ns)
    params = FlowParams(splt=3)
    got = _records([b], params)
    expanded = expand_rows(b)
    plain = _records([expanded], params)
    assert len(got) == len(plain)
    same = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "FirstSeen", "LastSeen", "SrcToDstPackets",
            "SrcToDstBytes", "DstToSrcPackets", "DstToSrcBytes", "SrcToDstTCPFlags", "DstToSrcTCPFlags",
            "EndReason")  # fmt: skip
    for g, p in zip(got, plain, strict=True):
        assert {k: g[k] for k in same} == {k: p[k] for k in same}
        for d in ("SrcToDst", "DstToSrc"):
            if g[f"{d}Packets"] > 1:
                assert g[f"{d}SizeMean"] == pytest.approx(g[f"{d}Bytes"] / g[f"{d}Packets"])
                assert g[f"{d}SizeMin"] is None and g[f"{d}IATMean"] is None and g[f"{d}SizeStddev"] is None
                assert g[f"{d}IPBytes"] is None
        if g["Protocol"] == 6 and g["SrcToDstPackets"] > 1:
            assert g["ConnState"] is None and g["SrcToDstSYN"] is None and g["SpltSize"] is None


def test_flows_huge_weights_saturate() -> None:
    b = weighted_batch(np.random.default_rng(5), 2, pool=1, zero_share=0.0)
    b.src_ip[1], b.dst_ip[1] = b.src_ip[0], b.dst_ip[0]
    b.src_port[1], b.dst_port[1], b.protocol[1] = b.src_port[0], b.dst_port[0], b.protocol[0]
    b.packets[:] = 1 << 63
    b.octets[:] = COUNT_MAX
    task = FlowTask("t", FlowParams())
    task.update(b)
    task.finish()
    rec = task.drain()
    assert len(rec) == 1
    row = rows_of(rec)[0]
    assert row["SrcToDstPackets"] == COUNT_MAX and row["SrcToDstBytes"] == COUNT_MAX
    assert task.packets == 1 << 64


def test_flows_zero_packet_rows_stand_for_nothing() -> None:
    b = weighted_batch(np.random.default_rng(6), 30, zero_share=1.0)
    task = FlowTask("t", FlowParams())
    task.update(b)
    task.finish()
    assert len(task.drain()) == 0 and task.empty_rows == 30 and task.clock_ns is None


def test_sat_reduceat_is_the_exact_sum_capped_at_the_largest_count() -> None:
    from netspectra.weights import COUNT_MAX, sat_reduceat

    rng = np.random.default_rng(8)
    a = rng.integers(0, 2**64, 5000, dtype=np.uint64, endpoint=False)
    a[::7] = rng.integers(0, 100, len(a[::7])).astype(np.uint64)  # small values too
    first = np.unique(np.concatenate([[0], rng.integers(0, len(a), 800)]))
    ends = [*first[1:].tolist(), len(a)]
    want = [min(sum(int(x) for x in a[s:e]), COUNT_MAX) for s, e in zip(first.tolist(), ends, strict=True)]
    assert sat_reduceat(a, first).tolist() == want
    assert any(w == COUNT_MAX for w in want) and any(w < 2**40 for w in want)  # both cases met
    exact = np.array([2**63, 2**63 - 1, 5, 6], np.uint64)  # exactly the largest count, then a small sum
    assert sat_reduceat(exact, np.array([0, 2])).tolist() == [COUNT_MAX, 11]
    assert sat_reduceat(exact[:0], np.array([], np.int64)).tolist() == []
