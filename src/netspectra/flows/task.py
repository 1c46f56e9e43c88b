"""The flows task: a bounded flow table that turns packets into ended flow records.

:class:`FlowTask` drives the kernels of :mod:`netspectra.flows.kernels`: it feeds batches, grows the
table (doubling) up to what ``max_flows`` needs, makes room when it is full, empties the kernels'
outbox into *pending* records, and hands those out.

What leaves, and when (the snapshot contract):

* A flow's record ends by a timeout (idle, active, tcp_end), measured in packet time: when a packet of
  the same key arrives after the deadline (the packet starts the next record), or when the table is
  scanned after the deadline — every ``scan_interval`` of packet time during :meth:`update`, at every
  :meth:`tick` (the engine's clock, live), and when the table is full.
* :meth:`tick` (``quiet_ns``: how long the engine has been without packets) ends the flows whose
  deadline has passed at ``clock + quiet_ns``, where ``clock`` is the newest packet time seen: a
  connection that goes quiet is ended by the wall clock even when no packet follows, and packet time
  and the clock never need to agree (a replay of an old capture keeps its own time).
* :meth:`finish` ends what is due, then every other open flow with the given reason (``end_of_input``
  offline, ``shutdown`` when an engine stops).
* A full table (``max_flows`` open flows) first ends the flows that are due, then the least recently
  active ones (reason ``table_full``, counted in :attr:`evicted`) until a quarter of it is free: the
  table never grows past ``max_flows``, and a flow ended this way that goes on continues in a new
  record.
* Time that goes back: a packet earlier than the newest one seen is accounted at the newest time (as
  nfstream does; counted in :attr:`out_of_order`). A packet more than ``idle_timeout`` earlier is
  another time base (the next of several captures in one run, a clock set back, a section of a
  pcapng with other clocks): every open flow ends first (reason ``end_of_input``) and packet time
  starts again from that packet (counted in :attr:`time_resets`).
* Ended records wait in the task until :meth:`drain` hands them out: **each record is in exactly one
  drained snapshot**. :meth:`peek` shows the waiting records without taking them. Every snapshot
  carries the task's :class:`~netspectra.flows.records.FlowSummary` (counts since the start). A task
  told to :meth:`spill_to` a sink hands each full outbox there instead (each record is then in one
  spilled part or one drained snapshot, in the order the records ended).

Memory: the table (128 bytes per slot, 128 more with statistics, ``4 * splt`` more with SPLT; at most
:func:`capacity_for` ``(max_flows)`` slots), and the records waiting to be drained (the same per
record).

Not thread-safe: one caller at a time (the engine wraps it in
:class:`~netspectra.engine.groups.RecordsTask`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.flows import kernels as kern
from netspectra.flows.records import END_REASONS, FlowRecords, FlowSummary
from netspectra.sketches.primitives import aligned_zeros
from netspectra.weights import exact_sum

log = logging.getLogger(__name__)

NS = 1_000_000_000
#: The table grows (doubles) before more than this fraction of its slots is used.
MAX_LOAD_NUM, MAX_LOAD_DEN = 5, 8
_MIN_CAPACITY = 16
#: Initial rows of the buffer the kernels write ended records into (it doubles when full).
OUTBOX_ROWS = 8192
#: Records of the running "top connections" a task keeps for its summary.
TOP_KEEP = 1000
_NO_CUTOFF = np.iinfo(np.int64).min
_INT64_MAX = int(np.iinfo(np.int64).max)
_REASON_CODE = {name: code for code, name in END_REASONS.items()}


def capacity_for(flows: int) -> int:
    """Smallest power-of-two capacity that holds ``flows`` within the load limit."""
    need = -(-max(1, flows) * MAX_LOAD_DEN // MAX_LOAD_NUM) + 1
    return max(_MIN_CAPACITY, 1 << (need - 1).bit_length())


def row_bytes(splt: int, statistics: bool) -> int:
    """Bytes per slot of a table (and per waiting record)."""
    return (kern.HOT + (kern.STATS if statistics else 0)) * 8 + 4 * splt


def table_bytes(max_flows: int, splt: int, statistics: bool) -> int:
    """The most memory a table for ``max_flows`` flows takes."""
    return capacity_for(max_flows) * row_bytes(splt, statistics)


def _aligned_rows(n: int, width: int) -> np.ndarray:
    """A zeroed ``(n, width)`` uint64 array whose data starts on a 64-byte boundary (rows of 8 words
    then each start on one)."""
    return aligned_zeros((n, width), np.uint64)


@dataclass(frozen=True)
class FlowParams:
    """How a flows task cuts flows into records (see :class:`~netspectra.flows.kind.FlowsTaskConfig`)."""

    idle_timeout_ns: int = 120 * NS
    active_timeout_ns: int = 1800 * NS
    tcp_end: bool = False
    tcp_end_grace_ns: int = 2 * NS
    splt: int = 0
    statistics: bool = True
    max_flows: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("idle_timeout_ns", "active_timeout_ns", "tcp_end_grace_ns"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.splt <= 255:
            raise ValueError(f"splt must be in [0, 255], got {self.splt}")
        if self.max_flows < 1:
            raise ValueError(f"max_flows must be at least 1, got {self.max_flows}")

    def vector(self) -> np.ndarray:
        v = np.zeros(kern.N_PARAMS, np.int64)
        v[kern.P_IDLE] = self.idle_timeout_ns
        v[kern.P_ACTIVE] = self.active_timeout_ns
        v[kern.P_TCP_END] = int(self.tcp_end)
        v[kern.P_GRACE] = self.tcp_end_grace_ns
        v[kern.P_SPLT] = self.splt
        v[kern.P_STATS] = int(self.statistics)
        return v


class FlowTask:
    """Flow records of every packet it is given (see the module docstring).

    ``capacity_hint``: flows expected open at once (the table starts that large, capped by
    ``max_flows``). ``scan_interval_ns``: packet time between scans of the table during updates
    (default: a quarter of the shorter timeout, at least one second).
    """

    def __init__(
        self,
        name: str,
        params: FlowParams | None = None,
        *,
        capacity_hint: int = 1 << 14,
        scan_interval_ns: int | None = None,
        outbox_rows: int = OUTBOX_ROWS,
    ) -> None:
        self.name = name
        self.params = p = params or FlowParams()
        self._pvec = p.vector()
        self._max_capacity = capacity_for(p.max_flows)
        self._initial_capacity = min(capacity_for(min(capacity_hint, p.max_flows)), self._max_capacity)
        self._alloc(self._initial_capacity)
        self._state = np.zeros(kern.N_STATE, np.int64)
        self._state[kern.S_CLOCK] = np.iinfo(np.int64).min
        self._outbox_rows = max(1, outbox_rows)
        self._record_width = kern.HOT + (kern.STATS if p.statistics else 0)
        self._new_outbox()
        self._counted = 0  # records of the outbox already in the summary
        #: Ended records are only counted in the summary, not kept for a snapshot (:meth:`forget_unread`).
        self.unread = False
        #: Where a full outbox goes instead of growing (:meth:`spill_to`); None: it grows.
        self._spill: Callable[[FlowRecords], None] | None = None
        self._by_reason = dict.fromkeys(END_REASONS, 0)
        self._top = FlowRecords.empty(name, p.splt, p.statistics)
        self._packets = 0
        self._bytes = 0
        self._seen = False
        self.scan_interval_ns = (
            scan_interval_ns
            if scan_interval_ns is not None
            else max(NS, min(p.idle_timeout_ns, p.active_timeout_ns) // 4)
        )
        self._last_scan = np.iinfo(np.int64).min
        # no flow in the table started before this (None: unknown): while now - _first_bound is below the
        # shortest timeout, nothing can be due and a scan is skipped
        self._first_bound: int | None = None
        self._min_timeout = min(
            p.idle_timeout_ns, p.active_timeout_ns, p.tcp_end_grace_ns if p.tcp_end else _INT64_MAX
        )
        self.missing_columns: set[str] = set()
        #: Weighted rows of 0 packets seen (they stand for nothing and are left out), since the start.
        self.empty_rows = 0
        #: Batches that started more than idle_timeout before the newest time seen (see the module doc).
        self.time_resets = 0

    def __repr__(self) -> str:
        state = f"open={self.open_flows}, capacity={self.capacity}, pending={self.pending}"
        return f"FlowTask({self.name!r}, {state})"

    def _alloc(self, cap: int) -> None:
        self._t = _aligned_rows(cap, kern.HOT)
        self._s = _aligned_rows(cap if self.params.statistics else 0, kern.STATS)
        self._sf = self._s.view(np.float64)
        self._sp = np.zeros((cap, self.params.splt), np.int32)

    # -- state --------------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return int(self._t.shape[0])

    @property
    def open_flows(self) -> int:
        """Flows in the table now."""
        return int(self._state[kern.S_USED])

    @property
    def pending(self) -> int:
        """Ended records waiting for :meth:`drain`."""
        return int(self._state[kern.S_OUT])

    @property
    def clock_ns(self) -> int | None:
        """The newest packet time seen (None before the first packet)."""
        return int(self._state[kern.S_CLOCK]) if self._seen else None

    @property
    def evicted(self) -> int:
        """Flows ended early because the table was full (reason ``table_full``), since the start."""
        self._count()
        return self._by_reason[kern.TABLE_FULL]

    @property
    def out_of_order(self) -> int:
        """Packets older than one seen before them (accounted at the newest time seen), since the start."""
        return int(self._state[kern.S_OUT_OF_ORDER])

    @property
    def memory_bytes(self) -> int:
        """Bytes of the table, its SPLT array and the buffer of records waiting to be drained."""
        return int(self._t.nbytes + self._s.nbytes + self._sp.nbytes + self._out.nbytes + self._out_sp.nbytes)

    @property
    def packets(self) -> int:
        return self._packets

    # -- feeding ------------------------------------------------------------------------------------

    def update(self, batch: PacketBatch) -> None:
        """Account every packet of ``batch`` (which must satisfy :meth:`PacketBatch.validate`).

        The optional columns ``tcp_flags``, ``vlan_id``, ``icmp_type_code`` and ``ip_length`` are used
        when the batch carries them; without them the records lack what they give (see
        :meth:`~netspectra.flows.records.FlowRecords.to_arrow`), and the task notes it once in the log.
        """
        batch.validate()
        if batch.weighted:
            empty = batch.packets == 0  # type: ignore[operator]
            if empty.any():  # a record of no packet stands for nothing: no flow, no time
                self.empty_rows += int(empty.sum())
                batch = batch.take(~empty)
        n = len(batch)
        if n == 0:
            return
        missing = {
            c for c in ("tcp_flags", "vlan_id", "icmp_type_code", "ip_length") if getattr(batch, c) is None
        }
        if missing - self.missing_columns:
            log.warning(
                "flows task %s: batches without %s: the records lack what those columns give "
                "(decode them: CaptureReader(extras=True), a probe of a configuration with a flows task)",
                self.name,
                ", ".join(sorted(missing - self.missing_columns)),
            )
            self.missing_columns |= missing
        self._seen = True  # before the kernel runs: a time jump inside this batch finishes what came before
        empty8, empty16, empty32 = _EMPTY
        empty_u64, empty_i64 = _EMPTY_WEIGHTS
        weights = (
            batch.packets if batch.packets is not None else empty_u64,
            batch.octets if batch.octets is not None else empty_u64,
            batch.flow_start_ns if batch.flow_start_ns is not None else empty_i64,
        )
        if batch.flow_start_ns is not None and self._first_bound is not None:
            # a record's flow may start before the clock: keep the bound below every first time
            self._first_bound = min(self._first_bound, int(batch.flow_start_ns.min()))
        cols = (
            batch.ts_ns,
            batch.src_ip.view(np.uint64),
            batch.dst_ip.view(np.uint64),
            batch.src_port,
            batch.dst_port,
            batch.protocol,
            batch.length,
            batch.tcp_flags if batch.tcp_flags is not None else empty8,
            batch.vlan_id if batch.vlan_id is not None else empty16,
            batch.icmp_type_code if batch.icmp_type_code is not None else empty16,
            batch.ip_length if batch.ip_length is not None else empty32,
        )
        i = 0
        while i < n:
            i, code = kern.update(
                self._t, self._s, self._sf, self._sp, self._state, self._pvec, i, self._limit(), *cols,
                self._out, self._out_sp, *weights,
            )  # fmt: skip
            if code == kern.OUTBOX_FULL:
                self._grow_outbox()
            elif code == kern.TABLE_FULL_STOP:
                self._make_room()
            elif code == kern.TIME_JUMP:
                self._new_time_base(int(batch.ts_ns[i]))
        self._packets += n if batch.packets is None else exact_sum(batch.packets)
        self._bytes += exact_sum(batch.length if batch.octets is None else batch.octets)
        clock = int(self._state[kern.S_CLOCK])
        if clock - self._last_scan >= self.scan_interval_ns:
            self._expire(clock)

    def tick(self, quiet_ns: int) -> None:
        """The engine has had no packet for ``quiet_ns``: end the flows whose deadline has passed at the
        newest packet time plus that (nothing before the first packet)."""
        if not self._seen:
            return
        now = int(self._state[kern.S_CLOCK]) + max(0, int(quiet_ns))
        self._expire(min(now, _INT64_MAX))

    def finish(self, reason: str = "end_of_input") -> None:
        """End every open flow: those due by the newest packet time with their timeout's reason, the
        others with ``reason`` (``end_of_input`` or ``shutdown``)."""
        code = _REASON_CODE.get(reason)
        if code not in (kern.END_OF_INPUT, kern.SHUTDOWN):
            raise ValueError(f"reason must be end_of_input or shutdown, got {reason!r}")
        if self._seen:
            self._expire(int(self._state[kern.S_CLOCK]))
        self._expire(0, final_reason=code)
        # every flow was copied out: start again from a small table (the memory goes back)
        self._alloc(self._initial_capacity)
        self._state[kern.S_USED] = 0
        self._first_bound = None

    # -- handing out --------------------------------------------------------------------------------

    def drain(self) -> FlowRecords:
        """Every ended record not handed out yet (then no longer held), with the task's summary.

        The records are a view of the buffer they were written into (no copy); the task writes
        later records into a new one."""
        summary = self.summary()
        k = int(self._state[kern.S_OUT])
        out = FlowRecords(self.name, self._out[:k], self._out_sp[:k], summary)
        self._new_outbox()
        return out

    def peek(self) -> FlowRecords:
        """A copy of the ended records waiting for :meth:`drain` (they stay), with the task's summary."""
        summary = self.summary()
        k = int(self._state[kern.S_OUT])
        return FlowRecords(self.name, self._out[:k].copy(), self._out_sp[:k].copy(), summary)

    def snapshot(self) -> FlowRecords:
        """:meth:`peek` (the name every task offers for a look at its state)."""
        return self.peek()

    def summary(self) -> FlowSummary:
        """The task since its start (records by end reason, open flows, the largest records)."""
        self._count()
        return FlowSummary(
            by_reason={END_REASONS[c]: n for c, n in self._by_reason.items()},
            open_flows=self.open_flows,
            top=self._top,
            out_of_order=self.out_of_order,
            packets=self._packets,
        )

    # -- internals ----------------------------------------------------------------------------------

    def _limit(self) -> int:
        if self.capacity >= self._max_capacity:
            return self.params.max_flows
        return self.capacity * MAX_LOAD_NUM // MAX_LOAD_DEN

    def _new_outbox(self) -> None:
        self._out = _aligned_rows(self._outbox_rows, self._record_width)
        self._out_sp = np.zeros((self._outbox_rows, self.params.splt), np.int32)
        self._state[kern.S_OUT] = 0
        self._counted = 0

    def forget_unread(self) -> None:
        """No one will read this task's records (the engine's group has no writer and no snapshot callback,
        and nothing looks at the tasks while it runs: ``analyze`` without ``--out``): from now on a full
        outbox is counted in the summary (records by reason, the largest records) and written over, not
        enlarged, so :meth:`drain` and :meth:`peek` show only the records since. Memory then follows the
        open flows, not the flows of the whole capture; the summary is the same."""
        self.unread = True

    def spill_to(self, sink: Callable[[FlowRecords], None]) -> None:
        """Hand every full outbox to ``sink`` (its records, without a summary; the sink owns them) instead
        of enlarging it: the records are counted in the summary, then given to the sink, and the task writes
        later records into a new outbox, so :meth:`drain` and :meth:`peek` show only the records since.
        The parts and the drained snapshots together hold every record once, in the order they ended.
        For a reader that takes every record as it comes and nothing else (``analyze --out`` streaming a
        file): memory then follows the open flows, not the flows of the whole capture. ``sink`` runs in
        the caller of :meth:`update` (or :meth:`tick`, :meth:`finish`); what it raises propagates from
        there, and the records it was given are then lost to later snapshots."""
        self._spill = sink

    def _grow_outbox(self) -> None:
        """Room for more ended records: a larger outbox, or (:attr:`unread`) the one there is, counted, or
        (:meth:`spill_to`) a new one, the full one handed to the sink."""
        if self.unread:
            self._count()
            self._state[kern.S_OUT] = 0
            self._counted = 0
            return
        if self._spill is not None:
            self._count()
            k = int(self._state[kern.S_OUT])
            full = FlowRecords(self.name, self._out[:k], self._out_sp[:k])
            self._new_outbox()
            self._spill(full)
            return
        k = int(self._state[kern.S_OUT])
        rows = _aligned_rows(2 * self._out.shape[0], self._record_width)
        rows[:k] = self._out[:k]
        sp = np.zeros((rows.shape[0], self.params.splt), np.int32)
        sp[:k] = self._out_sp[:k]
        self._out, self._out_sp = rows, sp

    def _count(self) -> None:
        """Bring the summary (records by reason, the largest records) up to the outbox's end."""
        k = int(self._state[kern.S_OUT])
        if k == self._counted:
            return
        new = FlowRecords(self.name, self._out[self._counted : k], self._out_sp[self._counted : k])
        counts = np.bincount(new.reasons, minlength=16)
        for code in self._by_reason:
            self._by_reason[code] += int(counts[code])
        self._keep_top(new)
        self._counted = k

    def _keep_top(self, new: FlowRecords) -> None:
        size = new.bytes
        if len(new) > TOP_KEEP:  # only the largest can enter: cut before sorting
            cand = np.argpartition(size, len(new) - TOP_KEEP)[len(new) - TOP_KEEP :]
            new, size = new.take(np.sort(cand)), size[np.sort(cand)]
        if len(self._top) >= TOP_KEEP:
            big = np.flatnonzero(size >= self._top.bytes[-1])
            if big.size == 0:
                return
            new = new.take(big)
        both = FlowRecords.concat([self._top, new])
        self._top = both.top(TOP_KEEP)

    def _expire(self, now: int, *, cutoff: int = _NO_CUTOFF, final_reason: int = 0) -> None:
        if self.open_flows == 0:
            return
        timeouts_only = final_reason == 0 and cutoff == _NO_CUTOFF
        if timeouts_only:
            self._last_scan = now
            if self._first_bound is not None and now - self._first_bound < self._min_timeout:
                return  # no flow is old enough for any timeout yet
        self._state[kern.S_MIN_FIRST] = _INT64_MAX
        origin = kern.first_free(self._t)
        done = 0
        while done < self.capacity:
            done = kern.expire(
                self._t, self._s, self._sp, self._state, self._pvec, origin, done, now, cutoff, final_reason,
                self._out, self._out_sp,
            )  # fmt: skip
            if done < self.capacity:
                self._grow_outbox()
        if final_reason == 0:
            # every flow left started at or after the smallest first time the walk saw, and later flows
            # start at or after the clock
            self._first_bound = min(int(self._state[kern.S_MIN_FIRST]), int(self._state[kern.S_CLOCK]))

    def _new_time_base(self, ts: int) -> None:
        back = (int(self._state[kern.S_CLOCK]) - ts) / 1e9
        log.info(
            "flows task %s: a packet %.0f s older than the newest one seen: another time base; the open "
            "flows end (end_of_input) and packet time starts again from it",
            self.name,
            back,
        )
        self.finish("end_of_input")
        self._state[kern.S_CLOCK] = np.iinfo(np.int64).min
        self._last_scan = np.iinfo(np.int64).min
        self.time_resets += 1

    def _make_room(self) -> None:
        if self.capacity < self._max_capacity:
            self._grow()
            return
        clock = int(self._state[kern.S_CLOCK])
        self._expire(clock)
        p = self.params
        if self.open_flows <= p.max_flows * 7 // 8:
            return
        last = kern.last_seen(self._t)
        k = max(1, self.open_flows - p.max_flows * 3 // 4)
        cutoff = int(np.partition(last, k - 1)[k - 1])
        before = self.evicted
        self._expire(clock, cutoff=cutoff)
        log.warning(
            "flows task %s: table full (max_flows %d): ended the %d least recently active flows early "
            "(EndReason table_full; %d so far)",
            self.name,
            p.max_flows,
            self.evicted - before,
            self.evicted,
        )

    def _grow(self) -> None:
        old_t, old_s, old_sp = self._t, self._s, self._sp
        self._alloc(min(self.capacity * 2, self._max_capacity))
        moved = kern.rehash(old_t, old_s, old_sp, self._t, self._s, self._sp)
        if moved != self.open_flows:
            raise AssertionError(
                f"rehash moved {moved} flows of {self.open_flows}"
            )  # a kernel bug, never data
        log.debug("flows task %s: table grown to %d slots (%d flows)", self.name, self.capacity, moved)


_EMPTY = (np.empty(0, np.uint8), np.empty(0, np.uint16), np.empty(0, np.uint32))
_EMPTY_WEIGHTS = (np.empty(0, np.uint64), np.empty(0, np.int64))
