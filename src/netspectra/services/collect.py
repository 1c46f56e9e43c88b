"""The collect service: NetFlow v5/v9, IPFIX and sFlow v5 exports (UDP) → NATS, like a probe.

:class:`CollectOptions` is built from the configuration in one place (:meth:`CollectOptions.from_config`,
for ``netspectra collect`` and ``netspectra up --collect`` alike); :class:`CollectService` opens a
:class:`~netspectra.collect.source.CollectorSource` (the listeners, the decoder, the conversion into
PacketBatch rows) and publishes its batches with the probe's
:class:`~netspectra.probe.publisher.Publisher` on an event loop of its own — the same subjects, shards,
sequence numbers, JetStream acknowledgements and end markers as a probe, so any engine consumes them.
Without a publisher (``--no-publish``) it only decodes and counts (measurements, debugging an exporter).

Stopping (SIGTERM, ``--duration``): every listener first reads what its socket still holds, the data sets
still waiting for a template are counted as dropped, every row is published, then NATS is flushed —
nothing already received is lost.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from netspectra.services.base import LoopThread, Section, Service, ServiceError
from netspectra.transport.nats_bus import NatsAuth, NatsConnectError, redact_url

log = logging.getLogger(__name__)

__all__ = ["CollectOptions", "CollectService"]


@dataclass(frozen=True)
class CollectOptions:
    """Everything a collector does (see the module docstring); ``publisher`` None: decode only."""

    collect: Any = None  # CollectConfig (listen addresses included)
    publisher: Any = None  # PublisherOptions, or None
    #: Decode the optional columns flow records need (TCP flags, VLAN, ICMP, IP length).
    extras: bool = False
    #: Rows decoded and not yet published before new ones are dropped (counted).
    queue_rows: int = 1 << 21
    #: ``up --no-jetstream``: the in-process engine's received-rows counter (flow control).
    consumed: Callable[[], int] | None = field(default=None, compare=False)
    #: Touched once the listeners are bound (tests, scripts).
    ready_file: Path | None = None
    #: At the stop, write every row given to ``<dump_prefix>.npz`` (tests, debugging an exporter).
    dump_prefix: Path | None = None

    @property
    def listen(self) -> tuple[str, ...]:
        return tuple(self.collect.listen)

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        *,
        listen: Sequence[str] | None = None,
        publish: bool = True,
        url: str | None = None,
        subject: str | None = None,
        shards: int | None = None,
        probe_id: str | None = None,
        max_packets: int = 32_768,
        jetstream: bool = False,
        stream: str | None = None,
        auth: NatsAuth | None = None,
        **rest: Any,
    ) -> CollectOptions:
        """Options from ``cfg.collect`` and ``cfg.probe`` (NATS URL, subject, shards, shard fields) with
        the command line's values winning where given. ``ServiceError`` (code 2) for a bad address."""
        from netspectra.config.collect import CollectConfig
        from netspectra.engine.kind import columns_needed
        from netspectra.probe.publisher import PublisherOptions
        from netspectra.transport.nats_bus import DEFAULT_STREAM

        collect = cfg.collect
        if listen:
            try:
                collect = CollectConfig.model_validate({**collect.model_dump(), "listen": tuple(listen)})
            except ValueError as exc:
                raise ServiceError(f"--listen: {_first_error(exc)}", 2) from None
        pc = cfg.probe
        publisher = None
        if publish:
            publisher = PublisherOptions(
                url=url or pc.nats_url,
                subject=subject or pc.subject,
                n_shards=shards or pc.shards,
                shard_fields=pc.shard_fields,
                probe_id=probe_id or f"collect:{socket.gethostname()}:{os.getpid()}",
                max_packets=max_packets,
                block=True,  # the publisher's queue waits; the collector's own queue drops (counted)
                jetstream=jetstream,
                stream=stream or DEFAULT_STREAM,
                auth=auth if auth is not None else NatsAuth.from_config(cfg),
                wire_layout=pc.wire_layout,
                wire_compression=pc.wire_compression,
            )
        return cls(collect=collect, publisher=publisher, extras=bool(columns_needed(cfg)), **rest)

    def with_consumer(self, consumed: Callable[[], int]) -> CollectOptions:
        return replace(self, consumed=consumed)


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(str(e.get("msg", e)).removeprefix("Value error, ") for e in errors())
        except Exception:
            pass
    return str(exc)


