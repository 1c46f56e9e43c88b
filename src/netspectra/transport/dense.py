"""The dense column forms of wire layout 2 (``docs/wire.md``): numba kernels and their references.

Layout 1 sends every packet's addresses as 16 bytes and its timestamp as 8: 40 of its 49 bytes. Layout 2
sends the same values in fewer bytes, losslessly:

* **addresses**: rows whose source *and* destination are IPv4-mapped (``::ffff:a.b.c.d``) send 4 bytes
  per address (``src_ip4``/``dst_ip4``, the raw address bytes, in row order); the other rows (IPv6)
  send their row number (``ip6_rows``, uint32, strictly increasing) and both 16-byte addresses
  (``src_ip6``/``dst_ip6``). :func:`split_addresses` makes the five columns, :func:`widen_addresses`
  makes the two ``(n, 16)`` columns again in one pass.
* **timestamps**: ``ts_base`` (the smallest) plus one uint32 offset per packet, when the batch spans
  less than 2**32 ns (4.29 s): :func:`ts_offsets` / :func:`ts_from_offsets`.

Each kernel is ``@njit(nogil=True, cache=True)`` over numpy arrays, with a plain-Python reference
(``*_ref``) that the tests compare it with. The address kernels move 4-byte words (``uint32`` views of
the address bytes, in host order), so they copy bytes, never reinterpret them: the result is the same on
any host.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from netspectra.jit import njit

__all__ = [
    "MAPPED_WORD",
    "count_unmapped",
    "split_addresses",
    "split_addresses_ref",
    "ts_from_offsets",
    "ts_from_offsets_ref",
    "ts_offsets",
    "ts_offsets_ref",
    "widen_addresses",
    "widen_addresses_ref",
]

#: Bytes 8..11 of an IPv4-mapped address (``00 00 ff ff``) read as one host-order uint32.
MAPPED_WORD = int(np.frombuffer(b"\x00\x00\xff\xff", dtype=np.uint32)[0])
_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
_U32_SPAN = 1 << 32


def _words(ip: np.ndarray) -> np.ndarray:
    """``(n, 16)`` uint8 addresses as ``(n, 4)`` host-order uint32 words (a view when aligned)."""
    ip = np.ascontiguousarray(ip)
    if ip.ctypes.data % 4:
        ip = ip.copy()
    return ip.view(np.uint32).reshape(ip.shape[0], 4)


# --------------------------------------------------------------------------------------------------
# addresses


@njit(nogil=True, cache=True, inline="always")
def _both_mapped(src: np.ndarray, dst: np.ndarray, i: int, mapped: np.uint32) -> bool:
    """Both addresses of row ``i`` (4 uint32 words each) are IPv4-mapped (``::ffff:a.b.c.d``).

    Bitwise, not ``and``: numba compiled the short-circuit chain over array elements in this inlined
    helper to ~10 ns a row (the split and the count of every message the probe encodes), the bitwise
    form to ~1 ns (measured on the 2-core VM, 16 000 rows)."""
    return (
        ((src[i, 0] | src[i, 1] | dst[i, 0] | dst[i, 1]) == 0) & (src[i, 2] == mapped) & (dst[i, 2] == mapped)
    )


@njit(nogil=True, cache=True)
def _count_unmapped(src: np.ndarray, dst: np.ndarray, mapped: np.uint32) -> int:
    m = 0
    for i in range(src.shape[0]):
        if not _both_mapped(src, dst, i, mapped):
            m += 1
    return m


@njit(nogil=True, cache=True)
def _split(
    src: np.ndarray, dst: np.ndarray, mapped: np.uint32, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = src.shape[0]
    src4 = np.empty(n - m, np.uint32)
    dst4 = np.empty(n - m, np.uint32)
    rows = np.empty(m, np.uint32)
    src6 = np.empty((m, 4), np.uint32)
    dst6 = np.empty((m, 4), np.uint32)
    j = 0
    k = 0
    for i in range(n):
        if _both_mapped(src, dst, i, mapped):
            src4[j] = src[i, 3]
            dst4[j] = dst[i, 3]
            j += 1
        else:
            rows[k] = i
            for w in range(4):
                src6[k, w] = src[i, w]
                dst6[k, w] = dst[i, w]
            k += 1
    return src4, dst4, rows, src6, dst6


def count_unmapped(src_ip: np.ndarray, dst_ip: np.ndarray) -> int:
    """Rows whose source or destination is not IPv4-mapped (the rows :func:`split_addresses` sends
    whole)."""
    return int(_count_unmapped(_words(src_ip), _words(dst_ip), np.uint32(MAPPED_WORD)))


def split_addresses(
    src_ip: np.ndarray, dst_ip: np.ndarray, unmapped: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(src4, dst4, ip6_rows, src6, dst6)`` of two ``(n, 16)`` uint8 address columns.

    Contract: a row whose two addresses are both IPv4-mapped contributes its two last 4-byte words to
    ``src4``/``dst4`` (uint32 arrays holding the raw address bytes, in row order); every other row
    contributes its row number to ``ip6_rows`` (uint32, increasing) and its two addresses to
    ``src6``/``dst6`` (``(m, 4)`` uint32 holding the 16 raw bytes). ``unmapped``: the count of
    :func:`count_unmapped`, when the caller has it. :func:`widen_addresses` inverts it exactly.
    """
    s, d = _words(src_ip), _words(dst_ip)
    mapped = np.uint32(MAPPED_WORD)
    m = int(_count_unmapped(s, d, mapped)) if unmapped is None else int(unmapped)
    return _split(s, d, mapped, m)


