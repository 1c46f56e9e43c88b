"""Fixed-width sketch keys: the original's byte encoding of a flow (and of a flow‖element pair).

A key is the concatenation, in the configured order, of the fields' bytes:

====================  =====  ===========================================================
field                 bytes  encoding
====================  =====  ===========================================================
``SrcIP``             16     the batch's 16-byte address (IPv4 as ``::ffff:a.b.c.d``)
``DstIP``             16     same
``SrcPort``           2      big-endian
``DstPort``           2      big-endian
``Protocol``          1      the protocol number
``VlanID``            2      big-endian
``ExporterAddress``   16     as the addresses
``InIf``, ``OutIf``   4      big-endian
enrichment columns    1-4    big-endian at the column's width: AS numbers (4), dictionary codes (2,
                             1 for the interface boundary), decoded to text with the batch's
                             dictionaries when the flow is shown
====================  =====  ===========================================================

Every byte of a key is written from the batch: there is no left-over buffer content (the original's
bug 1 wrote 4-byte IPv4 addresses into un-zeroed 16-byte pooled slots, so equal flows got different
keys). Field order matters here, unlike for the exact task: ``[SrcIP, DstIP]`` and ``[DstIP, SrcIP]``
are different byte strings and hash differently, exactly as in the original. A field the batch does
not carry is its unknown value, 0 (:mod:`netspectra.key_columns`).

A sketch's *flow key* is built from ``flow_fields``; a SuperSpread sketch hashes the *flow‖element*
key, ``encode_keys(batch, flow_fields + element_fields)``, whose first ``key_length(flow_fields)``
bytes are the flow key. The five packet fields alone take one numba kernel; any other field joins
its column's bytes (one numpy operation per field).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.fields import BY_NAME, FIELD_BYTES, FIELD_NAMES, PACKET_FIELDS, key_length, validate_fields
from netspectra.jit import njit
from netspectra.key_columns import MissingFields, field_bytes, field_values, value_text, zeros_of

__all__ = [
    "FIELD_BYTES",
    "FIELD_NAMES",
    "decode_flows",
    "encode_flow_element",
    "encode_keys",
    "key_length",
    "validate_fields",
]

# numeric codes the kernel switches on (index into PACKET_FIELDS)
_CODE = {name: i for i, name in enumerate(PACKET_FIELDS)}


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


@njit(nogil=True, cache=True)
def _encode_address_words(src_w: np.ndarray, dst_w: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Keys of address fields only (``codes`` 0: SrcIP, 1: DstIP), from the addresses as (n, 2) uint64
    words: (n, 2 * len(codes)) uint64 whose bytes are :func:`_encode_kernel`'s keys. Field by field,
    two words a row: numba compiles the byte loop of the general kernel to ~5 ns a 16-byte field (it
    cannot prove the arrays apart), this to ~1.4."""
    n = src_w.shape[0]
    out = np.empty((n, 2 * codes.shape[0]), np.uint64)
    for k in range(codes.shape[0]):
        a = src_w if codes[k] == 0 else dst_w
        for i in range(n):
            out[i, 2 * k] = a[i, 0]
            out[i, 2 * k + 1] = a[i, 1]
    return out


def _encode(batch: PacketBatch, fields: tuple[str, ...], missing: MissingFields | None = None) -> np.ndarray:
    if any(f not in _CODE for f in fields):
        return _encode_columns(batch, fields, missing)
    codes = np.array([_CODE[f] for f in fields], dtype=np.int64)
    src_ip = np.ascontiguousarray(batch.src_ip)
    dst_ip = np.ascontiguousarray(batch.dst_ip)
    if len(codes) == 1 and codes[0] <= _CODE["DstIP"]:
        # One address (the shipped heavy-hitter task's SrcIP): the keys are the column itself, not a copy
        # (~2 ns a packet). Not a read-only column (a NATS message's): the kernels would need a second,
        # read-only specialisation, compiled at the first such batch.
        column = src_ip if codes[0] == _CODE["SrcIP"] else dst_ip
        if column.flags.writeable:
            return column
    if len(codes) and codes.max() <= _CODE["DstIP"]:  # addresses only (the shipped sketches' keys)
        src_w, dst_w = src_ip.view(np.uint64), dst_ip.view(np.uint64)
        if src_w.flags.aligned and dst_w.flags.aligned:  # a layout 1 message's views may not be
            return _encode_address_words(src_w, dst_w, codes).view(np.uint8)
    return _encode_kernel(
        src_ip,
        dst_ip,
        np.ascontiguousarray(batch.src_port),
        np.ascontiguousarray(batch.dst_port),
        np.ascontiguousarray(batch.protocol),
        codes,
        sum(FIELD_BYTES[f] for f in fields),
    )


