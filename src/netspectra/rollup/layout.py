"""The rollup tables' entry record: one row of 64-bit words per (bucket, dimension tuple), so that a row of
traffic reads and writes one or two cache lines of an entry instead of one line in each of nine arrays.

Light on purpose (no numpy, no numba): the rollup kind sizes its memory bound with it.

A table of ``cap`` slots is one 64-byte-aligned ``uint64`` array of ``cap * record_words(d)`` words
(``d``: the task's key words), seen three ways by the kernels (``uint64``, ``int64``, ``uint32``).
Slot ``s`` starts at word ``s * rw``:

========================  =====================================================================
64-bit word 0             ``bkt``: the bucket index (int64; bucket start // width)
64-bit words 1, 2         ``pk``, ``by``: packets and bytes since the entry opened (saturating)
64-bit words 3, 4         ``bpk``, ``bby``: the finest table's increments not yet carried into the
                          coarser tables (valid while the state has :data:`PENDING`)
32-bit word 10            ``state``: :data:`EMPTY`, :data:`OPEN` or :data:`DIRTY` in the low bits,
                          :data:`PENDING` (finest table: listed in ``touched``, increments to carry)
32-bit words 11 .. 11+d   the key words (:mod:`netspectra.rollup.keyplan`)
========================  =====================================================================

The record is padded to a whole number of cache lines (8 words): 1 line up to 5 key words, 2 lines up
to 21, and so on. The 18 dimensions an auto task of the 2,000-network benchmark has are 5 key words keyed
on codes (:mod:`netspectra.rollup.codes`: one line), 15 packed without them, 21 unpacked. The entry's
``epoch`` (written when it opens, read when it is handed out) lives in a separate array.
"""

from __future__ import annotations

W_BKT = 0
W_PK = 1
W_BY = 2
W_BPK = 3
W_BBY = 4
#: 32-bit word of the state, and of the first dimension word.
H_STATE = 10
H_DIMS = 11

EMPTY = 0
OPEN = 1
DIRTY = 2
#: State bit: the entry has increments not yet carried into the coarser tables (the finest table).
PENDING = 4
#: The low bits of the state: EMPTY, OPEN or DIRTY.
STATE_MASK = 3

#: 64-bit words per cache line.
LINE_WORDS = 8


def record_words(dim_words: int) -> int:
    """64-bit words of an entry with ``dim_words`` dimension words: whole cache lines."""
    words = (H_DIMS + dim_words + 1) // 2
    return -(-words // LINE_WORDS) * LINE_WORDS
