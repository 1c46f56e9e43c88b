"""``netspectra up``: the whole stack on one machine, one command, one data directory (``docs/live.md``).

One process holds the engine (NATS consumer → :class:`~netspectra.engine.manager.Manager` → writers),
the alerter on its tasks and the query service (gRPC + HTTP, in threads): they share the process's one
embedded ClickHouse (chdb) session, on ``<data-dir>/chdb`` — chdb allows one data directory per process
and one process per directory, so the engine's writers and the API must live together. A
``nats-server`` child (JetStream on, store in ``<data-dir>/nats``) carries the packets; optionally a
probe in the same process replays files (``--replay``) or captures an interface (``--iface``).

SIGINT/SIGTERM stop everything in order: the probe (a live capture drains its ring), the engine (what
NATS delivered is applied, final snapshot of every task to every writer, alerter's final check), the
query service, and the ``nats-server`` child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from nats.errors import Error as NatsError

from netspectra.cli.common import ConfigOption, console, fail
from netspectra.config import Config, ConfigError, load_config
from netspectra.engine.kind import columns_needed
from netspectra.ops.options import OpsListenOption

log = logging.getLogger(__name__)

__all__ = ["embedded_in", "up"]


def embedded_in(cfg: Config, chdb_dir: Path) -> Config:
    """``cfg`` with every embedded ClickHouse writer (``clickhouse.host`` empty) on ``chdb_dir``."""
    path = str(chdb_dir)
    return cfg.map_writers(
        lambda w: w.with_params(data_dir=path) if w.type == "clickhouse" and not w.params.host else w
    )


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
    nats_port: Annotated[
        int,
        typer.Option("--nats-port", min=0, max=65535, help="NATS client port on 127.0.0.1; 0: a free one."),
    ] = 4222,
    grpc_addr: Annotated[
        str | None,
        typer.Option("--grpc-addr", help="gRPC listen address (default: api.grpc_listen_addr, :50051)."),
    ] = None,
    http_addr: Annotated[
        str | None,
        typer.Option("--http-addr", help="HTTP listen address (default: api.http_listen_addr, :8080)."),
    ] = None,
    jetstream: Annotated[
        bool,
        typer.Option(
            "--jetstream/--no-jetstream",
            help="Packets through a JetStream stream (stored; the engine resumes after a restart).",
        ),
    ] = False,
    ops_listen: OpsListenOption = None,
) -> None:
    """Run NATS, the engine, the alerter and the query service — and optionally a probe — in one go.

    State lives in --data-dir. Runs until SIGINT/SIGTERM, then stops every part cleanly (final
    snapshots written, nats-server stopped) and prints the counters as JSON.
    """
    from netspectra.alerting.alerter import attach_alerter
    from netspectra.cli.api_cmds import ApiServer
    from netspectra.engine.manager import Manager
    from netspectra.ops.collectors import AlerterCollector
    from netspectra.ops.endpoint import resolve_listen, start_ops
    from netspectra.ops.grpcmetrics import GrpcMetrics
    from netspectra.ops.httpmetrics import HttpMetrics
    from netspectra.ops.services import wire_api, wire_engine
    from netspectra.probe.live import LiveCaptureError
    from netspectra.storage.alerts import alert_sink_for
    from netspectra.storage.clickhouse import StorageError
    from netspectra.transport.natsserver import NatsServer, NatsServerError, free_port

    if replay and iface:
        raise fail("give --replay files or --iface, not both")
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
    # SIGTERM while starting: noted, and acted on between the start-up steps (raising from the handler
    # could interrupt a step half-way, e.g. between starting nats-server and recording its process):
    # unwind what started, the nats-server child included, and exit 0.
    _TERM.clear()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        ops = start_ops("up", resolve_listen(ops_listen, cfg))
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    server = NatsServer(data_dir / "nats", port=nats_port or free_port(), jetstream=True)
    api: Any = None
    manager: Any = None
    summary: dict[str, Any] = {}
    try:
        try:
            server.start()
        except NatsServerError as exc:
            raise fail(f"nats-server: {exc}", 1) from None
        _check_term()
        try:
            manager = Manager.from_config(cfg, writers=True)
            engine_ops = wire_engine(ops, manager)
            _check_term()
            manager.start()
            alerter = attach_alerter(manager, cfg, sink=alert_sink_for(cfg))
            _check_term()
            http_metrics = HttpMetrics() if ops is not None else None
            grpc_metrics = GrpcMetrics() if ops is not None else None
            api = ApiServer(cfg, grpc_addr, http_addr, http_metrics, grpc_metrics)
            api.start()
            if ops is not None:
                if alerter is not None:
                    ops.add(AlerterCollector(alerter))
                wire_api(ops, api.core, http_metrics, grpc_metrics)
        except (ConfigError, StorageError, OSError, ValueError) as exc:
            raise fail(str(exc), 1) from None
        _check_term()
        console.print(
            f"NetSpectra up (data in {data_dir}):\n"
            f"  NATS      {server.url} (JetStream store {server.directory})\n"
            f"  gRPC      {api.grpc_addr} (port {api.grpc_port})\n"
            f"  HTTP      {api.http_addr} (port {api.http_port})\n"
            f"  ClickHouse (embedded) {data_dir / 'chdb'}\n"
            f"  probe     {_probe_what(replay, iface)}\n"
            "Ctrl-C stops.",
            highlight=False,
            soft_wrap=True,
        )
        try:
            summary = asyncio.run(
                _run(cfg, manager, server.url, replay, speed, iface, bpf, jetstream, data_dir, engine_ops)
            )
        except LiveCaptureError as exc:
            raise fail(str(exc), 1) from None
        except (OSError, NatsError) as exc:
            raise fail(f"NATS at {server.url}: {exc or type(exc).__name__}", 1) from None
    except _TerminatedError:
        log.warning("netspectra up: SIGTERM during start-up; stopping")
    finally:
        # a second SIGTERM while stopping must not cut the stop short (nats-server would be orphaned)
        signal.signal(signal.SIGTERM, lambda *_: log.warning("netspectra up: already stopping"))
        if ops is not None:
            ops.set_stopping()
        if manager is not None:
            manager.stop()  # idempotent: already stopped by the consumer on a normal stop
        if api is not None:
            api.stop()
        server.stop()
        if ops is not None:
            ops.stop()
    if manager is not None:
        summary["engine"] = manager.metrics_dict()
    print(json.dumps(summary, default=str))


class _TerminatedError(BaseException):
    """SIGTERM arrived while ``up`` was starting (before its event loop handles signals)."""


_TERM = threading.Event()


def _terminate(signum: int, _frame: object) -> None:
    _TERM.set()


def _check_term() -> None:
    """Raise :class:`_TerminatedError` if a SIGTERM arrived during the start-up."""
    if _TERM.is_set():
        raise _TerminatedError


def _probe_what(replay: list[Path] | None, iface: str | None) -> str:
    if replay:
        return "replaying " + ", ".join(str(p) for p in replay)
    if iface:
        return f"capturing {iface}"
    return "none (publish to the NATS URL above, subject probe.subject)"


async def _run(
    cfg: Config,
    manager: Any,
    url: str,
    replay: list[Path] | None,
    speed: float,
    iface: str | None,
    bpf: str | None,
    jetstream: bool,
    data_dir: Path,
    engine_ops: Any = None,
) -> dict[str, Any]:
    from netspectra.cli.live_cmds import _ops_tasks, _persisting, make_persister
    from netspectra.engine.stream import StreamConsumer, StreamOptions
    from netspectra.probe.live import LiveCapture, LiveOptions
    from netspectra.probe.publisher import Publisher, PublisherOptions
    from netspectra.probe.replay import replay_files

    pc = cfg.probe
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if _TERM.is_set():  # a SIGTERM between the last start-up step and these handlers
        stop.set()
    consumer = StreamConsumer(
        manager, StreamOptions(url=url, subject=pc.subject, n_shards=pc.shards, jetstream=jetstream)
    )
    ops = engine_ops.ep if engine_ops is not None else None
    if engine_ops is not None:
        engine_ops.set_consumer(consumer)
    _ops_tasks(ops, stop)
    engine_stop = asyncio.Event()
    engine = asyncio.create_task(consumer.run(engine_stop))
    ready = asyncio.ensure_future(consumer.ready.wait())
    await asyncio.wait({engine, ready}, return_when=asyncio.FIRST_COMPLETED)
    if engine.done():
        ready.cancel()
        await engine  # raises the connection error
    summary: dict[str, Any] = {}
    probe_task: asyncio.Task[Any] | None = None
    probe_stop = asyncio.Event()
    cap: Any = None
    persister: Any = None
    if replay or iface:
        pers_cfg = pc.persistence
        if pers_cfg.enabled and not Path(pers_cfg.path or ".").is_absolute():
            pers_cfg = pers_cfg.model_copy(update={"path": str(data_dir / (pers_cfg.path or "persist"))})
        persister = make_persister(pers_cfg, live=bool(iface))
        options = PublisherOptions(
            url=url,
            subject=pc.subject,
            n_shards=pc.shards,
            shard_fields=pc.shard_fields,
            probe_id=f"{socket.gethostname()}:{os.getpid()}",
            block=not iface,
            jetstream=jetstream,
        )
        if iface:
            cap = LiveCapture(
                LiveOptions(
                    interface=iface,
                    snaplen=pc.snaplen,
                    promiscuous=pc.promiscuous,
                    block_size=pc.block_size,
                    block_count=pc.block_count,
                    fanout_group=pc.fanout_group,
                    bpf_filter=(bpf if bpf is not None else pc.bpf_filter) or None,
                    keep_raw=persister is not None and persister.encoding == "pcap",
                    extras=bool(columns_needed(cfg)),  # the TCP flags, VLANs, ... a flows task needs
                )
            )
            source: Any = cap.batches(persister.offer if persister is not None else None)
            publisher = Publisher(options, kernel_dropped=cap.kernel_drops)
            run_stop = None  # the capture ends its iteration on cap.stop(); everything captured is sent
        else:
            assert replay
            source = replay_files(replay, speed=speed or None, extras=bool(columns_needed(cfg)))
            if persister is not None:
                source = _persisting(source, persister)
            publisher = Publisher(options)
            run_stop = probe_stop
        if persister is not None:
            persister.start()
        if ops is not None:
            from netspectra.ops.collectors import ProbeCollector

            ops.add(
                ProbeCollector(
                    lambda: publisher.stats,
                    live=(lambda: cap.live_stats()) if cap is not None else None,
                    persister=(lambda: persister.stats) if persister is not None else None,
                )
            )
        probe_task = asyncio.create_task(publisher.run(source, run_stop))
    try:
        waiters = {asyncio.ensure_future(stop.wait()), engine}
        if probe_task is not None:
            done, _ = await asyncio.wait({*waiters, probe_task}, return_when=asyncio.FIRST_COMPLETED)
            if probe_task in done:
                _probe_done(probe_task, summary)
                probe_task = None
        if not engine.done():
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        log.warning("netspectra up: stopping")
        if probe_task is not None:
            probe_stop.set()
            if cap is not None:
                cap.stop()
            with contextlib.suppress(Exception):
                await probe_task
            _probe_done(probe_task, summary)
        if cap is not None:
            cap.stop()
            cap.close()
            live = cap.live_stats()
            summary.setdefault("probe", {})["kernel_drops"] = live.kernel_drops
            summary["probe"]["kernel_packets"] = live.kernel_packets
        if persister is not None:
            st = persister.stop()
            summary["persistence"] = {
                "written_packets": st.written_packets,
                "dropped_packets": st.dropped_packets,
                "files": len(st.files),
            }
        engine_stop.set()
        stats = await engine
        summary["stream"] = stats.as_dict()
    return summary


def _probe_done(task: asyncio.Task[Any], summary: dict[str, Any]) -> None:
    exc = task.exception() if not task.cancelled() else None
    if exc is not None:
        log.error("probe failed: %s (the rest of the stack keeps running)", exc)
        summary["probe"] = {"error": str(exc)}
        return
    stats = task.result()
    summary["probe"] = {k: v for k, v in stats.__dict__.items() if k != "per_shard_packets"}
    log.warning("probe: %d packets published, %d dropped", stats.packets_published, stats.dropped_packets)
