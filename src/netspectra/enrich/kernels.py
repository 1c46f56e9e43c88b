"""The enrichment kernels: longest-prefix answers for a whole batch of 16-byte addresses.

The compiled table (see :mod:`netspectra.enrich.table`) is a *step function* over the address space,
one for IPv4 and one for IPv6: sorted range starts (``starts[0] == 0``, the ranges tile the whole space,
nested prefixes already flattened so the most specific one owns every address) and one packed 64-bit
value per range::

    bits 32..63  AS number from the ASN database (0 = unknown)
    bits 22..31  country code from the country database (:data:`~netspectra.enrich.codes.COUNTRY_CODES`)
    bit  21      0 in a value; set in a bucket-index entry that holds a value (below)
    bits  0..20  network id of the ``networks`` map (0 = none): index of the network attribute arrays

A lookup reads a bucket index on the top ``bits`` of the address (IPv6: of ``2000::/3``; other IPv6
addresses search the whole table) and binary-searches the few ranges of that bucket. Index entries are
64-bit: a bucket that lies inside one range holds that range's value itself (bit 21 set), so most
lookups cost one memory access; the others hold the bucket's first range and its number of ranges.
IPv4-mapped addresses (``::ffff:a.b.c.d``, NetSpectra's form of IPv4) use the IPv4 table; other
addresses the IPv6 table.

MMDB aliases: in an IPv6 MaxMind database the IPv4 tree sits at ``::/96`` and is usually aliased from
``2002::/16`` (6to4, IPv4 in bits 16..47) and ``2001::/32`` (Teredo, IPv4 in bits 32..63). The
database reader answers such an IPv6 address with the embedded IPv4 address's record; so does the
kernel: for an address in one of these prefixes it also looks the IPv4 address up and takes, from that
answer, the fields of the sources that alias the prefix (``mask_*``: a bit mask of the packed fields),
the other fields from the IPv6 answer.

Every kernel has a plain-Python reference (``*_ref``) that the tests compare it with.
"""

from __future__ import annotations

import numpy as np

from netspectra.jit import njit
from netspectra.prefetch import prefetch_read

ASN_SHIFT = 32
CC_SHIFT = 22
CC_BITS = 10
NET_BITS = 21
NET_MASK = (1 << NET_BITS) - 1
#: Bit 21: set in an IPv4 index entry that holds its bucket's value.
DIRECT = 1 << 21
#: The packed fields of each source, for alias masks.
ASN_FIELD = np.uint64(0xFFFFFFFF << ASN_SHIFT)
CC_FIELD = np.uint64(((1 << CC_BITS) - 1) << CC_SHIFT)
NET_FIELD = np.uint64(NET_MASK)

#: How many rows ahead the kernel prefetches an IPv4 bucket-index entry (see :func:`enrich_side`); measured
#: in benchmarks/bench_enrich.py (RESULTS.md: 8, 16, 24, 32, 64 rows).
PREFETCH = 64

#: Length of the kernel's counter array: rows without AS, without country, without network.
N_MISSES = 3


# --------------------------------------------------------------------------------------------------
# Small helpers (inlined by numba)
# --------------------------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _bswap64(x: np.uint64) -> np.uint64:
    x = ((x & np.uint64(0x00FF00FF00FF00FF)) << np.uint64(8)) | (
        (x >> np.uint64(8)) & np.uint64(0x00FF00FF00FF00FF)
    )
    x = ((x & np.uint64(0x0000FFFF0000FFFF)) << np.uint64(16)) | (
        (x >> np.uint64(16)) & np.uint64(0x0000FFFF0000FFFF)
    )
    return (x << np.uint64(32)) | (x >> np.uint64(32))


#: A side code (:func:`side_code`): AS number in bits 32..63, country code in bits 22..31 (as the
#: packed value), network class in bits 0..20.
CODE_CC_SHIFT = CC_SHIFT
CLASS_BITS = NET_BITS
CLASS_MASK = NET_MASK


@njit(inline="always", cache=True)
def side_code(asn, cc, cls):
    """One row's side code: ``asn << 32 | cc << 22 | cls`` (AS number, country code, network class of
    :mod:`netspectra.enrich.networks`): every enrichment column of the side is a function of it. Plain
    Python: the same expression."""
    return (np.uint64(asn) << np.uint64(32)) | (np.uint64(cc) << np.uint64(CODE_CC_SHIFT)) | np.uint64(cls)


