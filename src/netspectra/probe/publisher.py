"""Publish batches to NATS: per-shard subjects, bounded queue, counted drops.

::

    source (any iterator of PacketBatch: a replayed file, a live interface)
        │ reader thread
        ▼
    bounded queue (batches) ──▶ asyncio loop: shard_of → split_by_shard → (hold) → encode → publish
        full: wait (file replay: nothing lost)       a shard's parts coalesced into messages of
        or drop + count (live: never block capture)   ≤ max_packets and ≤ max_payload; subject
                                                      <subject>.<shard>, seq per shard

Messages as large as ``max_packets``: a batch's part for a shard is small where a capture batch is
split many ways (a 65 536-packet batch into 16 shards: ~4 100 packets), and every message costs the
engine a fixed amount (its NATS client, decoder, and each task's update: ~240 µs of its CPU with the
shipped tasks). So while more batches wait in the queue, a shard's parts are held (copied) and go out
together with later ones, up to ``max_packets``; when nothing waits (a source slower than the
publisher), or a part has waited ``MAX_HOLD_S``, or the run ends, what is held goes out at once.

Each message carries ``probe_id``, ``shard``, ``n_shards``, a per-shard ``seq`` (1, 2, …: an engine
that owns the shard sees a gap if a message is lost in transit) and the cumulative ``probe_dropped``
count, so drops are visible downstream too. Over core NATS a finished run ends every shard it used
with an empty message (the next ``seq``): a lost tail shows as a gap too. With ``jetstream=True``
every message is published with a JetStream acknowledgement (pipelined, at most ``max_inflight``
unacknowledged): a message the stream did not store raises instead of being lost.

Flow control. Core NATS has none between a publisher and a subscriber: a subscriber that falls more
than the server's ``max_pending`` (64 MiB) behind is cut off by the server as a *slow consumer* and
loses what was sent meanwhile. JetStream is the remedy between processes (the stream stores, the
engine reads at its pace). Where the consumer lives in the same process (``netspectra up
--no-jetstream``), ``Publisher(consumed=...)`` reads how many packets it has received and the
publisher waits while it is more than ``max_ahead_packets`` ahead: nothing is outrun.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from netspectra.batch import PacketBatch
from netspectra.bounded import BoundedQueue
from netspectra.counters import RateLimitedLog
from netspectra.transport.codec import COMPRESSIONS, LAYOUTS, encode_batch, shard_of, split_by_shard
from netspectra.transport.nats_bus import (
    DEFAULT_SHARDS,
    DEFAULT_STREAM,
    DENSE_MIN_BYTES_PER_PACKET,
    NatsAuth,
    batch_subject,
    connect,
    encode_messages,
    ensure_stream,
    max_packets_for_payload,
)
from netspectra.transport.nats_send import install_direct_writes, publish_direct

log = logging.getLogger(__name__)

#: The longest a shard's packets wait in the publisher to go out with later ones (coalescing, see
#: ``Publisher._publish``), while more batches are queued.
MAX_HOLD_S = 0.25

__all__ = ["ProbeStats", "Publisher", "PublisherOptions"]


@dataclass(frozen=True)
class PublisherOptions:
    """How a probe publishes (see the module docstring).

    ``shard_fields``: the key fields of the shard hash; ``("SrcIP",)`` keeps every shipped task whole
    within one shard (each keys on SrcIP). ``max_packets``: packets per message, further capped by the
    server's ``max_payload`` — layout 1 by its fixed 49 bytes a packet (and the optional columns'),
    layout 2 by each message's real length (about 21 bytes a packet, so the default 32 768 packets
    fill some 690 kB; a message that comes out longer than ``max_payload`` is cut again).
    ``queue_batches``: bound of the hand-off queue. ``block``: a full queue makes the source wait (file
    replay) instead of dropping the batch (live capture).
    ``wire_layout``/``wire_compression``: the ``v1.PacketBatch`` layout (``docs/wire.md``): 2, the dense
    one (about 19-21 bytes per packet instead of 49; engines of this version or later read it), or 1 for
    engines older than layout 2; layout 2's columns may also be compressed (``lz4``, ``zstd``).
    """

    url: str = "nats://127.0.0.1:4222"
    subject: str = "gons.packets.raw"
    n_shards: int = DEFAULT_SHARDS
    shard_fields: tuple[str, ...] = ("SrcIP",)
    probe_id: str = "probe"
    max_packets: int = 32_768
    queue_batches: int = 16
    block: bool = True
    jetstream: bool = False
    stream: str = DEFAULT_STREAM
    max_inflight: int = 256
    link_type: int | None = None
    auth: NatsAuth = field(default_factory=NatsAuth)
    #: With ``Publisher(consumed=...)``: the most packets published and not yet received (well below
    #: the server's 64 MiB ``max_pending`` of a subscriber, at up to 49 bytes a packet).
    max_ahead_packets: int = 262_144
    wire_layout: int = 2
    wire_compression: str = "none"

    def __post_init__(self) -> None:
        if self.wire_layout not in LAYOUTS:
            raise ValueError(f"wire_layout must be one of {LAYOUTS}, got {self.wire_layout!r}")
        if self.wire_compression not in COMPRESSIONS:
            raise ValueError(
                f"wire_compression must be one of {', '.join(COMPRESSIONS)}, got {self.wire_compression!r}"
            )
        if self.wire_compression != "none" and self.wire_layout < 2:
            raise ValueError(f"wire_compression {self.wire_compression!r} needs wire_layout 2")


@dataclass
class ProbeStats:
    """Counters of one probe run (cumulative)."""

    batches_in: int = 0
    packets_in: int = 0
    dropped_batches: int = 0
    dropped_packets: int = 0
    messages: int = 0
    packets_published: int = 0
    bytes_published: int = 0
    publish_failed: int = 0
    flow_waits: int = 0
    end_markers: int = 0
    elapsed_s: float = 0.0
    per_shard_packets: list[int] = field(default_factory=list)

    @property
    def packets_per_second(self) -> float:
        return self.packets_published / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The counters (not the per-shard list), with ``packets_per_second``."""
        d = {k: v for k, v in self.__dict__.items() if k != "per_shard_packets"}
        d["packets_per_second"] = round(self.packets_per_second)
        return d


