"""Batch codec: :class:`~netspectra.batch.PacketBatch` ⇄ the ``v1.PacketBatch`` protobuf message.

Fast path (NetSpectra's transport, ``docs/wire.md``): one message per batch, each column one ``bytes``
field of packed little-endian values. :func:`encode_batch` writes it in one copy of the columns;
:func:`decode_batch` returns numpy arrays that *are* views of the received buffer (no copy). The message
is read and written here by a small protobuf wire-format reader/writer, not by the generated class
(whose accessors copy every column); the tests prove that the generated ``traffic_pb2.PacketBatch``
parses what :func:`encode_batch` writes and that :func:`decode_batch` reads what the class serialises.

Alignment: the writer inserts ``padding`` fields so that every column starts at an offset of the
message that is a multiple of its element width. A buffer whose start is 8-byte aligned (every Python
``bytes`` object is) then yields aligned arrays; a column that ends up unaligned anyway (a message
written by another producer, or a buffer sliced at an odd offset) is copied into an aligned array.

Compatibility path (the original's probes): one ``v1.PacketInfo`` per message.
:func:`packet_info_to_batch` turns many of them into one batch (per-message Python: the slow path),
:func:`batch_to_packet_infos` makes them from a batch (tests, feeding original consumers).

Sharding: :func:`shard_of` gives each packet a shard from a hash of its key fields and
:func:`split_by_shard` cuts a batch into per-shard batches, so that a probe can publish each shard on
its own subject and every engine sees whole flows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError
from numba import njit

from netspectra.batch import PacketBatch
from netspectra.fields import PACKET_FIELDS, validate_fields
from netspectra.proto.v1 import traffic_pb2
from netspectra.sketches.murmur import murmur3_32, murmur3_32_words

__all__ = [
    "FIVE_TUPLE",
    "LAYOUT_VERSION",
    "SHARD_SEED",
    "BatchMeta",
    "PacketInfoStats",
    "batch_to_packet_infos",
    "decode_batch",
    "encode_batch",
    "packet_info_to_batch",
    "shard_of",
    "shard_of_ref",
    "split_by_shard",
]

#: The ``version`` this module writes and the only one it reads.
LAYOUT_VERSION = 1

# --- v1.PacketBatch field numbers (proto/netspectra/v1/traffic.proto; a test checks them) ---
F_VERSION = 1
F_COUNT = 2
F_SEQ = 3
F_PROBE_ID = 4
F_SHARD = 5
F_N_SHARDS = 6
F_LINK_TYPE = 7
F_KERNEL_DROPPED = 8
F_PROBE_DROPPED = 9
F_SKIPPED = 10
F_SHARD_PACKETS = 11
F_PADDING = 15
COLUMN_FIELDS: dict[str, int] = {
    "ts_ns": 16,
    "src_ip": 17,
    "dst_ip": 18,
    "src_port": 19,
    "dst_port": 20,
    "protocol": 21,
    "length": 22,
}
#: The optional columns (:data:`PacketBatch.OPTIONAL`) and their field numbers: written when the batch
#: carries them, read when the message has them.
OPTIONAL_FIELDS: dict[str, int] = {
    "tcp_flags": 23,
    "vlan_id": 24,
    "icmp_type_code": 25,
    "ip_length": 26,
    # flow-export rows (netspectra.collect): a row stands for a flow record
    "packets": 27,
    "octets": 28,
    "sampling_rate": 29,
    "flow_start_ns": 30,
    "in_if": 31,
    "out_if": 32,
    "exporter": 33,
}
# bytes per packet and on-the-wire dtype of every column
_WIDTH = {
    "ts_ns": 8,
    "src_ip": 16,
    "dst_ip": 16,
    "src_port": 2,
    "dst_port": 2,
    "protocol": 1,
    "length": 4,
    "tcp_flags": 1,
    "vlan_id": 2,
    "icmp_type_code": 2,
    "ip_length": 4,
    "packets": 8,
    "octets": 8,
    "sampling_rate": 4,
    "flow_start_ns": 8,
    "in_if": 4,
    "out_if": 4,
    "exporter": 16,
}
_WIRE_DTYPE = {
    "ts_ns": np.dtype("<i8"),
    "src_ip": np.dtype("u1"),
    "dst_ip": np.dtype("u1"),
    "src_port": np.dtype("<u2"),
    "dst_port": np.dtype("<u2"),
    "protocol": np.dtype("u1"),
    "length": np.dtype("<u4"),
    "tcp_flags": np.dtype("u1"),
    "vlan_id": np.dtype("<u2"),
    "icmp_type_code": np.dtype("<u2"),
    "ip_length": np.dtype("<u4"),
    "packets": np.dtype("<u8"),
    "octets": np.dtype("<u8"),
    "sampling_rate": np.dtype("<u4"),
    "flow_start_ns": np.dtype("<i8"),
    "in_if": np.dtype("<u4"),
    "out_if": np.dtype("<u4"),
    "exporter": np.dtype("u1"),
}
_ALIGN = {name: (1 if width == 16 else width) for name, width in _WIDTH.items()}
# widest first, so that alignment padding is needed at most before the first few columns
_ENCODE_ORDER = (
    "ts_ns",
    "packets",
    "octets",
    "flow_start_ns",
    "length",
    "sampling_rate",
    "in_if",
    "out_if",
    "ip_length",
    "src_port",
    "dst_port",
    "vlan_id",
    "icmp_type_code",
    "src_ip",
    "dst_ip",
    "exporter",
    "protocol",
    "tcp_flags",
)
_FIELD_COLUMN = {v: k for k, v in (*COLUMN_FIELDS.items(), *OPTIONAL_FIELDS.items())}
_ALL_FIELDS = {**COLUMN_FIELDS, **OPTIONAL_FIELDS}
_VARINT_FIELDS = {
    F_VERSION: "version",
    F_COUNT: "count",
    F_SEQ: "seq",
    F_SHARD: "shard",
    F_N_SHARDS: "n_shards",
    F_LINK_TYPE: "link_type",
    F_KERNEL_DROPPED: "kernel_dropped",
    F_PROBE_DROPPED: "probe_dropped",
    F_SKIPPED: "skipped",
    F_SHARD_PACKETS: "shard_packets",
}
_U32_FIELDS = frozenset({"version", "count", "shard", "n_shards", "link_type"})
_LEN_FIELDS = frozenset({F_PROBE_ID, F_PADDING, *COLUMN_FIELDS.values(), *OPTIONAL_FIELDS.values()})
_U32_MAX = 0xFFFFFFFF
_U64_MAX = 0xFFFFFFFFFFFFFFFF
_LITTLE = sys.byteorder == "little"

_WT_VARINT, _WT_I64, _WT_LEN, _WT_I32 = 0, 1, 2, 5


@dataclass(frozen=True, slots=True)
class BatchMeta:
    """The non-column fields of a ``v1.PacketBatch`` message (see ``traffic.proto`` for their meaning).

    ``link_type`` is ``None`` when the message does not carry one (0 is ``LINKTYPE_NULL``). The drop
    counters are cumulative since the probe started. ``shard_packets``: packets the probe published on
    this shard before this message (0: not sent, e.g. an older probe).
    """

    seq: int = 0
    probe_id: str = ""
    shard: int = 0
    n_shards: int = 0
    link_type: int | None = None
    kernel_dropped: int = 0
    probe_dropped: int = 0
    skipped: int = 0
    shard_packets: int = 0


# --------------------------------------------------------------------------------------------------
# protobuf wire format primitives


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _read_varint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """(value, new position) of the varint at ``pos``; at most 10 bytes, value < 2**64."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise ValueError(f"PacketBatch: truncated varint at byte {pos}")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise ValueError(f"PacketBatch: varint longer than 10 bytes ending at byte {pos}")
    if result > _U64_MAX:
        raise ValueError(f"PacketBatch: varint ending at byte {pos} exceeds 64 bits")
    return result, pos


