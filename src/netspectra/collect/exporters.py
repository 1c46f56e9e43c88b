"""Exporters and their streams (the collector's per-sender state), and the collector's counters.

An *exporter* is an address: the UDP sender of NetFlow/IPFIX datagrams, the agent address inside
an sFlow datagram (sFlow is often relayed; its agent address is the device). A *stream* is what a
sequence number and a template space belong to: exporter, export kind and observation domain (v9
source id, IPFIX observation domain, sFlow sub-agent, v5 engine type/id). Both are numbered densely
so kernels index arrays with them; both are bounded (``max_exporters``, ``max_streams_per_exporter``)
so that spoofed senders cannot grow memory without end — datagrams over a limit are counted
(``over_limit``), not decoded.

:class:`CollectorStats` holds every counter of the decoder, per exporter and overall, built from
:mod:`netspectra.counters` primitives (thread-safe; read as dicts for ``/metrics`` and
``netspectra query exporters``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np

from netspectra.collect.addr import to_text
from netspectra.collect.interfaces import InterfaceTable
from netspectra.collect.records import KIND_NAMES
from netspectra.counters import Counter, LabeledCounter, RateLimitedLog

log = logging.getLogger(__name__)

#: Per-exporter counters, in the order ``netspectra query exporters`` lists them.
EXPORTER_COUNTERS: dict[str, str] = {
    "datagrams": "export datagrams received",
    "bytes": "bytes of those datagrams",
    "records": "flow records decoded (rows; an RFC 5103 biflow may give two)",
    "interface_counters": "sFlow interface counter records decoded",
    "interfaces_over_limit": "sFlow interface counter records not kept: interface table full "
    "(collect.max_interfaces_per_exporter / max_interfaces)",
    "templates": "templates and options templates received (new, refreshed or changed)",
    "template_changes": "templates replaced by a different definition",
    "template_withdrawals": "templates withdrawn (IPFIX)",
    "templates_rejected": "templates refused (invalid, or over a limit)",
    "options_records": "options data records read (sampling rates, boot times)",
    "unknown_template_sets": "data sets that arrived before their template",
    "pending_decoded_sets": "of those, decoded once the template came",
    "pending_dropped_sets": "of those, dropped (template late or never, or pending space full)",
    "sequence_gaps": "sequence discontinuities (each one or more lost export datagrams)",
    "lost_datagrams": "export datagrams lost by the sequence numbers (NetFlow v9, sFlow)",
    "lost_records": "flow records lost by the sequence numbers (NetFlow v5, IPFIX)",
    "sequence_resets": "sequence numbers going backwards (exporter restart or reordering)",
    "decode_errors": "datagrams, sets or samples that could not be decoded (see errors by reason)",
    "records_dropped": "records known lost to a decode error (e.g. a cut NetFlow v5 datagram)",
    "records_without_sampling_rate": "records whose rate came from no export and no per-exporter setting",
    "over_limit": "datagrams not decoded: too many exporters or observation domains",
}


class ExporterRegistry:
    """Dense ids for exporter addresses and streams, bounded (not thread-safe: the decoder's lock)."""

    def __init__(self, max_exporters: int = 10_000, max_streams_per_exporter: int = 256) -> None:
        self.max_exporters = max_exporters
        self.max_streams_per_exporter = max_streams_per_exporter
        self._eid: dict[bytes, int] = {}
        self.addr = np.zeros((16, 16), np.uint8)  # exporter id -> address
        self.texts: list[str] = []
        self._sid: dict[tuple[int, int, int], int] = {}
        self._streams_of: dict[int, int] = {}
        self.stream_exporter = np.zeros(16, np.int32)
        self.stream_kind = np.zeros(16, np.uint8)
        self.stream_domain = np.zeros(16, np.int64)
        self.stream_next = np.full(16, -1, np.int64)  # next expected sequence number
        self.stream_sysinit_ms = np.full(16, -1, np.int64)  # IPFIX systemInitTimeMilliseconds

    @property
    def n_streams(self) -> int:
        return len(self._sid)

    def exporter_ids(self, addrs: np.ndarray) -> np.ndarray:
        """int32 ids of the rows of ``addrs`` (m, 16); -1 where a new exporter is over the limit."""
        m = addrs.shape[0]
        if m == 0:
            return np.zeros(0, np.int32)
        if (addrs == addrs[0]).all():
            return np.full(m, self._one_exporter(addrs[0].tobytes()), np.int32)
        uniq, inv = np.unique(addrs, axis=0, return_inverse=True)
        ids = np.array([self._one_exporter(u.tobytes()) for u in uniq], np.int32)
        return ids[inv.reshape(-1)]

    def _one_exporter(self, key: bytes) -> int:
        eid = self._eid.get(key)
        if eid is not None:
            return eid
        if len(self._eid) >= self.max_exporters:
            return -1
        eid = len(self._eid)
        if eid >= self.addr.shape[0]:
            grown = np.zeros((2 * self.addr.shape[0], 16), np.uint8)
            grown[:eid] = self.addr
            self.addr = grown
        self.addr[eid] = np.frombuffer(key, np.uint8)
        self._eid[key] = eid
        self.texts.append(to_text(key))
        return eid

    def exporter_id(self, address: bytes) -> int:
        """The id of a known exporter address (16 bytes), or -1."""
        return self._eid.get(address, -1)

    def stream_ids(self, eids: np.ndarray, kinds: np.ndarray, domains: np.ndarray) -> np.ndarray:
        """int32 stream ids; -1 where the exporter is -1, the kind 0, or a new stream over the limit."""
        m = eids.shape[0]
        out = np.full(m, -1, np.int32)
        ok = (eids >= 0) & (kinds > 0)
        if not ok.any():
            return out
        key = (
            (eids.astype(np.int64) << 40)
            | (kinds.astype(np.int64) << 32)
            | (domains.astype(np.int64) & 0xFFFFFFFF)
        )
        sel = np.flatnonzero(ok)
        k = key[sel]
        if (k == k[0]).all():
            out[sel] = self._one_stream(int(k[0]))
            return out
        uniq, inv = np.unique(k, return_inverse=True)
        ids = np.array([self._one_stream(int(u)) for u in uniq], np.int32)
        out[sel] = ids[inv]
        return out

    def _one_stream(self, key: int) -> int:
        t = (key >> 40, (key >> 32) & 0xFF, key & 0xFFFFFFFF)
        sid = self._sid.get(t)
        if sid is not None:
            return sid
        eid = t[0]
        if self._streams_of.get(eid, 0) >= self.max_streams_per_exporter:
            return -1
        sid = len(self._sid)
        if sid >= self.stream_exporter.shape[0]:
            cap = 2 * self.stream_exporter.shape[0]
            for name, fill in (
                ("stream_exporter", 0),
                ("stream_kind", 0),
                ("stream_domain", 0),
                ("stream_next", -1),
                ("stream_sysinit_ms", -1),
            ):
                old = getattr(self, name)
                new = np.full(cap, fill, old.dtype)
                new[: old.shape[0]] = old
                setattr(self, name, new)
        self.stream_exporter[sid] = eid
        self.stream_kind[sid] = t[1]
        self.stream_domain[sid] = t[2]
        self._sid[t] = sid
        self._streams_of[eid] = self._streams_of.get(eid, 0) + 1
        return sid

    def stream_label(self, sid: int) -> str:
        """``exporter/kind/domain`` of a stream, for logs."""
        eid = int(self.stream_exporter[sid])
        kind = KIND_NAMES.get(int(self.stream_kind[sid]), "?")
        return f"{self.texts[eid]}/{kind}/{int(self.stream_domain[sid])}"


class CollectorStats:
    """Every counter of the decoder: per exporter (:data:`EXPORTER_COUNTERS`), overall, by reason.

    Thread-safe (each family has its own lock); :meth:`as_dict` and :meth:`exporters` are
    consistent per exporter only to the extent of a batch (counters are added per batch).
    """

    def __init__(self) -> None:
        self.per_exporter: dict[str, LabeledCounter] = {name: LabeledCounter() for name in EXPORTER_COUNTERS}
        self.errors = LabeledCounter()  # decode errors by reason, all exporters
        self.exporters_over_limit = Counter()  # datagrams of exporters beyond max_exporters
        self._lock = threading.Lock()
        self._last_seen: dict[str, int] = {}
        self._kinds: dict[str, set[str]] = {}
        self._rates: dict[str, dict[int, int]] = {}
        self._rate_sources: dict[str, dict[str, int]] = {}
        self._errlog = RateLimitedLog(log, 30.0)
        self._missing_logged: set[str] = set()
        #: The latest sFlow interface counters (the decoder's table; None: not kept).
        self.interfaces: InterfaceTable | None = None

    def add(self, exporter: str, name: str, n: int) -> None:
        if n:
            self.per_exporter[name].inc(exporter, n)

    def error(self, exporter: str, reason: str, n: int = 1, detail: str = "") -> None:
        """Count ``n`` decode errors of ``reason`` for ``exporter`` and log (rate-limited)."""
        if not n:
            return
        self.per_exporter["decode_errors"].inc(exporter, n)
        self.errors.inc(reason, n)
        self._errlog.log(
            logging.WARNING,
            "flow export from %s: %d x %s%s",
            exporter,
            n,
            reason,
            f" ({detail})" if detail else "",
        )

    def seen(self, exporter: str, when_ns: int, kind: str) -> None:
        """Note that ``exporter`` sent a datagram of ``kind`` received at ``when_ns``."""
        with self._lock:
            new = exporter not in self._last_seen
            if new or when_ns > self._last_seen[exporter]:
                self._last_seen[exporter] = when_ns
            self._kinds.setdefault(exporter, set()).add(kind)
        if new:  # every counter of a new exporter appears at 0 (dashboards see each one)
            for name in EXPORTER_COUNTERS:
                self.per_exporter[name].touch(exporter)

    def rates(self, exporter: str, rate_counts: dict[int, int], source_counts: dict[str, int]) -> None:
        """Record how many records of ``exporter`` had each sampling rate, and from which source."""
        with self._lock:
            seen = self._rates.setdefault(exporter, {})
            for r, c in rate_counts.items():
                if r in seen or len(seen) < 64:  # bounded: a hostile exporter may send any rate
                    seen[r] = seen.get(r, 0) + c
            src = self._rate_sources.setdefault(exporter, {})
            for s, c in source_counts.items():
                src[s] = src.get(s, 0) + c

    def missing_rate(self, exporter: str, n: int, fallback: int) -> None:
        """Count records without a known sampling rate; log once per exporter."""
        self.add(exporter, "records_without_sampling_rate", n)
        with self._lock:
            first = exporter not in self._missing_logged
            self._missing_logged.add(exporter)
        if first:
            what = (
                f"using collect.default_sampling_rate ({fallback})" if fallback else "leaving it unknown (0)"
            )
            log.warning(
                "exporter %s sends records without a sampling rate (none in the records, no options data, no "
                "collect.exporter_sampling_rates entry): %s; counted in records_without_sampling_rate",
                exporter,
                what,
            )

    def exporters(self) -> dict[str, dict[str, Any]]:
        """Per exporter: every counter, ``last_seen_ns``, ``kinds``, ``sampling_rates`` (rate ->
        records), ``sampling_sources`` (source -> records) and ``interfaces`` (interfaces whose sFlow
        counters are kept)."""
        counters = {name: lc.as_dict() for name, lc in self.per_exporter.items()}
        kept = self.interfaces.counts() if self.interfaces is not None else {}
        with self._lock:
            names = sorted(self._last_seen)
            out: dict[str, dict[str, Any]] = {}
            for e in names:
                row: dict[str, Any] = {name: counters[name].get(e, 0) for name in EXPORTER_COUNTERS}
                row["last_seen_ns"] = self._last_seen[e]
                row["kinds"] = sorted(self._kinds.get(e, ()))
                row["sampling_rates"] = dict(sorted(self._rates.get(e, {}).items()))
                row["sampling_sources"] = dict(sorted(self._rate_sources.get(e, {}).items()))
                row["interfaces"] = kept.get(e, 0)
                out[e] = row
        return out

    def as_dict(self) -> dict[str, Any]:
        """Totals over exporters, errors by reason, the per-exporter view, and ``interfaces``: per
        exporter, the latest counters of each interface (:meth:`.InterfaceTable.snapshot`)."""
        per = self.exporters()
        totals = {name: sum(int(r[name]) for r in per.values()) for name in EXPORTER_COUNTERS}
        totals["interfaces"] = sum(int(r["interfaces"]) for r in per.values())
        return {
            "totals": totals,
            "errors": self.errors.as_dict(),
            "exporters_over_limit": self.exporters_over_limit.value,
            "exporters": per,
            "interfaces": self.interfaces.snapshot() if self.interfaces is not None else {},
            "collected_at_ns": time.time_ns(),
        }
