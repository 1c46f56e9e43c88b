"""Prometheus collectors over NetSpectra's own counter objects, read at scrape time.

Nothing here counts: the hot paths keep incrementing their plain counters
(:class:`~netspectra.engine.metrics.EngineMetrics`, :class:`~netspectra.engine.stream.StreamStats`,
:class:`~netspectra.probe.publisher.ProbeStats`, ...), and each collector turns the current values
into metric families when Prometheus scrapes. Every series is documented in ``docs/operations.md``;
label sets that are known in advance (writers' drop reasons, notifiers) appear at 0 before their
first event, so dashboards and alerts see them.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from netspectra import __version__
from netspectra.batch import PacketBatch
from netspectra.counters import Counter, LabeledTiming, Timing
from netspectra.engine.metrics import EngineMetrics

__all__ = [
    "WRITER_DROP_REASONS",
    "AlerterCollector",
    "BatchMeter",
    "BuildInfoCollector",
    "EngineCollector",
    "EnrichmentCollector",
    "ProbeCollector",
    "ReadyCollector",
    "StreamCollector",
]

#: Why a :class:`~netspectra.engine.resilient.ResilientWriter` drops a snapshot (``docs/engine.md``).
WRITER_DROP_REASONS = ("overflow", "superseded", "close", "attempts")


def _counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    fam = CounterMetricFamily(name, doc, labels=list(labels) if labels else None)
    fam.add_metric(list(labels.values()) if labels else [], value)
    return fam


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(name, doc, value=value)


def _labeled_counter(name: str, doc: str, label: str, values: Iterable[tuple[str, float]]) -> Metric:
    fam = CounterMetricFamily(name, doc, labels=[label])
    for key, value in values:
        fam.add_metric([key], value)
    return fam


def histogram_buckets(timing: Timing) -> tuple[list[tuple[str, float]], float]:
    """``(cumulative buckets with "+Inf", sum)`` of ``timing`` for a :class:`HistogramMetricFamily`."""
    counts, total, _ = timing.state()
    buckets: list[tuple[str, float]] = []
    acc = 0
    for bound, n in zip((*timing.buckets, math.inf), counts, strict=True):
        acc += n
        buckets.append(("+Inf" if bound == math.inf else repr(float(bound)), acc))
    return buckets, total


def _histogram(name: str, doc: str, label: str, items: Iterable[tuple[str, Timing]]) -> Metric:
    fam = HistogramMetricFamily(name, doc, labels=[label])
    for key, timing in items:
        buckets, total = histogram_buckets(timing)
        fam.add_metric([key], buckets, total)
    return fam


class BuildInfoCollector(Collector):
    """``netspectra_build_info{version, python, service} 1``."""

    def __init__(self, service: str) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(
            "netspectra_build_info",
            "NetSpectra version, Python version and service of this process (always 1).",
            labels=["version", "python", "service"],
        )
        fam.add_metric([__version__, platform.python_version(), self.service], 1)
        yield fam


class ReadyCollector(Collector):
    """``netspectra_ready``: 1 when the service's readiness checks pass (as ``/readyz``), else 0."""

    def __init__(self, ready: Callable[[], tuple[bool, Any]]) -> None:
        self._ready = ready

    def collect(self) -> Iterator[Metric]:
        ok, _ = self._ready()
        yield _gauge(
            "netspectra_ready", "1 when the service is ready (as /readyz says), else 0.", 1 if ok else 0
        )


