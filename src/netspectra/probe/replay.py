"""Replay capture files as a stream of :class:`~netspectra.batch.PacketBatch` (the probe's file source).

``speed=None`` (or 0): as fast as the reader goes. ``speed=1.0``: at the pace the packets were
recorded; ``speed=k``: k times faster. Pacing cuts batches into slices of at most ``tick_s`` seconds
of wall time and releases each slice when its first packet is due (timestamps are made monotone with
a running maximum, so a packet recorded out of order never makes the replay wait backwards). Idle
gaps in the trace are waited out, capped at ``max_gap_s`` each (``None``: not capped).

:class:`ReplaySource` is the replay as a :class:`~netspectra.batch.BatchSource` (``stats``, ``stop()``,
``close()``); :func:`replay_files` is the same iteration as a plain generator.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.capture.reader import CaptureReader
from netspectra.capture.stats import CaptureStats

__all__ = ["ReplaySource", "ReplayStats", "pace", "replay_files"]

DEFAULT_REPLAY_BATCH = 65_536


def replay_files(
    paths: Sequence[str | PathLike[str]],
    *,
    speed: float | None = None,
    batch_size: int = DEFAULT_REPLAY_BATCH,
    tick_s: float = 0.01,
    max_gap_s: float | None = None,
    readers: list[CaptureReader] | None = None,
    extras: bool = False,
) -> Iterator[PacketBatch]:
    """The batches of ``paths`` in order, paced by ``speed`` (see the module docstring).

    ``readers``, when given, receives each :class:`CaptureReader` as it is opened (for its ``stats``).
    ``extras``: the batches carry the decoder's optional columns (see :class:`CaptureReader`).
    Capture damage raises :class:`~netspectra.capture.errors.CaptureError` after the packets before it.
    """

    def batches() -> Iterator[PacketBatch]:
        for p in paths:
            reader = CaptureReader(p, batch_size=batch_size, extras=extras)
            if readers is not None:
                readers.append(reader)
            yield from reader

    if not speed:
        yield from batches()
    else:
        yield from pace(batches(), speed, tick_s=tick_s, max_gap_s=max_gap_s)


@dataclass
class ReplayStats:
    """Counters of a replay: ``files`` opened so far, and their readers' :class:`CaptureStats` merged
    (``capture``); ``batches``/``packets`` handed out."""

    files: int = 0
    batches: int = 0
    packets: int = 0
    capture: CaptureStats = field(default_factory=CaptureStats)

    def as_dict(self) -> dict[str, Any]:
        c = self.capture
        return {
            "files": self.files,
            "batches": self.batches,
            "packets": self.packets,
            "records": c.records,
            "ip_packets": c.ip_packets,
            "wire_bytes": c.wire_bytes,
            "skipped": c.skipped,
            "truncated": c.truncated,
        }


class ReplaySource:
    """Capture files replayed as a :class:`~netspectra.batch.BatchSource` (see the module docstring).

    Iterating yields the batches of every file in order, paced by ``speed`` (``None``/0: as fast as the
    reader goes); capture damage raises :class:`~netspectra.capture.errors.CaptureError` after every
    batch before it. :meth:`stop` (any thread) ends the iteration at the next batch, also during a
    pacing wait; :meth:`close` stops and releases the open reader. ``stats`` is current at any time.
    """

    def __init__(
        self,
        paths: Sequence[str | PathLike[str]],
        *,
        speed: float | None = None,
        batch_size: int = DEFAULT_REPLAY_BATCH,
        tick_s: float = 0.01,
        max_gap_s: float | None = None,
        extras: bool = False,
    ) -> None:
        if speed is not None and speed < 0:
            raise ValueError(f"speed must not be negative, got {speed}")
        self.paths = list(paths)
        self.speed = speed or None
        self.batch_size = batch_size
        self.tick_s = tick_s
        self.max_gap_s = max_gap_s
        self.extras = extras  # the decoder's optional columns (see CaptureReader), for flows tasks
        self._readers: list[CaptureReader] = []
        self._done = CaptureStats()  # the readers already finished, merged
        self._stop = threading.Event()
        self._iterated = False
        self._counts = [0, 0]  # batches, packets

    @property
    def stats(self) -> ReplayStats:
        capture = CaptureStats().merge(self._done)
        if self._readers:
            capture.merge(self._readers[-1].stats)
        return ReplayStats(len(self._readers), self._counts[0], self._counts[1], capture)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()

    def _batches(self) -> Iterator[PacketBatch]:
        for p in self.paths:
            if self._readers:
                self._done.merge(self._readers[-1].stats)
            reader = CaptureReader(p, batch_size=self.batch_size, extras=self.extras)
            self._readers.append(reader)
            for batch in reader:
                if self._stop.is_set():
                    return
                yield batch

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def __iter__(self) -> Iterator[PacketBatch]:
        if self._iterated:
            raise RuntimeError("a ReplaySource can be iterated once")
        self._iterated = True
        batches: Iterable[PacketBatch] = self._batches()
        if self.speed:
            batches = pace(
                batches, self.speed, tick_s=self.tick_s, max_gap_s=self.max_gap_s, sleep=self._sleep
            )
        for batch in batches:
            if self._stop.is_set():
                return
            self._counts[0] += 1
            self._counts[1] += len(batch)
            yield batch


def pace(
    batches: Iterable[PacketBatch],
    speed: float,
    *,
    tick_s: float = 0.01,
    max_gap_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[PacketBatch]:
    """Release the packets of ``batches`` at ``speed`` × their recorded pace, in slices of ≤ ``tick_s``."""
    if speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    step_ns = max(1, int(tick_s * speed * 1e9))  # trace time per slice
    gap_ns = None if max_gap_s is None else int(max_gap_s * speed * 1e9)
    t0_trace: int | None = None
    t0_wall = 0.0
    shift = 0  # trace time removed by capped gaps
    last = None
    for batch in batches:
        n = len(batch)
        if n == 0:
            continue
        ts = np.maximum.accumulate(batch.ts_ns)
        if last is not None:
            ts = np.maximum(ts, last)
        if t0_trace is None:
            t0_trace, t0_wall = int(ts[0]), clock()
        lo = 0
        while lo < n:
            first = int(ts[lo])
            if gap_ns is not None and last is not None and first - last > gap_ns:
                shift += first - last - gap_ns
            hi = int(np.searchsorted(ts, first + step_ns, side="left"))
            hi = max(hi, lo + 1)
            due = t0_wall + (first - shift - t0_trace) / (speed * 1e9)
            wait = due - clock()
            if wait > 0:
                sleep(wait)
            yield (batch if (lo == 0 and hi == n) else batch.slice(lo, hi))
            last = int(ts[hi - 1])
            lo = hi
