"""The ops exporter: Prometheus series from known counter values, the ops HTTP server, JSON logs."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from test_alert_rules import Collect, make_alerter

from netspectra.batch import PacketBatch
from netspectra.config.models import Config
from netspectra.engine.metrics import EngineMetrics, Timing
from netspectra.engine.stream import StreamStats
from netspectra.ops.collectors import (
    AlerterCollector,
    BatchMeter,
    EngineCollector,
    ProbeCollector,
    StreamCollector,
    histogram_buckets,
)
from netspectra.ops.endpoint import OpsEndpoint, parse_listen, resolve_listen
from netspectra.ops.logs import JsonFormatter, configure_logging
from netspectra.probe.persist import PersistStats
from netspectra.probe.publisher import ProbeStats

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(*collectors: Any) -> Samples:
    reg = CollectorRegistry(auto_describe=False)
    for c in collectors:
        reg.register(c)
    out: Samples = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def one(sm: Samples, name: str, **labels: str) -> float:
    got = [v for lab, v in sm[name] if all(lab.get(k) == x for k, x in labels.items())]
    assert len(got) == 1, (name, labels, sm.get(name))
    return got[0]


def test_engine_series_from_known_counters() -> None:
    m = EngineMetrics()
    m.packets_in.inc(1000)
    m.bytes_in.inc(64_000)
    m.batches_in.inc(3)
    m.dropped_packets.inc(7)
    m.dropped_batches.inc(1)
    m.queue_packets = lambda: 42
    m.queue_batches = lambda: 2
    m.queue_capacity_packets = 10_000
    m.task_update_batches.touch("flows")
    m.task_update_batches.inc("flows", 3)
    m.task_update_seconds.inc("flows", 0.5)
    m.snapshots_taken.inc("flows", 2)
    m.snapshot_seconds.observe("flows", 0.003)
    m.snapshot_seconds.observe("flows", 0.2)
    w = m.writer("exact/parquet[0]")
    w.written.inc(5)
    w.failed.inc(2)
    w.dropped.inc("overflow", 1)
    w.opened = True
    w.buffered = lambda: 3
    w.write_seconds.observe(0.04)
    sm = scrape(EngineCollector(m))
    assert one(sm, "netspectra_engine_packets_total") == 1000
    assert one(sm, "netspectra_engine_bytes_total") == 64_000
    assert one(sm, "netspectra_engine_batches_total") == 3
    assert one(sm, "netspectra_engine_dropped_packets_total") == 7
    assert one(sm, "netspectra_engine_dropped_batches_total") == 1
    assert one(sm, "netspectra_engine_queue_packets") == 42
    assert one(sm, "netspectra_engine_queue_batches") == 2
    assert one(sm, "netspectra_engine_queue_capacity_packets") == 10_000
    assert one(sm, "netspectra_engine_task_batches_total", task="flows") == 3
    assert one(sm, "netspectra_engine_task_update_seconds_total", task="flows") == 0.5
    assert one(sm, "netspectra_engine_task_errors_total", task="flows") == 0  # known task, at 0
    assert one(sm, "netspectra_engine_snapshots_total", task="flows") == 2
    assert one(sm, "netspectra_engine_snapshot_seconds_count", task="flows") == 2
    assert one(sm, "netspectra_engine_snapshot_seconds_sum", task="flows") == pytest.approx(0.203)
    assert one(sm, "netspectra_engine_snapshot_seconds_bucket", task="flows", le="0.005") == 1
    assert one(sm, "netspectra_engine_snapshot_seconds_bucket", task="flows", le="0.25") == 2
    assert one(sm, "netspectra_engine_snapshot_seconds_bucket", task="flows", le="+Inf") == 2
    wl = {"writer": "exact/parquet[0]"}
    assert one(sm, "netspectra_writer_snapshots_written_total", **wl) == 5
    assert one(sm, "netspectra_writer_write_failures_total", **wl) == 2
    assert one(sm, "netspectra_writer_open", **wl) == 1
    assert one(sm, "netspectra_writer_buffered_snapshots", **wl) == 3
    assert one(sm, "netspectra_writer_dropped_snapshots_total", reason="overflow", **wl) == 1
    for reason in ("superseded", "close", "attempts"):  # every reason is there from the start
        assert one(sm, "netspectra_writer_dropped_snapshots_total", reason=reason, **wl) == 0
    assert one(sm, "netspectra_writer_write_seconds_count", **wl) == 1


def test_timing_buckets_are_cumulative_with_le_semantics() -> None:
    t = Timing((0.1, 1.0))
    for s in (0.05, 0.1, 0.5, 5.0):
        t.observe(s)
    buckets, total = histogram_buckets(t)
    assert buckets == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert total == pytest.approx(5.65)
    with pytest.raises(ValueError):
        Timing((1.0, 0.5))


def test_stream_probe_persist_series() -> None:
    st = StreamStats(messages=10, packets=5000, compat_messages=2, handoff_dropped_packets=30, seq_gaps=1)
    assert scrape(StreamCollector(lambda: None)) == {}  # before the consumer exists: nothing
    sm = scrape(StreamCollector(lambda: st))
    assert one(sm, "netspectra_stream_messages_total", format="batch") == 10
    assert one(sm, "netspectra_stream_messages_total", format="packetinfo") == 2
    assert one(sm, "netspectra_stream_packets_total") == 5000
    assert one(sm, "netspectra_stream_handoff_dropped_packets_total") == 30
    assert one(sm, "netspectra_stream_seq_gap_messages_total") == 1

    ps = ProbeStats(packets_in=900, batches_in=3, dropped_packets=100, packets_published=800, messages=4)
    ps.publish_failed = 2
    live = SimpleNamespace(
        kernel_packets=1000, kernel_drops=50, capture=SimpleNamespace(records=950, wire_bytes=70_000)
    )
    pers = PersistStats(
        written_packets=880, written_bytes=9000, dropped_packets=20, errors=1, files=["a", "b"]
    )
    meter = BatchMeter()
    batch = PacketBatch.empty(3)
    batch.length[:] = np.array([10, 20, 30], dtype=batch.length.dtype)
    assert list(meter.wrap([batch])) == [batch]
    sm = scrape(ProbeCollector(lambda: ps, live=lambda: live, persister=lambda: pers, meter=meter))
    assert one(sm, "netspectra_probe_packets_total") == 900
    assert one(sm, "netspectra_probe_dropped_packets_total") == 100
    assert one(sm, "netspectra_probe_published_packets_total") == 800
    assert one(sm, "netspectra_probe_publish_failed_total") == 2
    assert one(sm, "netspectra_probe_kernel_drops_total") == 50
    assert one(sm, "netspectra_probe_kernel_packets_total") == 1000
    assert one(sm, "netspectra_probe_captured_bytes_total") == 70_000
    assert one(sm, "netspectra_persist_dropped_packets_total") == 20
    assert one(sm, "netspectra_persist_written_packets_total") == 880
    assert one(sm, "netspectra_persist_files_total") == 2
    assert one(sm, "netspectra_probe_source_bytes_total") == 60
    # a replay: no kernel counters, no persistence
    sm = scrape(ProbeCollector(lambda: ps))
    assert "netspectra_probe_kernel_drops_total" not in sm and "netspectra_persist_errors_total" not in sm


def test_alerter_series_count_sent_and_failed_by_notifier() -> None:
    ok, down = Collect(), Collect(fail=True)
    alerter, _, _ = make_alerter(ok, down)
    sm = scrape(AlerterCollector(alerter))
    assert one(sm, "netspectra_alerts_sent_total", notifier=ok.name) == 0  # every notifier from the start
    assert alerter.check() is not None  # fires: delivered by one, failed by the other
    assert alerter.check() is None  # standing condition within the cooldown: quiet
    sm = scrape(AlerterCollector(alerter))
    (sent,) = [v for lab, v in sm["netspectra_alerts_sent_total"] if v]
    (failed,) = [v for lab, v in sm["netspectra_alerts_failed_total"] if v]
    assert sent == failed == 1
    assert one(sm, "netspectra_alert_checks_total", outcome="notified") == 1
    assert one(sm, "netspectra_alert_checks_total", outcome="quiet") == 1
    assert one(sm, "netspectra_alerts_undelivered_total") == 0


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ops_endpoint_health_readiness_metrics() -> None:
    ep = OpsEndpoint("engine", "127.0.0.1", 0).start()
    try:
        code, body = _get(ep.port, "/readyz")
        assert code == 503 and json.loads(body)["status"] == "unavailable"  # no checks yet: starting
        state = {"nats": False}
        ep.check("nats", lambda: None if state["nats"] else "not subscribed")
        code, body = _get(ep.port, "/readyz")
        assert code == 503 and json.loads(body)["checks"] == {"nats": "not subscribed"}
        state["nats"] = True
        code, body = _get(ep.port, "/readyz")
        assert code == 200 and json.loads(body) == {
            "status": "ok",
            "service": "engine",
            "checks": {"nats": "ok"},
        }
        ep.check("boom", lambda: 1 / 0)  # type: ignore[arg-type,return-value]
        code, body = _get(ep.port, "/readyz")
        assert code == 503 and "ZeroDivisionError" in json.loads(body)["checks"]["boom"]
        ep.check("boom", lambda: None)
        assert _get(ep.port, "/healthz")[0] == 200
        ep.heartbeat.max_age_s = 0.0  # a loop that stopped beating is not alive
        assert _get(ep.port, "/healthz")[0] == 503
        ep.heartbeat.max_age_s = 30.0
        code, body = _get(ep.port, "/metrics")
        assert code == 200
        names = {f.name for f in text_string_to_metric_families(body)}
        assert {"netspectra_build_info", "netspectra_ready"} <= names
        ep.set_stopping()
        assert _get(ep.port, "/readyz")[0] == 503
        assert _get(ep.port, "/other")[0] == 404
    finally:
        ep.stop()


def test_listen_addresses_and_config() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen(":9464") == ("127.0.0.1", 9464)  # loopback unless told otherwise (issue 12.8)
    assert parse_listen("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "host:", "h:99999", "h:x"):
        with pytest.raises(ValueError, match="ops listen address"):
            parse_listen(bad)
    with pytest.raises(ValueError, match=r"'h:99999': port 99999 is above 65535; use HOST:PORT"):
        parse_listen("h:99999")
    cfg = Config.model_validate({"ops": {"listen": "127.0.0.1:9100"}})
    assert resolve_listen(None, cfg) == "127.0.0.1:9100"
    assert resolve_listen("127.0.0.1:1", cfg) == "127.0.0.1:1"
    assert resolve_listen(None, Config()) is None


def test_json_log_lines() -> None:
    stream = io.StringIO()
    configure_logging(logging.INFO, "json", text_handler=logging.NullHandler(), stream=stream)
    try:
        logging.getLogger("netspectra.test").info("hello %s", "world")
        try:
            raise RuntimeError("bad")
        except RuntimeError:
            logging.getLogger("netspectra.test").exception("it failed")
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (
        first["message"] == "hello world"
        and first["level"] == "INFO"
        and first["logger"] == "netspectra.test"
    )
    assert first["time"].endswith("Z") and "T" in first["time"] and "exception" not in first
    assert second["level"] == "ERROR" and "RuntimeError: bad" in second["exception"]
    assert (
        json.loads(JsonFormatter().format(logging.makeLogRecord({"msg": "x", "args": ()})))["message"] == "x"
    )
    with pytest.raises(ValueError):
        configure_logging(logging.INFO, "xml", text_handler=logging.NullHandler(), stream=stream)


def _documented_series() -> set[str]:
    """Every series name in docs/operations.md's tables (``| `netspectra_…` | type | …``)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    return set(re.findall(r"^\| `(netspectra_[a-z0-9_]+)` \|", doc, flags=re.M))


