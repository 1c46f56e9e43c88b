"""The engine service: NATS → :class:`~netspectra.engine.manager.Manager` → writers, with its alerter.

:class:`EngineService` owns a manager built from the configuration (task groups, writers), the
alerter attached to it and a :class:`~netspectra.engine.stream.StreamConsumer` (core NATS or JetStream)
running on an event loop of its own (:class:`~netspectra.services.base.LoopThread`). ``start`` returns
once the consumer is subscribed (the probe of ``up`` may publish then); ``stop`` stops the consumer
(what NATS delivered is applied, final snapshots written, JetStream acknowledged) within its time,
and stops the manager itself when the consumer could not (its finals are still written).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from netspectra.services.base import LoopThread, Section, Service, ServiceError
from netspectra.transport.nats_bus import (
    DEFAULT_QUEUE_GROUP,
    DEFAULT_STREAM,
    NatsAuth,
    NatsConnectError,
    redact_url,
)

log = logging.getLogger(__name__)

__all__ = ["EngineOptions", "EngineService"]


@dataclass(frozen=True)
class EngineOptions:
    """What :class:`EngineService` reads and how (``from_config`` fills the configuration's defaults)."""

    url: str = "nats://127.0.0.1:4222"
    subject: str = "gons.packets.raw"
    n_shards: int = 16
    member: int = 0
    members: int = 1
    queue_group: str = DEFAULT_QUEUE_GROUP
    compat: bool = True
    jetstream: bool = False
    stream: str = DEFAULT_STREAM
    durable: str = "netspectra-engine"
    auth: NatsAuth = field(default_factory=NatsAuth)
    writers: bool = True
    #: At stop, write each exact task's flows to ``<flows_out>/<task>.parquet``.
    flows_out: Path | None = None
    #: Hand the writers a first snapshot this long after the first packets (``up``: data shows at once).
    first_snapshot_s: float | None = None

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> EngineOptions:
        """Options from ``cfg`` (``probe.nats_url``, ``subject``, ``shards``, the ``nats`` section);
        ``overrides`` that are not ``None`` win (the command line)."""
        base = cls(
            url=cfg.probe.nats_url,
            subject=cfg.probe.subject,
            n_shards=cfg.probe.shards,
            auth=NatsAuth.from_config(cfg),
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def stream_options(self) -> Any:
        from netspectra.engine.stream import StreamOptions

        return StreamOptions(
            url=self.url,
            subject=self.subject,
            n_shards=self.n_shards,
            member=self.member,
            members=self.members,
            queue_group=self.queue_group,
            compat=self.compat,
            jetstream=self.jetstream,
            stream=self.stream,
            durable=self.durable,
            auth=self.auth,
        )


class EngineService(Service):
    """The engine (see the module docstring)."""

    name = "engine"
    stop_timeout_s = 90.0

    def __init__(self, cfg: Any, options: EngineOptions) -> None:
        from netspectra.alerting.alerter import AlertingConfigError, attach_alerter
        from netspectra.config import ConfigError
        from netspectra.engine.manager import Manager
        from netspectra.engine.stream import StreamConsumer, applies_inline
        from netspectra.storage.alerts import alert_sink_for

        if not 0 <= options.member < options.members:
            raise ServiceError(f"--member {options.member} must be below --members {options.members}", 2)
        self.options = options
        self._cfg = cfg
        try:
            stream_options = options.stream_options()
            self.manager = Manager.from_config(
                cfg, writers=options.writers, inline_if_one_lane=applies_inline(stream_options)
            )
            # the original's engine ran the alerter: rules every check_interval and once at stop
            self.alerter = attach_alerter(
                self.manager, cfg, sink=alert_sink_for(cfg) if options.writers else None
            )
        except (ConfigError, AlertingConfigError) as exc:
            raise ServiceError(str(exc), 2) from None
        self.consumer = StreamConsumer(self.manager, stream_options)
        self._thread: LoopThread | None = None
        self._ops: Any = None
        self._stopped = False
        self._logged = False
        self.error = None

    # -- life --------------------------------------------------------------------------------------

    def wire_ops(self, ep: Any) -> None:
        from netspectra.ops.services import wire_engine

        self._ops = wire_engine(ep, self.manager, self.alerter)
        if self._ops is not None:
            self._ops.set_consumer(self.consumer)

    def start(self, cancel: threading.Event | None = None) -> None:
        """Start the manager and the consumer; return once it is subscribed (or ``cancel`` is set).

        The tasks' and the decoder's kernels are loaded first: ready means able to keep up, not that the
        first message waits half a second for them while the next ones queue up."""
        from netspectra.offline.warmup import warm_up

        warm_up(self._cfg, reader=False, wire=True)
        self.manager.start()
        self._thread = LoopThread("ns-engine", self._main).start()
        while not self.consumer.ready.is_set():
            if not self._thread.is_alive():
                self._thread.join(1)
                raise self._failure() or ServiceError("the engine's NATS consumer ended before it was ready")
            if cancel is not None and cancel.is_set():
                return
            time.sleep(0.02)

    async def _main(self, stop: asyncio.Event) -> Any:
        helpers = []
        if self.options.first_snapshot_s is not None:
            helpers.append(asyncio.create_task(self._first_snapshot(self.options.first_snapshot_s)))
        try:
            return await self.consumer.run(stop)
        finally:
            for h in helpers:
                h.cancel()

    async def _first_snapshot(self, after_s: float) -> None:
        m = self.manager.metrics
        while m.packets_in.value == 0:
            await asyncio.sleep(0.1)
        await asyncio.sleep(after_s)
        await asyncio.get_running_loop().run_in_executor(None, self.snapshot_now)
        log.info("engine: first snapshot handed to the writers (%d packets so far)", int(m.packets_in.value))

    def snapshot_now(self, flush_timeout_s: float = 10.0) -> None:
        """Apply what was accepted (at most ``flush_timeout_s``), then snapshot every task to its writers."""
        self.manager.flush(flush_timeout_s)
        self.manager.snapshot_to_writers()

    def _failure(self) -> ServiceError | None:
        """The consumer's end as a :class:`ServiceError`, or None when it ended normally."""
        from netspectra.engine.periods_ledger import LedgerError

        th = self._thread
        exc = th.error if th is not None else None
        url = redact_url(self.options.url)
        if isinstance(exc, NatsConnectError):
            return ServiceError(str(exc))
        if isinstance(exc, LedgerError):
            return ServiceError(str(exc))
        if exc is not None:
            if not self._logged:
                self._logged = True
                log.error("the engine's NATS consumer failed", exc_info=exc)
            return ServiceError(f"engine (NATS at {url}): {type(exc).__name__}: {exc}")
        if self.consumer.stats.aborted:
            # JetStream: nothing was acknowledged that is not stored; the next engine redoes the period
            return ServiceError(f"engine stopped: {self.consumer.stats.aborted}")
        return None

    def done(self) -> bool:
        th = self._thread
        if th is None or th.is_alive():
            return False
        self.error = self._failure()
        return True

    def alive(self) -> bool:
        th = self._thread
        return th is None or not th.is_alive() or time.monotonic() - th.last_tick < 10.0

    def ready(self) -> str | None:
        if not self.consumer.ready.is_set():
            return "not subscribed to NATS yet"
        return None if self.consumer.is_connected else "not connected to NATS (reconnecting)"

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the consumer (bounded), then make sure the manager stopped (finals written)."""
        if self._stopped:
            return
        self._stopped = True
        budget = self.stop_timeout_s if timeout_s is None else timeout_s
        t0 = time.monotonic()
        if self._thread is not None:
            # without a connection the consumer cannot drain, record or acknowledge anything: a short
            # wait, then the manager is stopped here (finals written, nothing acknowledged)
            wait = budget * 0.7 if self.consumer.is_connected else min(10.0, budget * 0.7)
            self._thread.stop(max(1.0, wait), "the engine's NATS consumer")
            self.error = self.error or self._failure()
        # normally already stopped by the consumer; after a consumer that hung, the finals go out here
        stopper = threading.Thread(target=self.manager.stop, name="ns-engine-stop", daemon=True)
        stopper.start()
        stopper.join(max(5.0, budget - (time.monotonic() - t0)))
        if stopper.is_alive():
            log.error("the engine's manager did not stop in time (writers still closing): abandoned")
        if self.options.flows_out is not None:
            self._write_flows(self.options.flows_out)

    def _write_flows(self, out: Path) -> None:
        """``--out``: each exact task's flows as ``<out>/<task>.parquet`` (the name percent-encoded into one
        path component, as ``analyze --out`` and the Parquet writer name it). A file that cannot be written is
        the service's error (the command names it and exits 1); the other files are written."""
        from netspectra.atomic import why_not_written
        from netspectra.output.flow_table import write_parquet
        from netspectra.storage.files import safe_name
        from netspectra.tasks.exact import FlowSnapshot

        failed: list[str] = []
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            failed.append(f"cannot create {out}: {exc.strerror or exc}")
        else:
            for t in self.manager.tasks:
                snap = t.snapshot()
                if isinstance(snap, FlowSnapshot):
                    # one path component whatever the name ("a/b", "../x"), as analyze --out names it
                    path = out / f"{safe_name(t.name)}.parquet"
                    try:
                        write_parquet(snap.to_arrow(), path)
                    except Exception as exc:
                        failed.append(f"{path} (task {t.name}) not written: {why_not_written(exc)}")
        for line in failed:
            log.error("--out: %s", line)
        if failed and self.error is None:
            self.error = ServiceError("--out: " + "; ".join(failed))

    def banner(self) -> str:
        o = self.options
        how = f"JetStream stream {o.stream}" if o.jetstream else f"core NATS, queue group {o.queue_group}"
        member = f", member {o.member} of {o.members}" if o.members > 1 else ""
        return f"engine: reading {o.subject}.* from {redact_url(o.url)} ({how}{member})"

    # -- counters ----------------------------------------------------------------------------------

    @property
    def received_packets(self) -> int:
        """Packets the consumer has decoded so far (the in-process probe's flow control reads it)."""
        return int(self.consumer.stats.packets)

    def summary(self) -> dict[str, Any]:
        out = {"stream": self.consumer.stats.as_dict(), "engine": self.manager.metrics_dict()}
        if self.manager.enrichment is not None:
            out["enrichment"] = self.manager.enrichment.summary()
        return out

    def report(self) -> list[Section]:
        st = self.consumer.stats
        m = self.manager.metrics_dict()
        mode = "JetStream" if self.options.jetstream else "core NATS"
        stream: list[tuple[str, Any]] = [
            ("transport", f"{mode} at {redact_url(self.options.url)}"),
            ("messages received", st.messages + st.compat_messages),
            ("packets received", st.packets),
            ("lost: messages missing (seq gaps)", st.seq_gaps),
            ("lost: packets", st.lost_packets),
            ("slow-consumer events", st.slow_consumer_events),
            ("connection losses", st.disconnects),
            ("hand-off drops (packets)", st.handoff_dropped_packets),
            ("undecodable messages", st.decode_errors),
        ]
        if self.options.jetstream:
            stream.append(("acknowledged up to stream sequence", st.acked_stream_seq))
        if st.aborted:
            stream.append(("stopped because", st.aborted))
        engine: list[tuple[str, Any]] = [
            ("packets", m.get("packets_in", 0)),
            ("bytes", m.get("bytes_in", 0)),
            ("dropped packets (queue full)", m.get("dropped_packets", 0)),
            ("period resets", m.get("periods", 0)),
        ]
        for name, w in sorted((m.get("writers") or {}).items()):
            engine.append(
                (f"writer {name}", f"{w.get('written', 0)} snapshots written, {w.get('dropped', 0)} dropped")
            )
        with contextlib.suppress(Exception):
            if self.alerter is not None:
                sent = sum(self.alerter.metrics.sent.as_dict().values())
                engine.append(("alerts sent", int(sent)))
        sections: list[Section] = [("NATS consumer", stream), ("Engine", engine)]
        if self.manager.enrichment is not None:
            from netspectra.engine.enrichment import summary_rows

            sections.append(("Enrichment", summary_rows(self.manager.enrichment.summary())))
        return sections
