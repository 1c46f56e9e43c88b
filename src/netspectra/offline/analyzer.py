"""Offline analysis: capture files → columnar batches → every configured task, in one process.

This is the library form of ``netspectra analyze`` (the original's ``pcap-analyzer``); the CLI
only adds printing and files. Damage in a capture never loses what came before it: the packets
before the damaged record are counted, the error is kept in :attr:`AnalysisResult.errors`, and
the next file is read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from netspectra.batch import PacketBatch
from netspectra.capture.errors import CaptureError
from netspectra.capture.reader import CaptureReader
from netspectra.capture.stats import CaptureStats

log = logging.getLogger(__name__)


class BatchTask(Protocol):
    """What the analyzer needs of a task: a name and a batch update."""

    name: str

    def update(self, batch: PacketBatch) -> None: ...


@dataclass
class FileResult:
    """What one capture file gave: its statistics and, if it is damaged, the error."""

    path: Path
    stats: CaptureStats
    error: CaptureError | None = None
    format: str = ""
    compressed: bool = False


@dataclass
class AnalysisResult:
    """The outcome of :func:`analyze_files`. Tasks hold the flow state; this holds the accounting."""

    files: list[FileResult] = field(default_factory=list)
    stats: CaptureStats = field(default_factory=CaptureStats)
    elapsed_s: float = 0.0
    #: ``analyze --flow-export``: the collector's accounting (:func:`netspectra.collect.offline.
    #: export_summary`); None for packet captures.
    flow_export: dict[str, Any] | None = None

    @property
    def errors(self) -> list[CaptureError]:
        return [f.error for f in self.files if f.error is not None]

    @property
    def packets_per_second(self) -> float:
        return self.stats.records / self.elapsed_s if self.elapsed_s > 0 else 0.0


ProgressCallback = Callable[[int], None]
"""Called with the number of bytes of the current file consumed so far."""


def analyze_files(
    paths: Sequence[Path],
    tasks: Sequence[BatchTask],
    *,
    batch_size: int = 262_144,
    on_file_start: Callable[[Path, int], None] | None = None,
    progress: ProgressCallback | None = None,
    extras: bool = False,
    ramp: bool = False,
) -> AnalysisResult:
    """Read every capture in ``paths`` in order and feed every batch to every task.

    A :class:`CaptureError` (missing file, unknown format, damage) is recorded in the result
    for that file after all of its packets before the damage went to the tasks; the other files
    are still read. ``on_file_start(path, size_bytes)`` and ``progress(bytes_done)`` drive a
    progress display. ``extras``: decode the optional columns too; ``ramp``: smaller batches at both
    ends of each file, for tasks applied on other threads (both: see
    :class:`~netspectra.capture.reader.CaptureReader`).
    """
    result = AnalysisResult()
    t0 = time.perf_counter()
    for path in paths:
        path = Path(path)
        reader: CaptureReader | None = None
        fr = FileResult(path=path, stats=CaptureStats())
        try:
            reader = CaptureReader(path, batch_size=batch_size, progress=progress, extras=extras, ramp=ramp)
            fr.format, fr.compressed = reader.format, reader.compressed
            if on_file_start is not None:
                on_file_start(path, reader.total_bytes)
            for batch in reader:
                for task in tasks:
                    task.update(batch)
        except CaptureError as exc:
            fr.error = exc
            log.debug("capture error in %s: %s", path, exc)
        if reader is not None:
            fr.stats = reader.stats
        result.files.append(fr)
        result.stats.merge(fr.stats)
    result.elapsed_s = time.perf_counter() - t0
    return result
