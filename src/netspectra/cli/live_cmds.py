"""``netspectra probe`` and ``netspectra engine``: the live pipeline (``docs/live.md``).

Each command parses its options, builds its service (:mod:`netspectra.services.probe`,
:mod:`netspectra.services.engine`), runs it in a :class:`~netspectra.services.stack.Stack` (signals,
ops endpoint, bounded stop) and prints the summary.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from netspectra.cli.common import ConfigOption, console, err_console, fail, require
from netspectra.ops.options import OpsListenOption
from netspectra.transport.names import DEFAULT_QUEUE_GROUP, DEFAULT_STREAM

log = logging.getLogger(__name__)

__all__ = ["engine", "probe"]

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="NATS server URL (default: probe.nats_url of the configuration). Credentials and TLS: the "
        "nats section (NATS_USER, NATS_PASSWORD, NATS_TOKEN).",
    ),
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
        help="Go through a JetStream stream (stored; flow control: an engine that falls behind lags instead "
        "of losing messages; engines resume from a durable consumer).",
    ),
]
StreamOption = Annotated[str, typer.Option("--stream", help="JetStream stream name.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="At the end, print the counters as one JSON object on stdout.")
]


def _load(config: Path | None) -> Any:
    from netspectra.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def _run(name: str, services: list[Any], cfg: Any, ops_listen: str | None, json_out: bool, **kw: Any) -> None:
    """Run ``services`` as a stack with the ops endpoint of ``name``; print the summary; exit on error."""
    from netspectra.ops.endpoint import resolve_listen, start_ops
    from netspectra.services.stack import Stack, StopSignals, arm_exit_watchdog
    from netspectra.services.summary import print_summary

    signals = StopSignals(f"netspectra {name}")
    try:
        ops = start_ops(name, resolve_listen(ops_listen, cfg))
    except (OSError, ValueError) as exc:
        signals.restore()
        raise fail(str(exc)) from None

    def started(stack: Stack) -> None:
        lines = [s.banner() for s in stack.services if s.banner()]
        if lines:
            err_console.print("\n".join(lines) + " — Ctrl-C stops", highlight=False, soft_wrap=True)

    result = Stack(f"netspectra {name}", services, ops=ops, signals=signals, on_started=started, **kw).run()
    # a one-service command's JSON is that service's counters
    print_summary(console, result.sections, result.summary.get(name, result.summary), as_json=json_out)
    arm_exit_watchdog(result.code if result.error else 0)
    if result.error:
        raise fail(result.error, result.code)


def _wire_option(wire: str | None) -> tuple[int | None, str | None]:
    """``--wire``: ``"2+lz4"`` -> ``(2, "lz4")``; ``None`` -> the configuration's values."""
    if wire is None:
        return None, None
    layout, _, compression = wire.strip().partition("+")
    if layout not in ("1", "2") or compression not in ("", "lz4", "zstd") or (layout == "1" and compression):
        raise fail(f"--wire {wire!r}: expected 1, 2, 2+lz4 or 2+zstd")
    return int(layout), compression or "none"


