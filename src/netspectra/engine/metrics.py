"""Engine counters: plain thread-safe numbers, read as one dict (Prometheus: :mod:`netspectra.ops`).

Every counter here only grows (except the gauges, which are read from their owner when the dict is
built), so a reader can compute rates by differencing two :meth:`EngineMetrics.as_dict` results.

Threading: every method of every class here may be called from any thread at any time. One lock per
object keeps the cost of an increment at one uncontended lock acquisition, which is noise next to a
batch update (thousands of packets) or a snapshot.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

#: Upper bounds (seconds) of :class:`Timing` buckets: snapshots and writes take milliseconds to minutes.
DEFAULT_TIME_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip


class Counter:
    """A monotonically increasing number (int or float)."""

    __slots__ = ("_lock", "_value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: int | float = 0

    def inc(self, n: int | float = 1) -> None:
        """Add ``n`` (must be >= 0)."""
        with self._lock:
            self._value += n

    @property
    def value(self) -> int | float:
        return self._value


class LabeledCounter:
    """A family of counters by label (task name, writer name, reason, ...)."""

    __slots__ = ("_lock", "_values")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int | float] = {}

    def inc(self, label: str, n: int | float = 1) -> None:
        """Add ``n`` to the counter of ``label`` (created at 0 on first use)."""
        with self._lock:
            self._values[label] = self._values.get(label, 0) + n

    def touch(self, label: str) -> None:
        """Make ``label`` appear (at 0) before its first increment, so dashboards see every label."""
        with self._lock:
            self._values.setdefault(label, 0)

    def get(self, label: str) -> int | float:
        with self._lock:
            return self._values.get(label, 0)

    def as_dict(self) -> dict[str, int | float]:
        with self._lock:
            return dict(self._values)


class Timing:
    """A histogram of durations in seconds (fixed buckets, Prometheus semantics), thread-safe.

    For events that happen per snapshot or per write, never per packet. :meth:`state` gives the
    per-bucket counts (not cumulative; the last one counts what exceeds every bound), the sum and
    the count, read consistently.
    """

    __slots__ = ("_counts", "_lock", "_sum", "buckets")

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_TIME_BUCKETS) -> None:
        if list(buckets) != sorted(set(buckets)):
            raise ValueError(f"buckets must be strictly increasing, got {buckets}")
        self.buckets = tuple(float(b) for b in buckets)
        self._lock = threading.Lock()
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        """Count one event that took ``seconds`` (>= 0)."""
        i = bisect.bisect_left(self.buckets, seconds)
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    @contextlib.contextmanager
    def time(self) -> Iterator[None]:
        """Observe the wall time of the ``with`` body (also when it raises)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.observe(time.perf_counter() - t0)

    def state(self) -> tuple[list[int], float, int]:
        """``(counts per bucket + overflow, sum of seconds, count)``."""
        with self._lock:
            counts = list(self._counts)
            return counts, self._sum, sum(counts)


class LabeledTiming:
    """A family of :class:`Timing` by label (e.g. task name)."""

    __slots__ = ("_buckets", "_lock", "_values")

    def __init__(self, buckets: tuple[float, ...] = DEFAULT_TIME_BUCKETS) -> None:
        self._buckets = buckets
        self._lock = threading.Lock()
        self._values: dict[str, Timing] = {}

    def get(self, label: str) -> Timing:
        """The timing of ``label``, created empty on first use."""
        with self._lock:
            t = self._values.get(label)
            if t is None:
                t = self._values[label] = Timing(self._buckets)
            return t

    def observe(self, label: str, seconds: float) -> None:
        self.get(label).observe(seconds)

    def items(self) -> list[tuple[str, Timing]]:
        with self._lock:
            return sorted(self._values.items())


