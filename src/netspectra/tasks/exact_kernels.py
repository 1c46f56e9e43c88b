"""Numba kernels of the exact task: a compact hash index over dense, append-only flow rows.

Three arrays, all uint64 (C-contiguous, one dimension). Flows live in one of two row arrays, each
appended to in order of first appearance (row ``r`` occupies words ``r * WORDS …``); rows beyond
the used count are capacity the kernels never read.

*rows* — a *compact* flow, one whose addresses are each IPv4-mapped (``::ffff:a.b.c.d``) or outside
the task's key: :data:`ROW_WORDS` words = 48 bytes.

======  =========  ===========================================================================
word    name       content
======  =========  ===========================================================================
0       ADDR       ``src4 << 32 | dst4``: the IPv4 addresses as the uint32 of their last 4 bytes
1       KEY        ``src_port << 24 | dst_port << 8 | protocol`` (masked)
2       FIRST      smallest timestamp seen, int64 ns stored biased (``^ TS_BIAS``, see below)
3       LAST       largest timestamp seen, biased the same way
4       PACKETS    packet count
5       BYTES      sum of wire lengths
======  =========  ===========================================================================

*wide* — any other flow (IPv6 on either side): :data:`WIDE_ROW_WORDS` words = 72 bytes: the source
and destination addresses, 16 bytes each read as two native uint64 words (``W_SRC_A`` … ``W_DST_B``),
then ``W_KEY`` (with the :data:`WIDE` bit) and the four counters as above (``W_FIRST`` …).

Whether a flow is compact depends on its key alone, so a flow is always found where it was put, and
one with an IPv6 side is read whole from one row (no second, dependent cache miss). Key fields
outside the task's key are masked to zero *before* encoding, hashing and comparing, so one kernel
serves every ``key_fields`` subset; the snapshot writes zeros for them.

*index* — open addressing with linear probing over a power-of-two number (at most 2^31) of 8-byte
slots: ``tag << 32 | ref``, 0 = empty. ``tag`` is the high 32 bits of the key's 64-bit hash; ``ref``
is ``row + 1`` of a compact row, or ``(row + 1) | WIDE_REF`` of a wide one. The home slot is the
hash's top ``log2(capacity)`` bits, so a slot's own high half tells its home in an index of any
size. A probe compares tags first, so a slot of another flow seldom costs a load of its row. Rows
never move: growing the table rebuilds only the index, from the old index alone (:func:`reindex`).

Timestamps are stored with their sign bit flipped (``ts ^ TS_BIAS``): unsigned comparison of biased
values orders them like signed int64, so the kernel needs no signed/unsigned casts.

The update kernel never lets the rows of both kinds together exceed ``limit``, nor the wide rows
exceed the *wide* array: when a new flow would, it stops and returns the index of the packet it
could not place; the caller grows what is full and resumes from that index, so nothing is lost.

Every kernel here has a plain-Python twin in :mod:`netspectra.tasks.exact_ref`; tests compare them.
"""

from __future__ import annotations

import numpy as np

from netspectra.jit import njit
from netspectra.prefetch import prefetch

ROW_WORDS = 6
ADDR, KEY, FIRST, LAST, PACKETS, BYTES = range(ROW_WORDS)
WIDE_ROW_WORDS = 9
W_SRC_A, W_SRC_B, W_DST_A, W_DST_B, W_KEY, W_FIRST, W_LAST, W_PACKETS, W_BYTES = range(WIDE_ROW_WORDS)

#: ``KEY`` flag of a wide flow (keeps the two kinds' hashes apart).
WIDE = np.uint64(1 << 62)
#: Flag of an index ``ref`` that points into the wide rows.
WIDE_REF = np.uint64(1 << 31)
TS_BIAS = np.uint64(1 << 63)
ALL_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)

