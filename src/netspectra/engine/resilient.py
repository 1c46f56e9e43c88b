"""A fail-safe wrapper around any writer: a writer that fails never stops the engine or another writer.

:class:`ResilientWriter` puts a bounded buffer and a thread of its own in front of a writer:

* ``write_flows`` / ``write_hitters`` (and any other ``write_*`` method of the wrapped writer) only
  append to the buffer and return at once, so a slow or dead writer never blocks the engine's
  snapshotter, the period reset, or the other writers.
* The writer's thread opens the writer, then writes the buffered snapshots in order. A call that
  raises (:class:`~netspectra.storage.base.WriterError` or anything else) is retried with exponential
  back-off (``backoff_initial_s`` doubling up to ``backoff_max_s``), in that thread. ``open()``
  failures are retried the same way, so the engine starts, and buffers, while ClickHouse is down.
* When the buffer is full, one snapshot must go; it is counted in
  :attr:`~netspectra.engine.metrics.WriterMetrics.dropped` and logged (rate-limited), never silently.
  The victim is chosen to lose as little as possible. Snapshots are cumulative within a period, so
  an intermediate (non-final) snapshot for which a later one of the same task and period is
  buffered carries nothing the later one lacks: that one goes first (reason ``superseded``) — never
  an ``incremental`` one (flow records), whose records no later snapshot repeats. Else
  the oldest intermediate snapshot goes (``overflow``). Final snapshots (the complete state of a
  period) go only when nothing else is left to drop.
* :meth:`close` keeps writing and retrying until the buffer is empty or its deadline passes; what is
  left then is dropped (reason ``close``, counted and logged) and the writer is closed.

Threading: every public method may be called from any thread. The wrapped writer is only ever
called from the wrapper's own thread, one call at a time, so it needs no locking of its own.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netspectra.engine.metrics import RateLimitedLog, WriterMetrics
from netspectra.storage.base import SnapshotMeta

log = logging.getLogger(__name__)

DEFAULT_BUFFER_SIZE = 16
DEFAULT_BACKOFF_INITIAL_S = 0.5
DEFAULT_BACKOFF_MAX_S = 60.0
DEFAULT_CLOSE_TIMEOUT_S = 30.0


@dataclass(slots=True)
class _Item:
    method: str
    snap: Any
    meta: SnapshotMeta
    attempts: int = 0

    @property
    def task(self) -> str | None:
        return getattr(self.snap, "task_name", None)

    def supersedes(self, older: _Item) -> bool:
        """Whether this (later) snapshot holds everything ``older`` holds (cumulative, same period).

        Never for increments (flow records: ``incremental`` snapshots hold records no other holds)."""
        return (
            not getattr(older.snap, "incremental", False)
            and self.method == older.method
            and self.task is not None
            and self.task == older.task
            and self.meta.period_start_ns == older.meta.period_start_ns
        )


class ResilientWriter:
    """Fail-safe proxy for ``writer`` (see the module docstring).

    ``name`` identifies the writer in logs and metrics. ``buffer_size`` is the number of snapshots
    (one task's snapshot each) that may wait; ``max_attempts`` > 0 drops a snapshot after that many
    failed writes (reason ``attempts``), 0 retries it until it succeeds or the writer is closed.
    """

    def __init__(
        self,
        writer: Any,
        *,
        name: str,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        max_attempts: int = 0,
        metrics: WriterMetrics | None = None,
        log_interval_s: float = 60.0,
    ) -> None:
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be at least 1, got {buffer_size}")
        if backoff_initial_s <= 0 or backoff_max_s < backoff_initial_s:
            raise ValueError(
                f"need 0 < backoff_initial_s <= backoff_max_s, got {backoff_initial_s}, {backoff_max_s}"
            )
        self.inner = writer
        self.name = name
        self.buffer_size = buffer_size
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_attempts = max_attempts
        self.metrics = metrics or WriterMetrics(name)
        self.metrics.buffered = self.buffered
        self._cond = threading.Condition()
        self._buf: deque[_Item] = deque()
        self._in_flight: _Item | None = None
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None  # monotonic; set by begin_close()
        self._closed = False
        self._fail_log = RateLimitedLog(log, log_interval_s)
        self._drop_log = RateLimitedLog(log, log_interval_s)
        # superseded drops lose nothing: their own limiter, so they never mute a report of a real loss
        self._superseded_log = RateLimitedLog(log, log_interval_s)
        self._failures_in_row = 0

    def __repr__(self) -> str:
        return f"ResilientWriter({self.name!r}, {self.inner!r}, buffered={self.buffered()})"

    @property
    def failures_in_row(self) -> int:
        """Failed attempts (open or write) since the last success; 0 while the writer works."""
        return self._failures_in_row

    # -- the Writer interface ------------------------------------------------------------------------

    def open(self) -> None:
        """Start the writer's thread, which opens the wrapped writer (retrying). Never raises."""
        with self._cond:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run, name=f"ns-writer-{self.name}", daemon=True)
            self._thread.start()

    def write_flows(self, snap: Any, meta: SnapshotMeta) -> None:
        """Buffer ``snap`` for the wrapped writer's ``write_flows``; returns at once."""
        self._put("write_flows", snap, meta)

    def write_hitters(self, snap: Any, meta: SnapshotMeta) -> None:
        """Buffer ``snap`` for the wrapped writer's ``write_hitters``; returns at once."""
        self._put("write_hitters", snap, meta)

    def __getattr__(self, attr: str) -> Any:
        # Plugin groups deliver through their own write_* methods; buffer those the same way.
        if attr.startswith("write_") and callable(getattr(self.inner, attr, None)):
            return functools.partial(self._put, attr)
        raise AttributeError(attr)

    def close(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Write what is buffered (retrying) for at most ``timeout_s``, drop the rest, close the writer."""
        self.begin_close(timeout_s)
        self.wait_closed(timeout_s + 5.0)

    # -- control -------------------------------------------------------------------------------------

    def begin_close(self, timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Stop accepting snapshots; the thread drains the buffer until ``timeout_s`` from now.

        Returns at once (so that many writers can drain in parallel); see :meth:`wait_closed`.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._deadline = time.monotonic() + max(0.0, timeout_s)
            self._cond.notify_all()
            started = self._thread is not None
        if not started:
            # Never opened: nothing can be written; account for what was buffered.
            self._drop_remaining()

    def wait_closed(self, timeout_s: float | None = None) -> bool:
        """Wait for the thread to finish after :meth:`begin_close`; False if it is still running.

        A thread stuck inside the wrapped writer's call (e.g. a network write without timeout) is
        abandoned (it is a daemon thread) and reported.
        """
        t = self._thread
        if t is None:
            return True
        t.join(timeout_s)
        if t.is_alive():
            log.error(
                "writer %s: still busy %.0f s after close was asked; abandoned (%d snapshot(s) unwritten)",
                self.name,
                timeout_s or 0.0,
                self.buffered() + (1 if self._in_flight else 0),
            )
            return False
        return True

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything buffered so far was written or dropped; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._buf and self._in_flight is None, timeout_s)

    def buffered(self) -> int:
        """Snapshots waiting (the one being written not included)."""
        return len(self._buf)

    # -- internals -----------------------------------------------------------------------------------

    def _put(self, method: str, snap: Any, meta: SnapshotMeta) -> None:
        item = _Item(method, snap, meta)
        victim: _Item | None = None
        reason = ""
        with self._cond:
            if self._closed:
                self.metrics.dropped.inc("close")
                reason = "closed"
                victim = item
            else:
                if len(self._buf) >= self.buffer_size:
                    victim, reason = self._choose_victim(item)
                    if victim is not item:
                        self._buf.remove(victim)
                        self._buf.append(item)
                    self.metrics.dropped.inc(reason)
                else:
                    self._buf.append(item)
                self._cond.notify_all()
        if victim is not None:
            self._log_drop(victim, reason)

    def _choose_victim(self, incoming: _Item) -> tuple[_Item, str]:
        items = [*self._buf, incoming]
        for i, old in enumerate(items[:-1]):
            if not old.meta.final and any(new.supersedes(old) for new in items[i + 1 :]):
                return old, "superseded"
        for old in self._buf:
            if not old.meta.final:
                return old, "overflow"
        if not incoming.meta.final:
            return incoming, "overflow"
        return self._buf[0], "overflow"

    def _log_drop(self, item: _Item, reason: str) -> None:
        what = f"{'final' if item.meta.final else 'intermediate'} snapshot of task {item.task}"
        if reason == "superseded":
            self._superseded_log.log(
                logging.INFO,
                "writer %s: buffer full (%d), dropped an %s superseded by a later one (nothing lost)",
                self.name,
                self.buffer_size,
                what,
            )
        elif reason == "closed":
            article = "a" if item.meta.final else "an"
            self._drop_log.log(logging.WARNING, "writer %s: closed, dropped %s %s", self.name, article, what)
        else:
            self._drop_log.log(
                logging.ERROR if item.meta.final else logging.WARNING,
                "writer %s: snapshot dropped (%s): %s of period starting %d ns; %d dropped so far",
                self.name,
                "buffer full" if reason == "overflow" else reason,
                what,
                item.meta.period_start_ns,
                self.metrics.dropped_total,
            )

    def _drop_remaining(self) -> None:
        with self._cond:
            left = list(self._buf)
            self._buf.clear()
            self._cond.notify_all()
        if left:
            self.metrics.dropped.inc("close", len(left))
            log.error(
                "writer %s: %d snapshot(s) still unwritten at close (%d final), dropped",
                self.name,
                len(left),
                sum(1 for i in left if i.meta.final),
            )

    def _backoff(self) -> float:
        k = max(0, self._failures_in_row - 1)
        return min(self.backoff_max_s, self.backoff_initial_s * (2 ** min(k, 62)))

    def _sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (cut short at the close deadline); False once the deadline passed."""
        end = time.monotonic() + seconds
        with self._cond:
            while True:
                now = time.monotonic()
                limit = end if self._deadline is None else min(end, self._deadline)
                if now >= limit:
                    return not self._past_deadline()
                self._cond.wait(limit - now)

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _failed(self, what: str, exc: BaseException) -> None:
        self._failures_in_row += 1
        self._fail_log.log(
            logging.WARNING,
            "writer %s: %s failed (%d in a row, retrying in %.3g s): %s: %s",
            self.name,
            what,
            self._failures_in_row,
            self._backoff(),
            type(exc).__name__,
            exc,
        )

    def _succeeded(self) -> None:
        if self._failures_in_row:
            log.info(
                "writer %s: recovered after %d failed attempt(s); %d snapshot(s) buffered",
                self.name,
                self._failures_in_row,
                self.buffered(),
            )
        self._failures_in_row = 0

    def _open_inner(self) -> bool:
        while True:
            try:
                self.inner.open()
            except Exception as exc:  # any failure: retried, the engine keeps running
                self.metrics.open_failed.inc()
                self._failed("open", exc)
                if not self._sleep(self._backoff()):
                    return False
                continue
            self.metrics.opened = True
            self._succeeded()
            return True

    def _next_item(self) -> _Item | None:
        with self._cond:
            while not self._buf:
                if self._closed:
                    return None
                self._cond.wait()
            self._in_flight = self._buf.popleft()
            return self._in_flight

    def _done_item(self) -> None:
        with self._cond:
            self._in_flight = None
            self._cond.notify_all()

    def _write_one(self, item: _Item) -> bool:
        """Write ``item`` until it succeeds, is given up, or the close deadline passes (False)."""
        call: Callable[[Any, SnapshotMeta], None] = getattr(self.inner, item.method)
        while True:
            try:
                with self.metrics.write_seconds.time():
                    call(item.snap, item.meta)
            except Exception as exc:  # any failure: retried, never propagated to the engine
                item.attempts += 1
                self.metrics.failed.inc()
                self._failed(f"{item.method} (task {item.task})", exc)
                if self.max_attempts and item.attempts >= self.max_attempts:
                    self.metrics.dropped.inc("attempts")
                    self._log_drop(item, f"{item.attempts} failed attempts")
                    return True
                if not self._sleep(self._backoff()):
                    return False
                continue
            self.metrics.written.inc()
            self._succeeded()
            return True

    def _run(self) -> None:
        opened = False
        try:
            opened = self._open_inner()
            while opened:
                item = self._next_item()
                if item is None:
                    break
                ok = self._write_one(item)
                if not ok:  # close deadline passed while retrying: this one is lost too
                    with self._cond:
                        self._buf.appendleft(item)
                    self._done_item()
                    break
                self._done_item()
        finally:
            self._drop_remaining()
            # close() is safe after a failed open (storage contract) and frees what a half-done open made
            try:
                self.inner.close()
            except Exception as exc:  # closing is best effort; the data is already accounted for
                log.warning("writer %s: close failed: %s: %s", self.name, type(exc).__name__, exc)
            self.metrics.opened = False
