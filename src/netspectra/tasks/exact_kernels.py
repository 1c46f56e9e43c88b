"""Numba kernels of the exact task: an open-addressing hash table of flows.

Table layout (array of structs, one row per slot): a C-contiguous ``(capacity, ROW_WORDS)`` uint64 array.

======  =========  ===========================================================================
column  name       content
======  =========  ===========================================================================
0, 1    SRC_A/B    source address, the 16 bytes read as two native uint64 words (masked)
2, 3    DST_A/B    destination address, same
4       MISC       ``OCCUPIED | src_port << 24 | dst_port << 8 | protocol`` (masked); 0 = empty
5       FIRST      smallest timestamp seen, int64 ns stored biased (``^ TS_BIAS``, see below)
6       LAST       largest timestamp seen, biased the same way
7       PACKETS    packet count
8       BYTES      sum of wire lengths
======  =========  ===========================================================================

Key fields outside the task's key are masked to zero *before* hashing and comparing, so one kernel
serves every ``key_fields`` subset. The ``OCCUPIED`` bit (bit 63 of MISC) tells a used slot from an
empty one even when every key word is zero (e.g. a Protocol-only task seeing protocol 0).

Timestamps are stored with their sign bit flipped (``ts ^ TS_BIAS``): unsigned comparison of biased
values orders them like signed int64, so the kernel needs no signed/unsigned casts.

Probing is linear over a power-of-two capacity. The kernel never lets the number of used slots
exceed ``limit``: when a new flow would, it stops and returns the index of the packet it could not
place; the caller grows the table (:func:`rehash`) and resumes from that index, so nothing is lost.

Every kernel here has a plain-Python twin in :mod:`netspectra.tasks.exact_ref`; tests compare them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ROW_WORDS = 9
SRC_A, SRC_B, DST_A, DST_B, MISC, FIRST, LAST, PACKETS, BYTES = range(ROW_WORDS)

OCCUPIED = np.uint64(1 << 63)
TS_BIAS = np.uint64(1 << 63)
ALL_ONES = np.uint64(0xFFFF_FFFF_FFFF_FFFF)

#: Packets per block of :func:`update_table` (hashes computed and rows loaded ahead of probing).
BLOCK = 32

_ONE = np.uint64(1)
_LOW_BITS = np.uint64(0x7FFF_FFFF_FFFF_FFFF)
_K_MIX = np.uint64(0x9E37_79B9_7F4A_7C15)
_K_F1 = np.uint64(0xFF51_AFD7_ED55_8CCD)
_K_F2 = np.uint64(0xC4CE_B9FE_1A85_EC53)
_S24 = np.uint64(24)
_S8 = np.uint64(8)
_S29 = np.uint64(29)
_S32 = np.uint64(32)
_S33 = np.uint64(33)


@njit(nogil=True, cache=True, inline="always")
def _mix(h: np.uint64, w: np.uint64) -> np.uint64:
    h = (h ^ w) * _K_MIX
    return h ^ (h >> _S29)


@njit(nogil=True, cache=True, inline="always")
def hash_key(a: np.uint64, b: np.uint64, c: np.uint64, d: np.uint64, misc: np.uint64) -> np.uint64:
    """64-bit hash of one (masked) key: a multiply-xorshift chain and MurmurHash3's fmix64 finaliser.

    Not cryptographic; the finaliser spreads every input bit over the low bits the table index uses.
    """
    h = _mix(np.uint64(0x2545_F491_4F6C_DD1D), a)
    h = _mix(h, b)
    h = _mix(h, c)
    h = _mix(h, d)
    h = _mix(h, misc)
    h ^= h >> _S33
    h *= _K_F1
    h ^= h >> _S33
    h *= _K_F2
    h ^= h >> _S33
    return h


@njit(nogil=True, cache=True)
def pack_misc(src_port: int, dst_port: int, protocol: int) -> np.uint64:
    """The MISC word of an occupied slot (ports and protocol already masked)."""
    return OCCUPIED | (np.uint64(src_port) << _S24) | (np.uint64(dst_port) << _S8) | np.uint64(protocol)


@njit(nogil=True, cache=True)
def update_table(
    table: np.ndarray,
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
) -> int:
    """Account packets ``start..n-1`` into ``table``; return the index of the first packet not done.

    ``src``/``dst`` are the batch's addresses viewed as (n, 2) uint64, ``ts_u`` its ``ts_ns`` viewed
    as uint64. ``state`` is an int64 array of length >= 2: ``state[0]`` holds the number of used slots
    and is updated in place; ``state[1]`` is scratch. Returns ``n`` when every packet is in; a smaller
    index when a new flow would make more than ``limit`` slots used (the caller grows the table and
    calls again from there). Masks are all-ones or zero per field.

    Packets go in blocks of :data:`BLOCK`: keys and hashes first, then one plain load of each home row
    (independent loads, so the CPU keeps many cache misses in flight instead of one per packet),
    then the probing proper, which now mostly hits the cache. The result is exactly that of probing
    packet by packet.
    """
    cap_mask = np.uint64(table.shape[0] - 1)
    used = state[0]
    n = ts_u.shape[0]
    keys = np.empty((BLOCK, 6), np.uint64)
    touch = np.uint64(0)
    for base in range(start, n, BLOCK):
        end = min(base + BLOCK, n)
        for i in range(base, end):
            r = i - base
            a = src[i, 0] & mask_src
            b = src[i, 1] & mask_src
            c = dst[i, 0] & mask_dst
            d = dst[i, 1] & mask_dst
            misc = (
                OCCUPIED
                | ((np.uint64(src_port[i]) & mask_sport) << _S24)
                | ((np.uint64(dst_port[i]) & mask_dport) << _S8)
                | (np.uint64(protocol[i]) & mask_proto)
            )
            keys[r, 0] = a
            keys[r, 1] = b
            keys[r, 2] = c
            keys[r, 3] = d
            keys[r, 4] = misc
            keys[r, 5] = hash_key(a, b, c, d, misc) & cap_mask
        for r in range(end - base):
            # First and last word of the row: a 72-byte row usually spans two cache lines.
            touch ^= table[keys[r, 5], SRC_A] ^ table[keys[r, 5], BYTES]
        for i in range(base, end):
            r = i - base
            a = keys[r, 0]
            b = keys[r, 1]
            c = keys[r, 2]
            d = keys[r, 3]
            misc = keys[r, 4]
            j = keys[r, 5]
            t = ts_u[i] ^ TS_BIAS
            nbytes = np.uint64(length[i])
            while True:
                slot_misc = table[j, MISC]
                if slot_misc == misc and table[j, SRC_A] == a and table[j, SRC_B] == b:
                    if table[j, DST_A] == c and table[j, DST_B] == d:
                        # first/last are min/max, not "first/last processed": order-independent.
                        if t < table[j, FIRST]:
                            table[j, FIRST] = t
                        if t > table[j, LAST]:
                            table[j, LAST] = t
                        table[j, PACKETS] += _ONE
                        table[j, BYTES] += nbytes
                        break
                elif slot_misc == 0:
                    if used >= limit:
                        state[0] = used
                        state[1] = np.int64(touch & _LOW_BITS)
                        return i
                    table[j, SRC_A] = a
                    table[j, SRC_B] = b
                    table[j, DST_A] = c
                    table[j, DST_B] = d
                    table[j, MISC] = misc
                    table[j, FIRST] = t
                    table[j, LAST] = t
                    table[j, PACKETS] = _ONE
                    table[j, BYTES] = nbytes
                    used += 1
                    break
                j = (j + _ONE) & cap_mask
    state[0] = used
    # An observable use of the touched words, so the compiler cannot drop those loads.
    state[1] = np.int64(touch & _LOW_BITS)
    return n


@njit(nogil=True, cache=True)
def rehash(old: np.ndarray, new: np.ndarray) -> int:
    """Insert every occupied row of ``old`` into the empty table ``new``; return the rows moved.

    Keys in ``old`` are unique, so no comparison is needed: each row goes to the first free slot of
    its probe sequence in ``new`` (whose capacity must exceed the number of rows).
    """
    cap_mask = np.uint64(new.shape[0] - 1)
    moved = 0
    for r in range(old.shape[0]):
        if old[r, MISC] == 0:
            continue
        j = hash_key(old[r, SRC_A], old[r, SRC_B], old[r, DST_A], old[r, DST_B], old[r, MISC]) & cap_mask
        while new[j, MISC] != 0:
            j = (j + _ONE) & cap_mask
        for k in range(ROW_WORDS):
            new[j, k] = old[r, k]
        moved += 1
    return moved


@njit(nogil=True, cache=True)
def home_slots(keys: np.ndarray, capacity: int) -> np.ndarray:
    """Slot where each key (rows of (m, 5) uint64: SRC_A, SRC_B, DST_A, DST_B, MISC) starts probing."""
    cap_mask = np.uint64(capacity - 1)
    out = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        out[i] = np.int64(hash_key(keys[i, 0], keys[i, 1], keys[i, 2], keys[i, 3], keys[i, 4]) & cap_mask)
    return out