@njit(inline="always", cache=True)
def _find4(x, index, shift, starts, vals):
    e = index[x >> shift]
    if e & np.uint64(DIRECT):
        return e ^ np.uint64(DIRECT)
    lo = np.int64(e >> np.uint64(32))
    hi = lo + np.int64(
        (e & np.uint64(NET_MASK)) | (((e >> np.uint64(22)) & np.uint64(0x3FF)) << np.uint64(21))
    )
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if starts[mid] <= x:
            lo = mid
        else:
            hi = mid - 1
    return vals[lo]


@njit(inline="always", cache=True)
def _find6(qhi, qlo, index, shift, shi, slo, vals):
    # The index covers 2000::/3 (global unicast, where nearly every address and every database range
    # is); other addresses search the whole table.
    if (qhi >> np.uint64(61)) == 1:
        e = index[(qhi >> shift) & np.uint64(index.shape[0] - 1)]
        if e & np.uint64(DIRECT):
            return e ^ np.uint64(DIRECT)
        lo = np.int64(e >> np.uint64(32))
        hi = lo + np.int64(
            (e & np.uint64(NET_MASK)) | (((e >> np.uint64(22)) & np.uint64(0x3FF)) << np.uint64(21))
        )
    else:
        lo = np.int64(0)
        hi = np.int64(shi.shape[0] - 1)
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        h = shi[mid]
        if h < qhi or (h == qhi and slo[mid] <= qlo):
            lo = mid
        else:
            hi = mid - 1
    return vals[lo]


# --------------------------------------------------------------------------------------------------
# The batch kernel
# --------------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def enrich_side(
    words,  # uint64 (n, 2): the 16-byte addresses viewed as two little-endian words
    idx4,
    shift4,
    starts4,
    vals4,
    idx6,
    shift6,
    hi6,
    lo6,
    vals6,
    mask_compat,
    mask_6to4,
    mask_teredo,
    net_asn,
    net_cc,
    net_attr,  # uint16 (k, m): the k string attributes of each network id
    out_asn,
    out_cc,
    out_attr,  # uint16 (k, n)
    misses,  # int64 (N_MISSES,): rows without AS / country / network (accumulated)
    net_class,  # uint32 (m,): the network class of each network id (netspectra.enrich.networks)
    out_code,  # uint64 (n,), or empty: no side codes
):
    """Enrich one side (source or destination) of a batch: AS, country and network attributes per row.

    ``words`` is the ``(n, 16)`` uint8 address array viewed as ``(n, 2)`` uint64 on a little-endian host.
    Writes ``out_asn[i]``, ``out_cc[i]``, ``out_attr[:, i]``; adds the rows left without an answer to
    ``misses``. With an ``out_code`` of ``n`` rows, also the row's *side code*
    (:func:`side_code`: its AS, country and network class in one word, what a rollup task keys on);
    ``out_asn`` and ``out_cc`` may then be empty (not written).
    """
    n = words.shape[0]
    k_attr = net_attr.shape[0]
    s4 = np.uint64(shift4)
    s6 = np.uint64(shift6)
    m32 = np.uint64(0xFFFFFFFF)
    mapped_lo = np.uint64(0xFFFF0000)
    codes = out_code.shape[0] == n
    numbers = out_asn.shape[0] == n  # empty out_asn and out_cc: only the codes are wanted
    # the looked-up values go straight into the codes when the codes are wanted (pass 2 rewrites them in
    # place): no scratch array to allocate and stream through
    packed = out_code if codes else np.empty(n, np.uint64)
    # Pass 1: the lookups alone, so that consecutive rows' searches overlap in the CPU (a loop that also
    # unpacks and stores seven columns per row leaves less room for that); unpacking is pass 2. The
    # IPv4-mapped rows (nearly all of them) first, in a tight loop; the others (IPv6: a longer search,
    # the alias prefixes) are listed and looked up after it (inline in it, their code made the loop of
    # the common row slower).
    others = np.empty(n, np.int64)
    k = 0
    for i in range(n):
        if i + PREFETCH < n:
            # Hint a later row's IPv4 index entry into the cache (a prefetch instruction: nothing waits
            # for it), so that its line is there when that row needs it.
            prefetch_read(idx4, np.int64((_bswap64(words[i + PREFETCH, 1]) & m32) >> s4))
        w0 = words[i, 0]
        w1 = words[i, 1]
        if (w0 | ((w1 & m32) ^ mapped_lo)) == 0:  # ::ffff:a.b.c.d (one test, one branch: -6 ms of 10 M)
            packed[i] = _find4(_bswap64(w1) & m32, idx4, s4, starts4, vals4)
        else:
            others[k] = i
            k += 1
    for t in range(k):
        i = others[t]
        qhi = _bswap64(words[i, 0])
        qlo = _bswap64(words[i, 1])
        v = _find6(qhi, qlo, idx6, s6, hi6, lo6, vals6)
        # MMDB aliases of the IPv4 tree (see the module docstring).
        mask = np.uint64(0)
        x = np.uint64(0)
        if qhi == 0 and (qlo >> np.uint64(32)) == 0:
            mask = mask_compat
            x = qlo
        elif (qhi >> np.uint64(48)) == np.uint64(0x2002):
            mask = mask_6to4
            x = (qhi >> np.uint64(16)) & m32
        elif (qhi >> np.uint64(32)) == np.uint64(0x20010000):
            mask = mask_teredo
            x = qhi & m32
        if mask != 0:
            va = _find4(x, idx4, s4, starts4, vals4)
            v = (va & mask) | (v & ~mask)
        packed[i] = v
    no_asn = 0
    no_cc = 0
    no_net = 0
    if codes and not numbers and k_attr == 0:
        # Pass 2, codes only (what a rollup task keyed on side codes asks): per network id, the bits of
        # the looked-up value it keeps (the AS and the country unless the network overrides them) and the
        # bits it sets (its overrides and its class), so a row is two loads from small tables, an and and
        # an or, no branch; the same codes as the general pass below.
        m = net_asn.shape[0]
        keep = np.empty(m, np.uint64)
        add = np.empty(m, np.uint64)
        for j in range(m):
            k = np.uint64(0)
            if net_asn[j] == 0:
                k |= ASN_FIELD
            if net_cc[j] == 0:
                k |= CC_FIELD
            keep[j] = k
            add[j] = side_code(net_asn[j], net_cc[j], net_class[j])
        m_cc = np.uint64((1 << CC_BITS) - 1)
        for i in range(n):
            v = packed[i]
            net = v & np.uint64(NET_MASK)
            c = (v & keep[net]) | add[net]
            out_code[i] = c
            no_asn += (c >> np.uint64(ASN_SHIFT)) == 0
            no_cc += ((c >> np.uint64(CODE_CC_SHIFT)) & m_cc) == 0
            no_net += net == 0
        misses[0] += no_asn
        misses[1] += no_cc
        misses[2] += no_net
        return
    # Pass 2: unpack (streaming): AS and country per row, the network id kept for pass 3.
    nets = np.empty(n, np.uint32)  # 4 bytes a row: pass 3 reads it once per attribute
    for i in range(n):
        v = packed[i]
        net = v & np.uint64(NET_MASK)
        a = net_asn[net]
        if a == 0:
            a = np.uint32(v >> np.uint64(ASN_SHIFT))
        c = net_cc[net]
        if c == 0:
            c = np.uint16((v >> np.uint64(CC_SHIFT)) & np.uint64((1 << CC_BITS) - 1))
        if numbers:
            out_asn[i] = a
            out_cc[i] = c
        nets[i] = np.uint32(net)
        if codes:
            out_code[i] = side_code(a, c, net_class[net])
        no_asn += a == 0
        no_cc += c == 0
        no_net += net == 0
    # Pass 3: one gather loop per network attribute (simple loops the compiler vectorises).
    for j in range(k_attr):
        row = net_attr[j]
        out = out_attr[j]
        for i in range(n):
            out[i] = row[nets[i]]
    misses[0] += no_asn
    misses[1] += no_cc
    misses[2] += no_net


