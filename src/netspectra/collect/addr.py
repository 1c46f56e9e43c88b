"""Exporter and record addresses: text or packed bytes to the 16-byte form, and back.

The 16-byte form is the rest of NetSpectra's (IPv4 mapped into IPv6, ``::ffff:a.b.c.d``); text is
what :mod:`netspectra.output.addr` prints (IPv4-mapped as the dotted quad, everything else as
RFC 5952 IPv6). Only the standard library is used: configuration and logs need these, not the
vectorised formatter.
"""

from __future__ import annotations

import ipaddress

_MAPPED = b"\x00" * 10 + b"\xff\xff"


def to16(addr: str | bytes | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """16 bytes for an address given as text, as 4 or 16 packed bytes, or as an ipaddress object."""
    if isinstance(addr, bytes | bytearray):
        if len(addr) == 4:
            return _MAPPED + bytes(addr)
        if len(addr) == 16:
            return bytes(addr)
        raise ValueError(f"an address has 4 or 16 bytes, not {len(addr)}")
    if isinstance(addr, str):
        addr = ipaddress.ip_address(addr.strip().strip("[]"))
    if isinstance(addr, ipaddress.IPv4Address):
        return _MAPPED + addr.packed
    return addr.packed


def to_text(addr16: bytes) -> str:
    """The text of a 16-byte address (``a.b.c.d`` for IPv4-mapped ones)."""
    if addr16[:12] == _MAPPED:
        return str(ipaddress.IPv4Address(addr16[12:]))
    return str(ipaddress.IPv6Address(addr16))
