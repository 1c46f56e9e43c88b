"""The stack of ``netspectra up``: nats-server child, engine, query service, optionally a probe and a
flow-export collector.

One process holds the engine (NATS consumer → manager → writers), the alerter on its tasks and the
query service: they share the process's one embedded ClickHouse (chdb) session, on ``<data-dir>/chdb``
— chdb allows one data directory per process and one process per directory, so the engine's writers
and the API must live together. A supervised ``nats-server`` child (:mod:`.natsserver`; JetStream
store in ``<data-dir>/nats``) carries the packets; a probe in the same process replays files or
captures an interface, on an event loop and thread of its own; a collector in the same process
(``--collect``: :mod:`.collect`) receives NetFlow/IPFIX/sFlow exports and publishes them the same way.

Flow control: packets go through a JetStream stream by default, so a replay at full speed can never
outrun the engine (the stream stores, the engine reads at its pace, nothing is lost, and a restarted
``up`` reads what was stored and not yet applied). With ``jetstream=False`` (core NATS) the probe waits
while it is more than ``max_ahead_packets`` ahead of the engine (it reads the engine's counter, both
being in this process). Either way the summary compares what the probe published with what the engine
received and says where a difference went.

Data shows at once: the engine hands the writers a first snapshot ``first_snapshot_s`` after its first
packets, and another one when a replay has been read completely, instead of after the first
``snapshot_interval`` (60 s in the shipped configuration).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspectra.services.api import ApiService
from netspectra.services.collect import CollectOptions, CollectService
from netspectra.services.engine import EngineOptions, EngineService
from netspectra.services.natsserver import NatsServerService
from netspectra.services.probe import ProbeOptions, ProbeService
from netspectra.services.stack import Stack, StackResult, StopSignals
from netspectra.transport.nats_bus import NatsAuth

log = logging.getLogger(__name__)

__all__ = ["UpOptions", "UpStack", "embedded_in"]


def embedded_in(cfg: Any, chdb_dir: Path) -> Any:
    """``cfg`` with every embedded ClickHouse writer (``clickhouse.host`` empty) on ``chdb_dir``."""
    path = str(chdb_dir)
    return cfg.map_writers(
        lambda w: w.with_params(data_dir=path) if w.type == "clickhouse" and not w.params.host else w
    )


@dataclass(frozen=True)
class UpOptions:
    """What ``up`` runs (see the module docstring)."""

    data_dir: Path
    replay: tuple[Path, ...] = ()
    speed: float = 0.0
    iface: str | None = None
    bpf: str | None = None
    nats_port: int = 4222
    grpc_addr: str | None = None
    http_addr: str | None = None
    jetstream: bool = True
    first_snapshot_s: float = 2.0
    max_nats_restarts: int = 5
    #: Flow-export listen addresses of an in-process collector (empty: none).
    collect: tuple[str, ...] = ()


class UpStack:
    """The services of ``up`` and how they run together (see the module docstring)."""

    def __init__(
        self, cfg: Any, options: UpOptions, ops: Any = None, signals: StopSignals | None = None
    ) -> None:
        o = options
        if o.collect:  # the exporters the collector hears, listed by `query exporters`
            from netspectra.collect.exporters_kind import with_exporters_task

            cfg = with_exporters_task(cfg)
        self.cfg = cfg
        self.options = o
        self.ops = ops
        self.nats = NatsServerService(o.data_dir / "nats", port=o.nats_port, max_restarts=o.max_nats_restarts)
        # the child listens on loopback without authentication: up's clients connect without credentials
        plain = NatsAuth()
        self.engine = EngineService(
            cfg,
            EngineOptions.from_config(
                cfg, url=self.nats.url, jetstream=o.jetstream, auth=plain, first_snapshot_s=o.first_snapshot_s
            ),
        )
        self.api = ApiService(cfg, o.grpc_addr, o.http_addr)
        self.probe: ProbeService | None = None
        if o.replay or o.iface:
            popts = ProbeOptions.from_config(
                cfg,
                files=o.replay,
                iface=o.iface,
                bpf=o.bpf,
                speed=o.speed or None,
                url=self.nats.url,
                jetstream=o.jetstream,
                auth=plain,
                persist_dir=o.data_dir,
            )
            if not o.jetstream:
                popts = popts.with_consumer(lambda: self.engine.received_packets)
            self.probe = ProbeService(popts, readiness=False)
        self.collector: CollectService | None = None
        if o.collect:
            copts = CollectOptions.from_config(
                cfg, listen=o.collect, url=self.nats.url, jetstream=o.jetstream, auth=plain
            )
            if not o.jetstream:
                copts = copts.with_consumer(lambda: self.engine.received_packets)
            self.collector = CollectService(copts, readiness=False)
        services = [self.nats, self.engine, self.api] + [
            s for s in (self.probe, self.collector) if s is not None
        ]
        self.stack = Stack(
            "netspectra up",
            services,
            ops=ops,
            essential=["nats-server", "engine", "api"],
            on_started=self._banner,
            on_tick=self._tick,
            signals=signals,
        )
        self._replay_stored = False
        self._snapshotting: threading.Thread | None = None

    # -- hooks -------------------------------------------------------------------------------------

    def _banner(self, _stack: Stack) -> None:
        from netspectra.cli.common import err_console

        err_console.print(self.banner(), highlight=False, soft_wrap=True)

    def banner(self) -> str:
        """What ``up`` prints (on stderr) once every service runs: where each endpoint is, and when data
        shows. The HTTP endpoints (dashboard, REST, the console at ``/console``) are listed when the query
        service serves HTTP."""
        o = self.options
        intervals = sorted(
            {
                w.snapshot_interval
                for _, _, w in self.cfg.writers()
                if w.enabled and getattr(w, "snapshot_interval", None)
            }
        )
        every = ", ".join(_go_duration(x) for x in intervals) or "the writers' snapshot_interval"
        lines = [f"NetSpectra up — state in {o.data_dir}"]
        http = self.api.http_url
        if http:
            lines += [
                f"  dashboard   {http}   (REST /api/v1, Grafana JSON, OpenAPI /docs)",
                f"  console     {http}console   (explore: visualize, flows, hosts, alerts, live)",
            ]
        lines += [
            f"  gRPC        {self.api.grpc_target}",
            f"  NATS        {self.nats.url} ({'JetStream' if o.jetstream else 'core NATS'}; store "
            f"{self.nats.server.directory})",
            f"  ClickHouse  embedded, {o.data_dir / 'chdb'}",
        ]
        if self.ops is not None:
            lines.append(
                f"  ops         http://{_ops_host(self.ops)}:{self.ops.port}/metrics, /healthz, /readyz"
            )
        lines.append(f"  probe       {self._probe_what()}")
        if self.collector is not None and self.collector.source is not None:
            where = ", ".join(f"udp://{a}" for a in self.collector.source.addresses)
            lines.append(f"  collect     NetFlow v5/v9, IPFIX, sFlow v5 on {where}")
        lines.append(
            f"Data appears about {o.first_snapshot_s:g} s after the first packets"
            + (" and again when the replay ends" if o.replay else "")
            + f"; then every {every}. Ctrl-C stops."
        )
        return "\n".join(lines)

    def _probe_what(self) -> str:
        o = self.options
        if o.replay:
            pace = "as fast as possible" if not o.speed else f"at {o.speed:g}x the recorded pace"
            return "replaying " + ", ".join(str(p) for p in o.replay) + f" ({pace})"
        if o.iface:
            return f"capturing {o.iface}"
        return f"none (publish to {self.nats.url}, subject {self.cfg.probe.subject}.<shard>)"

    def _tick(self, _stack: Stack) -> None:
        """After a replay: once the engine has received everything, snapshot it to the writers."""
        p = self.probe
        if self._replay_stored or p is None or not self.options.replay or not p.done():
            return
        if p.error is not None:
            self._replay_stored = True
            return
        if self.engine.received_packets < p.published_packets:
            return  # the engine still reads (JetStream) or lost some (core NATS: counted at the end)
        self._replay_stored = True
        log.info("replay read by the engine (%d packets): storing a snapshot now", p.published_packets)
        self._snapshotting = threading.Thread(
            target=self.engine.snapshot_now, name="ns-up-snapshot", daemon=True
        )
        self._snapshotting.start()

    # -- run ---------------------------------------------------------------------------------------

    def run(self) -> StackResult:
        result = self.stack.run()
        probe = self.probe is not None and self.probe.publisher is not None
        collector = self.collector is not None and self.collector.publisher is not None
        if probe or collector:
            p_rows = self.probe.published_packets if probe and self.probe is not None else 0
            c_rows = self.collector.published_rows if collector and self.collector is not None else 0
            published = p_rows + c_rows
            received = self.engine.received_packets
            missing = max(0, published - received)
            lines: list[tuple[str, Any]] = []
            if probe:
                lines.append(("packets published by the probe", p_rows))
            if collector:
                lines.append(("flow-record rows published by the collector", c_rows))
            lines.append(
                ("rows received by the engine" if collector else "packets received by the engine", received)
            )
            pipeline: dict[str, Any] = {"published": published, "received": received}
            if self.options.jetstream:
                lines.append(("not read yet (kept in JetStream, read at the next start)", missing))
                pipeline["unread_in_stream"] = missing
                pipeline["lost"] = 0
            else:
                lines.append(("lost between probe and engine", missing))
                pipeline["lost"] = missing
                if missing:
                    log.warning(
                        "%d of %d packets the probe published never reached the engine (core NATS has no "
                        "flow control between processes; see the NATS consumer's counters): run up with "
                        "JetStream (the default) to lose none",
                        missing,
                        published,
                    )
            result.summary["pipeline"] = pipeline
            title = (
                "Probe → engine"
                if not collector
                else ("Collector → engine" if not probe else "Probe and collector → engine")
            )
            result.sections.append((title, lines))
        return result


def _ops_host(ops: Any) -> str:
    host = getattr(ops.server, "host", "127.0.0.1")
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _go_duration(td: Any) -> str:
    from netspectra.config.models import format_go_duration

    try:
        return format_go_duration(td)
    except Exception:
        return str(td)