def _encode_columns(batch: PacketBatch, fields: tuple[str, ...], missing: MissingFields | None) -> np.ndarray:
    """Keys of any fields: each field's big-endian bytes side by side (a field the batch lacks is 0)."""
    n = len(batch)
    out = np.empty((n, sum(FIELD_BYTES[f] for f in fields)), np.uint8)
    o = 0
    for name in fields:
        f = BY_NAME[name]
        values = missing.values(batch, name) if missing is not None else field_values(batch, name)
        if values is None:
            values = zeros_of(f, n)
        out[:, o : o + f.key_bytes] = field_bytes(values, f)
        o += f.key_bytes
    return out


def encode_keys(
    batch: PacketBatch, fields: Sequence[str], missing: MissingFields | None = None
) -> np.ndarray:
    """The keys of every packet of ``batch``: a C-contiguous uint8 array (n, ``key_length(fields)``), to
    be read, not written (for a key of one address it is the batch's own column).

    One numba call over the whole batch for the packet fields. Raises ``ValueError`` for an invalid
    field list. A field the batch lacks is 0 in every key; ``missing`` (a task's
    :class:`~netspectra.key_columns.MissingFields`) counts such rows and says so once.
    """
    return _encode(batch, validate_fields(fields), missing)


def encode_flow_element(
    batch: PacketBatch,
    flow_fields: Sequence[str],
    element_fields: Sequence[str],
    missing: MissingFields | None = None,
) -> np.ndarray:
    """flow‖element keys (n, ``key_length(flow_fields) + key_length(element_fields)``) of ``batch``.

    Each list is validated on its own, so a field may appear in both (the original allowed it).
    """
    flow = validate_fields(flow_fields, "flow_fields")
    elem = validate_fields(element_fields, "element_fields")
    return _encode(batch, flow + elem, missing)


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
            elif f == "Protocol":
                parts.append(int(batch.protocol[i]).to_bytes(1, "big"))
            else:
                kf = BY_NAME[f]
                col = field_values(batch, f)
                if kf.is_ip:
                    parts.append(bytes(col[i]) if col is not None else bytes(16))
                else:
                    parts.append((int(col[i]) if col is not None else 0).to_bytes(kf.key_bytes, "big"))
        rows.append(b"".join(parts))
    L = key_length(fields)
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), L).copy()


def decode_flow(
    key: bytes | np.ndarray, fields: Sequence[str], dictionaries: Mapping[str, Sequence[str]] | None = None
) -> str:
    """The text of one key, fields joined by a space as the original's ``DecodeFlow``.

    IPs print as dotted IPv4 (IPv4-mapped addresses) or compressed IPv6, ports and the protocol as
    decimal numbers: e.g. ``"10.0.0.1 443 6"``; AS numbers as ``AS64500``, dictionary codes as their
    text in ``dictionaries`` (column name → texts; ``-`` when unknown). ``key`` may be longer than the
    fields need (a flow‖element key): only the leading ``key_length(fields)`` bytes are read. Raises
    ``ValueError`` when it is shorter.
    """
    fields = validate_fields(fields)
    raw = bytes(key) if not isinstance(key, bytes) else key
    need = key_length(fields)
    if len(raw) < need:
        raise ValueError(f"key of {len(raw)} bytes is shorter than the {need} bytes of fields {fields}")
    parts = []
    o = 0
    for f in fields:
        kf = BY_NAME[f]
        chunk = raw[o : o + kf.key_bytes]
        o += kf.key_bytes
        parts.append(value_text(kf, chunk if kf.is_ip else int.from_bytes(chunk, "big"), dictionaries or {}))
    return " ".join(parts)


def decode_flows(
    keys: np.ndarray, fields: Sequence[str], dictionaries: Mapping[str, Sequence[str]] | None = None
) -> list[str]:
    """:func:`decode_flow` of every row of a (m, L) uint8 key array (heavy-hitter lists: m is small)."""
    fields = validate_fields(fields)
    keys = np.ascontiguousarray(keys, dtype=np.uint8)
    if keys.ndim != 2:
        raise ValueError(f"keys must be a 2-D uint8 array, got shape {keys.shape}")
    return [decode_flow(keys[i].tobytes(), fields, dictionaries) for i in range(keys.shape[0])]
