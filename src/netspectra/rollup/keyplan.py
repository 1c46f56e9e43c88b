"""How a rollup task's dimension values are laid out in the key words of its tables: narrow values share
a 32-bit word.

Light on purpose (no numpy): the rollup kind sizes its memory bound with it.

A dimension's value has a fixed width (:attr:`~netspectra.rollup.dims.Dimension.bits`): the protocol 8
bits, the dictionary codes of the enrichment's text columns 8 or 16 (their column types), AS numbers and
interface indexes 32, the exporter's address 128 (4 words). The rows a task hands out hold one word per
32 bits of each dimension, in the order of its dimensions (:class:`~netspectra.rollup.task.RollupRows`);
its tables are keyed on fewer words: dimensions of at most 16 bits are packed into shared words (first
fit, in the order of the dimensions), the others keep words of their own. Packing is a bijection on the
values that fit their widths, so the table holds exactly the entries it would hold keyed on the rows'
words (same tuples, counters, closes, early closes, epochs); the words are unpacked when rows and the
per-dimension totals are handed out. The 18 dimensions of an auto task with the five network attributes
of both sides are 21 row words and 15 key words packed: fewer words to gather, transpose, hash and
compare per row. A task keyed on codes (:mod:`netspectra.rollup.codes`: the flow tuple, the address
sides) plans only its other dimensions here; its coded words follow them (the auto task: 5 key words,
one cache line, :mod:`netspectra.rollup.layout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Values of at most this many bits share key words.
PACKED_BITS = 16
#: Rows whose key words are gathered and counted at a time (``RollupTask._aggregate``): their words
#: (twice: a column at a time, then a row at a time) stay in the cache at 18 dimensions, and the task's
#: working copy is bounded by it (``RollupAggregator.memory_bytes``).
CHUNK = 8192


@dataclass(frozen=True, slots=True)
class Field:
    """One dimension in the key: its first row word (``row``), its first key word (``word``), the bit
    ``shift`` of its value in that word and its width in ``bits`` (a dimension of 32 bits or more:
    ``bits // 32`` whole words from ``word``, shift 0)."""

    row: int
    word: int
    shift: int
    bits: int

    @property
    def packed(self) -> bool:
        return self.bits < 32

    @property
    def words(self) -> int:
        return 1 if self.packed else self.bits // 32


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """Where each dimension of a task lives in its key words (:data:`fields`, in the order of the
    dimensions), how many key words there are (``key_words``) and row words (``row_words``)."""

    fields: tuple[Field, ...]
    key_words: int
    row_words: int

    @property
    def identity(self) -> bool:
        """Key words and row words are the same (nothing is packed)."""
        return all(f.word == f.row and f.shift == 0 for f in self.fields) and self.key_words == self.row_words

    @staticmethod
    def of(bits: Sequence[int], *, pack: bool = True) -> KeyPlan:
        """The plan for dimensions of these widths (in bits: 8, 16, 32 or a multiple of 32); ``pack``
        off: one word per 32 bits, as the rows (no dimension shares a word)."""
        fields: list[Field] = []
        room: list[int] = []  # per key word, the bits used so far (packed words only; 32: full)
        row = 0
        for b in bits:
            if b <= 0 or (b > PACKED_BITS and b % 32) or (b <= PACKED_BITS and 32 % b):
                raise ValueError(f"a dimension of {b} bits cannot be keyed")
            words = max(1, b // 32)
            if pack and b <= PACKED_BITS:
                word = next((w for w, used in enumerate(room) if used + b <= 32), None)
                if word is None:
                    word = len(room)
                    room.append(0)
                fields.append(Field(row, word, room[word], b))
                room[word] += b
            else:
                fields.append(Field(row, len(room), 0, max(b, 32)))  # unpacked: a word of its own
                room.extend([32] * words)
            row += words
        return KeyPlan(tuple(fields), len(room), row)
