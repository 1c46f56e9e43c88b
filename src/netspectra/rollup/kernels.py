"""The rollup kernels: rows into time buckets × dimension tuples, in open-addressing tables.

A *table* (one per resolution, see :mod:`netspectra.rollup.task`) holds one open entry per (bucket,
dimension tuple): ``bkt`` int64 (bucket index = bucket start // width), ``dims`` uint32 ``(cap, d)``,
``epoch`` int64, ``pk``/``by`` uint64 counters (cumulative since the entry opened), ``state`` uint8
(0 empty, 1 open, 2 open and changed since it was last handed out), and, for the finest table, the
batch's own increments (``stamp`` int64, ``bpk``/``bby`` uint64) and the list of entries the batch
touched (``touched``), which :func:`fold` carries into the coarser tables. ``meta`` is an int64 array:
``[count, touched, clamped rows, batch stamp, empty rows, entries opened]`` (the last: entries
:func:`aggregate_rows` has opened since the table was made, never decreased).

Linear probing; a kernel that would fill a table past ``limit`` entries stops *before* the row (or the
entry) that needs the room and returns where it stopped; the caller makes room (grows the table or closes
its oldest buckets: :func:`rehash`) and calls again from there, so a batch is applied whole and in order
whatever the capacity.

Time: a row covers ``[start, end]`` (a packet: one instant; an exported flow record: its first to its
last packet). Its packets and bytes are split over the buckets it overlaps in proportion to the overlap,
with cumulative rounding so that the parts add up exactly to the row's values; a record longer than
``max_span_ns`` is counted over its last ``max_span_ns`` (and counted in ``meta[2]``). A weighted row of
0 packets (an empty export record) stands for nothing (:mod:`netspectra.weights`): it is skipped, its
bytes too, and counted in ``meta[4]``. Counters saturate at ``2**64 - 1`` instead of wrapping (a hostile
exporter's records of ``2**64 - 1`` bytes), as every task's (:mod:`netspectra.weights`).

Every kernel has a plain-Python reference (``*_ref``, over dicts) that the tests compare it with.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from netspectra.prefetch import prefetch
from netspectra.sketches.primitives import sat_add
from netspectra.weights import COUNT_MAX

EMPTY = 0
OPEN = 1
DIRTY = 2

#: Indexes of ``meta``.
M_COUNT = 0
M_TOUCHED = 1
M_CLAMPED = 2
M_STAMP = 3
M_EMPTY = 4
M_OPENED = 5
META_LEN = 6

#: Rows (entries, in :func:`fold`) between hashing a row, with its home slot's lines prefetched, and
#: probing for it: the misses of a table far larger than the cache overlap (benchmarks/RESULTS.md).
AHEAD = 32
_RING = 64  # a power of two > AHEAD: the hashes computed ahead
_RING_MASK = _RING - 1

_K0 = np.uint64(0x9E3779B97F4A7C15)
_K1 = np.uint64(0xBF58476D1CE4E5B9)
_K2 = np.uint64(0x94D049BB133111EB)


@njit(inline="always", cache=True)
def _mix(h, w):
    h = (h ^ w) * _K1
    return h ^ (h >> np.uint64(31))


@njit(inline="always", cache=True)
def _hash_row(b, mat, i):
    # mat: (d, n) uint32, column i
    h = np.uint64(b) * _K0
    for j in range(mat.shape[0]):
        h = _mix(h, np.uint64(mat[j, i]))
    h = h * _K2
    return h ^ (h >> np.uint64(29))


@njit(inline="always", cache=True)
def _hash_entry(b, dims, s):
    # dims: (cap, d) uint32, row s
    h = np.uint64(b) * _K0
    for j in range(dims.shape[1]):
        h = _mix(h, np.uint64(dims[s, j]))
    h = h * _K2
    return h ^ (h >> np.uint64(29))


@njit(inline="always", cache=True)
def _prefetch_slot(slot, flat_dims, d, state, bkt, pk, by):
    # the lines a probe and an update touch at a home slot (the dimension words may span two)
    prefetch(state, slot)
    prefetch(bkt, slot)
    prefetch(flat_dims, slot * d)
    prefetch(flat_dims, slot * d + d - 1)
    prefetch(pk, slot)
    prefetch(by, slot)


@njit(inline="always", cache=True)
def _open_row(k, mat, i, bkt, dims, state):
    """Slot of the open entry (bucket k, column i of mat), inserted if absent: ``(slot, inserted)``."""
    return _open_row_h(_hash_row(k, mat, i), k, mat, i, bkt, dims, state)


@njit(inline="always", cache=True)
def _open_row_h(h, k, mat, i, bkt, dims, state):
    """:func:`_open_row` with the row's hash ``h`` (:func:`_hash_row`) already computed."""
    mask = bkt.shape[0] - 1
    d = mat.shape[0]
    slot = np.int64(h & np.uint64(mask))
    while True:
        if state[slot] == EMPTY:
            state[slot] = OPEN
            bkt[slot] = k
            for j in range(d):
                dims[slot, j] = mat[j, i]
            return slot, True
        if bkt[slot] == k:
            same = True
            for j in range(d):
                if dims[slot, j] != mat[j, i]:
                    same = False
                    break
            if same:
                return slot, False
        slot = (slot + 1) & mask