class CollectService(Service):
    """The collector (see the module docstring). ``readiness``: register its readiness checks (``netspectra
    collect``); inside ``up`` only its series."""

    name = "collect"
    stop_timeout_s = 60.0

    def __init__(self, options: CollectOptions, *, readiness: bool = True) -> None:
        self.options = options
        self.readiness = readiness
        self.source: Any = None
        self.publisher: Any = None
        self._loop: LoopThread | None = None
        self._reader: threading.Thread | None = None
        self._read_error: BaseException | None = None
        self._stopped = False
        self._t0 = 0.0
        self._dumped: list[Any] = []
        self.error = None

    # -- life --------------------------------------------------------------------------------------

    def wire_ops(self, ep: Any) -> None:
        from netspectra.collect.metrics import CollectorCollector

        ep.add(
            CollectorCollector(
                lambda: self.source, lambda: self.publisher.stats if self.publisher is not None else None
            )
        )
        if not self.readiness:
            return
        pub = self.options.publisher
        if pub is not None:
            from netspectra.ops.services import nats_reachable

            ep.check("nats", nats_reachable(pub.url), background=True)
        ep.check(
            "listeners", lambda: None if self.source is not None and not self._stopped else "not listening"
        )

    def start(self, cancel: threading.Event | None = None) -> None:
        """Load the decoders' kernels (and the wire encoder's when publishing), then bind the listeners
        and start reading: listening means able to keep up, not (after an installation) the first
        datagrams waiting seconds for compilation while the socket buffers fill and overflow."""
        from netspectra.collect.source import CollectorError, CollectorSource
        from netspectra.offline.warmup import warm_up_exports, warm_up_wire

        o = self.options
        warm_up_exports(collect=o.collect)
        if o.publisher is not None:
            warm_up_wire()
        try:
            self.source = CollectorSource(o.collect, extras=o.extras, queue_rows=o.queue_rows)
        except CollectorError as exc:
            raise ServiceError(str(exc)) from None
        self._t0 = time.perf_counter()
        self.source.start()
        if o.ready_file is not None:
            o.ready_file.touch()
        log.info(
            "collect: listening on %s, %s",
            ", ".join(f"udp://{a}" for a in self.source.addresses),
            f"publishing to {redact_url(o.publisher.url)}" if o.publisher is not None else "not publishing",
        )
        if o.publisher is not None:
            from netspectra.probe.publisher import Publisher

            self.publisher = Publisher(
                o.publisher, kernel_dropped=self.source.kernel_drops, consumed=o.consumed
            )
            batches = self._batches()
            # the iteration ends when the source stops (after the sockets were drained): no stop event
            self._loop = LoopThread("ns-collect", lambda _stop: self.publisher.run(batches, None)).start()
        else:
            self._reader = threading.Thread(target=self._drain, name="ns-collect-read", daemon=True)
            self._reader.start()

    def _batches(self) -> Iterator[Any]:
        for batch in self.source:
            if self.options.dump_prefix is not None:
                self._dumped.append(batch)
            yield batch

    def _drain(self) -> None:
        try:
            for _ in self._batches():
                pass
        except BaseException as exc:
            self._read_error = exc

    def done(self) -> bool:
        th = self._loop or self._reader
        if th is None:
            return False
        ended = not th.is_alive()
        if ended and not self._stopped:
            exc = self._loop.error if self._loop is not None else self._read_error
            if self.error is None:
                self.error = self._as_error(exc) if exc is not None else ServiceError("the collector ended")
        return ended

    def _as_error(self, exc: BaseException) -> ServiceError:
        if isinstance(exc, (ServiceError, NatsConnectError)):
            return ServiceError(str(exc))
        url = redact_url(self.options.publisher.url) if self.options.publisher is not None else "-"
        return ServiceError(f"collect (NATS at {url}): {type(exc).__name__}: {exc}")

    def alive(self) -> bool:
        th = self._loop
        return th is None or not th.is_alive() or time.monotonic() - th.last_tick < 10.0

    def ready(self) -> str | None:
        return None if self.source is not None and not self._stopped else "not listening"

    def stop(self, timeout_s: float | None = None) -> None:
        """Drain the sockets, publish every row, flush NATS (see the module docstring)."""
        if self._stopped:
            return
        self._stopped = True
        budget = self.stop_timeout_s if timeout_s is None else timeout_s
        if self.source is not None:
            self.source.stop()
        if self._loop is not None:
            self._loop.stop(max(1.0, budget * 0.9), "the collector's publisher")
            if self._loop.error is not None and self.error is None:
                self.error = self._as_error(self._loop.error)
        if self._reader is not None:
            self._reader.join(max(1.0, budget * 0.9))
        if self.options.dump_prefix is not None:
            self._dump()

    def _dump(self) -> None:
        import numpy as np

        from netspectra.batch import PacketBatch
        from netspectra.collect.source import columns_for

        b = (
            PacketBatch.concat(self._dumped)
            if self._dumped
            else PacketBatch.empty(0, columns_for(self.options.extras))
        )
        np.savez(f"{self.options.dump_prefix}.npz", **{c: getattr(b, c) for c in b.columns()})

    def banner(self) -> str:
        o = self.options
        where = ", ".join(f"udp://{a}" for a in (self.source.addresses if self.source else o.listen))
        if o.publisher is None:
            return f"collect: listening on {where}, not publishing"
        how = "JetStream" if o.publisher.jetstream else "core NATS"
        return f"collect: listening on {where}, publishing to {redact_url(o.publisher.url)} ({how})"

    # -- counters ----------------------------------------------------------------------------------

    @property
    def published_rows(self) -> int:
        return int(self.publisher.stats.packets_published) if self.publisher is not None else 0

    def summary(self) -> dict[str, Any]:
        """The collector's counters (listeners, decoder per exporter, rows, queue) and the publisher's."""
        out: dict[str, Any] = {"listen": list(self.source.addresses if self.source else self.options.listen)}
        if self.source is not None:
            out.update(self.source.stats.as_dict())
        if self.publisher is not None:
            out["publisher"] = self.publisher.stats.as_dict()
        if self.error is not None:
            out["error"] = str(self.error)
        return out

    def report(self) -> list[Section]:
        s = self.summary()
        if self.source is None:
            return [
                (
                    "Collector",
                    [("listen", ", ".join(s["listen"])), *([("error", s["error"])] if "error" in s else [])],
                )
            ]
        dec = s["decoder"]
        tot = dec["totals"]
        rows = s["rows"]
        lines: list[tuple[str, Any]] = []
        for x in s["listeners"]:
            granted = int(x["rcvbuf_granted"]) // 2
            lines.append(
                (
                    f"udp://{x['address']}",
                    f"{x['datagrams']:,} datagrams, SO_RCVBUF {granted:,} bytes usable ({x['method']})",
                )
            )
        lines += [
            ("datagrams dropped by the kernel", s["kernel_drops"]),
            ("datagrams truncated (dropped)", sum(int(x["truncated"]) for x in s["listeners"])),
            ("exporters", len(dec["exporters"])),
            ("flow records decoded", tot["records"]),
            (
                "sFlow counter records (interfaces kept)",
                f"{tot['interface_counters']:,} ({tot['interfaces']:,})",
            ),
            ("decode errors", tot["decode_errors"]),
            ("sequence gaps (lost export datagrams)", tot["sequence_gaps"]),
            ("records without a sampling rate", tot["records_without_sampling_rate"]),
            ("records without a flow key (not IP)", sum(rows["not_keyed"].values())),
            ("rows (records with a flow key)", rows["rows"]),
            ("packets they stand for (× sampling rate)", rows["packets"]),
            ("bytes they stand for (× sampling rate)", rows["bytes"]),
            ("records dropped by the collector (queue full)", s["queue_dropped_records"]),
        ]
        if "publisher" in s:
            p = s["publisher"]
            pub = self.options.publisher
            lines += [
                ("published to", f"{redact_url(pub.url)} ({'JetStream' if pub.jetstream else 'core NATS'})"),
                ("rows published", p["packets_published"]),
                ("messages", p["messages"]),
                ("JetStream publishes not stored", p["publish_failed"]),
            ]
        if "error" in s:
            lines.append(("error", s["error"]))
        sections: list[Section] = [("Collector", lines)]
        per: list[tuple[str, Any]] = []
        for e, r in dec["exporters"].items():
            rates = ", ".join(f"{rate}" for rate in r["sampling_rates"]) or "-"
            per.append(
                (
                    e,
                    f"{'/'.join(r['kinds'])}: {r['datagrams']:,} datagrams, {r['records']:,} records, "
                    f"{r['templates']:,} templates, "
                    f"{r['unknown_template_sets']:,} sets before their template, "
                    f"{r['sequence_gaps']:,} sequence gaps, {r['decode_errors']:,} decode errors, "
                    f"sampling rates {rates} ({r['records_without_sampling_rate']:,} records without)"
                    + (
                        f", {r['interface_counters']:,} counter records ({r['interfaces']:,} interfaces)"
                        if r["interface_counters"]
                        else ""
                    ),
                )
            )
        if per:
            sections.append(("Exporters", per))
        return sections
