"""The rollup task: traffic counted per time bucket (1 min, 5 min, 1 h of the traffic's own time) and per
tuple of dimension values, handed out as rows for the rollup tables.

State and output (the contract the writers and the storage rely on):

* One table per resolution (:data:`~netspectra.rollup.dims.RESOLUTIONS`) of **open entries**, one per
  (bucket, dimension tuple), each with packets and bytes counted since it opened and an ``epoch``. Rows
  of a batch go into the 1-minute table (a flow-export row spread over the buckets it overlaps); its
  increments are carried into the 5-minute and 1-hour tables before anything is handed out or closed
  (every snapshot's three resolutions hold the same totals) — not after every batch: an entry touched
  by many batches is carried once. Carrying later gives the same rows as carrying at once, except when
  a carry fills a coarser table to ``max_entries`` (its early close then depends on what was carried
  before it): while that can happen, the task carries after every batch (:meth:`RollupTask._can_defer`).
  From a period's start, while every open entry is in one minute (a capture shorter than a minute),
  the 5-minute and 1-hour tables would hold the 1-minute entries re-bucketed: they are not kept then,
  but made from the 1-minute table when that stops (:meth:`RollupTask._materialize`); the rows are the
  same. A table grows in place (:meth:`_Table.grow`).
* **Buckets close in traffic time.** The *watermark* is the newest row time seen in the period; once it
  is ``close_after`` past a bucket's end, the bucket's entries close (at the batch that moved it there):
  their final values leave with the next snapshot and the entries are forgotten (memory follows the
  traffic's recent buckets, not the length of the period). A late row for a closed bucket opens a new
  entry with a new ``epoch`` (every close of a table increments the epoch of the entries opened after
  it): the two rows add up. When a table holds ``max_entries`` entries, its oldest half of buckets
  closes early (same rule, more rows).
* **Snapshots are increments of rows** (``incremental``: :meth:`drain` hands out the entries closed since
  the previous drain and the open ones that changed, with their *cumulative* values; :meth:`peek` shows
  them without taking them). A row is identified by (period, resolution, bucket, dimension tuple,
  epoch): a later row with the same identity replaces an earlier one (the writers store them in
  ``ReplacingMergeTree`` tables), rows with different identities add up. So a retried write, a
  provisional row followed by its final value, and a JetStream successor replaying the same batches
  (the same batches open and close the same entries: closing depends on the traffic, never on the
  clock) all store each count once.
* **Periods**: :meth:`begin_period` forgets everything (the period's final snapshot took it); rows carry
  the period they were handed out in.

Time buckets are UTC; bucket ``k`` of a width ``w`` covers ``[k*w, (k+1)*w)`` ns since the epoch.
"""

from __future__ import annotations

import functools
import logging
import mmap
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.enrich.columns import SIDE_CODES, SIDE_COLUMNS
from netspectra.hugepages import advise_huge_pages
from netspectra.rollup import kernels as kern
from netspectra.rollup.codes import (
    CC_MASK,
    CC_SHIFT,
    CLASS_MASK,
    NET_DIMS,
    TUPLE_TRIGGERS,
    TUPLE_WORDS,
    SideKey,
    TupleDictionary,
)
from netspectra.rollup.dims import BY_NAME, RESOLUTIONS, Dimension
from netspectra.rollup.keyplan import CHUNK, PACKED_BITS, KeyPlan
from netspectra.rollup.layout import (
    H_DIMS,
    H_STATE,
    W_BBY,
    W_BKT,
    W_BPK,
    W_BY,
    W_PK,
    record_words,
)
from netspectra.sketches.primitives import aligned_zeros
from netspectra.tasks.exact_store import GrowableWords
from netspectra.weights import COUNT_MAX, exact_sum, sat_reduceat

log = logging.getLogger(__name__)

#: A flow-export row longer than this is counted over its last day (and counted as clamped).
MAX_SPAN_NS = 86_400 * 10**9
_INITIAL_CAPACITY = 1024
#: Records of at least this many bytes live in an anonymous mapping of their own, which a growing table
#: enlarges in place (:meth:`_Table.grow`).
_MAPPED_BYTES = 1 << 20
#: Entries :meth:`RollupTask._count` reads at a time (its scratch: 36 bytes an entry at 5 key words).
COUNT_CHUNK = 1 << 16
#: A chunk of at least this many entries has its tallies added in two threads (a thread costs ~0.1 ms).
PARALLEL_TALLY_ROWS = 1 << 14
_INT64_MIN = np.iinfo(np.int64).min
_INT64_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True)
class RollupParams:
    """A rollup task's settings: its ``dimensions`` (names of :data:`~netspectra.rollup.dims.DIMENSIONS`),
    ``close_after_ns`` (traffic time after a bucket's end before it closes) and ``max_entries`` (open
    entries per resolution)."""

    dimensions: tuple[str, ...]
    close_after_ns: int = 120 * 10**9
    max_entries: int = 1_000_000
    max_span_ns: int = MAX_SPAN_NS

    def __post_init__(self) -> None:
        for name in self.dimensions:
            if name not in BY_NAME:
                raise ValueError(f"{name!r} is not a rollup dimension")
        if len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError(f"dimensions named twice: {list(self.dimensions)}")
        if self.close_after_ns < 0 or self.max_entries < 2:
            raise ValueError("close_after must be >= 0 and max_entries >= 2")