#: Packets between hashing a packet (its home slot prefetched) and probing for it in :func:`update_flows`.
PREFETCH_SLOT = 32
#: Packets between reading a packet's home slots (its row prefetched) and probing for it.
PREFETCH_ROW = 16
_RING = 64  # a power of two > PREFETCH_SLOT: per-packet hash and key, kept from stage to stage
_RING_MASK = _RING - 1

_ONE = np.uint64(1)
_LOW32 = np.uint64(0xFFFF_FFFF)
_LOW31 = np.uint64(0x7FFF_FFFF)
#: The low 32 bits of the second word of an IPv4-mapped address: bytes 8..11 = 00 00 ff ff.
_V4_MAPPED = np.uint64(0xFFFF_0000)
_K_MIX = np.uint64(0x9E37_79B9_7F4A_7C15)
_K_F1 = np.uint64(0xFF51_AFD7_ED55_8CCD)
_K_F2 = np.uint64(0xC4CE_B9FE_1A85_EC53)
_SEED = np.uint64(0x2545_F491_4F6C_DD1D)
_S24 = np.uint64(24)
_S8 = np.uint64(8)
_S29 = np.uint64(29)
_S32 = np.uint64(32)
_S33 = np.uint64(33)
_RW = np.uint64(ROW_WORDS)
_WW = np.uint64(WIDE_ROW_WORDS)


@njit(nogil=True, cache=True, inline="always")
def _mix(h: np.uint64, w: np.uint64) -> np.uint64:
    h = (h ^ w) * _K_MIX
    return h ^ (h >> _S29)


@njit(nogil=True, cache=True, inline="always")
def _fmix(h: np.uint64) -> np.uint64:
    h ^= h >> _S33
    h *= _K_F1
    h ^= h >> _S33
    h *= _K_F2
    h ^= h >> _S33
    return h


@njit(nogil=True, cache=True, inline="always")
def hash_compact(addr: np.uint64, key: np.uint64) -> np.uint64:
    """64-bit hash of a compact flow's ``ADDR`` and ``KEY`` words (multiply-xorshift chain, then
    MurmurHash3's fmix64 finaliser, which spreads every input bit over the index and tag bits).
    Not cryptographic."""
    return _fmix(_mix(_mix(_SEED, addr), key))


@njit(nogil=True, cache=True, inline="always")
def hash_wide(a: np.uint64, b: np.uint64, c: np.uint64, d: np.uint64, key: np.uint64) -> np.uint64:
    """64-bit hash of a wide flow: its four address words and ``KEY`` (which has the WIDE bit)."""
    return _fmix(_mix(_mix(_mix(_mix(_mix(_SEED, a), b), c), d), key))


@njit(nogil=True, cache=True, inline="always")
def _is_compact(a: np.uint64, b: np.uint64, mask: np.uint64) -> bool:
    """Whether an address (words ``a``, ``b``, unmasked) fits the compact form under ``mask``."""
    return mask == 0 or (a == 0 and (b & _LOW32) == _V4_MAPPED)


@njit(nogil=True, cache=True, inline="always")
def sat_add(a: np.uint64, b: np.uint64) -> np.uint64:
    """``a + b``, or 2**64 - 1 where the sum would wrap (weighted rows of a hostile exporter)."""
    c = a + b
    return c if c >= a else ALL_ONES


@njit(nogil=True, cache=True)
def index_shift(capacity: int) -> np.uint64:
    """``64 - log2(capacity)``: a hash (or a slot: its high half is the hash's) shifted right by this
    is its home slot. ``capacity`` is a power of two, at most ``2**32``."""
    k = 0
    while (1 << k) < capacity:
        k += 1
    return np.uint64(64 - k)


