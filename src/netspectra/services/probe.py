"""The probe service: a source of batches (capture files replayed, a live interface) → NATS.

:class:`ProbeOptions` is built from the configuration in one place (:meth:`ProbeOptions.from_config`,
for ``netspectra probe`` and ``netspectra up`` alike); :class:`ProbeService` opens the source — a
:class:`~netspectra.probe.replay.ReplaySource` or a
:class:`~netspectra.capture.afpacket.FanoutCapture` (one or more sockets of a fan-out group), both
:class:`~netspectra.batch.BatchSource` — its persistence, and publishes with a
:class:`~netspectra.probe.publisher.Publisher` on an event loop of its own (never shared with an
in-process engine: that starved the engine's NATS reader, issue 12.7). Without a publisher
(``--no-publish``) it only captures: counted, persisted, optionally dumped (tests, measurements).

Stop conditions (``stop_after_packets``, ``stop_after_s``, ``stop_when_idle_s``, ``stop_file``) end
the source the way SIGTERM does: a live capture drains its ring, everything captured is published.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from netspectra.batch import PacketBatch
from netspectra.services.base import LoopThread, Section, Service, ServiceError
from netspectra.transport.nats_bus import NatsAuth, NatsConnectError, redact_url

log = logging.getLogger(__name__)

__all__ = ["ProbeOptions", "ProbeService", "make_persister"]


def make_persister(cfg: Any, *, live: bool) -> Any:
    """The probe's persister for ``probe.persistence`` (not started), or None when it is off.

    A file replay has no raw frames (and its input is already a capture file): ``pcap`` persistence
    is then skipped with a warning; ``parquet``/``text`` (and ``gob``, written as Parquet) work for both.
    """
    from netspectra.probe.persist import Persister

    if not cfg.enabled:
        return None
    if not live and cfg.encoding == "pcap":
        log.warning("probe.persistence: pcap needs a live capture (the replayed files are pcap already): off")
        return None
    return Persister.from_config(cfg, rotate_bytes=cfg.rotate_bytes, rotate_seconds=cfg.rotate_seconds)


@dataclass(frozen=True)
class ProbeOptions:
    """Everything a probe does (see the module docstring); ``publisher`` None: capture only."""

    files: tuple[Path, ...] = ()
    speed: float | None = None
    batch_size: int = 65_536
    live: Any = None  # LiveOptions of the interface, or None for a replay
    sockets: int = 1
    publisher: Any = None  # PublisherOptions, or None
    persistence: Any = None  # PersistenceConfig, or None
    ready_file: Path | None = None
    stop_after_packets: int = 0
    stop_after_s: float = 0.0
    stop_when_idle_s: float = 0.0
    stop_file: Path | None = None
    go_file: Path | None = None
    dump_prefix: Path | None = None
    #: ``up --no-jetstream``: the in-process engine's received-packets counter (flow control).
    consumed: Callable[[], int] | None = field(default=None, compare=False)
    #: Decode the batches' optional columns (TCP flags, VLAN, ...): a flows task needs them.
    extras: bool = False

    @property
    def interface(self) -> str:
        return self.live.interface if self.live is not None else ""

    @classmethod
    def from_config(
        cls,
        cfg: Any,
        *,
        files: Iterable[Path] = (),
        iface: str | None = None,
        bpf: str | None = None,
        snaplen: int | None = None,
        promisc: bool | None = None,
        block_size: int | None = None,
        block_count: int | None = None,
        ring_mb: int | None = None,
        fanout_group: int | None = None,
        fanout_mode: str = "hash",
        sockets: int = 1,
        publish: bool = True,
        url: str | None = None,
        subject: str | None = None,
        shards: int | None = None,
        shard_fields: tuple[str, ...] | None = None,
        probe_id: str | None = None,
        max_packets: int = 32_768,
        jetstream: bool = False,
        stream: str | None = None,
        auth: NatsAuth | None = None,
        persist_dir: Path | None = None,
        wire_layout: int | None = None,
        wire_compression: str | None = None,
        **rest: Any,
    ) -> ProbeOptions:
        """Options from ``cfg.probe`` (and ``cfg.nats``) with the command line's values winning where
        given (not ``None``). ``persist_dir``: a relative ``probe.persistence.path`` goes under it
        (``up``'s data directory). Other keyword arguments are fields of :class:`ProbeOptions`.
        ``ServiceError`` (code 2) when neither files nor an interface are given, or both."""
        from netspectra.capture.afpacket import LiveOptions
        from netspectra.engine.kind import columns_needed
        from netspectra.probe.publisher import PublisherOptions
        from netspectra.transport.nats_bus import DEFAULT_STREAM

        pc = cfg.probe
        extras = bool(columns_needed(cfg))  # the TCP flags, VLANs, ... a flows task needs
        files = tuple(files)
        if files and iface:
            raise ServiceError("give capture files to replay or --iface to capture, not both", 2)
        interface = iface or ("" if files else pc.interface)
        if not files and not interface:
            raise ServiceError(
                "give capture files to replay, or --iface (or probe.interface) to capture live", 2
            )
        live = None
        pers = pc.persistence
        if persist_dir is not None and pers.enabled and not Path(pers.path or ".").is_absolute():
            pers = pers.model_copy(update={"path": str(persist_dir / (pers.path or "persist"))})
        if interface:
            bs = block_size or pc.block_size
            bc = block_count or pc.block_count
            if ring_mb is not None:
                bc = max(2, (ring_mb << 20) // bs)
            live = LiveOptions(
                interface=interface,
                snaplen=snaplen or pc.snaplen,
                promiscuous=pc.promiscuous if promisc is None else promisc,
                block_size=bs,
                block_count=bc,
                fanout_group=pc.fanout_group if fanout_group is None else fanout_group,
                fanout_mode=fanout_mode,
                bpf_filter=(bpf if bpf is not None else pc.bpf_filter) or None,
                keep_raw=pers.enabled and pers.encoding == "pcap",
                batch_size=rest.get("batch_size", 65_536),
                extras=extras,
            )
        publisher = None
        if publish:
            publisher = PublisherOptions(
                url=url or pc.nats_url,
                subject=subject or pc.subject,
                n_shards=shards or pc.shards,
                shard_fields=shard_fields if shard_fields is not None else pc.shard_fields,
                probe_id=probe_id or f"{socket.gethostname()}:{os.getpid()}",
                max_packets=max_packets,
                block=not interface,  # a live capture never waits for NATS: a full queue drops (counted)
                jetstream=jetstream,
                stream=stream or DEFAULT_STREAM,
                auth=auth if auth is not None else NatsAuth.from_config(cfg),
                wire_layout=wire_layout or pc.wire_layout,
                wire_compression=wire_compression or pc.wire_compression,
            )
        return cls(
            files=files,
            live=live,
            sockets=sockets,
            publisher=publisher,
            persistence=pers if pers.enabled else None,
            extras=extras,
            **rest,
        )

    def with_consumer(self, consumed: Callable[[], int]) -> ProbeOptions:
        return replace(self, consumed=consumed)


class ProbeService(Service):
    """The probe (see the module docstring)."""

    name = "probe"
    stop_timeout_s = 60.0

    def __init__(self, options: ProbeOptions, *, readiness: bool = True) -> None:
        """``readiness``: register the probe's readiness checks (``netspectra probe``); inside ``up`` only
        its series (a finished replay does not make ``up`` unready; the engine checks NATS)."""
        if options.live is None and not options.files:
            raise ServiceError("the probe has no source: give capture files or an interface", 2)
        self.options = options
        self.readiness = readiness
        self.source: Any = None
        self.persister: Any = None
        self.publisher: Any = None
        self.meter: Any = None
        self._loop: LoopThread | None = None
        self._reader: threading.Thread | None = None
        self._watch: threading.Thread | None = None
        self._finished = threading.Event()
        self._started = threading.Event()  # start() has made the source and the publisher
        self._stopped = False
        self._dumped: dict[int, list[PacketBatch]] = {}
        self._read_error: BaseException | None = None
        self._pstats: Any = None
        self._t0 = self._cpu0 = self._last_batch = 0.0
        self.error = None
        try:
            self.persister = (
                make_persister(options.persistence, live=options.live is not None)
                if options.persistence is not None
                else None
            )
        except ValueError as exc:
            raise ServiceError(f"probe.persistence: {exc}", 2) from None
        live = options.live
        if (
            self.persister is not None
            and live is not None
            and self.persister.encoding == "pcap"
            and not live.keep_raw
        ):
            self.options = options = replace(options, live=replace(live, keep_raw=True))

    # -- life --------------------------------------------------------------------------------------

    def wire_ops(self, ep: Any) -> None:
        from netspectra.ops.collectors import BatchMeter, ProbeCollector
        from netspectra.ops.services import wire_probe

        self.meter = BatchMeter()
        pub = self.options.publisher
        if not self.readiness:
            ep.add(
                ProbeCollector(
                    lambda: self.publisher.stats if self.publisher is not None else None,
                    live=(lambda: self.source.stats if self.source is not None else None)
                    if self.options.live is not None
                    else None,
                    persister=lambda: self.persister.stats if self.persister is not None else None,
                    meter=self.meter,
                )
            )
            return
        wire_probe(
            ep,
            pub.url if pub is not None else "",
            lambda: self.publisher.stats if self.publisher is not None else None,
            live=(lambda: self.source.stats if self.source is not None else None)
            if self.options.live is not None
            else None,
            persister=lambda: self.persister.stats if self.persister is not None else None,
            meter=self.meter,
            finished=self._finished.is_set,
            started=self._started.is_set,
        )

    def start(self, cancel: threading.Event | None = None) -> None:
        o = self.options
        if o.publisher is not None:
            from netspectra.offline.warmup import warm_up_wire

            # the encoder's and the shard split's kernels, before the probe says it is ready and before
            # packets wait for them (about half a second on the first batch otherwise)
            warm_up_wire()
        self.source = self._open_source()
        self._t0, self._cpu0 = time.perf_counter(), time.process_time()
        if self.persister is not None:
            self.persister.start()
        if o.live is not None:
            lo = o.live
            log.info(
                "probe: capturing on %s (snaplen %d%s%s), %s",
                lo.interface,
                lo.snaplen,
                f", filter {lo.bpf_filter!r}" if lo.bpf_filter else "",
                f", {o.sockets} sockets of fan-out group {lo.fanout_group}" if o.sockets > 1 else "",
                f"publishing to {redact_url(o.publisher.url)}"
                if o.publisher is not None
                else "not publishing",
            )
        if o.ready_file is not None:
            o.ready_file.touch()
        if o.publisher is not None:
            from netspectra.probe.publisher import Publisher

            kernel = self.source.kernel_drops if o.live is not None else None
            self.publisher = Publisher(o.publisher, kernel_dropped=kernel, consumed=o.consumed)
            batches = self._batches()
            # a replay stops at the stop event; a live capture ends its iteration on source.stop() after
            # draining its ring, so that everything captured is published
            use_stop = o.live is None
            self._loop = LoopThread(
                "ns-probe", lambda stop: self.publisher.run(batches, stop if use_stop else None)
            ).start()
        else:
            self._reader = threading.Thread(target=self._drain, name="ns-probe-read", daemon=True)
            self._reader.start()
        if o.stop_after_packets or o.stop_after_s or o.stop_when_idle_s or o.stop_file is not None:
            self._watch = threading.Thread(target=self._watch_limits, name="ns-probe-limits", daemon=True)
            self._watch.start()
        self._started.set()

    def _open_source(self) -> Any:
        o = self.options
        if o.live is None:
            from netspectra.probe.replay import ReplaySource

            return ReplaySource(o.files, speed=o.speed or None, batch_size=o.batch_size, extras=o.extras)
        from netspectra.capture.afpacket import FanoutCapture, LiveCaptureError

        try:
            return FanoutCapture(o.live, o.sockets)
        except LiveCaptureError as exc:
            raise ServiceError(str(exc)) from None

    def _batches(self) -> Iterator[PacketBatch]:
        """The source's batches: persisted, metered, dumped as configured (iterated in one thread)."""
        o = self.options
        if o.go_file is not None:
            while not o.go_file.exists() and not self._stopped:
                time.sleep(0.01)
        sink = self.persister.offer if self.persister is not None else None
        if o.live is not None:
            tagged: Iterable[tuple[int, PacketBatch]] = self.source.tagged(sink)
        else:
            tagged = ((0, b) for b in self._persisting(self.source))
        for i, batch in tagged:
            self._last_batch = time.perf_counter()
            if self.meter is not None:
                self.meter.packets.inc(len(batch))
                self.meter.bytes.inc(int(batch.length.sum(dtype="uint64")))
            if o.dump_prefix is not None:
                self._dumped.setdefault(i, []).append(batch)
            yield batch

    def _persisting(self, source: Iterable[PacketBatch]) -> Iterator[PacketBatch]:
        for batch in source:
            if self.persister is not None:
                self.persister.offer(batch, None)
            yield batch

    def _drain(self) -> None:
        try:
            for _ in self._batches():
                pass
        except BaseException as exc:
            self._read_error = exc
        finally:
            self._finished.set()

    def _watch_limits(self) -> None:
        o = self.options
        t0 = time.monotonic()
        seen, seen_at = -1, t0
        while not self.done() and not self._stopped:
            time.sleep(0.002 if o.stop_when_idle_s else 0.05)
            now = time.monotonic()
            records = self._records()
            if records != seen:
                seen, seen_at = records, now
            if (
                (o.stop_after_packets and records >= o.stop_after_packets)
                or (o.stop_after_s and now - t0 >= o.stop_after_s)
                or (o.stop_when_idle_s and records > 0 and now - seen_at >= o.stop_when_idle_s)
                or (o.stop_file is not None and o.stop_file.exists())
            ):
                log.info("probe: stop condition met after %d records", records)
                self.source.stop()
                if self._loop is not None and o.live is None:
                    self._loop.request_stop()
                return

    def _records(self) -> int:
        st = self.source.stats
        return int(st.capture.records) if self.options.live is not None else int(st.packets)

    def done(self) -> bool:
        if self._loop is not None:
            ended = not self._loop.is_alive()
        elif self._reader is not None:
            ended = not self._reader.is_alive()
        else:
            return False
        if ended:
            self._finished.set()
            exc = self._loop.error if self._loop is not None else self._read_error
            if exc is not None and self.error is None:
                self.error = self._as_error(exc)
        return ended

    def _as_error(self, exc: BaseException) -> ServiceError:
        from netspectra.capture.errors import CaptureError

        if isinstance(exc, (CaptureError, ServiceError, NatsConnectError)):
            return ServiceError(str(exc))
        url = redact_url(self.options.publisher.url) if self.options.publisher is not None else "-"
        return ServiceError(f"probe (NATS at {url}): {type(exc).__name__}: {exc}")

    def alive(self) -> bool:
        th = self._loop
        return th is None or not th.is_alive() or time.monotonic() - th.last_tick < 10.0

    def ready(self) -> str | None:
        return "the probe has finished its input" if self._finished.is_set() else None

    def stop(self, timeout_s: float | None = None) -> None:
        """End the source (a live capture drains its ring), publish what it gave, stop the persistence."""
        if self._stopped:
            return
        self._stopped = True
        budget = self.stop_timeout_s if timeout_s is None else timeout_s
        t0 = time.monotonic()
        if self.source is not None:
            self.source.stop()
        if self._loop is not None:
            if self.options.live is None:
                self._loop.request_stop()
            self._loop.stop(max(1.0, budget * 0.8), "the probe's publisher")
        if self._reader is not None:
            self._reader.join(max(1.0, budget * 0.8))
        self.done()
        self._finished.set()
        if self.source is not None:
            self.source.close()
        if self.persister is not None:
            left = max(1.0, budget - (time.monotonic() - t0))
            stopper = threading.Thread(target=self._stop_persister, name="ns-persist-stop", daemon=True)
            stopper.start()
            stopper.join(left)
            if stopper.is_alive():
                log.error("probe: the persistence did not finish writing in time: abandoned")
        if self.options.dump_prefix is not None:
            self._dump()

    def _stop_persister(self) -> None:
        self._pstats = self.persister.stop()

    def _dump(self) -> None:
        import numpy as np

        n = self.options.sockets if self.options.live is not None else 1
        for i in range(n):
            b = PacketBatch.concat(self._dumped.get(i, []))
            np.savez(f"{self.options.dump_prefix}.{i}.npz", **{c: getattr(b, c) for c in PacketBatch.COLUMNS})

    def banner(self) -> str:
        o = self.options
        what = f"capturing on {o.interface}" if o.live is not None else f"replaying {len(o.files)} file(s)"
        if o.publisher is None:
            return f"probe: {what}, not publishing"
        how = "JetStream" if o.publisher.jetstream else "core NATS"
        to = redact_url(o.publisher.url)
        return f"probe: {what}, publishing to {to} ({how}, {o.publisher.n_shards} shards)"

    # -- counters ----------------------------------------------------------------------------------

    @property
    def published_packets(self) -> int:
        return int(self.publisher.stats.packets_published) if self.publisher is not None else 0

    def summary(self) -> dict[str, Any]:
        """Flat counters: the publisher's (when publishing), the capture's, the persistence's."""
        out: dict[str, Any] = {}
        if self.publisher is not None:
            out.update(self.publisher.stats.as_dict())
        if self.source is not None:
            st = self.source.stats
            if self.options.live is not None:
                d = st.as_dict()
                out.update({k: v for k, v in d.items() if k != "sockets"})
                out["linktype"] = self.source.linktype
                out["sockets"] = d["sockets"]
                # measurements (docs/capture-live.md): start to last batch, and the process's CPU time
                out["drain_seconds"] = round(max(0.0, (self._last_batch or self._t0) - self._t0), 6)
                out["cpu_seconds"] = round(time.process_time() - self._cpu0, 6)
            else:
                out["source"] = st.as_dict()
        if self.error is not None:
            out["error"] = str(self.error)
        out["persistence"] = _persist_summary(
            self._pstats or (self.persister.stats if self.persister else None)
        )
        return out

    def report(self) -> list[Section]:
        s = self.summary()
        lines: list[tuple[str, Any]] = []
        if self.options.live is not None:
            lines += [
                ("interface", self.options.interface),
                ("kernel: packets", s.get("kernel_packets", 0)),
                ("kernel: dropped (ring full)", s.get("kernel_drops", 0)),
                ("captured frames", s.get("captured_records", 0)),
                ("captured IP packets", s.get("captured_ip_packets", 0)),
            ]
        else:
            src = s.get("source", {})
            lines += [
                ("files", ", ".join(str(f) for f in self.options.files)),
                # the words of `analyze`'s summary: frames in the files, those in flows (published)
                ("frames read", src.get("records", 0)),
                ("IP packets (in flows)", src.get("packets", 0)),
                ("skipped (not in a flow)", src.get("skipped", 0)),
            ]
        if self.publisher is not None:
            pub = self.options.publisher
            lines += [
                ("published to", f"{redact_url(pub.url)} ({'JetStream' if pub.jetstream else 'core NATS'})"),
                ("packets published", s.get("packets_published", 0)),
                ("messages", s.get("messages", 0)),
                ("dropped by the probe (queue full)", s.get("dropped_packets", 0)),
                ("JetStream publishes not stored", s.get("publish_failed", 0)),
                ("rate", f"{s.get('packets_per_second', 0):,} packets/s over {s.get('elapsed_s', 0):.1f} s"),
            ]
        p = s.get("persistence")
        if p:
            lines.append(
                (
                    "persisted",
                    f"{p['written_packets']} packets in {p['files']} file(s), {p['dropped_packets']} dropped",
                )
            )
        if "error" in s:
            lines.append(("error", s["error"]))
        return [("Probe", lines)]


def _persist_summary(stats: Any) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {
        "written_packets": stats.written_packets,
        "written_bytes": stats.written_bytes,
        "dropped_packets": stats.dropped_packets,
        "dropped_batches": stats.dropped_batches,
        "errors": stats.errors,
        "files": len(stats.files),
        "paths": [str(f) for f in stats.files],
    }
