"""The flow-export decoder: batches of datagrams in, :class:`FlowRecords` and interface counters out.

:class:`FlowDecoder` owns the state a collector keeps between datagrams — exporters and their
streams (:mod:`.exporters`), templates (:mod:`.templates`), data sets waiting for a template
(:mod:`.pending`), options-data sampling rates (:mod:`.sampling`), sequence numbers — and runs the
kernels over each batch:

1. :func:`~.nf_kernels.scan_datagrams` reads every header and lists the v9/IPFIX sets;
2. exporters and streams are numbered (vectorised; new ones are rare);
3. :func:`~.nf_kernels.decode_v5`, then :func:`~.nf_kernels.decode_sets` (stopping at each template
   set or options data set, which Python applies before resuming), then
   :func:`~.sflow_kernels.decode_sflow`;
4. :func:`~.nf_kernels.check_sequences`, the sampling-rate precedence, the counters.

Python runs per batch, per template and per options record — never per flow record. Rows come out
grouped by protocol (v5, then v9/IPFIX, then sFlow), in datagram order within each; data sets that
waited for their template come out in the batch that brought the template.

Errors never raise: every datagram, set or sample that cannot be decoded is counted per exporter and
by reason in :attr:`FlowDecoder.stats` (and logged, rate-limited); what was decoded before the fault
in the same datagram is kept.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from netspectra.collect import nf_kernels as nk
from netspectra.collect.exporters import CollectorStats, ExporterRegistry
from netspectra.collect.interfaces import InterfaceTable
from netspectra.collect.pending import PendingSet, PendingSets
from netspectra.collect.records import (
    IPFIX,
    KIND_NAMES,
    NETFLOW5,
    RATE_DEFAULT,
    RATE_SOURCE_NAMES,
    RATE_UNKNOWN,
    SFLOW5,
    DatagramBatch,
    FlowRecords,
    InterfaceCounters,
)
from netspectra.collect.sampling import SamplingRates
from netspectra.collect.sflow_kernels import N_COUNTERS, decode_sflow
from netspectra.collect.templates import TemplateCache, parse_options_data, parse_template_set
from netspectra.config.collect import CollectConfig

log = logging.getLogger(__name__)

#: Decode-error reasons by datagram status.
DG_ERRORS: dict[int, str] = {
    nk.DG_TRUNCATED: "datagram_truncated",
    nk.DG_BAD_VERSION: "unknown_version",
    nk.DG_BAD_SET: "set_length_invalid",
    nk.DG_BAD_V5_COUNT: "netflow5_count_invalid",
    nk.DG_BAD_AGENT: "sflow_agent_address_invalid",
    nk.DG_BAD_SAMPLE: "sflow_sample_invalid",
}

# columns of the kernels' row outputs, in their argument order (header_buf goes after hdr_linktype)
_ROW_COLS: tuple[str, ...] = (
    "src_ip", "dst_ip", "ip_version", "src_port", "dst_port", "protocol", "tcp_flags", "icmp_type",
    "icmp_code", "packets", "bytes", "flow_start_ns", "flow_end_ns", "received_ns", "in_if", "out_if",
    "src_vlan", "dst_vlan", "sampling_rate", "sampling_source", "hdr_off", "hdr_len", "hdr_wirelen",
    "hdr_linktype",
)  # fmt: skip
_TAIL_COLS: tuple[str, ...] = ("export_kind", "domain")
#: Bytes of template sets remembered for the refresh fast path (all forgotten when full).
_KNOWN_SETS_BYTES = 4 << 20


def _readonly(a: np.ndarray, dtype: type) -> np.ndarray:
    v = np.ascontiguousarray(a, dtype).view()
    v.flags.writeable = False
    return v


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """What one batch of datagrams gave: flow records and sFlow interface counters."""

    records: FlowRecords
    interface_counters: InterfaceCounters


class _Rows:
    """Growable output columns for the kernels (and the two internal ones: stream, sampler id)."""

    def __init__(self, cap: int, hcap: int) -> None:
        self.cols: dict[str, np.ndarray] = {}
        for c in (*_ROW_COLS, *_TAIL_COLS):
            dt = FlowRecords.DTYPES[c]
            self.cols[c] = np.empty((cap, 16) if c in FlowRecords.ADDRESS_COLUMNS else cap, dt)
        self.row_stream = np.empty(cap, np.int32)
        self.row_sampler = np.empty(cap, np.int64)
        self.header_buf = np.empty(hcap, np.uint8)
        self.j = 0  # rows written
        self.h = 0  # header bytes written
        self.resolved = 0  # rows whose sampling rate is resolved

    @property
    def cap(self) -> int:
        return int(self.row_stream.shape[0])

    def reserve(self, rows: int, hdr: int) -> None:
        """Make room for ``rows`` more rows and ``hdr`` more header bytes."""
        need = self.j + rows
        if need > self.cap:
            new = max(need, 2 * self.cap)
            for c, a in self.cols.items():
                g = np.empty((new, *a.shape[1:]), a.dtype)
                g[: self.j] = a[: self.j]
                self.cols[c] = g
            for name in ("row_stream", "row_sampler"):
                a = getattr(self, name)
                g = np.empty(new, a.dtype)
                g[: self.j] = a[: self.j]
                setattr(self, name, g)
        hneed = self.h + hdr
        if hneed > self.header_buf.shape[0]:
            g = np.empty(max(hneed, 2 * self.header_buf.shape[0]), np.uint8)
            g[: self.h] = self.header_buf[: self.h]
            self.header_buf = g

    def args(self, header: bool) -> tuple[np.ndarray, ...]:
        head = tuple(self.cols[c] for c in _ROW_COLS)
        tail = (self.cols["export_kind"], self.cols["domain"], self.row_stream, self.row_sampler)
        return (*head, self.header_buf, *tail) if header else (*head, *tail)


class _SetContext:
    """The sets to decode and the per-datagram context they need (a batch, or replayed pending sets)."""

    __slots__ = (
        "buf", "domain", "export_ns", "exporter", "kind", "received_ns", "set_dg", "set_id", "set_len",
        "set_off", "stream", "uptime_ms",
    )  # fmt: skip

    def __init__(self, **kw: np.ndarray) -> None:
        for k, v in kw.items():
            setattr(self, k, v)

    @property
    def nsets(self) -> int:
        return int(self.set_off.shape[0])


class FlowDecoder:
    """Decode batches of export datagrams (see the module docstring).

    ``collect`` is a :class:`~netspectra.config.collect.CollectConfig` (defaults when None).
    :meth:`decode` may be called from any thread; calls are serialised (the state is shared: one
    exporter may reach several listeners). :attr:`stats` is readable at any time.
    """

    def __init__(self, collect: CollectConfig | None = None, *, stats: CollectorStats | None = None) -> None:
        cfg = collect if collect is not None else CollectConfig()
        self.config = cfg
        self.stats = stats or CollectorStats()
        self.registry = ExporterRegistry(cfg.max_exporters, cfg.max_streams_per_exporter)
        self.templates = TemplateCache(cfg.max_templates, cfg.max_templates_per_exporter)
        self.pending = PendingSets(
            cfg.pending_max_age.total_seconds(), cfg.pending_max_bytes, cfg.pending_max_bytes_per_exporter
        )
        self.sampling = SamplingRates(cfg.default_sampling_rate, cfg.exporter_sampling_rates)
        #: The latest sFlow counters per (exporter, ifIndex), also reachable as ``stats.interfaces``.
        self.interfaces = InterfaceTable(cfg.max_interfaces_per_exporter, cfg.max_interfaces)
        self.stats.interfaces = self.interfaces
        self._iflimit_logged: set[str] = set()
        self._lock = threading.Lock()
        self._templog_ok: set[tuple[int, int]] = set()  # (stream, template id) logged as refused
        self._known_sets: dict[int, dict[bytes, int]] = {}  # stream -> template set bytes -> templates
        self._known_bytes = 0

    # -- public ---------------------------------------------------------------------------------

    def decode(self, batch: DatagramBatch) -> DecodeResult:
        """Decode one batch; never raises on bad input (everything is counted in :attr:`stats`)."""
        with self._lock:
            return self._decode(batch)

    def expire(self, now_ns: int) -> int:
        """Drop (and count) data sets that waited for their template longer than allowed; returns how
        many. :meth:`decode` does this with its batch's receive time; call it when idle."""
        with self._lock:
            return self._drop_pending(self.pending.expire(now_ns))

    def close(self) -> int:
        """Count every data set still waiting for its template as dropped; returns how many."""
        with self._lock:
            return self._drop_pending(self.pending.drain())

    # -- the batch ------------------------------------------------------------------------------

    def _decode(self, b: DatagramBatch) -> DecodeResult:
        n = len(b)
        if n == 0:
            return DecodeResult(FlowRecords.empty(0), InterfaceCounters.empty(0))
        # read-only views: numba compiles one version of a kernel per array writability, so inputs
        # from a socket (writable) and from a file or bytes (read-only) share the compiled code
        buf = _readonly(b.buf, np.uint8)
        dg_off = _readonly(b.off, np.int64)
        dg_len = _readonly(b.length, np.uint32)
        recv = _readonly(b.received_ns, np.int64)
        sender = _readonly(b.sender, np.uint8)
        total = int(dg_len.sum(dtype=np.int64))
        kind = np.empty(n, np.uint8)
        status = np.empty(n, np.uint8)
        domain = np.empty(n, np.int64)
        seq = np.empty(n, np.int64)
        count = np.empty(n, np.int64)
        export_ns = np.empty(n, np.int64)
        uptime = np.empty(n, np.int64)
        aux = np.empty(n, np.int64)
        addr = np.empty((n, 16), np.uint8)
        body = np.empty(n, np.int64)
        end = np.empty(n, np.int64)
        cap_sets = total // 4 + n
        set_off = np.empty(cap_sets, np.int64)
        set_len = np.empty(cap_sets, np.int64)
        set_dg = np.empty(cap_sets, np.int32)
        set_id = np.empty(cap_sets, np.int64)
        # fmt: off
        nsets = nk.scan_datagrams(buf, dg_off, dg_len, recv, sender, n, kind, status, domain, seq, count,
                                  export_ns, uptime, aux, addr, body, end, set_off, set_len, set_dg, set_id)
        # fmt: on
        reg = self.registry
        eids = reg.exporter_ids(addr)
        streams = reg.stream_ids(eids, kind, domain)
        over = (eids < 0) | ((kind > 0) & (streams < 0))
        if over.any():
            status[over] = nk.DG_OVER_LIMIT
            self.stats.exporters_over_limit.inc(int((eids < 0).sum()))
        rows = _Rows(max(64, total // 40 + 1), max(total, 64))

        # NetFlow v5
        v5 = np.flatnonzero((kind == NETFLOW5) & (status == nk.DG_OK)).astype(np.int64)
        if v5.size:
            rows.reserve(int(count[v5].sum()), 0)
            # fmt: off
            rows.j = nk.decode_v5(buf, v5, body, count, export_ns, uptime, aux, recv, domain, streams,
                                  *rows.args(header=False), rows.j)
            # fmt: on

        # NetFlow v9 / IPFIX
        nrec = np.where(kind == NETFLOW5, count, 0)
        if nsets:
            keep = streams[set_dg[:nsets]] >= 0
            sel = np.flatnonzero(keep)
            ctx = _SetContext(
                buf=buf, set_off=set_off[sel], set_len=set_len[sel], set_dg=set_dg[sel], set_id=set_id[sel],
                stream=streams, kind=kind, export_ns=export_ns, uptime_ms=uptime, received_ns=recv,
                domain=domain, exporter=eids,
            )  # fmt: skip
            set_status, set_nrec = self._run_sets(ctx, rows, from_pending=False)
            # a datagram's data records (what the IPFIX sequence counts); -1 if a set was not decodable
            per_dg = np.bincount(ctx.set_dg, weights=set_nrec, minlength=n).astype(np.int64)
            unknown = np.bincount(
                ctx.set_dg, weights=(set_status == nk.SET_UNKNOWN_TEMPLATE), minlength=n
            ).astype(np.int64)
            nrec = np.where(kind == IPFIX, np.where(unknown > 0, -1, per_dg), nrec)

        # sFlow
        counters = InterfaceCounters.empty(0)
        sf = np.flatnonzero((kind == SFLOW5) & (status == nk.DG_OK)).astype(np.int64)
        if sf.size:
            sbytes = int((end[sf] - body[sf]).sum())
            rows.reserve(sbytes // 40 + 1, sbytes)
            cap_c = sbytes // 96 + 1
            c_dg = np.empty(cap_c, np.int64)
            c_seq = np.empty(cap_c, np.uint32)
            c_val = np.empty((cap_c, N_COUNTERS), np.uint64)
            nsamples = np.zeros(n, np.int64)
            # fmt: off
            rows.j, rows.h, nc = decode_sflow(buf, sf, body, end, count, recv, domain, streams, status,
                                               nsamples, *rows.args(header=True), c_dg, c_seq, c_val,
                                               rows.j, rows.h)
            # fmt: on
            if nc:
                counters = self._counters(c_dg[:nc], c_seq[:nc], c_val[:nc], addr, domain, recv)
                c_eid = eids[c_dg[:nc]]
                for e, c in zip(*np.unique(c_eid, return_counts=True), strict=True):
                    self.stats.add(reg.texts[int(e)], "interface_counters", int(c))
                for e, c in self.interfaces.update(counters, c_eid, reg.texts).items():
                    self.stats.add(e, "interfaces_over_limit", c)
                    if e not in self._iflimit_logged:
                        self._iflimit_logged.add(e)
                        log.warning(
                            "exporter %s: sFlow counters of more interfaces than the table keeps "
                            "(collect.max_interfaces_per_exporter %d, collect.max_interfaces %d): not kept, "
                            "counted in interfaces_over_limit",
                            e,
                            self.interfaces.max_per_exporter,
                            self.interfaces.max_total,
                        )

        # sequence numbers
        seqd = np.flatnonzero((status == nk.DG_OK) | (status == nk.DG_BAD_SET) | (status == nk.DG_BAD_SAMPLE))
        seqd = seqd[streams[seqd] >= 0].astype(np.int64)
        lost = np.zeros(n, np.int64)
        event = np.zeros(n, np.uint8)
        if seqd.size:
            nk.check_sequences(seqd, streams, kind, seq, nrec, reg.stream_next, lost, event)

        self._resolve_rates(rows, rows.j)
        records, row_eid = self._finish(rows)
        self._count_batch(n, eids, kind, status, count, dg_len, recv, lost, event, records, row_eid)
        now = int(recv.max())
        self._drop_pending(self.pending.expire(now))
        return DecodeResult(records, counters)

    # -- v9 / IPFIX sets ------------------------------------------------------------------------

    def _run_sets(
        self, ctx: _SetContext, rows: _Rows, *, from_pending: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decode every set of ``ctx`` into ``rows``, applying template and options sets in order."""
        ns = ctx.nsets
        set_status = np.zeros(ns, np.uint8)
        set_nrec = np.zeros(ns, np.int64)
        set_slot = np.full(ns, -1, np.int64)
        reg = self.registry
        if not from_pending:
            self._mark_refreshes(ctx, set_status)
        s = 0
        while s < ns:
            t = self.templates
            s0 = s
            # fmt: off
            s, rows.j, rows.h, reason = nk.decode_sets(
                ctx.buf, ctx.set_off, ctx.set_len, ctx.set_dg, ctx.set_id, s, ns, ctx.stream, ctx.kind,
                ctx.export_ns, ctx.uptime_ms, ctx.received_ns, ctx.domain, reg.stream_sysinit_ms,
                t.ht_keys, t.ht_vals, t.t_kind, t.t_len, t.t_n, t.t_min, t.t_flags,
                set_status, set_nrec, set_slot, *rows.args(header=True), rows.j, rows.h)
            # fmt: on
            self._park_unknown(ctx, s0, s, set_status, from_pending)
            if reason == nk.STOP_DONE:
                break
            if reason == nk.STOP_FULL:
                ln = int(ctx.set_len[s])
                rows.reserve(2 * ln, ln)
                continue
            if reason == nk.STOP_CONTROL:
                self._apply_templates(ctx, s, rows)
            else:  # STOP_OPTIONS: the rates change from here on; rows before keep the old ones
                self._resolve_rates(rows, rows.j)
                set_nrec[s] = self._apply_options(ctx, s, int(set_slot[s]))
            s += 1
        self._count_sets(ctx, set_status, from_pending)
        return set_status, set_nrec

    def _mark_refreshes(self, ctx: _SetContext, set_status: np.ndarray) -> None:
        """Mark the template sets byte-identical to one already applied to the same stream (exporters
        repeat their templates every few datagrams or seconds): the kernel skips them, and only their
        templates are counted — no parsing, no stop of the kernel."""
        if not self._known_sets:
            return
        ctl = np.flatnonzero(ctx.set_id < 256)
        if not ctl.size:
            return
        texts = self.registry.texts
        for s in ctl.tolist():
            i = int(ctx.set_dg[s])
            known = self._known_sets.get(int(ctx.stream[i]))
            if not known:
                continue
            off, ln = int(ctx.set_off[s]), int(ctx.set_len[s])
            n = known.get(ctx.buf[off : off + ln].tobytes())
            if n is not None:
                set_status[s] = nk.SET_REFRESH
                self.stats.add(texts[int(ctx.exporter[i])], "templates", n)

    def _remember_set(self, stream: int, data: bytes, n_templates: int) -> None:
        """Remember a template set that was applied whole (for :meth:`_mark_refreshes`); bounded."""
        if self._known_bytes + len(data) > _KNOWN_SETS_BYTES:
            self._known_sets.clear()
            self._known_bytes = 0
        known = self._known_sets.setdefault(stream, {})
        if data not in known:
            known[data] = n_templates
            self._known_bytes += len(data)

    def _forget_sets(self, stream: int) -> None:
        """A template of the stream was withdrawn or replaced: its remembered sets mean something else."""
        known = self._known_sets.pop(stream, None)
        if known:
            self._known_bytes -= sum(len(k) for k in known)

    def _park_unknown(
        self, ctx: _SetContext, s0: int, s1: int, set_status: np.ndarray, from_pending: bool
    ) -> None:
        if not (set_status[s0:s1] == nk.SET_UNKNOWN_TEMPLATE).any():
            return
        idx = s0 + np.flatnonzero(set_status[s0:s1] == nk.SET_UNKNOWN_TEMPLATE)
        for s in idx.tolist():
            i = int(ctx.set_dg[s])
            st = int(ctx.stream[i])
            eid = int(ctx.exporter[i])
            off, ln = int(ctx.set_off[s]), int(ctx.set_len[s])
            item = PendingSet(
                data=ctx.buf[off : off + ln].tobytes(), exporter=eid, stream=st,
                template_id=int(ctx.set_id[s]),
                kind=int(ctx.kind[i]), domain=int(ctx.domain[i]), export_ns=int(ctx.export_ns[i]),
                uptime_ms=int(ctx.uptime_ms[i]), received_ns=int(ctx.received_ns[i]),
            )  # fmt: skip
            if from_pending or not self.pending.add(item):
                self.stats.add(self.registry.texts[eid], "pending_dropped_sets", 1)

    def _apply_templates(self, ctx: _SetContext, s: int, rows: _Rows) -> None:
        i = int(ctx.set_dg[s])
        st = int(ctx.stream[i])
        eid = int(ctx.exporter[i])
        exporter = self.registry.texts[eid]
        version = 10 if int(ctx.kind[i]) == IPFIX else 9
        sid = int(ctx.set_id[s])
        off, ln = int(ctx.set_off[s]), int(ctx.set_len[s])
        raw = ctx.buf[off : off + ln].tobytes()
        records, err = parse_template_set(raw[4:], version, sid)
        whole = err is None  # every record applied as given: the set may be skipped when repeated
        if err:
            self.stats.error(exporter, "template_set_invalid", 1, err)
        arrived: list[int] = []
        for rec in records:
            if not rec.fields:
                if rec.template_id == sid:  # RFC 7011 §8.1: withdraw all (options) templates
                    k = self.templates.withdraw_all(st, options=rec.options)
                else:
                    k = int(self.templates.withdraw(st, rec.template_id))
                self.stats.add(exporter, "template_withdrawals", k)
                self._forget_sets(st)
                whole = False
                continue
            outcome = self.templates.add(st, eid, rec, version)
            if outcome in ("added", "refreshed", "changed"):
                self.stats.add(exporter, "templates", 1)
                if outcome == "changed":
                    self.stats.add(exporter, "template_changes", 1)
                    self._forget_sets(st)
                arrived.append(rec.template_id)
                continue
            whole = False
            self.stats.add(exporter, "templates_rejected", 1)
            if outcome.startswith("invalid"):
                self.stats.error(exporter, "template_invalid", 1, f"template {rec.template_id}: {outcome}")
            elif (st, rec.template_id) not in self._templog_ok and len(self._templog_ok) < 4096:
                self._templog_ok.add((st, rec.template_id))
                log.warning(
                    "exporter %s: template %d refused: %d templates kept for this exporter, %d overall "
                    "(collect.max_templates_per_exporter, collect.max_templates); counted in "
                    "templates_rejected",
                    exporter,
                    rec.template_id,
                    self.templates.count_for(eid),
                    len(self.templates),
                )
        if whole and records:
            self._remember_set(st, raw, len(records))
        for tid in arrived:
            if self.pending.has(st, tid):
                self._replay(self.pending.take(st, tid), rows)

    def _replay(self, items: list[PendingSet], rows: _Rows) -> None:
        """Decode data sets that waited for the template that just arrived."""
        m = len(items)
        lens = np.array([len(p.data) for p in items], np.int64)
        off = np.zeros(m, np.int64)
        off[1:] = np.cumsum(lens[:-1])
        ctx = _SetContext(
            buf=np.frombuffer(b"".join(p.data for p in items), np.uint8),
            set_off=off, set_len=lens, set_dg=np.arange(m, dtype=np.int32),
            set_id=np.array([p.template_id for p in items], np.int64),
            stream=np.array([p.stream for p in items], np.int32),
            kind=np.array([p.kind for p in items], np.uint8),
            export_ns=np.array([p.export_ns for p in items], np.int64),
            uptime_ms=np.array([p.uptime_ms for p in items], np.int64),
            received_ns=np.array([p.received_ns for p in items], np.int64),
            domain=np.array([p.domain for p in items], np.int64),
            exporter=np.array([p.exporter for p in items], np.int32),
        )  # fmt: skip
        rows.reserve(0, int(lens.sum()))
        self._run_sets(ctx, rows, from_pending=True)

    def _apply_options(self, ctx: _SetContext, s: int, slot: int) -> int:
        """Read an options data set (sampling rates, boot time); returns its record count."""
        i = int(ctx.set_dg[s])
        st = int(ctx.stream[i])
        exporter = self.registry.texts[int(ctx.exporter[i])]
        version = 10 if int(ctx.kind[i]) == IPFIX else 9
        off, ln = int(ctx.set_off[s]), int(ctx.set_len[s])
        values, nrec, complete = parse_options_data(
            ctx.buf[off + 4 : off + ln].tobytes(), self.templates.fields(slot), version
        )
        if not complete:
            self.stats.error(exporter, "options_data_invalid", 1, f"set {int(ctx.set_id[s])}")
        for v in values:
            if v.rate > 0:
                self.sampling.set_options_rate(st, v.sampler_id, v.rate)
            if v.system_init_ms >= 0:
                self.registry.stream_sysinit_ms[st] = v.system_init_ms
        self.stats.add(exporter, "options_records", nrec)
        return nrec

    def _count_sets(self, ctx: _SetContext, set_status: np.ndarray, from_pending: bool) -> None:
        if not ctx.nsets:
            return
        eid_of_set = ctx.exporter[ctx.set_dg]
        texts = self.registry.texts
        bad = set_status == nk.SET_MALFORMED
        if bad.any():
            for e, c in zip(*np.unique(eid_of_set[bad], return_counts=True), strict=True):
                self.stats.error(texts[int(e)], "data_set_invalid", int(c), "a record overruns its set")
        decoded = set_status == nk.SET_OK
        if from_pending:
            for e, c in zip(*np.unique(eid_of_set[decoded | bad], return_counts=True), strict=True):
                self.stats.add(texts[int(e)], "pending_decoded_sets", int(c))
        else:
            unk = set_status == nk.SET_UNKNOWN_TEMPLATE
            if unk.any():
                for e, c in zip(*np.unique(eid_of_set[unk], return_counts=True), strict=True):
                    self.stats.add(texts[int(e)], "unknown_template_sets", int(c))

    def _drop_pending(self, items: list[PendingSet]) -> int:
        for p in items:
            self.stats.add(self.registry.texts[p.exporter], "pending_dropped_sets", 1)
        return len(items)

    # -- rows -----------------------------------------------------------------------------------

    def _resolve_rates(self, rows: _Rows, upto: int) -> None:
        a, b = rows.resolved, upto
        if b > a:
            self.sampling.resolve(
                rows.cols["sampling_rate"][a:b],
                rows.cols["sampling_source"][a:b],
                rows.row_stream[a:b],
                rows.row_sampler[a:b],
                self.registry,
            )
            rows.resolved = b

    def _finish(self, rows: _Rows) -> tuple[FlowRecords, np.ndarray]:
        """The records, and the exporter id of each row."""
        j = rows.j
        reg = self.registry
        row_eid = reg.stream_exporter[rows.row_stream[:j]]
        if j and row_eid.min() == row_eid.max():  # one exporter (the usual batch): no gather
            exporter = np.empty((j, 16), np.uint8)
            exporter[:] = reg.addr[row_eid[0]]
        else:
            exporter = reg.addr[row_eid]
        cols = {c: rows.cols[c][:j] for c in (*_ROW_COLS, *_TAIL_COLS)}
        return FlowRecords(exporter=exporter, header_buf=rows.header_buf[: rows.h], **cols), row_eid

    def _counters(
        self,
        c_dg: np.ndarray,
        c_seq: np.ndarray,
        c_val: np.ndarray,
        addr: np.ndarray,
        domain: np.ndarray,
        recv: np.ndarray,
    ) -> InterfaceCounters:
        cols: dict[str, np.ndarray] = {
            "exporter": addr[c_dg],
            "domain": domain[c_dg].astype(np.uint32),
            "received_ns": recv[c_dg],
            "sample_seq": c_seq,
        }
        for f, (name, width) in enumerate(InterfaceCounters.WIRE):
            cols[name] = c_val[:, f].astype(np.uint64 if width == 8 else np.uint32)
        return InterfaceCounters(**cols)

    def _count_batch(
        self,
        n: int,
        eids: np.ndarray,
        kind: np.ndarray,
        status: np.ndarray,
        count: np.ndarray,
        dg_len: np.ndarray,
        recv: np.ndarray,
        lost: np.ndarray,
        event: np.ndarray,
        records: FlowRecords,
        row_eid: np.ndarray,
    ) -> None:
        stats = self.stats
        texts = self.registry.texts
        known = eids >= 0
        e0 = int(eids[0])
        if e0 >= 0 and bool((eids == e0).all()):  # the usual batch: one exporter
            ex = texts[e0]
            for k in np.unique(kind).tolist():
                stats.seen(ex, int(recv.max()), KIND_NAMES.get(k, "unknown"))
            v9sf = (kind == 2) | (kind == SFLOW5)
            stats.add(ex, "datagrams", n)
            stats.add(ex, "bytes", int(dg_len.sum(dtype=np.int64)))
            stats.add(ex, "sequence_gaps", int((event == 2).sum()))
            stats.add(ex, "lost_datagrams", int(lost[v9sf].sum()))
            stats.add(ex, "lost_records", int(lost[~v9sf].sum()))
            stats.add(ex, "sequence_resets", int((event == 3).sum()))
            stats.add(ex, "over_limit", int((status == nk.DG_OVER_LIMIT).sum()))
            ne = e0 + 1
        else:
            ue = np.unique(eids[known])
            if not ue.size:
                return
            e_known = eids[known]
            ne = int(ue.max()) + 1
            dgs = np.bincount(e_known, minlength=ne)
            nbytes = np.bincount(e_known, weights=dg_len[known], minlength=ne)
            last = np.full(ne, np.iinfo(np.int64).min, np.int64)
            np.maximum.at(last, e_known, recv[known])
            v9sf = (kind == 2) | (kind == SFLOW5)
            lost_dg = np.bincount(e_known, weights=np.where(v9sf, lost, 0)[known], minlength=ne)
            lost_rec = np.bincount(e_known, weights=np.where(v9sf, 0, lost)[known], minlength=ne)
            gaps = np.bincount(e_known, weights=(event == 2)[known], minlength=ne)
            resets = np.bincount(e_known, weights=(event == 3)[known], minlength=ne)
            over = np.bincount(e_known, weights=(status == nk.DG_OVER_LIMIT)[known], minlength=ne)
            kinds_of: dict[int, set[str]] = {int(e): set() for e in ue}
            for e, k in set(zip(e_known.tolist(), kind[known].tolist(), strict=True)):
                kinds_of[e].add(KIND_NAMES.get(k, "unknown"))
            for e in ue.tolist():
                ex = texts[e]
                for k in sorted(kinds_of[e]):
                    stats.seen(ex, int(last[e]), k)
                stats.add(ex, "datagrams", int(dgs[e]))
                stats.add(ex, "bytes", int(nbytes[e]))
                stats.add(ex, "sequence_gaps", int(gaps[e]))
                stats.add(ex, "lost_datagrams", int(lost_dg[e]))
                stats.add(ex, "lost_records", int(lost_rec[e]))
                stats.add(ex, "sequence_resets", int(resets[e]))
                stats.add(ex, "over_limit", int(over[e]))
        # decode errors by datagram status
        errs = known & (status != nk.DG_OK) & (status != nk.DG_OVER_LIMIT)
        if errs.any():
            pairs, counts = np.unique(
                np.stack([eids[errs], status[errs].astype(np.int32)], 1), axis=0, return_counts=True
            )
            for (e, st), c in zip(pairs.tolist(), counts.tolist(), strict=True):
                stats.error(texts[e], DG_ERRORS.get(st, f"status_{st}"), c)
            # a cut v5 datagram: its header says how many records were lost
            bad5 = errs & (status == nk.DG_BAD_V5_COUNT) & (count > 0) & (count <= 30)
            if bad5.any():
                w = np.bincount(eids[bad5], weights=count[bad5], minlength=ne)
                for e in np.flatnonzero(w).tolist():
                    stats.add(texts[e], "records_dropped", int(w[e]))
        if len(records):
            self._count_rates(row_eid, records)

    def _count_rates(self, reid: np.ndarray, records: FlowRecords) -> None:
        stats = self.stats
        texts = self.registry.texts
        # one int64 per row: exporter id (< 2^22) | source (3 bits) | rate (32 bits)
        key = (
            (reid.astype(np.int64) << 35)
            | (records.sampling_source.astype(np.int64) << 32)
            | records.sampling_rate.astype(np.int64)
        )
        if (key == key[0]).all():  # the usual batch: one exporter, one rate
            uniq, cnt = key[:1], np.array([key.shape[0]])
        else:
            uniq, cnt = np.unique(key, return_counts=True)
        pairs = [(int(k) >> 35, int(k) & 0xFFFFFFFF, (int(k) >> 32) & 7) for k in uniq.tolist()]
        counts = cnt.tolist()
        per: dict[int, tuple[dict[int, int], dict[str, int]]] = {}
        for (e, r, src), c in zip(pairs, counts, strict=True):
            rates, sources = per.setdefault(e, ({}, {}))
            rates[r] = rates.get(r, 0) + c
            name = RATE_SOURCE_NAMES[src]
            sources[name] = sources.get(name, 0) + c
        for e, (rates, sources) in per.items():
            ex = texts[e]
            stats.add(ex, "records", sum(rates.values()))
            stats.rates(ex, rates, sources)
            missing = sources.get(RATE_SOURCE_NAMES[RATE_DEFAULT], 0) + sources.get(
                RATE_SOURCE_NAMES[RATE_UNKNOWN], 0
            )
            if missing:
                stats.missing_rate(ex, missing, self.sampling.default_rate)