@njit(nogil=True, cache=True, inline="always")
def _encode(
    i: int,
    src: np.ndarray,
    dst: np.ndarray,
    src_port: np.ndarray,
    dst_port: np.ndarray,
    protocol: np.ndarray,
    mask_src: np.uint64,
    mask_dst: np.uint64,
    mask_sport: np.uint64,
    mask_dport: np.uint64,
    mask_proto: np.uint64,
) -> tuple[np.uint64, np.uint64, np.uint64]:
    """Packet ``i``'s ``(hash, ADDR, KEY)``; ``ADDR`` is 0 for a wide flow (``KEY`` has WIDE)."""
    key = (
        ((np.uint64(src_port[i]) & mask_sport) << _S24)
        | ((np.uint64(dst_port[i]) & mask_dport) << _S8)
        | (np.uint64(protocol[i]) & mask_proto)
    )
    if _is_compact(src[i, 0], src[i, 1], mask_src) and _is_compact(dst[i, 0], dst[i, 1], mask_dst):
        addr = (((src[i, 1] & mask_src) >> _S32) << _S32) | ((dst[i, 1] & mask_dst) >> _S32)
        return hash_compact(addr, key), addr, key
    key |= WIDE
    h = hash_wide(src[i, 0] & mask_src, src[i, 1] & mask_src, dst[i, 0] & mask_dst, dst[i, 1] & mask_dst, key)
    return h, np.uint64(0), key