class _Table:
    """One resolution's open entries: records of :mod:`netspectra.rollup.layout` (see
    :mod:`netspectra.rollup.kernels`)."""

    def __init__(self, words: int, cap: int, finest: bool) -> None:
        self.words = words
        self.rw = record_words(words)
        self.finest = finest
        self.epoch_counter = 0  # closes so far in the period: the epoch of entries opened now
        self.closed_upto = _INT64_MIN  # buckets <= this were closed by the watermark
        self.meta = np.zeros(kern.META_LEN, np.int64)
        self.meta[kern.M_LOW] = _INT64_MAX
        self._alloc(cap)

    def _alloc(self, cap: int) -> None:
        self._map = None
        self._epochs: GrowableWords | None = None
        self._fresh(cap)
        # the entries with increments to carry into the coarser tables (the finest table only)
        self.touched = np.zeros(cap if self.finest else 1, np.int64)

    def _fresh(self, cap: int) -> None:
        """New empty records and epochs of ``cap`` slots: in mappings of their own from
        :data:`_MAPPED_BYTES` of records on (page-aligned, so cache-line aligned, zero, growable in
        place), else small arrays."""
        if cap * self.rw * 8 >= _MAPPED_BYTES:
            self._map = mmap.mmap(-1, cap * self.rw * 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            self._views()
            self._epochs = GrowableWords(cap, huge=True)
            self.epoch = self._epochs.array.view(np.int64)
        else:
            self._views(aligned_zeros(cap * self.rw, np.uint64))
            self.epoch = np.zeros(cap, np.int64)

    def _views(self, rec: np.ndarray | None = None) -> None:
        if rec is None:
            assert self._map is not None
            advise_huge_pages(self._map)  # as numpy asks for its own large arrays
            rec = np.frombuffer(self._map, np.uint64)
        self.rec = rec
        self.reci = rec.view(np.int64)
        self.rec32 = rec.view(np.uint32)

    def grow(self, cap: int) -> None:
        """Move the entries into a table of ``cap`` slots (a power of two, more than now), closing nothing:
        the records stay where they are and the table grows around them
        (:func:`~netspectra.rollup.kernels.grow_in_place`: entries move only within the table's own
        memory, at most a cluster's end is held aside). A mapped table is enlarged in its mapping
        (``mremap``: the pages it has are kept, only the new part is fresh memory), its epochs in theirs;
        a small one is copied into the head of a larger table first. Either way the layout is the same.
        Rebuilding into a fresh table instead (and, before, copying the entries aside and back) faulted
        in and wrote the memory twice: on a VM whose fresh memory is slow, most of an enriched run's
        growth time."""
        old = self.cap
        assert cap > old and cap & (cap - 1) == 0
        self._extend(cap)
        low = kern.grow_in_place(self.words, old, self.rec, self.reci, self.rec32, self.rw, self.epoch)
        self.meta[kern.M_LOW] = low
        self.touched = np.zeros(cap if self.finest else 1, np.int64)

    def _extend(self, cap: int) -> None:
        """The records and epochs made ``cap`` slots long, the present ones first, the others empty."""
        old_rec, old_epoch = self.rec, self.epoch
        n_words = old_rec.shape[0]
        nbytes = cap * self.rw * 8
        if self._map is not None and self._epochs is not None:
            self.rec = self.reci = self.rec32 = self.epoch = None  # type: ignore[assignment]  # exports
            del old_rec, old_epoch
            try:
                self._map.resize(nbytes)
            except (BufferError, OSError, ValueError, SystemError):  # a view of it is held elsewhere
                held = np.frombuffer(self._map, np.uint64)
                self._map = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                np.frombuffer(self._map, np.uint64)[:n_words] = held[:n_words]
            self._views()
            self._epochs.resize(cap)
            self.epoch = self._epochs.array.view(np.int64)
            return
        self._fresh(cap)  # a small table: larger arrays (a mapping once it outgrows them)
        self.rec[:n_words] = old_rec
        self.epoch[: old_epoch.shape[0]] = old_epoch

    @property
    def cap(self) -> int:
        return int(self.epoch.shape[0])

    @property
    def count(self) -> int:
        return int(self.meta[kern.M_COUNT])

    def arrays(self) -> tuple[Any, ...]:
        """The kernels' arguments for this table: dimension words, records (three views), record words,
        epochs."""
        return (self.words, self.rec, self.reci, self.rec32, self.rw, self.epoch)

    # Column views of the records (strided numpy views: the tests and the summary read them)
    def _col(self, word: int) -> np.ndarray:
        return self.rec.reshape(-1, self.rw)[:, word]

    @property
    def bkt(self) -> np.ndarray:
        return self.reci.reshape(-1, self.rw)[:, W_BKT]

    @property
    def pk(self) -> np.ndarray:
        return self._col(W_PK)

    @property
    def by(self) -> np.ndarray:
        return self._col(W_BY)

    @property
    def bpk(self) -> np.ndarray:
        return self._col(W_BPK)

    @property
    def bby(self) -> np.ndarray:
        return self._col(W_BBY)

    @property
    def state(self) -> np.ndarray:
        """The state words (with the PENDING bit: compare ``state & STATE_MASK``)."""
        return self.rec32.reshape(-1, 2 * self.rw)[:, H_STATE]

    @property
    def dims(self) -> np.ndarray:
        return self.rec32.reshape(-1, 2 * self.rw)[:, H_DIMS : H_DIMS + self.words]

    def rehash(self, cutoff: int, cap: int) -> _Rows:
        """Close the entries of buckets <= ``cutoff`` (those changed since handed out are returned) and
        move the others into a table of ``cap`` slots.

        At the same size (every close the task makes) the entries close where they are
        (:func:`~netspectra.rollup.kernels.close_in_place`: the table's own memory): a fresh table is
        pages the system faults in and zeroes again, 64 MB for each close of a table of 262,144 entries
        of 18 dimensions."""
        out = _Rows.empty(self.count, self.words)
        if cap == self.cap:
            return out.head(self._close_in_place(cutoff, out))
        old = self.arrays()
        self._alloc(cap)
        kept, n_out, low = kern.rehash(
            cutoff, *old, self.rec, self.reci, self.rec32, self.epoch, *out.arrays()
        )
        self.meta[kern.M_COUNT] = kept
        self.meta[kern.M_LOW] = low
        return out.head(n_out)

    def close_counted(self, cutoff: int) -> int:
        """:meth:`rehash` at the same size for rows no one will read: the closed entries that changed
        since handed out are counted (their number returned), not written out."""
        return self._close_in_place(cutoff, None)

    def _close_in_place(self, cutoff: int, out: _Rows | None) -> int:
        """Close the entries of buckets <= ``cutoff`` in the table's own memory
        (:func:`~netspectra.rollup.kernels.close_in_place`), the rows handed out written to ``out`` (room
        for :attr:`count` rows; ``None``: counted only): their number."""
        rows = _Rows.empty(0, self.words) if out is None else out
        kept, n_out, low = kern.close_in_place(
            cutoff, self.count, out is not None, *self.arrays(), *rows.arrays()
        )
        if self.finest and self.meta[kern.M_TOUCHED]:
            # entries moved: ``touched`` listed again from the PENDING bits of those kept, as after a
            # growth (the task carries before it closes: only the kernels' tests close with any)
            self.meta[kern.M_TOUCHED] = kern.pending_slots(self.rec32, self.rw, self.touched)
        self.meta[kern.M_COUNT] = kept
        self.meta[kern.M_LOW] = low
        return int(n_out)

    def close_all(self, cap: int) -> _ClosedTable:
        """Close every entry and start again with an empty table of ``cap`` slots: the entries stay in the
        old records, the rows they hand out (those changed since handed out, as :meth:`rehash` gives
        them) are made when first read (:class:`_ClosedTable`)."""
        closed = _ClosedTable(self.arrays(), self.count)
        self._alloc(cap)
        self.meta[kern.M_COUNT] = 0
        self.meta[kern.M_LOW] = _INT64_MAX
        return closed

    def limit(self, max_entries: int) -> int:
        return min(self.cap // 2, max_entries)

    def open_buckets(self) -> np.ndarray:
        """The bucket of every open entry, in slot order (:func:`~netspectra.rollup.kernels.open_buckets`:
        one pass over the records)."""
        out = np.empty(self.count, np.int64)
        return out[: kern.open_buckets(self.rec32, self.reci, self.rw, out)]


@dataclass
class _Rows:
    """Rows of one resolution: bucket index, epoch, dimension words, packets, bytes."""

    bkt: np.ndarray
    epoch: np.ndarray
    dims: np.ndarray
    pk: np.ndarray
    by: np.ndarray

    @staticmethod
    def empty(n: int, words: int) -> _Rows:
        return _Rows(
            np.empty(n, np.int64),
            np.empty(n, np.int64),
            np.empty((n, words), np.uint32),
            np.empty(n, np.uint64),
            np.empty(n, np.uint64),
        )

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.bkt, self.dims, self.epoch, self.pk, self.by)

    def head(self, n: int) -> _Rows:
        return _Rows(self.bkt[:n], self.epoch[:n], self.dims[:n], self.pk[:n], self.by[:n])

    def __len__(self) -> int:
        return int(self.bkt.shape[0])

    @staticmethod
    def concat(parts: Sequence[_Rows], words: int) -> _Rows:
        """The rows of ``parts`` in order (one part that holds rows: itself, not a copy)."""
        full = [p for p in parts if len(p)]
        if not full:
            return _Rows.empty(0, words)
        if len(full) == 1:
            return full[0]
        parts = full
        return _Rows(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("bkt", "epoch", "dims", "pk", "by"))
        )


class _ClosedTable:
    """The rows a table closed whole hands out (:meth:`_Table.close_all`: at the end of the input), made
    from its records when first read — a final snapshot no one receives (:meth:`RollupTask.discard`)
    only counts them. Its length is the rows' count; :meth:`rows` the rows, in the order of
    :func:`~netspectra.rollup.kernels.rehash` (what closing them at once made)."""

    def __init__(self, arrays: tuple[Any, ...], count: int) -> None:
        self._arrays: tuple[Any, ...] | None = arrays
        self._count = count
        self._n: int | None = None
        self._rows: _Rows | None = None

    def __len__(self) -> int:
        if self._rows is not None:
            return len(self._rows)
        if self._n is None:
            assert self._arrays is not None
            _, _, _, rec32, rw, _ = self._arrays
            self._n = int(kern.count_changed(rec32, rw, 0))
        return self._n

    def rows(self) -> _Rows:
        if self._rows is None:
            assert self._arrays is not None
            words, rw = self._arrays[0], self._arrays[4]
            out = _Rows.empty(self._count, words)
            none = np.zeros(rw, np.uint64)  # a one-slot target: nothing is kept, nothing lands there
            kept, n, _ = kern.rehash(
                _INT64_MAX, *self._arrays, none, none.view(np.int64), none.view(np.uint32),
                np.zeros(1, np.int64), *out.arrays(),
            )  # fmt: skip
            assert kept == 0
            self._rows = out.head(n)
            self._arrays = None  # the records are freed with the last reference
        return self._rows


class _ViewPart:
    """The rows of a coarser resolution held as a view of the finest table's closed rows ``base``
    (:meth:`RollupTask._materialize`), made when first read: ``base`` re-bucketed, with the coarser
    epochs ``eras`` gives (:meth:`RollupTask._view_rows`)."""

    def __init__(self, base: _ClosedTable, r: int, eras: dict[int, tuple[int, ...]]) -> None:
        self.base, self.r, self.eras = base, r, eras

    def __len__(self) -> int:
        return len(self.base)

    def rows(self) -> _Rows:
        return _view_rows(self.base.rows(), self.r, self.eras)


#: What a table's outbox holds: rows, or rows made when read.
_Part = _Rows | _ClosedTable | _ViewPart


