"""The engine's NATS consumer: batches from NATS into a :class:`~netspectra.engine.manager.Manager`.

Two modes (``docs/live.md``):

**Core NATS** (default). The engine subscribes to the shard subjects it owns in a *queue group*, so
every message reaches exactly one engine of the group. NATS spreads a queue group's messages per
message, not per flow, so exact per-flow results need each shard to have one owner: engine ``member``
of ``members`` owns the shards ``s % members == member`` (:func:`member_shards`); with ``members=1``
one engine owns all of them. The queue group on top guarantees that engines that do share a shard
(a second instance started with the same ``member``, e.g. during a rolling restart) split its
messages instead of counting each twice. The callback decodes the message (zero-copy) and hands the
batch to :meth:`Manager.submit` in a worker thread, awaiting at most ``handoff_timeout_s``: the NATS
read loop is never blocked (the original's bug 12), bursts wait in the subscription's pending buffer
(limits raised), and a batch the engine could not take in time is dropped and *counted*
(``dropped_packets`` of the manager), as are slow-consumer events of the client and gaps in the
per-shard ``seq`` of each probe (messages lost before the engine).

**JetStream** (``jetstream=True``). The stream stores the subjects; each engine member reads a durable
pull consumer (``<durable>-<member>of<members>``, ``AckPolicy.ALL``) of the shards it owns. The engine
never drops: when it falls behind, it lags (``submit`` blocks). Acknowledgement is tied to what
survives the engine: the engine's state lives in memory, so a message is acknowledged only once the
final snapshot that contains it has been handed to every writer and the writers closed without
dropping anything — that is, at a graceful stop (:meth:`StreamConsumer.run` ends by stopping the
manager, then acknowledges the last applied message, which with ``AckPolicy.ALL`` acknowledges every
earlier one). An engine that dies before (SIGKILL, crash, a writer that lost data) acknowledges
nothing of what it held in memory; its successor on the same durable consumer receives every one of
those messages again and rebuilds the same state: nothing lost, nothing counted twice. Messages the
server redelivers to a running engine (``ack_wait`` expired) are recognised by their stream sequence
and skipped.

The original's subject (one ``v1.PacketInfo`` per message) is read too (``compat=True``): messages are
buffered and converted in chunks (:func:`~netspectra.transport.codec.packet_info_to_batch`).

**Losses are counted, never silent** (core NATS). A message can be lost before the engine in three
ways, each counted in :class:`StreamStats` and warned about with what to do: the client's own pending
buffer overflows (``slow_consumer_events``); the *server* cuts the engine off because it fell more than
``max_pending`` (64 MiB) behind — a slow consumer on the server's side, which the client sees only as
a lost connection (``disconnects``: what was published until it reconnects is gone); or a message is
missing in a probe's per-shard ``seq`` (``seq_gaps``, in messages; ``lost_packets`` their packets,
exact from the messages' ``shard_packets``, estimated from the probe's average message for older
probes that do not send it). The remedy is flow control: JetStream.

**Relation to** :class:`~netspectra.batch.BatchSource`. The consumer has the shape's control surface —
``stats`` (with ``as_dict()``), :meth:`StreamConsumer.stop` from any thread, :meth:`StreamConsumer.close`
— but it is not iterated: it drives the :class:`Manager` itself. With JetStream it must, because an
acknowledgement and a period end are tied to what the manager has applied and stored (the period
coordination above: the ledger record, ``end_period`` at a recorded stream position, acknowledgement
after the finals are written); an iterator handing batches to someone else could not know when they
are safe to acknowledge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from nats.errors import SlowConsumerError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from netspectra.batch import PacketBatch
from netspectra.engine.manager import Manager
from netspectra.engine.metrics import RateLimitedLog
from netspectra.engine.periods_ledger import PeriodLedger, PeriodRecord, ResumePlan, resume_plan
from netspectra.transport.codec import PacketInfoStats, decode_batch, packet_info_to_batch
from netspectra.transport.nats_bus import (
    DEFAULT_QUEUE_GROUP,
    DEFAULT_SHARDS,
    DEFAULT_STREAM,
    NatsAuth,
    batch_subject,
    batch_wildcard,
    connect,
    ensure_stream,
    member_shards,
)
from netspectra.transport.nats_receive import install_direct_payloads

log = logging.getLogger(__name__)

__all__ = ["StreamConsumer", "StreamOptions", "StreamStats", "applies_inline", "run_consumer"]

_COMPAT_CHUNK = 4096


@dataclass(frozen=True)
class StreamOptions:
    """Where and how an engine reads (see the module docstring)."""

    url: str = "nats://127.0.0.1:4222"
    subject: str = "gons.packets.raw"
    n_shards: int = DEFAULT_SHARDS
    member: int = 0
    members: int = 1
    queue_group: str = DEFAULT_QUEUE_GROUP
    compat: bool = True
    handoff_timeout_s: float = 5.0
    pending_msgs_limit: int = 65_536
    pending_bytes_limit: int = 1 << 30
    jetstream: bool = False
    stream: str = DEFAULT_STREAM
    durable: str = "netspectra-engine"
    fetch_batch: int = 32
    ack_wait_s: float = 24 * 3600.0
    auth: NatsAuth = field(default_factory=NatsAuth)


@dataclass
class StreamStats:
    """Counters of one consumer run."""

    messages: int = 0
    batches: int = 0
    packets: int = 0
    compat_messages: int = 0
    compat: PacketInfoStats = field(default_factory=PacketInfoStats)
    decode_errors: int = 0
    handoff_dropped_packets: int = 0
    slow_consumer_events: int = 0
    disconnects: int = 0
    seq_gaps: int = 0
    lost_packets: int = 0
    redelivered_skipped: int = 0
    handover_skipped: int = 0
    end_markers: int = 0
    aborted: str = ""  # why a JetStream consumer stopped on its own (a writer lost a snapshot)
    acked_stream_seq: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "compat"}
        d["compat"] = dataclasses.asdict(self.compat)
        return d


def applies_inline(options: StreamOptions) -> bool:
    """Whether a consumer with ``options`` may apply batches to the tasks in its own thread: the engine
    builds its :class:`Manager` with ``inline_if_one_lane`` set to this (``inline`` when its tasks could
    not run in parallel anyway: one task, or one worker).

    Under JetStream it may: the engine pulls, so while it applies a batch nothing waits that could be
    lost (the stream holds the rest), and one thread doing the whole work spends less CPU a packet than
    a reader handing batches to a worker thread — measured on the 2-core VM, draining 5 M packets into
    the exact task: 51-58 ns of engine CPU a packet inline against 66-72 with the worker, the wall-clock
    rate no lower. Several tasks on several workers keep their worker threads: they apply a batch in
    parallel (the shipped three tasks, inline: 17 % less CPU, but a lower wall-clock rate where the
    cores are free). Core NATS pushes: its read loop must never wait for the tasks (messages would be
    lost), so they run in worker threads."""
    return bool(options.jetstream)


class _StoppedBeforeStartError(Exception):
    """A stop request arrived before the consumer could be created."""


class StreamConsumer:
    """Feeds ``manager`` from NATS until :meth:`run`'s ``stop`` is set; then stops the manager."""

    def __init__(self, manager: Manager, options: StreamOptions) -> None:
        self.manager = manager
        self.options = options
        self.shards = member_shards(options.n_shards, options.member, options.members)
        self.stats = StreamStats()
        self._last_seq: dict[tuple[str, int], int] = {}
        self._compat_buf: list[bytes] = []
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ns-handoff")
        self._log = RateLimitedLog(log, 10.0)
        self._applied_stream_seq = 0
        self._handover: dict[str, int] = {}
        self._close_unfinished = 0  # the end sequence of a period whose finals were not yet written
        self._stop: asyncio.Event | None = None
        self.ready = asyncio.Event()
        self._nc: Any = None  # the NATS client while run() runs (for is_connected)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._per_msg: dict[tuple[str, int], tuple[int, int]] = {}  # (probe, shard) -> (messages, packets)
        self._next_packet: dict[tuple[str, int], int] = {}  # (probe, shard) -> its next shard_packets

    @property
    def is_connected(self) -> bool:
        """Whether the NATS client of :meth:`run` is connected now (False before, between reconnects
        and after)."""
        nc = self._nc
        return nc is not None and bool(nc.is_connected)

    # -- shared ---------------------------------------------------------------------------------------

    def _subjects(self) -> list[str]:
        o = self.options
        if o.members == 1:
            return [batch_wildcard(o.subject)]
        return [batch_subject(o.subject, s) for s in self.shards]

    def _reads_compat(self) -> bool:
        # the original's subject cannot be sharded by subject: member 0 reads it
        return self.options.compat and self.options.member == 0

    def _decode(self, data: bytes) -> PacketBatch | None:
        try:
            batch, meta = decode_batch(data)
        except ValueError as exc:
            self.stats.decode_errors += 1
            self._log.log(
                logging.WARNING, "undecodable batch message (%d so far): %s", self.stats.decode_errors, exc
            )
            return None
        key = (meta.probe_id, meta.shard)
        last = self._last_seq.get(key)
        msgs, pkts = self._per_msg.get(key, (0, 0))
        if len(batch):
            msgs, pkts = msgs + 1, pkts + len(batch)
            self._per_msg[key] = (msgs, pkts)
        expected = self._next_packet.get(key)
        if last is not None and meta.seq > last + 1:
            missing = meta.seq - last - 1
            self.stats.seq_gaps += missing
            if expected is not None and meta.shard_packets > expected:
                self.stats.lost_packets += meta.shard_packets - expected  # exact: the probe says where it is
            else:  # an older probe: its average message stands for each lost one
                self.stats.lost_packets += round(missing * pkts / msgs) if msgs else 0
            self._log.log(
                logging.WARNING,
                "probe %r shard %d: %d message(s) missing before seq %d (%d so far, %d packets): lost "
                "before the engine — NATS dropped them (the engine fell behind: slow consumer, or it was "
                "disconnected) or another engine shares the shard. Use JetStream (--jetstream) for flow "
                "control, or add engines",
                meta.probe_id,
                meta.shard,
                missing,
                meta.seq,
                self.stats.seq_gaps,
                self.stats.lost_packets,
            )
        if meta.shard_packets or meta.seq == 1:
            self._next_packet[key] = meta.shard_packets + len(batch)
        if last is None or meta.seq > last:
            self._last_seq[key] = meta.seq
        if len(batch) == 0:
            self.stats.end_markers += 1  # a probe's end of run (core NATS): only its seq matters
            return batch
        self.stats.messages += 1
        self.stats.batches += 1
        self.stats.packets += len(batch)
        return batch

    def _compat_batch(self) -> PacketBatch | None:
        if not self._compat_buf:
            return None
        buf, self._compat_buf = self._compat_buf, []
        batch = packet_info_to_batch(buf, stats=self.stats.compat)
        self.stats.packets += len(batch)
        return batch

    async def _submit(self, batch: PacketBatch, timeout: float | None) -> bool:
        if len(batch) == 0:
            return True
        if self.manager.inline and self.options.jetstream:
            # JetStream (see applies_inline): applied here; the server keeps what is not yet fetched
            return self.manager.submit(batch)
        # a queue with room takes the batch at once; only a full one costs the hop to a thread (where
        # submit waits). Measured: the hop per message left the loop idle a third of the time.
        if self.manager.try_submit(batch):
            return True
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._pool, self.manager.submit, batch, True, timeout)
        if not ok:
            self.stats.handoff_dropped_packets += len(batch)
        return ok

    async def _error_cb(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            self.stats.slow_consumer_events += 1
            self._log.log(
                logging.WARNING,
                "NATS slow consumer: the engine's client dropped messages, its pending buffer was full (%d "
                "event(s) so far): the engine is slower than its probes; use JetStream (--jetstream) for "
                "flow control, or add engines",
                self.stats.slow_consumer_events,
            )
        else:
            log.warning("NATS: %s", exc)

    async def _disconnected_cb(self) -> None:
        if self._stop is not None and self._stop.is_set():
            return
        self.stats.disconnects += 1
        detail = (
            "the stream keeps what is published meanwhile"
            if self.options.jetstream
            else "messages published until it reconnects are LOST. If the server logged 'Slow Consumer "
            "Detected', the engine fell more than max_pending behind its probes: use JetStream "
            "(--jetstream) for flow control, or add engines"
        )
        log.warning("engine: NATS connection lost (%d time(s)); %s", self.stats.disconnects, detail)

    async def _reconnected_cb(self) -> None:
        log.info("engine: NATS connection re-established")

    # -- BatchSource-like control --------------------------------------------------------------------

    def stop(self) -> None:
        """Make :meth:`run` stop as if its ``stop`` event were set (thread-safe; before run: no-op)."""
        loop, evt = self._loop, self._stop
        if loop is not None and evt is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: run() has ended
                loop.call_soon_threadsafe(evt.set)

    def close(self) -> None:
        """Release what :meth:`run` left (its NATS connection is closed when it returns): a no-op kept
        for the shape of a source; idempotent."""
        self.stop()

    # -- run ------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> StreamStats:
        """Consume until ``stop`` is set, then drain what was received, stop the manager, commit."""
        o = self.options
        self._stop = stop
        self._loop = asyncio.get_running_loop()
        nc = await connect(
            o.url,
            f"netspectra-engine:{o.member}of{o.members}",
            auth=o.auth,
            error_cb=self._error_cb,
            disconnected_cb=self._disconnected_cb,
            reconnected_cb=self._reconnected_cb,
        )
        # batch payloads copied once from the socket's reads, not three times more (docs/live.md)
        install_direct_payloads(nc)
        self._nc = nc
        try:
            if o.jetstream:
                await self._run_jetstream(nc, stop)
            else:
                await self._run_core(nc, stop)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()
            self._pool.shutdown(wait=True)
        return self.stats

    async def _run_core(self, nc: Any, stop: asyncio.Event) -> None:
        o = self.options
        limits = {"pending_msgs_limit": o.pending_msgs_limit, "pending_bytes_limit": o.pending_bytes_limit}

        async def on_batch(msg: Any) -> None:
            batch = self._decode(msg.data)
            if batch is not None:
                await self._submit(batch, o.handoff_timeout_s)

        async def on_info(msg: Any) -> None:
            self.stats.compat_messages += 1
            self._compat_buf.append(msg.data)
            if len(self._compat_buf) >= _COMPAT_CHUNK:
                batch = self._compat_batch()
                if batch is not None:
                    await self._submit(batch, o.handoff_timeout_s)

        subs = [await nc.subscribe(s, queue=o.queue_group, cb=on_batch, **limits) for s in self._subjects()]
        if self._reads_compat():
            subs.append(await nc.subscribe(o.subject, queue=o.queue_group, cb=on_info, **limits))
        await nc.flush()
        self.ready.set()
        log.info("engine reading %s (queue group %s)", ", ".join(s.subject for s in subs), o.queue_group)
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
            batch = self._compat_batch()  # a trickle of PacketInfo messages is applied within ~0.1 s
            if batch is not None:
                await self._submit(batch, o.handoff_timeout_s)
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.drain()  # what the server already sent is processed
        batch = self._compat_batch()
        if batch is not None:
            await self._submit(batch, o.handoff_timeout_s)
        await asyncio.get_running_loop().run_in_executor(None, self.manager.stop)

    async def _run_jetstream(self, nc: Any, stop: asyncio.Event) -> None:
        o = self.options
        js = nc.jetstream()
        await ensure_stream(js, o.stream, o.subject)
        durable = f"{o.durable}-{o.member}of{o.members}"
        filters = (
            [batch_subject(o.subject, s) for s in self.shards]
            if o.members > 1
            else [batch_wildcard(o.subject)]
        )
        if self._reads_compat():
            filters.append(o.subject)
        ledger = PeriodLedger(js, o.stream, durable)
        await ledger.open()
        loop = asyncio.get_running_loop()
        try:
            ack_floor, delivered, fresh = await self._prepare_consumer(js, ledger, durable, filters)
        except _StoppedBeforeStartError:
            log.warning("stopped while waiting for earlier members; consumer %s not created", durable)
            if self.manager.started:
                await loop.run_in_executor(None, self.manager.stop)
            return
        self._applied_stream_seq = self.stats.acked_stream_seq = ack_floor
        plan = resume_plan(None if fresh else await ledger.get(), ack_floor)
        # A resumed open period must take back everything its predecessor received (and may have
        # stored under it) before it may end, or those packets would land in the next period as well.
        hold_until = max(delivered, plan.replay_until) if plan.resumed and plan.close_at_seq is None else 0
        start = await self._start_periods(plan)
        if not plan.resumed:
            await ledger.put(PeriodRecord(start))
        elif hold_until > max(ack_floor, plan.replay_until):
            await ledger.put(PeriodRecord(start, replay_until=hold_until))
        psub = await js.pull_subscribe_bind(
            durable=durable,
            stream=o.stream,
            pending_msgs_limit=o.pending_msgs_limit,
            pending_bytes_limit=o.pending_bytes_limit,
        )
        self.ready.set()
        log.info("engine reading JetStream %s through durable consumer %s", o.stream, durable)
        period_ns = None if self.manager.period_s is None else round(self.manager.period_s * 1e9)
        close_at, close_next = plan.close_at_seq, plan.next_start_ns
        last_msg = None
        while not stop.is_set() and not self._close_unfinished:
            due = period_ns and self.manager.clock.time_ns() >= start + period_ns
            if due and close_at is None and self._applied_stream_seq >= hold_until:
                start = await self._close_period(ledger, start, None, last_msg, stop)
                continue
            try:
                msgs = await psub.fetch(o.fetch_batch, timeout=0.2)
            except (TimeoutError, NatsTimeoutError):
                if hold_until > self._applied_stream_seq and await self._nothing_pending(js, durable):
                    hold_until = 0  # the rest of the predecessor's messages was lost to the stream's limits
                continue
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq <= self._applied_stream_seq:
                    self.stats.redelivered_skipped += 1
                    continue
                if self._handover and seq <= self._handover.get(msg.subject, 0):
                    self.stats.handover_skipped += 1  # applied and acknowledged by an earlier member
                    self._applied_stream_seq = seq
                    last_msg = msg
                    continue
                if close_at is not None and seq > close_at:
                    # the predecessor's close point (the stream may have lost it to its limits)
                    start = await self._close_period(ledger, start, close_next, last_msg, stop, recorded=True)
                    close_at = None
                    if self._close_unfinished:
                        break
                if msg.subject == o.subject:
                    self.stats.compat_messages += 1
                    self._compat_buf.append(msg.data)
                    if len(self._compat_buf) >= _COMPAT_CHUNK:
                        await self._submit_blocking(self._compat_batch())
                else:
                    await self._submit_blocking(self._decode(msg.data))
                self._applied_stream_seq = seq
                last_msg = msg
                if close_at is not None and seq == close_at:
                    start = await self._close_period(ledger, start, close_next, last_msg, stop, recorded=True)
                    close_at = None
                    if self._close_unfinished:
                        break
            await self._submit_blocking(self._compat_batch())
        await self._submit_blocking(self._compat_batch())
        if self._close_unfinished:
            # A period's finals are not stored (the writers could not write before the stop, or lost a
            # snapshot): the ledger keeps that close, so the next engine redoes it (same boundary, same
            # period starts); nothing is acknowledged.
            await loop.run_in_executor(None, self.manager.stop)
            log.warning(
                "stopped before the finals of the period that ended at stream sequence %d were stored: "
                "not acknowledging; the next engine redoes that period",
                self._close_unfinished,
            )
            return
        if hold_until > self._applied_stream_seq or (
            close_at is not None and self._applied_stream_seq < close_at
        ):
            # Stopped while taking back the predecessor's period: it stays open (or closing) in the
            # ledger for the next engine; acknowledging now would lose the dead engine's rows' packets.
            await loop.run_in_executor(None, self.manager.stop)
            log.warning(
                "stopped before reading back period %d of the previous engine (up to stream sequence %d): "
                "not acknowledging; the next engine resumes it",
                start,
                close_at if close_at is not None else hold_until,
            )
            return
        # A graceful stop closes the period too (its next engine starts a fresh one).
        end_seq = close_at if close_at is not None else self._applied_stream_seq
        await ledger.put(PeriodRecord(start, end_seq, close_next if close_at is not None else None))
        await loop.run_in_executor(None, self.manager.stop)
        if self._writers_lost():
            self.stats.aborted = f"a writer lost {self._writers_lost()} snapshot(s) at the stop"
            log.error("%s: not acknowledging; the next engine redoes the period", self.stats.aborted)
            return
        await self._ack(last_msg)

    async def _nothing_pending(self, js: Any, durable: str) -> bool:
        try:
            info = await js.consumer_info(self.options.stream, durable)
        except Exception:  # not knowing is not "nothing pending"
            return False
        return int(info.num_pending or 0) == 0

    async def _start_periods(self, plan: ResumePlan) -> int:
        """Start the manager (or take its periods over) with the plan's period start; returns it."""
        m = self.manager
        if plan.resumed:
            log.info(
                "resuming period %d of the previous engine on this consumer (its stored snapshots are "
                "replaced as the stream is read again)%s",
                plan.period_start_ns,
                f"; closing it after stream sequence {plan.close_at_seq}" if plan.close_at_seq else "",
            )
        start = plan.period_start_ns if plan.period_start_ns is not None else m.clock.time_ns()
        if m.started:
            m.take_over_periods(start)
        else:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: m.start(start, external_periods=True)
            )
        return start

    async def _close_period(
        self,
        ledger: PeriodLedger,
        start: int,
        next_start: int | None,
        last_msg: Any,
        stop: asyncio.Event,
        *,
        recorded: bool = False,
    ) -> int:
        """End the current period at the last applied message: record the close, hand the finals to
        the writers, wait until they are written, acknowledge, record the new period. Returns the
        new period's start.

        The close stays unfinished — recorded in the ledger, nothing acknowledged, the consumer stops
        (``self._close_unfinished``) so that the next engine redoes it — when ``stop`` comes while
        the writers cannot write, or when a writer lost a snapshot (``stats.aborted`` says which)."""
        if next_start is None:
            next_start = self.manager.clock.time_ns()
        if not recorded:
            await ledger.put(PeriodRecord(start, self._applied_stream_seq, next_start))
        await self._submit_blocking(self._compat_batch())
        loop = asyncio.get_running_loop()
        m = self.manager
        await loop.run_in_executor(None, m.flush)
        new_start = await loop.run_in_executor(None, m.end_period, next_start)
        # JetStream never drops: the consumer lags while a writer cannot write (the stream holds it).
        while not await loop.run_in_executor(None, lambda: all(rw.flush(0.5) for rw in m.writers)):
            if stop.is_set():
                self._close_unfinished = self._applied_stream_seq
                self.stats.aborted = (
                    f"stopped while the writers could not store the finals of the period that ended at "
                    f"stream sequence {self._applied_stream_seq}"
                )
                return new_start
        lost = self._writers_lost()
        if lost:
            self._close_unfinished = self._applied_stream_seq
            self.stats.aborted = (
                f"a writer lost {lost} snapshot(s) by the end of the period that ended at stream sequence "
                f"{self._applied_stream_seq}"
            )
            log.error(
                "%s: stopping without acknowledging; the next engine redoes the period", self.stats.aborted
            )
            return new_start
        await self._ack(last_msg)
        await ledger.put(PeriodRecord(new_start))
        return new_start

    def _writers_lost(self) -> int:
        """Snapshots the writers gave up (superseded ones lost nothing: a later cumulative one of the
        same task and period was kept)."""
        return int(
            sum(w.metrics.dropped_total - w.metrics.dropped.get("superseded") for w in self.manager.writers)
        )

    async def _ack(self, last_msg: Any) -> None:
        """Acknowledge every message up to ``last_msg`` (callers checked that the writers lost nothing)."""
        if last_msg is None or self._applied_stream_seq <= self.stats.acked_stream_seq:
            return
        await last_msg.ack_sync(timeout=10)
        self.stats.acked_stream_seq = self._applied_stream_seq
        log.info("acknowledged stream %s up to sequence %d", self.options.stream, self._applied_stream_seq)

    async def _prepare_consumer(
        self, js: Any, ledger: PeriodLedger, durable: str, filters: list[str]
    ) -> tuple[int, int, bool]:
        """Create this member's durable consumer, or restart it just after its acknowledgement floor.
        Returns ``(floor, delivered, fresh)``: the acknowledgement floor it starts after (0: nothing),
        the last stream sequence the previous consumer had delivered, and whether this member starts
        fresh (new consumer, or a new member count: the ledger's period record is not its own).

        Messages that a previous engine received but never acknowledged belonged to state that died
        with it; the server would hold them back until ``ack_wait`` expires. The consumer is therefore
        re-created to deliver from ``ack floor + 1`` at once (one live engine per member, by contract).
        A new consumer, or any consumer after the group's member count changed, takes its shards over
        from the other consumers instead (:meth:`_hand_over`).
        """
        o = self.options
        try:
            info = await js.consumer_info(o.stream, durable)
        except NotFoundError:
            info = None
        layout_key = f"{o.durable}.layout"
        layout = await ledger.get_json(layout_key)
        changed = layout is not None and int(layout.get("members", 0)) != o.members
        handover_key = f"{durable}.handover"
        start = delivered = 0
        if info is not None and not changed:
            start = info.ack_floor.stream_seq + 1 if info.ack_floor else 1
            delivered = info.delivered.stream_seq if info.delivered else 0
            # skip floors of an earlier hand-over still apply until passed (a restart keeps them)
            self._handover = {k: int(v) for k, v in (await ledger.get_json(handover_key) or {}).items()}
            log.info(
                "JetStream consumer %s: resuming after acknowledged stream sequence %d (%d message(s) "
                "delivered earlier but not acknowledged are read again)",
                durable,
                start - 1,
                info.num_ack_pending,
            )
        else:
            floors = await self._hand_over(js, ledger, durable, own=info)
            await ledger.put_json(handover_key, floors)  # before the consumer exists: a restart finds them
            # A record of an earlier time of this consumer is not about the new one: were this engine
            # to die before it records its own period, its restart must not resume that old period.
            await ledger.forget()
            self._handover = floors
            if floors:
                mine = [batch_subject(o.subject, s) for s in self.shards]
                if self._reads_compat():
                    mine.append(o.subject)
                start = min(floors.get(subject, 0) for subject in mine) + 1
        if info is not None:
            await js.delete_consumer(o.stream, durable)
        if layout is None or changed:
            await ledger.put_json(layout_key, {"members": o.members})
        config = ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.ALL,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start else DeliverPolicy.ALL,
            opt_start_seq=start or None,
            ack_wait=o.ack_wait_s,
            max_ack_pending=-1,
            filter_subjects=filters,
        )
        await js.add_consumer(o.stream, config)
        return max(0, start - 1), delivered, info is None or changed

    async def _earlier_members(
        self, js: Any, ledger: PeriodLedger, durable: str, own: Any
    ) -> list[tuple[Any, int, int]]:
        """``(info, member, members)`` of the other consumers of this group that own any of this
        member's shards (and this member's own consumer ``own`` of a previous member count), once every
        one of them has stopped gracefully.

        Stopped means: its period record in the ledger is a graceful stop's and its acknowledgement
        floor has reached the record's end (consumers without a record — an older NetSpectra — count as
        stopped when nothing is pending acknowledgement and no pull is waiting). A member still
        running, one that crashed, and one that stopped without storing everything would count the
        same messages again or leave partial rows: this waits — not ready, logging why every 30 s —
        until each has stopped gracefully; a stop request meanwhile raises
        :class:`_StoppedBeforeStartError` (nothing created)."""
        o = self.options
        pattern = re.compile(re.escape(o.durable) + r"-(\d+)of(\d+)")
        waiting = RateLimitedLog(log, 30.0)
        while True:
            try:
                infos = await js.consumers_info(o.stream)
            except NotFoundError:
                infos = []
            earlier = []
            for info in infos:
                m = pattern.fullmatch(info.name or "")
                if m is None or (info.name == durable and own is None):
                    continue
                k, n = int(m.group(1)), int(m.group(2))
                if any(s % n == k for s in self.shards) or (k == 0 and self._reads_compat()):
                    earlier.append((info, k, n))
            busy = []
            for info, _, _ in earlier:
                rec = await ledger.get(info.name)
                floor = info.ack_floor.stream_seq if info.ack_floor else 0
                if rec is not None:
                    done = rec.stopped and floor >= (rec.end_seq or 0)
                else:
                    done = not info.num_ack_pending and not info.num_waiting
                if not done:
                    busy.append(info.name)
            if not busy:
                return earlier
            waiting.log(
                logging.WARNING,
                "JetStream consumer %s: the consumers %s of this group own some of its shards and have not "
                "stopped gracefully (running, crashed, or stopped without storing everything): waiting "
                "for them to stop (a crashed one: start it again with its member count and stop it) "
                "before taking the shards over",
                durable,
                ", ".join(busy),
            )
            if self._stop is not None and self._stop.is_set():
                raise _StoppedBeforeStartError(durable)
            await asyncio.sleep(1.0)

    async def _hand_over(self, js: Any, ledger: PeriodLedger, durable: str, own: Any) -> dict[str, int]:
        """Where the other consumers of this group left this member's shards, per subject: the highest
        acknowledgement floor of the consumers that owned it (after :meth:`_earlier_members` saw them
        stopped). Messages of a subject up to its floor were applied — and stored — by them, and are
        skipped; reading starts at the lowest floor. Empty: nobody owned these shards (read from the
        start of the stream).

        With ``AckPolicy.ALL`` a consumer's acknowledgement floor covers every message of its shards up
        to it, so this counts every message once, however the shards were split before.
        """
        o = self.options
        floors: dict[str, int] = {}
        for info, k, n in await self._earlier_members(js, ledger, durable, own):
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            owned = [batch_subject(o.subject, s) for s in self.shards if s % n == k]
            if k == 0 and self._reads_compat():
                owned.append(o.subject)  # the original's subject is member 0's in every layout
            for subject in owned:
                floors[subject] = max(floors.get(subject, 0), floor)
        if floors:
            log.info(
                "JetStream consumer %s takes its shards over from the group's other consumers (%s), "
                "skipping what they acknowledged",
                durable,
                ", ".join(f"{subj} ≤ {f}" for subj, f in sorted(floors.items())),
            )
        return floors

    async def _submit_blocking(self, batch: PacketBatch | None) -> None:
        if batch is not None:
            await self._submit(batch, None)


def run_consumer(manager: Manager, options: StreamOptions, duration_s: float | None = None) -> StreamStats:
    """Run a consumer in a fresh event loop until ``duration_s`` passes (``None``: until interrupted)."""

    async def main() -> StreamStats:
        stop = asyncio.Event()
        consumer = StreamConsumer(manager, options)
        task = asyncio.create_task(consumer.run(stop))
        t0 = time.monotonic()
        try:
            while not task.done() and (duration_s is None or time.monotonic() - t0 < duration_s):
                await asyncio.wait({task}, timeout=0.2)
        finally:
            stop.set()
        return await task

    return asyncio.run(main())
