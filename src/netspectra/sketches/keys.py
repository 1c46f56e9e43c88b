"""Fixed-width sketch keys: the original's byte encoding of a flow (and of a flow‖element pair).

A key is the concatenation, in the configured order, of the fields' bytes:

==============  =====  ===========================================================
field           bytes  encoding
==============  =====  ===========================================================
``SrcIP``       16     the batch's 16-byte address (IPv4 as ``::ffff:a.b.c.d``)
``DstIP``       16     same
``SrcPort``     2      big-endian
``DstPort``     2      big-endian
``Protocol``    1      the protocol number
==============  =====  ===========================================================

Every byte of a key is written from the batch: there is no left-over buffer content (the original's
bug 1 wrote 4-byte IPv4 addresses into un-zeroed 16-byte pooled slots, so equal flows got different
keys). Field order matters here, unlike for the exact task: ``[SrcIP, DstIP]`` and ``[DstIP, SrcIP]``
are different byte strings and hash differently, exactly as in the original.

A sketch's *flow key* is built from ``flow_fields``; a SuperSpread sketch hashes the *flow‖element*
key, ``encode_keys(batch, flow_fields + element_fields)``, whose first ``key_length(flow_fields)``
bytes are the flow key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import numpy as np
from numba import njit

from netspectra.batch import PacketBatch
from netspectra.fields import FIELD_BYTES, FIELD_NAMES, key_length, validate_fields

__all__ = [
    "FIELD_BYTES",
    "FIELD_NAMES",
    "decode_flows",
    "encode_flow_element",
    "encode_keys",
    "key_length",
    "validate_fields",
]

# numeric codes the kernel switches on (index into FIELD_NAMES)
_CODE = {name: i for i, name in enumerate(FIELD_NAMES)}


@njit(nogil=True, cache=True)
def _encode_kernel(
    src_ip: np.ndarray,
    dst_ip: np.ndarray,
    src_port: np.ndarray,
    dst_port: np.ndarray,
    protocol: np.ndarray,
    codes: np.ndarray,
    length: int,
) -> np.ndarray:
    n = src_ip.shape[0]
    out = np.empty((n, length), np.uint8)
    for i in range(n):
        o = 0
        for c in codes:
            if c == 0:
                for b in range(16):
                    out[i, o + b] = src_ip[i, b]
                o += 16
            elif c == 1:
                for b in range(16):
                    out[i, o + b] = dst_ip[i, b]
                o += 16
            elif c == 2:
                out[i, o] = src_port[i] >> 8
                out[i, o + 1] = src_port[i] & 0xFF
                o += 2
            elif c == 3:
                out[i, o] = dst_port[i] >> 8
                out[i, o + 1] = dst_port[i] & 0xFF
                o += 2
            else:
                out[i, o] = protocol[i]
                o += 1
    return out


def _encode(batch: PacketBatch, fields: tuple[str, ...]) -> np.ndarray:
    codes = np.array([_CODE[f] for f in fields], dtype=np.int64)
    return _encode_kernel(
        np.ascontiguousarray(batch.src_ip),
        np.ascontiguousarray(batch.dst_ip),
        np.ascontiguousarray(batch.src_port),
        np.ascontiguousarray(batch.dst_port),
        np.ascontiguousarray(batch.protocol),
        codes,
        sum(FIELD_BYTES[f] for f in fields),
    )


def encode_keys(batch: PacketBatch, fields: Sequence[str]) -> np.ndarray:
    """The keys of every packet of ``batch``: a C-contiguous uint8 array (n, ``key_length(fields)``).

    One numba call over the whole batch. Raises ``ValueError`` for an invalid field list.
    """
    return _encode(batch, validate_fields(fields))


def encode_flow_element(
    batch: PacketBatch, flow_fields: Sequence[str], element_fields: Sequence[str]
) -> np.ndarray:
    """flow‖element keys (n, ``key_length(flow_fields) + key_length(element_fields)``) of ``batch``.

    Each list is validated on its own, so a field may appear in both (the original allowed it).
    """
    flow = validate_fields(flow_fields, "flow_fields")
    elem = validate_fields(element_fields, "element_fields")
    return _encode(batch, flow + elem)


def encode_keys_ref(batch: PacketBatch, fields: Sequence[str]) -> np.ndarray:
    """Plain-Python reference of :func:`encode_keys` (one ``bytes`` concatenation per packet)."""
    fields = validate_fields(fields)
    rows = []
    for i in range(len(batch)):
        parts = []
        for f in fields:
            if f == "SrcIP":
                parts.append(bytes(batch.src_ip[i]))
            elif f == "DstIP":
                parts.append(bytes(batch.dst_ip[i]))
            elif f == "SrcPort":
                parts.append(int(batch.src_port[i]).to_bytes(2, "big"))
            elif f == "DstPort":
                parts.append(int(batch.dst_port[i]).to_bytes(2, "big"))
            else:
                parts.append(int(batch.protocol[i]).to_bytes(1, "big"))
        rows.append(b"".join(parts))
    L = key_length(fields)
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), L).copy()


_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"


def _ip_text(b: bytes) -> str:
    # IPv4-mapped prints as the dotted quad, like Go's net.IP.String(); everything else compressed IPv6
    if b[:12] == _V4_PREFIX:
        return f"{b[12]}.{b[13]}.{b[14]}.{b[15]}"
    return ipaddress.IPv6Address(b).compressed


def decode_flow(key: bytes | np.ndarray, fields: Sequence[str]) -> str:
    """The text of one key, fields joined by a space as the original's ``DecodeFlow``.

    IPs print as dotted IPv4 (IPv4-mapped addresses) or compressed IPv6, ports and the protocol as
    decimal numbers: e.g. ``"10.0.0.1 443 6"``. ``key`` may be longer than the fields need (a
    flow‖element key): only the leading ``key_length(fields)`` bytes are read. Raises ``ValueError`` when
    it is shorter.
    """
    fields = validate_fields(fields)
    raw = bytes(key) if not isinstance(key, bytes) else key
    need = key_length(fields)
    if len(raw) < need:
        raise ValueError(f"key of {len(raw)} bytes is shorter than the {need} bytes of fields {fields}")
    parts = []
    o = 0
    for f in fields:
        w = FIELD_BYTES[f]
        chunk = raw[o : o + w]
        o += w
        parts.append(_ip_text(chunk) if w == 16 else str(int.from_bytes(chunk, "big")))
    return " ".join(parts)


def decode_flows(keys: np.ndarray, fields: Sequence[str]) -> list[str]:
    """:func:`decode_flow` of every row of a (m, L) uint8 key array (heavy-hitter lists: m is small)."""
    fields = validate_fields(fields)
    keys = np.ascontiguousarray(keys, dtype=np.uint8)
    if keys.ndim != 2:
        raise ValueError(f"keys must be a 2-D uint8 array, got shape {keys.shape}")
    return [decode_flow(keys[i].tobytes(), fields) for i in range(keys.shape[0])]
