"""16-byte addresses (the :class:`~netspectra.batch.PacketBatch` encoding) to and from text.

Text form, the same as the original's Go ``net.IP.String()`` and Python's :mod:`ipaddress`:

* IPv4-mapped addresses (``::ffff:a.b.c.d``) print as the IPv4 dotted quad ``a.b.c.d``;
* every other address prints as compressed IPv6 per RFC 5952 (lower-case hex, no leading zeros, the
  first longest run of two or more zero groups as ``::``), which is exactly ``str(IPv6Address(b))``.

Formatting runs in one numba kernel over the whole (m, 16) array and produces an Arrow string array
without creating a Python string per row; :func:`ips_to_text` gives Python strings where they are
wanted. Parsing (config values, API filters: few values) uses :mod:`ipaddress`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from netspectra.jit import njit

log = logging.getLogger(__name__)

#: The longest text of one address: eight 4-digit groups and seven colons.
MAX_TEXT_LEN = 39

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).copy()


def is_ipv4_mapped(ips: np.ndarray) -> np.ndarray:
    """Boolean (m,) array: which rows of a (m, 16) uint8 array are ``::ffff:a.b.c.d``."""
    ips = _check_ips(ips)
    return (~ips[:, :10].any(axis=1)) & (ips[:, 10] == 0xFF) & (ips[:, 11] == 0xFF)


@njit(nogil=True, cache=True)
def _write_dec(out: np.ndarray, pos: int, v: int) -> int:
    if v >= 100:
        out[pos] = 48 + v // 100
        pos += 1
    if v >= 10:
        out[pos] = 48 + (v // 10) % 10
        pos += 1
    out[pos] = 48 + v % 10
    return pos + 1


@njit(nogil=True, cache=True)
def _write_hex16(out: np.ndarray, pos: int, v: int, hexdig: np.ndarray) -> int:
    started = False
    for shift in (12, 8, 4, 0):
        d = (v >> shift) & 0xF
        if d != 0 or started or shift == 0:
            out[pos] = hexdig[d]
            pos += 1
            started = True
    return pos


@njit(nogil=True, cache=True)
def format_ips_kernel(ips: np.ndarray, hexdig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Format every row of ``ips`` (m, 16) uint8; return (offsets int64 (m+1,), utf-8 data uint8).

    Row ``i``'s text is ``data[offsets[i]:offsets[i+1]]`` — the layout of an Arrow string array.
    """
    m = ips.shape[0]
    out = np.empty(m * MAX_TEXT_LEN, np.uint8)
    offsets = np.empty(m + 1, np.int64)
    groups = np.empty(8, np.int64)
    pos = 0
    offsets[0] = 0
    for i in range(m):
        mapped = ips[i, 10] == 0xFF and ips[i, 11] == 0xFF
        if mapped:
            for k in range(10):
                if ips[i, k] != 0:
                    mapped = False
                    break
        if mapped:
            for k in range(12, 16):
                if k > 12:
                    out[pos] = 46  # '.'
                    pos += 1
                pos = _write_dec(out, pos, int(ips[i, k]))
        else:
            for g in range(8):
                groups[g] = (int(ips[i, 2 * g]) << 8) | int(ips[i, 2 * g + 1])
            # RFC 5952 §4.2: the longest run of >= 2 zero groups becomes "::"; the first one on a tie.
            best_start = -1
            best_len = 1
            run_start = -1
            for g in range(9):
                if g < 8 and groups[g] == 0:
                    if run_start < 0:
                        run_start = g
                elif run_start >= 0:
                    if g - run_start > best_len:
                        best_start = run_start
                        best_len = g - run_start
                    run_start = -1
            g = 0
            need_colon = False
            while g < 8:
                if g == best_start:
                    out[pos] = 58  # ':'
                    out[pos + 1] = 58
                    pos += 2
                    g += best_len
                    need_colon = False
                    continue
                if need_colon:
                    out[pos] = 58
                    pos += 1
                pos = _write_hex16(out, pos, groups[g], hexdig)
                need_colon = True
                g += 1
        offsets[i + 1] = pos
    return offsets, out[:pos]


def ips_to_arrow(ips: np.ndarray, valid: np.ndarray | None = None) -> pa.StringArray:
    """Arrow ``string`` array with the text of every row of ``ips`` (m, 16) uint8.

    ``valid``, a boolean (m,) array, marks rows to keep; the others become nulls.
    """
    ips = _check_ips(ips)
    offsets, data = format_ips_kernel(ips, _HEX)
    m = ips.shape[0]
    mask_buf = None
    null_count = 0
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != (m,):
            raise ValueError(f"valid has shape {valid.shape}, expected ({m},)")
        null_count = int(m - np.count_nonzero(valid))
        if null_count:
            mask_buf = pa.py_buffer(np.packbits(valid, bitorder="little"))
    if data.size <= np.iinfo(np.int32).max:
        return pa.StringArray.from_buffers(
            m, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data), mask_buf, null_count
        )
    # Only past ~55 million rows: Arrow's ``string`` type has 32-bit offsets.
    raise ValueError(f"{data.size} bytes of address text exceed one Arrow string array; split the rows")


def ips_to_text(ips: np.ndarray) -> list[str]:
    """The text of every row of ``ips`` (m, 16) uint8 as Python strings (see the module docstring)."""
    return ips_to_arrow(ips).to_pylist()


def parse_ip(text: str) -> np.ndarray:
    """One address (IPv4 dotted quad or IPv6 text) as 16 uint8 bytes; IPv4 becomes IPv4-mapped.

    Raises ``ValueError`` (from :mod:`ipaddress`) for text that is not an address.
    """
    addr = ipaddress.ip_address(text.strip())
    if isinstance(addr, ipaddress.IPv4Address):
        addr = ipaddress.IPv6Address(b"\x00" * 10 + b"\xff\xff" + addr.packed)
    return np.frombuffer(addr.packed, dtype=np.uint8).copy()


def parse_ips(texts: Iterable[str]) -> np.ndarray:
    """Many addresses as a (m, 16) uint8 array, row ``i`` = :func:`parse_ip` of the ``i``-th text."""
    rows = [parse_ip(t) for t in texts]
    if not rows:
        return np.zeros((0, 16), np.uint8)
    return np.stack(rows)


def _check_ips(ips: np.ndarray) -> np.ndarray:
    ips = np.asarray(ips)
    if ips.dtype != np.uint8 or ips.ndim != 2 or ips.shape[1] != 16:
        raise ValueError(f"expected a (m, 16) uint8 array of addresses, got {ips.dtype} {ips.shape}")
    return np.ascontiguousarray(ips)
