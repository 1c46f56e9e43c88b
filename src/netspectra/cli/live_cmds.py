"""``netspectra probe`` and ``netspectra engine``: the live pipeline (``docs/live.md``).

``probe`` publishes packets to NATS (here: replayed capture files; any iterator of
:class:`~netspectra.batch.PacketBatch` can be published with :func:`publish_source`, which is how a live
interface source plugs in). ``engine`` consumes them into the configured task groups and writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from nats.errors import Error as NatsError

from netspectra.batch import PacketBatch
from netspectra.capture.errors import CaptureError
from netspectra.cli.common import ConfigOption, fail
from netspectra.config import ConfigError, load_config
from netspectra.config.models import PersistenceConfig
from netspectra.engine.kind import columns_needed
from netspectra.engine.manager import Manager
from netspectra.engine.periods_ledger import LedgerError
from netspectra.engine.stream import StreamConsumer, StreamOptions, StreamStats
from netspectra.ops.options import OpsListenOption
from netspectra.probe.live import LiveCapture, LiveCaptureError, LiveOptions
from netspectra.probe.persist import Persister, PersistStats
from netspectra.probe.publisher import ProbeStats, Publisher, PublisherOptions
from netspectra.probe.replay import DEFAULT_REPLAY_BATCH, replay_files
from netspectra.sketches.keys import validate_fields
from netspectra.transport.nats_bus import DEFAULT_QUEUE_GROUP, DEFAULT_STREAM

if TYPE_CHECKING:
    from netspectra.ops.endpoint import OpsEndpoint

log = logging.getLogger(__name__)

__all__ = ["engine", "make_persister", "probe", "publish_source"]

UrlOption = Annotated[
    str | None, typer.Option("--url", help="NATS server URL (default: probe.nats_url of the configuration).")
]
SubjectOption = Annotated[
    str | None,
    typer.Option(
        "--subject",
        help="Base subject (default: probe.subject). Batches go to <subject>.<shard>; <subject> itself "
        "carries the original's one-PacketInfo-per-message format.",
    ),
]
ShardsOption = Annotated[
    int | None,
    typer.Option(
        "--shards",
        min=1,
        help="Number of shard subjects (default: probe.shards, 16); probe and engines must agree.",
    ),
]
JetStreamOption = Annotated[
    bool,
    typer.Option(
        "--jetstream/--no-jetstream",
        help="Go through a JetStream stream (stored; engines resume from a durable consumer).",
    ),
]
StreamOption = Annotated[str, typer.Option("--stream", help="JetStream stream name.")]


def _start_ops(service: str, option: str | None, cfg: Any) -> OpsEndpoint | None:
    """The started ops endpoint of ``service`` (``--ops-listen``, else ``ops.listen``), or None."""
    from netspectra.ops.endpoint import resolve_listen, start_ops

    try:
        return start_ops(service, resolve_listen(option, cfg))
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None


_BACKGROUND: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones


def _ops_tasks(ops: OpsEndpoint | None, stop: asyncio.Event) -> None:
    """Start, on the running loop, the tasks of ``ops``: the liveness heartbeat, and readiness off
    once ``stop`` is set. They end with the loop (``asyncio.run`` cancels what is left)."""
    if ops is None:
        return

    async def stopping() -> None:
        await stop.wait()
        ops.set_stopping()

    for coro in (ops.heartbeat.run(), stopping()):
        task = asyncio.create_task(coro)
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)


def _install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)


def publish_source(
    source: Iterable[PacketBatch],
    options: PublisherOptions,
    *,
    on_stop: Callable[[], None] | None = None,
    kernel_dropped: Callable[[], int] | None = None,
    on_publisher: Callable[[Publisher], None] | None = None,
    ops: OpsEndpoint | None = None,
) -> ProbeStats:
    """Publish every batch of ``source`` with ``options`` until it ends or SIGINT/SIGTERM; the counters.

    The seam for any source (file replay, live interface): ``on_stop`` is called on SIGINT/SIGTERM so
    that a source blocked waiting for packets can end its iteration (e.g. a live capture's ``stop``);
    ``kernel_dropped`` reads the source's cumulative drop counter into every message. A live source
    should use ``PublisherOptions(block=False)``: a full queue then drops (and counts) instead of
    stalling the capture. ``on_publisher`` receives the :class:`Publisher` before it runs (its
    ``stats`` are live); ``ops`` gets the loop's heartbeat and turns not-ready on SIGINT/SIGTERM.
    """

    async def main() -> ProbeStats:
        stop = asyncio.Event()
        if on_stop is not None:
            stop_source = on_stop

            async def watch() -> None:
                await stop.wait()
                stop_source()

            watcher = asyncio.create_task(watch())
        _install_stop(stop)
        _ops_tasks(ops, stop)
        publisher = Publisher(options, kernel_dropped=kernel_dropped)
        if on_publisher is not None:
            on_publisher(publisher)
        try:
            return await publisher.run(source, None if on_stop else stop)
        finally:
            if on_stop is not None:
                watcher.cancel()

    return asyncio.run(main())


def make_persister(cfg: PersistenceConfig, *, live: bool) -> Persister | None:
    """The probe's persister for ``probe.persistence`` (not started), or None when it is off.

    A file replay has no raw frames (and its input is already a capture file): ``pcap`` persistence
    is then skipped with a warning; ``parquet``/``text`` (and ``gob``, written as Parquet) work for both.
    """
    if not cfg.enabled:
        return None
    if not live and cfg.encoding == "pcap":
        log.warning("probe.persistence: pcap needs a live capture (the replayed files are pcap already): off")
        return None
    return Persister.from_config(cfg, rotate_bytes=cfg.rotate_bytes, rotate_seconds=cfg.rotate_seconds)


def _persisting(source: Iterable[PacketBatch], persister: Persister) -> Iterator[PacketBatch]:
    for batch in source:
        persister.offer(batch, None)
        yield batch


def _persist_summary(stats: PersistStats | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {
        "written_packets": stats.written_packets,
        "written_bytes": stats.written_bytes,
        "dropped_packets": stats.dropped_packets,
        "dropped_batches": stats.dropped_batches,
        "errors": stats.errors,
        "files": len(stats.files),
    }


def probe(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Capture files to replay (pcap/pcapng, optionally gzip).", show_default=False),
    ] = None,
    config: ConfigOption = None,
    iface: Annotated[
        str | None,
        typer.Option(
            "--iface", "-i", help="Capture live from this interface (default: probe.interface when no file)."
        ),
    ] = None,
    bpf: Annotated[
        str | None,
        typer.Option(
            "--bpf", help="tcpdump filter expression for the live capture (default: probe.bpf_filter)."
        ),
    ] = None,
    snaplen: Annotated[
        int | None,
        typer.Option(
            "--snaplen", min=16, max=262_144, help="Bytes kept per packet (default: probe.snaplen, 1600)."
        ),
    ] = None,
    promisc: Annotated[
        bool | None,
        typer.Option("--promisc/--no-promisc", help="Promiscuous mode (default: probe.promiscuous, on)."),
    ] = None,
    block_size: Annotated[
        int | None,
        typer.Option(
            "--block-size", min=4096, help="Ring block size in bytes (default: probe.block_size, 1 MiB)."
        ),
    ] = None,
    block_count: Annotated[
        int | None, typer.Option("--block-count", min=2, help="Ring blocks (default: probe.block_count, 64).")
    ] = None,
    ring_mb: Annotated[
        int | None,
        typer.Option("--ring-mb", min=1, help="Ring size in MiB (sets the block count for the block size)."),
    ] = None,
    fanout_group: Annotated[
        int | None,
        typer.Option(
            "--fanout-group",
            min=0,
            max=0xFFFF,
            help="PACKET_FANOUT group: probes of one group split the interface's packets by flow hash.",
        ),
    ] = None,
    ready_file: Annotated[
        Path | None,
        typer.Option("--ready-file", hidden=True, help="Touched once the live capture socket is bound."),
    ] = None,
    url: UrlOption = None,
    subject: SubjectOption = None,
    shards: ShardsOption = None,
    shard_fields: Annotated[
        str | None,
        typer.Option(
            "--shard-fields",
            help="Comma-separated key fields of the shard hash (default: probe.shard_fields, SrcIP). Every "
            "task must key on all of them to stay whole per shard (the shipped tasks all key on SrcIP).",
        ),
    ] = None,
    speed: Annotated[
        float,
        typer.Option(
            "--speed",
            min=0.0,
            help="Replay pace: 1 = as recorded, 10 = ten times faster, 0 = as fast as possible.",
        ),
    ] = 1.0,
    probe_id: Annotated[
        str | None, typer.Option("--probe-id", help="Name in every message (default: host:pid).")
    ] = None,
    max_packets: Annotated[
        int, typer.Option("--max-packets", min=1, help="Packets per message (also capped by max_payload).")
    ] = 16_384,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Packets per read batch.")] = (
        DEFAULT_REPLAY_BATCH
    ),
    jetstream: JetStreamOption = False,
    stream: StreamOption = DEFAULT_STREAM,
    json_out: Annotated[bool, typer.Option("--json", help="Print the counters as JSON on stdout.")] = False,
    ops_listen: OpsListenOption = None,
) -> None:
    """Publish packets to NATS — replayed capture files, or live from --iface — sharded by a flow hash.

    Live: runs until SIGINT/SIGTERM, then drains the ring, publishes what was captured, stops the
    persistence and reports packets, kernel drops, the probe's own drops and what was persisted.
    """
    try:
        cfg = load_config(config)
        pc = cfg.probe
        fields = (
            tuple(
                validate_fields([f.strip() for f in shard_fields.split(",") if f.strip()], "--shard-fields")
            )
            if shard_fields is not None
            else pc.shard_fields
        )
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    if files and iface:
        raise fail("give capture files to replay or --iface to capture, not both")
    interface = iface or ("" if files else pc.interface)
    if not files and not interface:
        raise fail("give capture files to replay, or --iface (or probe.interface) to capture live")
    options = PublisherOptions(
        url=url or pc.nats_url,
        subject=subject or pc.subject,
        n_shards=shards or pc.shards,
        shard_fields=fields,
        probe_id=probe_id or f"{socket.gethostname()}:{os.getpid()}",
        max_packets=max_packets,
        block=not interface,  # a live capture never waits for NATS: a full queue drops (counted)
        jetstream=jetstream,
        stream=stream,
    )
    try:
        persister = make_persister(pc.persistence, live=bool(interface))
    except ValueError as exc:
        raise fail(f"probe.persistence: {exc}") from None
    pops = _ProbeOps(_start_ops("probe", ops_listen, cfg), options.url, persister)
    summary: dict[str, Any]
    if interface:
        bs = block_size or pc.block_size
        bc = block_count or pc.block_count
        if ring_mb is not None:
            bc = max(2, (ring_mb << 20) // bs)
        live_opts = LiveOptions(
            interface=interface,
            snaplen=snaplen or pc.snaplen,
            promiscuous=pc.promiscuous if promisc is None else promisc,
            block_size=bs,
            block_count=bc,
            fanout_group=pc.fanout_group if fanout_group is None else fanout_group,
            bpf_filter=(bpf if bpf is not None else pc.bpf_filter) or None,
            keep_raw=persister is not None and persister.encoding == "pcap",
            batch_size=batch_size,
            extras=bool(columns_needed(cfg)),  # the TCP flags, VLANs, ... a flows task needs
        )
        summary = _run_live(live_opts, options, persister, ready_file, pops)
    else:
        assert files
        source: Iterable[PacketBatch] = replay_files(
            files, speed=speed or None, batch_size=batch_size, extras=bool(columns_needed(cfg))
        )
        if persister is not None:
            persister.start()
            source = _persisting(source, persister)
        try:
            stats = publish_source(pops.wrap(source), options, on_publisher=pops.set_publisher, ops=pops.ops)
        except CaptureError as exc:
            raise fail(str(exc), 1) from None
        except (OSError, NatsError) as exc:
            raise fail(f"NATS at {options.url}: {exc or type(exc).__name__}", 1) from None
        finally:
            pstats = persister.stop() if persister is not None else None
        summary = _probe_summary(stats)
        summary["persistence"] = _persist_summary(pstats)
    pops.close()
    if json_out:
        print(json.dumps(summary))
    else:
        log.warning("probe done: %s", summary)


class _ProbeOps:
    """The probe's ops endpoint (or none): its collectors read the parts as they come to exist."""

    def __init__(self, ops: OpsEndpoint | None, url: str, persister: Persister | None) -> None:
        self.ops = ops
        self.publisher: Publisher | None = None
        self.cap: LiveCapture | None = None
        self.finished = False
        self.meter: Any = None
        if ops is not None:
            from netspectra.ops.collectors import BatchMeter
            from netspectra.ops.services import wire_probe

            self.meter = BatchMeter()
            wire_probe(
                ops,
                url,
                lambda: self.publisher.stats if self.publisher is not None else None,
                live=lambda: self.cap.live_stats() if self.cap is not None else None,
                persister=lambda: persister.stats if persister is not None else None,
                meter=self.meter,
                finished=lambda: self.finished,
            )

    def wrap(self, source: Iterable[PacketBatch]) -> Iterable[PacketBatch]:
        return self.meter.wrap(source) if self.meter is not None else source

    def set_publisher(self, publisher: Publisher) -> None:
        self.publisher = publisher

    def close(self) -> None:
        self.finished = True
        if self.ops is not None:
            self.ops.stop()


def _probe_summary(stats: ProbeStats) -> dict[str, Any]:
    summary = {k: v for k, v in stats.__dict__.items() if k != "per_shard_packets"}
    summary["packets_per_second"] = round(stats.packets_per_second)
    return summary


def _run_live(
    live_opts: LiveOptions,
    options: PublisherOptions,
    persister: Persister | None,
    ready_file: Path | None,
    pops: _ProbeOps | None = None,
) -> dict[str, Any]:
    """Capture ``live_opts.interface`` and publish until SIGINT/SIGTERM; the final report."""
    try:
        cap = LiveCapture(live_opts)
    except LiveCaptureError as exc:
        raise fail(str(exc), 1) from None
    if pops is not None:
        pops.cap = cap
    pstats: PersistStats | None = None
    try:
        if persister is not None:
            persister.start()
        log.warning(
            "probe: capturing on %s (snaplen %d%s), publishing to %s",
            live_opts.interface,
            live_opts.snaplen,
            f", filter {live_opts.bpf_filter!r}" if live_opts.bpf_filter else "",
            options.url,
        )
        if ready_file is not None:
            ready_file.touch()
        batches = cap.batches(persister.offer if persister is not None else None)
        try:
            stats = publish_source(
                pops.wrap(batches) if pops is not None else batches,
                options,
                on_stop=cap.stop,
                kernel_dropped=cap.kernel_drops,
                on_publisher=pops.set_publisher if pops is not None else None,
                ops=pops.ops if pops is not None else None,
            )
        except (OSError, NatsError) as exc:
            raise fail(f"NATS at {options.url}: {exc or type(exc).__name__}", 1) from None
    finally:
        cap.stop()
        cap.close()
        if persister is not None:
            pstats = persister.stop()
    live = cap.live_stats()
    summary = _probe_summary(stats)
    summary["kernel_packets"] = live.kernel_packets
    summary["kernel_drops"] = live.kernel_drops
    summary["captured_records"] = live.capture.records
    summary["captured_ip_packets"] = live.capture.ip_packets
    summary["persistence"] = _persist_summary(pstats)
    return summary


def engine(
    config: ConfigOption = None,
    url: UrlOption = None,
    subject: SubjectOption = None,
    shards: ShardsOption = None,
    member: Annotated[int, typer.Option("--member", min=0, help="This engine's index among --members.")] = 0,
    members: Annotated[
        int, typer.Option("--members", min=1, help="Engines sharing the shards (each owns shard % members).")
    ] = 1,
    queue_group: Annotated[
        str, typer.Option("--queue-group", help="NATS queue group.")
    ] = DEFAULT_QUEUE_GROUP,
    compat: Annotated[
        bool, typer.Option("--compat/--no-compat", help="Also read the original's PacketInfo subject.")
    ] = True,
    jetstream: JetStreamOption = False,
    stream: StreamOption = DEFAULT_STREAM,
    durable: Annotated[
        str,
        typer.Option("--durable", help="JetStream durable consumer name (suffixed -<member>of<members>)."),
    ] = "netspectra-engine",
    writers: Annotated[
        bool, typer.Option("--writers/--no-writers", help="Store snapshots with the configured writers.")
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", file_okay=False, help="At stop, write each exact task's flows to <task>.parquet."
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option("--duration", min=0.0, help="Stop after this many seconds (default: never)."),
    ] = None,
    ops_listen: OpsListenOption = None,
) -> None:
    """Consume packets from NATS into the configured tasks; stop gracefully on SIGINT/SIGTERM."""
    from netspectra.alerting.alerter import AlertingConfigError, attach_alerter
    from netspectra.ops.services import wire_engine
    from netspectra.storage.alerts import alert_sink_for

    try:
        cfg = load_config(config)
        manager = Manager.from_config(cfg, writers=writers)
        # the original's engine ran the alerter: rules every check_interval and once at stop
        alerter = attach_alerter(manager, cfg, sink=alert_sink_for(cfg) if writers else None)
    except (ConfigError, AlertingConfigError) as exc:
        raise fail(str(exc)) from None
    if member >= members:
        raise fail(f"--member {member} must be below --members {members}")
    options = StreamOptions(
        url=url or cfg.probe.nats_url,
        subject=subject or cfg.probe.subject,
        n_shards=shards or cfg.probe.shards,
        member=member,
        members=members,
        queue_group=queue_group,
        compat=compat,
        jetstream=jetstream,
        stream=stream,
        durable=durable,
    )
    ops = _start_ops("engine", ops_listen, cfg)
    engine_ops = wire_engine(ops, manager, alerter)
    manager.start()

    async def main() -> StreamStats:
        stop = asyncio.Event()
        _install_stop(stop)
        consumer = StreamConsumer(manager, options)
        if engine_ops is not None:
            engine_ops.set_consumer(consumer)
        _ops_tasks(ops, stop)
        task = asyncio.create_task(consumer.run(stop))
        if duration is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), duration)
            stop.set()
        return await task

    try:
        stats = asyncio.run(main())
    except (OSError, NatsError) as exc:
        manager.stop()
        raise fail(f"NATS at {options.url}: {exc or type(exc).__name__}", 1) from None
    except LedgerError as exc:
        manager.stop()
        raise fail(str(exc), 1) from None
    finally:
        if ops is not None:
            ops.stop()
    if out is not None:
        _write_flows(manager, out)
    summary: dict[str, Any] = {"stream": stats.as_dict(), "engine": manager.metrics_dict()}
    print(json.dumps(summary, default=str))
    if stats.aborted:
        # JetStream: nothing was acknowledged that is not stored; the next engine redoes the period
        raise fail(f"engine stopped: {stats.aborted}", 1)


def _write_flows(manager: Manager, out: Path) -> None:
    from netspectra.output.flow_table import write_parquet
    from netspectra.tasks.exact import FlowSnapshot

    out.mkdir(parents=True, exist_ok=True)
    for t in manager.tasks:
        snap = t.snapshot()
        if isinstance(snap, FlowSnapshot):
            write_parquet(snap.to_arrow(), out / f"{t.name}.parquet")
