"""The rollup kernels agree with their plain-Python references: rows into (bucket, dimensions) entries,
records spread over the buckets they overlap, increments folded into coarser tables, tables rebuilt."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.rollup import kernels as kern
from netspectra.rollup.layout import PENDING, STATE_MASK, record_words
from netspectra.rollup.task import _INT64_MIN, _Rows, _Table

MIN = 60 * 10**9
T0 = 1_700_000_000 * 10**9


def _table_dict(t: _Table) -> dict[tuple[int, tuple[int, ...]], tuple[int, int]]:
    used = (t.state & STATE_MASK) != kern.EMPTY
    return {
        (int(b), tuple(int(x) for x in d)): (int(p), int(y))
        for b, d, p, y in zip(t.bkt[used], t.dims[used], t.pk[used], t.by[used], strict=True)
    }


def _apply(t: _Table, end, start, packets, nbytes, mat, limit: int) -> int:
    """Apply a batch as the task does: stop, grow, resume; returns how many stops there were."""
    i, stops, n = 0, 0, end.shape[0]
    while True:
        i = kern.aggregate_rows(
            i, end, start, packets, nbytes, mat, MIN, 86_400 * 10**9, min(t.cap // 2, limit), 0,
            t.rec, t.reci, t.rec32, t.rw, t.epoch, t.touched, t.meta,
        )  # fmt: skip
        if i >= n:
            return stops
        stops += 1
        # (the task carries the increments first; here only the finest table is checked)
        t.meta[kern.M_TOUCHED] = 0
        t.state[:] &= ~np.uint32(PENDING)
        assert len(t.rehash(_INT64_MIN, t.cap * 2)) == 0


@pytest.mark.parametrize("weighted", [False, True])
def test_aggregate_rows_matches_the_reference(weighted: bool) -> None:
    rng = np.random.default_rng(7)
    n, d = 20_000, 3
    end = T0 + rng.integers(0, 30 * MIN, n)
    mat = rng.integers(0, 4, (n, d)).astype(np.uint32)
    nbytes = rng.integers(40, 1500, n).astype(np.uint64)
    start = packets = None
    if weighted:  # flow-export rows: spans of up to 10 minutes, big counts, some reversed spans
        start = end - rng.integers(0, 10 * MIN, n)
        start[:50] = end[:50] + 5  # first after last: counted at its last packet
        packets = rng.integers(1, 10**9, n).astype(np.uint64)
        nbytes = packets * rng.integers(40, 1500, n).astype(np.uint64)
        packets[100:130] = 0  # empty records (with bytes): stand for nothing (netspectra.weights)
    t = _Table(d, 16, finest=True)
    stops = _apply(
        t,
        end,
        start if start is not None else np.empty(0, np.int64),
        packets if packets is not None else np.empty(0, np.uint64),
        nbytes,
        mat,
        1 << 30,
    )
    assert stops > 3  # the table grew while the batch was applied, without losing a row
    want = kern.aggregate_ref(end, start, packets, nbytes, mat, MIN, 86_400 * 10**9)
    assert _table_dict(t) == want
    assert t.meta[kern.M_LOW] == min(k for k, _ in want)  # the lowest open bucket, through the rebuilds
    total_p = int(packets.sum()) if packets is not None else n
    counted = packets != 0 if packets is not None else np.ones(n, bool)
    assert sum(p for p, _ in want.values()) == total_p
    assert sum(b for _, b in want.values()) == int(nbytes[counted].sum())
    assert t.meta[kern.M_EMPTY] == (30 if weighted else 0)


def test_split_is_exact_and_proportional() -> None:
    # 10 minutes from 00:00:30: 30 s in the first bucket, 60 s in the next nine... and 30 s in the last
    start, end = T0 - T0 % MIN + 30 * 10**9, T0 - T0 % MIN + 630 * 10**9
    parts = kern.split_ref(start, end, 1_000_000, 7_000_003, MIN, 86_400 * 10**9)
    assert len(parts) == 11
    assert sum(p for p, _ in parts.values()) == 1_000_000
    assert sum(b for _, b in parts.values()) == 7_000_003
    shares = [p for _, (p, _) in sorted(parts.items())]
    assert shares[0] == 50_000 and shares[-1] == 50_000 and all(s == 100_000 for s in shares[1:-1])
    # an instant, a span ending exactly on a boundary (the next bucket gets nothing), a clamped span
    assert kern.split_ref(end, end, 3, 9, MIN, 86_400 * 10**9) == {end // MIN: (3, 9)}
    b = T0 - T0 % MIN
    assert kern.split_ref(b - MIN, b, 6, 6, MIN, 86_400 * 10**9) == {b // MIN - 1: (6, 6)}
    assert set(kern.split_ref(0, b, 5, 5, MIN, 2 * MIN)) == {b // MIN - 2, b // MIN - 1}


def test_fold_carries_the_batch_increments_to_coarser_buckets() -> None:
    rng = np.random.default_rng(3)
    n = 5000
    end = T0 + rng.integers(0, 3 * 3600 * 10**9, n)
    mat = rng.integers(0, 3, (n, 2)).astype(np.uint32)
    nbytes = rng.integers(40, 1500, n).astype(np.uint64)
    fine = _Table(2, 1 << 14, finest=True)
    _apply(fine, end, np.empty(0, np.int64), np.empty(0, np.uint64), nbytes, mat, 1 << 30)
    for ratio in (5, 60):
        coarse = _Table(2, 16, finest=False)
        nt = int(fine.meta[kern.M_TOUCHED])
        t = 0
        while t < nt:
            t = kern.fold(
                t, fine.touched, nt, 2, fine.rec, fine.reci, fine.rec32, ratio,
                coarse.cap // 2, 0, coarse.rec, coarse.reci, coarse.rec32, coarse.rw, coarse.epoch,
                coarse.meta, False,
            )  # fmt: skip
            if t < nt:
                coarse.rehash(_INT64_MIN, coarse.cap * 2)
        want: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        for (b, dims), (p, y) in _table_dict(fine).items():
            got = want.setdefault((b // ratio, dims), [0, 0])
            got[0] += p
            got[1] += y
        assert _table_dict(coarse) == {k: tuple(v) for k, v in want.items()}
        assert coarse.meta[kern.M_LOW] == min(b for b, _ in want)


def test_open_buckets_lists_the_bucket_of_every_open_entry_in_slot_order() -> None:
    """open_buckets (an early close's median and the overload guard read it) = the numpy selection of the
    state and bucket columns, pending and handed-out entries included, none of an empty table."""
    rng = np.random.default_rng(5)
    n = 3000
    end = T0 + rng.integers(0, 2 * 3600 * 10**9, n)
    mat = rng.integers(0, 40, (n, 3)).astype(np.uint32)
    t = _Table(3, 1 << 13, finest=True)
    assert t.open_buckets().tolist() == []
    _apply(t, end, np.empty(0, np.int64), np.empty(0, np.uint64), np.ones(n, np.uint64), mat, 1 << 30)
    out = _Rows.empty(t.count, 3)
    kern.collect(1, *t.arrays(), *out.arrays())  # some handed out, then some pending again
    t.state[: t.cap // 2] |= np.where(t.state[: t.cap // 2] != 0, np.uint32(PENDING), np.uint32(0))
    got = t.open_buckets()
    assert got.dtype == np.int64 and len(got) == t.count > 1000
    assert got.tolist() == t.bkt[t.state != kern.EMPTY].tolist()


def test_rehash_closes_old_buckets_and_hands_out_only_changed_ones() -> None:
    mat = np.array([[1], [2], [1], [2]], np.uint32)
    end = np.array([0, 0, 5, 5], np.int64) * MIN + T0 - T0 % MIN
    t = _Table(1, 64, finest=True)
    _apply(t, end, np.empty(0, np.int64), np.empty(0, np.uint64), np.ones(4, np.uint64), mat, 1 << 30)
    # hand out everything (state: open, unchanged), then change one entry of the old bucket
    out = _Rows.empty(t.count, 1)
    assert kern.collect(1, *t.arrays(), *out.arrays()) == 4
    slot = int(np.flatnonzero((t.state != 0) & (t.dims[:, 0] == 1) & (t.bkt == end[0] // MIN))[0])
    t.state[:] &= ~np.uint32(PENDING)  # (carried)
    t.state[slot] = kern.DIRTY
    closed = t.rehash(int(end[0] // MIN), t.cap)
    assert len(closed) == 1 and closed.dims[0, 0] == 1  # the changed one; the other closed silently
    assert t.count == 2 and set(t.bkt[t.state != 0].tolist()) == {end[2] // MIN}
    assert t.meta[kern.M_LOW] == end[2] // MIN


@pytest.mark.parametrize("words", [1, 4])
def test_add_marginals_matches_the_reference(words: int) -> None:
    """Per-value sums of one dimension (1 word: AS numbers, codes; 4 words: an address), through the
    table's doublings, equal the plain-Python sums; exact beyond 2**53 (exported byte counts)."""
    from netspectra.rollup.task import Marginal

    rng = np.random.default_rng(11)
    m = Marginal(words, cap=16)
    want: dict[tuple[int, ...], list[int]] = {}
    for n in (1, 300, 5000, 20_000):
        part = rng.integers(0, 3000 if words == 1 else 40, (n, words)).astype(np.uint32)
        pk = rng.integers(1, 10**6, n).astype(np.uint64)
        by = rng.integers(2**54, 2**55, n).astype(np.uint64)
        m.add(part, pk, by)
        kern.add_marginals_ref(want, part, pk, by)
    got = m.as_dict()
    assert got == want and len(m) == len(want) and m.keys.shape[0] >= 2 * len(want)
    assert max(b for _, b in want.values()) > 2**53


def test_counters_saturate_like_the_reference() -> None:
    """Hostile exporter values (records of 2**64 - 1 bytes and packets): the finest table's counters, its
    increments to carry and the marginals stop at 2**64 - 1 instead of wrapping, as the references do."""
    from netspectra.rollup.task import Marginal
    from netspectra.weights import COUNT_MAX

    n = 6
    end = np.full(n, T0 + 5, np.int64)  # one bucket, one dimension tuple for the first four rows
    mat = np.array([[1, 1, 1, 1, 2, 2]], np.uint32).T.copy()
    packets = np.array([COUNT_MAX, 3, 1, COUNT_MAX - 1, 2**63, 2**63 - 1], np.uint64)
    nbytes = np.array([COUNT_MAX, COUNT_MAX, 7, 1, 2**63, 2**63 - 1], np.uint64)
    t = _Table(1, 16, finest=True)
    _apply(t, end, end.copy(), packets, nbytes, mat, 1 << 30)
    want = kern.aggregate_ref(end, end, packets, nbytes, mat, MIN, 86_400 * 10**9)
    assert _table_dict(t) == want
    b = T0 // MIN
    assert want == {(b, (1,)): (COUNT_MAX, COUNT_MAX), (b, (2,)): (COUNT_MAX, COUNT_MAX)}
    used = t.state != kern.EMPTY
    assert set(t.bpk[used].tolist()) == set(t.bby[used].tolist()) == {COUNT_MAX}  # the increments to carry
    m = Marginal(1, cap=16)
    m.add(mat, packets, nbytes)
    ref: dict[tuple[int, ...], list[int]] = {}
    kern.add_marginals_ref(ref, mat, packets, nbytes)
    assert m.as_dict() == ref == {(1,): [COUNT_MAX, COUNT_MAX], (2,): [COUNT_MAX, COUNT_MAX]}


def test_an_entry_record_is_whole_cache_lines() -> None:
    """An entry is one record of whole 64-byte lines (netspectra.rollup.layout), 64-byte aligned: one
    line up to 5 dimension words, two up to 21 (the 18 dimensions of a large auto task)."""
    assert [record_words(d) for d in (1, 5, 6, 21, 22)] == [8, 8, 16, 16, 24]
    t = _Table(21, 16, finest=True)
    assert t.rec.ctypes.data % 64 == 0 and t.rec.nbytes == 16 * 128
    assert t.state.shape == t.bkt.shape == (16,) and t.dims.shape == (16, 21)


@pytest.mark.parametrize("shape", [(1, 1), (21, 1000), (7, 64), (3, 65)])
def test_transpose_words_matches_numpy(shape: tuple[int, int]) -> None:
    cols = np.random.default_rng(4).integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32)
    out = np.empty(shape[::-1], np.uint32)
    kern.transpose_words(cols, out)
    assert np.array_equal(out, np.ascontiguousarray(cols.T))


