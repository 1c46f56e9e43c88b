"""Growable uint64 storage for the exact task's rows: resized in place, paid for only where written.

:class:`GrowableWords` keeps its words in an anonymous private memory mapping. Two properties make it
the right home for rows that are appended and never move:

* pages are backed by memory only once written, so capacity ahead of the flows costs address space,
  not resident memory (the mapping is zero-filled by the kernel on first touch);
* growing or shrinking is ``mremap`` (:meth:`mmap.mmap.resize`): the kernel moves page tables, never
  the data, so growth needs neither a copy nor the old and new arrays alive together — no transient
  doubling of the resident set, whatever the size.

Where the platform has no anonymous mappings or no ``mremap``, or where a view of the array is still
held elsewhere (a resize would pull the memory from under it), it falls back to a fresh mapping (or
numpy array) and a copy: slower and with a transient peak, but never wrong.
"""

from __future__ import annotations

import logging
import mmap

import numpy as np

from netspectra.hugepages import advise_huge_pages

log = logging.getLogger(__name__)

_ANONYMOUS = hasattr(mmap, "MAP_ANONYMOUS") and hasattr(mmap, "MAP_PRIVATE")


class GrowableWords:
    """A zero-initialised uint64 array of ``words`` words whose size can change without a copy.

    :attr:`array` is the current view (replaced by :meth:`resize`; do not keep it across a resize).
    ``huge``: the mapping is advised for transparent huge pages (:mod:`netspectra.hugepages`) — for
    words read and written at random (the rollup tables' epochs, prefetched for every row: with 4 KB
    pages most of those prefetches also miss the TLB), not for rows appended in order (below).
    Not thread-safe: its owner serialises calls (the exact task has one updater at a time).
    """

    def __init__(self, words: int, *, huge: bool = False) -> None:
        self._huge = huge
        self._mm: mmap.mmap | None = None
        self.array: np.ndarray = self._allocate(words)

    @property
    def nbytes(self) -> int:
        """Bytes of the mapping (address space; resident only where written)."""
        return int(self.array.nbytes)

    def resize(self, words: int) -> None:
        """Make the array ``words`` long: the first ``min(old, words)`` words keep their values, new
        words read as zero. If it raises (no memory), the array is as it was."""
        words = max(int(words), 1)
        old_words = self.array.shape[0]
        if words == old_words:
            return
        if self._mm is not None:
            self.array = np.empty(0, np.uint64)  # drop our view: mremap needs no exported buffers
            try:
                self._mm.resize(words * 8)
            except (BufferError, OSError, SystemError, ValueError) as exc:
                log.debug("in-place resize of %d words failed (%s); copying", words, exc)
                self.array = np.frombuffer(self._mm, np.uint64)
            else:
                self.array = np.frombuffer(self._mm, np.uint64)
                # A shrink keeps the rest of its last page: clear what was beyond the old end there.
                page_end = -(-old_words * 8 // mmap.PAGESIZE) * mmap.PAGESIZE // 8
                self.array[old_words:page_end] = 0
                return
        old = self.array
        new = self._allocate(words)
        keep = min(old_words, words)
        new[:keep] = old[:keep]
        self.array = new

    def _allocate(self, words: int) -> np.ndarray:
        words = max(int(words), 1)
        if not _ANONYMOUS:
            self._mm = None
            return np.zeros(words, np.uint64)
        # Not advised by default (numpy advises its own large arrays): where transparent huge pages are
        # "madvise" only, an advised region pays direct compaction on its page faults. Rows are
        # written once, in order, so they fault all along the run: on a 2-core VM with a busy page
        # cache that cost 30-48 ns per packet at 5 M flows, against 10-20 for 4 KiB pages and their
        # extra TLB misses (benchmarks/RESULTS.md). Where THP is "always" the kernel still uses them.
        # ``huge`` (words read at random) is advised; mremap keeps the advice with the mapping.
        self._mm = mmap.mmap(-1, words * 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if self._huge:
            advise_huge_pages(self._mm)
        return np.frombuffer(self._mm, np.uint64)