def test_every_exported_series_is_documented_and_every_documented_one_exported() -> None:
    """The collectors of every service, fed with non-empty counters, export exactly the series that
    docs/operations.md documents (histograms by their base name, counters with ``_total``)."""
    from netspectra.ops.collectors import BuildInfoCollector, ReadyCollector
    from netspectra.ops.grpcmetrics import GrpcMetrics
    from netspectra.ops.httpmetrics import HttpMetrics

    m = EngineMetrics()
    m.snapshot_seconds.observe("flows", 0.01)
    m.task_update_batches.touch("flows")
    m.task_errors.inc("flows", 0)
    m.task_counters = lambda: {"by_if": {"missing_key_rows": {"InIf": 3}}}
    m.writer("exact/parquet[0]").write_seconds.observe(0.01)
    st = StreamStats(messages=1, packets=1)
    ps = ProbeStats(packets_in=1)
    live = SimpleNamespace(kernel_packets=1, kernel_drops=0, capture=SimpleNamespace(records=1, wire_bytes=1))
    pers = PersistStats(written_packets=1, written_bytes=1, dropped_packets=0, errors=0, files=["a"])
    ok = Collect()
    alerter, _, _ = make_alerter(ok)
    http, grpc_m = HttpMetrics(), GrpcMetrics()
    http.observe("GET", "/api/v1/health", 200, 0.001)
    grpc_m.observe("/v1.QueryService/HealthCheck", "OK", 0.001)
    from netspectra.config.enrichment import EnrichmentConfig
    from netspectra.engine.enrichment import EnrichmentStage
    from netspectra.enrich.enricher import Enricher
    from netspectra.ops.collectors import EnrichmentCollector

    stage = EnrichmentStage(
        Enricher(
            EnrichmentConfig.model_validate({"geoip": {"asn_database": "/nonexistent/asn.mmdb"}}),
            background=False,
        ),
        ["SrcAS"],
    )
    reg = CollectorRegistry(auto_describe=False)
    for c in (
        EngineCollector(m),
        EnrichmentCollector(stage),
        StreamCollector(lambda: st),
        ProbeCollector(lambda: ps, live=lambda: live, persister=lambda: pers, meter=BatchMeter()),
        AlerterCollector(alerter),
        http,
        grpc_m,
        BuildInfoCollector("test"),
        ReadyCollector(lambda: (True, {})),
    ):
        reg.register(c)
    exported = set()
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        exported.add(fam.name + ("_total" if fam.type == "counter" else ""))
    documented = _documented_series()
    assert len(documented) > 50
    assert exported - documented == set(), "exported but not documented"
    assert documented - exported == set(), "documented but not exported"
