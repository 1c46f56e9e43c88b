"""The engine's manager: a bounded queue of batches, worker threads, snapshots, periods, graceful stop.

::

    submit(batch) ──▶ bounded queue ──▶ one ordered lane per task ──▶ N workers (a lane on one at a time)
                                                          │
      per writer: snapshotter thread, own interval ───────┤ snapshot ──▶ ResilientWriter ──▶ writer
      one period thread: all tasks snapshot+reset at once ┘ final snapshot to EVERY writer, then reset

With an ``enrichment`` stage (:mod:`netspectra.engine.enrichment`; ``from_config`` builds it when the
configuration's ``enrichment`` section is set and some task reads an enrichment column),
:meth:`Manager.submit` enriches every batch once, in the submitting thread, before any task sees it.

In *inline* mode (``Manager(..., inline=True)``, the offline analysis) there is no queue and no
worker: :meth:`Manager.submit` applies the batch to every task in the caller's thread, and everything
else (snapshots, periods, writers, stop) is the same.

What it guarantees (and the original did not):

* **Every task sees the batches in submission order, whatever the number of workers.** Each task
  has a *lane*: a lane runs on one worker at a time and applies the batches in the order they were
  submitted; different tasks run on different workers in parallel. Order-dependent sketches give
  the same answers with 1 or N workers, and as the inline mode.
* **Nothing lost or counted twice at a period boundary.** Each task's period-final snapshot and its
  reset are one atomic step, and the step runs for all tasks at one batch boundary: the lanes first
  apply every batch submitted before the cut (batches submitted meanwhile wait for the new period),
  then the snapshots and resets run while nothing is applied (a shared/exclusive barrier), so every
  batch lies wholly in one period for every task. The final state
  goes to every writer of the group, whatever its ``snapshot_interval`` (original's bug 4).
* **Back-pressure, or counted drops.** :meth:`Manager.submit` blocks while the queue is full (the
  offline path never drops); with ``block=False`` or a ``timeout`` a refused batch is counted in
  the metrics and logged (rate-limited). The bound is in packets (``size_of_packet_channel``, as the
  original's channel of packets); a batch is always admitted into an empty queue, whatever its size.
* **Writers cannot stop the engine.** Every writer is wrapped in a
  :class:`~netspectra.engine.resilient.ResilientWriter`: writes are buffered, retried with back-off in
  the writer's own thread, and drops are counted.
* **UTC.** :class:`~netspectra.storage.base.SnapshotMeta` carries UTC nanoseconds (the original
  stored local time as UTC, bug 3).
* **Graceful stop**: stop accepting, drain the queue, join the workers, stop the snapshot and period
  threads, take one final snapshot of every task and hand it to every writer (not of a task that
  nobody would receive: no writer in its group, no ``on_snapshot`` callback; a records task's is
  counted, not made: :meth:`~netspectra.engine.groups.EngineTask.discard`), close
  the writers (each drains its buffer within ``writer_close_timeout_s``, in parallel), run ``on_stop``.
* **Records tasks** (``EngineTask.incremental``, flow records, rollups; see
  :mod:`netspectra.engine.groups`): each of their snapshots is an increment, taken with ``reset=True`` and
  handed to every writer of the group, so every record reaches every writer once; before each, the task
  is told how long the engine has been without batches (:meth:`~netspectra.engine.groups.EngineTask.tick`:
  quiet flows end by the clock), at stop it ends what is open (``stop(end_of_input=True)``: reason
  ``end_of_input``, else ``shutdown``), and after a period's final snapshot it is told that a new period
  begins (:meth:`~netspectra.engine.groups.EngineTask.begin_period`).

Time comes from an injectable :class:`Clock`: :class:`SystemClock` in production, :class:`ManualClock`
in tests and simulations, where :meth:`ManualClock.advance` plus :meth:`Manager.settle` drive
intervals and periods deterministically without sleeping.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, Protocol

from netspectra.batch import PacketBatch
from netspectra.config.models import Config
from netspectra.engine.enrichment import EnrichmentStage
from netspectra.engine.groups import EngineTask, GroupWriter, TaskGroup
from netspectra.engine.metrics import EngineMetrics, RateLimitedLog
from netspectra.engine.registry import build_groups
from netspectra.engine.resilient import (
    DEFAULT_BACKOFF_INITIAL_S,
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_BUFFER_SIZE,
    DEFAULT_CLOSE_TIMEOUT_S,
    ResilientWriter,
)
from netspectra.storage.base import SnapshotMeta
from netspectra.weights import exact_sum

log = logging.getLogger(__name__)

#: ``on_snapshot(group_name, snapshot, meta)``: called after every snapshot the manager takes.
SnapshotCallback = Callable[[str, Any, SnapshotMeta], None]
#: ``on_stop(manager)``: called once at the end of :meth:`Manager.stop`.
StopCallback = Callable[["Manager"], None]

DEFAULT_QUEUE_PACKETS = 10_000


class ManagerStoppedError(RuntimeError):
    """:meth:`Manager.submit` after :meth:`Manager.stop` began: the batch was not accepted."""


# --------------------------------------------------------------------------------------------------
# Clocks
# --------------------------------------------------------------------------------------------------


class Clock(Protocol):
    """Where the manager gets time from.

    ``time_ns()`` is the UTC wall clock (ns since the epoch) that stamps snapshots; ``monotonic_ns()``
    schedules intervals and periods (immune to wall-clock steps); ``wait_until(deadline, stop)``
    blocks until ``monotonic_ns() >= deadline`` or ``stop`` is set, and returns whether ``stop`` is set.
    Implementations are thread-safe.
    """

    def time_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...

    def wait_until(self, deadline_ns: int, stop: threading.Event) -> bool: ...


class SystemClock:
    """The real clocks: :func:`time.time_ns` and :func:`time.monotonic_ns`."""

    def time_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wait_until(self, deadline_ns: int, stop: threading.Event) -> bool:
        while not stop.is_set():
            left = deadline_ns - time.monotonic_ns()
            if left <= 0:
                return False
            stop.wait(left / 1e9)
        return True


class ManualClock:
    """A clock that moves only when told to (:meth:`advance`); for tests and simulations.

    Both clocks advance together: ``time_ns() == start_ns + (monotonic_ns() - 0)``. Waiters wake as
    soon as ``advance`` reaches their deadline; a set ``stop`` is noticed within 20 ms.
    """

    def __init__(self, start_ns: int = 1_700_000_000 * 10**9) -> None:
        self._cond = threading.Condition()
        self._start = int(start_ns)
        self._mono = 0

    def time_ns(self) -> int:
        with self._cond:
            return self._start + self._mono

    def monotonic_ns(self) -> int:
        with self._cond:
            return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (>= 0) and wake the waiters that are due."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back (seconds={seconds})")
        with self._cond:
            self._mono += round(seconds * 1e9)
            self._cond.notify_all()

    def wait_until(self, deadline_ns: int, stop: threading.Event) -> bool:
        with self._cond:
            while self._mono < deadline_ns and not stop.is_set():
                self._cond.wait(0.02)  # stop is an Event, not this condition: poll it
            return stop.is_set()


# --------------------------------------------------------------------------------------------------
# Internals: the queue and the period barrier
# --------------------------------------------------------------------------------------------------


class _Entry:
    """One submitted batch on its way through the lanes: applied to ``remaining`` more tasks."""

    __slots__ = ("batch", "n", "remaining", "seq")

    def __init__(self, seq: int, batch: PacketBatch, lanes: int) -> None:
        self.seq = seq
        self.batch = batch
        self.n = len(batch)
        self.remaining = lanes


class _LaneQueue:
    """Batches in submission order, applied to every task in that order: one *lane* per task.

    A lane runs on one worker at a time, in sequence order, so every task sees the batches exactly in
    the order they were submitted whatever the number of workers (order-dependent sketches give the
    same answers with 1 or N workers), while different tasks run in parallel on different workers.

    Bounded in packets: the packets of batches not yet applied to every task; an empty queue admits any
    batch. ``cut()`` marks the batches submitted so far: lanes apply those and stop before any later
    one until ``release()`` — the consistent point a period reset needs, without refusing the batches
    submitted meanwhile. ``close()`` refuses new puts; ``next_work()`` returns ``None`` once the queue
    is closed and every lane has applied everything. ``join`` waits until every accepted batch was
    applied to every task.
    """

    def __init__(self, max_packets: int, lanes: int) -> None:
        self.max_packets = max(1, int(max_packets))
        self.lanes = lanes
        # One lock, three conditions, so that each change wakes only the threads it concerns: a batch
        # put wakes idle workers (as many as it gives lanes to run), a batch leaving wakes putters, the
        # state cut/join wait for. One condition woken with notify_all at every step woke every worker
        # and the putter for each lane of each batch; each such wake-up takes the GIL back and sleeps
        # again: ~200 µs of CPU a batch with the shipped three tasks on two workers.
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # cut() and join() wait here
        self._work = threading.Condition(lock)  # idle workers wait here
        self._room = threading.Condition(lock)  # blocked putters wait here
        self._entries: dict[int, _Entry] = {}
        self._tail = 0  # sequence number of the next batch
        self._pos = [0] * lanes  # next sequence number each lane applies
        self._busy = [False] * lanes
        self._packets = 0
        self._putters = 0
        self._closed = False
        self._cut: int | None = None
        self._rr = 0

    def _fits(self, n: int) -> bool:
        return not self._entries or self._packets + n <= self.max_packets

    def put(self, batch: PacketBatch, block: bool, timeout: float | None) -> bool:
        n = len(batch)
        with self._cond:
            if self._closed:
                raise ManagerStoppedError("the manager is stopping; no more batches are accepted")
            if not self._fits(n):
                if not block:
                    return False
                self._putters += 1
                try:
                    if not self._room.wait_for(lambda: self._fits(n), timeout):
                        return False
                finally:
                    self._putters -= 1
                    if self._closed and self._putters == 0:
                        self._work.notify_all()  # a closed queue's workers wait for the last putter
            if self.lanes:
                self._entries[self._tail] = _Entry(self._tail, batch, self.lanes)
                self._packets += n
            self._tail += 1
            self._wake_workers(0)
            return True

    def _runnable(self, lane: int) -> bool:
        pos = self._pos[lane]
        return not self._busy[lane] and pos < self._tail and (self._cut is None or pos <= self._cut)

    def _wake_workers(self, taken: int) -> None:
        """Wake as many idle workers as there are lanes ready to run, less ``taken`` (the caller is a
        worker about to take one itself). Called with the lock held."""
        ready = sum(1 for lane in range(self.lanes) if self._runnable(lane)) - taken
        if ready > 0:
            self._work.notify(ready)

    def next_work(self) -> tuple[int, _Entry] | None:
        """The next (lane, batch) a worker should apply (it owns the lane until :meth:`done`)."""
        with self._cond:
            while True:
                for k in range(self.lanes):
                    lane = (self._rr + k) % self.lanes
                    if self._runnable(lane):
                        self._rr = (lane + 1) % self.lanes
                        self._busy[lane] = True
                        return lane, self._entries[self._pos[lane]]
                if self._closed and self._putters == 0 and not self._entries:
                    self._work.notify_all()  # the other workers end too
                    return None
                self._work.wait()

    def done(self, lane: int, entry: _Entry, *, leaving: bool = False) -> None:
        """Lane ``lane`` has applied ``entry``; the worker calls :meth:`next_work` next (it takes a
        ready lane itself: only the ready lanes beyond that one wake other workers) — unless it is
        ``leaving`` (its thread ends on an exception): then every ready lane wakes a worker."""
        with self._cond:
            self._busy[lane] = False
            self._pos[lane] += 1
            entry.remaining -= 1
            if entry.remaining == 0:
                del self._entries[entry.seq]
                self._packets -= entry.n
                if self._putters:
                    self._room.notify_all()
                self._cond.notify_all()  # join(); cut() below
            elif self._cut is not None:
                self._cond.notify_all()
            self._wake_workers(0 if leaving else 1)

    def cut(self) -> None:
        """Wait until every lane has applied every batch submitted before this call (later ones wait)."""
        with self._cond:
            self._cut = self._tail - 1
            self._cond.wait_for(lambda: all(p > self._cut for p in self._pos) and not any(self._busy))

    def release(self) -> None:
        with self._cond:
            self._cut = None
            self._wake_workers(0)

    def join(self, timeout: float | None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._entries, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._work.notify_all()
            self._room.notify_all()
            self._cond.notify_all()

    def batches(self) -> int:
        return len(self._entries)

    def packets(self) -> int:
        return self._packets


class _Barrier:
    """Shared/exclusive lock, writer-preferring: workers and snapshotters share, the period reset is
    exclusive. Not re-entrant. Preferring the exclusive side keeps a steady stream of batches from
    postponing a period reset forever."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._waiting_exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if self._shared == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting_exclusive += 1
            while self._exclusive or self._shared:
                self._cond.wait()
            self._waiting_exclusive -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def default_num_workers(configured: int) -> int:
    """``configured`` capped at the CPUs this process may use (at least 1).

    The configuration's 16 is the original Go default, sized for goroutines; here each worker is an
    OS thread running GIL-free kernels, so more threads than CPUs only adds contention.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(int(configured), cpus))


def _packets_of(batch: PacketBatch) -> int:
    """The packets ``batch`` stands for: its rows, or the exact sum of ``packets`` of weighted rows."""
    return exact_sum(batch.packets) if batch.packets is not None else len(batch)


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    s = value.total_seconds() if isinstance(value, timedelta) else float(value)
    return s if s > 0 else None


# --------------------------------------------------------------------------------------------------
# The manager
# --------------------------------------------------------------------------------------------------


class Manager:
    """Runs task groups over submitted batches (see the module docstring).

    Lifecycle: construct, :meth:`start`, :meth:`submit` batches from any number of threads,
    :meth:`stop` (idempotent; also via ``with Manager(...) as m:``). ``period`` (a timedelta or
    seconds; ``None``/0: never) is the global reset period; ``num_workers`` defaults to
    :func:`default_num_workers` of 16; ``queue_packets`` bounds the queue. Writer options apply to the
    :class:`ResilientWriter` each writer is wrapped in.

    ``on_snapshot`` and ``on_stop`` are lists of callbacks, safe to append to before :meth:`start`.
    ``on_snapshot(group, snapshot, meta)`` runs after every snapshot (periodic ones once per writer
    tick, so a task snapshotted for two writers is reported twice; period-final and stop-final ones
    once per task), in the thread that took it; ``on_stop(manager)`` runs once at the end of
    :meth:`stop`. A callback that raises is logged and counted, never propagated.

    ``peeks=False``: nothing calls :meth:`snapshot` while the engine runs (it raises); the tasks of a
    group that no one reads (no writer, no ``on_snapshot`` callback at :meth:`start`) are then told so
    (:meth:`~netspectra.engine.groups.EngineTask.forget_unread`) and keep only what their summaries need.
    ``idle_clock=False``: records tasks are never told of time without batches (an offline run: the
    file's time is the packets' own; a flow open at the end ends with ``end_of_input``, not ``idle``
    after the milliseconds the reading took to stop).
    """

    def __init__(
        self,
        groups: Sequence[TaskGroup],
        *,
        period: timedelta | float | None = None,
        num_workers: int | None = None,
        queue_packets: int = DEFAULT_QUEUE_PACKETS,
        clock: Clock | None = None,
        writer_buffer: int = DEFAULT_BUFFER_SIZE,
        writer_backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S,
        writer_backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        writer_max_attempts: int = 0,
        writer_close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
        metrics: EngineMetrics | None = None,
        inline: bool = False,
        enrichment: EnrichmentStage | None = None,
        peeks: bool = True,
        idle_clock: bool = True,
    ) -> None:
        self.groups: tuple[TaskGroup, ...] = tuple(groups)
        #: The enrichment stage applied to every submitted batch (None: batches are not enriched).
        self.enrichment = enrichment
        #: Inline mode: :meth:`submit` applies the batch in the caller's thread (no queue, no workers).
        self.inline = inline
        #: Whether anything may look at the tasks while the engine runs (:meth:`snapshot`: alerting,
        #: queries). Without, the tasks of a group no one reads forget as they go what they would only
        #: hand out (:meth:`start`).
        self.peeks = peeks
        #: Whether the clock's time without batches is quiet time of the traffic for records tasks
        #: (:meth:`EngineTask.tick`: a live engine's quiet flows end). Off for a file read offline: its
        #: time is the packets' own, and its records must not depend on how fast it was read.
        self.idle_clock = idle_clock
        owner: dict[str, str] = {}
        for g in self.groups:
            for t in g.tasks:
                if t.name in owner:
                    raise ValueError(f"task {t.name!r} is in groups {owner[t.name]!r} and {g.name!r}")
                owner[t.name] = g.name
        gnames = [g.name for g in self.groups]
        if len(set(gnames)) != len(gnames):
            raise ValueError(f"group names must be unique, got {gnames}")
        self.period_s = _seconds(period)
        self.num_workers = num_workers if num_workers is not None else default_num_workers(16)
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {self.num_workers}")
        self.clock: Clock = clock or SystemClock()
        self.metrics = metrics or EngineMetrics()
        self.on_snapshot: list[SnapshotCallback] = []
        self.on_stop: list[StopCallback] = []
        self.writer_close_timeout_s = writer_close_timeout_s

        self._tasks: dict[str, tuple[TaskGroup, EngineTask]] = {
            t.name: (g, t) for g in self.groups for t in g.tasks
        }
        self._all_tasks: list[EngineTask] = [t for g in self.groups for t in g.tasks]
        # records tasks need the clock of the latest applied batch (see tick)
        self._clock_batches = any(t.incremental for t in self._all_tasks)
        self._last_apply_ns = 0
        self._end_reason = "shutdown"
        self._queue = _LaneQueue(queue_packets, len(self._all_tasks))
        self.metrics.queue_batches = self._queue.batches
        self.metrics.queue_packets = self._queue.packets
        self.metrics.task_counters = self._task_counters
        self.metrics.queue_capacity_packets = self._queue.max_packets
        for t in self._all_tasks:
            self.metrics.task_update_seconds.touch(t.name)
            self.metrics.task_update_batches.touch(t.name)
        # Every writer of every group, wrapped so that it cannot block or stop the engine.
        self._writers: list[tuple[TaskGroup, GroupWriter, ResilientWriter]] = []
        for g in self.groups:
            for gw in g.writers:
                rw = (
                    gw.writer
                    if isinstance(gw.writer, ResilientWriter)
                    else ResilientWriter(
                        gw.writer,
                        name=gw.name,
                        buffer_size=writer_buffer,
                        backoff_initial_s=writer_backoff_initial_s,
                        backoff_max_s=writer_backoff_max_s,
                        max_attempts=writer_max_attempts,
                        metrics=self.metrics.writer(gw.name),
                    )
                )
                self.metrics.writers[gw.name] = rw.metrics
                self._writers.append((g, gw, rw))

        self._barrier = _Barrier()
        # Held from a snapshot's time to its last task's snapshot by the threads that snapshot under the
        # shared barrier (the snapshotters, snapshot_to_writers): the time is the rows' version
        # (ReplacingMergeTree(TimestampNs) keeps the newest), so a later increment must never carry an
        # earlier time than one taken before it.
        self._snap_order = threading.Lock()
        self._stop_evt = threading.Event()
        self._state_lock = threading.Lock()
        self._started = False
        self._stopping = False
        self._stopped = threading.Event()
        self._workers: list[threading.Thread] = []
        self._schedulers: list[threading.Thread] = []
        self._sched_cond = threading.Condition()
        self._sched_state: dict[str, int | None] = {}  # thread key -> deadline it sleeps until, None = busy
        self._period_start_ns = 0
        self._external_periods = False
        self._drop_log = RateLimitedLog(log, 10.0)
        self._error_log = RateLimitedLog(log, 10.0)

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        *,
        writers: bool = True,
        types: Sequence[str] | None = None,
        num_workers: int | None = None,
        clock: Clock | None = None,
        enrich: bool = True,
        inline_if_one_lane: bool = False,
        **options: Any,
    ) -> Manager:
        """A manager for ``cfg.aggregator``: groups of ``types`` (default ``aggregator.types``) built by
        :func:`~netspectra.engine.registry.build_groups` (:class:`~netspectra.config.ConfigError` on
        any bad type, task or writer), ``period``, ``num_workers`` capped at the CPUs, and
        ``size_of_packet_channel`` as the queue bound in packets. ``writers=False`` drops every writer
        (nothing is stored). ``enrich`` (default): the enrichment stage of ``cfg.enrichment`` for the
        columns the tasks read (:meth:`EnrichmentStage.from_config`; none when nothing is configured or
        read). ``inline_if_one_lane``: build it ``inline`` when its tasks could not run in parallel
        anyway — one task, or one worker — (a JetStream consumer applies batches itself then, see
        :func:`~netspectra.engine.stream.applies_inline`). Other keyword ``options`` go to
        :class:`Manager`."""
        agg = cfg.aggregator
        groups = build_groups(cfg, types, writers=writers)
        if enrich and "enrichment" not in options:
            options["enrichment"] = EnrichmentStage.from_config(cfg, types=types)
        workers = num_workers if num_workers is not None else default_num_workers(agg.num_workers)
        if inline_if_one_lane and min(workers, sum(len(g.tasks) for g in groups)) <= 1:
            options["inline"] = True
        return cls(
            groups,
            period=agg.period,
            num_workers=workers,
            queue_packets=agg.size_of_packet_channel,
            clock=clock,
            **options,
        )

    def __enter__(self) -> Manager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        groups = ", ".join(f"{g.name}: {list(g.task_names)}" for g in self.groups)
        return f"Manager({groups}, workers={self.num_workers}, period_s={self.period_s})"

    # -- lookup ----------------------------------------------------------------------------------------

    def task(self, name: str) -> EngineTask:
        """The engine task called ``name`` (``KeyError`` naming the known ones otherwise)."""
        try:
            return self._tasks[name][1]
        except KeyError:
            raise KeyError(f"no task {name!r}; tasks are {', '.join(self._tasks)}") from None

    @property
    def tasks(self) -> tuple[EngineTask, ...]:
        """Every task of every group, in group order."""
        return tuple(self._all_tasks)

    @property
    def writers(self) -> tuple[ResilientWriter, ...]:
        """Every (wrapped) writer, in group order."""
        return tuple(rw for _, _, rw in self._writers)

    @property
    def period_start_ns(self) -> int:
        """UTC start of the current period (set by :meth:`start` and each reset)."""
        return self._period_start_ns

    def _task_counters(self) -> dict[str, dict[str, Any]]:
        """Each task's own counters (``counters()`` of the tasks that have one: rows counted under an
        unknown key value, weighted rows of no packet, ...), by task name."""
        out: dict[str, dict[str, Any]] = {}
        for name, (_, task) in self._tasks.items():
            counters = getattr(task.task, "counters", None)
            if callable(counters):
                out[name] = counters()
        return out

    def metrics_dict(self) -> dict[str, Any]:
        """:meth:`EngineMetrics.as_dict` of this manager."""
        return self.metrics.as_dict()

    # -- lifecycle -------------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has been called."""
        return self._started

    @property
    def external_periods(self) -> bool:
        """Whether periods end only through :meth:`end_period` (no period thread)."""
        return self._external_periods

    def start(self, period_start_ns: int | None = None, *, external_periods: bool = False) -> None:
        """Open the writers (in the background: a writer that cannot connect is retried) and start the
        worker, snapshot and period threads. Raises ``RuntimeError`` if called twice.

        ``period_start_ns`` (UTC ns; default: now) is the start of the first period: a resumed period
        keeps the ``PeriodStartNs`` under which an earlier process stored it, so that the snapshots of
        its successor replace those rows instead of adding to them. ``external_periods``: no period
        thread; the caller ends periods with :meth:`end_period` (the JetStream consumer does, at stream
        positions it records)."""
        with self._state_lock:
            if self._started:
                raise RuntimeError("Manager.start() called twice")
            self._started = True
        self._external_periods = external_periods
        for _, _, rw in self._writers:
            rw.open()
        if not self.peeks:
            # nothing peeks and nothing receives their snapshots: the tasks need not keep what they
            # would hand out until the final one (analyze without --out: closed rollup rows, ended flows)
            for g in self.groups:
                if self._unread(g):
                    for t in g.tasks:
                        t.forget_unread()
        self._period_start_ns = self.clock.time_ns() if period_start_ns is None else int(period_start_ns)
        t0 = self.clock.monotonic_ns()
        self._last_apply_ns = t0
        for i in range(0 if self.inline else min(self.num_workers, max(1, len(self._all_tasks)))):
            th = threading.Thread(target=self._worker, args=(i,), name=f"ns-worker-{i}", daemon=True)
            self._workers.append(th)
            th.start()
        for g, gw, rw in self._writers:
            if gw.interval_s is not None:
                self._spawn(f"snapshot:{gw.name}", self._snapshotter, t0, gw.interval_s, g, rw)
        if self.period_s is not None and not external_periods:
            self._spawn("period", self._period_loop, t0, self.period_s)
        log.info(
            "engine started: %s, queue %d packets, period %s, writers %s",
            "inline" if self.inline else f"{self.num_workers} worker(s)",
            self._queue.max_packets,
            f"{self.period_s:g} s" if self.period_s else "none",
            ", ".join(gw.name for _, gw, _ in self._writers) or "none",
        )

    def submit(self, batch: PacketBatch, block: bool = True, timeout: float | None = None) -> bool:
        """Queue ``batch`` for every task; True if accepted.

        ``block=True`` (the default; offline) waits while the queue is full: back-pressure, never a
        drop. With ``block=False``, or when ``timeout`` seconds pass, a batch that does not fit is
        refused: counted in ``dropped_batches`` / ``dropped_packets``, logged (rate-limited), and False
        is returned. Raises :class:`ManagerStoppedError` once :meth:`stop` has begun, ``RuntimeError`` before
        :meth:`start`, ``ValueError`` for a batch that breaks :class:`PacketBatch`'s invariants.
        Thread-safe; the batch's arrays must not be modified afterwards. With an enrichment stage the
        tasks get the batch enriched (:meth:`EnrichmentStage.apply`, in this thread).
        """
        if not self._started:
            raise RuntimeError("Manager.submit() before Manager.start()")
        batch.validate()
        n = len(batch)
        if n == 0:
            return True
        if self.enrichment is not None:
            batch = self.enrichment.apply(batch)
        if self.inline:
            return self._submit_inline(batch)
        if not self._queue.put(batch, block, timeout):
            self.metrics.dropped_batches.inc()
            self.metrics.dropped_packets.inc(_packets_of(batch))
            self._drop_log.log(
                logging.WARNING,
                "engine queue full (%d packets): dropped a batch of %d packets; %d packets dropped so far",
                self._queue.max_packets,
                n,
                int(self.metrics.dropped_packets.value),
            )
            return False
        self._count_in(batch)
        return True

    def _count_in(self, batch: PacketBatch) -> None:
        # the packets and bytes the rows stand for, as the tasks count them: a flow-export row is
        # `packets` packets and `octets` bytes (the engine's totals were rows and mean packet sizes)
        self.metrics.batches_in.inc()
        self.metrics.packets_in.inc(_packets_of(batch))
        # exact: a hostile exporter's octets would wrap a uint64 sum (a packet batch's lengths cannot)
        if batch.octets is not None:
            self.metrics.bytes_in.inc(exact_sum(batch.octets))
        else:
            self.metrics.bytes_in.inc(int(batch.length.sum(dtype="uint64")))

    def try_submit(self, batch: PacketBatch) -> bool:
        """Queue ``batch`` if the queue has room now, without waiting; False when it has not (nothing is
        counted: the caller still holds the batch and hands it to :meth:`submit`), and always False with
        an enrichment stage or in inline mode (work a caller that must not block should not do itself).

        For an event loop (the NATS consumer): the common case, a queue with room, costs no hop to a
        worker thread. Raises like :meth:`submit`.
        """
        if not self._started:
            raise RuntimeError("Manager.try_submit() before Manager.start()")
        if self.enrichment is not None or self.inline:
            return False
        batch.validate()
        n = len(batch)
        if n == 0:
            return True
        if not self._queue.put(batch, False, None):
            return False
        self._count_in(batch)
        return True

    def _submit_inline(self, batch: PacketBatch) -> bool:
        if self._stopping:
            raise ManagerStoppedError("the manager is stopping; no more batches are accepted")
        self._count_in(batch)
        with self._barrier.shared():
            self._apply(batch, self._all_tasks)
        if self._clock_batches:
            self._last_apply_ns = self.clock.monotonic_ns()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every batch accepted so far has been applied to every task; False on timeout."""
        return self._queue.join(timeout)

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until no snapshot or reset is due (every scheduling thread sleeps until a deadline still
        in the future of the clock) and every writer has written or dropped what it was given.

        With a :class:`ManualClock`: ``clock.advance(dt)`` then ``settle()`` makes everything that
        ``dt`` made due happen before the test looks. False on timeout.
        """
        end = time.monotonic() + timeout

        def idle() -> bool:
            now = self.clock.monotonic_ns()
            return all(d is not None and d > now for d in self._sched_state.values())

        with self._sched_cond:
            while not idle():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._sched_cond.wait(min(left, 0.02))
        return all(rw.flush(max(0.0, end - time.monotonic())) for rw in self.writers)

    def snapshot(self, name: str) -> tuple[Any, SnapshotMeta]:
        """A snapshot of task ``name`` now (not reset), with its meta; for alerting and queries.

        Consistent with the period: the snapshot and ``period_start_ns`` are read while no reset runs.
        Raises ``RuntimeError`` for a manager built with ``peeks=False``.
        """
        if not self.peeks:
            raise RuntimeError(
                f"Manager.snapshot({name!r}): this manager was built with peeks=False (an offline run "
                "without an alerter), its tasks forget what no one reads; read a task itself after the "
                "run: manager.task(name).snapshot()"
            )
        task = self.task(name)
        with self._barrier.shared():
            with self.metrics.snapshot_seconds.get(name).time():
                snap = task.snapshot()
            meta = SnapshotMeta(self.clock.time_ns(), self._period_start_ns, False)
        self.metrics.snapshots_taken.inc(name)
        return snap, meta

    def snapshot_to_writers(self) -> None:
        """Hand every writer a snapshot of its group's tasks now, as a periodic snapshot does (not a
        reset; the periodic schedule is unchanged). For a first look at the data before the first
        ``snapshot_interval`` has passed (``netspectra up`` after its first packets and at the end of a
        replay). A no-op before :meth:`start` and once :meth:`stop` has begun."""
        if not self._started or self._stopping:
            return
        for group in self.groups:
            writers = [rw for g, _, rw in self._writers if g is group]
            if not writers:
                continue
            with self._barrier.shared():
                if self._stopping:
                    # A stop began while an earlier group's callbacks ran (outside the barrier): its
                    # finals may be taken and the writers closed already; they hold everything anyway.
                    return
                for t in group.tasks:
                    if t.incremental:  # records tasks: what ended so far, taken (reset) like a periodic one
                        self._tick(t)
                with self._snap_order:
                    meta = SnapshotMeta(self.clock.time_ns(), self._period_start_ns, False)
                    taken = [self._snap(t, reset=t.incremental) for t in group.tasks]
                snaps = [snap for snap in taken if snap is not None]
                # Handed to the writers before the barrier is let go (a writer only buffers): a stop that
                # began meanwhile takes its final snapshots after these and closes the writers after
                # that. Delivered after the release, a snapshot could reach a writer after its final
                # one, or after its close: dropped, and a JetStream engine then counted it lost.
                for snap in snaps:
                    for rw in writers:
                        self._deliver(group, rw, snap, meta)
            for snap in snaps:
                self._notify(group, snap, meta)

    def stop(self, *, end_of_input: bool = False) -> None:
        """Stop gracefully (see the module docstring); idempotent and thread-safe.

        Returns when the final snapshots have been handed to every writer, the writers are closed
        (each gets ``writer_close_timeout_s`` to drain its buffer; what is left is dropped and
        counted) and the ``on_stop`` callbacks have run. ``end_of_input``: the input has ended (the
        offline run), so records tasks end their open flows with ``end_of_input`` rather than
        ``shutdown``.
        """
        with self._state_lock:
            if self._stopping:
                first = False
            else:
                self._stopping = first = True
                self._end_reason = "end_of_input" if end_of_input else "shutdown"
        if not first:
            self._stopped.wait()
            return
        try:
            self._stop()
        finally:
            self._stopped.set()

    def _stop(self) -> None:
        me = threading.current_thread()
        self._queue.close()  # refuse new batches; the workers drain what was accepted, then exit
        for th in self._workers:
            if th is not me:
                th.join()
        self._stop_evt.set()
        for th in self._schedulers:
            if th is not me:
                th.join()
        if self._started:
            with self._barrier.exclusive():
                for t in self._all_tasks:
                    if t.incremental:
                        self._tick(t)
                        self._finish(t, self._end_reason)
                now = self.clock.time_ns()
                meta = SnapshotMeta(now, self._period_start_ns, True)
                # A final snapshot nobody receives (no writer of its group, no on_snapshot callback) is
                # not taken: copying a 500 k-flow table for nothing was ~15-35 ms of an offline
                # `analyze`'s finish, which reads its tasks itself. A records task still hands its
                # records out (reset), as a periodic snapshot does, but counts them instead of making
                # them (EngineTask.discard).
                unread = {id(g): self._unread(g) for g in self.groups}
                finals = [
                    (g, t, self._snap(t, reset=t.incremental, unread=unread[id(g)]))
                    for g in self.groups
                    for t in g.tasks
                    if t.incremental or not unread[id(g)]
                ]
            self._hand_out(finals, meta)
        deadline_s = self.writer_close_timeout_s
        for _, _, rw in self._writers:
            rw.begin_close(deadline_s)
        for _, _, rw in self._writers:
            rw.wait_closed(deadline_s + 5.0)
        if self.enrichment is not None:
            self.enrichment.close()
        for cb in self.on_stop:
            try:
                cb(self)
            except Exception:
                self.metrics.callback_errors.inc()
                log.exception("on_stop callback %r failed", cb)
        log.info("engine stopped: %s", self._summary())

    def _summary(self) -> str:
        m = self.metrics
        return (
            f"{int(m.packets_in.value)} packets in {int(m.batches_in.value)} batches, "
            f"{int(m.dropped_packets.value)} dropped, {int(m.periods.value)} period reset(s)"
        )

    # -- threads ---------------------------------------------------------------------------------------

    def _spawn(self, key: str, target: Callable[..., None], *args: Any) -> None:
        with self._sched_cond:
            self._sched_state[key] = None  # busy until it first sleeps: settle() waits for it
        th = threading.Thread(
            target=self._scheduled, args=(key, target, *args), name=f"ns-{key}", daemon=True
        )
        self._schedulers.append(th)
        th.start()

    def _scheduled(self, key: str, target: Callable[..., None], *args: Any) -> None:
        try:
            target(key, *args)
        finally:
            with self._sched_cond:
                self._sched_state.pop(key, None)
                self._sched_cond.notify_all()

    def _sleep_until(self, key: str, deadline_ns: int) -> bool:
        """Sleep until ``deadline_ns`` on the clock; True if the manager is stopping."""
        with self._sched_cond:
            self._sched_state[key] = deadline_ns
            self._sched_cond.notify_all()
        stopped = self.clock.wait_until(deadline_ns, self._stop_evt)
        with self._sched_cond:
            self._sched_state[key] = None
            self._sched_cond.notify_all()
        return stopped

    def _next_deadline(self, deadline: int, step: int) -> int:
        # A late tick (a long pause, or a ManualClock jump) runs once, then the schedule continues
        # from the next multiple: no burst of catch-up snapshots or empty periods.
        now = self.clock.monotonic_ns()
        deadline += step
        if deadline <= now:
            deadline += ((now - deadline) // step + 1) * step
        return deadline

    def _worker(self, index: int) -> None:
        tasks = self._all_tasks
        while True:
            work = self._queue.next_work()
            if work is None:
                return
            lane, entry = work
            leaving = True  # until the batch is applied: an exception ends this thread
            try:
                with self._barrier.shared():
                    self._update(tasks[lane], entry.batch, block=True)
                if self._clock_batches:
                    self._last_apply_ns = self.clock.monotonic_ns()
                leaving = False
            finally:
                self._queue.done(lane, entry, leaving=leaving)

    def _apply(self, batch: PacketBatch, order: list[EngineTask]) -> None:
        """Apply ``batch`` to every task of ``order`` in the caller's thread (inline mode)."""
        for task in order:
            self._update(task, batch, block=True)

    def _update(self, task: EngineTask, batch: PacketBatch, *, block: bool) -> bool:
        try:
            took = task.update(batch, block=block)
        except Exception:
            # A failing task loses this batch (counted); the worker and the other tasks go on.
            self.metrics.task_errors.inc(task.name)
            self._error_log.log(logging.ERROR, "task %s: update failed", task.name, exc_info=True)
            return True
        if took is None:
            return False
        self.metrics.task_update_seconds.inc(task.name, took)
        self.metrics.task_update_batches.inc(task.name)
        return True

    def _snapshotter(
        self, key: str, t0: int, interval_s: float, group: TaskGroup, writer: ResilientWriter
    ) -> None:
        step = max(1, round(interval_s * 1e9))
        deadline = t0 + step
        while not self._sleep_until(key, deadline):
            with self._barrier.shared():
                for t in group.tasks:
                    if t.incremental:
                        self._tick(t)
                with self._snap_order:
                    meta = SnapshotMeta(self.clock.time_ns(), self._period_start_ns, False)
                    snaps = [(t, self._snap(t, reset=t.incremental)) for t in group.tasks]
            for t, snap in snaps:
                if snap is None:
                    continue
                if t.incremental:  # an increment: every writer of the group gets it, now
                    for g, _, rw in self._writers:
                        if g is group:
                            self._deliver(group, rw, snap, meta)
                else:
                    self._deliver(group, writer, snap, meta)
                self._notify(group, snap, meta)
            deadline = self._next_deadline(deadline, step)

    def _period_loop(self, key: str, t0: int, period_s: float) -> None:
        step = max(1, round(period_s * 1e9))
        deadline = t0 + step
        while not self._sleep_until(key, deadline):
            if self._close_period(None, internal=True) is None:
                return  # the caller took the periods over (take_over_periods)
            deadline = self._next_deadline(deadline, step)

    def take_over_periods(self, period_start_ns: int) -> None:
        """Make the caller the owner of period ends on a started manager (see :meth:`start`'s
        ``external_periods``), and set the current period's start to ``period_start_ns``.

        Meant to be called before anything was submitted: snapshots already handed to writers keep
        the period start they were taken under. The period thread, if any, ends at its next wake-up
        without resetting anything."""
        with self._barrier.exclusive():
            self._external_periods = True
            self._period_start_ns = int(period_start_ns)

    def end_period(self, next_start_ns: int | None = None) -> int:
        """End the current period now: every task's final snapshot and reset as one step (as the period
        thread does), the finals handed to every writer and callback; returns the new period's start
        (``next_start_ns``, default now). Wait for :meth:`flush` first to have every submitted batch
        in the ending period. Returns when the finals are handed out, not yet written: see
        :meth:`ResilientWriter.flush`."""
        start = self._close_period(next_start_ns, internal=False)
        assert start is not None
        return start

    def _close_period(self, next_start_ns: int | None, *, internal: bool) -> int | None:
        # Every task must stand at the same batch: let the lanes catch up with what was submitted so
        # far (later batches wait for the new period), then snapshot and reset with nothing applying.
        self._queue.cut()
        try:
            with self._barrier.exclusive():
                if internal and self._external_periods:
                    return None
                for t in self._all_tasks:
                    if t.incremental:
                        self._tick(t)
                now = self.clock.time_ns()
                meta = SnapshotMeta(now, self._period_start_ns, True)
                finals = [(g, t, self._snap(t, reset=True)) for g in self.groups for t in g.tasks]
                self._period_start_ns = now if next_start_ns is None else int(next_start_ns)
                start = self._period_start_ns
                for t in self._all_tasks:
                    if t.incremental:
                        self._begin_period(t, start)
        finally:
            self._queue.release()
        self.metrics.periods.inc()
        self._hand_out(finals, meta)
        return start

    def _tick(self, task: EngineTask) -> None:
        if not self.idle_clock:
            return
        quiet = max(0, self.clock.monotonic_ns() - self._last_apply_ns)
        try:
            task.tick(quiet)
        except Exception:
            self.metrics.task_errors.inc(task.name)
            log.exception("task %s: tick failed", task.name)

    def _begin_period(self, task: EngineTask, start_ns: int) -> None:
        try:
            task.begin_period(start_ns)
        except Exception:
            self.metrics.task_errors.inc(task.name)
            log.exception("task %s: begin_period failed", task.name)

    def _finish(self, task: EngineTask, reason: str) -> None:
        try:
            task.finish(reason)
        except Exception:
            self.metrics.task_errors.inc(task.name)
            log.exception("task %s: finish failed", task.name)

    def _unread(self, group: TaskGroup) -> bool:
        """Whether a final snapshot of ``group``'s tasks reaches no one: the group has no writer and no
        snapshot callback is registered (``analyze`` without ``--out`` or ``--store``)."""
        return not self.on_snapshot and not any(g is group for g, _, _ in self._writers)

    def _snap(self, task: EngineTask, reset: bool = False, unread: bool = False) -> Any:
        """``task``'s snapshot (``None`` if it failed, logged and counted); ``unread`` (with ``reset``): no
        one will read it, the task only hands its state out (:meth:`EngineTask.discard`), ``None``."""
        try:
            with self.metrics.snapshot_seconds.get(task.name).time():
                if reset and unread and task.incremental:
                    task.discard()
                    snap = None
                else:
                    snap = task.snapshot(reset=reset)
        except Exception:
            self.metrics.task_errors.inc(task.name)
            log.exception("task %s: snapshot failed", task.name)
            return None
        self.metrics.snapshots_taken.inc(task.name)
        return snap

    def _hand_out(self, finals: list[tuple[TaskGroup, EngineTask, Any]], meta: SnapshotMeta) -> None:
        """Give each final snapshot to every writer of its group, then to the callbacks."""
        for group, _, snap in finals:
            if snap is None:
                continue
            for g, _, rw in self._writers:
                if g is group:
                    self._deliver(group, rw, snap, meta)
            self._notify(group, snap, meta)

    def _deliver(self, group: TaskGroup, writer: ResilientWriter, snap: Any, meta: SnapshotMeta) -> None:
        try:
            group.deliver(writer, snap, meta)
        except Exception:  # a ResilientWriter only buffers; this is a bug in a plugin's deliver
            log.exception("group %s: delivering a snapshot to %s failed", group.name, writer.name)

    def _notify(self, group: TaskGroup, snap: Any, meta: SnapshotMeta) -> None:
        for cb in self.on_snapshot:
            try:
                cb(group.name, snap, meta)
            except Exception:
                self.metrics.callback_errors.inc()
                log.exception("on_snapshot callback %r failed", cb)
