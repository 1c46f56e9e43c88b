"""The recombination of word sums (:mod:`netspectra.storage.sums`) against Python's exact integers; the
SQL itself is checked on chdb and on a ClickHouse 18.16 server in tests/integration/test_hostile_sums.py."""

from __future__ import annotations

import random

from netspectra.storage.sums import (
    U64_MAX,
    exact,
    high_word,
    low_word,
    ordered_words,
    saturated,
    saturating_sum,
    total,
    word_sums,
)


def words(values: list[int]) -> tuple[int, int]:
    """What ``sum(bitShiftRight(x, 32))`` and ``sum(bitAnd(x, 4294967295))`` give for ``values``."""
    return sum(v >> 32 for v in values), sum(v & 0xFFFFFFFF for v in values)


def test_word_sums_recombine_to_the_exact_sum() -> None:
    rng = random.Random(7)
    edges = [0, 1, 2**32 - 1, 2**32, 2**63 - 1, 2**63, U64_MAX - 1, U64_MAX]
    for _ in range(500):
        values = [
            rng.choice(edges) if rng.random() < 0.5 else rng.randrange(2**64)
            for _ in range(rng.randrange(1, 40))
        ]
        h, lo = words(values)
        assert h < 2**64 and lo < 2**64  # what a UInt64 sum holds: no wrap below 2**32 rows
        assert exact(h, lo) == sum(values)
        assert total(h, lo) == min(sum(values), U64_MAX)


def test_signed_word_differences_recombine() -> None:
    """total_increments sums the words' differences (Int64): a counter's rise, or a fall, exactly."""
    for a, b in [(1, U64_MAX), (U64_MAX, 1), (2**63, 2**63 + 5), (0, 0), (2**32 - 1, 2**32)]:
        assert exact((b >> 32) - (a >> 32), (b & 0xFFFFFFFF) - (a & 0xFFFFFFFF)) == b - a


def test_ordered_words_order_as_the_sums() -> None:
    """The key of ordered_words in Python: (high + low >> 32, low & mask) orders as the exact sum."""
    rng = random.Random(3)
    sums = [
        words([rng.choice([U64_MAX, 2**63, 5, 2**32]) for _ in range(rng.randrange(1, 6))])
        for _ in range(300)
    ]
    key = sorted(sums, key=lambda hl: (hl[0] + (hl[1] >> 32), hl[1] & 0xFFFFFFFF))
    assert [exact(*k) for k in key] == sorted(exact(*s) for s in sums)


def test_saturated_and_sql_shapes() -> None:
    assert saturated(U64_MAX + 1) == U64_MAX and saturated(U64_MAX) == U64_MAX and saturated(7) == 7
    assert high_word("Bytes") == "bitShiftRight(Bytes, 32)"
    assert low_word("Bytes") == "bitAnd(Bytes, 4294967295)"
    assert (
        word_sums("Bytes", "B") == "sum(bitShiftRight(Bytes, 32)) AS BH, sum(bitAnd(Bytes, 4294967295)) AS BL"
    )
    assert ordered_words("BH", "BL") == ("(BH + bitShiftRight(BL, 32))", "bitAnd(BL, 4294967295)")


def saturating_model(values: list[int]) -> int:
    """What :func:`saturating_sum`'s SQL computes, with ClickHouse's wrapping UInt64 sums."""
    high, plain = sum(v >> 32 for v in values) % 2**64, sum(values) % 2**64
    return U64_MAX if high >= 2**32 or plain < (high << 32) % 2**64 else plain


def test_saturating_sum_is_the_sum_saturated() -> None:
    rng = random.Random(11)
    edges = [0, 1, 5, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2**32, U64_MAX - 1, U64_MAX]
    cases = [
        [U64_MAX, 1],
        [2**63, 2**63 - 1],
        [2**63, 2**63],
        [2**64 - 2**32, 2**32 - 1],
        [2**64 - 2**32, 2**32],
    ]
    for _ in range(3000):
        n = rng.randrange(1, 12)
        pick = [
            rng.choice(edges) if rng.random() < 0.6 else rng.randrange(2 ** rng.randrange(1, 65))
            for _ in range(n)
        ]
        cases.append(pick)
    for values in cases:
        assert saturating_model(values) == min(sum(values), U64_MAX), values
    assert saturating_sum("P") == (
        "if(sum(bitShiftRight(P, 32)) >= 4294967296 OR sum(P) < bitShiftLeft(sum(bitShiftRight(P, 32)), 32), "
        f"toUInt64({U64_MAX}), sum(P))"
    )
