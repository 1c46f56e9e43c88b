"""The rollup kernels: rows into time buckets × dimension tuples, in open-addressing tables.

A *table* (one per resolution, see :mod:`netspectra.rollup.task`) holds one open entry per (bucket,
dimension tuple) in a record of its own (:mod:`netspectra.rollup.layout`: bucket, packets and bytes since
the entry opened, the increments not yet carried, state and dimension words in one or two cache lines),
plus ``epoch`` (int64 per slot, cold). The kernels take the records as ``rec`` (``uint64``), ``reci``
(``int64``) and ``rec32`` (``uint32``): three flat views of one array, ``rw`` 64-bit words per slot.
The finest table also lists the entries with increments to carry (``touched``, the state's
:data:`~netspectra.rollup.layout.PENDING` bit), which :func:`fold` carries into the coarser tables.
``meta`` is an int64 array: ``[count, touched, clamped rows, lowest bucket, empty rows, entries
opened]`` (the lowest bucket of the open entries, the int64 maximum when there is none, lets a close that
would close nothing skip the table's scan; the last: entries :func:`aggregate_rows` has opened since the table
was made, never decreased).

Linear probing; a kernel that would fill a table past ``limit`` entries stops *before* the row (or the
entry) that needs the room and returns where it stopped; the caller makes room (grows the table or closes
its oldest buckets: :func:`close_in_place`) and calls again from there, so a batch is applied whole and in
order whatever the capacity.

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

from collections.abc import Sequence

import numpy as np

from netspectra.jit import njit
from netspectra.prefetch import prefetch
from netspectra.rollup.layout import (
    DIRTY,
    EMPTY,
    H_DIMS,
    H_STATE,
    LINE_WORDS,
    OPEN,
    PENDING,
    STATE_MASK,
    W_BBY,
    W_BKT,
    W_BPK,
    W_BY,
    W_PK,
)
from netspectra.sketches.primitives import sat_add
from netspectra.weights import COUNT_MAX

__all__ = ["DIRTY", "EMPTY", "OPEN", "PENDING"]

#: Indexes of ``meta``.
M_COUNT = 0
M_TOUCHED = 1
M_CLAMPED = 2
M_LOW = 3
M_EMPTY = 4
M_OPENED = 5
META_LEN = 6

#: Rows (entries, in :func:`fold`) between hashing a row, with its home slot's lines prefetched, and
#: probing for it: the misses of a table far larger than the cache overlap (benchmarks/RESULTS.md).
AHEAD = 32
_RING = 128  # a power of two > 2 * AHEAD: the hashes computed ahead
_RING_MASK = _RING - 1
#: Rows whose slots :func:`aggregate_rows` finds before it counts them, all at once: counting a row right
#: after its probe made the next rows' counter loads wait on stores whose address (the probed slot) came
#: late, and a task of a few groups (the same records again and again) took 55 ns a row; found first and
#: counted from a list of slots, 37 (benchmarks/RESULTS.md, 2026-12-07).
PENDING_ROWS = 64
#: A table of at most this many bytes is not prefetched by :func:`aggregate_rows` (it stays in the cache).
NEAR_BYTES = 256 << 10

_K0 = np.uint64(0x9E3779B97F4A7C15)
_K1 = np.uint64(0xBF58476D1CE4E5B9)
_K2 = np.uint64(0x94D049BB133111EB)
_NOT_PENDING = np.uint32(~PENDING & 0xFFFFFFFF)
#: A side code's network class bits (netspectra.enrich.kernels.side_code).
_CLASS_MASK = (1 << 21) - 1


@njit(inline="always", cache=True)
def _mix(h, w):
    h = (h ^ w) * _K1
    return h ^ (h >> np.uint64(31))


@njit(inline="always", cache=True)
def _hash_row(b, mat, i):
    # mat: (n, d) uint32, row i; two words per multiply (the same as _hash_entry's)
    h = np.uint64(b) * _K0
    d = mat.shape[1]
    j = 0
    while j + 1 < d:
        h = _mix(h, np.uint64(mat[i, j]) | (np.uint64(mat[i, j + 1]) << np.uint64(32)))
        j += 2
    if j < d:
        h = _mix(h, np.uint64(mat[i, j]))
    h = h * _K2
    return h ^ (h >> np.uint64(29))


@njit(inline="always", cache=True)
def _hash_entry(b, rec32, k, d):
    # the d dimension words from rec32[k]: the same hash as _hash_row's
    h = np.uint64(b) * _K0
    j = 0
    while j + 1 < d:
        h = _mix(h, np.uint64(rec32[k + j]) | (np.uint64(rec32[k + j + 1]) << np.uint64(32)))
        j += 2
    if j < d:
        h = _mix(h, np.uint64(rec32[k + j]))
    h = h * _K2
    return h ^ (h >> np.uint64(29))


@njit(inline="always", cache=True)
def _prefetch_record(rec, slot, rw):
    # every line of the slot's record (a probe compares the dimension words, an update writes counters)
    base = slot * rw
    for q in range(0, rw, LINE_WORDS):
        prefetch(rec, base + q)


@njit(inline="always", cache=True)
def _open_row_h(h, k, mat, i, reci, rec32, rw, mask):
    """Slot of the open entry (bucket k, row i of mat) with the row's hash ``h`` (:func:`_hash_row`),
    inserted if absent: ``(slot, inserted)``."""
    d = mat.shape[1]
    slot = np.int64(h & np.uint64(mask))
    while True:
        h32 = slot * 2 * rw
        if rec32[h32 + H_STATE] == EMPTY:
            rec32[h32 + H_STATE] = OPEN
            reci[slot * rw + W_BKT] = k
            for j in range(d):
                rec32[h32 + H_DIMS + j] = mat[i, j]
            return slot, True
        if reci[slot * rw + W_BKT] == k:
            same = True
            for j in range(d):
                if rec32[h32 + H_DIMS + j] != mat[i, j]:
                    same = False
                    break
            if same:
                return slot, False
        slot = (slot + 1) & mask


@njit(inline="always", cache=True)
def _count_pending(pend_s, pend_p, pend_b, k, rec, rec32, rw, epoch, touched, nt):
    """Count the ``k`` rows listed by :func:`aggregate_rows` (slot, packets, bytes; their entries opened
    already), in order; the new length of ``touched``."""
    for u in range(k):
        nt = _add_share(pend_s[u], False, 0, pend_p[u], pend_b[u], rec, rec32, rw, epoch, touched, nt)
    return nt


@njit(inline="always", cache=True)
def _add_share(s, inserted, new_epoch, p, b, rec, rec32, rw, epoch, touched, nt):
    """Count ``p`` packets and ``b`` bytes into slot ``s``; the new length of ``touched`` (``nt``)."""
    base = s * rw
    h32 = 2 * base + H_STATE
    if inserted:
        epoch[s] = new_epoch
        rec[base + W_PK] = 0
        rec[base + W_BY] = 0
    rec[base + W_PK] = sat_add(rec[base + W_PK], p)
    rec[base + W_BY] = sat_add(rec[base + W_BY], b)
    if (rec32[h32] & PENDING) == 0:  # the first increment since the last carry: listed
        rec[base + W_BPK] = p
        rec[base + W_BBY] = b
        touched[nt] = s
        nt += 1
    else:
        rec[base + W_BPK] = sat_add(rec[base + W_BPK], p)
        rec[base + W_BBY] = sat_add(rec[base + W_BBY], b)
    rec32[h32] = DIRTY | PENDING
    return nt


_BLOCK = 64  # rows per block of :func:`transpose_words`


@njit(nogil=True, cache=True)
def transpose_words(cols, out):
    """``out[i, j] = cols[j, i]``: the dimension words of a batch, one column per word (how the batch
    holds them), into one row of words per batch row (how :func:`aggregate_rows` reads them). In blocks of
    rows, so that both sides are read and written a few lines at a time. (Reference:
    ``np.ascontiguousarray(cols.T)``.)"""
    d, n = cols.shape
    for i0 in range(0, n, _BLOCK):
        i1 = min(i0 + _BLOCK, n)
        for j in range(d):
            for i in range(i0, i1):
                out[i, j] = cols[j, i]


@njit(nogil=True, cache=True)
def decode_words(keys, word_of, shift_of, mask_of, lut_of, luts, out):
    """``out[i, r]``: row word ``r`` of key row ``i``, ``v = (keys[i, word_of[r]] >> shift_of[r]) &
    mask_of[r]``, looked up as ``luts[lut_of[r], v]`` where ``lut_of[r] >= 0`` (a dictionary code of the
    task, a network class: :mod:`netspectra.rollup.codes`): rows' key words (narrow values packed,
    :mod:`netspectra.rollup.keyplan`; codes) as the rows' words, one row at a time (numpy's per-field
    passes over strided columns were 0.17 s for 785 k rows of 21 words). Reference:
    :func:`decode_words_ref`."""
    n = keys.shape[0]
    d = out.shape[1]
    for i in range(n):
        for r in range(d):
            v = (keys[i, word_of[r]] >> shift_of[r]) & mask_of[r]
            t = lut_of[r]
            if t >= 0:
                v = luts[t, v]
            out[i, r] = v


@njit(nogil=True, cache=True)
def decode_word(keys, word, shift, mask, lut, out):
    """``out[i]``: one row word of key row ``i`` (:func:`decode_words`' row word with key word ``word``,
    ``shift``, ``mask`` and, when ``lut`` is not empty, looked up in it), so that a caller that reads the
    rows' words one column at a time never holds them all (21 words of 4.5 M rows: 380 MB). Reference:
    :func:`decode_words_ref`."""
    coded = lut.shape[0] > 0
    for i in range(keys.shape[0]):
        v = (keys[i, word] >> shift) & mask
        if coded:
            v = lut[v]
        out[i] = v


@njit(nogil=True, cache=True)
def pack_key(values, lo, shift, key):
    """``key[i] |= (values[i] - lo) << shift`` modulo 2**64 (``values``: uint32 or uint64, ``lo`` a
    uint64): a column's offsets packed into a sort key in one pass, without numpy's three temporaries
    of the key's size (:func:`netspectra.rollup.task._group_ids`)."""
    for i in range(values.shape[0]):
        key[i] |= (np.uint64(values[i]) - lo) << shift