class Publisher:
    """Publishes every batch of a source (see the module docstring). One run per instance."""

    def __init__(
        self,
        options: PublisherOptions,
        kernel_dropped: Callable[[], int] | None = None,
        *,
        consumed: Callable[[], int] | None = None,
    ) -> None:
        """``kernel_dropped``: the source's cumulative drop counter (e.g. a live capture's kernel drops),
        read for every published batch and carried in its messages. ``consumed``: packets an in-process
        consumer has received so far (flow control, see the module docstring)."""
        if options.n_shards < 1:
            raise ValueError(f"n_shards must be at least 1, got {options.n_shards}")
        self.options = options
        self.stats = ProbeStats(per_shard_packets=[0] * options.n_shards)
        self._seq = [0] * options.n_shards
        self._queue: BoundedQueue[PacketBatch] = BoundedQueue(
            max(1, options.queue_batches), name="probe queue", unit="batches", logger=log
        )
        self._drop_log = RateLimitedLog(log, 10.0)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._kernel_dropped = kernel_dropped
        self._consumed = consumed
        self._halt: asyncio.Event | None = None
        self._scratch: dict[str, Any] = {}  # split_by_shard's reused buffers
        # per shard: packets split off earlier batches, held (copies) to go out with later ones
        self._held: list[list[PacketBatch]] = [[] for _ in range(options.n_shards)]
        self._held_n = [0] * options.n_shards
        self._held_since = [0.0] * options.n_shards  # monotonic time of the oldest held part
        # the held packets' earliest and latest timestamps (a capture's or several files' order is not
        # guaranteed: a message's span is its extremes')
        self._held_lo = [0] * options.n_shards
        self._held_hi = [0] * options.n_shards
        self._max_bytes: int | None = None  # the server's max_payload, once connected

    # -- source side (a thread) ------------------------------------------------------------------------

    def offer(self, batch: PacketBatch) -> bool:
        """Hand ``batch`` to the publisher; False (counted, logged with a rate limit) if it was dropped."""
        n = len(batch)
        self.stats.batches_in += 1
        self.stats.packets_in += n
        if self._queue.put(batch, block=self.options.block, abort=self._stop):
            return True
        if not self._queue.closed and not self._stop.is_set():
            self.stats.dropped_batches += 1
            self.stats.dropped_packets += n
        return False

    def _feed(self, source: Iterable[PacketBatch]) -> None:
        try:
            for batch in source:
                if self._stop.is_set():
                    break
                if len(batch):
                    self.offer(batch)
        except BaseException as exc:  # reported by run()
            self._error = exc
        finally:
            self._queue.close()  # the publishing side takes what is queued, then ends

    # -- publishing side (asyncio) ---------------------------------------------------------------------

    async def run(self, source: Iterable[PacketBatch], stop: asyncio.Event | None = None) -> ProbeStats:
        """Publish every batch of ``source`` (iterated in a thread), then flush; returns the counters.

        Ends when the source is exhausted or ``stop`` is set. Exceptions of the source (e.g. a damaged
        capture) are raised after everything before them was published.
        """
        opts = self.options
        self._halt = stop
        nc = await connect(
            opts.url, f"netspectra-probe:{opts.probe_id}", auth=opts.auth, pending_size=32 * 1024 * 1024
        )
        install_direct_writes(nc)  # batches go to the socket without nats-py's copies (nats_send)
        js = None
        if opts.jetstream:
            js = nc.jetstream(publish_async_max_pending=opts.max_inflight)
            await ensure_stream(js, opts.stream, opts.subject)
        # Layout 1: sized for batches with every optional column, so a probe that decodes them never
        # overflows. Layout 2 is ~21 bytes a packet where that worst case is 49 + 61: sizing it by the
        # worst case made ~9 500-packet messages (twice the messages, each with its per-message cost in
        # the NATS clients, the decoder and every task); its messages are checked by length instead
        # (encode_messages' max_bytes), capped per batch where not even its densest packets would fit.
        max_packets = (
            max_packets_for_payload(nc.max_payload, opts.max_packets, PacketBatch.OPTIONAL)
            if opts.wire_layout == 1
            else opts.max_packets
        )
        self._max_bytes = int(nc.max_payload)
        feeder = threading.Thread(target=self._feed, args=(source,), name="ns-probe-source", daemon=True)
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        feeder.start()
        failed = False
        try:
            while True:
                get = loop.run_in_executor(None, self._queue.get)
                if stop is not None:
                    stopper = asyncio.ensure_future(stop.wait())
                    done, _ = await asyncio.wait({get, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if get not in done:
                        self._stop.set()
                        get.cancel()
                        break
                    stopper.cancel()
                item = await get
                if item is None:  # the source ended and everything it queued is published
                    break
                await self._publish(nc, js, item, max_packets)
            await self._send_held(nc, js, max_packets)  # a stop or the end: nothing stays held
            if js is not None:
                await js.publish_async_completed()
            else:
                await self._publish_end_markers(nc)
            await nc.flush(timeout=60)
        except BaseException:
            failed = True
            raise
        finally:
            self._stop.set()
            self._queue.close()  # releases a get() still waiting in the executor
            with contextlib.suppress(Exception):
                await nc.drain()
            feeder.join(timeout=5)
            self.stats.elapsed_s = time.perf_counter() - t0
            if failed:  # what was offered and never went out (held, queued, mid-send) is counted, not gone
                lost = self.stats.packets_in - self.stats.packets_published - self.stats.dropped_packets
                if lost > 0:
                    self.stats.dropped_packets += lost
                    log.error("probe %s: %d packets not published (the run failed)", opts.probe_id, lost)
        if self._error is not None:
            raise self._error
        log.info(
            "probe %s: %d packets in %d messages, %d dropped, %.0f packets/s",
            opts.probe_id,
            self.stats.packets_published,
            self.stats.messages,
            self.stats.dropped_packets,
            self.stats.packets_per_second,
        )
        return self.stats

    def _check_ack(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            self.stats.publish_failed += 1
            self._drop_log.log(
                logging.ERROR,
                "JetStream did not store a message (%d so far): %r",
                self.stats.publish_failed,
                None if fut.cancelled() else fut.exception(),
            )

    async def _publish_end_markers(self, nc: Any) -> None:
        """Core NATS: one empty message after the last of every shard that carried any (the next
        ``seq``), so that an engine that missed the last messages sees the gap — without it, the loss
        of a replay's tail would show nowhere (JetStream loses nothing: no markers there)."""
        opts = self.options
        for shard, last in enumerate(self._seq):
            if last == 0:
                continue
            payload = encode_batch(
                PacketBatch.empty(0),
                seq=last + 1,
                probe_id=opts.probe_id,
                shard=shard,
                n_shards=opts.n_shards,
                link_type=opts.link_type,
                probe_dropped=self.stats.dropped_packets,
                shard_packets=self.stats.per_shard_packets[shard],
                layout=opts.wire_layout,
                compression=opts.wire_compression,
            )
            await nc.publish(batch_subject(opts.subject, shard), payload)
            self._seq[shard] = last + 1
            self.stats.end_markers += 1

    async def _wait_for_consumer(self) -> None:
        """Wait while the in-process consumer is more than ``max_ahead_packets`` behind (or a stop)."""
        assert self._consumed is not None
        limit = self.options.max_ahead_packets
        if self.stats.packets_published - self._consumed() <= limit:
            return
        self.stats.flow_waits += 1
        while self.stats.packets_published - self._consumed() > limit:
            if self._halt is not None and self._halt.is_set():
                return
            await asyncio.sleep(0.002)

    async def _publish(self, nc: Any, js: Any, batch: PacketBatch, max_packets: int) -> None:
        opts = self.options
        if opts.n_shards == 1:
            parts: Sequence[PacketBatch] = [batch]
        else:
            # the parts are encoded or held (copied) before the next batch: one scratch serves all
            shards = shard_of(batch, opts.n_shards, opts.shard_fields)
            parts = split_by_shard(batch, shards, opts.n_shards, scratch=self._scratch)
        # Coalescing: a shard's part of this batch is held (copied) while more batches wait in the
        # queue and it and the shard's held packets stay under max_packets; they go out as one message
        # with a later part. Messages then come near max_packets even where a capture batch splits
        # into small parts (a 65 536-packet batch into 16 shards: ~4 100 packets a part) — each
        # message costs the engine's NATS client, its decoder and every task a fixed amount (~240 µs
        # of the engine's CPU a message with the shipped tasks). With nothing waiting, everything held
        # goes out at once: a slow source's packets are not held back; nor are a quiet shard's for
        # longer than MAX_HOLD_S while the queue stays busy.
        more = len(self._queue) > 0
        now = time.monotonic()
        for shard, part in enumerate(parts):
            n = len(part)
            if n == 0:
                continue
            held = self._held_n[shard]
            if held and (
                held + n > max_packets or self._spans_too_long(shard, part) or not self._joins(shard, part)
            ):
                await self._send_shard(nc, js, shard, self._take_held(shard), max_packets)
                held = 0
            if more and held + n < max_packets:
                lo, hi = int(part.ts_ns.min()), int(part.ts_ns.max())
                if not held:
                    self._held_since[shard] = now
                    self._held_lo[shard], self._held_hi[shard] = lo, hi
                else:
                    self._held_lo[shard] = min(self._held_lo[shard], lo)
                    self._held_hi[shard] = max(self._held_hi[shard], hi)
                self._held[shard].append(part.copy())  # the part is a view of the split's scratch
                self._held_n[shard] += n
            else:
                await self._send_shard(nc, js, shard, self._take_held(shard, part), max_packets)
        if not more:
            await self._send_held(nc, js, max_packets)
            return
        for shard in range(opts.n_shards):
            if self._held_n[shard] and now - self._held_since[shard] > MAX_HOLD_S:
                await self._send_shard(nc, js, shard, self._take_held(shard), max_packets)

    def _joins(self, shard: int, part: PacketBatch) -> bool:
        """Whether ``part`` can join the shard's held packets in one batch: the same optional columns
        and dimension columns (:meth:`PacketBatch.concat`; batches of files of different kinds may
        differ)."""
        first = self._held[shard][0]
        if first.present() != part.present() or (first.dims is None) != (part.dims is None):
            return False
        return set(first.dims or ()) == set(part.dims or ())

    def _spans_too_long(self, shard: int, part: PacketBatch) -> bool:
        """Whether the shard's held packets and ``part`` would span 2**32 ns or more (from the earliest
        to the latest timestamp of both): layout 2 then sends 8-byte timestamps instead of 4-byte offsets
        for the whole message (docs/wire.md), so the held packets go out first."""
        if self.options.wire_layout < 2:
            return False
        lo = min(self._held_lo[shard], int(part.ts_ns.min()))
        hi = max(self._held_hi[shard], int(part.ts_ns.max()))
        return hi - lo >= 1 << 32

    def _take_held(self, shard: int, part: PacketBatch | None = None) -> PacketBatch:
        """The shard's held packets (then ``part``) as one batch; nothing is held afterwards."""
        pieces = self._held[shard] + ([part] if part is not None else [])
        self._held[shard] = []
        self._held_n[shard] = 0
        return pieces[0] if len(pieces) == 1 else PacketBatch.concat(pieces)

    async def _send_held(self, nc: Any, js: Any, max_packets: int) -> None:
        """Publish every shard's held packets."""
        for shard in range(self.options.n_shards):
            if self._held_n[shard]:
                await self._send_shard(nc, js, shard, self._take_held(shard), max_packets)

    async def _send_shard(self, nc: Any, js: Any, shard: int, part: PacketBatch, max_packets: int) -> None:
        """Publish ``part`` (packets of ``shard``) as messages of at most ``max_packets`` packets."""
        opts = self.options
        n = len(part)
        kernel_dropped = int(self._kernel_dropped()) if self._kernel_dropped is not None else 0
        if opts.wire_layout > 1 and self._max_bytes is not None:
            # more packets than this never fit: cutting such a message again would cost an encoding
            max_packets = max_packets_for_payload(
                self._max_bytes, max_packets, part.present(), per_packet=DENSE_MIN_BYTES_PER_PACKET
            )
        subject = batch_subject(opts.subject, shard)
        for seq, payload in encode_messages(
            part,
            max_packets,
            self._seq[shard] + 1,
            first_packet=self.stats.per_shard_packets[shard],
            max_bytes=self._max_bytes,
            probe_id=opts.probe_id,
            shard=shard,
            n_shards=opts.n_shards,
            link_type=opts.link_type,
            probe_dropped=self.stats.dropped_packets,
            kernel_dropped=kernel_dropped,
            layout=opts.wire_layout,
            compression=opts.wire_compression,
        ):
            if js is not None:
                fut = await js.publish_async(subject, payload, wait_stall=60)
                fut.add_done_callback(self._check_ack)
            else:
                if self._consumed is not None:
                    await self._wait_for_consumer()
                await publish_direct(nc, subject, payload)
            self._seq[shard] = seq
            self.stats.messages += 1
            self.stats.bytes_published += len(payload)
        self.stats.packets_published += n
        self.stats.per_shard_packets[shard] += n
