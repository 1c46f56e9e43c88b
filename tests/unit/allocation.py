"""What numpy allocated from the sketches package while a callable ran (for memory-contract tests).

``tracemalloc.get_traced_memory()`` counts every thread's allocations: in a whole-suite run, servers
and progress-bar threads of earlier tests and numba loading cached kernels allocate meanwhile, so a
sketch would seem to take twice its size. Counting only numpy data buffers whose allocation stack passes
through ``netspectra/sketches`` measures the sketch alone.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def sketch_allocation(make: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, int]:
    """``make(*args, **kwargs)`` and the bytes of numpy buffers allocated under ``netspectra/sketches``
    meanwhile (still alive when it returned)."""
    tracemalloc.start(64)
    try:
        made = make(*args, **kwargs)
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # two passes: inclusive filters in one list match when any of them does
    numpy_buffers = snapshot.filter_traces([tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)])
    mine = numpy_buffers.filter_traces([tracemalloc.Filter(True, "*/netspectra/sketches/*", all_frames=True)])
    return made, sum(stat.size for stat in mine.statistics("filename"))