class EngineCollector(Collector):
    """The series of one manager's :class:`EngineMetrics` (engine, tasks, writers)."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        tasks: dict[str, float] = dict.fromkeys(m.task_update_batches.as_dict(), 0)  # every task, at 0
        yield _counter("netspectra_engine_packets", "Packets accepted by the engine.", m.packets_in.value)
        yield _counter(
            "netspectra_engine_bytes",
            "Bytes of the packets accepted (wire bytes; flow-export rows: the bytes they stand for).",
            m.bytes_in.value,
        )
        yield _counter("netspectra_engine_batches", "Batches accepted by the engine.", m.batches_in.value)
        yield _counter(
            "netspectra_engine_dropped_packets",
            "Packets the engine's queue refused (full, or not taken in time).",
            m.dropped_packets.value,
        )
        yield _counter(
            "netspectra_engine_dropped_batches",
            "Batches the engine's queue refused.",
            m.dropped_batches.value,
        )
        yield _gauge(
            "netspectra_engine_queue_packets", "Packets waiting in the engine's queue.", m.queue_packets()
        )
        yield _gauge(
            "netspectra_engine_queue_batches", "Batches waiting in the engine's queue.", m.queue_batches()
        )
        yield _gauge(
            "netspectra_engine_queue_capacity_packets",
            "Bound of the engine's queue in packets.",
            m.queue_capacity_packets,
        )
        yield _counter("netspectra_engine_periods", "Period resets done.", m.periods.value)
        yield _counter(
            "netspectra_engine_callback_errors",
            "Snapshot/stop callbacks that raised.",
            m.callback_errors.value,
        )
        yield _labeled_counter(
            "netspectra_engine_task_update_seconds",
            "Seconds spent updating each task (all worker threads).",
            "task",
            m.task_update_seconds.as_dict().items(),
        )
        yield _labeled_counter(
            "netspectra_engine_task_batches",
            "Batches applied to each task.",
            "task",
            m.task_update_batches.as_dict().items(),
        )
        yield _labeled_counter(
            "netspectra_engine_task_errors",
            "Task updates or snapshots that raised.",
            "task",
            (tasks | m.task_errors.as_dict()).items(),
        )
        yield _labeled_counter(
            "netspectra_engine_snapshots",
            "Snapshots taken of each task (periodic, final and on demand).",
            "task",
            (tasks | m.snapshots_taken.as_dict()).items(),
        )
        unknown = CounterMetricFamily(
            "netspectra_engine_task_unknown_key_rows",
            "Rows a task keyed under a key field's unknown value because their batch lacked the field.",
            labels=["task", "field"],
        )
        for task, counters in sorted(m.task_counters().items()):
            for field, rows in sorted((counters.get("missing_key_rows") or {}).items()):
                unknown.add_metric([task, field], rows)
        yield unknown
        yield _histogram(
            "netspectra_engine_snapshot_seconds",
            "Duration of one task snapshot.",
            "task",
            _timings(m.snapshot_seconds, m.task_update_batches.as_dict()),
        )
        yield from self._writers()

    def _writers(self) -> Iterator[Metric]:
        writers = sorted(self.m.writers.items())
        written = CounterMetricFamily(
            "netspectra_writer_snapshots_written", "Snapshots each writer stored.", labels=["writer"]
        )
        failed = CounterMetricFamily(
            "netspectra_writer_write_failures", "Write attempts that raised (retried).", labels=["writer"]
        )
        open_failed = CounterMetricFamily(
            "netspectra_writer_open_failures", "Attempts to open the writer that raised.", labels=["writer"]
        )
        dropped = CounterMetricFamily(
            "netspectra_writer_dropped_snapshots",
            "Snapshots a writer gave up, by reason (superseded loses nothing).",
            labels=["writer", "reason"],
        )
        opened = GaugeMetricFamily("netspectra_writer_open", "1 while the writer is open.", labels=["writer"])
        buffered = GaugeMetricFamily(
            "netspectra_writer_buffered_snapshots", "Snapshots waiting for the writer.", labels=["writer"]
        )
        seconds = HistogramMetricFamily(
            "netspectra_writer_write_seconds",
            "Duration of one write call (also failed ones).",
            labels=["writer"],
        )
        for name, w in writers:
            written.add_metric([name], w.written.value)
            failed.add_metric([name], w.failed.value)
            open_failed.add_metric([name], w.open_failed.value)
            by_reason = dict.fromkeys(WRITER_DROP_REASONS, 0) | w.dropped.as_dict()
            for reason, n in sorted(by_reason.items()):
                dropped.add_metric([name, reason], n)
            opened.add_metric([name], 1 if w.opened else 0)
            buffered.add_metric([name], w.buffered())
            b, s = histogram_buckets(w.write_seconds)
            seconds.add_metric([name], b, s)
        yield from (written, failed, open_failed, dropped, opened, buffered, seconds)


def _timings(family: LabeledTiming, known: dict[str, Any]) -> list[tuple[str, Timing]]:
    for label in known:  # every task appears, with an empty histogram before its first snapshot
        family.get(label)
    return family.items()


class StreamCollector(Collector):
    """The series of an engine's NATS consumer (:class:`~netspectra.engine.stream.StreamStats`).

    ``stats`` returns the consumer's live counters, or ``None`` before it exists (nothing exported).
    """

    def __init__(self, stats: Callable[[], Any]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        st = self._stats()
        if st is None:
            return
        msgs = CounterMetricFamily(
            "netspectra_stream_messages", "NATS messages received, by format.", labels=["format"]
        )
        msgs.add_metric(["batch"], st.messages)
        msgs.add_metric(["packetinfo"], st.compat_messages)
        yield msgs
        yield _counter("netspectra_stream_packets", "Packets decoded from NATS messages.", st.packets)
        yield _counter(
            "netspectra_stream_handoff_dropped_packets",
            "Packets dropped at the NATS hand-off (the engine did not take them in time; core NATS).",
            st.handoff_dropped_packets,
        )
        yield _counter("netspectra_stream_decode_errors", "Undecodable messages.", st.decode_errors)
        yield _counter(
            "netspectra_stream_slow_consumer_events",
            "Slow-consumer events of the NATS client (its pending buffer overflowed).",
            st.slow_consumer_events,
        )
        yield _counter(
            "netspectra_stream_seq_gap_messages",
            "Messages missing in the probes' per-shard sequence (lost before the engine).",
            st.seq_gaps,
        )
        yield _counter(
            "netspectra_stream_lost_packets",
            "Packets of the messages missing in the probes' sequences (exact from their shard_packets).",
            getattr(st, "lost_packets", 0),
        )
        yield _counter(
            "netspectra_stream_disconnects",
            "Connections to NATS lost (core NATS: what was published until the reconnect is lost; a server "
            "that cut a slow consumer off shows here).",
            getattr(st, "disconnects", 0),
        )
        yield _counter(
            "netspectra_stream_redelivered_skipped",
            "JetStream redeliveries recognised and skipped.",
            st.redelivered_skipped,
        )
        yield _counter(
            "netspectra_stream_handover_skipped",
            "JetStream messages skipped after a change of member count: an earlier member acknowledged them.",
            st.handover_skipped,
        )
        yield _gauge(
            "netspectra_stream_acked_sequence", "Last JetStream sequence acknowledged.", st.acked_stream_seq
        )


class BatchMeter:
    """Counts the packets and wire bytes of the batches that pass through :meth:`wrap` (per batch,
    one numpy sum: never per packet)."""

    def __init__(self) -> None:
        self.packets = Counter()
        self.bytes = Counter()

    def wrap(self, source: Iterable[PacketBatch]) -> Iterator[PacketBatch]:
        for batch in source:
            self.packets.inc(len(batch))
            self.bytes.inc(int(batch.length.sum(dtype="uint64")))
            yield batch


class ProbeCollector(Collector):
    """The series of a probe: publisher, live capture (kernel) and persistence counters.

    Each argument returns the current counter object, or ``None`` when that part does not exist (a
    replay has no kernel counters, persistence may be off): its series are then left out. ``meter``
    counts the source's bytes (ProbeStats has packets only).
    """

    def __init__(
        self,
        publisher: Callable[[], Any],
        live: Callable[[], Any] | None = None,
        persister: Callable[[], Any] | None = None,
        meter: BatchMeter | None = None,
    ) -> None:
        self._meter = meter
        self._publisher = publisher
        self._live = live
        self._persister = persister

    def collect(self) -> Iterator[Metric]:
        if self._meter is not None:
            yield _counter(
                "netspectra_probe_source_bytes",
                "Wire bytes of the packets the source gave.",
                self._meter.bytes.value,
            )
        st = self._publisher()
        if st is not None:
            yield _counter(
                "netspectra_probe_packets", "Packets the source handed to the publisher.", st.packets_in
            )
            yield _counter(
                "netspectra_probe_batches", "Batches the source handed to the publisher.", st.batches_in
            )
            yield _counter(
                "netspectra_probe_dropped_packets",
                "Packets the probe dropped itself (publisher queue full, live capture).",
                st.dropped_packets,
            )
            yield _counter(
                "netspectra_probe_published_packets", "Packets published to NATS.", st.packets_published
            )
            yield _counter(
                "netspectra_probe_published_bytes", "Message payload bytes published.", st.bytes_published
            )
            yield _counter("netspectra_probe_messages", "NATS messages published.", st.messages)
            yield _counter(
                "netspectra_probe_publish_failed",
                "JetStream publishes the server did not acknowledge.",
                st.publish_failed,
            )
            yield _counter(
                "netspectra_probe_flow_waits",
                "Times the probe waited for its in-process engine to catch up (up --no-jetstream).",
                getattr(st, "flow_waits", 0),
            )
        live = self._live() if self._live is not None else None
        if live is not None:
            yield _counter(
                "netspectra_probe_kernel_packets",
                "Packets the kernel saw on the socket.",
                live.kernel_packets,
            )
            yield _counter(
                "netspectra_probe_kernel_drops", "Packets the kernel dropped (ring full).", live.kernel_drops
            )
            yield _counter(
                "netspectra_probe_captured_records", "Frames the live capture read.", live.capture.records
            )
            yield _counter(
                "netspectra_probe_captured_bytes",
                "Wire bytes of the frames captured.",
                live.capture.wire_bytes,
            )
        ps = self._persister() if self._persister is not None else None
        if ps is not None:
            yield _counter(
                "netspectra_persist_written_packets",
                "Packets written by the persistence.",
                ps.written_packets,
            )
            yield _counter(
                "netspectra_persist_written_bytes", "File bytes written by the persistence.", ps.written_bytes
            )
            yield _counter(
                "netspectra_persist_dropped_packets",
                "Packets the persistence dropped (queue full or write error).",
                ps.dropped_packets,
            )
            yield _counter("netspectra_persist_errors", "Persistence write errors.", ps.errors)
            yield _counter("netspectra_persist_files", "Persistence files completed.", len(ps.files))


class AlerterCollector(Collector):
    """The series of an :class:`~netspectra.alerting.alerter.Alerter` (``alerter.metrics``)."""

    def __init__(self, alerter: Any) -> None:
        self.m = alerter.metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        yield _labeled_counter(
            "netspectra_alerts_sent",
            "Alert notifications delivered, by notifier.",
            "notifier",
            m.sent.as_dict().items(),
        )
        yield _labeled_counter(
            "netspectra_alerts_failed",
            "Alert notifications a notifier failed to deliver.",
            "notifier",
            m.failed.as_dict().items(),
        )
        yield _labeled_counter(
            "netspectra_alert_checks", "Alert checks run, by outcome.", "outcome", m.checks.as_dict().items()
        )
        yield _counter(
            "netspectra_alerts_undelivered",
            "Alerts no notifier delivered (retried later).",
            m.undelivered.value,
        )


class EnrichmentCollector(Collector):
    """The series of the engine's enrichment stage (:class:`~netspectra.engine.enrichment.EnrichmentStage`):
    rows enriched, rows left unenriched by source (a database configured but not loaded, or the stage
    failing on a batch), answers missing by column, reloads and load errors by database, and whether each
    configured database is loaded now."""

    def __init__(self, stage: Any) -> None:
        self.stage = stage

    def collect(self) -> Iterator[Metric]:
        m = self.stage.metrics()
        yield _counter("netspectra_enrichment_rows", "Rows enriched (every row of every batch).", m["rows"])
        yield _counter("netspectra_enrichment_batches", "Batches enriched.", m["batches"])
        yield _labeled_counter(
            "netspectra_enrichment_unenriched_rows",
            "Rows enriched without a source: its database configured but not loaded (missing, damaged), or "
            "the stage failing on the batch (source 'stage').",
            "source",
            m["unenriched_rows"].items(),
        )
        yield _labeled_counter(
            "netspectra_enrichment_misses",
            "Rows whose answer was unknown, by column (SrcAS, DstCountry, SrcNet, ...).",
            "column",
            m["misses"].items(),
        )
        yield _labeled_counter(
            "netspectra_enrichment_reloads",
            "New versions of a database loaded.",
            "source",
            m["reloads"].items(),
        )
        yield _labeled_counter(
            "netspectra_enrichment_load_errors",
            "Attempts to load a database that failed (missing, damaged, wrong kind).",
            "source",
            m["load_errors"].items(),
        )
        yield _counter(
            "netspectra_enrichment_errors", "Batches the stage failed on (rows left unknown).", m["errors"]
        )
        yield _counter("netspectra_enrichment_seconds", "Seconds spent enriching.", m["seconds"])
        yield _gauge(
            "netspectra_enrichment_table_generation",
            "Lookup tables built so far (1 + reloads).",
            m["table_generation"],
        )
        loaded = GaugeMetricFamily(
            "netspectra_enrichment_database_loaded",
            "1 while the configured database of the source is loaded, else 0.",
            labels=["source"],
        )
        for source, st in self.stage.status().items():
            if isinstance(st, dict):
                loaded.add_metric([source], 1 if st.get("loaded") else 0)
        yield loaded