@njit(nogil=True, cache=True)
def update_flows(
    index: np.ndarray,
    rows: np.ndarray,
    wide: np.ndarray,
    state: np.ndarray,
    start: int,
    limit: int,
    src: np.ndarray,
    dst: np.ndarray,
    src_port: np.ndarray,
    dst_port: np.ndarray,
    protocol: np.ndarray,
    ts_u: np.ndarray,
    length: np.ndarray,
    mask_src: np.uint64,
    mask_dst: np.uint64,
    mask_sport: np.uint64,
    mask_dport: np.uint64,
    mask_proto: np.uint64,
    packets: np.ndarray | None = None,
    octets: np.ndarray | None = None,
    fstart_u: np.ndarray | None = None,
    extra: np.ndarray | None = None,
) -> int:
    """Account packets ``start..n-1``; return the index of the first packet not done.

    ``src``/``dst`` are the batch's addresses viewed as (n, 2) uint64, ``ts_u`` its ``ts_ns`` viewed
    as uint64. ``state`` is an int64 array: ``state[0]`` = compact rows used, ``state[1]`` = wide rows
    used, both updated in place. Returns ``n`` when every packet is in; a smaller index when a new
    flow would make the rows of both kinds more than ``limit``, or need a wide row beyond ``wide``
    (the caller grows and calls again from there). ``limit`` must not exceed the compact rows'
    capacity, nor leave the index without an empty slot. Masks are all-ones or zero per field.

    Weighted rows (flow-export records): ``packets`` and ``octets`` (uint64, together or neither) are
    what each row stands for — it adds ``packets[i]`` packets and ``octets[i]`` bytes (saturating at
    2**64 - 1 instead of wrapping) and a row of 0 packets adds nothing, not even its flow;
    ``fstart_u`` (the rows' ``flow_start_ns`` viewed as uint64) is each row's first packet, so the
    row spans ``min(fstart, ts) .. max(fstart, ts)``. ``None`` (the default) is a packet per row at
    ``ts``: numba compiles each combination on its own and prunes the branches of the absent ones, so
    the packet path runs the code it ran before these arguments existed.

    ``extra`` (uint64 (n, X), C-contiguous): each row's key words of the fields beyond the five
    (:mod:`netspectra.tasks.exact_fields`); they are part of the key (hashed after the five-tuple's
    hash, compared, stored after the row's own words: rows of ``ROW_WORDS + X`` and
    ``WIDE_ROW_WORDS + X`` words). ``None``: the five-tuple path, row sizes the constants above.

    Software pipeline, three packets in flight at three distances: packet ``k`` is encoded and
    hashed and its home slot prefetched; packet ``k - PREFETCH_ROW`` reads its home slots (by now
    in the cache) and prefetches the row its tag points to (both cache lines a row can span);
    packet ``k - PREFETCH_SLOT`` is probed and counted, mostly from the cache. Some 30 cache misses
    are in flight at once instead of two after each other per packet; the result is exactly that of
    the last stage alone, packet by packet in order.
    """
    shift = index_shift(index.shape[0])
    idx_mask = np.uint64(index.shape[0] - 1)
    used = np.uint64(state[0])
    wused = np.uint64(state[1])
    if extra is None:
        nx = 0
        rw = _RW
        ww = _WW
    else:
        nx = extra.shape[1]
        rw = _RW + np.uint64(nx)
        ww = _WW + np.uint64(nx)
    wide_cap = np.uint64(wide.shape[0]) // ww
    ulimit = np.uint64(limit)
    n = ts_u.shape[0]
    hashes = np.empty(_RING, np.uint64)
    addrs = np.empty(_RING, np.uint64)
    keys = np.empty(_RING, np.uint64)
    for k in range(start, n + PREFETCH_SLOT):
        if k < n:
            q = k & _RING_MASK
            h, addr, key = _encode(
                k, src, dst, src_port, dst_port, protocol,
                mask_src, mask_dst, mask_sport, mask_dport, mask_proto,
            )  # fmt: skip
            if extra is not None:
                h = mix_extra(h, extra, k, nx)
            hashes[q] = h
            addrs[q] = addr
            keys[q] = key
            prefetch(index, h >> shift)
        k2 = k - PREFETCH_ROW
        if start <= k2 < n:
            h = hashes[k2 & _RING_MASK]
            j = h >> shift
            s = index[j]
            while s != 0:
                if (s >> _S32) == (h >> _S32):
                    if s & WIDE_REF:
                        p = ((s & _LOW31) - _ONE) * ww
                        prefetch(wide, p)
                        prefetch(wide, p + ww - _ONE)
                    else:
                        p = ((s & _LOW32) - _ONE) * rw
                        prefetch(rows, p)
                        prefetch(rows, p + rw - _ONE)
                    break
                j = (j + _ONE) & idx_mask
                s = index[j]
        i = k - PREFETCH_SLOT
        if i < start:
            continue
        q = i & _RING_MASK
        h = hashes[q]
        key = keys[q]
        addr = addrs[q]
        tag = h >> _S32
        t = ts_u[i] ^ TS_BIAS
        t_first = t
        if fstart_u is not None:
            tf = fstart_u[i] ^ TS_BIAS
            if tf < t:
                t_first = tf
            else:
                t = tf
        if packets is None:
            pk = _ONE
            nbytes = np.uint64(length[i])
        else:
            pk = packets[i]
            nbytes = octets[i]
            if pk == 0:
                continue  # a record of no packet: nothing to count, no flow to create
        is_wide = (key & WIDE) != 0
        j = h >> shift
        while True:
            s = index[j]
            if s == 0:
                if used + wused >= ulimit:
                    state[0] = np.int64(used)
                    state[1] = np.int64(wused)
                    return i
                if is_wide:
                    if wused >= wide_cap:
                        state[0] = np.int64(used)
                        state[1] = np.int64(wused)
                        return i
                    p = wused * ww
                    wide[p + W_SRC_A] = src[i, 0] & mask_src
                    wide[p + W_SRC_B] = src[i, 1] & mask_src
                    wide[p + W_DST_A] = dst[i, 0] & mask_dst
                    wide[p + W_DST_B] = dst[i, 1] & mask_dst
                    wide[p + W_KEY] = key
                    wide[p + W_FIRST] = t_first
                    wide[p + W_LAST] = t
                    wide[p + W_PACKETS] = pk
                    wide[p + W_BYTES] = nbytes
                    if extra is not None:
                        for x in range(nx):
                            wide[p + _WW + np.uint64(x)] = extra[i, x]
                    wused += _ONE
                    index[j] = ((h >> _S32) << _S32) | wused | WIDE_REF
                else:
                    p = used * rw
                    rows[p + ADDR] = addr
                    rows[p + KEY] = key
                    rows[p + FIRST] = t_first
                    rows[p + LAST] = t
                    rows[p + PACKETS] = pk
                    rows[p + BYTES] = nbytes
                    if extra is not None:
                        for x in range(nx):
                            rows[p + _RW + np.uint64(x)] = extra[i, x]
                    used += _ONE
                    index[j] = ((h >> _S32) << _S32) | used
                break
            if (s >> _S32) == tag and ((s & WIDE_REF) != 0) == is_wide:
                if is_wide:
                    p = ((s & _LOW31) - _ONE) * ww
                    arr = wide
                    c = p + W_FIRST
                    same = (
                        wide[p + W_KEY] == key
                        and wide[p + W_SRC_A] == src[i, 0] & mask_src
                        and wide[p + W_SRC_B] == src[i, 1] & mask_src
                        and wide[p + W_DST_A] == dst[i, 0] & mask_dst
                        and wide[p + W_DST_B] == dst[i, 1] & mask_dst
                    )
                else:
                    p = ((s & _LOW32) - _ONE) * rw
                    arr = rows
                    c = p + FIRST
                    same = rows[p + KEY] == key and rows[p + ADDR] == addr
                if extra is not None and same:
                    e = p + (_WW if is_wide else _RW)
                    for x in range(nx):
                        if arr[e + np.uint64(x)] != extra[i, x]:
                            same = False
                            break
                if same:
                    # first/last are min/max, not "first/last processed": order-independent.
                    if t_first < arr[c]:
                        arr[c] = t_first
                    if t > arr[c + 1]:
                        arr[c + 1] = t
                    if packets is None:
                        arr[c + 2] += _ONE
                        arr[c + 3] += nbytes
                    else:
                        arr[c + 2] = sat_add(arr[c + 2], pk)
                        arr[c + 3] = sat_add(arr[c + 3], nbytes)
                    break
            j = (j + _ONE) & idx_mask
    state[0] = np.int64(used)
    state[1] = np.int64(wused)
    return n