def test_gather_increments_reads_the_pending_increments_of_the_slots() -> None:
    """``gather_increments``: per slot the dimension words (by word), pending packets and bytes, and the
    bucket range — what the strided numpy gathers of the table's columns give."""
    from netspectra.batch import PacketBatch
    from netspectra.rollup.task import RollupParams, RollupTask

    rng = np.random.default_rng(17)
    task = RollupTask("t", RollupParams(("Protocol", "Exporter", "SrcAS")), capacity=16)
    b = PacketBatch.empty(5000, PacketBatch.EXPORT_COLUMNS)
    for column in b.columns():
        getattr(b, column)[...] = rng.integers(0, 7, getattr(b, column).shape)
    b.ts_ns[:] = rng.integers(0, 10 * 60 * 10**9, 5000)
    b.flow_start_ns[:] = b.ts_ns
    b.packets[:] = rng.integers(1, 9, 5000)
    task.update(b.with_dims({"SrcAS": rng.integers(0, 50, 5000).astype(np.uint32)}))
    fine = task.tables[0]
    slots = np.flatnonzero(fine.state != 0)[::-1].copy()  # in no order the table has
    assert len(slots) > 100
    words = np.empty((task.words, len(slots)), np.uint32)
    pk, by = np.empty(len(slots), np.uint64), np.empty(len(slots), np.uint64)
    fine.state[slots] |= np.uint32(PENDING)  # (every entry with increments to take)
    state = fine.state.copy()
    lo, hi = kern.gather_increments(
        slots, task.words, fine.rec, fine.reci, fine.rec32, fine.rw, words, pk, by, 0
    )
    assert np.array_equal(words.T, fine.dims[slots])
    assert np.array_equal(pk, fine.bpk[slots]) and np.array_equal(by, fine.bby[slots])
    assert (lo, hi) == (fine.bkt[slots].min(), fine.bkt[slots].max())
    assert np.array_equal(fine.state, state)  # read only
    # clear: the same answers, and the slots' PENDING bits (only theirs) cleared as they are read
    half = slots[: len(slots) // 2].copy()
    w2 = np.empty((task.words, len(half)), np.uint32)
    pk2, by2 = np.empty(len(half), np.uint64), np.empty(len(half), np.uint64)
    got = kern.gather_increments(half, task.words, fine.rec, fine.reci, fine.rec32, fine.rw, w2, pk2, by2, 1)
    assert got == (fine.bkt[half].min(), fine.bkt[half].max())
    assert np.array_equal(w2, words[:, : len(half)]) and np.array_equal(pk2, pk[: len(half)])
    want = state.copy()
    want[half] &= ~np.uint32(PENDING)
    assert np.array_equal(fine.state, want)


def test_aggregate_rows_mixed_rows_keep_the_order_of_first_increments() -> None:
    """Instants (counted from the kernel's list of pending rows) and records over several buckets
    (counted at once, after the list) interleaved, across stops: the same entries and sums as the
    reference, and ``touched`` lists each entry once, in the order of its first increment."""
    rng = np.random.default_rng(11)
    n, d = 5_000, 2
    end = T0 + rng.integers(0, 20 * MIN, n)
    start = end.copy()
    spans = rng.random(n) < 0.3
    start[spans] -= rng.integers(1, 5 * MIN, int(spans.sum()))
    packets = rng.integers(1, 50, n).astype(np.uint64)
    nbytes = packets * rng.integers(40, 1500, n).astype(np.uint64)
    mat = rng.integers(0, 3, (n, d)).astype(np.uint32)
    t = _Table(d, 1 << 12, finest=True)
    got = kern.aggregate_rows(
        0, end, start, packets, nbytes, mat, MIN, 86_400 * 10**9, t.cap // 2, 0,
        t.rec, t.reci, t.rec32, t.rw, t.epoch, t.touched, t.meta,
    )  # fmt: skip
    assert got == n
    want = kern.aggregate_ref(end, start, packets, nbytes, mat, MIN, 86_400 * 10**9)
    assert _table_dict(t) == want
    order: list[tuple[int, tuple[int, ...]]] = []
    seen: set[tuple[int, tuple[int, ...]]] = set()
    for i in range(n):
        dims = tuple(int(x) for x in mat[i])
        for b, (p, y) in kern.split_ref(int(start[i]), int(end[i]), int(packets[i]), int(nbytes[i]), MIN,
                                        86_400 * 10**9).items():  # fmt: skip
            if (p or y) and (b, dims) not in seen:
                seen.add((b, dims))
                order.append((b, dims))
    slots = t.touched[: int(t.meta[kern.M_TOUCHED])]
    listed = [(int(t.bkt[s]), tuple(int(x) for x in t.dims[s])) for s in slots]
    assert listed == order


def _probe(rec32: np.ndarray, rw: int, d: int, bkt: int, words: list[int]) -> int:
    """The slot linear probing finds (bkt, words) at (-1: not found before an empty slot)."""
    cap = rec32.shape[0] // (2 * rw)
    reci = rec32.view(np.int64)
    s = kern.hash_entry_ref(bkt, words) & (cap - 1)
    while rec32[2 * s * rw + kern.H_STATE] != kern.EMPTY:
        if int(reci[s * rw]) == bkt and [int(x) for x in rec32[2 * s * rw + kern.H_DIMS :][:d]] == words:
            return s
        s = (s + 1) & (cap - 1)
    return -1


@pytest.mark.parametrize(("d", "factor", "seed"), [(3, 2, 1), (5, 2, 2), (5, 4, 3), (1, 8, 4), (21, 2, 5)])
def test_grow_in_place_matches_the_reference_and_finds_every_entry(d: int, factor: int, seed: int) -> None:
    """Tables half full, with clusters that wrap around the end (entries in the first slots whose homes
    are in the last ones): grown in place, every record and epoch is where the reference puts it, every
    entry is found by probing from its new home, empty slots are zero, the lowest bucket is returned."""
    old_cap = 256
    t, entries = _filled(d, old_cap, old_cap // 2, seed, state=kern.DIRTY | PENDING)
    rw = t.rw
    assert t.state[0] != kern.EMPTY  # the wrapped cluster reaches the first slots
    old_rec, old_epoch = t.rec.copy(), t.epoch.copy()
    cap = factor * old_cap
    rec = np.zeros(cap * rw, np.uint64)
    rec[: old_cap * rw] = old_rec
    epoch = np.zeros(cap, np.int64)
    epoch[:old_cap] = old_epoch
    low = kern.grow_in_place(d, old_cap, rec, rec.view(np.int64), rec.view(np.uint32), rw, epoch)
    want_rec, want_epoch = kern.grow_ref(d, old_cap, cap, old_rec, rw, old_epoch)
    assert np.array_equal(rec, want_rec) and np.array_equal(epoch, want_epoch)
    assert low == min(b for b, _ in entries)
    rec32 = rec.view(np.uint32)
    for (b, words), e in entries.items():
        s = _probe(rec32, rw, d, b, list(words))
        assert s >= 0 and epoch[s] == e
    full = rec32.reshape(cap, 2 * rw)[:, kern.H_STATE] != kern.EMPTY
    assert full.sum() == len(entries)
    assert not rec.reshape(cap, rw)[~full].any() and not epoch[~full].any()


def _filled(
    d: int, cap: int, n: int, seed: int, state: int | None = None
) -> tuple[_Table, dict[tuple[int, tuple[int, ...]], int]]:
    """A table of ``cap`` slots holding ``n`` entries over three minutes (state ``state``, by default
    DIRTY or OPEN at random; random counts and epochs), the first few keys homed in its last slots: a
    cluster wraps around its end. Also its entries' epochs by key."""
    rng = np.random.default_rng(seed)
    t = _Table(d, cap, finest=True)
    entries: dict[tuple[int, tuple[int, ...]], int] = {}
    wanted_tail = 6
    while len(entries) < n:
        key = (int(T0 // MIN + rng.integers(0, 3)), tuple(int(x) for x in rng.integers(0, 5000, d)))
        home = kern.hash_entry_ref(key[0], list(key[1])) & (cap - 1)
        if key in entries or (wanted_tail and home < cap - 2):
            continue
        wanted_tail = max(0, wanted_tail - 1)
        s = home
        while t.state[s] != kern.EMPTY:
            s = (s + 1) & (cap - 1)
        t.bkt[s] = key[0]
        t.dims[s] = key[1]
        t.pk[s], t.by[s] = rng.integers(1, 1000, 2)
        t.state[s] = state if state is not None else (kern.DIRTY if rng.random() < 0.7 else kern.OPEN)
        t.epoch[s] = entries[key] = int(rng.integers(0, 5))
    t.meta[kern.M_COUNT] = n
    return t, entries


@pytest.mark.parametrize(
    ("d", "fill", "seed"), [(1, 0.5, 1), (3, 0.5, 2), (5, 0.45, 3), (21, 0.3, 4), (5, 0.5, 5)]
)
@pytest.mark.parametrize("minutes_closed", [0, 1, 2, 3])
def test_close_in_place_gives_the_rows_of_a_rebuild_and_keeps_every_other_entry_findable(
    d: int, fill: float, seed: int, minutes_closed: int
) -> None:
    """Clusters that wrap around the table's end, none, some or all of three minutes closing: the rows
    handed out are those of :func:`kernels.rehash` into a fresh table (the same rows, in another order),
    and so are the count kept and the lowest bucket; every entry kept is found by probing from its home
    with its record and epoch, the closed ones are not, empty slots are zero."""
    cap = 256
    t, entries = _filled(d, cap, int(cap * fill), seed)
    assert t.state[0] != kern.EMPTY  # the wrapped cluster reaches the first slots
    cutoff = int(T0 // MIN) - 1 + minutes_closed
    before = {
        (int(t.bkt[s]), tuple(int(x) for x in t.dims[s])): (t.rec.reshape(cap, -1)[s].copy(), int(t.epoch[s]))
        for s in np.flatnonzero(t.state != kern.EMPTY)
    }
    fresh = _Table(d, cap, finest=True)
    want = _Rows.empty(len(entries), d)
    kept_w, n_w, low_w = kern.rehash(
        cutoff, *t.arrays(), fresh.rec, fresh.reci, fresh.rec32, fresh.epoch, *want.arrays()
    )
    twin = _Table(d, cap, finest=True)  # the same table, closed without handing out (close_counted)
    twin.rec[:], twin.epoch[:], twin.meta[:] = t.rec, t.epoch, t.meta
    closed = t.rehash(cutoff, cap)  # at the same size: kernels.close_in_place

    def rows(r: _Rows) -> list[tuple]:
        return sorted(zip(*(a.tolist() for a in r.arrays()), strict=True))

    assert len(closed) == n_w and rows(closed) == rows(want.head(n_w))
    assert twin.close_counted(cutoff) == n_w
    assert np.array_equal(twin.rec, t.rec) and np.array_equal(twin.epoch, t.epoch)
    assert np.array_equal(twin.meta, t.meta)
    assert t.count == kept_w == sum(1 for b, _ in entries if b > cutoff)
    assert int(t.meta[kern.M_LOW]) == low_w
    rec32 = t.rec32
    for (b, words), (record, e) in before.items():
        s = _probe(rec32, t.rw, d, b, list(words))
        if b <= cutoff:
            assert s < 0
        else:
            assert s >= 0 and np.array_equal(t.rec.reshape(cap, -1)[s], record) and t.epoch[s] == e
    full = t.state != kern.EMPTY
    assert int(full.sum()) == t.count
    assert not t.rec.reshape(cap, -1)[~full].any() and not t.epoch[~full].any()


def test_a_close_lists_the_pending_entries_it_keeps_again() -> None:
    """A close with increments still pending (the task carries first; a caller that does not): the
    entries kept are listed in ``touched`` again at their new slots, the closed ones not at all."""
    t, entries = _filled(3, 128, 60, 7)
    used = np.flatnonzero(t.state != kern.EMPTY)
    t.state[used] |= np.uint32(PENDING)
    t.touched[: used.shape[0]] = used
    t.meta[kern.M_TOUCHED] = used.shape[0]
    cutoff = int(T0 // MIN)
    t.rehash(cutoff, t.cap)
    listed = t.touched[: int(t.meta[kern.M_TOUCHED])]
    assert sorted(listed.tolist()) == np.flatnonzero(t.state != kern.EMPTY).tolist()
    assert all(int(t.bkt[s]) > cutoff for s in listed)
    assert int(t.meta[kern.M_TOUCHED]) == sum(1 for b, _ in entries if b > cutoff)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counting_and_closing_in_turn_keeps_the_table_a_model_of_its_rows(seed: int) -> None:
    """Rows of a sliding window of minutes counted into a small table (clusters long and wrapping, entries
    moved by closes again and again), the oldest minutes closed after each batch, growths when it fills:
    after every step the open entries and their sums are those of a plain dict fed the same rows, the
    rows closed add up with the open entries to every row counted, and each open entry is found by
    probing from its home."""
    rng = np.random.default_rng(seed)
    d = 2
    t = _Table(d, 64, finest=True)
    model: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    closed_sum: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    counted: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    base = int(T0 // MIN)
    for step in range(40):
        n = int(rng.integers(20, 200))
        minutes = base + step + rng.integers(0, 4, n)
        end = minutes * MIN + rng.integers(0, MIN, n)
        mat = rng.integers(0, 12, (n, d)).astype(np.uint32)
        nbytes = rng.integers(40, 1500, n).astype(np.uint64)
        _apply(t, end.astype(np.int64), np.empty(0, np.int64), np.empty(0, np.uint64), nbytes, mat, 1 << 30)
        t.meta[kern.M_TOUCHED] = 0  # (carried)
        t.state[:] &= ~np.uint32(PENDING)
        for m, row, y in zip(minutes.tolist(), mat.tolist(), nbytes.tolist(), strict=True):
            for dst in (model, counted):
                got = dst.setdefault((m, tuple(row)), [0, 0])
                got[0] += 1
                got[1] += y
        # hand everything out, so that each close gives the entries' whole sums (DIRTY since opened)
        cutoff = base + step + int(rng.integers(-1, 3))
        rows = t.rehash(cutoff, t.cap)
        for b, dims, p, y in zip(rows.bkt, rows.dims, rows.pk, rows.by, strict=True):
            key = (int(b), tuple(int(x) for x in dims))
            got = closed_sum.setdefault(key, [0, 0])
            got[0] += int(p)
            got[1] += int(y)
            assert model.pop(key) == [int(p), int(y)]  # an entry closes once, with the sums of its rows
        assert not any(b <= cutoff for b, _ in model)
        assert _table_dict(t) == {k: tuple(v) for k, v in model.items()}
        for b, words in model:
            assert _probe(t.rec32, t.rw, d, b, list(words)) >= 0
    for k, v in model.items():
        got = closed_sum.setdefault(k, [0, 0])
        got[0] += v[0]
        got[1] += v[1]
    assert closed_sum == counted
