"""The engine manager over real tasks and real captures: fan-out, isolation, workers, periods, intervals,
stop, fail-safe writers, drops, the offline path.

Writers here are small recording writers (test doubles of the storage ``Writer`` interface); the tasks,
the batches and the engine are the real ones.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.capture.reader import CaptureReader
from netspectra.config.aggregator import ExactWriterConfig, SketchWriterConfig
from netspectra.config.models import Config
from netspectra.engine import (
    ConcurrentTask,
    EngineTask,
    GroupWriter,
    LockedTask,
    Manager,
    ManagerStoppedError,
    ManualClock,
    ResilientWriter,
    TaskGroup,
    default_num_workers,
    run_offline,
)
from netspectra.kinds import AGGREGATORS
from netspectra.offline.analyzer import analyze_files
from netspectra.sketches.base import SketchSnapshot, SketchTask
from netspectra.storage.base import SnapshotMeta, Writer, WriterError
from netspectra.tasks.exact import ExactTask, FlowSnapshot

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"
FILES = ["gnutella.pcap", "KakaoTalk_talk.pcap", "rdp.pcap", "webex.pcap", "ip_fragmented_garbage.pcap"]
FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
EXACT_SPECS = {"five": FIVE, "src": ("SrcIP",), "dst_port": ("DstIP", "DstPort")}


@pytest.fixture(scope="module")
def batches() -> list[PacketBatch]:
    """About 20k real packets from five bundled captures, in batches of at most 256."""
    out: list[PacketBatch] = []
    for name in FILES:
        out.extend(CaptureReader(CAPTURES / name, batch_size=256))
    assert len(out) > 60 and sum(len(b) for b in out) > 15_000
    return out


def exact_truth(batches: list[PacketBatch], key_fields: tuple[str, ...]) -> FlowSnapshot:
    """The task run directly, single-threaded, over every batch."""
    t = ExactTask("truth", key_fields)
    for b in batches:
        t.update(b)
    return t.snapshot()


def flow_table(snaps: list[FlowSnapshot]) -> dict[bytes, list[int]]:
    """Flow key bytes -> [packets, bytes, first_ns, last_ns], summed (min/max) over ``snaps``."""
    out: dict[bytes, list[int]] = {}
    for s in snaps:
        keys = np.concatenate(
            [
                s.src_ip,
                s.dst_ip,
                s.src_port.view(np.uint8).reshape(-1, 2),
                s.dst_port.view(np.uint8).reshape(-1, 2),
                s.protocol.reshape(-1, 1),
            ],
            axis=1,
        )
        for k, p, by, f, la in zip(keys, s.packets, s.bytes, s.first_ns, s.last_ns, strict=True):
            row = out.get(k.tobytes())
            if row is None:
                out[k.tobytes()] = [int(p), int(by), int(f), int(la)]
            else:
                row[0] += int(p)
                row[1] += int(by)
                row[2] = min(row[2], int(f))
                row[3] = max(row[3], int(la))
    return out


def sketch_task(name: str, skt_type: int) -> SketchTask:
    return SketchTask(
        name,
        skt_type,
        ("SrcIP",),
        ("DstIP",),
        width=1024,
        depth=2,
        m=16,
        seed=7,
        count_threshold=1,
        size_threshold=1,
    )


def exact_group(
    writers: tuple[GroupWriter, ...] = (), specs: dict[str, tuple[str, ...]] = EXACT_SPECS
) -> TaskGroup:
    tasks = tuple(LockedTask(ExactTask(n, f)) for n, f in specs.items())
    return TaskGroup("exact", tasks, writers, AGGREGATORS.get("exact").deliver)


def sketch_group(writers: tuple[GroupWriter, ...] = ()) -> TaskGroup:
    tasks = (ConcurrentTask(sketch_task("cm", 0)), ConcurrentTask(sketch_task("ss", 1)))
    return TaskGroup("sketch", tasks, writers, AGGREGATORS.get("sketch").deliver)


class Recorder(Writer):
    """Records every call (a test double of a storage Writer; no ``kind``, so not registered)."""

    def __init__(self, group: str = "exact") -> None:
        cfg = ExactWriterConfig(type="parquet") if group == "exact" else SketchWriterConfig(type="parquet")
        super().__init__(cfg, group)
        self.lock = threading.Lock()
        self.calls: list[tuple[str, Any, SnapshotMeta]] = []
        self.opened = 0
        self.closed = 0

    def open(self) -> None:
        self.opened += 1

    def _write_flows(self, snap: FlowSnapshot, meta: SnapshotMeta) -> None:
        with self.lock:
            self.calls.append(("flows", snap, meta))

    def _write_hitters(self, snap: SketchSnapshot, meta: SnapshotMeta) -> None:
        with self.lock:
            self.calls.append(("hitters", snap, meta))

    def close(self) -> None:
        self.closed += 1

    def finals(self, task: str) -> list[tuple[Any, SnapshotMeta]]:
        return [(s, m) for _, s, m in self.calls if m.final and s.task_name == task]

    def periodic(self, task: str) -> list[tuple[Any, SnapshotMeta]]:
        return [(s, m) for _, s, m in self.calls if not m.final and s.task_name == task]


class Flaky(Recorder):
    """A recorder that raises WriterError while ``down`` is set (open and write alike)."""

    def __init__(self, down: bool = True, fail_open: bool = False) -> None:
        super().__init__("exact")
        self.down = threading.Event()
        if down:
            self.down.set()
        self.fail_open = fail_open
        self.attempts = 0

    def open(self) -> None:
        if self.fail_open and self.down.is_set():
            self.attempts += 1
            raise WriterError("connection refused")
        super().open()

    def _write_flows(self, snap: FlowSnapshot, meta: SnapshotMeta) -> None:
        self.attempts += 1
        if self.down.is_set():
            raise WriterError("server unavailable")
        super()._write_flows(snap, meta)


class Gate:
    """A real ExactTask whose updates wait for ``release`` (to hold the workers while a test looks)."""

    def __init__(self, name: str = "gate") -> None:
        self.name = name
        self.inner = ExactTask(name, FIVE)
        self.release = threading.Event()
        self.entered = threading.Event()

    def update(self, batch: PacketBatch) -> None:
        self.entered.set()
        assert self.release.wait(30), "gate never released"
        self.inner.update(batch)

    def snapshot(self) -> FlowSnapshot:
        return self.inner.snapshot()

    def reset(self) -> None:
        self.inner.reset()


def fast(**kw: Any) -> dict[str, Any]:
    """Manager options for tests: short back-off and close deadline."""
    base = {"writer_backoff_initial_s": 0.005, "writer_backoff_max_s": 0.02, "writer_close_timeout_s": 5.0}
    base.update(kw)
    return base


# --------------------------------------------------------------------------------------------------


def test_fan_out_to_every_task_and_groups_isolated(batches: list[PacketBatch]) -> None:
    ex_w, sk_w = Recorder("exact"), Recorder("sketch")
    groups = [
        exact_group((GroupWriter("exact/rec[0]", ex_w, None),)),
        sketch_group((GroupWriter("sketch/rec[0]", sk_w, None),)),
    ]
    m = Manager(groups, num_workers=3, **fast())
    m.start()
    for b in batches:
        assert m.submit(b)
    m.stop()

    n_packets = sum(len(b) for b in batches)
    md = m.metrics_dict()
    assert md["packets_in"] == n_packets and md["batches_in"] == len(batches)
    assert md["bytes_in"] == sum(int(b.length.sum()) for b in batches)
    # every task of every group saw every batch
    assert md["task_update_batches"] == {n: len(batches) for n in ("five", "src", "dst_port", "cm", "ss")}
    assert all(md["task_update_seconds"][n] > 0 for n in md["task_update_seconds"])
    assert md["task_errors"] == {}
    for name in EXACT_SPECS:
        assert m.task(name).task.packets == n_packets
    # each writer saw exactly its own group's tasks, through its own group's method
    assert {(kind, s.task_name) for kind, s, _ in ex_w.calls} == {("flows", n) for n in EXACT_SPECS}
    assert {(kind, s.task_name) for kind, s, _ in sk_w.calls} == {("hitters", "cm"), ("hitters", "ss")}
    assert all(isinstance(s, FlowSnapshot) for _, s, _ in ex_w.calls)
    assert all(isinstance(s, SketchSnapshot) for _, s, _ in sk_w.calls)
    # the sketches did count: the CountMin reports packet and byte heavy hitters, SuperSpread spreads
    cm = next(s for _, s, _ in sk_w.calls if s.task_name == "cm")
    assert len(cm.count) > 0 and len(cm.size) > 0
    assert ex_w.opened == 1 and ex_w.closed == 1 and sk_w.closed == 1
    assert md["writers"]["exact/rec[0]"]["written"] == 3 and md["writers"]["sketch/rec[0]"]["written"] == 2
    # a cross-group call would have raised in the Writer base class and shown up as a failure
    assert md["writers"]["exact/rec[0]"]["failed"] == md["writers"]["sketch/rec[0]"]["failed"] == 0


@pytest.mark.parametrize("workers", [1, 4])
def test_workers_give_the_single_threaded_totals(batches: list[PacketBatch], workers: int) -> None:
    w = Recorder()
    m = Manager([exact_group((GroupWriter("exact/rec[0]", w, None),))], num_workers=workers, **fast())
    with m:
        for b in batches:
            m.submit(b)
    for name, fields in EXACT_SPECS.items():
        ((snap, _),) = w.finals(name)
        truth = exact_truth(batches, fields)
        got, want = snap.sorted(), truth.sorted()
        assert len(got) == len(want)
        for col in FlowSnapshot.ARRAYS:
            np.testing.assert_array_equal(getattr(got, col), getattr(want, col), err_msg=f"{name}.{col}")


def _sketch_finals(batches: list[PacketBatch], **kw: Any) -> dict[str, Any]:
    w = Recorder("sketch")
    m = Manager([sketch_group((GroupWriter("sketch/rec[0]", w, None),))], **kw, **fast())
    with m:
        for b in batches:
            m.submit(b)
    return {name: w.finals(name)[0][0].to_arrow() for name in ("cm", "ss")}


def test_order_dependent_sketches_give_the_same_answers_with_any_number_of_workers(
    batches: list[PacketBatch],
) -> None:
    """Every task applies the batches in submission order (one lane per task), so majority-vote and
    SuperSpread sketches, whose state depends on the order, end the same inline and with N workers."""
    inline = _sketch_finals(batches, inline=True)
    assert inline["cm"].num_rows and inline["ss"].num_rows
    for workers in (1, 2, 4):
        got = _sketch_finals(batches, num_workers=workers)
        for name in ("cm", "ss"):
            assert got[name].equals(inline[name]), (name, workers)


def test_periods_lose_nothing_at_resets(batches: list[PacketBatch]) -> None:
    clock = ManualClock(start_ns=1_750_000_000 * 10**9)
    w = Recorder()
    m = Manager(
        [exact_group((GroupWriter("exact/rec[0]", w, None),))],
        period=100.0,
        num_workers=3,
        clock=clock,
        **fast(),
    )
    m.start()
    chunks = np.array_split(np.arange(len(batches)), 4)
    for k, idx in enumerate(chunks):
        for i in idx:
            m.submit(batches[i])
        assert m.flush(10)
        if k < len(chunks) - 1:
            clock.advance(100)
            assert m.settle()
    m.stop()

    assert m.metrics_dict()["periods"] == 3
    for name, fields in EXACT_SPECS.items():
        finals = w.finals(name)
        assert len(finals) == 4  # three period ends and the stop
        # each period's packets are exactly that chunk's packets
        for (snap, _), idx in zip(finals, chunks, strict=True):
            assert snap.total_packets == sum(len(batches[i]) for i in idx)
        # the periods chain: each starts when the previous one was snapshotted, in UTC nanoseconds
        starts = [meta.period_start_ns for _, meta in finals]
        stamps = [meta.snapshot_ts_ns for _, meta in finals]
        assert starts[0] == 1_750_000_000 * 10**9 and starts[1:] == stamps[:-1]
        assert stamps[:3] == [starts[0] + k * 100 * 10**9 for k in (1, 2, 3)]
        assert flow_table([s for s, _ in finals]) == flow_table([exact_truth(batches, fields)])


def test_periods_under_concurrent_load_lose_nothing(batches: list[PacketBatch]) -> None:
    """Resets while batches are being applied: every packet is in exactly one period (bug 4)."""
    clock = ManualClock()
    w = Recorder()
    m = Manager(
        [exact_group((GroupWriter("exact/rec[0]", w, None),)), sketch_group()],
        period=10.0,
        num_workers=4,
        clock=clock,
        **fast(),
    )
    m.start()
    feeding = threading.Thread(target=lambda: [m.submit(b) for b in batches * 3])
    feeding.start()
    resets = 0
    while feeding.is_alive() or resets < 2:
        clock.advance(10)
        assert m.settle()  # the reset has run; the feeder and the workers went on meanwhile
        resets += 1
    feeding.join()
    m.stop()
    assert m.metrics_dict()["periods"] == resets
    total = 3 * sum(len(b) for b in batches)
    for name, fields in EXACT_SPECS.items():
        finals = [s for s, _ in w.finals(name)]
        assert sum(s.total_packets for s in finals) == total
        want = flow_table([exact_truth(batches, fields)])
        got = flow_table(finals)
        assert got.keys() == want.keys()
        assert all(got[k][:2] == [3 * want[k][0], 3 * want[k][1]] for k in want)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_full_queue_with_several_feeders_and_period_ends_loses_nothing_and_never_stalls(
    batches: list[PacketBatch], workers: int
) -> None:
    """A one-packet bound: every put but into an empty queue waits for room, from two feeders at once,
    while period ends cut the lanes: the queue wakes exactly the threads each change concerns (workers
    for ready lanes, putters for room, the cut for the lanes it waits for) — nothing may be missed."""
    clock = ManualClock()
    w = Recorder()
    m = Manager(
        [exact_group((GroupWriter("exact/rec[0]", w, None),)), sketch_group()],
        period=10.0,
        num_workers=workers,
        queue_packets=1,
        clock=clock,
        **fast(),
    )
    m.start()
    half = len(batches) // 2
    feeders = [
        threading.Thread(target=lambda part=part: [m.submit(b) for b in part])
        for part in (batches[:half], batches[half:])
    ]
    for f in feeders:
        f.start()
    while any(f.is_alive() for f in feeders):
        clock.advance(10)
        assert m.settle()
    for f in feeders:
        f.join(30)
        assert not f.is_alive()
    assert m.flush(30)
    m.stop()
    assert m.metrics_dict()["dropped_packets"] == 0
    for name, fields in EXACT_SPECS.items():
        finals = [s for s, _ in w.finals(name)]
        assert sum(s.total_packets for s in finals) == sum(len(b) for b in batches)
        assert flow_table(finals) == flow_table([exact_truth(batches, fields)])


def test_each_writer_has_its_own_interval(batches: list[PacketBatch]) -> None:
    clock = ManualClock()
    a, b, s = Recorder(), Recorder(), Recorder("sketch")
    groups = [
        exact_group((GroupWriter("exact/a", a, 10.0), GroupWriter("exact/b", b, 25.0)), {"five": FIVE}),
        sketch_group((GroupWriter("sketch/s", s, 20.0),)),
    ]
    m = Manager(groups, num_workers=2, clock=clock, **fast())
    m.start()
    assert m.settle()
    assert a.calls == [] and b.calls == []
    per_step = len(batches) // 5
    for step in range(5):
        for bt in batches[step * per_step : (step + 1) * per_step]:
            m.submit(bt)
        assert m.flush(10)
        clock.advance(10)
        assert m.settle()
    m.stop()

    t0 = 1_700_000_000 * 10**9
    a_ticks = [meta.snapshot_ts_ns - t0 for _, meta in a.periodic("five")]
    b_ticks = [meta.snapshot_ts_ns - t0 for _, meta in b.periodic("five")]
    s_ticks = [meta.snapshot_ts_ns - t0 for _, meta in s.periodic("cm")]
    sec = 10**9
    assert a_ticks == [10 * sec, 20 * sec, 30 * sec, 40 * sec, 50 * sec]
    # b is due at 25 s and 50 s; the clock jumps in 10 s steps, so it runs at 30 s and 50 s
    assert b_ticks == [30 * sec, 50 * sec]
    assert s_ticks == [20 * sec, 40 * sec]
    # periodic snapshots are cumulative within the period; the final one (at stop) has everything
    cumulative = [sum(len(x) for x in batches[: (k + 1) * per_step]) for k in range(5)]
    assert [snap.total_packets for snap, _ in a.periodic("five")] == cumulative
    for rec in (a, b):
        ((final, meta),) = rec.finals("five")
        assert meta.final and final.total_packets == sum(len(x) for x in batches[: 5 * per_step])
    assert len(s.finals("cm")) == 1 and len(s.finals("ss")) == 1


def test_stop_drains_the_queue_and_writes_a_final_snapshot_to_every_writer(
    batches: list[PacketBatch],
) -> None:
    gate = Gate()
    w1, w2, w3 = Recorder(), Recorder(), Recorder("sketch")
    groups = [
        TaskGroup(
            "exact",
            (LockedTask(gate),),
            (GroupWriter("exact/1", w1, None), GroupWriter("exact/2", w2, 3600.0)),
            AGGREGATORS.get("exact").deliver,
        ),
        sketch_group((GroupWriter("sketch/3", w3, None),)),
    ]
    m = Manager(groups, num_workers=2, queue_packets=10**9, **fast())
    m.start()
    for b in batches:
        m.submit(b)
    assert m.metrics_dict()["queue_batches"] > 0  # the gate holds the workers: batches are waiting
    threading.Timer(0.2, gate.release.set).start()
    m.stop()
    assert m.metrics_dict()["queue_batches"] == 0
    total = sum(len(b) for b in batches)
    for w in (w1, w2):
        ((snap, meta),) = w.finals("gate")
        assert snap.total_packets == total and meta.final
    assert {s.task_name for _, s, _ in w3.calls} == {"cm", "ss"}
    with pytest.raises(ManagerStoppedError):
        m.submit(batches[0])
    m.stop()  # idempotent


class _HeldSnapshot(ExactTask):
    """An exact task whose snapshot waits for ``release`` while ``hold`` is set."""

    def __init__(self) -> None:
        super().__init__("held", FIVE)
        self.hold, self.entered, self.release = threading.Event(), threading.Event(), threading.Event()

    def snapshot(self, *args: Any, **kw: Any) -> FlowSnapshot:
        if self.hold.is_set():
            self.entered.set()
            assert self.release.wait(30), "never released"
        return super().snapshot(*args, **kw)


def test_a_snapshot_to_writers_racing_a_stop_reaches_the_writer_before_the_final_one(
    batches: list[PacketBatch],
) -> None:
    """``up`` asks for a snapshot when a replay ends, and may be stopped meanwhile: the stop's final
    snapshot comes after that one and nothing is dropped (a snapshot delivered after the writers were
    closed was dropped, and a JetStream engine then exited 1 for a lost snapshot)."""
    task = _HeldSnapshot()
    rec = Recorder()
    real = AGGREGATORS.get("exact").deliver

    def slow_intermediate(writer: Any, snap: Any, meta: SnapshotMeta) -> None:
        if not meta.final:  # the asking thread is slow to hand it over: the stop goes on meanwhile
            time.sleep(0.3)
        real(writer, snap, meta)

    group = TaskGroup("exact", (LockedTask(task),), (GroupWriter("exact/1", rec, None),), slow_intermediate)
    m = Manager([group], num_workers=1, queue_packets=10**9, **fast())
    m.start()
    m.submit(batches[0])
    m.flush()
    task.hold.set()
    asked = threading.Thread(target=m.snapshot_to_writers)
    asked.start()
    assert task.entered.wait(10)
    task.hold.clear()  # the stop's own final snapshot is not held
    stopper = threading.Thread(target=m.stop)
    stopper.start()
    time.sleep(0.2)  # the stop waits for the snapshot in progress
    task.release.set()
    asked.join(10)
    stopper.join(30)
    assert [m_.final for _, _, m_ in rec.calls] == [False, True]
    assert all(s.total_packets == len(batches[0]) for _, s, _ in rec.calls)
    assert sum(rw.metrics.dropped_total for rw in m.writers) == 0


def test_a_stop_between_the_groups_of_a_snapshot_to_writers_drops_nothing(
    batches: list[PacketBatch],
) -> None:
    """The stop may come while ``snapshot_to_writers`` is between two groups (its callbacks of the first
    run outside the barrier): the stop's finals and the writers' close then happen first, and the later
    groups' snapshots must not follow them (``up --collect`` stopped while its first snapshot was under
    way: the exporters writer dropped one, the JetStream engine exited 1 for a lost snapshot and
    acknowledged nothing)."""
    ex, sk = Recorder(), Recorder("sketch")
    groups = [
        exact_group((GroupWriter("exact/1", ex, None),), {"five": FIVE}),
        sketch_group((GroupWriter("sketch/1", sk, None),)),
    ]
    m = Manager(groups, num_workers=1, queue_packets=10**9, **fast())
    entered, release = threading.Event(), threading.Event()

    def slow_callback(group: str, snap: Any, meta: SnapshotMeta) -> None:
        if group == "exact" and not meta.final:
            entered.set()
            assert release.wait(30), "never released"

    m.on_snapshot.append(slow_callback)
    m.start()
    m.submit(batches[0])
    m.flush()
    asked = threading.Thread(target=m.snapshot_to_writers)
    asked.start()
    assert entered.wait(10)
    m.stop()  # between the two groups: nothing holds the stop
    release.set()
    asked.join(10)
    assert not asked.is_alive()
    assert sum(rw.metrics.dropped_total for rw in m.writers) == 0
    assert [meta.final for _, _, meta in sk.calls] == [True, True]  # cm and ss: the finals only
    assert [meta.final for _, _, meta in ex.calls] == [False, True]


class _Drains(EngineTask):
    """A records task whose snapshots are numbered in the order they are taken."""

    incremental = True

    def __init__(self, name: str) -> None:
        self.name, self.task, self.drains = name, None, 0
        self.lock = threading.Lock()

    def update(self, batch: PacketBatch, *, block: bool = True) -> float | None:
        return 0.0

    def snapshot(self, reset: bool = False) -> tuple[str, int]:
        with self.lock:
            self.drains += 1
            return self.name, self.drains


class _SlowOnce(_Drains):
    """:class:`_Drains` whose first snapshot waits (holding no engine lock) for ``release``, at most 1 s."""

    incremental = False

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.entered, self.release = threading.Event(), threading.Event()

    def snapshot(self, reset: bool = False) -> tuple[str, int]:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(1.0)
        return super().snapshot(reset)


def test_snapshot_times_follow_the_order_the_snapshots_are_taken_in() -> None:
    """A row's version is its snapshot's time (ReplacingMergeTree(TimestampNs) keeps the newest): two
    threads snapshotting at once (the periodic snapshotter and ``up``'s first snapshot) must not hand a
    later increment an earlier time, or the store keeps the older cumulative values of the rows both
    hold (a rollup's coarser totals came out short)."""
    clock = ManualClock()
    slow, drains = _SlowOnce("slow"), _Drains("drains")
    got: list[tuple[int, int]] = []  # (the records task's drain number, its snapshot's time)

    def deliver(writer: Any, snap: Any, meta: SnapshotMeta) -> None:
        if snap[0] == "drains" and not meta.final:
            got.append((snap[1], meta.snapshot_ts_ns))

    group = TaskGroup("exact", (slow, drains), (GroupWriter("exact/1", Recorder(), None),), deliver)
    m = Manager([group], num_workers=1, clock=clock, **fast())
    m.start()
    try:
        first = threading.Thread(target=m.snapshot_to_writers)
        first.start()
        assert slow.entered.wait(10)  # its time is taken; its snapshots wait
        clock.advance(1)
        second = threading.Thread(target=m.snapshot_to_writers)
        second.start()
        second.join(0.5)
        slow.release.set()
        first.join(10)
        second.join(10)
    finally:
        m.stop()
    times = [ts for _, ts in sorted(got)]
    assert len(times) == 2 and times == sorted(times), got


def test_failing_writer_does_not_stop_the_others_and_catches_up(
    batches: list[PacketBatch], caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    good, flaky = Recorder(), Flaky(down=True)
    group = exact_group(
        (GroupWriter("exact/good", good, 5.0), GroupWriter("exact/flaky", flaky, 5.0)), {"five": FIVE}
    )
    m = Manager([group], num_workers=2, clock=clock, writer_buffer=8, **fast())
    m.start()
    sizes = []
    with caplog.at_level(logging.WARNING, logger="netspectra.engine.resilient"):
        for k in range(4):
            for b in batches[k * 10 : (k + 1) * 10]:
                m.submit(b)
            m.flush()
            sizes.append(sum(len(b) for b in batches[: (k + 1) * 10]))
            clock.advance(5)
            assert m.settle(timeout=0.5) is False  # the flaky writer cannot flush
            assert len(good.periodic("five")) == k + 1  # the good one is not held up
        time.sleep(0.1)
    md = m.metrics_dict()["writers"]
    assert md["exact/flaky"]["failed"] >= 2 and md["exact/flaky"]["written"] == 0
    assert md["exact/flaky"]["buffered"] >= 3
    assert any(
        "exact/flaky" in r.getMessage() and "server unavailable" in r.getMessage() for r in caplog.records
    )
    flaky.down.clear()  # the server comes back: the buffered snapshots arrive, in order
    assert m.settle()
    got = [snap.total_packets for snap, _ in flaky.periodic("five")]
    assert got == sizes == [snap.total_packets for snap, _ in good.periodic("five")]
    m.stop()
    assert m.metrics_dict()["writers"]["exact/flaky"]["written"] == 5
    assert m.metrics_dict()["writers"]["exact/flaky"]["dropped"] == 0


def test_writer_open_failures_are_retried_and_the_engine_starts(batches: list[PacketBatch]) -> None:
    flaky = Flaky(down=True, fail_open=True)
    m = Manager(
        [exact_group((GroupWriter("exact/flaky", flaky, None),), {"five": FIVE})], num_workers=1, **fast()
    )
    m.start()
    for b in batches[:5]:
        m.submit(b)
    assert m.flush(10)  # the engine runs while the writer cannot open
    time.sleep(0.05)
    md = m.metrics_dict()["writers"]["exact/flaky"]
    assert md["open_failed"] >= 2 and not md["opened"]
    flaky.down.clear()
    m.stop()
    ((snap, _),) = flaky.finals("five")
    assert snap.total_packets == sum(len(b) for b in batches[:5]) and flaky.opened == 1 and flaky.closed == 1


def _flows(n_packets: int, name: str = "t") -> FlowSnapshot:
    rng = np.random.default_rng(n_packets)
    t = ExactTask(name, FIVE)
    b = PacketBatch.empty(n_packets)
    for col in PacketBatch.COLUMNS:
        getattr(b, col)[...] = rng.integers(0, 200, getattr(b, col).shape)
    t.update(b)
    return t.snapshot()


def test_buffer_overflow_drops_are_chosen_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky(down=True)
    rw = ResilientWriter(flaky, name="exact/flaky", buffer_size=3, backoff_initial_s=0.01, backoff_max_s=0.02)
    rw.open()
    with caplog.at_level(logging.INFO, logger="netspectra.engine.resilient"):
        # head of line: this one is taken by the writer's thread and retried (not in the buffer)
        rw.write_flows(_flows(1, "a"), SnapshotMeta(1, 0))
        time.sleep(0.05)
        rw.write_flows(_flows(2, "a"), SnapshotMeta(2, 0))
        rw.write_flows(_flows(3, "b"), SnapshotMeta(3, 0))
        rw.write_flows(_flows(4, "a"), SnapshotMeta(4, 0, final=True))
        assert rw.buffered() == 3
        # full: the intermediate "a" of ts 2 is superseded by the final "a" of the same period
        rw.write_flows(_flows(5, "b"), SnapshotMeta(5, 4))
        assert rw.metrics.dropped.as_dict() == {"superseded": 1}
        # full again, nothing superseded: the oldest intermediate snapshot (b, ts 3) is lost
        rw.write_flows(_flows(6, "c"), SnapshotMeta(6, 4))
        assert rw.metrics.dropped.as_dict() == {"superseded": 1, "overflow": 1}
        # the final "c" supersedes the buffered intermediate "c"; the final "a" stays
        rw.write_flows(_flows(7, "c"), SnapshotMeta(7, 4, final=True))
        assert rw.metrics.dropped.as_dict() == {"superseded": 2, "overflow": 1}
    msgs = [r.getMessage() for r in caplog.records]
    assert any("superseded" in x and "nothing lost" in x for x in msgs)
    assert any("snapshot dropped (buffer full)" in x for x in msgs)
    flaky.down.clear()
    assert rw.flush(5)
    rw.close(5)
    assert [m.snapshot_ts_ns for _, _, m in flaky.calls] == [1, 4, 5, 7]  # in order, the survivors
    assert rw.metrics.as_dict()["written"] == 4 and flaky.closed == 1


def test_close_drops_what_cannot_be_written_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    flaky = Flaky(down=True)
    rw = ResilientWriter(flaky, name="w", buffer_size=4, backoff_initial_s=0.01, backoff_max_s=0.02)
    rw.open()
    for k in range(3):
        rw.write_flows(_flows(k + 1, f"t{k}"), SnapshotMeta(k, 0, final=True))
    with caplog.at_level(logging.ERROR, logger="netspectra.engine.resilient"):
        t0 = time.monotonic()
        rw.close(0.2)
        assert time.monotonic() - t0 < 3
    assert rw.metrics.dropped.as_dict() == {"close": 3} and flaky.calls == []
    assert any("unwritten at close" in r.getMessage() for r in caplog.records)
    rw.write_flows(_flows(1), SnapshotMeta(9, 0))  # after close: dropped, counted
    assert rw.metrics.dropped.as_dict() == {"close": 4}


def test_max_attempts_gives_up_on_one_snapshot_and_goes_on() -> None:
    class BadFirst(Recorder):
        def _write_flows(self, snap: FlowSnapshot, meta: SnapshotMeta) -> None:
            if meta.snapshot_ts_ns == 1:
                raise ValueError("cannot encode this one")
            super()._write_flows(snap, meta)

    w = BadFirst()
    rw = ResilientWriter(w, name="w", max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.002)
    rw.open()
    rw.write_flows(_flows(1), SnapshotMeta(1, 0))
    rw.write_flows(_flows(2), SnapshotMeta(2, 0))
    assert rw.flush(5)
    rw.close(1)
    assert [m.snapshot_ts_ns for _, _, m in w.calls] == [2]
    assert rw.metrics.as_dict()["failed"] == 3 and rw.metrics.dropped.as_dict() == {"attempts": 1}


def test_non_blocking_submit_counts_drops(batches: list[PacketBatch]) -> None:
    gate = Gate()
    group = TaskGroup("exact", (LockedTask(gate),), (), AGGREGATORS.get("exact").deliver)
    m = Manager([group], num_workers=1, queue_packets=600, **fast())
    m.start()
    assert m.submit(batches[0], block=False)
    assert gate.entered.wait(10)  # the worker holds the first batch; the queue only fills from now on
    refused = 0
    for b in batches[1:20]:
        refused += not m.submit(b, block=False)
    assert refused > 0
    big = PacketBatch.concat(batches[20:24])
    assert len(big) > 600  # never fits a non-empty queue
    t0 = time.monotonic()
    assert m.submit(big, timeout=0.05) is False  # a timed-out blocking submit is a counted drop too
    assert time.monotonic() - t0 >= 0.04
    md = m.metrics_dict()
    assert md["dropped_batches"] == refused + 1
    assert md["dropped_packets"] == sum(len(b) for b in batches[:20]) - md["packets_in"] + len(big)
    assert md["queue_packets"] <= 600 + max(len(b) for b in batches)
    gate.release.set()
    m.stop()
    assert gate.inner.packets == m.metrics_dict()["packets_in"]  # everything accepted was applied


def test_try_submit_takes_what_fits_and_counts_no_drop(batches: list[PacketBatch]) -> None:
    gate = Gate()
    group = TaskGroup("exact", (LockedTask(gate),), (), AGGREGATORS.get("exact").deliver)
    m = Manager([group], num_workers=1, queue_packets=600, **fast())
    with pytest.raises(RuntimeError, match=r"before Manager\.start"):
        m.try_submit(batches[0])
    m.start()
    assert m.try_submit(batches[0])
    assert gate.entered.wait(10)  # the worker holds the first batch; the queue only fills from now on
    taken = [b for b in batches[1:20] if m.try_submit(b)]
    assert len(taken) < 19  # some did not fit
    md = m.metrics_dict()
    assert md["dropped_batches"] == 0 and md["dropped_packets"] == 0  # refused, not dropped
    assert md["packets_in"] == len(batches[0]) + sum(len(b) for b in taken)
    assert m.try_submit(batches[0].head(0))  # empty: accepted, nothing to do
    gate.release.set()
    m.stop()
    assert gate.inner.packets == md["packets_in"]  # everything taken was applied
    with pytest.raises(ManagerStoppedError):
        m.try_submit(batches[0])


def test_submit_contract(batches: list[PacketBatch]) -> None:
    m = Manager([exact_group()], num_workers=1)
    with pytest.raises(RuntimeError, match=r"before Manager\.start"):
        m.submit(batches[0])
    m.start()
    with pytest.raises(RuntimeError, match="twice"):
        m.start()
    bad = PacketBatch(
        *(getattr(batches[0], c) for c in PacketBatch.COLUMNS[:-1]), batches[0].length.astype(np.int64)
    )
    with pytest.raises(ValueError, match="length"):
        m.submit(bad)
    assert m.submit(batches[0].head(0))  # empty: accepted, nothing to do
    m.stop()
    with pytest.raises(ManagerStoppedError):
        m.submit(batches[0])


def test_callbacks_and_a_failing_task(batches: list[PacketBatch]) -> None:
    class Broken(EngineTask):
        def update(self, batch: PacketBatch, *, block: bool = True) -> float | None:
            raise RuntimeError("bug")

        def snapshot(self, reset: bool = False) -> Any:
            return None

    class Named:
        name = "broken"

    seen: list[tuple[str, str, bool]] = []
    stopped: list[Manager] = []
    m = Manager(
        [
            exact_group(specs={"five": FIVE}),
            TaskGroup("other", (Broken(Named()),), (), AGGREGATORS.get("exact").deliver),
        ],
        num_workers=2,
    )
    m.on_snapshot.append(lambda g, s, meta: seen.append((g, getattr(s, "task_name", "-"), meta.final)))
    m.on_snapshot.append(lambda g, s, meta: 1 / 0)
    m.on_stop.append(stopped.append)
    with m:
        for b in batches[:10]:
            m.submit(b)
        m.flush()
        snap, meta = m.snapshot("five")
        assert snap.total_packets == sum(len(b) for b in batches[:10]) and not meta.final
    md = m.metrics_dict()
    assert md["task_errors"] == {"broken": 10}  # the broken task lost its batches; the others did not
    assert m.task("five").task.packets == snap.total_packets
    assert ("exact", "five", True) in seen and stopped == [m]
    assert md["callback_errors"] >= 1
    with pytest.raises(KeyError, match="five"):
        m.task("nope")


def test_default_workers_are_capped_at_the_cpus() -> None:
    assert 1 <= default_num_workers(16) <= 16
    assert default_num_workers(1) == 1
    assert Manager([exact_group()]).num_workers == default_num_workers(16)


def test_run_offline_goes_through_the_engine(tmp_path: Path) -> None:
    cfg = Config.model_validate(
        {
            "aggregator": {
                "types": ["exact", "sketch"],
                "num_workers": 3,
                "exact": {
                    "tasks": [{"name": "five", "key_fields": list(FIVE)}],
                    "writers": [{"type": "parquet", "enabled": False}],
                },
                "sketch": {
                    "tasks": [
                        {
                            "name": "cm",
                            "skt_type": 0,
                            "flow_fields": ["SrcIP"],
                            "width": 1024,
                            "depth": 2,
                            "seed": 3,
                        }
                    ]
                },
            }
        }
    )
    paths = [CAPTURES / f for f in FILES] + [CAPTURES / "no-such-file.pcap"]
    result, m = run_offline(paths, cfg, batch_size=512, writers=True)
    _, m2 = run_offline(paths, cfg, batch_size=512, writers=False)
    assert m.writers == () and m2.writers == ()
    direct = ExactTask("five", FIVE)
    ref = analyze_files(paths, [direct], batch_size=512)
    assert result.stats.ip_packets == ref.stats.ip_packets == m.metrics_dict()["packets_in"]
    assert len(result.errors) == 1 and "no-such-file" in str(result.errors[0])
    assert result.elapsed_s > 0 and m.num_workers == default_num_workers(3)
    for man in (m, m2):
        snap = man.task("five").task.snapshot()
        assert flow_table([snap]) == flow_table([direct.snapshot()])
        assert man.task("cm").task.snapshot().count is not None


def _file_writers_config(root: Path, **aggregator: Any) -> Config:
    agg: dict[str, Any] = {
        "types": ["exact", "sketch"],
        "num_workers": 2,
        "exact": {
            "tasks": [{"name": "five", "key_fields": list(FIVE)}],
            "writers": [{"type": "parquet", "enabled": True, "parquet": {"root_path": str(root / "pq")}}],
        },
        "sketch": {
            "tasks": [
                {
                    "name": "cm",
                    "skt_type": 0,
                    "flow_fields": ["SrcIP"],
                    "width": 1024,
                    "depth": 2,
                    "seed": 3,
                    "count_thereshold": 1,
                    "size_thereshold": 1,
                }
            ],
            "writers": [{"type": "text", "enabled": True, "text": {"root_path": str(root / "txt")}}],
        },
    }
    agg.update(aggregator)
    return Config.model_validate({"aggregator": agg})


def test_run_offline_fills_the_configured_writers(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    paths = [CAPTURES / f for f in FILES]
    result, m = run_offline(paths, _file_writers_config(tmp_path), batch_size=1000)
    assert result.errors == []
    md = m.metrics_dict()["writers"]
    assert md["exact/parquet[0]"]["written"] == 1 and md["sketch/text[0]"]["written"] == 1
    (pq_file,) = (tmp_path / "pq").glob("*/five.parquet")
    table = pq.read_table(pq_file)
    assert table.schema.metadata[b"netspectra.final"] == b"true"
    assert sum(table.column("PacketCount").to_pylist()) == result.stats.ip_packets
    assert table.num_rows == len(m.task("five").task)
    (count_file,) = (tmp_path / "txt").glob("*/cm/count_hh.txt")
    first = count_file.read_text().splitlines()[0].split(" ")
    top = m.task("cm").task.snapshot().count.to_list()[0]
    assert first == [top[0], str(top[1])]


def test_periods_through_real_writers_sum_to_the_whole(tmp_path: Path, batches: list[PacketBatch]) -> None:
    import pyarrow.parquet as pq

    clock = ManualClock()
    m = Manager.from_config(_file_writers_config(tmp_path, period="1h"), clock=clock, **fast())
    m.start()
    for part in np.array_split(np.arange(len(batches)), 3):
        for i in part:
            m.submit(batches[i])
        m.flush()
        clock.advance(3600)
        assert m.settle()
    m.stop()  # a fourth, empty, period ends at stop
    tables = [pq.read_table(f) for f in sorted((tmp_path / "pq").glob("*/five.parquet"))]
    assert len(tables) == 4 and all(t.schema.metadata[b"netspectra.final"] == b"true" for t in tables)
    # three full periods, and the empty one that the stop ended (its file says "nothing then")
    starts = sorted(t.column("PeriodStart")[0].value for t in tables if t.num_rows)
    assert starts == [clock.time_ns() - k * 3600 * 10**9 for k in (3, 2, 1)]
    assert sum(t.num_rows == 0 for t in tables) == 1
    assert sum(sum(t.column("PacketCount").to_pylist()) for t in tables) == sum(len(b) for b in batches)
    assert len(list((tmp_path / "txt").glob("*/cm/count_hh.txt"))) == 4


def test_external_periods_resume_a_start_and_end_where_told(batches: list[PacketBatch]) -> None:
    """A resumed period keeps the given start; with external periods no thread resets anything, and
    end_period closes exactly the submitted batches under that start and returns the next one."""
    clock = ManualClock(start_ns=1_750_000_000 * 10**9)
    w = Recorder()
    m = Manager(
        [exact_group((GroupWriter("exact/rec[0]", w, None),))],
        period=10.0,
        num_workers=2,
        clock=clock,
        **fast(),
    )
    resumed = 1_749_999_000 * 10**9
    m.start(resumed, external_periods=True)
    assert m.started and m.external_periods and m.period_start_ns == resumed
    half = len(batches) // 2
    for b in batches[:half]:
        m.submit(b)
    assert m.flush(10)
    clock.advance(100)  # ten periods' worth: nothing happens without end_period
    assert m.settle()
    assert m.metrics_dict()["periods"] == 0
    nxt = 1_750_000_050 * 10**9
    assert m.end_period(nxt) == nxt == m.period_start_ns
    for b in batches[half:]:
        m.submit(b)
    m.stop()
    for name in EXACT_SPECS:
        (first, meta1), (second, meta2) = w.finals(name)
        assert meta1.period_start_ns == resumed and meta2.period_start_ns == nxt
        assert first.total_packets == sum(len(b) for b in batches[:half])
        assert second.total_packets == sum(len(b) for b in batches[half:])


def test_take_over_periods_stops_the_period_thread(batches: list[PacketBatch]) -> None:
    clock = ManualClock(start_ns=1_750_000_000 * 10**9)
    w = Recorder()
    m = Manager([exact_group((GroupWriter("exact/rec[0]", w, None),))], period=10.0, clock=clock, **fast())
    m.start()
    m.take_over_periods(123 * 10**9)
    assert m.period_start_ns == 123 * 10**9
    m.submit(batches[0])
    assert m.flush(10)
    clock.advance(30)
    assert m.settle()
    m.stop()
    assert m.metrics_dict()["periods"] == 0
    assert [meta.period_start_ns for _, meta in w.finals("five")] == [123 * 10**9]


def test_from_config_inline_only_where_the_tasks_could_not_run_in_parallel() -> None:
    """``inline_if_one_lane`` (a JetStream engine): inline for one task or one worker, else the workers;
    an inline manager gives the same totals as one with a worker."""
    from netspectra.config import load_config, parse_config_text

    exact_only = parse_config_text(
        'aggregator:\n  types: ["exact"]\n  period: "0s"\n  exact:\n    writers: []\n    tasks:\n'
        '      - name: "five"\n        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]\n',
        source="t.yaml",
        expand=False,
    )
    shipped = load_config(None)  # three tasks
    assert Manager.from_config(exact_only, writers=False, inline_if_one_lane=True).inline
    assert not Manager.from_config(exact_only, writers=False).inline
    assert not Manager.from_config(shipped, writers=False, num_workers=2, inline_if_one_lane=True).inline
    assert Manager.from_config(shipped, writers=False, num_workers=1, inline_if_one_lane=True).inline
    batch = CaptureReader(Path(__file__).parents[1] / "data" / "captures" / "bot.pcap").read_all()
    totals = []
    for inline in (True, False):
        m = Manager.from_config(exact_only, writers=False, inline_if_one_lane=inline)
        m.start()
        assert m.submit(batch)
        m.stop()
        snap = m.task("five").snapshot()
        totals.append((snap.total_packets, snap.total_bytes, len(snap)))
    assert totals[0] == totals[1] and totals[0][0] == len(batch) > 0


def test_a_worker_leaving_on_an_exception_wakes_another_for_its_lane() -> None:
    """A worker ends on an exception that is not a task's (a task's are counted and the worker goes on)
    while the next batch of its lane is ready: an idle worker is woken for it — the leaving worker does
    not take it itself, so the lane would otherwise wait for the next put."""
    from netspectra.engine.manager import _LaneQueue

    q = _LaneQueue(max_packets=1_000, lanes=1)
    one = PacketBatch.empty(1)
    assert q.put(one, block=False, timeout=None) and q.put(one, block=False, timeout=None)
    lane, first = q.next_work()  # the worker that will leave holds lane 0
    got: list[Any] = []
    idle = threading.Thread(target=lambda: got.append(q.next_work()), daemon=True)
    idle.start()
    time.sleep(0.2)  # the idle worker waits: lane 0 is busy
    assert not got
    q.done(lane, first, leaving=True)
    idle.join(timeout=5)
    assert got and got[0][0] == 0 and got[0][1] is not first


@pytest.mark.parametrize("inline", [False, True])
def test_weighted_rows_count_as_the_packets_and_bytes_they_stand_for(
    batches: list[PacketBatch], inline: bool
) -> None:
    """Flow-export rows (``packets``/``octets``): the engine's packets_in/bytes_in are the packets and
    bytes the rows stand for, as the tasks count them (they were the rows and their mean packet sizes:
    `up --collect` printed "packets 937, bytes 101,941" beside tasks of 3,882 packets, 523,142 bytes)."""
    rng = np.random.default_rng(7)
    weighted = []
    for b in batches[:8]:
        packets = rng.integers(1, 50, len(b)).astype(np.uint64)
        weighted.append(b.with_columns(packets=packets, octets=packets * b.length.astype(np.uint64)))
    m = Manager([exact_group(specs={"five": FIVE})], num_workers=2, inline=inline, **fast())
    m.start()
    for b in weighted:
        assert m.submit(b)
    m.flush()
    (snap,) = [t.snapshot() for t in m.groups[0].tasks]
    m.stop()
    md = m.metrics_dict()
    want_packets = sum(int(b.packets.sum()) for b in weighted)
    want_bytes = sum(int(b.octets.sum()) for b in weighted)
    assert want_packets > sum(len(b) for b in weighted)
    assert (md["packets_in"], md["bytes_in"]) == (want_packets, want_bytes)
    assert (int(snap.packets.sum()), int(snap.bytes.sum())) == (want_packets, want_bytes)
    assert md["batches_in"] == len(weighted)