@njit(nogil=True, cache=True, inline="always")
def mix_extra(h: np.uint64, extra: np.ndarray, i: int, nx: int) -> np.uint64:
    """The hash of a key with extra words: the five-tuple's hash ``h`` with row ``i``'s ``nx`` words of
    ``extra`` mixed in, finalised again (fmix64)."""
    for x in range(nx):
        h = _mix(h, extra[i, x])
    return _fmix(h)


@njit(nogil=True, cache=True)
def ref_hash(rows: np.ndarray, wide: np.ndarray, ref: np.uint64, nx: int = 0) -> np.uint64:
    """The 64-bit hash of the flow an index ``ref`` points to (rows with ``nx`` extra key words)."""
    if ref & WIDE_REF:
        p = ((ref & _LOW31) - _ONE) * (_WW + np.uint64(nx))
        h = hash_wide(wide[p], wide[p + 1], wide[p + 2], wide[p + 3], wide[p + W_KEY])
        e = p + _WW
        arr = wide
    else:
        p = (ref - _ONE) * (_RW + np.uint64(nx))
        h = hash_compact(rows[p + ADDR], rows[p + KEY])
        e = p + _RW
        arr = rows
    if nx == 0:
        return h
    for x in range(nx):
        h = _mix(h, arr[e + np.uint64(x)])
    return _fmix(h)


@njit(nogil=True, cache=True)
def reindex(old: np.ndarray, new: np.ndarray) -> int:
    """Insert every slot of the index ``old`` into the empty, larger index ``new``; return the slots moved.

    A slot holds the high half of its flow's hash, and the home slot is the hash's top bits, so the
    new home of a slot is the slot itself shifted: no row is read. Slots go in ``old``'s order, so
    the writes into ``new`` advance nearly sequentially. Keys are unique: no comparison is needed,
    each slot takes the first free place of its probe sequence. ``new`` must have more slots than
    ``old`` has entries, and at most ``2**32``.
    """
    shift = index_shift(new.shape[0])
    idx_mask = np.uint64(new.shape[0] - 1)
    moved = 0
    for i in range(old.shape[0]):
        s = old[i]
        if s == 0:
            continue
        j = s >> shift
        while new[j] != 0:
            j = (j + _ONE) & idx_mask
        new[j] = s
        moved += 1
    return moved