def _view_rows(rows: _Rows, r: int, eras: dict[int, tuple[int, ...]]) -> _Rows:
    """The rows of coarser resolution ``r`` held as a view: ``rows`` of the finest table re-bucketed, with
    the coarser epochs of ``eras`` (:meth:`RollupTask._note_era`)."""
    e = rows.epoch
    epoch = np.empty_like(e)
    seen = 0
    for e0, era in eras.items():
        hit = e == e0
        epoch[hit] = era[r - 1]
        seen += int(np.count_nonzero(hit))
    assert seen == len(e), "an entry of an epoch the coarser tables never had"
    ratio = RESOLUTIONS[r].seconds // RESOLUTIONS[0].seconds
    return _Rows(rows.bkt // ratio, epoch, rows.dims, rows.pk, rows.by)


class Marginal:
    """One dimension's traffic per value since the task started: an open-addressing table of value words
    filled by :func:`~netspectra.rollup.kernels.add_marginals` (doubled when half full); ``direct`` (a
    one-word dimension of narrow values: a dictionary code, the protocol): the sums of value ``v`` at slot
    ``v`` (:func:`~netspectra.rollup.kernels.add_direct`; grown to the largest value seen), no hashing."""

    def __init__(self, words: int, cap: int = 64, *, direct: bool = False) -> None:
        self.words = words
        self.direct = direct
        if direct and words != 1:
            raise ValueError("a direct tally holds one-word values")
        self._alloc(cap)

    def _alloc(self, cap: int) -> None:
        if self.direct:
            self.keys = np.arange(cap, dtype=np.uint32).reshape(cap, 1)  # slot v holds value v
        else:
            self.keys = np.zeros((cap, self.words), np.uint32)
        self.mp = np.zeros(cap, np.uint64)
        self.mb = np.zeros(cap, np.uint64)
        self.used = np.zeros(cap, np.uint8)
        self.meta = np.zeros(1, np.int64)

    def __len__(self) -> int:
        return int(self.meta[0])

    def add(self, part: np.ndarray, pk: np.ndarray, by: np.ndarray) -> None:
        """Add rows of value words ``part`` ((n, words) uint32) with packets ``pk`` and bytes ``by``."""
        if self.direct:
            values = np.ascontiguousarray(part.reshape(-1), np.uint32)
            if values.shape[0] == 0:
                return
            top = int(values.max())
            if top >= self.keys.shape[0]:  # grow to the largest value seen
                old = (self.mp, self.mb, self.used, self.meta)
                self._alloc(1 << top.bit_length())
                for new, was in zip((self.mp, self.mb, self.used), old, strict=False):
                    new[: was.shape[0]] = was
                self.meta = old[3]
            kern.add_direct(values, pk, by, self.mp, self.mb, self.used, self.meta)
            return
        part = np.ascontiguousarray(part, np.uint32)
        i = 0
        while True:
            i = kern.add_marginals(i, part, pk, by, self.keys, self.mp, self.mb, self.used, self.meta)
            if i >= part.shape[0]:
                return
            live = self.used.view(np.bool_)
            keys, mp, mb = self.keys[live], self.mp[live], self.mb[live]
            self._alloc(self.keys.shape[0] * 2)
            kern.add_marginals(0, keys, mp, mb, self.keys, self.mp, self.mb, self.used, self.meta)

    def top(self, k: int) -> list[tuple[tuple[int, ...], int, int]]:
        """The ``k`` values with the most bytes, ties by packets then by value words: ``(words, packets,
        bytes)``. Only the candidates (bytes at least the ``k``-th largest, found by a partition) become
        Python objects: a dimension of a million values costs one numpy pass, not a million tuples."""
        live = np.flatnonzero(self.used)
        if k <= 0 or live.size == 0:
            return []
        if live.size > k:
            mb = self.mb[live]
            kth = np.partition(mb, live.size - k)[live.size - k]  # the k-th largest byte count
            live = live[mb >= kth]
        got = [
            (tuple(int(x) for x in key), int(p), int(b))
            for key, p, b in zip(self.keys[live], self.mp[live], self.mb[live], strict=True)
        ]
        got.sort(key=lambda c: (-c[2], -c[1], c[0]))
        return got[:k]

    def as_dict(self) -> dict[tuple[int, ...], list[int]]:
        """Value words -> [packets, bytes]."""
        live = self.used.view(np.bool_)
        return {
            tuple(int(x) for x in k): [int(p), int(b)]
            for k, p, b in zip(self.keys[live], self.mp[live], self.mb[live], strict=True)
        }


class DerivedMarginal:
    """A dimension's traffic per value, derived from the tally of the key word its values are coded in
    (a flow-tuple code, a side code's low word: :mod:`netspectra.rollup.codes`): the word's distinct
    values are tallied as the increments are carried (a handful to thousands, where the dimensions
    decoded per increment were 18 tallies of every entry), and decoded and summed per value of the
    dimension when read — the same sums (saturating sums of non-negative counts do not depend on the
    order). The same reading interface as :class:`Marginal`."""

    def __init__(
        self, source: Marginal, words: int, decode: Callable[[np.ndarray], np.ndarray], *, direct: bool
    ) -> None:
        self.source = source
        self.words = words
        self.decode = decode  # (m, 1) uint32 coded values -> (m, words) uint32 values
        self.direct = direct

    def made(self) -> Marginal:
        """The dimension's tally, made now from the source's."""
        m = Marginal(self.words, direct=self.direct)
        live = self.source.used.view(np.bool_)
        if live.any():
            values = np.ascontiguousarray(self.decode(self.source.keys[live]), np.uint32)
            m.add(values.reshape(-1, self.words), self.source.mp[live], self.source.mb[live])
        return m

    def __len__(self) -> int:
        return len(self.made())

    def top(self, k: int) -> list[tuple[tuple[int, ...], int, int]]:
        return self.made().top(k)

    def as_dict(self) -> dict[tuple[int, ...], list[int]]:
        return self.made().as_dict()


@dataclass
class RollupSummary:
    """A rollup task since its start: traffic counted, its time range (bucket starts, UTC ns), rows
    handed out per resolution, rows spread over a clamped span, empty rows skipped, and per dimension the
    traffic of each value (``marginals``: dimension -> value words -> [packets, bytes])."""

    packets: int = 0
    bytes: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    rows_out: dict[str, int] = field(default_factory=lambda: {r.label: 0 for r in RESOLUTIONS})
    clamped: int = 0
    #: Flow-export rows of 0 packets, skipped (their bytes too), as every task does (netspectra.weights).
    empty_rows: int = 0
    tallies: dict[str, Marginal | DerivedMarginal] = field(default_factory=dict)

    @property
    def marginals(self) -> dict[str, dict[tuple[int, ...], list[int]]]:
        """Per dimension: value words -> [packets, bytes] since the start."""
        return {name: m.as_dict() for name, m in self.tallies.items()}


def _add_tallies(
    sources: Sequence[tuple[Marginal, int, int, int]], words: np.ndarray, pk: np.ndarray, by: np.ndarray
) -> None:
    """Add carried increments (their key words ``words``, packets ``pk``, bytes ``by``) to the tallies of
    ``sources`` (``(tally, key word, shift, mask)``: :meth:`RollupTask._make_tallies`)."""
    for tally, w, shift, mask in sources:
        if mask < 0:  # whole words
            tally.add(words[w : w + tally.words].T, pk, by)
        elif shift == 0 and mask == 0xFFFFFFFF:
            tally.add(words[w].reshape(-1, 1), pk, by)
        else:
            tally.add(((words[w] >> np.uint32(shift)) & np.uint32(mask)).reshape(-1, 1), pk, by)


def _add_tallies_in_two(
    sources: Sequence[tuple[Marginal, int, int, int]], words: np.ndarray, pk: np.ndarray, by: np.ndarray
) -> None:
    """:func:`_add_tallies`, half of the sources in a second thread (the kernels release the GIL; each tally
    is touched by one thread), the costliest (hashed tallies holding the most values) dealt out in turn;
    an exception of either is raised once both are done."""
    sources = sorted(sources, key=lambda src: (src[0].direct, -len(src[0])))
    failed: list[BaseException] = []

    def other_half() -> None:
        try:
            _add_tallies(sources[1::2], words, pk, by)
        except BaseException as exc:  # raised below, after the join
            failed.append(exc)

    thread = threading.Thread(target=other_half, name="ns-rollup-tallies")
    thread.start()
    try:
        _add_tallies(sources[0::2], words, pk, by)
    finally:
        thread.join()
    if failed:
        raise failed[0]


class RollupTask:
    """The rollup task (see the module docstring). Not thread-safe: the engine wraps it in a
    :class:`~netspectra.engine.groups.RecordsTask` (one caller at a time)."""

    kind = "rollup"

    #: Hold the coarser tables as views of the finest while they can be (see :meth:`_materialize`); off:
    #: every increment is carried into them (the tests compare the two).
    lazy_coarse: ClassVar[bool] = True
    #: Key the tables on packed words (:mod:`netspectra.rollup.keyplan`); off: on the rows' words, one
    #: per 32 bits of each dimension (the tests compare the two).
    compact_key: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        params: RollupParams,
        *,
        capacity: int = _INITIAL_CAPACITY,
        net_classes: np.ndarray | None = None,
    ) -> None:
        """``net_classes``: the configuration's network classes (``(5, k)`` uint16 attribute codes,
        :attr:`netspectra.enrich.networks.CompiledNetworks.class_attr`): the task keys an address side's
        columns on the side's code column (:mod:`netspectra.rollup.codes`; the enrichment stage adds it,
        :meth:`netspectra.rollup.kind.RollupAggregator.coded_dimensions`). ``None``: on the columns."""
        self.name = name
        self.params = params
        self.dims: tuple[Dimension, ...] = tuple(BY_NAME[d] for d in params.dimensions)
        names = set(params.dimensions)
        # Where each dimension's value lives in the key words (netspectra.rollup.codes, .keyplan): the
        # flow-tuple code, then the side codes, then the other dimensions packed.
        self._tuple = (
            tuple(d for d in self.dims if d.name in TUPLE_WORDS)
            if self.compact_key and names & set(TUPLE_TRIGGERS)
            else ()
        )
        self._sides: tuple[SideKey, ...] = ()
        if self.compact_key and net_classes is not None:
            self._sides = tuple(
                SideKey.of(side, tuple(n for n in params.dimensions if n in cols), net_classes)
                for side, cols in SIDE_COLUMNS.items()
                if names & set(cols)
            )
        coded = {d.name for d in self._tuple} | {n for k in self._sides for n in k.names}
        self._rest = tuple(d for d in self.dims if d.name not in coded)
        #: Where each other dimension's value lives in the first key words (:mod:`netspectra.rollup.keyplan`).
        self.plan = KeyPlan.of([d.bits for d in self._rest], pack=self.compact_key)
        word = self.plan.key_words
        self._tuple_word = word
        word += 1 if self._tuple else 0
        self._side_words: list[tuple[int, int]] = []  # per side key: its hi and lo words (-1: none)
        for k in self._sides:
            hi = word if k.hi else -1
            word += k.hi
            lo = word if k.lo else -1
            word += k.lo
            self._side_words.append((hi, lo))
        self.words = word  # the tables' key words
        self.row_words = sum(d.words for d in self.dims)  # the rows' words (RollupRows.words)
        self._identity = self.plan.identity and not coded
        # per row word: its key word, shift, mask and table (kernels.decode_words; -1: none)
        where: dict[str, list[tuple[int, int, int, int]]] = {}
        for d, f in zip(self._rest, self.plan.fields, strict=True):
            mask = (1 << f.bits) - 1 if f.packed else 0xFFFFFFFF
            where[d.name] = [(f.word + k, f.shift, mask, -1) for k in range(f.words)]
        for d in self._tuple:
            where[d.name] = [(self._tuple_word, 0, 0xFFFFFFFF, j) for j in TUPLE_WORDS[d.name]]
        for s, (k, (hi, lo)) in enumerate(zip(self._sides, self._side_words, strict=True)):
            for n in k.names:
                attr = n[len(k.side) :]
                if attr == "AS":
                    where[n] = [(hi, 0, 0xFFFFFFFF, -1)]
                elif attr == "Country":
                    where[n] = [(lo, CC_SHIFT, CC_MASK, -1)]
                else:
                    lut = TupleDictionary.WORDS + s * len(NET_DIMS) + NET_DIMS.index(attr)
                    where[n] = [(lo, 0, CLASS_MASK, lut)]
        rows = [w for d in self.dims for w in where[d.name]]
        assert len(rows) == self.row_words
        self._decode_args = (
            np.array([w for w, _, _, _ in rows], np.int64),
            np.array([s for _, s, _, _ in rows], np.uint32),
            np.array([m for _, _, m, _ in rows], np.uint32),
            np.array([t for _, _, _, t in rows], np.int64),
        )
        self._tuples = TupleDictionary()
        cap = 1 << max(4, int(capacity - 1).bit_length())
        self._cap0 = cap
        self._dictionaries: dict[str, tuple[str, ...]] = {}
        self._scratch = np.empty(0, np.uint32)  # dimension_words' buffers
        # _count's buffers (key words, packets, bytes of up to COUNT_CHUNK entries), kept between calls
        self._count_scratch = (np.empty(0, np.uint32), np.empty(0, np.uint64), np.empty(0, np.uint64))
        self._summary = RollupSummary(tallies=self._make_tallies())
        #: The rows entries hand out as they close are only counted (:meth:`forget_unread`).
        self.unread = False
        self._reset()

    def _make_tallies(self) -> dict[str, Marginal | DerivedMarginal]:
        """Per dimension its tally (:class:`RollupSummary`), and what :meth:`_count` feeds: per source a
        tally and where its values are in the key words (``(key word, shift, mask)``). A dimension of
        its own key words or field (a side's AS number too) is tallied itself; the dimensions coded in
        a flow-tuple code or a side code's low word are derived from that word's tally."""
        tallies: dict[str, Marginal | DerivedMarginal] = {}
        self._tally_sources: list[tuple[Marginal, int, int, int]] = []
        for d, f in zip(self._rest, self.plan.fields, strict=True):
            m = Marginal(d.words, direct=f.packed)
            tallies[d.name] = m
            self._tally_sources.append((m, f.word, f.shift, (1 << f.bits) - 1 if f.packed else -1))
        narrow = {d.name: d.bits <= PACKED_BITS for d in self.dims}
        if self._tuple:
            code = Marginal(1, direct=True)  # codes are dense: 0, 1, 2, ...
            self._tally_sources.append((code, self._tuple_word, 0, 0xFFFFFFFF))
            for d in self._tuple:
                cols = list(TUPLE_WORDS[d.name])
                tallies[d.name] = DerivedMarginal(
                    code,
                    d.words,
                    lambda v, cols=cols: self._tuples.tuples[v[:, 0]][:, cols],
                    direct=narrow[d.name],
                )
        for k, (hi, lo) in zip(self._sides, self._side_words, strict=True):
            if hi >= 0:
                m = Marginal(1)
                tallies[f"{k.side}AS"] = m
                self._tally_sources.append((m, hi, 0, 0xFFFFFFFF))
            if lo < 0:
                continue
            low = Marginal(1)
            self._tally_sources.append((low, lo, 0, 0xFFFFFFFF))
            for n in k.names:
                attr = n[len(k.side) :]
                if attr == "Country":
                    decode = _country_of
                elif attr != "AS":
                    decode = functools.partial(_attribute_of, k.class_attr[NET_DIMS.index(attr)])
                else:
                    continue
                tallies[n] = DerivedMarginal(low, 1, decode, direct=narrow[n])
        return {d.name: tallies[d.name] for d in self.dims}

    def _luts(self) -> np.ndarray:
        """The tables :func:`~netspectra.rollup.kernels.decode_words` looks codes up in: the flow tuples'
        seven words, then per side key the five attributes of each class."""
        n = max([len(self._tuples), 1] + [k.class_attr.shape[1] for k in self._sides])
        luts = np.zeros((TupleDictionary.WORDS + len(NET_DIMS) * len(self._sides), n), np.uint32)
        m = len(self._tuples)
        luts[: TupleDictionary.WORDS, :m] = self._tuples.tuples[:m].T
        for s, k in enumerate(self._sides):
            at = TupleDictionary.WORDS + s * len(NET_DIMS)
            luts[at : at + len(NET_DIMS), : k.class_attr.shape[1]] = k.class_attr
        return luts

    def __repr__(self) -> str:
        return f"RollupTask({self.name!r}, dimensions={list(self.params.dimensions)})"

    def _reset(self) -> None:
        self.tables = [_Table(self.words, self._cap0, i == 0) for i in range(len(RESOLUTIONS))]
        self.watermark = _INT64_MIN
        self._outbox: list[list[_Part]] = [[] for _ in RESOLUTIONS]
        self._opened_at_flush = 0  # the finest table's M_OPENED at the last carry
        self._totals_from_increments = False  # see update
        self._overloaded_upto = _INT64_MIN  # see _overload_guard
        # The coarser tables as views of the finest (see _materialize): while _lazy, the 1-minute bucket
        # every open entry is in (None: no entry is open) and, per epoch of the finest table, the epochs
        # the coarser tables had when an entry of that epoch opened.
        self._lazy = self.lazy_coarse
        self._lazy_bucket: int | None = None
        self._eras: dict[int, tuple[int, ...]] = {}
        self._note_era()

    def _note_era(self) -> None:
        """Record the coarser tables' epochs for entries the finest table opens with its epoch now."""
        era = tuple(t.epoch_counter for t in self.tables[1:])
        e0 = self.tables[0].epoch_counter
        assert self._eras.setdefault(e0, era) == era, "a coarser epoch changed without the finest's"

    def _entries(self, r: int) -> int:
        """Open entries of resolution ``r`` (a coarser table held as a view: the finest table's)."""
        return self.tables[0 if self._lazy else r].count

    def _materialize(self) -> None:
        """Make the coarser tables real: they stop being views of the finest.

        While every open entry of the finest table lies in one 1-minute bucket (so that distinct entries
        are distinct 5-minute and 1-hour entries), none of its entries has closed since the coarser tables
        were empty, and each coarser table's epoch changed only with the finest's, a coarser table would
        hold exactly one entry per finest entry: its bucket divided, the same dimension words, packets,
        bytes and state once the increments are carried (a coarser table then never fills to
        ``max_entries``: it holds as many entries as the finest). So it is not kept: its rows are the
        finest's, re-bucketed, with the epoch it had when the finest entry opened (:meth:`_note_era`) —
        a capture shorter than a minute never pays for two more tables and the carries into them. When
        any of that is about to stop holding (a row of another minute, a close that would close
        something, a coarser epoch changing alone, an early close of the finest table), the coarser tables
        are built from the finest by :func:`~netspectra.rollup.kernels.spread`: the entries, values and
        epochs that carrying every increment would have made (the order of rows within a snapshot may
        differ: it is the tables' slot order), and the task goes on as usual."""
        if not self._lazy:
            return
        self._flush()
        self._lazy = False
        fine = self.tables[0]
        n = fine.count
        if n == 0:
            return
        base = min(self._eras)
        for r in range(1, len(RESOLUTIONS)):
            table = self.tables[r]
            assert table.count == 0
            emap = np.full(max(self._eras) - base + 1, -1, np.int64)
            for e0, era in self._eras.items():
                emap[e0 - base] = era[r - 1]
            cap = max(self._cap0, 1 << (2 * n - 1).bit_length())
            if cap != table.cap:
                table._alloc(cap)
            ratio = RESOLUTIONS[r].seconds // RESOLUTIONS[0].seconds
            count, low = kern.spread(
                self.words, fine.rec, fine.reci, fine.rec32, fine.rw, fine.epoch, ratio, emap, base,
                table.rec, table.reci, table.rec32, table.epoch,
            )  # fmt: skip
            assert count == n, "two finest entries in one coarser entry"
            table.meta[kern.M_COUNT] = count
            table.meta[kern.M_LOW] = low

    def _view_rows(self, rows: _Rows, r: int) -> _Rows:
        """The rows of coarser resolution ``r`` held as a view: ``rows`` of the finest table re-bucketed,
        with the coarser epochs (:meth:`_materialize`)."""
        return _view_rows(rows, r, self._eras)

    # -- the batch ------------------------------------------------------------------------------------

    def dimension_words(self, batch: PacketBatch, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """``(hi - lo, row_words)`` uint32: rows ``lo .. hi - 1`` (default: all) of the batch, each row's
        dimension values as the rows handed out hold them (:meth:`key_words` unpacked; a copy)."""
        return np.array(self.unpack(self.key_words(batch, lo, hi)), np.uint32)

    def unpack(self, keys: np.ndarray) -> np.ndarray:
        """``(n, row_words)`` uint32: key words ``(n, words)`` (:meth:`key_words`) as the rows hold them,
        one word per 32 bits of each dimension in the order of the dimensions (``keys`` itself when
        nothing is packed or coded)."""
        if self._identity:
            return keys
        out = np.empty((keys.shape[0], self.row_words), np.uint32)
        kern.decode_words(np.ascontiguousarray(keys), *self._decode_args, self._luts(), out)
        return out

    def _check_widths(self, batch: PacketBatch) -> None:
        """``ValueError`` for a packed dimension's value that does not fit its width (only a column of a
        wider type than its own can hold one): packed, it would change a neighbour's value; and for a
        side code of a network class the configuration does not have (the batch was enriched with
        another ``networks`` map). Checked before any row of the batch is counted."""
        for k in self._sides:
            code = batch.dims.get(SIDE_CODES[k.side]) if batch.dims is not None else None
            if code is None:
                given = [n for n in k.names if batch.dims is not None and n in batch.dims]
                if given:  # enriched, but by a stage that hands over no codes: not "unknown" silently
                    raise ValueError(
                        f"rollup task {self.name}: the batch carries {', '.join(given)} but not "
                        f"{SIDE_CODES[k.side]}, which this task keys the {k.side} side on: the enrichment "
                        "stage must hand it over (EnrichmentStage(codes=...), engine.kind.enrichment_reads)"
                    )
                continue
            bad = kern.first_foreign_class(code, k.classes)
            if bad < code.shape[0]:
                raise ValueError(
                    f"rollup task {self.name}: row {bad} has a {SIDE_CODES[k.side]} of network class "
                    f"{int(code[bad]) & CLASS_MASK}, and the configuration has {k.classes} classes: "
                    "the batch was enriched with another networks map"
                )
        for dim, f in zip(self._rest, self.plan.fields, strict=True):
            if not f.packed:
                continue
            if dim.enriched:
                values = batch.dims.get(dim.name) if batch.dims is not None else None
            else:
                values = getattr(batch, dim.source)
            if values is None or values.dtype.itemsize * 8 <= f.bits or values.shape[0] == 0:
                continue
            lo, hi = int(values.min()), int(values.max())
            if lo < 0 or hi >> f.bits:
                raise ValueError(
                    f"rollup dimension {dim.name}: value {lo if lo < 0 else hi} does not fit its "
                    f"{f.bits}-bit column type (the batch's column is {values.dtype})"
                )

    def key_words(self, batch: PacketBatch, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """``(hi - lo, words)`` uint32: rows ``lo .. hi - 1`` (default: all) of the batch, each row's
        key words (:attr:`plan`: narrow values packed; then the flow-tuple code and the side codes'
        words, :mod:`netspectra.rollup.codes`; 0 where the batch lacks the column; ``ValueError`` for a
        value wider than its dimension, or side codes of another ``networks`` map), a row's words
        together: the kernel reads a row at a time, one stream (``(words, n)`` made it ``words``
        streams, the slowest part of an 18-dimension key). Filled a column at a time, then transposed by
        :func:`~netspectra.rollup.kernels.transpose_words` (columns written into the rows directly are
        strided writes: slower). Both live in the task's scratch buffer, kept between calls (a fresh one
        per batch was fresh memory to fault in every time); :meth:`update` asks for :data:`CHUNK` rows
        at a time, so that both stay in the cache. Valid until the next call."""
        hi = len(batch) if hi is None else hi
        n = hi - lo
        size = n * self.words
        if self._scratch.shape[0] < 2 * size:
            self._scratch = np.empty(2 * size, np.uint32)
        cols = self._scratch[: n * self.plan.key_words].reshape(self.plan.key_words, n)
        mat = self._scratch[size : 2 * size].reshape(n, self.words)
        for dim, f in zip(self._rest, self.plan.fields, strict=True):
            if dim.enriched:
                values = batch.dims.get(dim.name) if batch.dims is not None else None
            else:
                values = getattr(batch, dim.source)
            j = f.word
            if f.packed:  # the field's word is made by its shift-0 field, the first one of it
                if values is None:
                    if f.shift == 0:
                        cols[j] = 0
                    continue
                v = values[lo:hi]  # (update checked that the values fit: _check_widths)
                if f.shift == 0:
                    cols[j] = v
                else:
                    cols[j] |= v.astype(np.uint32, copy=False) << np.uint32(f.shift)
            elif values is None:
                cols[j : j + f.words] = 0
            elif f.words == 1:
                cols[j] = values[lo:hi]
            else:  # the exporter: 16 bytes as 4 words
                cols[j : j + f.words] = np.ascontiguousarray(values[lo:hi]).view(np.uint32).T
        if self._tuple:
            named = {d.name for d in self._tuple}
            none32 = np.empty(0, np.uint32)
            ex = batch.exporter if "Exporter" in named else None
            in_if = batch.in_if if "InIf" in named else None
            out_if = batch.out_if if "OutIf" in named else None
            self._tuples.code(
                batch.protocol[lo:hi] if "Protocol" in named else np.empty(0, np.uint8),
                ex[lo:hi].view(np.uint32) if ex is not None else np.empty((0, 4), np.uint32),
                in_if[lo:hi] if in_if is not None else none32,
                out_if[lo:hi] if out_if is not None else none32,
                mat,
                self._tuple_word,
            )
        for k, (wh, wl) in zip(self._sides, self._side_words, strict=True):
            code = batch.dims.get(SIDE_CODES[k.side]) if batch.dims is not None else None
            if code is None:  # not enriched: every value unknown
                mat[:, [w for w in (wh, wl) if w >= 0]] = 0
                continue
            kern.side_words(code[lo:hi], k.proj, k.keep_cc, k.classes, mat, wh, wl)  # (classes checked)
        if self.plan.key_words:  # the coded words are written into the rows directly (above)
            kern.transpose_words(cols, mat)
        return mat

    def update(self, batch: PacketBatch) -> None:
        """Count ``batch`` into the buckets of its rows' times (see the module docstring)."""
        n = len(batch)
        if n == 0:
            return
        self._check_widths(batch)
        if batch.dictionaries:
            for name, words in batch.dictionaries.items():
                if len(words) > len(self._dictionaries.get(name, ())):
                    self._dictionaries[name] = words
        end = batch.ts_ns
        start = batch.flow_start_ns if batch.flow_start_ns is not None else np.empty(0, np.int64)
        packets = batch.packets if batch.packets is not None else np.empty(0, np.uint64)
        nbytes = batch.byte_counts()
        fine = self.tables[0]
        width = RESOLUTIONS[0].ns
        if self._lazy:
            if fine.count == 0:  # nothing open: any minute will do, and older epochs are gone
                self._lazy_bucket = None
                self._eras = {}
                self._note_era()
            lo = int(end.min()) if start.shape[0] == 0 else min(int(end.min()), int(start.min()))
            lo, hi = lo // width, int(end.max()) // width
            if lo != hi or (self._lazy_bucket is not None and lo != self._lazy_bucket):
                self._materialize()  # rows of another minute: the coarser tables are needed
            else:
                self._lazy_bucket = lo
        # The summary's totals: the batch's, exactly, whenever no entry's increment can saturate (it
        # is then the sum of the increments); a batch of more than 2**64 - 1 packets or bytes (a hostile
        # exporter) is carried alone, and its saturated increments make the totals, as always.
        weighted = packets.shape[0] == n
        total_p = exact_sum(packets) if weighted else n
        total_b = exact_sum(nbytes[packets != 0] if weighted else nbytes)
        alone = total_p > COUNT_MAX or total_b > COUNT_MAX
        if alone:
            self._flush()
            self._totals_from_increments = True
        else:
            self._summary.packets += total_p
            self._summary.bytes += total_b
        i = 0
        while True:
            defer = not alone and self._can_defer()
            if not defer:
                self._flush()  # what earlier calls left pending first: then this call's, as it ends
            i = self._aggregate(batch, i, end, start, packets, nbytes)
            if not defer:
                self._flush()
            if i >= n:
                break
            self._make_room(0)
        self._totals_from_increments = False
        s = self._summary
        s.clamped = int(fine.meta[kern.M_CLAMPED])
        s.empty_rows = int(fine.meta[kern.M_EMPTY])
        top = int(end.max())
        if top > self.watermark:
            self.watermark = top
            self._close_by_watermark()

    def _aggregate(
        self,
        batch: PacketBatch,
        i: int,
        end: np.ndarray,
        start: np.ndarray,
        packets: np.ndarray,
        nbytes: np.ndarray,
    ) -> int:
        """:func:`~netspectra.rollup.kernels.aggregate_rows` of rows ``i ..`` of the batch, :data:`CHUNK`
        rows (their dimension words) at a time; the first row not applied (the batch's length when all
        were). The same rows in the same order as one call over the batch: nothing happens between the
        chunks."""
        n = end.shape[0]
        fine = self.tables[0]
        spans, weighted = start.shape[0] == n, packets.shape[0] == n
        while i < n:
            lo = i - i % CHUNK
            hi = min(lo + CHUNK, n)
            got = kern.aggregate_rows(
                i - lo,
                end[lo:hi],
                start[lo:hi] if spans else start,
                packets[lo:hi] if weighted else packets,
                nbytes[lo:hi],
                self.key_words(batch, lo, hi),
                RESOLUTIONS[0].ns,
                self.params.max_span_ns,
                fine.limit(self.params.max_entries),
                fine.epoch_counter,
                fine.rec,
                fine.reci,
                fine.rec32,
                fine.rw,
                fine.epoch,
                fine.touched,
                fine.meta,
            )
            if got < hi - lo:
                return lo + got  # the table is full
            i = hi
        return n

    def _can_defer(self) -> bool:
        """Whether the finest table's increments may stay pending through the next
        :func:`~netspectra.rollup.kernels.aggregate_rows` call and be carried later, all at once.

        Carrying increments into a coarser table gives the same entries and values whenever it is
        done — unless a carry fills the table to ``max_entries`` and closes its oldest buckets early:
        then *which* increments were carried before the close decides the rows' epochs. So increments
        stay pending only while no carry of them can close anything: every coarser table's entries,
        plus one new entry per finest entry opened since the last carry (an entry opened earlier has
        its coarser entries already, see :meth:`_overload_guard`), plus the most the next call can open
        (the finest table's room), stay within ``max_entries``. Otherwise the task carries after every
        call, as it always did under that pressure. Either way the rows are the same, whenever the
        snapshots are taken."""
        fine = self.tables[0]
        if self._lazy:
            return True  # nothing is carried into views (_materialize carries what is pending first)
        if self._overloaded_upto > fine.closed_upto:
            return False
        bound = (
            int(fine.meta[kern.M_OPENED])
            - self._opened_at_flush
            + fine.limit(self.params.max_entries)
            - fine.count
        )
        return all(t.count + bound <= self.params.max_entries for t in self.tables[1:])

    def _flush(self) -> None:
        """Carry the finest table's pending increments into the coarser tables (and the summary)."""
        fine = self.tables[0]
        n_touched = int(fine.meta[kern.M_TOUCHED])
        if n_touched and self._lazy:  # the coarser tables are views (_materialize): nothing to carry
            self._count(fine.touched[:n_touched], take=True)  # (the PENDING bits cleared as it reads)
        elif n_touched:
            last = len(RESOLUTIONS) - 1
            new = int(fine.meta[kern.M_OPENED]) - self._opened_at_flush  # the most new coarser entries
            for r in range(1, len(RESOLUTIONS)):
                table = self.tables[r]
                need = min(table.count + new, self.params.max_entries)
                if need > table.limit(self.params.max_entries):  # grow once now, not doubling as it fills
                    table.grow(1 << (2 * need - 1).bit_length())
                ratio = RESOLUTIONS[r].seconds // RESOLUTIONS[0].seconds
                t = 0
                while True:
                    t = kern.fold(
                        t,
                        fine.touched,
                        n_touched,
                        self.words,
                        fine.rec,
                        fine.reci,
                        fine.rec32,
                        ratio,
                        table.limit(self.params.max_entries),
                        table.epoch_counter,
                        table.rec,
                        table.reci,
                        table.rec32,
                        table.rw,
                        table.epoch,
                        table.meta,
                        r == last,
                    )
                    if t >= n_touched:
                        break
                    self._make_room(r)
            self._count(fine.touched[:n_touched])
        fine.meta[kern.M_TOUCHED] = 0
        self._opened_at_flush = int(fine.meta[kern.M_OPENED])

    def _count(self, slots: np.ndarray, take: bool = False) -> None:
        """The summary: time range and per-dimension traffic of the carried increments (and the totals,
        for a batch carried alone: :meth:`update`); ``take``: the entries' PENDING bits cleared too.

        :data:`COUNT_CHUNK` entries at a time, through scratch arrays kept between calls: the final carry
        of a task with many entries (262 k) needed ~9 MB of fresh memory for them otherwise."""
        fine = self.tables[0]
        s = self._summary
        if self._count_scratch[1].shape[0] < min(slots.shape[0], COUNT_CHUNK):
            m = min(max(slots.shape[0], 1024), COUNT_CHUNK)
            self._count_scratch = (
                np.empty(self.words * m, np.uint32),
                np.empty(m, np.uint64),
                np.empty(m, np.uint64),
            )
        buf_words, buf_pk, buf_by = self._count_scratch
        width = RESOLUTIONS[0].ns
        for at in range(0, slots.shape[0], COUNT_CHUNK):
            part = slots[at : at + COUNT_CHUNK]
            n = part.shape[0]
            # a dimension's words: rows of it (C-contiguous: the kernel's compiled signature)
            words, pk, by = buf_words[: self.words * n].reshape(self.words, n), buf_pk[:n], buf_by[:n]
            lo, hi = kern.gather_increments(
                part, self.words, fine.rec, fine.reci, fine.rec32, fine.rw, words, pk, by, 1 if take else 0
            )
            if self._totals_from_increments:
                # exact Python integers, as every task's totals (netspectra.weights)
                s.packets += exact_sum(pk)
                s.bytes += exact_sum(by)
            lo, hi = int(lo) * width, int(hi) * width
            s.first_ns = lo if s.first_ns is None else min(s.first_ns, lo)
            s.last_ns = hi if s.last_ns is None else max(s.last_ns, hi)
            sources = self._tally_sources
            if n >= PARALLEL_TALLY_ROWS and len(sources) > 1:
                # a large carry (the final one runs on the engine's thread while the workers are done and
                # the other core idles): half of the tallies in a second thread
                _add_tallies_in_two(sources, words, pk, by)
            else:
                _add_tallies(sources, words, pk, by)

    def _make_room(self, r: int) -> None:
        """Table ``r`` is full: grow it, or (at ``max_entries``) close its oldest half of buckets.

        The finest table's pending increments stay pending through a growth: their records move with
        their :data:`~netspectra.rollup.layout.PENDING` bit and increments, and ``touched`` is listed
        again from the bits (:func:`~netspectra.rollup.kernels.pending_slots`; in slot order: the carry
        gives the same entries and sums in any order, and :meth:`_can_defer` held before the growth as
        it does after). Carried at every growth, an entry touched by many batches was tallied and carried
        once per growth instead of once."""
        table = self.tables[r]
        if table.cap // 2 < self.params.max_entries:
            pending = int(table.meta[kern.M_TOUCHED]) if r == 0 else 0
            table.grow(table.cap * 2)
            if r == 0:
                n = kern.pending_slots(table.rec32, table.rw, table.touched)
                assert n == pending, "an entry's pending increments were lost in a growth"
                table.meta[kern.M_TOUCHED] = n
            return
        if r == 0:
            self._flush()  # entries close: what they have pending is carried first
        self._materialize()  # entries close early: the coarser tables outlive them
        used = table.open_buckets()
        cutoff = int(np.median(used)) if used.size else _INT64_MIN
        log.info(
            "rollup task %s: %d open %s entries (max_entries): closing buckets up to %d early",
            self.name,
            table.count,
            RESOLUTIONS[r].label,
            cutoff,
        )
        if r > 0:
            self._overload_guard()
        self._close(r, cutoff)

    def _overload_guard(self) -> None:
        """A coarser table closes buckets early: finest entries open now may have lost their coarser
        entries, so a carry of theirs could open new ones that :meth:`_can_defer` does not count. Carry
        after every call until every entry open now has closed (its bucket is at most the newest now)."""
        fine = self.tables[0]
        used = fine.open_buckets()
        if used.size:
            self._overloaded_upto = max(self._overloaded_upto, int(used.max()))

    def _close(self, r: int, cutoff: int) -> _Rows | None:
        """Close table ``r``'s buckets up to ``cutoff``: the rows closed (queued for the next snapshot)."""
        table = self.tables[r]
        table.epoch_counter += 1
        if cutoff < int(table.meta[kern.M_LOW]):
            return None  # no open entry is that old: nothing closes, no table to scan
        if self.unread:
            self._summary.rows_out[RESOLUTIONS[r].label] += table.close_counted(cutoff)
            return None
        closed = table.rehash(cutoff, table.cap)  # (in place: kernels.close_in_place)
        if len(closed):
            self._outbox[r].append(closed)
        return closed

    def _close_by_watermark(self) -> None:
        closable = [(self.watermark - self.params.close_after_ns) // res.ns - 1 for res in RESOLUTIONS]
        if all(c <= t.closed_upto for c, t in zip(closable, self.tables, strict=True)):
            return
        self._flush()  # a coarser table holds every increment of what it closes
        if self._lazy:
            moves = [c > t.closed_upto for c, t in zip(closable, self.tables, strict=True)]
            low = int(self.tables[0].meta[kern.M_LOW])  # the int64 maximum: nothing open
            closes = any(
                m and low != _INT64_MAX and c >= low // (res.seconds // RESOLUTIONS[0].seconds)
                for m, c, res in zip(moves, closable, RESOLUTIONS, strict=True)
            )
            if closes or (any(moves[1:]) and not moves[0]):
                self._materialize()
        for r, table in enumerate(self.tables):
            if closable[r] > table.closed_upto:
                table.closed_upto = closable[r]
                self._close(r, closable[r])
        if self._lazy:
            self._note_era()

    def tick(self, quiet_ns: int) -> None:
        """Nothing ends by the clock: buckets close in traffic time (determinism, see the module)."""

    def finish(self, reason: str = "end_of_input") -> None:
        """Close every entry (the input ended or the engine stops): their final values leave with the
        next snapshot."""
        self._flush()
        if self._lazy:  # the coarser tables' rows are the finest's (_materialize)
            if self.tables[0].count:
                closed = self._close_all(0)
                eras = dict(self._eras)  # as they are now: the views are made when read
                for r in range(1, len(RESOLUTIONS)):
                    self.tables[r].epoch_counter += 1
                    self._outbox[r].append(_ViewPart(closed, r, eras))
                self._note_era()
            return
        for r in range(len(RESOLUTIONS)):
            if self.tables[r].count:
                self._close_all(r)

    def _close_all(self, r: int) -> _ClosedTable:
        """Close every entry of table ``r`` (:meth:`_close` of every bucket): the rows are queued for the
        next snapshot, made when it is read (:meth:`_Table.close_all`); the table starts again small (not
        a fresh table of its size)."""
        table = self.tables[r]
        table.epoch_counter += 1
        closed = table.close_all(self._cap0)
        self._outbox[r].append(closed)
        return closed

    def begin_period(self, start_ns: int) -> None:
        """A new period: forget the entries (the previous period's final snapshot handed them out)."""
        self._flush()  # (the summary counts every increment, snapshot or not)
        self._reset()

    # -- snapshots ------------------------------------------------------------------------------------

    def drain(self) -> RollupRows:
        """The rows closed since the previous drain and the open rows changed since, taken."""
        return self._rows(take=True)

    def peek(self) -> RollupRows:
        """What :meth:`drain` would hand out now, left in place."""
        return self._rows(take=False)

    def forget_unread(self) -> None:
        """No one will read this task's rows (the engine's group has no writer and no snapshot callback,
        and nothing looks at the tasks while it runs: ``analyze`` without ``--out``): from now on the
        entries that close during the run are counted in :attr:`RollupSummary.rows_out` as they close,
        not kept as rows for a snapshot (:meth:`drain`, :meth:`peek` no longer show them). Memory then
        follows the open buckets, not the length of the capture (a 24-hour trace keyed on 18 enrichment
        dimensions kept 4.4 M closed rows until its end); the report is the same."""
        self.unread = True

    def discard(self) -> None:
        """:meth:`drain` for a snapshot no one reads (the engine's final snapshot of a group without
        writers or snapshot callbacks: ``analyze`` without ``--out``): the same state afterwards and the
        same :attr:`RollupSummary.rows_out`, the rows counted instead of made."""
        self._flush()
        fine_n = 0
        for r, table in enumerate(self.tables):
            if r and self._lazy:  # a view of the finest table: its rows are the finest's
                current = fine_n
            else:
                current = fine_n = int(kern.count_changed(table.rec32, table.rw, 1))
            self.summary.rows_out[RESOLUTIONS[r].label] += sum(len(p) for p in self._outbox[r]) + current
            self._outbox[r] = []

    def snapshot(self) -> RollupRows:
        """:meth:`peek` (the name every task offers for a look at its state)."""
        return self.peek()

    def _rows(self, take: bool) -> RollupRows:
        self._flush()
        parts: list[_Rows] = []
        res: list[np.ndarray] = []
        fine_open: _Rows | None = None
        for r, table in enumerate(self.tables):
            if r and self._lazy:  # a view of the finest table (_materialize)
                assert fine_open is not None
                current = self._view_rows(fine_open, r)
            else:
                out = _Rows.empty(table.count, self.words)
                n = kern.collect(1 if take else 0, *table.arrays(), *out.arrays())
                current = fine_open = out.head(n)
            mine = [p if isinstance(p, _Rows) else p.rows() for p in (*self._outbox[r], current) if len(p)]
            m = sum(len(p) for p in mine)
            if take:
                self._outbox[r] = []
                self.summary.rows_out[RESOLUTIONS[r].label] += m
            parts += mine
            res.append(np.full(m, r, np.uint8))
        all_rows = _Rows.concat(parts, self.words)
        words: np.ndarray | CodedWords = all_rows.dims
        if not self._identity:  # the key words, decoded when read (a report may never read them)
            words = CodedWords(all_rows.dims, self._decode_args, self._luts())
        return RollupRows(
            self.name,
            self.params.dimensions,
            np.concatenate(res),
            all_rows.bkt,
            all_rows.epoch,
            words,
            all_rows.pk,
            all_rows.by,
            dict(self._dictionaries),
            self.summary,
        )

    @property
    def summary(self) -> RollupSummary:
        """Since the task started (see :class:`RollupSummary`): pending increments carried first."""
        self._flush()
        return self._summary

    @property
    def open_entries(self) -> dict[str, int]:
        self._flush()  # the coarser tables' entries include the pending increments'
        return {res.label: self._entries(r) for r, res in enumerate(RESOLUTIONS)}

    @property
    def memory_bytes(self) -> int:
        tables = sum(t.rec.nbytes + t.epoch.nbytes + t.touched.nbytes for t in self.tables)
        return tables + self._scratch.nbytes + self._tuples.nbytes


def _country_of(lo: np.ndarray) -> np.ndarray:
    """Country codes of side codes' low words ((m, 1) uint32)."""
    return (lo >> np.uint32(CC_SHIFT)) & np.uint32(CC_MASK)


def _attribute_of(codes: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """A network attribute's codes (``codes``: per class) of side codes' low words ((m, 1) uint32)."""
    return codes[lo & np.uint32(CLASS_MASK)].astype(np.uint32)


@dataclass(frozen=True)
class CodedWords:
    """Rows' dimension words held as the task's key words: ``keys`` (``(m, key words)`` uint32) and how
    they read as the rows' words (``args``: :func:`~netspectra.rollup.kernels.decode_words`' word, shift,
    mask and table per row word; ``luts``: the task's tables as they were when the rows were handed out —
    codes are only ever added, never changed). A fifth of the rows' words' memory (5 key words for the
    21 row words of 18 enriched dimensions), and a column reads without the others (:meth:`column`)."""

    keys: np.ndarray
    args: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    luts: np.ndarray

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def row_words(self) -> int:
        return int(self.args[0].shape[0])

    def all(self) -> np.ndarray:
        """``(m, row_words)`` uint32: every row's words."""
        out = np.empty((len(self), self.row_words), np.uint32)
        kern.decode_words(np.ascontiguousarray(self.keys), *self.args, self.luts, out)
        return out

    def column(self, r: int) -> np.ndarray:
        """``(m,)`` uint32: row word ``r`` of every row."""
        word_of, shift_of, mask_of, lut_of = self.args
        t = int(lut_of[r])
        lut = self.luts[t] if t >= 0 else np.zeros(0, np.uint32)
        out = np.empty(len(self), np.uint32)
        keys = np.ascontiguousarray(self.keys)
        kern.decode_word(keys, word_of[r], shift_of[r], mask_of[r], np.ascontiguousarray(lut), out)
        return out

    def take(self, index: np.ndarray) -> CodedWords:
        return CodedWords(self.keys[index], self.args, self.luts)

    def reads(self, other: CodedWords) -> bool:
        """Whether ``other``'s key words read the same with this one's tables: the same plan, and every
        entry ``other``'s tables hold the same in this one's (a later snapshot of the same task: codes
        added since, where ``other``'s tables hold 0, the padding of a shorter table)."""
        n = other.luts.shape[1]
        if not (
            all(np.array_equal(a, b) for a, b in zip(self.args, other.args, strict=True))
            and self.keys.shape[1] == other.keys.shape[1]
            and self.luts.shape[0] == other.luts.shape[0]
            and self.luts.shape[1] >= n
        ):
            return False
        held = other.luts != 0
        return bool(np.array_equal(self.luts[:, :n][held], other.luts[held]))


_U64_MASK = (1 << 64) - 1


#: The most (resolution, bucket) slots :func:`_time_columns` ranks in a table (4 M: 36 MB of it).
_TIME_SLOTS = 1 << 22


def _time_columns(res: np.ndarray, bkt: np.ndarray) -> list[tuple[np.ndarray, int, int]]:
    """Columns (values, smallest, largest) whose order is the rows' order by resolution, then bucket: the
    rank of the row's (resolution, bucket) among those present when their slots fit a table (each
    resolution's buckets from its first to its last), so that a day of 1-minute, 5-minute and 1-hour
    buckets takes 11 bits of a sort key (1,752 present) instead of 2 + 11; else the resolution and the
    bucket's offset from its resolution's first (modulo 2**64: exact, the offsets are below 2**64)."""
    present = np.flatnonzero(np.bincount(res)).tolist()
    firsts = np.zeros(present[-1] + 1, np.int64)
    sizes = np.zeros(present[-1] + 1, np.int64)
    for r in present:
        of_r = bkt[res == r]
        firsts[r] = of_r.min()
        sizes[r] = min(int(of_r.max()) - int(firsts[r]) + 1, _TIME_SLOTS + 1)  # (no overflow)
    offsets = bkt.view(np.uint64) - firsts.view(np.uint64)[res]
    if int(sizes.sum()) > _TIME_SLOTS:
        return [(res.astype(np.uint64), present[0], present[-1]), (offsets, 0, int(offsets.max()))]
    slot = offsets + (np.cumsum(sizes) - sizes).view(np.uint64)[res]  # resolution r's from its start on
    seen = np.zeros(int(sizes.sum()), bool)
    seen[slot] = True
    rank = np.cumsum(seen, dtype=np.uint32) - np.uint32(1)
    return [(rank[slot], 0, int(rank[-1]))]


def _group_ids(
    res: np.ndarray, bkt: np.ndarray, width: int, column: Callable[[int], np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the number of its group of equal (resolution, bucket, dimension words), the groups numbered
    in numeric order of those (the bucket signed); and the rows in the order of their groups, each
    group's rows in their own order. ``column(j)``: dimension word ``j`` of every row (``j < width``),
    asked for once each, so that the words need never be held all at once.

    Each column is taken as its offset from its smallest value (the resolution and bucket: as
    :func:`_time_columns` gives them), in as many bits as its largest offset needs (none for a constant
    column), and the columns are packed in order, most significant first, into as few 64-bit keys as they fit
    (:func:`~netspectra.rollup.kernels.pack_key`): the keys' order is the columns' order, so the rows
    are sorted by those few keys. Rollup rows have narrow columns (codes, protocols, 16-bit AS numbers,
    a few buckets): 18 dimensions fit two or three keys, and 2 M rows are numbered in about a second on
    the 2-core VM (sorting the 20-odd columns one after the other took 5 s)."""
    n = res.shape[0]
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys: list[np.ndarray] = []
    free = 0
    times = _time_columns(res, bkt)
    for j in range(len(times) + width):
        if j < len(times):
            col, lo, hi = times[j]
        else:
            col = column(j - len(times))
            lo, hi = int(col.min()), int(col.max())
        bits = (hi - lo).bit_length()
        if bits == 0:
            continue  # constant: no order to give
        if bits > free:
            keys.append(np.zeros(n, np.uint64))
            free = 64
        free -= bits
        kern.pack_key(col, np.uint64(lo & _U64_MASK), np.uint64(free), keys[-1])
    if not keys:
        return np.zeros(n, np.int64), np.arange(n)
    # the least significant key first, then each more significant one, stably (np.lexsort: 4x slower);
    # the first sort need not be stable (0.4 s against 0.7 for 4.5 M keys): the rows of a group (rows
    # of equal keys, few) are put in their own order afterwards
    order = np.argsort(keys[-1])
    for k in reversed(keys[:-1]):
        order = order[np.argsort(k[order], kind="stable")]
    new = np.ones(n, bool)
    if n > 1:
        new[1:] = False
        for k in keys:
            ranked = k[order]
            new[1:] |= ranked[1:] != ranked[:-1]
    ranks = np.cumsum(new) - 1
    shared = ~new  # the sorted rows of a group of several: not its first, or followed by its next
    shared[:-1] |= ~new[1:]
    at = np.flatnonzero(shared)
    if len(at):
        rows = order[at]
        order[at] = rows[np.lexsort((rows, ranks[at]))]
    group = np.empty(n, np.int64)
    group[order] = ranks
    return group, order


def _latest_summed(
    group: np.ndarray, order: np.ndarray, rank: np.ndarray, ids: int, pk: np.ndarray, by: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`RollupRows.combine`'s sums: per group (``group``, ``order``: :func:`_group_ids`), the latest
    row of each identity (``rank`` of ``ids``: the row's period and epoch) summed; the first such row of
    each group (where its row goes), and the sums."""
    # the rows sorted by group, then identity, then position (a stable sort: later parts later), so that
    # the last row of each identity is its latest version: the groups' order for one identity, else one
    # int64 key when it fits (few periods and epochs), else a sort of the three
    if ids == 1:
        idx = order
        ident = group[idx]
    elif len(group) * ids < 1 << 62:
        key = group * ids + rank
        idx = np.argsort(key, kind="stable")
        ident = key[idx]
    else:
        idx = np.lexsort([np.arange(len(group)), rank, group])
        ident = np.column_stack([group, rank])[idx]
    last_of = np.ones(len(idx), bool)
    if len(idx) > 1:
        differs = ident[1:] != ident[:-1]
        last_of[:-1] = differs if differs.ndim == 1 else differs.any(axis=1)
    keep = idx[last_of]  # the latest version of each identity
    starts = np.ones(len(keep), bool)
    if len(keep) > 1:
        kept = group[keep]
        starts[1:] = kept[1:] != kept[:-1]
    first = np.flatnonzero(starts)
    sel = keep[first]
    if len(first) == len(keep):  # one identity per group (no early close, no second period): no sums
        return sel, pk[sel], by[sel]
    # saturating sums, as the counters (netspectra.weights)
    return sel, sat_reduceat(pk[keep], first), sat_reduceat(by[keep], first)


@dataclass
class RollupRows:
    """Rows of a rollup task (a snapshot: an increment, see :mod:`netspectra.rollup.task`).

    Per row: ``resolution`` (index into :data:`~netspectra.rollup.dims.RESOLUTIONS`), ``bucket`` (the
    bucket's index: its start is ``bucket * width``), ``epoch``, the dimension ``words`` (``(m, words)``
    uint32, in the order of ``dimensions``), ``packets`` and ``bytes`` (cumulative for the row's
    identity). ``dictionaries`` decode the text dimensions' codes.

    The words may be given as the task's key words (:class:`CodedWords`, :mod:`netspectra.rollup.codes`):
    they are decoded when :attr:`words` is first read, once, and a column at a time by
    :meth:`word_column`, :meth:`columns` and :meth:`combine`, which never decode them all.
    """

    task_name: str
    dimensions: tuple[str, ...]
    resolution: np.ndarray
    bucket: np.ndarray
    epoch: np.ndarray
    _words: np.ndarray | CodedWords
    packets: np.ndarray
    bytes: np.ndarray
    dictionaries: dict[str, tuple[str, ...]]
    summary: RollupSummary | None = None

    #: Increments, never superseded by a later snapshot (see :mod:`netspectra.engine.groups`).
    incremental = True
    kind = "rollup"

    def __len__(self) -> int:
        return int(self.bucket.shape[0])

    @property
    def words(self) -> np.ndarray:
        """``(m, words)`` uint32: each row's dimension words (see the class docstring)."""
        if isinstance(self._words, CodedWords):
            self._words = self._words.all()
        return self._words

    def word_column(self, r: int) -> np.ndarray:
        """``(m,)`` uint32: row word ``r`` of every row (a copy)."""
        if isinstance(self._words, CodedWords):
            return self._words.column(r)
        return np.ascontiguousarray(self._words[:, r])

    def take(self, index: np.ndarray) -> RollupRows:
        return RollupRows(
            self.task_name,
            self.dimensions,
            self.resolution[index],
            self.bucket[index],
            self.epoch[index],
            self._words.take(index) if isinstance(self._words, CodedWords) else self._words[index],
            self.packets[index],
            self.bytes[index],
            self.dictionaries,
            self.summary,
        )

    def at(self, resolution: int) -> RollupRows:
        """The rows of one resolution (an index into :data:`~netspectra.rollup.dims.RESOLUTIONS`)."""
        return self.take(np.flatnonzero(self.resolution == resolution))

    def bucket_ns(self) -> np.ndarray:
        """Each row's bucket start, UTC ns."""
        widths = np.array([r.ns for r in RESOLUTIONS], np.int64)
        return self.bucket * widths[self.resolution]

    def columns(self, *, dictionary: bool = False) -> dict[str, Any]:
        """The dimension columns, decoded: numbers as uint32/uint8 arrays, texts and addresses as Arrow
        string arrays (``""`` unknown; a code no dictionary holds reads ``#<code>``), made by Arrow's
        kernels, not a Python string per row (2 M rows of 14 text dimensions: 5 s that way).
        ``dictionary``: the text dimensions as Arrow dictionary arrays of those strings (the codes and
        the words, not a string per row: 700 MB less for 4.5 M rows of 14 text dimensions)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from netspectra.output.addr import ips_to_arrow

        out: dict[str, Any] = {}
        j = 0
        for name in self.dimensions:
            dim = BY_NAME[name]
            at, j = j, j + dim.words
            first = self.word_column(at)
            if dim.kind == "number":
                out[name] = first.astype(np.uint8) if dim.clickhouse == "UInt8" else first
            elif dim.kind == "address":
                part = np.column_stack([first, *(self.word_column(at + k) for k in range(1, dim.words))])
                raw = part.view(np.uint8).reshape(-1, 16)
                texts = ips_to_arrow(raw) if len(raw) else pa.array([], pa.string())
                none = ~raw.any(axis=1)
                out[name] = (
                    pc.if_else(pa.array(none), pa.scalar("", pa.string()), texts) if none.any() else texts
                )
            else:
                words = list(self.dictionaries.get(name, ("",)))
                codes = first.astype(np.int64)
                beyond = codes >= len(words)
                if beyond.any():  # codes without a word (a dictionary not handed over): "#<code>"
                    extra = np.unique(codes[beyond])
                    codes[beyond] = len(words) + np.searchsorted(extra, codes[beyond])
                    words += [f"#{c}" for c in extra.tolist()]
                if dictionary:
                    # only the words the rows use: a writer's dictionary page and its codes' bit width
                    # are those of the dictionary (a country column against all 250 codes: 70 % larger)
                    used = np.bincount(codes, minlength=len(words)) > 0
                    if not used.all():
                        codes = (np.cumsum(used) - 1)[codes]
                        words = [w for w, u in zip(words, used.tolist(), strict=True) if u]
                    out[name] = pa.DictionaryArray.from_arrays(
                        pa.array(codes.astype(np.int32)), pa.array(words, pa.string())
                    )
                else:
                    out[name] = pa.array(words, pa.string()).take(pa.array(codes))
        return out

    def to_arrow(self, *, dictionary: bool = False) -> Any:
        """One Arrow table: ``TaskName``, ``Resolution`` (``1m``/``5m``/``1h``), ``Bucket`` (start, UTC),
        ``Epoch``, the dimensions (decoded), ``Packets``, ``Bytes``. ``dictionary``: the text columns as
        dictionary arrays (:meth:`columns`)."""
        import pyarrow as pa

        m = len(self)
        labels = pa.array([r.label for r in RESOLUTIONS], pa.string())
        names = pa.array([self.task_name], pa.string())
        which = pa.array(self.resolution.astype(np.int32))
        cols: dict[str, Any] = {
            "TaskName": pa.DictionaryArray.from_arrays(pa.array(np.zeros(m, np.int32)), names)
            if dictionary
            else names.take(pa.array(np.zeros(m, np.int64))),
            "Resolution": pa.DictionaryArray.from_arrays(which, labels) if dictionary else labels.take(which),
            "Bucket": pa.array(self.bucket_ns(), pa.timestamp("ns", tz="UTC")),
            "Epoch": pa.array(self.epoch, pa.int64()),
        }
        for name, values in self.columns(dictionary=dictionary).items():
            cols[name] = values if isinstance(values, pa.Array) else pa.array(values)
        cols["Packets"] = pa.array(self.packets, pa.uint64())
        cols["Bytes"] = pa.array(self.bytes, pa.uint64())
        return pa.table(cols)

    @staticmethod
    def combine(parts: Sequence[tuple[int, RollupRows]]) -> RollupRows | None:
        """The totals of a sequence of increments of one task, each with the period it was handed out in
        (``(period_start_ns, rows)``): per identity (period, resolution, bucket, dimensions, epoch) the
        latest row (a later part replaces an earlier one), then summed: one row per (resolution, bucket,
        dimension tuple), sorted, epochs 0. ``None`` without parts."""
        if not parts:
            return None
        last = parts[-1][1]
        dictionaries: dict[str, tuple[str, ...]] = {}
        for _, p in parts:
            for k, v in p.dictionaries.items():
                if len(v) > len(dictionaries.get(k, ())):
                    dictionaries[k] = v

        def joined(arrays: list[np.ndarray]) -> np.ndarray:
            return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)  # (one part: not copied)

        res = joined([p.resolution for _, p in parts]).astype(np.int64)
        bkt = joined([p.bucket for _, p in parts])
        epoch = joined([p.epoch for _, p in parts])
        pk = joined([p.packets for _, p in parts])
        by = joined([p.bytes for _, p in parts])
        # The parts' key words when they all read with one part's tables (the parts of one task: its
        # rows' words are then never all decoded at once), else their words.
        coded = [p._words for _, p in parts if isinstance(p._words, CodedWords)]
        widest = max(coded, key=lambda w: w.luts.shape[1]) if len(coded) == len(parts) else None
        words: np.ndarray | CodedWords
        if widest is not None and all(widest.reads(w) for w in coded):
            words = CodedWords(joined([w.keys for w in coded]), widest.args, widest.luts)
            group, order = _group_ids(res, bkt, words.row_words, words.column)
        else:
            matrix = joined([p.words for _, p in parts])
            group, order = _group_ids(res, bkt, matrix.shape[1], lambda j: matrix[:, j])
            words = matrix
        # A row's identity within its group: (period, epoch), ranked in that order (_latest_summed)
        if len(epoch) == 0 or epoch.min() == epoch.max():
            rank, ids = np.zeros(len(epoch), np.int64), 1
        else:
            epochs, rank = np.unique(epoch, return_inverse=True)
            ids = len(epochs)
        if len({start for start, _ in parts}) > 1:
            periods, p_rank = np.unique(
                joined([np.full(len(p), start, np.int64) for start, p in parts]), return_inverse=True
            )
            rank = p_rank * ids + rank
            ids *= len(periods)
        if ids == 1 and (len(group) == 0 or int(group.max()) == len(group) - 1):  # each row its own group
            sel = order
            pk_sum, by_sum = pk[sel], by[sel]
        else:
            sel, pk_sum, by_sum = _latest_summed(group, order, rank, ids, pk, by)
        return RollupRows(
            last.task_name,
            last.dimensions,
            res[sel].astype(np.uint8),
            bkt[sel],
            np.zeros(len(sel), np.int64),
            words.take(sel) if isinstance(words, CodedWords) else words[sel],
            pk_sum,
            by_sum,
            dictionaries,
            last.summary,
        )
