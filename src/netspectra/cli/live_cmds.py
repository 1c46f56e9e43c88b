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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer
from nats.errors import Error as NatsError

from netspectra.batch import PacketBatch
from netspectra.capture.errors import CaptureError
from netspectra.cli.common import ConfigOption, fail
from netspectra.config import ConfigError, load_config
from netspectra.engine.manager import Manager
from netspectra.engine.stream import StreamConsumer, StreamOptions, StreamStats
from netspectra.probe.publisher import ProbeStats, Publisher, PublisherOptions
from netspectra.probe.replay import DEFAULT_REPLAY_BATCH, replay_files
from netspectra.sketches.keys import validate_fields
from netspectra.transport.nats_bus import DEFAULT_QUEUE_GROUP, DEFAULT_SHARDS, DEFAULT_STREAM

log = logging.getLogger(__name__)

__all__ = ["engine", "probe", "publish_source"]

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
    int,
    typer.Option("--shards", min=1, help="Number of shard subjects; probe and engines must agree."),
]
JetStreamOption = Annotated[
    bool,
    typer.Option(
        "--jetstream/--no-jetstream",
        help="Go through a JetStream stream (stored; engines resume from a durable consumer).",
    ),
]
StreamOption = Annotated[str, typer.Option("--stream", help="JetStream stream name.")]


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
) -> ProbeStats:
    """Publish every batch of ``source`` with ``options`` until it ends or SIGINT/SIGTERM; the counters.

    The seam for any source (file replay, live interface): ``on_stop`` is called on SIGINT/SIGTERM so
    that a source blocked waiting for packets can end its iteration (e.g. a live capture's ``stop``);
    ``kernel_dropped`` reads the source's cumulative drop counter into every message. A live source
    should use ``PublisherOptions(block=False)``: a full queue then drops (and counts) instead of
    stalling the capture.
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
        try:
            return await Publisher(options, kernel_dropped=kernel_dropped).run(
                source, None if on_stop else stop
            )
        finally:
            if on_stop is not None:
                watcher.cancel()

    return asyncio.run(main())


def probe(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Capture files to replay (pcap/pcapng, optionally gzip).", show_default=False),
    ] = None,
    config: ConfigOption = None,
    url: UrlOption = None,
    subject: SubjectOption = None,
    shards: ShardsOption = DEFAULT_SHARDS,
    shard_fields: Annotated[
        str,
        typer.Option(
            "--shard-fields",
            help="Comma-separated key fields of the shard hash. Every task must key on all of them to "
            "stay whole per shard (the shipped tasks all key on SrcIP).",
        ),
    ] = "SrcIP",
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
) -> None:
    """Replay capture files to NATS, one columnar batch per message, sharded by a flow hash."""
    try:
        cfg = load_config(config)
        fields = tuple(
            validate_fields([f.strip() for f in shard_fields.split(",") if f.strip()], "--shard-fields")
        )
    except (ConfigError, ValueError) as exc:
        raise fail(str(exc)) from None
    if not files:
        raise fail("give capture files to replay")
    options = PublisherOptions(
        url=url or cfg.probe.nats_url,
        subject=subject or cfg.probe.subject,
        n_shards=shards,
        shard_fields=fields,
        probe_id=probe_id or f"{socket.gethostname()}:{os.getpid()}",
        max_packets=max_packets,
        block=True,
        jetstream=jetstream,
        stream=stream,
    )
    try:
        stats = publish_source(replay_files(files, speed=speed or None, batch_size=batch_size), options)
    except CaptureError as exc:
        raise fail(str(exc), 1) from None
    except (OSError, NatsError) as exc:
        raise fail(f"NATS at {options.url}: {exc or type(exc).__name__}", 1) from None
    summary = {k: v for k, v in stats.__dict__.items() if k != "per_shard_packets"}
    summary["packets_per_second"] = round(stats.packets_per_second)
    if json_out:
        print(json.dumps(summary))
    else:
        log.warning("probe done: %s", summary)


def engine(
    config: ConfigOption = None,
    url: UrlOption = None,
    subject: SubjectOption = None,
    shards: ShardsOption = DEFAULT_SHARDS,
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
) -> None:
    """Consume packets from NATS into the configured tasks; stop gracefully on SIGINT/SIGTERM."""
    try:
        cfg = load_config(config)
        manager = Manager.from_config(cfg, writers=writers)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if member >= members:
        raise fail(f"--member {member} must be below --members {members}")
    options = StreamOptions(
        url=url or cfg.probe.nats_url,
        subject=subject or cfg.probe.subject,
        n_shards=shards,
        member=member,
        members=members,
        queue_group=queue_group,
        compat=compat,
        jetstream=jetstream,
        stream=stream,
        durable=durable,
    )
    manager.start()

    async def main() -> StreamStats:
        stop = asyncio.Event()
        _install_stop(stop)
        consumer = StreamConsumer(manager, options)
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
    if out is not None:
        _write_flows(manager, out)
    summary: dict[str, Any] = {"stream": stats.as_dict(), "engine": manager.metrics_dict()}
    print(json.dumps(summary, default=str))


def _write_flows(manager: Manager, out: Path) -> None:
    from netspectra.output.flow_table import write_parquet
    from netspectra.tasks.exact import FlowSnapshot

    out.mkdir(parents=True, exist_ok=True)
    for t in manager.tasks:
        snap = t.snapshot()
        if isinstance(snap, FlowSnapshot):
            write_parquet(snap.to_arrow(), out / f"{t.name}.parquet")