def enrich_side_ref(
    addrs: np.ndarray,
    idx4: np.ndarray,
    shift4: int,
    starts4: np.ndarray,
    vals4: np.ndarray,
    idx6: np.ndarray,
    shift6: int,
    hi6: np.ndarray,
    lo6: np.ndarray,
    vals6: np.ndarray,
    mask_compat: int,
    mask_6to4: int,
    mask_teredo: int,
    net_asn: np.ndarray,
    net_cc: np.ndarray,
    net_attr: np.ndarray,
    net_class: np.ndarray | None = None,
) -> tuple[list[int], ...]:
    """Plain-Python :func:`enrich_side` over ``(n, 16)`` uint8 ``addrs``: ``(asn, cc, attrs per row)``,
    and with ``net_class`` the side codes too (a fourth list).

    Independent of the bucket indexes: a plain :func:`bisect.bisect_right` over the whole table."""
    import bisect

    keys4 = starts4.tolist()
    keys6 = [(int(h) << 64) | int(low) for h, low in zip(hi6.tolist(), lo6.tolist(), strict=True)]

    def find4(x: int) -> int:
        return int(vals4[bisect.bisect_right(keys4, x) - 1])

    asns: list[int] = []
    ccs: list[int] = []
    attrs: list[list[int]] = []
    codes: list[int] = []
    for row in np.asarray(addrs, dtype=np.uint8):
        b = bytes(row)
        if b[:12] == b"\0" * 10 + b"\xff\xff":
            v = find4(int.from_bytes(b[12:], "big"))
        else:
            q = int.from_bytes(b, "big")
            v = int(vals6[bisect.bisect_right(keys6, q) - 1])
            alias = None
            if q >> 32 == 0:
                alias = (int(mask_compat), q & 0xFFFFFFFF)
            elif q >> 112 == 0x2002:
                alias = (int(mask_6to4), (q >> 80) & 0xFFFFFFFF)
            elif q >> 96 == 0x20010000:
                alias = (int(mask_teredo), (q >> 64) & 0xFFFFFFFF)
            if alias is not None and alias[0]:
                mask, x = alias
                v = (find4(x) & mask) | (v & ~mask & 0xFFFFFFFFFFFFFFFF)
        net = v & NET_MASK
        asns.append(int(net_asn[net]) or v >> ASN_SHIFT)
        ccs.append(int(net_cc[net]) or (v >> CC_SHIFT) & ((1 << CC_BITS) - 1))
        attrs.append([int(net_attr[j, net]) for j in range(net_attr.shape[0])])
        if net_class is not None:
            codes.append((asns[-1] << 32) | (ccs[-1] << CC_SHIFT) | int(net_class[net]))
    return (asns, ccs, attrs, codes) if net_class is not None else (asns, ccs, attrs)


