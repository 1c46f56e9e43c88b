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
#: Per counter field: the value that means "not supported by the agent" (all ones of its width).
UNSUPPORTED: dict[str, int] = {name: (1 << (8 * width)) - 1 for name, width in InterfaceCounters.WIRE}


def supported(field: str, value: int) -> bool:
    """Whether ``value`` of counter ``field`` is a value, not the agent's "unsupported" marker (fields
    that are not counters, such as ``if_index``, are always values)."""
    return field not in _MARKED or value != UNSUPPORTED[field]


#: The fields whose all-ones value is the marker (identifiers and status words are not counters).
_MARKED = frozenset(_WIRE) - {"if_index", "if_type", "if_direction", "if_status", "promiscuous"}


class InterfaceTable:
    """The latest counters of every (exporter, ifIndex) seen, bounded (see the module docstring)."""

    def __init__(self, max_per_exporter: int = 4096, max_total: int = 65_536) -> None:
        self.max_per_exporter = max_per_exporter
        self.max_total = max_total
        self._lock = threading.Lock()
        self._rows: dict[str, dict[int, tuple[int, ...]]] = {}  # exporter -> ifIndex -> COUNTER_FIELDS
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def update(self, c: InterfaceCounters, exporters: list[str] | np.ndarray) -> dict[str, int]:
        """Keep the latest row of each (exporter, ifIndex) of ``c``; ``exporters``: the exporter text of
        each row. Returns, per exporter, the rows not kept because the table was full (none: {})."""
        n = len(c)
        if n == 0:
            return {}
        ex = np.asarray(exporters, dtype=object)
        eix = np.unique(ex, return_inverse=True)[1].reshape(-1)
        key = np.stack([eix.astype(np.int64), c.if_index.astype(np.int64)], axis=1)
        _, inv = np.unique(key, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        groups = int(inv.max()) + 1
        # the last row of each (exporter, ifIndex): latest receive time, then the later row of the batch
        rank = np.lexsort((np.arange(n), c.received_ns))
        pos = np.empty(n, np.int64)
        pos[rank] = np.arange(n)
        best = np.full(groups, -1, np.int64)
        np.maximum.at(best, inv, pos)
        last = rank[best]
        sizes = np.bincount(inv, minlength=groups).tolist()
        values = np.stack(
            [getattr(c, f).astype(np.uint64) for f in _WIRE]
            + [c.domain.astype(np.uint64), c.sample_seq.astype(np.uint64)],
            axis=1,
        )[last].tolist()  # Python ints, one list per distinct interface (counter samples are few)
        recv = c.received_ns[last].tolist()
        refused: dict[str, int] = {}
        with self._lock:
            # one Python step per distinct interface of the batch, never per row
            for i, row, when, size in zip(last.tolist(), values, recv, sizes, strict=True):
                e = str(ex[i])
                per = self._rows.get(e)
                old = per.get(row[0]) if per is not None else None  # row[0]: if_index
                if old is None:
                    if (per is not None and len(per) >= self.max_per_exporter) or self._n >= self.max_total:
                        refused[e] = refused.get(e, 0) + size  # every row of that interface in the batch
                        continue
                    if per is None:
                        per = self._rows[e] = {}
                    self._n += 1
                elif when < old[-1]:  # older than the row kept (reordered on the way): keep the newer
                    continue
                per[row[0]] = (*row, when)
        return refused

    def count(self, exporter: str) -> int:
        """Interfaces kept for ``exporter``."""
        with self._lock:
            return len(self._rows.get(exporter, ()))

    def counts(self) -> dict[str, int]:
        """Interfaces kept, per exporter."""
        with self._lock:
            return {e: len(per) for e, per in sorted(self._rows.items())}

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Per exporter (sorted), its interfaces by ifIndex: every :data:`COUNTER_FIELDS` value as sent,
        plus ``admin_up``/``oper_up`` (bits 0 and 1 of ``if_status``), ``in_packets``/``out_packets``
        (unicast + multicast + broadcast, the supported ones) and ``unsupported`` (the fields the agent
        sent as "unsupported", all ones)."""
        with self._lock:
            rows = {e: sorted(per.items()) for e, per in sorted(self._rows.items())}
        out: dict[str, list[dict[str, Any]]] = {}
        for e, items in rows.items():
            lst = []
            for _, vals in items:
                d = dict(zip(COUNTER_FIELDS, vals, strict=True))
                d["admin_up"] = bool(d["if_status"] & 1)
                d["oper_up"] = bool(d["if_status"] & 2)
                for way in ("in", "out"):
                    parts = (f"{way}_ucast", f"{way}_mcast", f"{way}_bcast")
                    d[f"{way}_packets"] = sum(d[f] for f in parts if supported(f, d[f]))
                d["unsupported"] = [f for f in _WIRE if not supported(f, d[f])]
                lst.append(d)
            out[e] = lst
        return out
