"""Plain-Python references for the exact task, for tests and for reading.

Two independent references:

* :class:`ReferenceFlows` — the *semantics*: a dict from the masked key to ``[first, last, packets,
  bytes]``. It shares no code with the kernels; agreement means the table counts the right things.
* :func:`hash_key_ref`, :func:`update_table_ref`, :func:`rehash_ref` — the algorithms of the kernels of
  :mod:`netspectra.tasks.exact_kernels` (without their blocking), in Python integers, same table layout.
  Given the same input they must produce the *identical* table (same slots), which pins down the
  hash, the probing and the growth protocol, not only the final counts.

Both are per-packet Python: thousands of packets per test, never the production path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.fields import validate_fields
from netspectra.tasks import exact_kernels as kern

M64 = (1 << 64) - 1
FlowKey = tuple[bytes, bytes, int, int, int]


def _mix(h: int, w: int) -> int:
    h = ((h ^ w) * int(kern._K_MIX)) & M64
    return h ^ (h >> 29)


def hash_key_ref(a: int, b: int, c: int, d: int, misc: int) -> int:
    """:func:`~netspectra.tasks.exact_kernels.hash_key` in Python integers."""
    h = 0x2545_F491_4F6C_DD1D
    for w in (a, b, c, d, misc):
        h = _mix(h, w)
    h ^= h >> 33
    h = (h * int(kern._K_F1)) & M64
    h ^= h >> 33
    h = (h * int(kern._K_F2)) & M64
    return h ^ (h >> 33)


def update_table_ref(
    table: np.ndarray, state: np.ndarray, start: int, limit: int, batch: PacketBatch, masks: tuple[int, ...]
) -> int:
    """:func:`~netspectra.tasks.exact_kernels.update_table` in Python, on the same table layout."""
    m_src, m_dst, m_sp, m_dp, m_pr = masks
    src = batch.src_ip.view(np.uint64)
    dst = batch.dst_ip.view(np.uint64)
    cap = table.shape[0]
    used = int(state[0])
    for i in range(start, len(batch)):
        key = (
            int(src[i, 0]) & m_src,
            int(src[i, 1]) & m_src,
            int(dst[i, 0]) & m_dst,
            int(dst[i, 1]) & m_dst,
            (1 << 63)
            | ((int(batch.src_port[i]) & m_sp) << 24)
            | ((int(batch.dst_port[i]) & m_dp) << 8)
            | (int(batch.protocol[i]) & m_pr),
        )
        t = (int(batch.ts_ns[i]) & M64) ^ (1 << 63)
        j = hash_key_ref(*key) & (cap - 1)
        while True:
            row = [int(x) for x in table[j]]
            if tuple(row[:5]) == key:
                row[kern.FIRST] = min(row[kern.FIRST], t)
                row[kern.LAST] = max(row[kern.LAST], t)
                row[kern.PACKETS] += 1
                row[kern.BYTES] = (row[kern.BYTES] + int(batch.length[i])) & M64
                table[j] = row
                break
            if row[kern.MISC] == 0:
                if used >= limit:
                    state[0] = used
                    return i
                table[j] = [*key, t, t, 1, int(batch.length[i])]
                used += 1
                break
            j = (j + 1) & (cap - 1)
    state[0] = used
    return len(batch)


def rehash_ref(old: np.ndarray, new: np.ndarray) -> int:
    """:func:`~netspectra.tasks.exact_kernels.rehash` in Python."""
    cap = new.shape[0]
    moved = 0
    for r in range(old.shape[0]):
        if old[r, kern.MISC] == 0:
            continue
        j = hash_key_ref(*(int(x) for x in old[r, :5])) & (cap - 1)
        while new[j, kern.MISC] != 0:
            j = (j + 1) & (cap - 1)
        new[j] = old[r]
        moved += 1
    return moved


def reference_table(
    batches: Iterable[PacketBatch], key_fields: Iterable[str], capacity: int, max_load: tuple[int, int]
) -> np.ndarray:
    """The table :class:`~netspectra.tasks.exact.ExactTask` builds, built by the Python references.

    Same growth protocol: start at ``capacity`` slots, keep at most ``capacity * num // den`` used,
    double and rehash whenever :func:`update_table_ref` stops short, then resume where it stopped.
    """
    keys = set(validate_fields(list(key_fields)))
    masks = tuple(M64 if f in keys else 0 for f in ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"))
    num, den = max_load
    table = np.zeros((capacity, kern.ROW_WORDS), np.uint64)
    state = np.zeros(1, np.int64)
    for batch in batches:
        i = 0
        while True:
            i = update_table_ref(table, state, i, table.shape[0] * num // den, batch, masks)
            if i >= len(batch):
                break
            new = np.zeros((table.shape[0] * 2, kern.ROW_WORDS), np.uint64)
            rehash_ref(table, new)
            table = new
    return table


@dataclass
class ReferenceFlows:
    """Dict-based exact flow accounting with the semantics :class:`~netspectra.tasks.exact.ExactTask` has.

    Key: ``(src 16 bytes, dst 16 bytes, src_port, dst_port, protocol)`` with fields outside
    ``key_fields`` zeroed. Value: ``[first_ns, last_ns, packets, bytes]`` with first = min timestamp,
    last = max timestamp.
    """

    key_fields: tuple[str, ...]
    flows: dict[FlowKey, list[int]] = field(default_factory=dict)

    def __init__(self, key_fields: Iterable[str]) -> None:
        self.key_fields = validate_fields(list(key_fields))
        self.flows = {}

    def update(self, batch: PacketBatch) -> None:
        """Account every packet of ``batch``."""
        f = set(self.key_fields)
        zero_ip = bytes(16)
        for i in range(len(batch)):
            key = (
                bytes(batch.src_ip[i]) if "SrcIP" in f else zero_ip,
                bytes(batch.dst_ip[i]) if "DstIP" in f else zero_ip,
                int(batch.src_port[i]) if "SrcPort" in f else 0,
                int(batch.dst_port[i]) if "DstPort" in f else 0,
                int(batch.protocol[i]) if "Protocol" in f else 0,
            )
            ts, ln = int(batch.ts_ns[i]), int(batch.length[i])
            v = self.flows.get(key)
            if v is None:
                self.flows[key] = [ts, ts, 1, ln]
            else:
                v[0] = min(v[0], ts)
                v[1] = max(v[1], ts)
                v[2] += 1
                v[3] += ln
