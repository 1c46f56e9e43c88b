"""``netspectra up``: the whole stack on one machine, one command, one data directory (``docs/live.md``).

Parses the options, builds :class:`~netspectra.services.up.UpStack` (supervised nats-server child,
engine, query service, optional probe), runs it until SIGINT/SIGTERM and prints its summary.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from netspectra.cli.common import ConfigOption, console, fail, listen_option, require
from netspectra.ops.options import OpsListenOption

log = logging.getLogger(__name__)

__all__ = ["up"]


def up(
    config: ConfigOption = None,
    data_dir: Annotated[
        Path,
        typer.Option(
            "--data-dir",
            file_okay=False,
            help="All state: DIR/chdb (ClickHouse), DIR/nats (JetStream), DIR/persist (probe copy).",
        ),
    ] = Path("netspectra-data"),
    replay: Annotated[
        list[Path] | None,
        typer.Option(
            "--replay", exists=True, dir_okay=False, help="Run a probe replaying this file (repeatable)."
        ),
    ] = None,
    speed: Annotated[
        float,
        typer.Option("--speed", min=0.0, help="Replay pace: 1 = as recorded, 0 = as fast as possible."),
    ] = 0.0,
    iface: Annotated[
        str | None, typer.Option("--iface", "-i", help="Run a probe capturing this interface live.")
    ] = None,
    bpf: Annotated[
        str | None, typer.Option("--bpf", help="Filter of the live capture (default: probe.bpf_filter).")
    ] = None,
    collect: Annotated[
        list[str] | None,
        typer.Option(
            "--collect",
            help="Run a flow-export collector on this UDP address (HOST:PORT, udp://HOST:PORT, :PORT; "
            "repeatable or comma-separated): NetFlow v5/v9, IPFIX and sFlow v5, detected per datagram, into "
            "the same engine (docs/collect.md). --collect default: collect.listen (127.0.0.1:2055, :6343).",
            show_default=False,
        ),
    ] = None,
    nats_port: Annotated[
        int,
        typer.Option(
            "--nats-port",
            min=0,
            max=65535,
            help="Client port of the nats-server child, on 127.0.0.1 (no authentication: loopback only); "
            "0: a free one.",
        ),
    ] = 4222,
    grpc_addr: Annotated[
        str | None,
        typer.Option(
            "--grpc-addr", callback=listen_option, help="gRPC listen address (default: api.grpc_listen_addr)."
        ),
    ] = None,
    http_addr: Annotated[
        str | None,
        typer.Option(
            "--http-addr",
            callback=listen_option,
            help="HTTP listen address of the API and dashboard (default: api.http_listen_addr).",
        ),
    ] = None,
    jetstream: Annotated[
        bool,
        typer.Option(
            "--jetstream/--no-jetstream",
            help="Packets through a JetStream stream (the default: flow control — a replay never outruns "
            "the engine — and what was stored survives a restart). --no-jetstream: core NATS, the probe "
            "waits for the in-process engine instead.",
        ),
    ] = True,
    json_out: Annotated[
        bool, typer.Option("--json", help="At the stop, print the counters as one JSON object on stdout.")
    ] = False,
    ops_listen: OpsListenOption = None,
) -> None:
    """Run NATS, the engine, the alerter and the query service — and optionally a probe and a flow-export
    collector (--collect) — in one go.

    State lives in --data-dir. The dashboard shows data a few seconds after the first packets. Runs
    until SIGINT/SIGTERM, then stops every part cleanly, each step within a time limit (final snapshots
    written, nats-server stopped) and prints a summary (--json: the counters as JSON). A nats-server
    child that dies is restarted (not ready meanwhile); after 5 failed restarts up stops with an error.
    """
    require("up", "live", "store", "api")
    from netspectra.config import ConfigError, load_config
    from netspectra.ops.endpoint import resolve_listen, start_ops
    from netspectra.services.base import ServiceError
    from netspectra.services.stack import StopSignals, arm_exit_watchdog
    from netspectra.services.summary import print_summary
    from netspectra.services.up import UpOptions, UpStack, embedded_in

    if replay and iface:
        raise fail("give --replay files or --iface, not both")
    listen: tuple[str, ...] = ()
    if collect:
        from netspectra.collect.source import parse_listen_option

        try:
            listen = () if collect == ["default"] else parse_listen_option(collect)
        except ValueError as exc:
            raise fail(f"--collect: {exc}") from None
    data_dir = data_dir.expanduser().resolve()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        cfg = embedded_in(load_config(config), data_dir / "chdb")
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(f"--data-dir {data_dir}: {exc}") from None
    if not any(
        w.enabled and w.type == "clickhouse"
        for w in (*cfg.aggregator.exact.writers, *cfg.aggregator.sketch.writers)
    ):
        log.warning("no enabled clickhouse writer in the configuration: the query service will find no data")
    options = UpOptions(
        data_dir=data_dir,
        replay=tuple(replay or ()),
        speed=speed,
        iface=iface,
        bpf=bpf,
        nats_port=nats_port,
        grpc_addr=grpc_addr,
        http_addr=http_addr,
        jetstream=jetstream,
        collect=listen or (tuple(cfg.collect.listen) if collect else ()),
    )
    # SIGINT/SIGTERM from here on are noted and acted on between start-up steps (the engine and chdb take
    # seconds to set up): what started is unwound, the nats-server child included, and up exits 0
    signals = StopSignals("netspectra up")
    try:
        ops = start_ops("up", resolve_listen(ops_listen, cfg))
    except (OSError, ValueError) as exc:
        signals.restore()
        raise fail(str(exc)) from None
    try:
        stack = UpStack(cfg, options, ops, signals)
    except ServiceError as exc:
        signals.restore()
        if ops is not None:
            ops.stop()
        raise fail(str(exc), exc.code) from None
    result = stack.run()
    print_summary(console, result.sections, result.summary, as_json=json_out, title="NetSpectra up stopped")
    arm_exit_watchdog(result.code if result.error else 0)
    if result.error:
        raise fail(result.error, result.code)