def split_addresses_ref(
    src_ip: np.ndarray, dst_ip: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Plain-Python reference of :func:`split_addresses` (row by row over the bytes)."""
    src4, dst4, rows, src6, dst6 = bytearray(), bytearray(), [], bytearray(), bytearray()
    for i in range(src_ip.shape[0]):
        s, d = bytes(src_ip[i]), bytes(dst_ip[i])
        if s[:12] == _MAPPED_PREFIX and d[:12] == _MAPPED_PREFIX:
            src4 += s[12:]
            dst4 += d[12:]
        else:
            rows.append(i)
            src6 += s
            dst6 += d
    return (
        np.frombuffer(bytes(src4), np.uint32).copy(),
        np.frombuffer(bytes(dst4), np.uint32).copy(),
        np.array(rows, np.uint32),
        np.frombuffer(bytes(src6), np.uint32).reshape(-1, 4).copy(),
        np.frombuffer(bytes(dst6), np.uint32).reshape(-1, 4).copy(),
    )


@njit(nogil=True, cache=True)
def _widen(
    n: int,
    src4: np.ndarray,
    dst4: np.ndarray,
    rows: np.ndarray,
    src6: np.ndarray,
    dst6: np.ndarray,
    mapped: np.uint32,
) -> tuple[np.ndarray, np.ndarray, int]:
    src = np.empty((n, 4), np.uint32)
    dst = np.empty((n, 4), np.uint32)
    m = rows.shape[0]
    n4 = src4.shape[0]
    j = 0
    k = 0
    for i in range(n):
        if k < m and rows[k] == i:
            for w in range(4):
                src[i, w] = src6[k, w]
                dst[i, w] = dst6[k, w]
            k += 1
        else:
            if j >= n4:  # the row numbers are not increasing, or not below n: say where
                return src, dst, i
            src[i, 0] = 0
            src[i, 1] = 0
            src[i, 2] = mapped
            src[i, 3] = src4[j]
            dst[i, 0] = 0
            dst[i, 1] = 0
            dst[i, 2] = mapped
            dst[i, 3] = dst4[j]
            j += 1
    if k != m:
        return src, dst, n
    return src, dst, -1


def widen_addresses(
    n: int, src4: np.ndarray, dst4: np.ndarray, rows: np.ndarray, src6: np.ndarray, dst6: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ``(n, 16)`` uint8 source and destination columns of :func:`split_addresses`' output.

    Contract: ``src4``/``dst4`` hold ``n - m`` uint32 words, ``rows`` ``m`` uint32 row numbers,
    ``src6``/``dst6`` ``(m, 4)`` uint32 words (the caller checked these lengths). Raises ``ValueError``
    when ``rows`` is not strictly increasing or holds a row ``>= n`` (nothing is read out of bounds).
    """
    src, dst, bad = _widen(n, src4, dst4, rows, src6, dst6, np.uint32(MAPPED_WORD))
    if bad >= 0:
        raise ValueError(
            f"ip6_rows must be {rows.shape[0]} strictly increasing row numbers below count {n} "
            f"(inconsistent at row {bad})"
        )
    return src.view(np.uint8).reshape(n, 16), dst.view(np.uint8).reshape(n, 16)


def widen_addresses_ref(
    n: int, src4: np.ndarray, dst4: np.ndarray, rows: np.ndarray, src6: np.ndarray, dst6: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Plain-Python reference of :func:`widen_addresses`."""
    rows_l = [int(r) for r in rows]
    if any(b <= a for a, b in pairwise(rows_l)) or any(r >= n for r in rows_l):
        raise ValueError("ip6_rows must be strictly increasing row numbers below count")
    six = {r: k for k, r in enumerate(rows_l)}
    s4, d4 = src4.tobytes(), dst4.tobytes()
    s6, d6 = src6.tobytes(), dst6.tobytes()
    src, dst = bytearray(), bytearray()
    j = 0
    for i in range(n):
        k = six.get(i)
        if k is None:
            src += _MAPPED_PREFIX + s4[4 * j : 4 * j + 4]
            dst += _MAPPED_PREFIX + d4[4 * j : 4 * j + 4]
            j += 1
        else:
            src += s6[16 * k : 16 * k + 16]
            dst += d6[16 * k : 16 * k + 16]
    return (
        np.frombuffer(bytes(src), np.uint8).reshape(n, 16).copy(),
        np.frombuffer(bytes(dst), np.uint8).reshape(n, 16).copy(),
    )


# --------------------------------------------------------------------------------------------------
# timestamps


@njit(nogil=True, cache=True)
def _ts_offsets(ts: np.ndarray) -> tuple[bool, np.int64, np.ndarray]:
    n = ts.shape[0]
    lo = ts[0]
    hi = ts[0]
    for i in range(1, n):
        v = ts[i]
        if v < lo:
            lo = v
        elif v > hi:
            hi = v
    # hi - lo in uint64 arithmetic: exact for every int64 pair (hi >= lo)
    if np.uint64(hi) - np.uint64(lo) >= np.uint64(4294967296):
        return False, lo, np.empty(0, np.uint32)
    out = np.empty(n, np.uint32)
    for i in range(n):
        out[i] = np.uint32(np.uint64(ts[i]) - np.uint64(lo))
    return True, lo, out


def ts_offsets(ts: np.ndarray) -> tuple[int, np.ndarray] | None:
    """``(base, offsets)`` with ``ts == base + offsets`` (``base`` the smallest value, ``offsets``
    uint32), or ``None`` when the values span 2**32 ns or more (or ``ts`` is empty)."""
    if ts.shape[0] == 0:
        return None
    ok, base, out = _ts_offsets(ts)
    return (int(base), out) if ok else None


def ts_offsets_ref(ts: np.ndarray) -> tuple[int, np.ndarray] | None:
    """Plain-Python reference of :func:`ts_offsets`."""
    values = [int(v) for v in ts]
    if not values or max(values) - min(values) >= _U32_SPAN:
        return None
    base = min(values)
    return base, np.array([v - base for v in values], np.uint32)


@njit(nogil=True, cache=True)
def _ts_from_offsets(base: np.int64, offsets: np.ndarray) -> np.ndarray:
    out = np.empty(offsets.shape[0], np.int64)
    for i in range(offsets.shape[0]):
        out[i] = base + np.int64(offsets[i])
    return out


def ts_from_offsets(base: int, offsets: np.ndarray) -> np.ndarray:
    """``base + offsets`` as int64. Raises ``ValueError`` when a value would not fit int64 (the caller
    gives a ``base`` within int64)."""
    if offsets.shape[0] and base > (1 << 63) - _U32_SPAN and base + int(offsets.max()) >= 1 << 63:
        raise ValueError(f"ts_base {base} + ts_delta exceeds int64")
    return _ts_from_offsets(np.int64(base), offsets)


def ts_from_offsets_ref(base: int, offsets: np.ndarray) -> np.ndarray:
    """Plain-Python reference of :func:`ts_from_offsets`."""
    values = [base + int(o) for o in offsets]
    if any(v >= 1 << 63 for v in values):
        raise ValueError(f"ts_base {base} + ts_delta exceeds int64")
    return np.array(values, np.int64)