# --------------------------------------------------------------------------------------------------
# Compilation helpers (per load, not per batch)
# --------------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def search128(shi, slo, qhi, qlo):
    """For each query ``(qhi[i], qlo[i])``, the index of the last start ``<=`` it in the sorted 128-bit
    starts ``(shi, slo)`` (-1 if none): ``searchsorted(..., 'right') - 1`` for 128-bit keys."""
    n = qhi.shape[0]
    out = np.empty(n, dtype=np.int64)
    m = shi.shape[0]
    for i in range(n):
        a = qhi[i]
        b = qlo[i]
        lo = -1
        hi = m - 1
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            h = shi[mid]
            if h < a or (h == a and slo[mid] <= b):
                lo = mid
            else:
                hi = mid - 1
        out[i] = lo
    return out


def search128_ref(shi: np.ndarray, slo: np.ndarray, qhi: np.ndarray, qlo: np.ndarray) -> np.ndarray:
    """Plain-Python :func:`search128`."""
    import bisect

    keys = [(int(h) << 64) | int(low) for h, low in zip(shi.tolist(), slo.tolist(), strict=True)]
    return np.array(
        [
            bisect.bisect_right(keys, (int(h) << 64) | int(low)) - 1
            for h, low in zip(qhi.tolist(), qlo.tolist(), strict=True)
        ],
        dtype=np.int64,
    )


@njit(nogil=True, cache=True)
def unique_pairs(hi, lo, ifx, cap):
    """Distinct ``(hi, lo, ifx)`` triples of a batch (exporter address as two words + interface index):
    ``(inverse, first)`` where ``first[j]`` is the row of the ``j``-th distinct triple in order of first
    appearance and ``inverse[i]`` its number for row ``i``. ``cap`` is a power of two > 2 * n (the
    open-addressing table's size)."""
    n = hi.shape[0]
    table = np.full(cap, -1, dtype=np.int64)
    inverse = np.empty(n, dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    mask = np.uint64(cap - 1)
    k = 0
    for i in range(n):
        h = hi[i] * np.uint64(0x9E3779B97F4A7C15) ^ lo[i] * np.uint64(0xC2B2AE3D27D4EB4F)
        h ^= np.uint64(ifx[i]) * np.uint64(0x165667B19E3779F9)
        h ^= h >> np.uint64(29)
        slot = h & mask
        while True:
            j = table[slot]
            if j < 0:
                table[slot] = k
                first[k] = i
                inverse[i] = k
                k += 1
                break
            r = first[j]
            if hi[r] == hi[i] and lo[r] == lo[i] and ifx[r] == ifx[i]:
                inverse[i] = j
                break
            slot = (slot + np.uint64(1)) & mask
    return inverse, first[:k].copy()


def unique_pairs_ref(hi: np.ndarray, lo: np.ndarray, ifx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python :func:`unique_pairs`."""
    seen: dict[tuple[int, int, int], int] = {}
    inverse = np.empty(hi.shape[0], dtype=np.int64)
    first: list[int] = []
    for i, key in enumerate(zip(hi.tolist(), lo.tolist(), ifx.tolist(), strict=True)):
        j = seen.get(key)
        if j is None:
            j = seen[key] = len(first)
            first.append(i)
        inverse[i] = j
    return inverse, np.array(first, dtype=np.int64)