def decode_words_ref(keys: np.ndarray, word_of, shift_of, mask_of, lut_of, luts) -> list[list[int]]:
    """:func:`decode_words` in plain Python."""
    out = []
    for row in keys.tolist():
        got = []
        for w, s, m, t in zip(
            word_of.tolist(), shift_of.tolist(), mask_of.tolist(), lut_of.tolist(), strict=True
        ):
            v = (row[w] >> s) & m
            got.append(int(luts[t][v]) if t >= 0 else v)
        out.append(got)
    return out


@njit(inline="always", cache=True)
def _hash_words(w, m):
    h = _K0
    for j in range(m):
        h = _mix(h, np.uint64(w[j]))
    h = h * _K2
    return h ^ (h >> np.uint64(29))


@njit(inline="always", cache=True)
def _intern(w, tuples, index, meta):
    """The code of tuple ``w`` (uint32 words) in the dictionary (``tuples[code]``: its words; ``index``:
    open-addressing slots holding code + 1, 0 empty; ``meta[0]``: codes), added if new; -1 if adding it
    would fill ``index`` past half (the caller grows it)."""
    m = w.shape[0]
    mask = index.shape[0] - 1
    s = np.int64(_hash_words(w, m) & np.uint64(mask))
    while True:
        c = index[s]
        if c == 0:
            k = meta[0]
            if (k + 1) * 2 > index.shape[0] or k >= tuples.shape[0]:
                return -1
            for j in range(m):
                tuples[k, j] = w[j]
            index[s] = k + 1
            meta[0] = k + 1
            return k
        same = True
        for j in range(m):
            if tuples[c - 1, j] != w[j]:
                same = False
                break
        if same:
            return c - 1
        s = (s + 1) & mask


