"""Every service with ``--ops-listen``: real subprocesses, real NATS, scraped over HTTP.

``/metrics`` is parsed with ``prometheus_client.parser``; ``/healthz`` and ``/readyz`` are polled. The
engine test is the "SIGTERM loses nothing" check: a probe replays gnutella.pcap through NATS into an
engine writing Parquet, the engine gets SIGTERM once the traffic is in, and its final snapshot's
totals equal ``netspectra analyze`` of the same file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytest.importorskip("nats", reason="nats-py is not installed")

from netspectra.transport.natsserver import NatsServer, free_port

ROOT = Path(__file__).resolve().parents[2]
GNUTELLA = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"
SUBJECT = "ops.packets"
START_S = 60.0

pytestmark = pytest.mark.timeout(240)


def get(port: int, path: str) -> tuple[int | None, str]:
    """``(status, body)`` of ``GET http://127.0.0.1:port/path``; status None when nothing listens."""
    try:
        # generous: the API's first query (chdb warming up) can take seconds while the suite loads the CPUs
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return None, str(exc)


def wait_until(
    cond: Callable[[], bool], what: str, proc: subprocess.Popen[str], timeout: float = START_S
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(
                f"{what}: the process exited with {proc.returncode}\n{out[-2000:]}\n{err[-4000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def samples(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of ``/metrics`` by sample name (``..._total``, ``..._bucket`` included)."""
    code, body = get(port, "/metrics")
    assert code == 200, body
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(sm: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    got = [v for lab, v in sm.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert got, f"no sample {name}{labels} in /metrics"
    return sum(got)


def ready(port: int) -> bool:
    return get(port, "/readyz")[0] == 200


def replay_into(engine: subprocess.Popen[str], eport: int, common: list[str], series: str) -> int:
    """Replay gnutella.pcap with ``netspectra probe`` at full speed and wait until the engine's
    ``series`` (scraped from its ops port) reaches what was published; returns that count."""
    full = subprocess.run(
        [sys.executable, "-m", "netspectra", "probe", *common, "--speed", "0", "--json", str(GNUTELLA)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert full.returncode == 0, full.stderr
    published = int(json.loads(full.stdout.strip().splitlines()[-1])["packets_published"])
    wait_until(lambda: value(samples(eport), series) >= published, f"the engine's {series}", engine)
    return published


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "netspectra", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


def stop(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"no exit {timeout} s after SIGTERM\n{err[-4000:]}") from None
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-2000:]}\n{err[-4000:]}"
    return out, err


def engine_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        f"""
aggregator:
  types: ["exact"]
  period: "0s"
  num_workers: 2
  exact:
    writers:
      - type: parquet
        enabled: true
        parquet:
          root_path: {tmp_path / "pq"}
    tasks:
      - name: "per_five_tuple"
        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
"""
    )
    return cfg


def test_engine_and_probe_ops_and_sigterm_loses_nothing(nats_server: NatsServer, tmp_path: Path) -> None:
    cfg = engine_config(tmp_path)
    eport, pport = free_port(), free_port()
    common = ["--config", str(cfg), "--url", nats_server.url, "--subject", SUBJECT, "--shards", "4"]
    engine = spawn(
        "--log-format",
        "json",
        "-v",
        "engine",
        *common,
        "--json",
        env={"NETSPECTRA_OPS_LISTEN": f"127.0.0.1:{eport}"},
    )
    try:
        wait_until(lambda: get(eport, "/healthz")[0] == 200, "engine /healthz", engine)
        wait_until(lambda: ready(eport), "engine /readyz", engine)
        _, body = get(eport, "/readyz")
        assert json.loads(body)["checks"] == {"nats": "ok", "writers": "ok"}

        # the probe, paced so that it runs while we look at it, then SIGTERM: it stops cleanly
        probe = spawn("probe", *common, "--speed", "200", "--ops-listen", f"127.0.0.1:{pport}", str(GNUTELLA))
        try:
            wait_until(lambda: ready(pport), "probe /readyz", probe)
            ps = samples(pport)
            for name in (
                "netspectra_probe_packets_total",
                "netspectra_probe_source_bytes_total",
                "netspectra_probe_dropped_packets_total",
                "netspectra_probe_published_packets_total",
                "netspectra_probe_publish_failed_total",
                "netspectra_build_info",
                "netspectra_ready",
            ):
                assert name in ps, name
            assert value(ps, "netspectra_build_info", service="probe") == 1
            assert get(pport, "/healthz")[0] == 200
        finally:
            stop(probe)

        # the whole file at full speed
        replay_into(engine, eport, common, "netspectra_stream_packets_total")
        sm = samples(eport)
        for name in (
            "netspectra_engine_packets_total",
            "netspectra_engine_bytes_total",
            "netspectra_engine_dropped_packets_total",
            "netspectra_engine_queue_packets",
            "netspectra_engine_snapshots_total",
            "netspectra_engine_snapshot_seconds_bucket",
            "netspectra_writer_dropped_snapshots_total",
            "netspectra_writer_write_seconds_count",
            "netspectra_stream_handoff_dropped_packets_total",
            "netspectra_stream_messages_total",
        ):
            assert name in sm, name
        assert value(sm, "netspectra_engine_dropped_packets_total") == 0
        assert value(sm, "netspectra_writer_dropped_snapshots_total", reason="overflow") == 0
        assert value(sm, "netspectra_ready") == 1
        packets_before = value(sm, "netspectra_engine_packets_total")
    finally:
        out, err = stop(engine)

    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["engine"]["packets_in"] == packets_before
    assert summary["engine"]["writers"]["exact/parquet[0]"]["dropped"] == 0
    # JSON logs: one object per line on stderr
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines and {"time", "level", "logger", "message"} <= set(lines[0])
    assert any("engine stopped" in rec["message"] for rec in lines)

    finals = [
        t
        for t in (pq.read_table(p) for p in sorted((tmp_path / "pq").glob("*/per_five_tuple.parquet")))
        if t.schema.metadata[b"netspectra.final"] == b"true"
    ]
    assert len(finals) == 1
    final = finals[0]
    analyze = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", "--config", str(cfg), "--json", str(GNUTELLA)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert analyze.returncode == 0, analyze.stderr
    (task,) = json.loads(analyze.stdout)["tasks"]
    # the paced probe's packets came first (stopped early), then the whole file: the file's flows
    # plus a prefix of it; the totals must still add up to exactly what the engine received
    assert sum(final["PacketCount"].to_pylist()) == summary["engine"]["packets_in"]
    assert sum(final["ByteCount"].to_pylist()) == summary["engine"]["bytes_in"]
    assert summary["engine"]["packets_in"] >= task["packets"]


def test_sigterm_engine_final_snapshot_equals_analyze(nats_server: NatsServer, tmp_path: Path) -> None:
    cfg = engine_config(tmp_path)
    eport = free_port()
    subject = SUBJECT + ".exact"
    common = ["--config", str(cfg), "--url", nats_server.url, "--subject", subject, "--shards", "4"]
    engine = spawn("engine", *common, "--json", "--ops-listen", f"127.0.0.1:{eport}")
    try:
        wait_until(lambda: ready(eport), "engine /readyz", engine)
        replay_into(engine, eport, common, "netspectra_engine_packets_total")
    finally:
        out, _ = stop(engine)
    assert get(eport, "/healthz")[0] is None  # the endpoint is gone with the process
    summary = json.loads(out.strip().splitlines()[-1])
    (path,) = sorted((tmp_path / "pq").glob("*/per_five_tuple.parquet"))
    final = pq.read_table(path)
    assert final.schema.metadata[b"netspectra.final"] == b"true"
    analyze = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", "--config", str(cfg), "--json", str(GNUTELLA)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert analyze.returncode == 0, analyze.stderr
    (task,) = json.loads(analyze.stdout)["tasks"]
    assert final.num_rows == task["flows"] == 937
    assert sum(final["PacketCount"].to_pylist()) == task["packets"] == summary["engine"]["packets_in"]
    assert sum(final["ByteCount"].to_pylist()) == task["bytes"]
    assert summary["engine"]["writers"]["exact/parquet[0]"]["dropped"] == 0


def test_ai_ops_ready_and_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "ai.yaml"
    cfg.write_text('ai:\n  api_key: "test-key"\n  model: "test-model"\n  base_url: "http://127.0.0.1:9/v1"\n')
    oport, gport = free_port(), free_port()
    proc = spawn(
        "ai", "--config", str(cfg), "--listen", f"127.0.0.1:{gport}", "--ops-listen", f"127.0.0.1:{oport}"
    )
    try:
        wait_until(lambda: ready(oport), "ai /readyz", proc)
        assert get(oport, "/healthz")[0] == 200
        sm = samples(oport)
        assert value(sm, "netspectra_build_info", service="ai") == 1
        assert value(sm, "netspectra_ready") == 1
        assert get(oport, "/nope")[0] == 404
    finally:
        stop(proc)


def test_api_ops_store_ready_and_request_metrics(tmp_path: Path) -> None:
    cfg = tmp_path / "api.yaml"
    cfg.write_text(
        f"""
aggregator:
  types: ["exact"]
  exact:
    writers:
      - type: clickhouse
        enabled: true
        clickhouse:
          data_dir: {tmp_path / "chdb"}
    tasks:
      - name: "per_five_tuple"
        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
"""
    )
    oport, gport, hport = free_port(), free_port(), free_port()
    proc = spawn(
        "api",
        "--config",
        str(cfg),
        "--grpc-addr",
        f"127.0.0.1:{gport}",
        "--http-addr",
        f"127.0.0.1:{hport}",
        "--ops-listen",
        f"127.0.0.1:{oport}",
    )
    try:
        wait_until(lambda: get(oport, "/healthz")[0] == 200, "api /healthz", proc)
        wait_until(lambda: ready(oport), "api /readyz", proc)
        assert json.loads(get(oport, "/readyz")[1])["checks"] == {"store": "ok"}
        assert get(hport, "/api/v1/health")[0] == 200
        assert get(hport, "/api/v1/tasks")[0] == 200
        assert get(hport, "/no/such/path")[0] == 404
        sm = samples(oport)
        assert (
            value(sm, "netspectra_http_requests_total", method="GET", route="/api/v1/health", status="200")
            == 1
        )
        assert value(sm, "netspectra_http_requests_total", route="other", status="404") == 1
        assert value(sm, "netspectra_http_request_seconds_count", method="GET", route="/api/v1/tasks") == 1
        assert value(sm, "netspectra_build_info", service="api") == 1
        # gRPC calls, by method and status code (an unknown flow key is INVALID_ARGUMENT)
        import grpc

        from netspectra.proto.v1 import query_pb2, query_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{gport}") as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            assert stub.HealthCheck(query_pb2.HealthCheckRequest(), timeout=10).status == "ok"
            bad = query_pb2.TraceFlowRequest(task_name="per_five_tuple", flow_keys={"Nope": "1"})
            with pytest.raises(grpc.RpcError) as err:
                stub.TraceFlow(bad, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        sm = samples(oport)
        assert (
            value(sm, "netspectra_grpc_requests_total", method="/v1.QueryService/HealthCheck", code="OK") == 1
        )
        traced = value(sm, "netspectra_grpc_requests_total", method="/v1.QueryService/TraceFlow")
        assert traced == 1
        assert value(sm, "netspectra_grpc_requests_total", code="INVALID_ARGUMENT") == 1
        assert value(sm, "netspectra_grpc_request_seconds_count", method="/v1.QueryService/TraceFlow") == 1
    finally:
        stop(proc)


def test_probe_summary_counts_frames_as_analyze_does(nats_server: NatsServer, tmp_path: Path) -> None:
    """The replay's readable summary uses analyze's words: frames in the file, IP packets in flows (what
    is published), skipped. It said "packets read 3,882" of a 3,905-frame file, beside "skipped (not
    IP) 23" — the packet count of a capture tool (capinfos: 3,905) did not match it."""
    cmd = [sys.executable, "-m", "netspectra", "probe", "--config", str(engine_config(tmp_path))]
    out = subprocess.run(
        [*cmd, "--url", nats_server.url, "--subject", SUBJECT, "--speed", "0", str(GNUTELLA)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    rows = {" ".join(line.split()[:-1]): line.split()[-1] for line in out.stdout.splitlines() if line.strip()}
    assert rows["frames read"] == "3,905"
    assert rows["IP packets (in flows)"] == rows["packets published"] == "3,882"
    assert rows["skipped (not in a flow)"] == "23"