@njit(inline="always", cache=True)
def _add_share(s, inserted, new_epoch, p, b, epoch, pk, by, state, stamp, bpk, bby, touched, meta):
    if inserted:
        epoch[s] = new_epoch
        pk[s] = 0
        by[s] = 0
        stamp[s] = -1
        meta[M_COUNT] += 1
        meta[M_OPENED] += 1
    pk[s] = sat_add(pk[s], p)
    by[s] = sat_add(by[s], b)
    state[s] = DIRTY
    if stamp[s] != meta[M_STAMP]:
        stamp[s] = meta[M_STAMP]
        bpk[s] = p
        bby[s] = b
        touched[meta[M_TOUCHED]] = s
        meta[M_TOUCHED] += 1
    else:
        bpk[s] = sat_add(bpk[s], p)
        bby[s] = sat_add(bby[s], b)


@njit(nogil=True, cache=True)
def aggregate_rows(
    start,  # first row to apply
    end_ns,  # int64 (n,): last packet of each row
    start_ns,  # int64 (n,) first packet of each row, or an empty array (rows are instants)
    packets,  # uint64 (n,) or empty (every row is one packet)
    nbytes,  # uint64 (n,)
    mat,  # uint32 (d, n): the rows' dimension words
    width_ns,  # bucket width
    max_span_ns,  # longest span a row is spread over
    limit,  # most entries the table may hold
    new_epoch,  # epoch of the entries opened now
    bkt,
    dims,
    epoch,
    pk,
    by,
    state,
    stamp,
    bpk,
    bby,
    touched,
    meta,
):
    """Add rows ``start..n-1`` to the (finest) table; the index of the first row not applied (``n`` when
    all were): the table would pass ``limit`` entries with it."""
    n = end_ns.shape[0]
    spans = start_ns.shape[0] == n
    weighted = packets.shape[0] == n
    mask = np.uint64(bkt.shape[0] - 1)
    d = mat.shape[0]
    flat_dims = dims.reshape(-1)
    # Software pipeline: row i + AHEAD is hashed (on the bucket of its last packet: a packet's only
    # bucket) and its home slot prefetched while row i is counted with the hash kept in the ring.
    ring_h = np.empty(_RING, np.uint64)
    ring_b = np.empty(_RING, np.int64)
    for j in range(start, min(start + AHEAD, n)):
        bj = end_ns[j] // width_ns
        ring_b[j & _RING_MASK] = bj
        ring_h[j & _RING_MASK] = _hash_row(bj, mat, j)
    for i in range(start, n):
        j = i + AHEAD
        if j < n:
            bj = end_ns[j] // width_ns
            hj = _hash_row(bj, mat, j)
            ring_b[j & _RING_MASK] = bj
            ring_h[j & _RING_MASK] = hj
            sj = np.int64(hj & mask)
            _prefetch_slot(sj, flat_dims, d, state, bkt, pk, by)
            prefetch(stamp, sj)
            prefetch(bpk, sj)
            prefetch(bby, sj)
        if weighted and packets[i] == 0:  # an empty record: nothing to count (netspectra.weights)
            meta[M_EMPTY] += 1
            continue
        e = end_ns[i]
        s0 = e
        if spans:
            s0 = start_ns[i]
            if s0 > e:
                s0 = e
            if e - s0 > max_span_ns:
                s0 = e - max_span_ns
                meta[M_CLAMPED] += 1
        p = np.uint64(1)
        if weighted:
            p = packets[i]
        b = nbytes[i]
        first = s0 // width_ns
        last = first
        if e > s0:
            last = (e - 1) // width_ns
        if meta[M_COUNT] + (last - first + 1) > limit:
            return i
        if last == first:  # the common case (a packet): one bucket
            q = i & _RING_MASK
            h = ring_h[q] if ring_b[q] == first else _hash_row(first, mat, i)
            slot, inserted = _open_row_h(h, first, mat, i, bkt, dims, state)
            _add_share(slot, inserted, new_epoch, p, b, epoch, pk, by, state, stamp, bpk, bby, touched, meta)
            continue
        # a record over several buckets: cumulative shares, the last bucket takes the remainder
        span = float(e - s0)
        done_p = np.uint64(0)
        done_b = np.uint64(0)
        for k in range(first, last + 1):
            if k == last:
                sp = p - done_p
                sb = b - done_b
            else:
                frac = float((k + 1) * width_ns - s0) / span
                cp = np.uint64(float(p) * frac)
                cb = np.uint64(float(b) * frac)
                if cp > p:
                    cp = p
                if cb > b:
                    cb = b
                if cp < done_p:
                    cp = done_p
                if cb < done_b:
                    cb = done_b
                sp = cp - done_p
                sb = cb - done_b
                done_p = cp
                done_b = cb
            if sp == 0 and sb == 0:
                continue
            slot, inserted = _open_row(k, mat, i, bkt, dims, state)
            _add_share(
                slot, inserted, new_epoch, sp, sb, epoch, pk, by, state, stamp, bpk, bby, touched, meta
            )
    return n


