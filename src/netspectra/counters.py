"""Counters, timings and rate-limited logs: the primitives every service's metrics are made of.

Plain thread-safe numbers, read into dicts by their owners (the engine's :class:`~netspectra.engine.
metrics.EngineMetrics`, the probe's and the collector's stats) and exported to Prometheus by
:mod:`netspectra.ops`. Importing this module costs nothing beyond the standard library, so any layer
(transport, capture, alerting) can count without loading the engine.

Every counter only grows, so a reader computes rates by differencing two reads. Threading: every method
may be called from any thread at any time; one lock per object keeps an increment at one uncontended
lock acquisition, noise next to a batch update (thousands of packets).
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
