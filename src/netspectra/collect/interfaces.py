"""The latest sFlow interface counters per (exporter, ifIndex): what ``/metrics`` and the reports show.

sFlow agents send a *counter sample* per interface every polling interval (typically 20–30 s): the
interface's generic counters (RFC 3635/2863 ifTable: octets, unicast/multicast/broadcast packets,
discards, errors, speed, status) as the agent holds them — running totals since the interface came
up, not deltas. The decoder turns them into :class:`~.records.InterfaceCounters` rows; this table keeps
the latest row of every (exporter, ifIndex) — what ntopng shows per flow-exporter interface and pmacct's
sfacctd writes to its ``sfacctd_counter_file`` — so that a scrape or a report reads the values an SNMP
poller would have read.

*Latest* is the row received last (``received_ns``; within a batch, the later row): counter samples
are rare, so arrival order is the agent's order; the sample sequence number is not used because it
restarts with the agent. The exporter is the sFlow agent address (as for the flow rows); the sub-agent
id of the latest row is kept beside it.

A counter the agent does not support is sent as all ones (2**32 − 1, or 2**64 − 1 for the 64-bit ones:
sFlow v5's "unknown" value; Open vSwitch sends it for broadcast and unknown-protocol packets). The
table keeps the values as sent; :meth:`InterfaceTable.snapshot` lists such fields in ``unsupported``
and leaves them out of its packet sums, ``/metrics`` leaves their series out, the report shows ``-``.

Bounded: at most ``max_per_exporter`` interfaces per exporter and ``max_total`` overall (the label set
of ``/metrics`` stays bounded whatever a sender claims). A row of an interface that is not in the table
when it is full is not kept: :meth:`InterfaceTable.update` returns those per exporter, and the decoder
counts them (``interfaces_over_limit``). Interfaces already kept go on being updated.

Thread-safe: the decoder updates under its lock, scrapes and summaries read at any time.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from netspectra.collect.records import InterfaceCounters

__all__ = ["COUNTER_FIELDS", "UNSUPPORTED", "InterfaceTable", "supported"]

#: The kept values of an interface, in order: the agent's fields after ``sample_seq``
#: (:attr:`InterfaceCounters.WIRE`), then ``domain``, ``sample_seq`` and ``received_ns``.
COUNTER_FIELDS: tuple[str, ...] = (
    *(name for name, _ in InterfaceCounters.WIRE),
    "domain",
    "sample_seq",
    "received_ns",
)
_WIRE = tuple(name for name, _ in InterfaceCounters.WIRE)
_STORED = COUNTER_FIELDS[:-1]  # the slot's uint64 columns (the receive time is kept apart, int64)
#: Per counter field: the value that means "not supported by the agent" (all ones of its width).
UNSUPPORTED: dict[str, int] = {name: (1 << (8 * width)) - 1 for name, width in InterfaceCounters.WIRE}


def supported(field: str, value: int) -> bool:
    """Whether ``value`` of counter ``field`` is a value, not the agent's "unsupported" marker (fields
    that are not counters, such as ``if_index``, are always values)."""
    return field not in _MARKED or value != UNSUPPORTED[field]


#: The fields whose all-ones value is the marker (identifiers and status words are not counters).
_MARKED = frozenset(_WIRE) - {"if_index", "if_type", "if_direction", "if_status", "promiscuous"}


class InterfaceTable:
    """The latest counters of every (exporter, ifIndex) seen, bounded (see the module docstring). New
    interfaces of one batch are admitted in (exporter id, ifIndex) order while there is room.

    Columnar: one slot per interface in ``_vals`` (uint64, one column per :data:`COUNTER_FIELDS` value
    but the receive time, which is ``_recv``); a sorted key array (exporter id << 32 | ifIndex) finds the
    slots of a batch with one ``searchsorted``. An update is vectorised; Python runs once per *new*
    interface only (the limits), never per row.
    """

    def __init__(self, max_per_exporter: int = 4096, max_total: int = 65_536) -> None:
        self.max_per_exporter = max_per_exporter
        self.max_total = max_total
        self._lock = threading.Lock()
        self._keys = np.zeros(0, np.int64)  # sorted keys
        self._key_slot = np.zeros(0, np.int64)  # the slot of each sorted key
        cap = 64
        self._vals = np.zeros((cap, len(COUNTER_FIELDS) - 1), np.uint64)
        self._recv = np.zeros(cap, np.int64)
        self._slot_key = np.zeros(cap, np.int64)
        self._n = 0
        self._per_exporter: dict[int, int] = {}  # exporter id -> interfaces kept
        self._names: dict[int, str] = {}  # exporter id -> its text

    def __len__(self) -> int:
        return self._n

    def update(self, c: InterfaceCounters, exporter_ids: np.ndarray, names: Sequence[str]) -> dict[str, int]:
        """Keep the latest row of each (exporter, ifIndex) of ``c``. ``exporter_ids``: each row's exporter
        (dense ids, as the decoder's registry numbers them), ``names``: the text of every id. Returns, per
        exporter text, the rows not kept because the table was full (none: {})."""
        n = len(c)
        if n == 0:
            return {}
        key = (exporter_ids.astype(np.int64) << 32) | c.if_index.astype(np.int64)
        # the last row of each key: latest receive time, then the later row of the batch
        order = np.lexsort((np.arange(n), c.received_ns, key))
        ks = key[order]
        ends = np.flatnonzero(np.append(ks[1:] != ks[:-1], True))
        last = order[ends]
        sizes = np.diff(ends, prepend=-1)
        uk = key[last]
        refused: dict[str, int] = {}
        with self._lock:
            slots = self._find(uk)
            new = np.flatnonzero(slots < 0)
            if new.size:
                for j in new.tolist():  # a new interface: once in its lifetime
                    eid = int(uk[j] >> 32)
                    kept = self._per_exporter.get(eid, 0)
                    if kept >= self.max_per_exporter or self._n >= self.max_total:
                        name = names[eid]
                        refused[name] = refused.get(name, 0) + int(sizes[j])  # all its rows of the batch
                        continue
                    slots[j] = self._add(int(uk[j]))
                    self._per_exporter[eid] = kept + 1
                    self._names.setdefault(eid, names[eid])
                self._reindex()
            ok = slots >= 0
            recv = c.received_ns[last]
            # an older row than the one kept (reordered on the way) does not replace it
            ok &= recv >= self._recv[np.where(ok, slots, 0)]
            rows, at = last[ok], slots[ok]
            for f, name in enumerate(_STORED):
                self._vals[at, f] = getattr(c, name)[rows]
            self._recv[at] = recv[ok]
        return refused

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each key, -1 where it has none."""
        if self._keys.size == 0:
            return np.full(keys.shape[0], -1, np.int64)
        pos = np.minimum(np.searchsorted(self._keys, keys), self._keys.size - 1)
        return np.where(self._keys[pos] == keys, self._key_slot[pos], -1)

    def _add(self, key: int) -> int:
        slot = self._n
        if slot >= self._recv.shape[0]:
            cap = 2 * self._recv.shape[0]
            vals = np.zeros((cap, self._vals.shape[1]), np.uint64)
            vals[:slot] = self._vals
            self._vals = vals
            self._recv = np.concatenate([self._recv, np.zeros(cap - slot, np.int64)])
            self._slot_key = np.concatenate([self._slot_key, np.zeros(cap - slot, np.int64)])
        self._recv[slot] = np.iinfo(np.int64).min  # any row is newer
        self._slot_key[slot] = key
        self._n += 1
        return slot

    def _reindex(self) -> None:
        order = np.argsort(self._slot_key[: self._n], kind="stable")
        self._keys = self._slot_key[: self._n][order]
        self._key_slot = order.astype(np.int64)

    def counts(self) -> dict[str, int]:
        """Interfaces kept, per exporter text."""
        with self._lock:
            return {self._names[e]: k for e, k in self._per_exporter.items()}

    def count(self, exporter: str) -> int:
        """Interfaces kept for ``exporter``."""
        return self.counts().get(exporter, 0)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Per exporter (sorted), its interfaces by ifIndex: every :data:`COUNTER_FIELDS` value as sent,
        plus ``admin_up``/``oper_up`` (bits 0 and 1 of ``if_status``), ``in_packets``/``out_packets``
        (unicast + multicast + broadcast, the supported ones) and ``unsupported`` (the fields the agent
        sent as "unsupported", all ones)."""
        with self._lock:
            n = self._n
            keys, vals, recv = self._slot_key[:n].copy(), self._vals[:n].tolist(), self._recv[:n].tolist()
            names = dict(self._names)
        out: dict[str, list[dict[str, Any]]] = {}
        for i in sorted(range(n), key=lambda i: (names[int(keys[i] >> 32)], int(keys[i] & 0xFFFFFFFF))):
            d = dict(zip(_STORED, vals[i], strict=True))
            d["received_ns"] = recv[i]
            d["admin_up"] = bool(d["if_status"] & 1)
            d["oper_up"] = bool(d["if_status"] & 2)
            for way in ("in", "out"):
                parts = (f"{way}_ucast", f"{way}_mcast", f"{way}_bcast")
                d[f"{way}_packets"] = sum(d[f] for f in parts if supported(f, d[f]))
            d["unsupported"] = [f for f in _WIRE if not supported(f, d[f])]
            out.setdefault(names[int(keys[i] >> 32)], []).append(d)
        return out