@njit(nogil=True, cache=True)
def intern_tuples(start, protocol, exporter, in_if, out_if, tuples, index, meta, out, col):
    """Rows ``start..n-1``: the dictionary code (:func:`_intern`) of each row's tuple ``(protocol,
    exporter's 4 words, in_if, out_if)`` into ``out[:, col]`` (uint32; the rows' key words); an empty
    input array stands for zeros in every row (a capture has no exporter, a task may not name it).
    Returns the first row not coded (``n`` when all were): the dictionary needs room. Codes are given in
    order of first appearance. Reference: :func:`intern_tuples_ref`."""
    n = out.shape[0]
    has_p = protocol.shape[0] == n
    has_e = exporter.shape[0] == n
    has_i = in_if.shape[0] == n
    has_o = out_if.shape[0] == n
    w = np.zeros(tuples.shape[1], np.uint32)
    if not (has_e or has_i or has_o):  # a capture: the tuple is the protocol's, coded once per value
        seen = np.full(256, -1, np.int64)
        for i in range(start, n):
            p = 0
            if has_p:
                p = np.int64(protocol[i])
            c = seen[p]
            if c < 0:
                w[0] = np.uint32(p)
                c = _intern(w, tuples, index, meta)
                if c < 0:
                    return i
                seen[p] = c
            out[i, col] = np.uint32(c)
        return n
    for i in range(start, n):
        if has_p:
            w[0] = np.uint32(protocol[i])
        if has_e:
            for j in range(4):
                w[1 + j] = exporter[i, j]
        if has_i:
            w[5] = in_if[i]
        if has_o:
            w[6] = out_if[i]
        c = _intern(w, tuples, index, meta)
        if c < 0:
            return i
        out[i, col] = np.uint32(c)
    return n


def intern_tuples_ref(
    seen: dict[tuple[int, ...], int], protocol, exporter, in_if, out_if, n: int
) -> list[int]:
    """:func:`intern_tuples` in plain Python: ``seen`` (tuple -> code, codes in order of first
    appearance) is extended; the codes of the ``n`` rows."""
    out = []
    for i in range(n):
        key = (
            int(protocol[i]) if len(protocol) == n else 0,
            *(int(x) for x in (exporter[i] if len(exporter) == n else (0, 0, 0, 0))),
            int(in_if[i]) if len(in_if) == n else 0,
            int(out_if[i]) if len(out_if) == n else 0,
        )
        out.append(seen.setdefault(key, len(seen)))
    return out


@njit(nogil=True, cache=True)
def first_foreign_class(code, classes):
    """The first row of side codes ``code`` whose network class is not below ``classes`` (``n`` when
    none): codes made with another ``networks`` map than the task's. (Reference: a numpy comparison.)"""
    n = code.shape[0]
    for i in range(n):
        if (code[i] & np.uint64(_CLASS_MASK)) >= np.uint64(classes):
            return i
    return n


@njit(nogil=True, cache=True)
def side_words(code, proj, keep_cc, classes, out, hi, lo):
    """A side's key words from its side codes (:func:`netspectra.enrich.kernels.side_code`) into the rows'
    key words ``out``: column ``hi`` the AS number (-1: not keyed), column ``lo`` the country
    (``keep_cc``) in bits 22..31 and the network class ``proj[class]`` (``proj`` empty: the class
    itself) in bits 0..20 (-1: not keyed). Every class must be below ``classes``
    (:func:`first_foreign_class`). Reference: :func:`side_words_ref`."""
    n = code.shape[0]
    ident = proj.shape[0] == 0
    ccm = np.uint64(0xFFC00000) if keep_cc else np.uint64(0)
    for i in range(n):
        c = code[i]
        if hi >= 0:
            out[i, hi] = np.uint32(c >> np.uint64(32))
        if lo >= 0:
            cls = c & np.uint64(_CLASS_MASK)
            if not ident:
                cls = np.uint64(proj[cls])
            out[i, lo] = np.uint32((c & ccm) | cls)
    return n


def side_words_ref(code: np.ndarray, proj: np.ndarray, keep_cc: bool) -> tuple[list[int], list[int]]:
    """:func:`side_words` in plain Python: ``(hi words, lo words)``."""
    his, los = [], []
    for c in code.tolist():
        cls = c & _CLASS_MASK
        if len(proj):
            cls = int(proj[cls])
        his.append(c >> 32)
        los.append(((c & 0xFFC00000) if keep_cc else 0) | cls)
    return his, los