def _check_uint(name: str, value: int, bits: int) -> int:
    if not isinstance(value, int | np.integer) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name}={value} is out of range for uint{bits}")
    return value


def _padding_for(offset: int, header_len: int, align: int) -> bytes:
    """A ``padding`` field (or ``b""``) making ``offset + len(pad) + header_len`` a multiple of ``align``."""
    r = -(offset + header_len) % align
    if r == 0:
        return b""
    size = r if r >= 2 else r + align  # a padding field is at least 2 bytes (tag, length 0)
    return _tag(F_PADDING, _WT_LEN) + _varint(size - 2) + bytes(size - 2)


# --------------------------------------------------------------------------------------------------
# fast path


def encode_batch(
    batch: PacketBatch,
    *,
    seq: int = 0,
    probe_id: str = "",
    shard: int = 0,
    n_shards: int = 0,
    link_type: int | None = None,
    kernel_dropped: int = 0,
    probe_dropped: int = 0,
    skipped: int = 0,
    shard_packets: int = 0,
) -> bytes:
    """Serialise ``batch`` and its metadata as one ``v1.PacketBatch`` message.

    Contract: the result is a valid protobuf encoding of ``v1.PacketBatch`` with ``version`` =
    :data:`LAYOUT_VERSION`, ``count = len(batch)`` and every column packed little-endian, each column
    starting at an offset that is a multiple of its width (``padding`` fields in between); the optional
    columns the batch carries are written too (fields 23-33), the absent ones are not; dimension
    columns (``dims``: made where the tasks run) are never sent. An empty batch
    carries no column fields. ``decode_batch(encode_batch(b, **m))`` returns ``b``'s values and ``m``
    (for an empty batch, without its optional columns: nothing says they were there).

    Raises ``ValueError`` if ``batch`` breaks :meth:`PacketBatch.validate`, if a number is out of its
    field's range (uint32: ``shard``, ``n_shards``, ``link_type``; uint64: ``seq`` and the counters),
    if ``n_shards > 0`` and ``shard >= n_shards``, or if the batch has 2**32 packets or more.
    """
    batch.validate()
    n = len(batch)
    _check_uint("count", n, 32)
    seq = _check_uint("seq", seq, 64)
    shard = _check_uint("shard", shard, 32)
    n_shards = _check_uint("n_shards", n_shards, 32)
    if n_shards and shard >= n_shards:
        raise ValueError(f"shard={shard} is not below n_shards={n_shards}")
    if not isinstance(probe_id, str):
        raise TypeError(f"probe_id must be a str, got {type(probe_id).__name__}")
    # count first, version second: a truncated non-empty message then never reads as a valid batch
    head = bytearray()
    if n:
        head += _tag(F_COUNT, _WT_VARINT) + _varint(n)
    head += _tag(F_VERSION, _WT_VARINT) + _varint(LAYOUT_VERSION)
    for field, value in (
        (F_SEQ, seq),
        (F_SHARD, shard),
        (F_N_SHARDS, n_shards),
        (F_KERNEL_DROPPED, _check_uint("kernel_dropped", kernel_dropped, 64)),
        (F_PROBE_DROPPED, _check_uint("probe_dropped", probe_dropped, 64)),
        (F_SKIPPED, _check_uint("skipped", skipped, 64)),
        (F_SHARD_PACKETS, _check_uint("shard_packets", shard_packets, 64)),
    ):
        if value:
            head += _tag(field, _WT_VARINT) + _varint(value)
    if link_type is not None:
        head += _tag(F_LINK_TYPE, _WT_VARINT) + _varint(_check_uint("link_type", link_type, 32))
    if probe_id:
        raw = probe_id.encode("utf-8")
        head += _tag(F_PROBE_ID, _WT_LEN) + _varint(len(raw)) + raw
    parts: list[bytes | np.ndarray] = [bytes(head)]
    offset = len(head)
    if n:
        for name in _ENCODE_ORDER:
            col = getattr(batch, name)
            if col is None:  # an optional column the batch does not carry
                continue
            if not _LITTLE:
                col = col.astype(_WIRE_DTYPE[name])
            header = _tag(_ALL_FIELDS[name], _WT_LEN) + _varint(col.nbytes)
            pad = _padding_for(offset, len(header), _ALIGN[name])
            parts += [pad, header, col]
            offset += len(pad) + len(header) + col.nbytes
    return b"".join(parts)