def probe(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Capture files to replay (pcap/pcapng, optionally gzip).", show_default=False, metavar="FILE"
        ),
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
            help="PACKET_FANOUT group: probes (or --sockets of this probe) of one group split the "
            "interface's packets by flow hash.",
        ),
    ] = None,
    fanout_mode: Annotated[
        str,
        typer.Option(
            "--fanout-mode", help="PACKET_FANOUT mode: hash (flows whole), lb, cpu, rollover, rnd, qm."
        ),
    ] = "hash",
    sockets: Annotated[
        int,
        typer.Option(
            "--sockets",
            min=1,
            max=64,
            help="Capture sockets of the fan-out group in this process (one thread each).",
        ),
    ] = 1,
    publish: Annotated[
        bool,
        typer.Option(
            "--publish/--no-publish",
            help="--no-publish: capture (and persist) without NATS, then print the counters (measurements).",
        ),
    ] = True,
    count: Annotated[
        int, typer.Option("--count", min=0, help="Stop after this many captured frames (0: no limit).")
    ] = 0,
    duration: Annotated[
        float, typer.Option("--duration", min=0.0, help="Stop after this many seconds (0: no limit).")
    ] = 0.0,
    idle: Annotated[
        float,
        typer.Option(
            "--idle", min=0.0, help="Stop once no frame came for this many seconds after the first."
        ),
    ] = 0.0,
    ready_file: Annotated[
        Path | None,
        typer.Option("--ready-file", hidden=True, help="Touched once the source is open."),
    ] = None,
    stop_file: Annotated[
        Path | None, typer.Option("--stop-file", hidden=True, help="Stop as soon as this file exists.")
    ] = None,
    go_file: Annotated[
        Path | None,
        typer.Option(
            "--go-file", hidden=True, help="Start reading only once this file exists (ring drain rate)."
        ),
    ] = None,
    dump: Annotated[
        Path | None,
        typer.Option(
            "--dump-batches", hidden=True, help="Write each socket's batches to PREFIX.<i>.npz (tests)."
        ),
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
    ] = 32_768,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=4_194_304, help="Packets per read batch.")
    ] = 65_536,
    wire: Annotated[
        str | None,
        typer.Option(
            "--wire",
            help="Message layout (docs/wire.md): 2 (dense, about 20 bytes a packet), 1 (49 bytes a packet, "
            "for engines older than layout 2), 2+lz4 or 2+zstd (compressed columns). Default: "
            "probe.wire_layout and probe.wire_compression (2, none).",
        ),
    ] = None,
    jetstream: JetStreamOption = False,
    stream: StreamOption = DEFAULT_STREAM,
    json_out: JsonOption = False,
    ops_listen: OpsListenOption = None,
) -> None:
    """Publish packets to NATS — replayed capture files, or live from --iface — sharded by a flow hash.

    Live: runs until SIGINT/SIGTERM (or --count/--duration/--idle), then drains the ring, publishes what
    was captured, stops the persistence and reports packets, kernel drops, the probe's own drops and
    what was persisted. --no-publish captures without NATS (rate measurements, tests).
    """
    require("probe", "live")
    from netspectra.services.base import ServiceError
    from netspectra.services.probe import ProbeOptions, ProbeService
    from netspectra.sketches.keys import validate_fields

    cfg = _load(config)
    wire_layout, wire_compression = _wire_option(wire)
    try:
        fields = (
            tuple(
                validate_fields([f.strip() for f in shard_fields.split(",") if f.strip()], "--shard-fields")
            )
            if shard_fields is not None
            else None
        )
        options = ProbeOptions.from_config(
            cfg,
            files=files or (),
            iface=iface,
            bpf=bpf,
            snaplen=snaplen,
            promisc=promisc,
            block_size=block_size,
            block_count=block_count,
            ring_mb=ring_mb,
            fanout_group=fanout_group,
            fanout_mode=fanout_mode,
            sockets=sockets,
            publish=publish,
            url=url,
            subject=subject,
            shards=shards,
            shard_fields=fields,
            probe_id=probe_id,
            max_packets=max_packets,
            jetstream=jetstream,
            stream=stream,
            wire_layout=wire_layout,
            wire_compression=wire_compression,
            speed=speed or None,
            batch_size=batch_size,
            ready_file=ready_file,
            stop_after_packets=count,
            stop_after_s=duration,
            stop_when_idle_s=idle,
            stop_file=stop_file,
            go_file=go_file,
            dump_prefix=dump,
        )
        service = ProbeService(options)
    except ValueError as exc:
        raise fail(str(exc)) from None
    except ServiceError as exc:
        raise fail(str(exc), exc.code) from None
    _run("probe", [service], cfg, ops_listen, json_out)


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
    json_out: JsonOption = False,
    ops_listen: OpsListenOption = None,
) -> None:
    """Consume packets from NATS into the configured tasks; stop gracefully on SIGINT/SIGTERM."""
    require("engine", "live")
    from netspectra.services.base import ServiceError
    from netspectra.services.engine import EngineOptions, EngineService

    cfg = _load(config)
    try:
        options = EngineOptions.from_config(
            cfg,
            url=url,
            subject=subject,
            n_shards=shards,
            member=member,
            members=members,
            queue_group=queue_group,
            compat=compat,
            jetstream=jetstream,
            stream=stream,
            durable=durable,
            writers=writers,
            flows_out=out,
        )
        service = EngineService(cfg, options)
    except ServiceError as exc:
        raise fail(str(exc), exc.code) from None
    _run("engine", [service], cfg, ops_listen, json_out, duration_s=duration)