@njit(nogil=True, cache=True)
def aggregate_rows(
    start,  # first row to apply
    end_ns,  # int64 (n,): last packet of each row
    start_ns,  # int64 (n,) first packet of each row, or an empty array (rows are instants)
    packets,  # uint64 (n,) or empty (every row is one packet)
    nbytes,  # uint64 (n,)
    mat,  # uint32 (n, d): each row's dimension words, contiguous (one stream, not d of them)
    width_ns,  # bucket width
    max_span_ns,  # longest span a row is spread over
    limit,  # most entries the table may hold
    new_epoch,  # epoch of the entries opened now
    rec,  # the (finest) table's records: uint64, int64 and uint32 views, rw words per slot
    reci,
    rec32,
    rw,
    epoch,
    touched,
    meta,
):
    """Add rows ``start..n-1`` to the (finest) table; the index of the first row not applied (``n`` when
    all were): the table would pass ``limit`` entries with it."""
    n = end_ns.shape[0]
    spans = start_ns.shape[0] == n
    weighted = packets.shape[0] == n
    mask = rec.shape[0] // rw - 1
    umask = np.uint64(mask)
    # a table that fits in the L2 cache is there already: no prefetch (4 ns a row of a few groups)
    far = rec.shape[0] * 8 > NEAR_BYTES
    # Software pipeline: row i + AHEAD is hashed (on the bucket of its last packet: a packet's only
    # bucket) and its home slot's record prefetched while row i is counted with the hash kept in the ring.
    ring_h = np.empty(_RING, np.uint64)
    ring_b = np.empty(_RING, np.int64)
    for j in range(start, min(start + AHEAD, n)):
        bj = end_ns[j] // width_ns
        ring_b[j & _RING_MASK] = bj
        ring_h[j & _RING_MASK] = _hash_row(bj, mat, j)
    # A row's slot is found (its entry opened) when the row comes; its counts are added from a list of
    # PENDING_ROWS rows at a time (see PENDING_ROWS), in row order: the same sums and the same ``touched``
    # order as counting each row at once. A record over several buckets counts the list first.
    pend_s = np.empty(PENDING_ROWS, np.int64)
    pend_p = np.empty(PENDING_ROWS, np.uint64)
    pend_b = np.empty(PENDING_ROWS, np.uint64)
    k_pend = 0
    # the counters live in registers while the rows are counted (meta may alias the other int64 arrays)
    count = meta[M_COUNT]
    nt = meta[M_TOUCHED]
    opened = meta[M_OPENED]
    low = meta[M_LOW]
    stop = n
    for i in range(start, n):
        j = i + AHEAD
        if j < n:
            bj = end_ns[j] // width_ns
            hj = _hash_row(bj, mat, j)
            ring_b[j & _RING_MASK] = bj
            ring_h[j & _RING_MASK] = hj
            if far:
                _prefetch_record(rec, np.int64(hj & umask), rw)
                prefetch(epoch, np.int64(hj & umask))  # written when the entry opens
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
        if s0 == e:  # the common case (a packet): one bucket, hashed ahead
            if count + 1 > limit:
                stop = i
                break
            q = i & _RING_MASK
            slot, inserted = _open_row_h(ring_h[q], ring_b[q], mat, i, reci, rec32, rw, mask)
            if inserted:
                count += 1
                opened += 1
                low = min(low, ring_b[q])
                epoch[slot] = new_epoch
                rec[slot * rw + W_PK] = 0
                rec[slot * rw + W_BY] = 0
            pend_s[k_pend] = slot
            pend_p[k_pend] = p
            pend_b[k_pend] = b
            k_pend += 1
            if k_pend == PENDING_ROWS:
                nt = _count_pending(pend_s, pend_p, pend_b, k_pend, rec, rec32, rw, epoch, touched, nt)
                k_pend = 0
            continue
        nt = _count_pending(pend_s, pend_p, pend_b, k_pend, rec, rec32, rw, epoch, touched, nt)
        k_pend = 0
        first = s0 // width_ns
        last = (e - 1) // width_ns
        if count + (last - first + 1) > limit:
            stop = i
            break
        # a record over one or more buckets: cumulative shares, the last bucket takes the remainder
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
            slot, inserted = _open_row_h(_hash_row(k, mat, i), k, mat, i, reci, rec32, rw, mask)
            if inserted:
                count += 1
                opened += 1
                low = min(low, k)
            nt = _add_share(slot, inserted, new_epoch, sp, sb, rec, rec32, rw, epoch, touched, nt)
    nt = _count_pending(pend_s, pend_p, pend_b, k_pend, rec, rec32, rw, epoch, touched, nt)
    meta[M_COUNT] = count
    meta[M_TOUCHED] = nt
    meta[M_OPENED] = opened
    meta[M_LOW] = low
    return stop


