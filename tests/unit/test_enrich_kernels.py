"""Prefix tables and the enrichment kernel: the numba kernel, its plain-Python reference and a
brute-force longest-prefix match agree, on random nested tables and on the edges of every range."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from netspectra.enrich.kernels import (
    ASN_FIELD,
    CC_FIELD,
    N_MISSES,
    NET_MASK,
    enrich_side,
    enrich_side_ref,
    search128,
    search128_ref,
    unique_pairs,
    unique_pairs_ref,
)
from netspectra.enrich.table import (
    Steps4,
    Steps6,
    build_table,
    disjoint_steps4,
    disjoint_steps6,
    merge4,
    merge6,
    nested_steps,
    steps4_from_lists,
    steps6_from_lists,
)

MAPPED = 0xFFFF << 32


def addr16(text: str) -> np.ndarray:
    """NetSpectra's 16-byte form of an address: IPv4 as ``::ffff:a.b.c.d``."""
    a = ipaddress.ip_address(text)
    value = (MAPPED | int(a)) if a.version == 4 else int(a)
    return np.frombuffer(value.to_bytes(16, "big"), np.uint8)


def rows(values: list[int]) -> np.ndarray:
    return np.stack([np.frombuffer(v.to_bytes(16, "big"), np.uint8) for v in values])