def decode_batch(data: bytes | bytearray | memoryview) -> tuple[PacketBatch, BatchMeta]:
    """Parse one ``v1.PacketBatch`` message into a batch and its metadata.

    Contract: the batch's arrays are views of ``data`` (read-only when ``data`` is ``bytes``; they keep it
    alive) except where a column is unaligned in memory or the host is big-endian, where that column is
    copied. An optional column (fields 23-33) is in the batch exactly when the message has it, and then
    must be ``count`` × its width bytes like any column. Fields may come in any order and repeat (the
    last one wins, as in protobuf); unknown fields are skipped (forward compatibility). The result always
    passes :meth:`PacketBatch.validate`.

    Raises ``ValueError`` — never returns a partial or misread batch — when ``data`` is not well-formed
    protobuf (truncated varint or field, group or reserved wire types, field number 0), a known field has
    the wrong wire type or an out-of-range value, ``version`` is not :data:`LAYOUT_VERSION` (a missing
    version too: e.g. a ``PacketInfo`` fed here by mistake), ``probe_id`` is not UTF-8, or a column's
    byte length is not ``count`` × its width (a missing column of a non-empty batch included).
    """
    buf: bytes | memoryview
    if isinstance(data, bytes):
        buf = data
    else:
        try:
            buf = memoryview(data).cast("B")
        except TypeError as exc:
            raise ValueError(f"PacketBatch: cannot read a buffer from {type(data).__name__}: {exc}") from exc
    end = len(buf)
    pos = 0
    scalars: dict[str, int] = {}
    probe_id = ""
    cols: dict[str, tuple[int, int]] = {}
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise ValueError(f"PacketBatch: field number 0 at byte {pos}")
        if wt == _WT_VARINT:
            value, pos = _read_varint(buf, pos, end)
            name = _VARINT_FIELDS.get(field)
            if name is not None:
                scalars[name] = value
            elif field in _LEN_FIELDS:
                raise ValueError(f"PacketBatch: field {field} must be length-delimited, got a varint")
        elif wt == _WT_LEN:
            length, pos = _read_varint(buf, pos, end)
            if length > end - pos:
                raise ValueError(
                    f"PacketBatch: field {field} claims {length} bytes at byte {pos}, only {end - pos} remain"
                )
            if field in _FIELD_COLUMN:
                cols[_FIELD_COLUMN[field]] = (pos, length)
            elif field == F_PROBE_ID:
                try:
                    probe_id = bytes(buf[pos : pos + length]).decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise ValueError(f"PacketBatch: probe_id is not valid UTF-8: {exc}") from exc
            elif field in _VARINT_FIELDS:
                raise ValueError(f"PacketBatch: field {field} must be a varint, got a length-delimited field")
            pos += length
        elif wt in (_WT_I64, _WT_I32):
            if field in _VARINT_FIELDS or field in _LEN_FIELDS:
                raise ValueError(f"PacketBatch: field {field} has fixed-width wire type {wt}")
            pos += 8 if wt == _WT_I64 else 4
            if pos > end:
                raise ValueError("PacketBatch: truncated fixed-width field")
        else:
            raise ValueError(f"PacketBatch: unsupported wire type {wt} (field {field}) before byte {pos}")

    version = scalars.get("version", 0)
    if version != LAYOUT_VERSION:
        raise ValueError(
            f"PacketBatch: layout version {version}, expected {LAYOUT_VERSION} "
            "(0: no version field — is this a v1.PacketBatch message?)"
        )
    for name in _U32_FIELDS & scalars.keys():
        if scalars[name] > _U32_MAX:
            raise ValueError(f"PacketBatch: {name}={scalars[name]} does not fit uint32")
    n = scalars.get("count", 0)
    n_shards = scalars.get("n_shards", 0)
    shard = scalars.get("shard", 0)
    if n_shards and shard >= n_shards:
        raise ValueError(f"PacketBatch: shard {shard} is not below n_shards {n_shards}")
    arrays = {}
    for name in (*PacketBatch.COLUMNS, *PacketBatch.OPTIONAL):
        optional = name in PacketBatch.OPTIONAL
        if optional and (name not in cols or n == 0):
            continue
        off, length = cols.get(name, (0, 0))
        want = n * _WIDTH[name]
        if length != want:
            what = "missing" if name not in cols else f"{length} bytes"
            raise ValueError(
                f"PacketBatch: column {name} is {what}, expected count {n} × {_WIDTH[name]} = {want} bytes"
            )
        dtype_out = PacketBatch.OPTIONAL[name] if optional else PacketBatch.DTYPES[name]
        if n == 0:
            arr = np.empty(0, dtype_out)
        else:
            dtype = _WIRE_DTYPE[name]
            arr = np.frombuffer(buf, dtype=dtype, count=want // dtype.itemsize, offset=off)
            if not _LITTLE:
                arr = arr.astype(dtype_out)
            elif not arr.flags.aligned:
                arr = arr.copy()
        if _WIDTH[name] == 16:
            arr = arr.reshape(n, 16)
        arrays[name] = arr
    batch = PacketBatch(**arrays)
    meta = BatchMeta(
        seq=scalars.get("seq", 0),
        probe_id=probe_id,
        shard=shard,
        n_shards=n_shards,
        link_type=scalars.get("link_type"),
        kernel_dropped=scalars.get("kernel_dropped", 0),
        probe_dropped=scalars.get("probe_dropped", 0),
        skipped=scalars.get("skipped", 0),
        shard_packets=scalars.get("shard_packets", 0),
    )
    return batch, meta


# --------------------------------------------------------------------------------------------------
# compatibility path: one v1.PacketInfo per message


@dataclass(slots=True)
class PacketInfoStats:
    """Counters of :func:`packet_info_to_batch`, accumulated over calls when the same object is passed.

    Every message counts in ``messages`` and in exactly one of ``converted`` or a skip reason:
    ``undecodable`` (not a ``PacketInfo`` encoding), ``no_five_tuple`` (absent five-tuple: the original
    logs and skips these too), ``bad_address`` (an IP that is neither 4 nor 16 bytes), ``out_of_range``
    (port > 65535, protocol > 255, length ≥ 2**32, or a timestamp outside int64 nanoseconds or with
    nanos outside [0, 1e9)). ``no_timestamp`` counts converted packets without a timestamp (kept with
    ``ts_ns`` 0, the Unix epoch — what the original reads for them).
    """

    messages: int = 0
    converted: int = 0
    undecodable: int = 0
    no_five_tuple: int = 0
    bad_address: int = 0
    out_of_range: int = 0
    no_timestamp: int = 0

    @property
    def skipped(self) -> int:
        """Messages that produced no packet."""
        return self.undecodable + self.no_five_tuple + self.bad_address + self.out_of_range


_V4_MAPPED = bytes(10) + b"\xff\xff"
_NS = 1_000_000_000
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def _ip16(raw: bytes) -> bytes | None:
    if len(raw) == 16:
        return raw
    if len(raw) == 4:
        return _V4_MAPPED + raw
    return None


def packet_info_to_batch(
    msgs: Iterable[bytes | bytearray | memoryview | traffic_pb2.PacketInfo],
    stats: PacketInfoStats | None = None,
) -> PacketBatch:
    """One batch from ``v1.PacketInfo`` messages (serialised bytes or message objects), in input order.

    Contract: IPv4 addresses (4 bytes) become IPv4-mapped 16-byte addresses, IPv6 (16 bytes) are kept;
    ``ts_ns`` = ``seconds * 1e9 + nanos``; ``length`` is the message's wire length. Messages that cannot
    become a packet are skipped, never raised on, and counted in ``stats`` (see
    :class:`PacketInfoStats`) when it is given. Per-message Python: this is the slow compatibility path.
    """
    st = stats if stats is not None else PacketInfoStats()
    ts: list[int] = []
    src: list[bytes] = []
    dst: list[bytes] = []
    sport: list[int] = []
    dport: list[int] = []
    proto: list[int] = []
    length: list[int] = []
    from_string = traffic_pb2.PacketInfo.FromString
    for m in msgs:
        st.messages += 1
        if isinstance(m, traffic_pb2.PacketInfo):
            pi = m
        else:
            try:
                pi = from_string(bytes(m))
            except DecodeError:
                st.undecodable += 1
                continue
        if not pi.HasField("five_tuple"):
            st.no_five_tuple += 1
            continue
        ft = pi.five_tuple
        s = _ip16(ft.src_ip)
        d = _ip16(ft.dst_ip)
        if s is None or d is None:
            st.bad_address += 1
            continue
        if ft.src_port > 0xFFFF or ft.dst_port > 0xFFFF or ft.protocol > 0xFF or pi.length > _U32_MAX:
            st.out_of_range += 1
            continue
        if pi.HasField("timestamp"):
            nanos = pi.timestamp.nanos
            t = pi.timestamp.seconds * _NS + nanos
            if not 0 <= nanos < _NS or not _I64_MIN <= t <= _I64_MAX:
                st.out_of_range += 1
                continue
        else:
            t = 0
            st.no_timestamp += 1
        st.converted += 1
        ts.append(t)
        src.append(s)
        dst.append(d)
        sport.append(ft.src_port)
        dport.append(ft.dst_port)
        proto.append(ft.protocol)
        length.append(pi.length)
    n = len(ts)
    return PacketBatch(
        ts_ns=np.array(ts, dtype=np.int64),
        src_ip=np.frombuffer(b"".join(src), dtype=np.uint8).reshape(n, 16).copy(),
        dst_ip=np.frombuffer(b"".join(dst), dtype=np.uint8).reshape(n, 16).copy(),
        src_port=np.array(sport, dtype=np.uint16),
        dst_port=np.array(dport, dtype=np.uint16),
        protocol=np.array(proto, dtype=np.uint8),
        length=np.array(length, dtype=np.uint32),
    )


def batch_to_packet_infos(batch: PacketBatch) -> list[traffic_pb2.PacketInfo]:
    """One ``v1.PacketInfo`` per packet of ``batch``, as the original's probe would send them.

    Contract: IPv4-mapped addresses (``::ffff:a.b.c.d``) are written as 4 bytes (the original's probe
    sends IPv4 addresses that way), every other address as 16 bytes; the timestamp is ``ts_ns`` split
    into seconds and nanos in [0, 1e9). ``packet_info_to_batch(batch_to_packet_infos(b))`` equals ``b``
    (an IPv6 packet whose addresses are IPv4-mapped comes back unchanged too: same 16 bytes).
    """
    batch.validate()
    out = []
    for i in range(len(batch)):
        s = batch.src_ip[i].tobytes()
        d = batch.dst_ip[i].tobytes()
        sec, ns = divmod(int(batch.ts_ns[i]), _NS)
        pi = traffic_pb2.PacketInfo(length=int(batch.length[i]))
        pi.timestamp.seconds = sec
        pi.timestamp.nanos = ns
        ft = pi.five_tuple
        ft.src_ip = s[12:] if s[:12] == _V4_MAPPED else s
        ft.dst_ip = d[12:] if d[:12] == _V4_MAPPED else d
        ft.src_port = int(batch.src_port[i])
        ft.dst_port = int(batch.dst_port[i])
        ft.protocol = int(batch.protocol[i])
        out.append(pi)
    return out


# --------------------------------------------------------------------------------------------------
# sharding

#: The key fields :func:`shard_of` hashes by default: the directional five-tuple (and the only fields
#: it can hash: the ones every packet carries on the wire).
FIVE_TUPLE: tuple[str, ...] = PACKET_FIELDS
#: MurmurHash3 seed of the shard hash. Part of the contract: every probe must shard alike.
SHARD_SEED = 0x4E535348  # "NSSH"
_FIELD_CODE = {name: i for i, name in enumerate(PACKET_FIELDS)}


@njit(nogil=True, cache=True)
def _shard_kernel(
    src_ip: np.ndarray,
    dst_ip: np.ndarray,
    src_port: np.ndarray,
    dst_port: np.ndarray,
    protocol: np.ndarray,
    codes: np.ndarray,
    n_shards: int,
    seed: int,
    little_endian: bool,
) -> np.ndarray:
    n = src_ip.shape[0]
    out = np.empty(n, np.uint32)
    # bytes past the key length stay zero: murmur3_32_words reads the tail block as a whole word
    key = np.zeros(40, np.uint8)
    words = key.view(np.uint64)
    m = np.uint32(n_shards)
    for i in range(n):
        o = 0
        for c in codes:
            if c == 0:
                for b in range(16):
                    key[o + b] = src_ip[i, b]
                o += 16
            elif c == 1:
                for b in range(16):
                    key[o + b] = dst_ip[i, b]
                o += 16
            elif c == 2:
                key[o] = src_port[i] >> 8
                key[o + 1] = src_port[i] & 0xFF
                o += 2
            elif c == 3:
                key[o] = dst_port[i] >> 8
                key[o + 1] = dst_port[i] & 0xFF
                o += 2
            else:
                key[o] = protocol[i]
                o += 1
        if little_endian:
            out[i] = murmur3_32_words(words, o, seed) % m
        else:
            out[i] = murmur3_32(key, o, seed) % m
    return out


def _check_shards(n_shards: int) -> int:
    n_shards = _check_uint("n_shards", n_shards, 32)
    if n_shards < 1:
        raise ValueError("n_shards must be at least 1")
    return n_shards


def _shard_fields(fields: Sequence[str]) -> tuple[str, ...]:
    out = validate_fields(fields, "shard fields")
    other = [f for f in out if f not in _FIELD_CODE]
    if other:
        raise ValueError(
            f"shard fields: {', '.join(other)} not among the packet fields {', '.join(PACKET_FIELDS)}"
        )
    return out


def shard_of(batch: PacketBatch, n_shards: int, fields: Sequence[str] = FIVE_TUPLE) -> np.ndarray:
    """The shard, in ``[0, n_shards)``, of every packet of ``batch`` (uint32 array, one numba call).

    Contract: shard = ``murmur3_x86_32(key, SHARD_SEED) % n_shards`` where ``key`` is the original's
    fixed-width key of ``fields`` in the given order (:mod:`netspectra.sketches.keys`: 16-byte IPs,
    big-endian 2-byte ports, 1-byte protocol) — defined on bytes, so any language can reproduce it.

    The hash is **directional**: ``a→b`` and ``b→a`` may land on different shards. Every task of the
    original and of NetSpectra keys flows directionally, so this is what they need. A task is
    shard-local (its results need no merge across shards) exactly when its key fields include all of
    ``fields``: shard on the fields that every configured task keys on (the shipped configuration keys
    all three tasks on ``SrcIP``, so ``("SrcIP",)`` keeps each of them whole; the default five-tuple
    only keeps five-tuple tasks whole). Raises ``ValueError`` for an invalid field list or
    ``n_shards < 1``.
    """
    n_shards = _check_shards(n_shards)
    codes = np.array([_FIELD_CODE[f] for f in _shard_fields(fields)], dtype=np.int64)
    return _shard_kernel(
        batch.src_ip,
        batch.dst_ip,
        batch.src_port,
        batch.dst_port,
        batch.protocol,
        codes,
        n_shards,
        SHARD_SEED,
        _LITTLE,
    )


def shard_of_ref(batch: PacketBatch, n_shards: int, fields: Sequence[str] = FIVE_TUPLE) -> np.ndarray:
    """Plain-Python reference of :func:`shard_of` (``mmh3`` over the bytes of each packet's key)."""
    import mmh3

    from netspectra.sketches.keys import encode_keys_ref

    n_shards = _check_shards(n_shards)
    keys = encode_keys_ref(batch, fields)
    return np.array(
        [mmh3.hash(bytes(row), SHARD_SEED, signed=False) % n_shards for row in keys], dtype=np.uint32
    )


def split_by_shard(batch: PacketBatch, shards: np.ndarray, n_shards: int) -> list[PacketBatch]:
    """``n_shards`` batches, the ``i``-th holding the packets with ``shards == i`` in their input order.

    ``shards`` is :func:`shard_of`'s result (any integer array of ``len(batch)`` values in
    ``[0, n_shards)``). One stable sort and one gather; the batches are slices of one reordered copy.
    Raises ``ValueError`` if ``shards`` has the wrong length or a value outside the range.
    """
    n_shards = _check_shards(n_shards)
    shards = np.asarray(shards)
    if shards.shape != (len(batch),):
        raise ValueError(f"shards has shape {shards.shape}, expected ({len(batch)},)")
    if shards.size and (shards.min() < 0 or shards.max() >= n_shards):
        raise ValueError(f"shard ids must be in [0, {n_shards})")
    order = np.argsort(shards, kind="stable")
    sorted_batch = batch.take(order)
    bounds = np.zeros(n_shards + 1, np.int64)
    np.cumsum(np.bincount(shards, minlength=n_shards), out=bounds[1:])
    return [sorted_batch.slice(int(bounds[i]), int(bounds[i + 1])) for i in range(n_shards)]