@njit(nogil=True, cache=True)
def fold(
    start,  # first touched entry to fold
    touched,  # int64: slots of the source table with increments to carry
    n_touched,
    d,  # dimension words
    src_rec,  # the source (finest) table's records (three views; rw words per slot, as the target's)
    src_reci,
    src_rec32,
    ratio,  # target width / source width (an integer)
    limit,
    new_epoch,
    rec,
    reci,
    rec32,
    rw,
    epoch,
    meta,
    unmark,  # clear the source entries' PENDING bit (the last coarser table of a carry)
):
    """Carry the increments of the source entries ``touched[start:n_touched]`` into a coarser table; the
    index of the first not carried (``n_touched`` when all were)."""
    mask = rec.shape[0] // rw - 1
    umask = np.uint64(mask)
    # Software pipeline: entry t + 2 * AHEAD's source record is prefetched, entry t + AHEAD (its source
    # record arrived) hashed and its home slot in the target prefetched, entry t carried.
    ring_h = np.empty(_RING, np.uint64)
    for u in range(start, min(start + 2 * AHEAD, n_touched)):
        _prefetch_record(src_rec, touched[u], rw)
    for u in range(start, min(start + AHEAD, n_touched)):
        su = touched[u]
        ring_h[u & _RING_MASK] = _hash_entry(
            src_reci[su * rw + W_BKT] // ratio, src_rec32, su * 2 * rw + H_DIMS, d
        )
    for t in range(start, n_touched):
        v = t + 2 * AHEAD
        if v < n_touched:
            _prefetch_record(src_rec, touched[v], rw)
        u = t + AHEAD
        if u < n_touched:
            su = touched[u]
            hu = _hash_entry(src_reci[su * rw + W_BKT] // ratio, src_rec32, su * 2 * rw + H_DIMS, d)
            ring_h[u & _RING_MASK] = hu
            _prefetch_record(rec, np.int64(hu & umask), rw)
        s = touched[t]
        sbase = s * rw
        sdim = 2 * sbase + H_DIMS
        b = src_reci[sbase + W_BKT] // ratio
        slot = np.int64(ring_h[t & _RING_MASK] & umask)
        while True:
            h32 = slot * 2 * rw
            if rec32[h32 + H_STATE] == EMPTY:
                if meta[M_COUNT] + 1 > limit:
                    return t
                reci[slot * rw + W_BKT] = b
                for j in range(d):
                    rec32[h32 + H_DIMS + j] = src_rec32[sdim + j]
                epoch[slot] = new_epoch
                rec[slot * rw + W_PK] = 0
                rec[slot * rw + W_BY] = 0
                meta[M_COUNT] += 1
                meta[M_LOW] = min(meta[M_LOW], b)
                break
            if reci[slot * rw + W_BKT] == b:
                same = True
                for j in range(d):
                    if rec32[h32 + H_DIMS + j] != src_rec32[sdim + j]:
                        same = False
                        break
                if same:
                    break
            slot = (slot + 1) & mask
        base = slot * rw
        rec[base + W_PK] = sat_add(rec[base + W_PK], src_rec[sbase + W_BPK])
        rec[base + W_BY] = sat_add(rec[base + W_BY], src_rec[sbase + W_BBY])
        rec32[2 * base + H_STATE] = DIRTY
        if unmark:
            src_rec32[2 * sbase + H_STATE] &= _NOT_PENDING
    return n_touched


@njit(inline="always", cache=True)
def _hand_out(s, out, d, rec, reci, rec32, rw, epoch, o_bkt, o_dims, o_epoch, o_pk, o_by):
    base = s * rw
    o_bkt[out] = reci[base + W_BKT]
    for j in range(d):
        o_dims[out, j] = rec32[2 * base + H_DIMS + j]
    o_epoch[out] = epoch[s]
    o_pk[out] = rec[base + W_PK]
    o_by[out] = rec[base + W_BY]


@njit(inline="always", cache=True)
def _place(home, mask, rw, src, base, e, rec, rec32, epoch):
    """Copy the record at ``src[base : base + rw]`` and its epoch ``e`` into the first empty slot of the
    table ``rec`` (``rec32`` its uint32 view) from slot ``home`` on (linear probing)."""
    slot = home
    while rec32[slot * 2 * rw + H_STATE] != EMPTY:
        slot = (slot + 1) & mask
    nbase = slot * rw
    for q in range(rw):
        rec[nbase + q] = src[base + q]
    epoch[slot] = e


@njit(inline="always", cache=True)
def _move_from(p, home, mask, rw, tmp, rec, rec32, epoch):
    """Take the entry at slot ``p`` out of the table (its slot cleared; ``tmp``: ``rw`` words of scratch)
    and place it by probing from ``home``."""
    base = p * rw
    for q in range(rw):
        tmp[q] = rec[base + q]
        rec[base + q] = 0
    ep = epoch[p]
    epoch[p] = 0
    _place(home, mask, rw, tmp, 0, ep, rec, rec32, epoch)


@njit(nogil=True, cache=True)
def rehash(
    cutoff,  # entries with bkt <= cutoff are closed
    d,  # dimension words
    rec,
    reci,
    rec32,
    rw,
    epoch,
    n_rec,  # the new (empty) table: records (three views, rw words per slot) and epochs
    n_reci,
    n_rec32,
    n_epoch,
    o_bkt,
    o_dims,
    o_epoch,
    o_pk,
    o_by,
):
    """Move the open entries above ``cutoff`` into the (empty) new table ``n_*`` and write the closed ones
    that changed since they were last handed out to ``o_*``; ``(kept, written out, lowest bucket kept)``
    (the int64 maximum when none is)."""
    cap = rec.shape[0] // rw
    mask = n_rec.shape[0] // rw - 1
    kept = 0
    out = 0
    low = np.iinfo(np.int64).max
    for s in range(cap):
        base = s * rw
        st = rec32[2 * base + H_STATE] & STATE_MASK
        if st == EMPTY:
            continue
        b = reci[base + W_BKT]
        if b <= cutoff:
            if st == DIRTY:
                _hand_out(s, out, d, rec, reci, rec32, rw, epoch, o_bkt, o_dims, o_epoch, o_pk, o_by)
                out += 1
            continue
        home = np.int64(_hash_entry(b, rec32, 2 * base + H_DIMS, d) & np.uint64(mask))
        _place(home, mask, rw, rec, base, epoch[s], n_rec, n_rec32, n_epoch)
        kept += 1
        low = min(low, b)
    return kept, out, low


@njit(nogil=True, cache=True)
def close_in_place(
    cutoff,  # entries with bkt <= cutoff are closed
    count,  # entries open now
    hand_out,  # False: the rows are counted, not written (o_* may be empty)
    d,  # dimension words
    rec,
    reci,
    rec32,
    rw,
    epoch,
    o_bkt,
    o_dims,
    o_epoch,
    o_pk,
    o_by,
):
    """:func:`rehash` into the table itself: the entries of buckets <= ``cutoff`` leave (those changed
    since they were last handed out are written to ``o_*``, or only counted without ``hand_out``), the
    others stay in the same memory, where linear probing finds them; ``(kept, written out, lowest bucket
    kept)`` (the int64 maximum when none is). Empty slots are zero afterwards.

    One pass over the slots, from the first empty one on (around the end), so that each cluster (a run of
    full slots) is met from its start: a closing entry's slot is cleared; an entry kept that comes after
    a cleared slot of its cluster is taken out and placed again by probing from its home — a probe that
    meets only slots of its cluster dealt with already (cleared, or holding entries placed again), so it
    lands between its home and its old slot, and every entry is placed as in a table filled in this
    order. The entries kept before the first close of their cluster do not move. Work: the table's slots
    read once, the closing entries' records written once, no hash but for the entries that move.
    Rebuilding into a fresh table instead made every close of a large table fault in and zero a new one
    (a 10-minute trace of 1 M flows keyed on 18 dimensions: 15 closes of 64 MB tables, most of its
    rollup time on a VM)."""
    cap = rec.shape[0] // rw
    mask = cap - 1
    umask = np.uint64(mask)
    closed = 0
    out = 0
    low = np.iinfo(np.int64).max
    if count == 0:
        return 0, 0, low
    e0 = 0
    while rec32[2 * e0 * rw + H_STATE] != EMPTY:  # (a table is at most half full: there is one)
        e0 += 1
    tmp = np.empty(rw, np.uint64)
    moved = False  # a slot of the current cluster was cleared: the entries kept after it move
    for k in range(cap):
        p = (e0 + k) & mask
        base = p * rw
        st = rec32[2 * base + H_STATE] & STATE_MASK
        if st == EMPTY:
            moved = False
            continue
        b = reci[base + W_BKT]
        if b <= cutoff:
            if st == DIRTY:
                if hand_out:
                    _hand_out(p, out, d, rec, reci, rec32, rw, epoch, o_bkt, o_dims, o_epoch, o_pk, o_by)
                out += 1
            for q in range(rw):
                rec[base + q] = 0
            epoch[p] = 0
            closed += 1
            moved = True
            continue
        low = min(low, b)
        if not moved:
            continue
        home = np.int64(_hash_entry(b, rec32, 2 * base + H_DIMS, d) & umask)
        if home != p:  # (at its home: placed there again)
            _move_from(p, home, mask, rw, tmp, rec, rec32, epoch)
    return count - closed, out, low


@njit(nogil=True, cache=True)
def grow_in_place(d, old_cap, rec, reci, rec32, rw, epoch):
    """Grow a table in place: ``rec`` (three views) and ``epoch`` hold ``cap`` slots (a power of two times
    ``old_cap``), the first ``old_cap`` a table of that many slots (linear probing from
    ``hash & (old_cap - 1)``), the others empty (zero); afterwards the entries sit where linear probing
    from ``hash & (cap - 1)`` finds them, and empty slots are zero. The lowest bucket (the int64 maximum
    when no entry is open).

    No second table and no copy aside: the only memory touched is the table's own. The entries are
    taken in slot order, each cluster whole: from the first empty slot ``e`` on (the few entries before
    it, the end of a cluster that wraps around the old table, are held aside and placed last). An
    entry's new home is its old home plus a multiple of ``old_cap``; it is taken out of its slot and
    placed by probing from its new home, a probe that meets only entries placed already (those before it
    in its cluster, and the new part, which only placed entries reach) or the slot it just left: so every
    entry is placed as in a table filled in this order, and no later move breaks a probe chain. The
    layout is a function of the old one (the same whether the table grew in its mapping or was copied
    into a larger one). Reference: :func:`grow_ref`."""
    mask = np.int64(rec.shape[0] // rw - 1)
    umask = np.uint64(mask)
    low = np.iinfo(np.int64).max
    e = 0
    while e < old_cap and rec32[2 * e * rw + H_STATE] != EMPTY:
        e += 1
    held = np.empty(e * rw, np.uint64)
    held_epoch = np.empty(e, np.int64)
    for s in range(e):
        base = s * rw
        for q in range(rw):
            held[s * rw + q] = rec[base + q]
            rec[base + q] = 0
        held_epoch[s] = epoch[s]
        epoch[s] = 0
    tmp = np.empty(rw, np.uint64)
    for p in range(e + 1, old_cap):
        base = p * rw
        if rec32[2 * base + H_STATE] == EMPTY:
            continue
        b = reci[base + W_BKT]
        low = min(low, b)
        home = np.int64(_hash_entry(b, rec32, 2 * base + H_DIMS, d) & umask)
        if home != p:  # (at its home: placed there again, the probe would stop at once)
            _move_from(p, home, mask, rw, tmp, rec, rec32, epoch)
    held32 = held.view(np.uint32)
    for s in range(e):
        b = np.int64(held[s * rw + W_BKT])
        low = min(low, b)
        home = np.int64(_hash_entry(b, held32, 2 * s * rw + H_DIMS, d) & umask)
        _place(home, mask, rw, held, s * rw, held_epoch[s], rec, rec32, epoch)
    return low


_U64 = (1 << 64) - 1


def hash_entry_ref(bkt: int, words: Sequence[int]) -> int:
    """:func:`_hash_entry` (and :func:`_hash_row`) in plain Python: the hash of bucket ``bkt`` and the
    dimension words ``words``."""

    def mix(h: int, w: int) -> int:
        h = ((h ^ w) * int(_K1)) & _U64
        return h ^ (h >> 31)

    h = ((bkt & _U64) * int(_K0)) & _U64
    j = 0
    while j + 1 < len(words):
        h = mix(h, words[j] | (words[j + 1] << 32))
        j += 2
    if j < len(words):
        h = mix(h, words[j])
    h = (h * int(_K2)) & _U64
    return h ^ (h >> 29)


def grow_ref(
    d: int, old_cap: int, cap: int, rec: np.ndarray, rw: int, epoch: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`grow_in_place` makes of a table (``rec``: ``old_cap`` slots, the uint64 view; ``epoch``),
    in plain Python: the records and epochs of a table of ``cap`` slots, independent of the kernel's
    bookkeeping — the entries inserted into an empty table in slot order from the old table's first
    empty slot on, the ones before it last."""
    rec32 = rec.view(np.uint32)
    out = np.zeros(cap * rw, np.uint64)
    out32 = out.view(np.uint32)
    out_epoch = np.zeros(cap, np.int64)
    full = [s for s in range(old_cap) if rec32[2 * s * rw + H_STATE] != EMPTY]
    e = next(s for s in range(old_cap) if rec32[2 * s * rw + H_STATE] == EMPTY)
    for s in [s for s in full if s > e] + [s for s in full if s < e]:
        bkt = int(rec.view(np.int64)[s * rw + W_BKT])
        h = hash_entry_ref(bkt, [int(x) for x in rec32[2 * s * rw + H_DIMS : 2 * s * rw + H_DIMS + d]])
        slot = h & (cap - 1)
        while out32[2 * slot * rw + H_STATE] != EMPTY:
            slot = (slot + 1) & (cap - 1)
        out[slot * rw : (slot + 1) * rw] = rec[s * rw : (s + 1) * rw]
        out_epoch[slot] = epoch[s]
    return out, out_epoch


@njit(nogil=True, cache=True)
def pending_slots(rec32, rw, touched):
    """List the slots of the entries with increments to carry (state :data:`PENDING`) in ``touched``, in
    slot order; how many: the finest table's ``touched`` after it grew (its entries moved). Reference:
    ``np.flatnonzero(state & PENDING)``."""
    n = 0
    for s in range(rec32.shape[0] // (2 * rw)):
        if rec32[2 * s * rw + H_STATE] & PENDING:
            touched[n] = s
            n += 1
    return n


@njit(nogil=True, cache=True)
def open_buckets(rec32, reci, rw, out):
    """Write the bucket of every open entry (state not :data:`EMPTY`) to ``out``, in slot order; how many.
    Reference: ``bkt[state != EMPTY]`` (two strided columns of the records, selected by numpy: ~13 ms for
    a table of 262,144 entries, at every early close)."""
    n = 0
    for s in range(rec32.shape[0] // (2 * rw)):
        if rec32[2 * s * rw + H_STATE] != EMPTY:
            out[n] = reci[s * rw + W_BKT]
            n += 1
    return n


@njit(nogil=True, cache=True)
def collect(clear, d, rec, reci, rec32, rw, epoch, o_bkt, o_dims, o_epoch, o_pk, o_by):
    """Write the entries changed since they were last handed out (state ``DIRTY``) to ``o_*`` — all open
    entries with ``clear`` < 0 — and, with ``clear`` > 0, mark them handed out; how many were written."""
    out = 0
    for s in range(rec.shape[0] // rw):
        h = 2 * s * rw + H_STATE
        st = rec32[h] & STATE_MASK
        if st == EMPTY or (st == OPEN and clear >= 0):
            continue
        _hand_out(s, out, d, rec, reci, rec32, rw, epoch, o_bkt, o_dims, o_epoch, o_pk, o_by)
        out += 1
        if clear > 0:
            rec32[h] = (rec32[h] & ~np.uint32(STATE_MASK)) | OPEN
    return out


@njit(nogil=True, cache=True)
def count_changed(rec32, rw, clear):
    """How many entries :func:`collect` would write (state ``DIRTY``: changed since last handed out), and
    with ``clear`` > 0 mark them handed out as it does, without writing them: a drain whose rows no one
    reads (:meth:`netspectra.rollup.task.RollupTask.discard`). Reference: :func:`count_changed_ref`."""
    n = 0
    for s in range(rec32.shape[0] // (2 * rw)):
        h = 2 * s * rw + H_STATE
        if rec32[h] & STATE_MASK == DIRTY:
            n += 1
            if clear > 0:
                rec32[h] = (rec32[h] & ~np.uint32(STATE_MASK)) | OPEN
    return n


def count_changed_ref(state: np.ndarray, clear: bool) -> int:
    """:func:`count_changed` over the state column view of a table (changed in place with ``clear``)."""
    hit = [i for i, st in enumerate(state.tolist()) if st & STATE_MASK == DIRTY]
    if clear:
        for i in hit:
            state[i] = (int(state[i]) & ~STATE_MASK) | OPEN
    return len(hit)


@njit(nogil=True, cache=True)
def spread(
    d,  # dimension words
    rec,  # the finest table (three views, rw words per slot, as the target's) and its epochs
    reci,
    rec32,
    rw,
    epoch,
    ratio,  # target width / finest width
    emap,  # int64: the target epoch of a finest entry of epoch ``e`` is ``emap[e - ebase]``
    ebase,
    n_rec,  # the target (an empty coarser table: records, three views, and epochs)
    n_reci,
    n_rec32,
    n_epoch,
):
    """Fill the empty coarser table ``n_*`` with one entry per open entry of the finest table (whose
    entries map to distinct coarser entries: see :meth:`netspectra.rollup.task.RollupTask._materialize`):
    bucket ``bkt // ratio``, the same dimension words, packets, bytes and state (open or changed), epoch
    ``emap[epoch - ebase]``; what :func:`fold` of every entry's whole count would have made. ``(entries,
    lowest bucket)``; ``(-1, slot)`` if two entries met in one coarser entry (a caller's error)."""
    cap = rec.shape[0] // rw
    mask = n_rec.shape[0] // rw - 1
    umask = np.uint64(mask)
    count = 0
    low = np.iinfo(np.int64).max
    # The entries are read in slot order, their targets are scattered over the coarser table (as large as
    # the finest when it is materialized at max_entries): each entry's target is hashed AHEAD entries
    # before it is placed and its lines asked for then (a queue of the entries found ahead).
    q_slot = np.empty(_RING, np.int64)
    q_hash = np.empty(_RING, np.uint64)
    head = 0
    tail = 0
    scan = 0
    while True:
        while tail - head < AHEAD and scan < cap:
            sb = scan * rw
            if rec32[2 * sb + H_STATE] & STATE_MASK != EMPTY:
                hq = _hash_entry(reci[sb + W_BKT] // ratio, rec32, 2 * sb + H_DIMS, d)
                q_slot[tail & _RING_MASK] = scan
                q_hash[tail & _RING_MASK] = hq
                _prefetch_record(n_rec, np.int64(hq & umask), rw)
                prefetch(n_epoch, np.int64(hq & umask))
                tail += 1
            scan += 1
        if head == tail:
            break
        s = q_slot[head & _RING_MASK]
        h = q_hash[head & _RING_MASK]
        head += 1
        base = s * rw
        st = rec32[2 * base + H_STATE] & STATE_MASK
        b = reci[base + W_BKT] // ratio
        slot = np.int64(h & umask)
        while True:
            h32 = slot * 2 * rw
            if n_rec32[h32 + H_STATE] == EMPTY:
                break
            if n_reci[slot * rw + W_BKT] == b:
                same = True
                for j in range(d):
                    if n_rec32[h32 + H_DIMS + j] != rec32[2 * base + H_DIMS + j]:
                        same = False
                        break
                if same:
                    return -1, s
            slot = (slot + 1) & mask
        nbase = slot * rw
        n_reci[nbase + W_BKT] = b
        n_rec[nbase + W_PK] = rec[base + W_PK]
        n_rec[nbase + W_BY] = rec[base + W_BY]
        n_rec32[2 * nbase + H_STATE] = st
        for j in range(d):
            n_rec32[2 * nbase + H_DIMS + j] = rec32[2 * base + H_DIMS + j]
        n_epoch[slot] = emap[epoch[s] - ebase]
        count += 1
        low = min(low, b)
    return count, low


@njit(nogil=True, cache=True)
def gather_increments(slots, d, rec, reci, rec32, rw, out_words, out_pk, out_by, clear):
    """The pending increments of the finest table's entries ``slots``: their dimension words by word
    (``out_words[j, i]``: word ``j`` of entry ``slots[i]``, so that one dimension's words are rows of it),
    packets and bytes; ``(lowest, highest bucket)`` (``(int64 max, int64 min)`` for no slot). One pass
    over the records instead of a strided gather per column. With ``clear`` > 0 the entries' increments
    are taken: their :data:`PENDING` bit is cleared in the same pass (the coarser tables held as views:
    nothing else carries them)."""
    lo = np.iinfo(np.int64).max
    hi = np.iinfo(np.int64).min
    n = slots.shape[0]
    for i in range(min(AHEAD, n)):
        _prefetch_record(rec, slots[i], rw)
    for i in range(n):
        if i + AHEAD < n:  # the slots are scattered over the table: their lines asked for ahead
            _prefetch_record(rec, slots[i + AHEAD], rw)
        base = slots[i] * rw
        b = reci[base + W_BKT]
        lo = min(lo, b)
        hi = max(hi, b)
        out_pk[i] = rec[base + W_BPK]
        out_by[i] = rec[base + W_BBY]
        for j in range(d):
            out_words[j, i] = rec32[2 * base + H_DIMS + j]
        if clear > 0:
            rec32[2 * base + H_STATE] &= _NOT_PENDING
    return lo, hi


#: Rows between hashing a row's value and adding it in :func:`add_marginals` (its slot's lines prefetched).
TALLY_AHEAD = 16


@njit(inline="always", cache=True)
def _tally_home(part, i, mask):
    # the home slot of row i's value words in a tally of mask + 1 slots
    h = _K0
    for j in range(part.shape[1]):
        h = _mix(h, np.uint64(part[i, j]))
    h = h * _K2
    h = h ^ (h >> np.uint64(29))
    return np.int64(h & np.uint64(mask))


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
    # Software pipeline (as aggregate_rows'): a tally of many values (AS numbers) is megabytes in four
    # arrays; row i + TALLY_AHEAD's home slot is hashed and its lines asked for while row i is added.
    ring = np.empty(_RING, np.int64)
    flat = keys.reshape(-1)
    for j in range(start, min(start + TALLY_AHEAD, n)):
        ring[j & _RING_MASK] = _tally_home(part, j, mask)
    for i in range(start, n):
        j = i + TALLY_AHEAD
        if j < n:
            sj = _tally_home(part, j, mask)
            ring[j & _RING_MASK] = sj
            prefetch(used, sj)
            prefetch(flat, sj * w)
            prefetch(mp, sj)
            prefetch(mb, sj)
        s = ring[i & _RING_MASK]
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


@njit(nogil=True, cache=True)
def add_direct(values, pk, by, mp, mb, used, meta):
    """:func:`add_marginals` for a narrow dimension: its values (uint32 (n,), each below ``mp``'s length)
    index the sums directly (``mp``/``mb`` uint64, ``used`` uint8, ``meta[0]`` = values held), no hashing
    (the same sums: the tests compare the two)."""
    for i in range(values.shape[0]):
        v = values[i]
        if used[v] == 0:
            used[v] = 1
            meta[0] += 1
        mp[v] = sat_add(mp[v], pk[i])
        mb[v] = sat_add(mb[v], by[i])


# --------------------------------------------------------------------------------------------------
# Plain-Python references
# --------------------------------------------------------------------------------------------------


def add_marginals_ref(
    out: dict[tuple[int, ...], list[int]], part: np.ndarray, pk: np.ndarray, by: np.ndarray
) -> None:
    """What :func:`add_marginals` adds, into ``out`` (value words -> [packets, bytes])."""
    for i in range(part.shape[0]):
        key = tuple(int(x) for x in part[i])
        got = out.setdefault(key, [0, 0])
        got[0] = min(got[0] + int(pk[i]), COUNT_MAX)
        got[1] = min(got[1] + int(by[i]), COUNT_MAX)


def spread_ref(
    entries: dict[tuple[int, tuple[int, ...]], tuple[int, int, int, int]], ratio: int, emap: dict[int, int]
) -> dict[tuple[int, tuple[int, ...]], tuple[int, int, int, int]]:
    """What :func:`spread` makes of the finest table's open entries ``(bucket, dimension words) ->
    (packets, bytes, state, epoch)``: the coarser table's, keyed the same way."""
    out: dict[tuple[int, tuple[int, ...]], tuple[int, int, int, int]] = {}
    for (b, dims), (p, y, st, e) in entries.items():
        key = (b // ratio, dims)
        assert key not in out, "two finest entries in one coarser entry"
        out[key] = (p, y, st, emap[e])
    return out


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
        key_dims = tuple(int(x) for x in mat[i])
        for k, (sp, sb) in split_ref(s, e, p, int(nbytes[i]), width_ns, max_span_ns).items():
            op, ob = out.get((k, key_dims), (0, 0))
            out[(k, key_dims)] = (min(op + sp, COUNT_MAX), min(ob + sb, COUNT_MAX))
    return out