def random_prefixes(
    rng: np.random.Generator, n: int, bits: int, lo_len: int, hi_len: int
) -> list[tuple[int, int]]:
    """``n`` distinct random prefixes ``(network, length)`` of a ``bits``-bit space."""
    out: set[tuple[int, int]] = set()
    while len(out) < n:
        plen = int(rng.integers(lo_len, hi_len + 1))
        value = int.from_bytes(rng.bytes(bits // 8), "big")
        out.add((value & ~((1 << (bits - plen)) - 1) & ((1 << bits) - 1), plen))
    return sorted(out)


def brute(prefixes: list[tuple[int, int, int]], bits: int, x: int) -> int:
    """Value of the longest prefix ``(network, length, value)`` holding ``x`` (0 if none)."""
    best, best_len = 0, -1
    for net, plen, value in prefixes:
        if plen > best_len and (x >> (bits - plen) if plen else 0) == (net >> (bits - plen) if plen else 0):
            best, best_len = value, plen
    return best


def probes(prefixes: list[tuple[int, int, int]], bits: int, rng: np.random.Generator, n: int) -> list[int]:
    """Every range edge (first, last, first - 1, last + 1) plus ``n`` random addresses."""
    top = (1 << bits) - 1
    out = {0, top}
    for net, plen, _ in prefixes:
        last = net | ((1 << (bits - plen)) - 1)
        out.update(v for v in (net, last, net - 1, last + 1) if 0 <= v <= top)
    out.update(int.from_bytes(rng.bytes(bits // 8), "big") for _ in range(n))
    return sorted(out)


def _nested(
    prefixes: list[tuple[int, int]], bits: int, rng: np.random.Generator
) -> list[tuple[int, int, int]]:
    return [(net, plen, int(rng.integers(1, NET_MASK))) for net, plen in prefixes]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nested_steps_is_longest_prefix_match(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p4 = _nested(random_prefixes(rng, 300, 32, 0, 32), 32, rng)
    starts, values = nested_steps([(n, n | ((1 << (32 - pl)) - 1), pl, v) for n, pl, v in p4], (1 << 32) - 1)
    s4 = steps4_from_lists(starts, values)
    keys = s4.starts.tolist()
    import bisect

    for x in probes(p4, 32, rng, 500):
        assert int(s4.vals[bisect.bisect_right(keys, x) - 1]) == brute(p4, 32, x), hex(x)


def test_disjoint_steps_fill_gaps_and_refuse_overlaps() -> None:
    s = disjoint_steps4(np.array([10, 20]), np.array([14, 2**32 - 1]), np.array([7, 9], np.uint64))
    assert s.starts.tolist() == [0, 10, 15, 20]
    assert s.vals.tolist() == [0, 7, 0, 9]
    adjacent = disjoint_steps4(np.array([0, 5]), np.array([4, 9]), np.array([3, 3], np.uint64))
    assert adjacent.starts.tolist() == [0, 10] and adjacent.vals.tolist() == [3, 0]  # coalesced
    with pytest.raises(ValueError, match="sorted and disjoint"):
        disjoint_steps4(np.array([0, 4]), np.array([5, 9]), np.array([1, 2], np.uint64))
    top = (1 << 128) - 1
    s6 = disjoint_steps6([0, (1 << 64) - 1, top], [5, 1 << 64, top], np.array([1, 2, 3], np.uint64))
    keys = [(int(h) << 64) | int(lo) for h, lo in zip(s6.hi, s6.lo, strict=True)]
    assert keys == [0, 6, (1 << 64) - 1, (1 << 64) + 1, top]
    assert s6.vals.tolist() == [1, 0, 2, 0, 3]


def test_merge_ors_the_sources() -> None:
    a = disjoint_steps4(np.array([100]), np.array([199]), np.array([1 << 32], np.uint64))
    b = disjoint_steps4(np.array([150]), np.array([299]), np.array([5 << 22], np.uint64))
    m = merge4([a, b])
    assert m.starts.tolist() == [0, 100, 150, 200, 300]
    assert m.vals.tolist() == [0, 1 << 32, (1 << 32) | (5 << 22), 5 << 22, 0]


def test_merge_of_one_source_is_that_source() -> None:
    # the one-source shortcut (a networks map alone, the warm-up) against the general merge (OR with an
    # empty source), nested prefixes with repeated values included
    entries = [(0, 255, 24, 7), (16, 31, 28, 9), (16, 23, 29, 9), (64, 127, 26, 7), (1000, 1999, 0, 3)]
    s4 = steps4_from_lists(*nested_steps(entries, (1 << 32) - 1))
    one, general = merge4([s4]), merge4([s4, Steps4.empty()])
    for f in ("starts", "vals"):
        x, y = getattr(one, f), getattr(general, f)
        assert x.dtype == y.dtype and x.tolist() == y.tolist()
    big = [(f << 100, (f << 100) | ((1 << 100) - 1), 28, v) for f, v in ((1, 4), (2, 4), (5, 6))]
    s6 = steps6_from_lists(*nested_steps(big, (1 << 128) - 1))
    one6, general6 = merge6([s6]), merge6([s6, Steps6.empty()])
    for f in ("hi", "lo", "vals"):
        x, y = getattr(one6, f), getattr(general6, f)
        assert x.dtype == y.dtype and x.tolist() == y.tolist()


def test_bucket_index6_of_one_range_is_that_range_everywhere() -> None:
    # the one-range shortcut against the searches it skips (search128 over the bucket bounds)
    from netspectra.enrich.table import INDEX6_PREFIX_BITS, _entries, bucket_index6

    one = Steps6(np.zeros(1, np.uint64), np.zeros(1, np.uint64), np.array([5 << 22], np.uint64))
    bits = 6
    shift = np.uint64(64 - INDEX6_PREFIX_BITS - bits)
    k = np.arange((1 << bits) + 1, dtype=np.uint64)
    base = np.uint64(1) << np.uint64(61)
    first = search128(one.hi, one.lo, base + (k[:-1] << shift), np.zeros(1 << bits, np.uint64))
    last = search128(
        one.hi, one.lo, base + (k[1:] << shift) - np.uint64(1), np.full(1 << bits, 2**64 - 1, np.uint64)
    )
    want = _entries(first, last, one.vals)
    got = bucket_index6(one.hi, one.lo, one.vals, bits)
    assert got.dtype == want.dtype and got.tolist() == want.tolist()


def test_search128_matches_reference() -> None:
    rng = np.random.default_rng(4)
    keys = sorted({int.from_bytes(rng.bytes(16), "big") for _ in range(300)} | {0})
    hi = np.array([k >> 64 for k in keys], np.uint64)
    lo = np.array([k & (2**64 - 1) for k in keys], np.uint64)
    q = [int.from_bytes(rng.bytes(16), "big") for _ in range(500)] + keys + [k - 1 for k in keys if k]
    qhi = np.array([k >> 64 for k in q], np.uint64)
    qlo = np.array([k & (2**64 - 1) for k in q], np.uint64)
    assert search128(hi, lo, qhi, qlo).tolist() == search128_ref(hi, lo, qhi, qlo).tolist()


def test_unique_pairs_matches_reference() -> None:
    rng = np.random.default_rng(5)
    n = 5000
    hi = rng.integers(0, 4, n).astype(np.uint64)
    lo = rng.integers(0, 3, n).astype(np.uint64) << np.uint64(40)
    ifx = rng.integers(0, 7, n).astype(np.uint32)
    inv, first = unique_pairs(hi, lo, ifx, 1 << 14)
    rinv, rfirst = unique_pairs_ref(hi, lo, ifx)
    assert inv.tolist() == rinv.tolist() and first.tolist() == rfirst.tolist()
    assert first.shape[0] == len(set(zip(hi.tolist(), lo.tolist(), ifx.tolist(), strict=True)))


def _table(seed: int, bits: int) -> tuple[object, list, list, list]:
    """A table of three sources: 'asn' and 'cc' as disjoint (MMDB-like) step functions, networks nested."""
    rng = np.random.default_rng(seed)
    m = 50  # network ids
    net4 = _nested(random_prefixes(rng, 200, 32, 4, 32), 32, rng)
    net4 = [(n, pl, int(rng.integers(1, m))) for n, pl, _ in net4]
    net6 = [(n, pl, int(rng.integers(1, m))) for n, pl in random_prefixes(rng, 200, 128, 1, 128)]
    net6 += [(0x2002 << 112, 16, 3), (0, 64, 4)]  # a network inside an alias prefix and one over ::/96
    s, v = nested_steps([(n, n | ((1 << (32 - pl)) - 1), pl, x) for n, pl, x in net4], (1 << 32) - 1)
    nets4 = steps4_from_lists(s, v)
    s, v = nested_steps([(n, n | ((1 << (128 - pl)) - 1), pl, x) for n, pl, x in net6], (1 << 128) - 1)
    nets6 = steps6_from_lists(s, v)
    # Disjoint "database" ranges: non-overlapping /24s and /48s.
    asn4 = sorted({(int(rng.integers(0, 2**24)) << 8, 24) for _ in range(300)})
    asn4v = [(n, pl, int(rng.integers(1, 2**32))) for n, pl in asn4]
    db4 = disjoint_steps4(
        np.array([n for n, _, _ in asn4v]),
        np.array([n | 255 for n, _, _ in asn4v]),
        np.array([a << 32 for _, _, a in asn4v], np.uint64),
    )
    cc6 = sorted({(int(rng.integers(0, 2**48)) << 80, 48) for _ in range(300)})
    cc6v = [(n, pl, int(rng.integers(1, 677))) for n, pl in cc6]
    db6 = disjoint_steps6(
        [n for n, _, _ in cc6v],
        [n | ((1 << 80) - 1) for n, _, _ in cc6v],
        np.array([c << 22 for *_, c in cc6v], np.uint64),
    )
    net_asn = np.zeros(m, np.uint32)
    net_asn[7] = 64512  # one network overrides the AS number
    net_cc = np.zeros(m, np.uint16)
    net_cc[9] = 70
    net_attr = rng.integers(1, 100, size=(5, m)).astype(np.uint16)
    net_attr[:, 0] = 0
    table = build_table(
        [db4, nets4],
        [db6, nets6],
        masks=(int(ASN_FIELD), int(ASN_FIELD | CC_FIELD), int(CC_FIELD)),
        net_asn=net_asn,
        net_cc=net_cc,
        net_attr=net_attr,
        bits4=bits,
        bits6=bits,
    )
    return table, net4 + [(n, pl, 0) for n, pl, _ in asn4v], net6 + [(n, pl, 0) for n, pl, _ in cc6v], asn4v


@pytest.mark.parametrize(("seed", "bits"), [(1, 16), (2, 8), (3, 20), (4, 1)])
def test_kernel_matches_reference_on_random_tables(seed: int, bits: int) -> None:
    table, p4, p6, _ = _table(seed, bits)
    rng = np.random.default_rng(seed + 100)
    v4 = probes([(n, pl, 0) for n, pl, _ in p4], 32, rng, 2000)
    v6 = probes(p6, 128, rng, 2000)
    # IPv4 as NetSpectra maps it, plus the alias prefixes (compat ::/96, 6to4, Teredo) around the probes
    extra = [x for x in v4[:500]] + [(0x2002 << 112) | (x << 80) for x in v4[:500]]
    extra += [(0x20010000 << 96) | (x << 64) | 0xABC for x in v4[:500]]
    addrs = rows([MAPPED | x for x in v4] + v6 + extra)
    n = addrs.shape[0]
    asn = np.empty(n, np.uint32)
    cc = np.empty(n, np.uint16)
    attr = np.empty((5, n), np.uint16)
    miss = np.zeros(N_MISSES, np.int64)
    # any class per network id (the kernel takes them as given): several ids share one
    net_class = rng.integers(0, 7, table.net_attr.shape[1]).astype(np.uint32)
    code = np.empty(n, np.uint64)
    enrich_side(addrs.view(np.uint64), *table.kernel_args(), asn, cc, attr, miss, net_class, code)
    rasn, rcc, rattr, rcode = enrich_side_ref(addrs, *table.kernel_args(), net_class)
    assert asn.tolist() == rasn
    assert cc.tolist() == rcc
    assert attr.T.tolist() == rattr
    assert code.tolist() == rcode
    assert (code >> np.uint64(32)).tolist() == rasn  # the AS number is the code's high word
    assert len(set(rcode)) > len(set(zip(rasn, rcc, strict=True)))  # the classes tell rows apart too
    assert miss[0] == sum(1 for a in rasn if a == 0) and miss[1] == sum(1 for c in rcc if c == 0)
    assert len(set(rasn)) > 50 and len(set(rcc)) > 20  # the probes reach many answers


@pytest.mark.parametrize(("seed", "bits"), [(5, 16), (6, 1)])
def test_codes_only_kernel_matches_reference(seed: int, bits: int) -> None:
    """The codes-only pass (no AS, country or attribute column asked: what a rollup task keyed on side
    codes reads) gives the reference's codes and miss counts, with networks that override the AS, the
    country, both or neither."""
    table, p4, p6, _ = _table(seed, bits)
    rng = np.random.default_rng(seed + 200)
    v4 = probes([(n, pl, 0) for n, pl, _ in p4], 32, rng, 2000)
    v6 = probes(p6, 128, rng, 2000)
    extra = [(0x2002 << 112) | (x << 80) for x in v4[:300]] + [x for x in v4[:300]]
    addrs = rows([MAPPED | x for x in v4] + v6 + extra)
    n = addrs.shape[0]
    m = table.net_attr.shape[1]
    net_class = rng.integers(0, 9, m).astype(np.uint32)
    args = list(table.kernel_args())
    # networks that override the AS number (net_asn), the country (net_cc), both or neither
    args[12] = np.where(rng.random(m) < 0.5, rng.integers(1, 2**32, m), 0).astype(np.uint32)
    args[13] = np.where(rng.random(m) < 0.5, rng.integers(1, 1000, m), 0).astype(np.uint16)
    code = np.empty(n, np.uint64)
    miss = np.zeros(N_MISSES, np.int64)
    none_attr = np.empty((0, m), np.uint16)
    args[14] = none_attr
    enrich_side(
        addrs.view(np.uint64), *args, np.empty(0, np.uint32), np.empty(0, np.uint16),
        np.empty((0, n), np.uint16), miss, net_class, code,
    )  # fmt: skip
    rasn, rcc, _, rcode = enrich_side_ref(addrs, *args, net_class)
    assert code.tolist() == rcode
    assert miss[0] == sum(1 for a in rasn if a == 0) and miss[1] == sum(1 for c in rcc if c == 0)
    assert 0 < miss[0] < n and 0 < miss[1] < n
    # the general pass (the AS and country columns asked too) writes the same codes
    code2 = np.empty(n, np.uint64)
    miss2 = np.zeros(N_MISSES, np.int64)
    enrich_side(
        addrs.view(np.uint64), *args, np.empty(n, np.uint32), np.empty(n, np.uint16),
        np.empty((0, n), np.uint16), miss2, net_class, code2,
    )  # fmt: skip
    assert code2.tolist() == rcode and miss2.tolist() == miss.tolist()


def test_kernel_answers_longest_prefix_brute_force() -> None:
    """The kernel against a brute-force longest-prefix match of the networks (independent of tables)."""
    table, *_ = _table(9, 16)
    rng = np.random.default_rng(9)
    net4 = _nested(random_prefixes(rng, 150, 32, 0, 32), 32, rng)
    net4 = [(n, pl, int(rng.integers(1, 50))) for n, pl, _ in net4]
    s, v = nested_steps([(n, n | ((1 << (32 - pl)) - 1), pl, x) for n, pl, x in net4], (1 << 32) - 1)
    t = build_table(
        [steps4_from_lists(s, v)],
        [table.steps6],
        masks=(0, 0, 0),
        net_asn=np.zeros(50, np.uint32),
        net_cc=np.zeros(50, np.uint16),
        net_attr=np.arange(250, dtype=np.uint16).reshape(5, 50),
    )
    xs = probes(net4, 32, rng, 3000)
    addrs = rows([MAPPED | x for x in xs])
    n = len(xs)
    asn, cc, attr = np.empty(n, np.uint32), np.empty(n, np.uint16), np.empty((5, n), np.uint16)
    enrich_side(
        addrs.view(np.uint64), *t.kernel_args(), asn, cc, attr, np.zeros(N_MISSES, np.int64),
        np.zeros(50, np.uint32), np.empty(0, np.uint64),
    )  # fmt: skip
    assert attr[0].tolist() == [brute(net4, 32, x) for x in xs]
