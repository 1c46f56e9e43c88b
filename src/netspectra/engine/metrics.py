"""The engine's counters, read as one dict (Prometheus: :mod:`netspectra.ops`).

Built from the primitives of :mod:`netspectra.counters` (re-exported here for older imports).
Every counter only grows (except the gauges, which are read from their owner when the dict is built),
so a reader can compute rates by differencing two :meth:`EngineMetrics.as_dict` results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netspectra.counters import (
    DEFAULT_TIME_BUCKETS,
    Counter,
    LabeledCounter,
    LabeledTiming,
    RateLimitedLog,
    Timing,
)

__all__ = [
    "DEFAULT_TIME_BUCKETS",
    "Counter",
    "EngineMetrics",
    "LabeledCounter",
    "LabeledTiming",
    "RateLimitedLog",
    "Timing",
    "WriterMetrics",
]


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
        # Each task's own counters, read from the tasks when the dict is built (task -> counter -> value).
        self.task_counters: Callable[[], dict[str, dict[str, Any]]] = dict

    def writer(self, name: str) -> WriterMetrics:
        """The counters of writer ``name``, created on first use."""
        w = self.writers.get(name)
        if w is None:
            w = self.writers[name] = WriterMetrics(name)
        return w

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able copy of every counter::

        packets_in, batches_in, bytes_in      accepted by submit(); weighted rows (flow exports) count
                                              as the packets and bytes they stand for, as the tasks do
        dropped_batches, dropped_packets      refused by a non-blocking or timed-out submit()
        queue_batches, queue_packets          waiting now; queue_capacity_packets: the bound
        periods                               period resets done
        task_update_seconds {task: s}         time spent in each task's update (all threads)
        task_update_batches {task: n}         batches applied to each task
        task_errors {task: n}                 updates that raised (the batch is lost for that task)
        snapshots_taken {task: n}             snapshots taken of each task (periodic and final)
        task_counters {task: {...}}           the tasks' own counters: missing_key_rows {field: rows}
                                              (rows of batches without a key field, counted under its
                                              unknown value), empty_rows (weighted rows of 0 packets)
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
            "task_counters": self.task_counters(),
            "callback_errors": int(self.callback_errors.value),
            "writers": {name: w.as_dict() for name, w in sorted(self.writers.items())},
        }