@njit(nogil=True, cache=True)
def export_rows(
    rows: np.ndarray,
    wide: np.ndarray,
    used: int,
    wide_used: int,
    keep_src: bool,
    keep_dst: bool,
    src: np.ndarray,
    dst: np.ndarray,
    src_port: np.ndarray,
    dst_port: np.ndarray,
    protocol: np.ndarray,
    first_u: np.ndarray,
    last_u: np.ndarray,
    packets: np.ndarray,
    nbytes: np.ndarray,
    extra_out: np.ndarray | None = None,
) -> None:
    """Decode the compact rows, then the wide rows, into snapshot columns of ``used + wide_used`` rows
    (``src``/``dst`` as (m, 2) uint64 views of the 16-byte addresses, ``first_u``/``last_u`` as uint64
    views of int64). A compact address of a field in the key (``keep_*``) becomes ``::ffff:a.b.c.d``;
    of a field outside it, all zeros. ``extra_out`` (m, X): the rows' extra key words (rows of
    ``ROW_WORDS + X`` / ``WIDE_ROW_WORDS + X`` words); ``None``: rows without."""
    nx = 0
    if extra_out is not None:
        nx = extra_out.shape[1]
    for r in range(used + wide_used):
        if r < used:
            p = r * (ROW_WORDS + nx)
            key = rows[p + KEY]
            addr = rows[p + ADDR]
            src[r, 0] = 0
            dst[r, 0] = 0
            src[r, 1] = (((addr >> _S32) << _S32) | _V4_MAPPED) if keep_src else np.uint64(0)
            dst[r, 1] = ((addr << _S32) | _V4_MAPPED) if keep_dst else np.uint64(0)
            arr = rows
            c = p + FIRST
        else:
            p = (r - used) * (WIDE_ROW_WORDS + nx)
            key = wide[p + W_KEY]
            src[r, 0] = wide[p + W_SRC_A]
            src[r, 1] = wide[p + W_SRC_B]
            dst[r, 0] = wide[p + W_DST_A]
            dst[r, 1] = wide[p + W_DST_B]
            arr = wide
            c = p + W_FIRST
        src_port[r] = np.uint16((key >> _S24) & np.uint64(0xFFFF))
        dst_port[r] = np.uint16((key >> _S8) & np.uint64(0xFFFF))
        protocol[r] = np.uint8(key & np.uint64(0xFF))
        first_u[r] = arr[c] ^ TS_BIAS
        last_u[r] = arr[c + 1] ^ TS_BIAS
        packets[r] = arr[c + 2]
        nbytes[r] = arr[c + 3]
        if extra_out is not None:
            e = p + (ROW_WORDS if r < used else WIDE_ROW_WORDS)
            for x in range(nx):
                extra_out[r, x] = arr[e + x]


@njit(nogil=True, cache=True)
def home_slots(
    capacity: int, rows: np.ndarray, wide: np.ndarray, used: int, wide_used: int, nx: int = 0
) -> np.ndarray:
    """Home slot (where probing starts) in an index of ``capacity`` slots of each compact row, then
    each wide row (the snapshot's row order); rows with ``nx`` extra key words."""
    shift = index_shift(capacity)
    out = np.empty(used + wide_used, np.int64)
    for r in range(used):
        out[r] = np.int64(ref_hash(rows, wide, np.uint64(r + 1), nx) >> shift)
    for r in range(wide_used):
        out[used + r] = np.int64(ref_hash(rows, wide, np.uint64(r + 1) | WIDE_REF, nx) >> shift)
    return out