class WriterMetrics:
    """Counters of one writer, kept by its :class:`~netspectra.engine.resilient.ResilientWriter`.

    * ``written`` — snapshots the writer accepted;
    * ``failed`` — write attempts that raised (each retry of the same snapshot counts again);
    * ``dropped`` — snapshots given up, by reason: ``overflow`` (buffer full, information lost),
      ``superseded`` (buffer full, a later cumulative snapshot of the same task and period was
      buffered, so nothing was lost), ``close`` (still unwritten when the close deadline passed),
      ``attempts`` (retried ``max_attempts`` times);
    * ``open_failed`` — ``open()`` attempts that raised; ``opened`` — whether the writer is open now;
    * ``buffered`` — snapshots waiting now (a gauge read from the writer);
    * ``write_seconds`` — duration of each write call of the wrapped writer (successful or not),
      observed by whoever calls the writer (not part of :meth:`as_dict`).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.written = Counter()
        self.failed = Counter()
        self.open_failed = Counter()
        self.dropped = LabeledCounter()
        self.opened = False
        self.buffered: Callable[[], int] = lambda: 0
        self.write_seconds = Timing()

    @property
    def dropped_total(self) -> int:
        return int(sum(self.dropped.as_dict().values()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "written": int(self.written.value),
            "failed": int(self.failed.value),
            "dropped": self.dropped_total,
            "dropped_by_reason": self.dropped.as_dict(),
            "open_failed": int(self.open_failed.value),
            "opened": self.opened,
            "buffered": int(self.buffered()),
        }


class EngineMetrics:
    """Every counter of one :class:`~netspectra.engine.manager.Manager` (see :meth:`as_dict`)."""

    def __init__(self) -> None:
        self.packets_in = Counter()
        self.batches_in = Counter()
        self.bytes_in = Counter()
        self.dropped_batches = Counter()
        self.dropped_packets = Counter()
        self.periods = Counter()
        self.task_update_seconds = LabeledCounter()
        self.task_update_batches = LabeledCounter()
        self.task_errors = LabeledCounter()
        self.callback_errors = Counter()
        self.snapshots_taken = LabeledCounter()
        # duration of each task snapshot, by task (not part of as_dict; exported by netspectra.ops)
        self.snapshot_seconds = LabeledTiming()
        self.writers: dict[str, WriterMetrics] = {}
        # Gauges read from the manager's queue when the dict is built.
        self.queue_batches: Callable[[], int] = lambda: 0
        self.queue_packets: Callable[[], int] = lambda: 0
        self.queue_capacity_packets = 0

    def writer(self, name: str) -> WriterMetrics:
        """The counters of writer ``name``, created on first use."""
        w = self.writers.get(name)
        if w is None:
            w = self.writers[name] = WriterMetrics(name)
        return w

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able copy of every counter::

        packets_in, batches_in, bytes_in      accepted by submit()
        dropped_batches, dropped_packets      refused by a non-blocking or timed-out submit()
        queue_batches, queue_packets          waiting now; queue_capacity_packets: the bound
        periods                               period resets done
        task_update_seconds {task: s}         time spent in each task's update (all threads)
        task_update_batches {task: n}         batches applied to each task
        task_errors {task: n}                 updates that raised (the batch is lost for that task)
        snapshots_taken {task: n}             snapshots taken of each task (periodic and final)
        callback_errors                       on_snapshot / on_stop callbacks that raised
        writers {name: WriterMetrics.as_dict()}
        """
        return {
            "packets_in": int(self.packets_in.value),
            "batches_in": int(self.batches_in.value),
            "bytes_in": int(self.bytes_in.value),
            "dropped_batches": int(self.dropped_batches.value),
            "dropped_packets": int(self.dropped_packets.value),
            "queue_batches": int(self.queue_batches()),
            "queue_packets": int(self.queue_packets()),
            "queue_capacity_packets": int(self.queue_capacity_packets),
            "periods": int(self.periods.value),
            "task_update_seconds": self.task_update_seconds.as_dict(),
            "task_update_batches": self.task_update_batches.as_dict(),
            "task_errors": self.task_errors.as_dict(),
            "snapshots_taken": self.snapshots_taken.as_dict(),
            "callback_errors": int(self.callback_errors.value),
            "writers": {name: w.as_dict() for name, w in sorted(self.writers.items())},
        }


class RateLimitedLog:
    """Log one message per ``interval_s`` at most; the next one says how many were suppressed.

    For conditions that can repeat thousands of times a second (drops under overload, a writer
    failing on every retry): the first occurrence is logged at once, repeats within the interval are
    counted, and the next logged line carries the count, so nothing goes unreported and the log
    stays readable. Thread-safe.
    """

    def __init__(
        self, logger: logging.Logger, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last = -float("inf")
        self._suppressed = 0

    def log(self, level: int, msg: str, *args: object, exc_info: Any = None) -> bool:
        """Log ``msg % args`` unless one was logged less than ``interval_s`` ago; True if logged."""
        with self._lock:
            now = self._clock()
            if now - self._last < self._interval:
                self._suppressed += 1
                return False
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        if suppressed:
            msg = f"{msg} ({suppressed} similar message(s) suppressed since the last one)"
        self._log.log(level, msg, *args, exc_info=exc_info)
        return True
