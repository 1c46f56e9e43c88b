"""Task groups: the tasks of one aggregator type and the writers that serve only that group.

A :class:`TaskGroup` is what an aggregator kind (``exact``, ``sketch``, or a plugin's;
:mod:`netspectra.engine.kind`) builds from the configuration: its tasks, each wrapped in an
:class:`EngineTask` that states how the engine may call it from several threads, its writers, and a
``deliver`` function that hands one of its snapshots to one of its writers. The manager feeds every
batch to every task of every group, but a group's snapshots only ever go to that group's writers: an
exact writer never sees sketch data and vice versa.

Two adapters cover the two concurrency contracts a task can have:

* :class:`LockedTask` — the task is not thread-safe (:class:`~netspectra.tasks.exact.ExactTask`):
  the adapter's lock gives it one caller at a time, and snapshot-then-reset happens under that lock.
* :class:`ConcurrentTask` — the task serialises itself and has an atomic ``snapshot(reset=True)``
  (:class:`~netspectra.sketches.base.SketchTask`, which encodes keys outside its lock, so several
  threads can encode batches for it in parallel).

Plugins wrap their tasks in whichever adapter matches their task's contract.

Records tasks (incremental snapshots and the clock)
---------------------------------------------------

Most tasks hold *state* (counters since the period began): every snapshot is the whole state, and a
later one supersedes an earlier one. A task whose output is *records that end* — flow records — is
different, and says so with ``incremental = True`` (:class:`RecordsTask` is the adapter):

* its snapshots are **increments**: ``snapshot(reset=True)`` hands out the records that ended since the
  previous such call and forgets them; ``snapshot(reset=False)`` shows the waiting ones without taking
  them (alerting, queries). The manager takes every snapshot of such a task with ``reset=True`` and
  gives each to **every** writer of the group — the periodic snapshot of any writer, the period's end
  and the final one alike — so every writer gets every record exactly once, whatever the writers'
  intervals (an interval then says how soon records leave, not which ones). Snapshot objects of such
  tasks have ``incremental = True`` too, so that a writer's buffer never drops one as "superseded";
* its state also changes with time alone: before each of those snapshots the manager calls
  :meth:`EngineTask.tick` with how long the engine has gone without applying a batch (a live
  connection that goes quiet ends by the clock, without any further packet);
* when the engine stops, :meth:`EngineTask.finish` turns what is still open into records
  (``end_of_input`` when the input ended, ``shutdown`` otherwise) before the final snapshot;
* after a period's final snapshot (taken, like every one of theirs, with ``reset=True``),
  :meth:`EngineTask.begin_period` tells it that a new period begins, so that a task whose rows carry
  their period (the rollups) starts the new one from nothing.

``tick``, ``finish`` and ``begin_period`` are no-ops for other tasks.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from netspectra.kinds import WRITERS, KindError

if TYPE_CHECKING:
    from netspectra.batch import PacketBatch
    from netspectra.config.aggregator import WriterConfig
    from netspectra.storage.base import SnapshotMeta

log = logging.getLogger(__name__)

#: ``deliver(writer, snapshot, meta)``: hand one snapshot of a group's task to one of its writers.
Deliver = Callable[[Any, Any, "SnapshotMeta"], None]


class EngineTask(ABC):
    """A task as the engine drives it. Every method may be called from any thread.

    Contract: :meth:`update` accounts a whole batch or, if it raises, nothing that a later snapshot
    could see half of is promised (the task's own contract decides). :meth:`snapshot` with
    ``reset=True`` returns the state and empties the task *atomically*: every packet of every
    update is in exactly one of the returned snapshot or the task's state afterwards (the original's
    bug 4 lost the packets that arrived between its snapshot and its independent reset).
    """

    #: Snapshots are increments of ended records, not state (see the module docstring).
    incremental: bool = False

    def __init__(self, task: Any) -> None:
        self.task = task
        self.name: str = str(task.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task!r})"

    def tick(self, quiet_ns: int) -> None:
        """The engine has applied no batch for ``quiet_ns`` nanoseconds of its clock; end what time alone
        ends (called before each snapshot of an ``incremental`` task; nothing by default)."""
        return

    def finish(self, reason: str) -> None:
        """The input ended (``end_of_input``) or the engine stops (``shutdown``): turn open state into
        output before the final snapshot (nothing by default)."""
        return

    def begin_period(self, start_ns: int) -> None:
        """A new period begins at ``start_ns`` (called after the previous period's final snapshot, for
        ``incremental`` tasks; nothing by default)."""
        return

    def forget_unread(self) -> None:
        """No one will read this task's snapshots before the final one, which no one receives either (the
        engine's group has no writer and no snapshot callback, and nothing looks at the tasks while it
        runs): a task may forget, as it goes, what it would only hand out (a records task its ended
        records, counted in its summary as they end). Called once, before the first batch; nothing by
        default."""
        return

    def spill_to(self, sink: Callable[[Any], None]) -> bool:
        """Hand what the task would keep for its next snapshot to ``sink`` as it piles up, instead of keeping
        it (an ``incremental`` task's records, as parts: each in one part or one later snapshot): for a
        run whose only reader takes every increment as it comes (``analyze --out``: records streamed into
        a file). True if the task does so from now on; False (the default) if it keeps them. Called once,
        before the first batch; ``sink`` runs in the thread that applies batches."""
        return False

    def discard(self) -> None:
        """``snapshot(reset=True)`` for a snapshot no one receives (the engine's final snapshot of a group
        without writers, with no snapshot callback): the task's state afterwards is the same; a task may
        skip making what only a reader would need (a rollup task counts its rows instead of making
        them). By default the snapshot is taken and dropped."""
        self.snapshot(reset=True)

    @abstractmethod
    def update(self, batch: PacketBatch, *, block: bool = True) -> float | None:
        """Apply ``batch``; seconds spent in the task's update (:class:`LockedTask`: the wait for its lock
        excluded; :class:`ConcurrentTask`: waits on the task's own internal lock included).

        With ``block=False`` a task that another thread is updating is left alone and ``None`` is
        returned (the caller comes back to it later); with ``block=True`` it always updates.
        """

    @abstractmethod
    def snapshot(self, reset: bool = False) -> Any:
        """A consistent snapshot of the task; with ``reset`` the task is emptied in the same step."""


class LockedTask(EngineTask):
    """Adapter for a task with ``update(batch)``, ``snapshot()`` and ``reset()`` that is not thread-safe.

    One lock serialises every call, so the task has one updater at a time (updates of *different*
    tasks still run in parallel: the numba kernels release the GIL).
    """

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self._lock = threading.Lock()

    def update(self, batch: PacketBatch, *, block: bool = True) -> float | None:
        if not self._lock.acquire(blocking=block):
            return None
        try:
            t0 = time.perf_counter()
            self.task.update(batch)
            return time.perf_counter() - t0
        finally:
            self._lock.release()

    def snapshot(self, reset: bool = False) -> Any:
        with self._lock:
            snap = self.task.snapshot()
            if reset:
                self.task.reset()
        return snap


class RecordsTask(EngineTask):
    """Adapter for a task that turns packets into records that end (flow records, rollup rows):
    ``update(batch)``, ``tick(quiet_ns)``, ``finish(reason)``, ``drain()`` (the ended records, taken),
    ``peek()`` (the same, left in place) and optionally ``begin_period(start_ns)``; not thread-safe — one
    lock serialises every call, like :class:`LockedTask`. Its snapshots are increments (see the module
    docstring)."""

    incremental = True

    def __init__(self, task: Any) -> None:
        super().__init__(task)
        self._lock = threading.Lock()

    def update(self, batch: PacketBatch, *, block: bool = True) -> float | None:
        if not self._lock.acquire(blocking=block):
            return None
        try:
            t0 = time.perf_counter()
            self.task.update(batch)
            return time.perf_counter() - t0
        finally:
            self._lock.release()

    def snapshot(self, reset: bool = False) -> Any:
        with self._lock:
            return self.task.drain() if reset else self.task.peek()

    def forget_unread(self) -> None:
        with self._lock:
            forget = getattr(self.task, "forget_unread", None)  # optional
            if forget is not None:
                forget()

    def spill_to(self, sink: Callable[[Any], None]) -> bool:
        with self._lock:
            spill = getattr(self.task, "spill_to", None)  # optional
            if spill is None:
                return False
            spill(sink)
            return True

    def discard(self) -> None:
        with self._lock:
            discard = getattr(self.task, "discard", None)  # optional: a drain that makes no records
            if discard is not None:
                discard()
            else:
                self.task.drain()

    def tick(self, quiet_ns: int) -> None:
        with self._lock:
            self.task.tick(quiet_ns)

    def finish(self, reason: str) -> None:
        with self._lock:
            self.task.finish(reason)

    def begin_period(self, start_ns: int) -> None:
        begin = getattr(self.task, "begin_period", None)  # optional for a records task
        if begin is not None:
            with self._lock:
                begin(start_ns)


class ConcurrentTask(EngineTask):
    """Adapter for a task whose ``update(batch)`` is thread-safe and whose ``snapshot(reset=...)`` is
    atomic (it holds its own lock). The adapter adds no lock: threads update it concurrently."""

    def update(self, batch: PacketBatch, *, block: bool = True) -> float | None:
        t0 = time.perf_counter()
        self.task.update(batch)
        return time.perf_counter() - t0

    def snapshot(self, reset: bool = False) -> Any:
        return self.task.snapshot(reset=reset)


@dataclass(frozen=True, slots=True)
class GroupWriter:
    """One writer of a group: ``name`` (unique in the engine, e.g. ``exact/clickhouse[1]``, used in
    logs and metrics), the writer object, its snapshot interval in seconds (``None``: no periodic
    snapshot, only the period-final and stop-final ones) and the configuration key it came from."""

    name: str
    writer: Any
    interval_s: float | None
    config_key: str = ""


@dataclass(frozen=True, slots=True)
class TaskGroup:
    """The tasks of one aggregator type and the writers that receive only their snapshots.

    ``deliver(writer, snapshot, meta)`` is how a snapshot of one of ``tasks`` reaches one of
    ``writers`` (the aggregator kind's :meth:`~netspectra.engine.kind.AggregatorKind.deliver`:
    ``write_flows`` for exact groups, ``write_hitters`` for sketch groups).
    Task names are unique within a group (the manager checks them across groups).
    """

    name: str
    tasks: tuple[EngineTask, ...]
    writers: tuple[GroupWriter, ...]
    deliver: Deliver

    def __post_init__(self) -> None:
        names = [t.name for t in self.tasks]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise ValueError(f"group {self.name!r}: task name(s) {', '.join(dups)} used more than once")
        wnames = [w.name for w in self.writers]
        if len(set(wnames)) != len(wnames):
            raise ValueError(f"group {self.name!r}: writer names must be unique, got {wnames}")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def without_writers(self) -> TaskGroup:
        """The same tasks with no writer (for runs that only compute, e.g. ``analyze`` without --store)."""
        return replace(self, writers=())


def build_writers(configs: Sequence[WriterConfig], group: str, errors: list[str]) -> tuple[GroupWriter, ...]:
    """The enabled writers of ``aggregator.<group>.writers``, created but not opened.

    Disabled writers are skipped with an INFO log line. A writer whose ``type`` has no implementation,
    or whose construction fails, appends an error naming its key to ``errors`` (the caller raises
    them together): unlike the original, which skipped such a writer with a warning and ran without
    storing anything, a configured-and-enabled writer that cannot exist stops the engine at start.
    A writer that exists but cannot *connect* is not an error here: opening is retried in the
    background by :class:`~netspectra.engine.resilient.ResilientWriter`.
    """
    out: list[GroupWriter] = []
    for i, wc in enumerate(configs):
        key = f"aggregator.{group}.writers[{i}]"
        if not wc.enabled:
            log.info("%s (type %s): enabled is false, skipped", key, wc.type)
            continue
        try:
            cls = WRITERS.get(wc.type).writer_class()
        except (KindError, LookupError, ValueError, TypeError, ImportError) as exc:
            errors.append(f"{key}.type: {wc.type!r} has no writer implementation: {exc}")
            continue
        try:
            writer = cls(wc, group)
        except Exception as exc:  # any construction problem is a start-up error naming the key
            errors.append(f"{key}: cannot create the {wc.type} writer: {type(exc).__name__}: {exc}")
            continue
        interval = wc.snapshot_interval.total_seconds() if wc.snapshot_interval else None
        out.append(GroupWriter(f"{group}/{wc.type}[{i}]", writer, interval, key))
    return tuple(out)
