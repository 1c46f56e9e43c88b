"""The one bounded hand-over queue: back-pressure or counted drops, close semantics, no silent loss."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from netspectra.bounded import BoundedQueue


def test_units_bound_and_an_empty_queue_admits_anything() -> None:
    q: BoundedQueue[int] = BoundedQueue(10, units=lambda n: n)
    assert q.put(100, block=False)  # too big, but the queue is empty
    assert not q.put(1, block=False)
    assert (q.dropped_items, q.dropped_units) == (1, 1)
    assert q.get() == 100 and q.queued_units == 0
    assert q.put(6, block=False) and q.put(4, block=False) and not q.put(1, block=False)
    assert q.take(100) == [6, 4]


def test_blocking_put_waits_for_room_and_loses_nothing() -> None:
    q: BoundedQueue[int] = BoundedQueue(2)
    got: list[int] = []

    def consume() -> None:
        while (item := q.get()) is not None:
            got.append(item)
            time.sleep(0.001)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(200):
        assert q.put(i)
    q.close()
    t.join(5)
    assert got == list(range(200)) and q.dropped_items == 0


def test_timeout_drops_abort_does_not_count_and_close_refuses(caplog: pytest.LogCaptureFixture) -> None:
    q: BoundedQueue[str] = BoundedQueue(1, name="test queue", unit="batches")
    assert q.put("a")
    with caplog.at_level(logging.WARNING):
        assert not q.put("b", timeout=0.05)
    assert q.dropped_items == 1 and "test queue full (1 batches)" in caplog.text
    stop = threading.Event()
    stop.set()
    assert not q.put("c", abort=stop) and q.dropped_items == 1  # the producer gave up: not a drop
    q.close()
    assert not q.put("d", block=False) and q.dropped_items == 1
    assert "test queue: 1 batches dropped in all" in caplog.text
    assert q.get() == "a" and q.get() is None and q.take(10) is None


def test_take_returns_empty_on_timeout() -> None:
    q: BoundedQueue[int] = BoundedQueue(4)
    assert q.take(10, timeout=0.01) == []
