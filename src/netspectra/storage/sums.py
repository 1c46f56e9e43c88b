"""Sums of stored UInt64 counters that never wrap, on every backend (chdb and a ClickHouse 18.16 server).

Counters saturate at 2**64 - 1 instead of wrapping (:mod:`netspectra.weights`), so a hostile or broken
exporter can make a stored ``Bytes`` or ``Packets`` value as large as that. ClickHouse's ``sum`` over
``UInt64`` wraps modulo 2**64 and ``toInt64`` of a value >= 2**63 is negative, so two such rows would turn
a total into garbage and put a top-N in the wrong order. 18.16 has no 128-bit integers and no decimals
that hold 2**64, so every query that adds counters sums each value's two 32-bit words apart:
``sum(bitShiftRight(x, 32))`` and ``sum(bitAnd(x, 4294967295))`` (:func:`word_sums`). Each word is below
2**32, so each word sum is exact for fewer than 2**32 (4.29 billion) rows added into one answer, and
``high * 2**32 + low`` (:func:`exact`, in Python) is the exact sum.

Ordering in SQL: the exact sum's own words are ``(high + bitShiftRight(low, 32), bitAnd(low,
4294967295))`` (:func:`ordered_words`): two ``UInt64`` that order as the sum does (descending: ``DESC`` on
both, or ``bitNot`` of both inside an ``arraySort`` key, exact for every ``UInt64``).

Where SQL goes on adding or ranking sums (the console's nested levels), :func:`saturating_sum` gives the
sum saturated at 2**64 - 1 as one ``UInt64`` (the plain sum, unless the high words' sum shows that it
wrapped): ranks above the largest ``UInt64`` tie, nothing wraps.

Answers: a sum that goes past 2**64 - 1 is given as 2**64 - 1 (:func:`saturated`), as the counters
themselves are and as the API's ``uint64`` fields can carry; the ordering uses the exact sum, and a
difference of sums (the "other" of a series) is taken from the exact sums before saturating.
"""

from __future__ import annotations

from typing import SupportsInt

#: The largest ``UInt64``: where counters and the totals of the answers saturate.
U64_MAX = 2**64 - 1
#: ``bitAnd`` mask of a value's low 32-bit word (a literal in SQL: no parameter needed).
_LOW = 4294967295


def high_word(expr: str) -> str:
    """SQL: the high 32-bit word of ``UInt64`` expression ``expr`` (a ``UInt64`` below 2**32)."""
    return f"bitShiftRight({expr}, 32)"


def low_word(expr: str) -> str:
    """SQL: the low 32-bit word of ``UInt64`` expression ``expr`` (a ``UInt64`` below 2**32)."""
    return f"bitAnd({expr}, {_LOW})"


def word_sums(expr: str, alias: str) -> str:
    """SQL of the two aggregates that add ``expr`` (a ``UInt64`` column or expression) exactly:
    ``sum`` of its high words as ``<alias>H`` and of its low words as ``<alias>L``; :func:`exact` of the
    two is the sum. ``expr`` and ``alias`` are SQL the caller owns (column names), never user input."""
    return f"sum({high_word(expr)}) AS {alias}H, sum({low_word(expr)}) AS {alias}L"


def saturating_sum(expr: str) -> str:
    """SQL of the sum of ``UInt64`` expression ``expr``, saturated at 2**64 - 1, as one ``UInt64``: for
    queries that go on summing or ranking in SQL (the console's levels). Summing saturated sums again
    saturates the same as one sum of everything (the values are never negative).

    Two aggregates: the plain (wrapping) ``W = sum(x)`` and the high words' ``H = sum(x >> 32)``. The
    true sum is ``S = H * 2**32 + L`` with ``L`` the low words' sum, ``0 <= L < 2**64`` for fewer than
    2**32 rows. ``S < 2**64`` exactly when ``H < 2**32`` and ``W >= H * 2**32``: then ``W = S``; else
    either ``H >= 2**32`` or ``W = S - k * 2**64 < H * 2**32`` (as ``L < 2**64``). One shift a row: cheaper
    than adding both words apart (measured: benchmarks/RESULTS.md)."""
    high, plain = f"sum({high_word(expr)})", f"sum({expr})"
    return f"if({high} >= 4294967296 OR {plain} < bitShiftLeft({high}, 32), toUInt64({U64_MAX}), {plain})"


def ordered_words(high: str, low: str) -> tuple[str, str]:
    """SQL: the high and low 32-bit words of the exact sum ``high * 2**32 + low`` (word sums of
    :func:`word_sums`): ordering by the first, then the second, orders by the sum (it stays exact while
    the sum is below 2**96)."""
    return f"({high} + bitShiftRight({low}, 32))", f"bitAnd({low}, {_LOW})"


def exact(high: SupportsInt, low: SupportsInt) -> int:
    """The exact sum from its word sums (ints, or what ``int()`` takes; signed word sums too)."""
    return (int(high) << 32) + int(low)


def saturated(value: int) -> int:
    """``value``, or 2**64 - 1 where it is larger (a ``uint64`` answer)."""
    return value if value <= U64_MAX else U64_MAX


def scaled(value: SupportsInt, factor: int) -> int:
    """A sample's estimate: ``value`` times the sample ``factor``, saturated at 2**64 - 1 like every
    ``uint64`` answer (a sampled sum of hostile counters must not turn into a number no column holds)."""
    return saturated(int(value) * factor)


def total(high: SupportsInt, low: SupportsInt) -> int:
    """:func:`exact`, saturated at 2**64 - 1."""
    return saturated(exact(high, low))


__all__ = [
    "U64_MAX",
    "exact",
    "high_word",
    "low_word",
    "ordered_words",
    "saturated",
    "saturating_sum",
    "scaled",
    "total",
    "word_sums",
]
