"""Prefix tables: step functions over the IPv4 and IPv6 spaces, merged into the one table the kernel reads.

A *step function* (:class:`Steps4`, :class:`Steps6`) is a sorted array of range starts (the first is
always 0: the ranges tile the whole space) with one 64-bit value per range; 0 is "nothing". It is built
once per load, from disjoint networks (an MMDB's leaves), or from nested ones (the ``networks`` map:
the most specific network owns each address). Sources put their answer in their own bits of the value
(see :mod:`netspectra.enrich.kernels`), so merging sources is a union of range starts and an OR of the
values; adjacent ranges with equal values are coalesced. :class:`LookupTable` adds the bucket index and
the network attribute arrays and is what one batch is enriched with, whole.

Contract: every function here is pure numpy/numba over whole arrays (no per-range Python) except
:func:`nested_steps`, which runs over the ``networks`` map of the configuration (thousands of entries).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from netspectra.enrich.kernels import search128

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1

#: Widest bucket index (bits of the address): 2**22 uint64 entries = 32 MiB per family. By default an
#: index has about four buckets per range (:func:`index_bits`), so that most buckets lie inside one range
#: and hold its value: one memory access per lookup. Measured in benchmarks/bench_enrich.py (RESULTS.md):
#: on a 520 k-network database, 16 bits gave 11 M rows/s per core, 20 bits 18 M, 22 bits 21 M.
MAX_INDEX_BITS = 22
MIN_INDEX_BITS = 8


def index_bits(ranges: int) -> int:
    """The bucket-index width for a step function of ``ranges`` ranges: about four buckets per range,
    between :data:`MIN_INDEX_BITS` and :data:`MAX_INDEX_BITS`."""
    return max(MIN_INDEX_BITS, min(MAX_INDEX_BITS, max(ranges - 1, 1).bit_length() + 2))


@dataclass(frozen=True)
class Steps4:
    """A step function over IPv4: ``starts`` uint32 (sorted, ``starts[0] == 0``), ``vals`` uint64."""

    starts: np.ndarray
    vals: np.ndarray

    @staticmethod
    def empty() -> Steps4:
        return Steps4(np.zeros(1, np.uint32), np.zeros(1, np.uint64))

    def __len__(self) -> int:
        return int(self.starts.shape[0])


@dataclass(frozen=True)
class Steps6:
    """A step function over IPv6: starts as ``hi``/``lo`` uint64 (big-endian halves), ``vals`` uint64."""

    hi: np.ndarray
    lo: np.ndarray
    vals: np.ndarray

    @staticmethod
    def empty() -> Steps6:
        return Steps6(np.zeros(1, np.uint64), np.zeros(1, np.uint64), np.zeros(1, np.uint64))

    def __len__(self) -> int:
        return int(self.hi.shape[0])


def _coalesce4(starts: np.ndarray, vals: np.ndarray) -> Steps4:
    keep = np.ones(vals.shape[0], dtype=bool)
    keep[1:] = vals[1:] != vals[:-1]
    return Steps4(np.ascontiguousarray(starts[keep], dtype=np.uint32), np.ascontiguousarray(vals[keep]))


def _coalesce6(hi: np.ndarray, lo: np.ndarray, vals: np.ndarray) -> Steps6:
    keep = np.ones(vals.shape[0], dtype=bool)
    keep[1:] = vals[1:] != vals[:-1]
    return Steps6(
        np.ascontiguousarray(hi[keep]), np.ascontiguousarray(lo[keep]), np.ascontiguousarray(vals[keep])
    )


def disjoint_steps4(first: np.ndarray, last: np.ndarray, vals: np.ndarray) -> Steps4:
    """The step function of disjoint IPv4 ranges ``[first[i], last[i]]`` (sorted) with ``vals[i]``; the
    gaps get 0. ``ValueError`` if the ranges are not sorted and disjoint."""
    first = np.asarray(first, dtype=np.int64)
    last = np.asarray(last, dtype=np.int64)
    vals = np.asarray(vals, dtype=np.uint64)
    if first.shape[0] == 0:
        return Steps4.empty()
    if np.any(last < first) or np.any(first[1:] <= last[:-1]):
        raise ValueError("the networks are not sorted and disjoint")
    ends = last + 1
    has_end = ends <= U32_MAX
    keys = np.concatenate([first, ends[has_end], [0]])
    v = np.concatenate([vals, np.zeros(int(has_end.sum()) + 1, np.uint64)])
    # At one key: the gap marker (priority 0) < an end marker (1) < a range start (2); the last one wins.
    prio = np.concatenate([np.full(first.shape[0], 2), np.ones(int(has_end.sum())), [0]]).astype(np.int8)
    order = np.lexsort((prio, keys))
    keys, v = keys[order], v[order]
    last_of_key = np.ones(keys.shape[0], dtype=bool)
    last_of_key[:-1] = keys[1:] != keys[:-1]
    return _coalesce4(keys[last_of_key].astype(np.uint32), v[last_of_key])


def _split128(values: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    hi = np.fromiter((v >> 64 for v in values), dtype=np.uint64, count=len(values))
    lo = np.fromiter((v & U64_MAX for v in values), dtype=np.uint64, count=len(values))
    return hi, lo


def disjoint_steps6(first: Sequence[int], last: Sequence[int], vals: np.ndarray) -> Steps6:
    """:func:`disjoint_steps4` for IPv6, ranges given as 128-bit Python integers."""
    vals = np.asarray(vals, dtype=np.uint64)
    if len(first) == 0:
        return Steps6.empty()
    fhi, flo = _split128(first)
    lhi, llo = _split128(last)
    # Sorted and disjoint: first[i] > last[i - 1] and last[i] >= first[i], compared as (hi, lo).
    gt_prev = (fhi[1:] > lhi[:-1]) | ((fhi[1:] == lhi[:-1]) & (flo[1:] > llo[:-1]))
    ordered = (lhi > fhi) | ((lhi == fhi) & (llo >= flo))
    if not (np.all(gt_prev) and np.all(ordered)):
        raise ValueError("the networks are not sorted and disjoint")
    ehi = lhi + (llo == np.uint64(U64_MAX)).astype(np.uint64)
    elo = llo + np.uint64(1)  # wraps to 0 exactly when the carry went into ehi
    has_end = ~((lhi == np.uint64(U64_MAX)) & (llo == np.uint64(U64_MAX)))
    n_end = int(has_end.sum())
    hi = np.concatenate([fhi, ehi[has_end], np.zeros(1, np.uint64)])
    lo = np.concatenate([flo, elo[has_end], np.zeros(1, np.uint64)])
    v = np.concatenate([vals, np.zeros(n_end + 1, np.uint64)])
    prio = np.concatenate([np.full(fhi.shape[0], 2), np.ones(n_end), [0]]).astype(np.int8)
    order = np.lexsort((prio, lo, hi))
    hi, lo, v = hi[order], lo[order], v[order]
    last_of_key = np.ones(hi.shape[0], dtype=bool)
    last_of_key[:-1] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    return _coalesce6(hi[last_of_key], lo[last_of_key], v[last_of_key])


def nested_steps(entries: Sequence[tuple[int, int, int, int]], space_max: int) -> tuple[list[int], list[int]]:
    """The step function of possibly nested prefixes: ``entries`` are ``(first, last, prefix_len, value)``
    with prefixes that are nested or disjoint (never partly overlapping, which prefixes cannot be).
    Returns ``(starts, values)`` as Python lists; the most specific prefix owns each address, the rest of
    the space gets 0. ``space_max`` is the last address of the space."""
    steps: list[tuple[int, int]] = [(0, 0)]
    stack: list[tuple[int, int]] = []  # (last, value) of the open prefixes, innermost last

    def close_until(pos: int) -> None:
        while stack and stack[-1][0] < pos:
            end = stack.pop()[0]
            if end < space_max:
                steps.append((end + 1, stack[-1][1] if stack else 0))

    for first, last, _plen, value in sorted(entries, key=lambda e: (e[0], e[2])):
        close_until(first)
        steps.append((first, value))
        stack.append((last, value))
    close_until(space_max + 1)
    starts: list[int] = []
    values: list[int] = []
    for key, value in steps:  # keys never decrease; at one key the last step wins
        if starts and starts[-1] == key:
            values[-1] = value
        else:
            starts.append(key)
            values.append(value)
    return starts, values


def steps4_from_lists(starts: list[int], values: list[int]) -> Steps4:
    return _coalesce4(np.array(starts, dtype=np.uint32), np.array(values, dtype=np.uint64))


def steps6_from_lists(starts: list[int], values: list[int]) -> Steps6:
    hi, lo = _split128(starts)
    return _coalesce6(hi, lo, np.array(values, dtype=np.uint64))


def merge4(parts: Sequence[Steps4]) -> Steps4:
    """The step function whose value is the OR of ``parts``' values at every address."""
    if not parts:
        return Steps4.empty()
    if len(parts) == 1:  # the OR of one step function is itself (a networks map alone; the warm-up)
        return _coalesce4(parts[0].starts, parts[0].vals)
    starts = np.unique(np.concatenate([p.starts for p in parts]))
    vals = np.zeros(starts.shape[0], np.uint64)
    for p in parts:
        vals |= p.vals[np.searchsorted(p.starts, starts, side="right") - 1]
    return _coalesce4(starts, vals)