@njit(nogil=True, cache=True)
def fold(
    start,  # first touched entry to fold
    touched,  # int64: slots of the source table touched by the batch
    n_touched,
    src_bkt,
    src_dims,
    src_bpk,
    src_bby,
    ratio,  # target width / source width (an integer)
    limit,
    new_epoch,
    bkt,
    dims,
    epoch,
    pk,
    by,
    state,
    meta,
):
    """Carry the batch's increments of the source entries ``touched[start:n_touched]`` into a coarser
    table; the index of the first not carried (``n_touched`` when all were)."""
    cap = bkt.shape[0]
    mask = cap - 1
    d = src_dims.shape[1]
    flat_dims = dims.reshape(-1)
    # Software pipeline (as aggregate_rows): entry t + AHEAD is hashed and its home slot prefetched.
    ring_h = np.empty(_RING, np.uint64)
    for u in range(start, min(start + AHEAD, n_touched)):
        ring_h[u & _RING_MASK] = _hash_entry(src_bkt[touched[u]] // ratio, src_dims, touched[u])
    for t in range(start, n_touched):
        u = t + AHEAD
        if u < n_touched:
            hu = _hash_entry(src_bkt[touched[u]] // ratio, src_dims, touched[u])
            ring_h[u & _RING_MASK] = hu
            _prefetch_slot(np.int64(hu & np.uint64(mask)), flat_dims, d, state, bkt, pk, by)
        s = touched[t]
        b = src_bkt[s] // ratio
        slot = np.int64(ring_h[t & _RING_MASK] & np.uint64(mask))
        while True:
            if state[slot] == EMPTY:
                if meta[M_COUNT] + 1 > limit:
                    return t
                state[slot] = OPEN
                bkt[slot] = b
                for j in range(d):
                    dims[slot, j] = src_dims[s, j]
                epoch[slot] = new_epoch
                pk[slot] = 0
                by[slot] = 0
                meta[M_COUNT] += 1
                break
            if bkt[slot] == b:
                same = True
                for j in range(d):
                    if dims[slot, j] != src_dims[s, j]:
                        same = False
                        break
                if same:
                    break
            slot = (slot + 1) & mask
        pk[slot] = sat_add(pk[slot], src_bpk[s])
        by[slot] = sat_add(by[slot], src_bby[s])
        state[slot] = DIRTY
    return n_touched


@njit(nogil=True, cache=True)
def rehash(
    cutoff,  # entries with bkt <= cutoff are closed
    bkt,
    dims,
    epoch,
    pk,
    by,
    state,
    stamp,
    bpk,
    bby,
    n_bkt,
    n_dims,
    n_epoch,
    n_pk,
    n_by,
    n_state,
    n_stamp,
    n_bpk,
    n_bby,
    o_bkt,
    o_dims,
    o_epoch,
    o_pk,
    o_by,
):
    """Move the open entries above ``cutoff`` into the (empty) new table ``n_*`` and write the closed ones
    that changed since they were last handed out to ``o_*``; ``(kept, written out)``."""
    cap = bkt.shape[0]
    ncap = n_bkt.shape[0]
    mask = ncap - 1
    d = dims.shape[1]
    kept = 0
    out = 0
    for s in range(cap):
        st = state[s]
        if st == EMPTY:
            continue
        if bkt[s] <= cutoff:
            if st == DIRTY:
                o_bkt[out] = bkt[s]
                for j in range(d):
                    o_dims[out, j] = dims[s, j]
                o_epoch[out] = epoch[s]
                o_pk[out] = pk[s]
                o_by[out] = by[s]
                out += 1
            continue
        slot = np.int64(_hash_entry(bkt[s], dims, s) & np.uint64(mask))
        while n_state[slot] != EMPTY:
            slot = (slot + 1) & mask
        n_state[slot] = st
        n_bkt[slot] = bkt[s]
        for j in range(d):
            n_dims[slot, j] = dims[s, j]
        n_epoch[slot] = epoch[s]
        n_pk[slot] = pk[s]
        n_by[slot] = by[s]
        n_stamp[slot] = stamp[s]
        n_bpk[slot] = bpk[s]
        n_bby[slot] = bby[s]
        kept += 1
    return kept, out


@njit(nogil=True, cache=True)
def collect(clear, bkt, dims, epoch, pk, by, state, o_bkt, o_dims, o_epoch, o_pk, o_by):
    """Write the entries changed since they were last handed out (``state`` 2) to ``o_*`` — all open
    entries with ``clear`` < 0 — and, with ``clear`` > 0, mark them handed out; how many were written."""
    out = 0
    d = dims.shape[1]
    for s in range(bkt.shape[0]):
        st = state[s]
        if st == EMPTY or (st == OPEN and clear >= 0):
            continue
        o_bkt[out] = bkt[s]
        for j in range(d):
            o_dims[out, j] = dims[s, j]
        o_epoch[out] = epoch[s]
        o_pk[out] = pk[s]
        o_by[out] = by[s]
        out += 1
        if clear > 0:
            state[s] = OPEN
    return out


# --------------------------------------------------------------------------------------------------
# Plain-Python references
# --------------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def add_marginals(start, part, pk, by, keys, mp, mb, used, meta):
    """Add rows ``start..n-1`` of ``part`` ((n, w) uint32: one dimension's value words) with their packets
    ``pk`` and bytes ``by`` (uint64) into an open-addressing table of values (``keys`` (cap, w) uint32,
    ``mp``/``mb`` uint64 sums, ``used`` uint8; ``meta[0]`` = values held; ``cap`` a power of two). Returns
    the index of the first row not added (``n`` when all were): a new value would fill the table past half;
    the caller doubles it and calls again from there."""
    n = part.shape[0]
    w = part.shape[1]
    mask = keys.shape[0] - 1
    for i in range(start, n):
        h = _K0
        for j in range(w):
            h = _mix(h, np.uint64(part[i, j]))
        h = h * _K2
        h = h ^ (h >> np.uint64(29))
        s = np.int64(h & np.uint64(mask))
        while True:
            if used[s] == 0:
                if (meta[0] + 1) * 2 > keys.shape[0]:
                    return i
                used[s] = 1
                for j in range(w):
                    keys[s, j] = part[i, j]
                mp[s] = pk[i]
                mb[s] = by[i]
                meta[0] += 1
                break
            same = True
            for j in range(w):
                if keys[s, j] != part[i, j]:
                    same = False
                    break
            if same:
                mp[s] = sat_add(mp[s], pk[i])
                mb[s] = sat_add(mb[s], by[i])
                break
            s = (s + 1) & mask
    return n


def add_marginals_ref(
    out: dict[tuple[int, ...], list[int]], part: np.ndarray, pk: np.ndarray, by: np.ndarray
) -> None:
    """What :func:`add_marginals` adds, into ``out`` (value words -> [packets, bytes])."""
    for i in range(part.shape[0]):
        key = tuple(int(x) for x in part[i])
        got = out.setdefault(key, [0, 0])
        got[0] = min(got[0] + int(pk[i]), COUNT_MAX)
        got[1] = min(got[1] + int(by[i]), COUNT_MAX)


def split_ref(
    start: int, end: int, packets: int, nbytes: int, width: int, max_span: int
) -> dict[int, tuple[int, int]]:
    """Bucket index -> (packets, bytes) of one row, as :func:`aggregate_rows` splits it (floats as the
    kernel's: the same cumulative rounding)."""
    s0 = min(start, end)
    s0 = max(s0, end - max_span)
    first = s0 // width
    last = (end - 1) // width if end > s0 else first
    if first == last:
        return {first: (packets, nbytes)}
    out: dict[int, tuple[int, int]] = {}
    done_p = done_b = 0
    span = float(end - s0)
    for k in range(first, last + 1):
        if k == last:
            sp, sb = packets - done_p, nbytes - done_b
        else:
            frac = float((k + 1) * width - s0) / span
            cp = min(packets, max(done_p, int(float(packets) * frac)))
            cb = min(nbytes, max(done_b, int(float(nbytes) * frac)))
            sp, sb = cp - done_p, cb - done_b
            done_p, done_b = cp, cb
        if sp or sb:
            out[k] = (sp, sb)
    return out


def aggregate_ref(
    end_ns: np.ndarray,
    start_ns: np.ndarray | None,
    packets: np.ndarray | None,
    nbytes: np.ndarray,
    mat: np.ndarray,
    width_ns: int,
    max_span_ns: int,
) -> dict[tuple[int, tuple[int, ...]], tuple[int, int]]:
    """(bucket index, dimension words) -> (packets, bytes) of a batch: what :func:`aggregate_rows` adds."""
    out: dict[tuple[int, tuple[int, ...]], tuple[int, int]] = {}
    for i in range(end_ns.shape[0]):
        e = int(end_ns[i])
        s = int(start_ns[i]) if start_ns is not None else e
        p = int(packets[i]) if packets is not None else 1
        if p == 0:  # an empty record stands for nothing, its bytes included
            continue
        key_dims = tuple(int(x) for x in mat[:, i])
        for k, (sp, sb) in split_ref(s, e, p, int(nbytes[i]), width_ns, max_span_ns).items():
            op, ob = out.get((k, key_dims), (0, 0))
            out[(k, key_dims)] = (min(op + sp, COUNT_MAX), min(ob + sb, COUNT_MAX))
    return out
