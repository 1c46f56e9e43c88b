"""The bounded queue every hand-over between threads uses: back-pressure, or counted drops.

:class:`BoundedQueue` is a FIFO bounded in *units* (packets, batches — what ``units(item)`` says).
A producer either waits for room (``block=True``: back-pressure, never a loss) or has the item refused
when there is none (``block=False``: counted in :attr:`BoundedQueue.dropped_items` /
:attr:`BoundedQueue.dropped_units` and logged with a rate limit — the rule that nothing is lost
silently). An empty queue admits any item, whatever its size, so nothing is too big to pass.
:meth:`BoundedQueue.close` refuses further items; consumers get what was accepted, then ``None``.

Used by the probe's publisher (capture thread → NATS), the live capture's sockets (reader threads →
the iterating thread) and the persistence writers (probe → files).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from netspectra.counters import RateLimitedLog

T = TypeVar("T")


class BoundedQueue(Generic[T]):
    """A FIFO of at most ``capacity`` units (see the module docstring); thread-safe.

    ``name`` and ``logger`` word the drop messages (``"<name> full (N units): dropped ..."``);
    ``unit`` names a unit in them (``packets``).
    """

    def __init__(
        self,
        capacity: int,
        *,
        units: Callable[[T], int] = lambda _item: 1,
        name: str = "queue",
        unit: str = "items",
        logger: logging.Logger | None = None,
        log_interval_s: float = 10.0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = int(capacity)
        self.name = name
        self.unit = unit
        self._units = units
        self._items: deque[tuple[T, int]] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closed = False
        self.dropped_items = 0
        self.dropped_units = 0
        self._logger = logger or logging.getLogger(__name__)
        self._drop_log = RateLimitedLog(self._logger, log_interval_s)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_units(self) -> int:
        """Units waiting in the queue."""
        return self._queued

    @property
    def closed(self) -> bool:
        return self._closed

    def _fits(self, n: int) -> bool:
        return not self._items or self._queued + n <= self.capacity

    def put(
        self,
        item: T,
        *,
        block: bool = True,
        timeout: float | None = None,
        abort: threading.Event | None = None,
    ) -> bool:
        """Queue ``item``; True if accepted. Without room: ``block`` waits (until ``timeout`` seconds,
        or until ``abort`` is set), else the item is dropped, counted and logged. A closed queue, or an
        ``abort`` set while waiting, refuses the item without counting a drop (the producer is stopping)."""
        n = self._units(item)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed and not self._fits(n):
                if not block or (abort is not None and abort.is_set()):
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                # wake up now and then to look at ``abort``, which nobody notifies us of
                self._cond.wait(0.2 if left is None else min(left, 0.2))
            if self._closed or (abort is not None and abort.is_set() and not self._fits(n)):
                return False  # nothing is accepted any more, or the producer gave up: not a drop
            if not self._fits(n):
                self.dropped_items += 1
                self.dropped_units += n
                dropped = self.dropped_units
            else:
                self._items.append((item, n))
                self._queued += n
                self._cond.notify_all()
                return True
        self._drop_log.log(
            logging.WARNING,
            "%s full (%d %s): dropped one of %d %s; %d %s dropped so far",
            self.name,
            self.capacity,
            self.unit,
            n,
            self.unit,
            dropped,
            self.unit,
        )
        return False

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item; ``None`` once the queue is closed and empty (or after ``timeout`` seconds
        without an item: check :attr:`closed` to tell the two apart)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return None
            item, n = self._items.popleft()
            self._queued -= n
            self._cond.notify_all()
            return item

    def take(self, max_units: int, timeout: float | None = None) -> list[T] | None:
        """Every item up to ``max_units`` (at least one) in order; ``[]`` after ``timeout`` seconds
        without an item; ``None`` once the queue is closed and empty."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return []
            if not self._items:
                return None
            out: list[T] = []
            total = 0
            while self._items and (not out or total + self._items[0][1] <= max_units):
                item, n = self._items.popleft()
                total += n
                out.append(item)
            self._queued -= total
            self._cond.notify_all()
            return out

    def close(self) -> None:
        """Refuse further items; waiting producers return False, consumers drain then get ``None``.
        If anything was dropped, one last line gives the totals (the rate limit may have hidden some)."""
        with self._cond:
            first = not self._closed
            self._closed = True
            self._cond.notify_all()
        if first and self.dropped_items:
            self._logger.warning(
                "%s: %d %s dropped in all (%d refused while full)",
                self.name,
                self.dropped_units,
                self.unit,
                self.dropped_items,
            )