def merge6(parts: Sequence[Steps6]) -> Steps6:
    """:func:`merge4` for IPv6."""
    if not parts:
        return Steps6.empty()
    if len(parts) == 1:
        return _coalesce6(parts[0].hi, parts[0].lo, parts[0].vals)
    hi = np.concatenate([p.hi for p in parts])
    lo = np.concatenate([p.lo for p in parts])
    order = np.lexsort((lo, hi))
    hi, lo = hi[order], lo[order]
    first_of_key = np.ones(hi.shape[0], dtype=bool)
    first_of_key[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    hi, lo = np.ascontiguousarray(hi[first_of_key]), np.ascontiguousarray(lo[first_of_key])
    vals = np.zeros(hi.shape[0], np.uint64)
    for p in parts:
        vals |= p.vals[search128(p.hi, p.lo, hi, lo)]
    return _coalesce6(hi, lo, vals)


def _entries(first: np.ndarray, last: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """Bucket-index entries from each bucket's first and last range (see :func:`bucket_index4`)."""
    from netspectra.enrich.kernels import DIRECT

    if np.any(vals & np.uint64(DIRECT)):
        raise ValueError("a value uses bit 21 (network ids are 21-bit)")
    extra = (last - first).astype(np.uint64)
    packed = (first.astype(np.uint64) << np.uint64(32)) | (extra & np.uint64(0x1FFFFF))
    packed |= (extra >> np.uint64(21)) << np.uint64(22)
    return np.where(extra == 0, vals[first] | np.uint64(DIRECT), packed).astype(np.uint64)


def bucket_index4(starts: np.ndarray, vals: np.ndarray, bits: int) -> np.ndarray:
    """The IPv4 bucket index (uint64, one entry per bucket of the top ``bits`` bits): a bucket inside one
    range holds that range's value with bit 21 set (:data:`~netspectra.enrich.kernels.DIRECT`); the
    others hold their first range (bits 32..63) and their number of ranges beyond it (bits 0..20 and
    22..31, bit 21 clear)."""
    keys = np.arange((1 << bits) + 1, dtype=np.uint64) << np.uint64(32 - bits)
    s = starts.astype(np.uint64)
    first = np.searchsorted(s, keys[:-1], side="right") - 1
    last = np.searchsorted(s, keys[1:] - np.uint64(1), side="right") - 1
    return _entries(first, last, vals)


#: The IPv6 bucket index covers 2000::/3 (global unicast); the kernel searches other addresses whole.
INDEX6_PREFIX_BITS = 3


def bucket_index6(hi: np.ndarray, lo: np.ndarray, vals: np.ndarray, bits: int) -> np.ndarray:
    """:func:`bucket_index4` for IPv6 over ``2000::/3``: bucket ``k`` holds the addresses whose bits
    3 .. 3 + ``bits`` are ``k``."""
    shift = np.uint64(64 - INDEX6_PREFIX_BITS - bits)
    base = np.uint64(1) << np.uint64(61)
    if hi.shape[0] == 1:  # one range holds every address (no IPv6 network: the warm-up, an IPv4 map)
        first = last = np.zeros(1 << bits, np.int64)
        return _entries(first, last, vals)
    k = np.arange((1 << bits) + 1, dtype=np.uint64)
    first = search128(hi, lo, base + (k[:-1] << shift), np.zeros(1 << bits, np.uint64))
    # The last address of bucket k is the first of bucket k + 1 minus one: (hi - 1, 2**64 - 1).
    last = search128(hi, lo, base + (k[1:] << shift) - np.uint64(1), np.full(1 << bits, U64_MAX, np.uint64))
    return _entries(first, last, vals)


@dataclass(frozen=True)
class LookupTable:
    """Everything one batch is enriched with: the merged step functions, their bucket indexes, the alias
    masks, and the network attribute arrays (``net_asn``, ``net_cc``, ``net_attr`` (k, m)). Immutable:
    a reload builds a new one and swaps the reference."""

    steps4: Steps4
    steps6: Steps6
    idx4: np.ndarray
    shift4: int
    idx6: np.ndarray
    shift6: int
    mask_compat: np.uint64
    mask_6to4: np.uint64
    mask_teredo: np.uint64
    net_asn: np.ndarray
    net_cc: np.ndarray
    net_attr: np.ndarray
    #: Increases by one with every table an :class:`~netspectra.enrich.enricher.Enricher` builds.
    generation: int = 0
    #: What went into the table: source name -> a one-line description (path, type, networks).
    sources: dict[str, str] = field(default_factory=dict)

    @functools.cached_property
    def used_attributes(self) -> tuple[int, ...]:
        """Rows of ``net_attr`` that some network sets (the others are all unknown)."""
        return tuple(j for j in range(self.net_attr.shape[0]) if self.net_attr[j].any())

    @functools.cached_property
    def used_net_attr(self) -> np.ndarray:
        """``net_attr`` restricted to :attr:`used_attributes` (what the kernel gathers)."""
        return np.ascontiguousarray(self.net_attr[list(self.used_attributes)], dtype=np.uint16)

    @property
    def nbytes(self) -> int:
        arrays = (self.steps4.starts, self.steps4.vals, self.steps6.hi, self.steps6.lo, self.steps6.vals)
        return sum(
            a.nbytes for a in (*arrays, self.idx4, self.idx6, self.net_asn, self.net_cc, self.net_attr)
        )

    def kernel_args(self, *, used_only: bool = False) -> tuple:
        """The table's arrays in :func:`~netspectra.enrich.kernels.enrich_side`'s order (``used_only``:
        only the network attributes some network sets, see :attr:`used_attributes`)."""
        return (
            self.idx4,
            self.shift4,
            self.steps4.starts,
            self.steps4.vals,
            self.idx6,
            self.shift6,
            self.steps6.hi,
            self.steps6.lo,
            self.steps6.vals,
            self.mask_compat,
            self.mask_6to4,
            self.mask_teredo,
            self.net_asn,
            self.net_cc,
            self.used_net_attr if used_only else self.net_attr,
        )


def build_table(
    steps4: Sequence[Steps4],
    steps6: Sequence[Steps6],
    *,
    masks: tuple[int, int, int],
    net_asn: np.ndarray,
    net_cc: np.ndarray,
    net_attr: np.ndarray,
    bits4: int | None = None,
    bits6: int | None = None,
    generation: int = 0,
    sources: dict[str, str] | None = None,
) -> LookupTable:
    """Merge the sources' step functions and index them (``masks``: compat, 6to4, Teredo; ``bits4``,
    ``bits6``: index widths, by default from :func:`index_bits`)."""
    s4 = merge4(steps4)
    s6 = merge6(steps6)
    bits4 = index_bits(len(s4)) if bits4 is None else bits4
    bits6 = index_bits(len(s6)) if bits6 is None else bits6
    return LookupTable(
        s4,
        s6,
        bucket_index4(s4.starts, s4.vals, bits4),
        32 - bits4,
        bucket_index6(s6.hi, s6.lo, s6.vals, bits6),
        64 - INDEX6_PREFIX_BITS - bits6,
        np.uint64(masks[0]),
        np.uint64(masks[1]),
        np.uint64(masks[2]),
        np.ascontiguousarray(net_asn, dtype=np.uint32),
        np.ascontiguousarray(net_cc, dtype=np.uint16),
        np.ascontiguousarray(net_attr, dtype=np.uint16),
        generation,
        dict(sources or {}),
    )
