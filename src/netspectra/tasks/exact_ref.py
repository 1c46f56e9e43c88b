"""Plain-Python references for the exact task, for tests and for reading.

Two independent references:

* :class:`ReferenceFlows` — the *semantics*: a dict from the masked key to ``[first, last, packets,
  bytes]``. It shares no code with the kernels; agreement means the table counts the right things.
* :func:`hash_compact_ref`, :func:`hash_wide_ref`, :func:`update_flows_ref`, :func:`reindex_ref` — the
  algorithms of the kernels of :mod:`netspectra.tasks.exact_kernels` (without their software
  pipeline), in Python integers, on the same layout (index slots, compact rows, wide rows). Given the same
  input they must produce the *identical* arrays (same slots, same rows in the same order), which
  pins down the encoding, the hash, the probing and the growth protocol, not only the final counts.

Both are per-packet Python: thousands of packets per test, never the production path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.fields import BY_NAME, PACKET_FIELDS, canonical, validate_fields
from netspectra.key_columns import field_values
from netspectra.tasks import exact_kernels as kern
from netspectra.tasks.exact_fields import ExtraLayout

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
WIDE = 1 << 62
V4_MAPPED = 0xFFFF_0000
FlowKey = tuple[bytes | int, ...]


def _value(batch: PacketBatch, name: str, i: int) -> bytes | int:
    """Row ``i``'s value of key field ``name`` (0, or 16 zero bytes, when the batch lacks it)."""
    col = field_values(batch, name)
    if BY_NAME[name].is_ip:
        return bytes(col[i]) if col is not None else bytes(16)
    return int(col[i]) if col is not None else 0


def _mix(h: int, w: int) -> int:
    h = ((h ^ w) * int(kern._K_MIX)) & M64
    return h ^ (h >> 29)


def _fmix(h: int) -> int:
    h ^= h >> 33
    h = (h * int(kern._K_F1)) & M64
    h ^= h >> 33
    h = (h * int(kern._K_F2)) & M64
    return h ^ (h >> 33)


def hash_compact_ref(addr: int, key: int) -> int:
    """:func:`~netspectra.tasks.exact_kernels.hash_compact` in Python integers."""
    return _fmix(_mix(_mix(int(kern._SEED), addr), key))


def hash_wide_ref(a: int, b: int, c: int, d: int, key: int) -> int:
    """:func:`~netspectra.tasks.exact_kernels.hash_wide` in Python integers."""
    h = int(kern._SEED)
    for w in (a, b, c, d, key):
        h = _mix(h, w)
    return _fmix(h)


def index_shift_ref(capacity: int) -> int:
    """:func:`~netspectra.tasks.exact_kernels.index_shift`: home slot = hash >> this."""
    return 64 - (capacity.bit_length() - 1)


def mix_extra_ref(h: int, words: tuple[int, ...]) -> int:
    """:func:`~netspectra.tasks.exact_kernels.mix_extra`: a five-tuple hash with extra key words."""
    for w in words:
        h = _mix(h, w)
    return _fmix(h)


def encode_ref(
    batch: PacketBatch, i: int, masks: tuple[int, ...], extra: tuple[int, ...] = ()
) -> tuple[int, int, tuple[int, ...]]:
    """Packet ``i``'s ``(hash, KEY, address words)``: the words are ``(ADDR,)`` for a compact flow and
    the four masked address words for a wide one; ``extra``: the row's extra key words, mixed into the
    hash (they are not part of the returned words)."""
    h, key, words = _encode5_ref(batch, i, masks)
    return (mix_extra_ref(h, extra) if extra else h), key, words


