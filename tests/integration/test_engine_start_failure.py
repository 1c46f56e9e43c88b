"""An engine that cannot reach NATS at start ends with its error and status 1, after closing what it had
opened: its writers (an embedded ClickHouse left open at exit crashed the process with SIGSEGV in 2 of 3
runs: chdb's teardown raced the still-running writer threads)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_engine_without_nats_closes_its_embedded_clickhouse_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    # the shipped configuration: exact and sketch tasks with embedded ClickHouse writers (data under the
    # working directory: tmp_path)
    config.write_text((ROOT / "configs" / "config.yaml").read_text())
    env = {**os.environ, "SMTP_PORT": "0", "CLICKHOUSE_PORT": "0", "PYTHONPATH": str(ROOT / "src")}
    url = f"nats://127.0.0.1:{_closed_port()}"
    r = subprocess.run(
        [sys.executable, "-m", "netspectra", "-v", "engine", "-c", str(config), "--url", url],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert f"cannot connect to NATS at {url}" in r.stderr, r.stderr[-3000:]
    # the writers were stopped: the embedded engine was opened, then closed before the exit
    assert "embedded ClickHouse (chdb) opened on" in r.stderr, r.stderr[-3000:]
    assert "embedded ClickHouse (chdb) on" in r.stderr and "closed" in r.stderr, r.stderr[-3000:]