def _encode5_ref(batch: PacketBatch, i: int, masks: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
    m_src, m_dst, m_sp, m_dp, m_pr = masks
    src = batch.src_ip.view(np.uint64)
    dst = batch.dst_ip.view(np.uint64)
    a, b, c, d = int(src[i, 0]), int(src[i, 1]), int(dst[i, 0]), int(dst[i, 1])
    key = ((int(batch.src_port[i]) & m_sp) << 24) | ((int(batch.dst_port[i]) & m_dp) << 8)
    key |= int(batch.protocol[i]) & m_pr

    def compact(x: int, y: int, mask: int) -> bool:
        return mask == 0 or (x == 0 and y & M32 == V4_MAPPED)

    if compact(a, b, m_src) and compact(c, d, m_dst):
        addr = (((b & m_src) >> 32) << 32) | ((d & m_dst) >> 32)
        return hash_compact_ref(addr, key), key, (addr,)
    key |= WIDE
    words = (a & m_src, b & m_src, c & m_dst, d & m_dst)
    return hash_wide_ref(*words, key), key, words


def update_flows_ref(
    index: np.ndarray,
    rows: list[list[int]],
    wide: list[list[int]],
    start: int,
    limit: int,
    batch: PacketBatch,
    masks: tuple[int, ...],
    extra: np.ndarray | None = None,
) -> int:
    """:func:`~netspectra.tasks.exact_kernels.update_flows` packet by packet: ``index`` a uint64 array,
    ``rows`` and ``wide`` lists of compact and wide rows (appended to; each row's extra key words,
    rows of ``extra``, after its own). Returns the first packet not done (a new flow beyond ``limit``
    rows of both kinds), or ``len(batch)``."""
    cap = index.shape[0]
    shift = index_shift_ref(cap)
    wide_ref = int(kern.WIDE_REF)
    for i in range(start, len(batch)):
        pk, ln, first, last = row_weight_ref(batch, i)
        if pk == 0:
            continue
        xw = tuple(int(x) for x in extra[i]) if extra is not None else ()
        h, key, words = encode_ref(batch, i, masks, xw)
        tf, t = ((first & M64) ^ (1 << 63)), ((last & M64) ^ (1 << 63))
        j = h >> shift
        while True:
            s = int(index[j])
            if s == 0:
                if len(rows) + len(wide) >= limit:
                    return i
                if key & WIDE:
                    wide.append([*words, key, tf, t, pk, ln, *xw])
                    ref = len(wide) | wide_ref
                else:
                    rows.append([*words, key, tf, t, pk, ln, *xw])
                    ref = len(rows)
                index[j] = ((h >> 32) << 32) | ref
                break
            ref = s & M32
            row = wide[(ref & ~wide_ref) - 1] if ref & wide_ref else rows[ref - 1]
            nk = len(words) + 1  # the key words of a row: address words, then KEY
            same_kind = bool(ref & wide_ref) == bool(key & WIDE)
            same_extra = tuple(row[nk + 4 :]) == xw
            if s >> 32 == h >> 32 and same_kind and row[:nk] == [*words, key] and same_extra:
                row[nk] = min(row[nk], tf)
                row[nk + 1] = max(row[nk + 1], t)
                if batch.weighted:
                    row[nk + 2] = min(row[nk + 2] + pk, M64)
                    row[nk + 3] = min(row[nk + 3] + ln, M64)
                else:  # a packet's counters wrap like the kernel's (never reached by real traffic)
                    row[nk + 2] = (row[nk + 2] + 1) & M64
                    row[nk + 3] = (row[nk + 3] + ln) & M64
                break
            j = (j + 1) % cap
    return len(batch)


def row_weight_ref(batch: PacketBatch, i: int) -> tuple[int, int, int, int]:
    """Row ``i``'s ``(packets, bytes, first ns, last ns)``: one packet of its wire length at ``ts_ns``,
    or, for a weighted row, its ``packets`` and ``octets`` over ``min(flow_start, ts) .. max(...)``."""
    ts = int(batch.ts_ns[i])
    first = last = ts
    if batch.flow_start_ns is not None:
        fs = int(batch.flow_start_ns[i])
        first, last = min(fs, ts), max(fs, ts)
    if batch.packets is None:
        return 1, int(batch.length[i]), first, last
    return int(batch.packets[i]), int(batch.octets[i]), first, last  # type: ignore[index]


def reindex_ref(old: np.ndarray, new: np.ndarray) -> int:
    """:func:`~netspectra.tasks.exact_kernels.reindex` in Python."""
    cap = new.shape[0]
    shift = index_shift_ref(cap)
    moved = 0
    for s in old.tolist():
        if s == 0:
            continue
        j = s >> shift
        while new[j] != 0:
            j = (j + 1) % cap
        new[j] = s
        moved += 1
    return moved


def reference_table(
    batches: Iterable[PacketBatch], key_fields: Iterable[str], capacity: int, max_load: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(index, rows, wide)`` as :class:`~netspectra.tasks.exact.ExactTask` builds them, built by the
    Python references: ``rows`` (compact flows, ROW_WORDS) and ``wide`` (wide flows, WIDE_ROW_WORDS)
    uint64.

    Same growth protocol: start at ``capacity`` slots, keep at most ``capacity * num // den`` rows,
    double the index and rebuild it whenever :func:`update_flows_ref` stops short, then resume where it
    stopped. (The wide rows' capacity changes when the kernel stops, never what it computes.)
    """
    keys = set(validate_fields(list(key_fields)))
    masks = tuple(M64 if f in keys else 0 for f in PACKET_FIELDS)
    other = [f for f in keys if f not in PACKET_FIELDS]
    layout = ExtraLayout(other) if other else None
    nx = layout.words if layout is not None else 0
    num, den = max_load
    index = np.zeros(capacity, np.uint64)
    rows: list[list[int]] = []
    wide: list[list[int]] = []
    for batch in batches:
        extra = layout.pack(batch) if layout is not None else None
        i = 0
        while True:
            i = update_flows_ref(index, rows, wide, i, index.shape[0] * num // den, batch, masks, extra)
            if i >= len(batch):
                break
            new = np.zeros(index.shape[0] * 2, np.uint64)
            reindex_ref(index, new)
            index = new
    return (
        index,
        np.array(rows, np.uint64).reshape(-1, kern.ROW_WORDS + nx),
        np.array(wide, np.uint64).reshape(-1, kern.WIDE_ROW_WORDS + nx),
    )


@dataclass
class ReferenceFlows:
    """Dict-based exact flow accounting with the semantics :class:`~netspectra.tasks.exact.ExactTask` has.

    Key: ``(src 16 bytes, dst 16 bytes, src_port, dst_port, protocol)`` with fields outside
    ``key_fields`` zeroed, then the values of the task's other key fields in canonical order (addresses
    as 16 bytes, integers and codes as ints; 0 where the batch lacks the field). Value: ``[first_ns,
    last_ns, packets, bytes]`` with first = min timestamp, last = max timestamp. A weighted row adds its
    ``packets`` and ``octets`` (capped at 2**64 - 1) and spans its ``flow_start_ns`` to its ``ts_ns``; a
    row of 0 packets adds nothing.
    """

    key_fields: tuple[str, ...]
    flows: dict[FlowKey, list[int]] = field(default_factory=dict)

    def __init__(self, key_fields: Iterable[str]) -> None:
        self.key_fields = validate_fields(list(key_fields))
        self.flows = {}

    def update(self, batch: PacketBatch) -> None:
        """Account every packet of ``batch``."""
        f = set(self.key_fields)
        others = canonical(n for n in self.key_fields if n not in PACKET_FIELDS)
        zero_ip = bytes(16)
        for i in range(len(batch)):
            key = (
                bytes(batch.src_ip[i]) if "SrcIP" in f else zero_ip,
                bytes(batch.dst_ip[i]) if "DstIP" in f else zero_ip,
                int(batch.src_port[i]) if "SrcPort" in f else 0,
                int(batch.dst_port[i]) if "DstPort" in f else 0,
                int(batch.protocol[i]) if "Protocol" in f else 0,
                *(_value(batch, name, i) for name in others),
            )
            pk, ln, first, last = row_weight_ref(batch, i)
            if pk == 0:
                continue
            v = self.flows.get(key)
            if v is None:
                self.flows[key] = [first, last, pk, ln]
            else:
                v[0] = min(v[0], first)
                v[1] = max(v[1], last)
                v[2] = min(v[2] + pk, M64)
                v[3] = min(v[3] + ln, M64)
