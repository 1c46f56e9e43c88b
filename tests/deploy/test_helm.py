"""deploy/helm/netspectra: rendered and linted by Helm (the Helm v4 Go SDK, from PyPI's helm-python-sdk:
`Chart.render` is `helm template`, `lint` is `helm lint`; a `helm` binary on PATH is used when the SDK is
absent), every rendered manifest validated against the Kubernetes JSON schemas (kubernetes-validate,
offline, strict), and the chart's contract checked: probe DaemonSet on the node's network with NET_RAW and
NET_ADMIN, one engine Deployment per member (members <= shards), API and AI Deployments + Services,
liveness on /healthz and readiness on /readyz, Prometheus annotations, ConfigMap and Secret.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "netspectra"
KUBE_VERSIONS = ("1.28.0", "1.33.0")

try:
    import helm_python
except ImportError:  # pragma: no cover - depends on the environment
    helm_python = None

HELM_BIN = shutil.which("helm")
needs_renderer = pytest.mark.skipif(
    helm_python is None and HELM_BIN is None,
    reason="no Helm renderer: pip install helm-python-sdk (in the test extra) or put helm on PATH; "
    "the chart is not rendered",
)


class RenderError(Exception):
    pass


def render(values: dict[str, Any] | None = None, name: str = "ns") -> list[dict[str, Any]]:
    """The chart's manifests for ``values`` (like `helm template`), parsed; NOTES.txt left out."""
    values = values or {}
    if helm_python is not None:
        try:
            chart = helm_python.Chart.load(str(CHART))
            files = chart.render(values, name=name, namespace="netspectra", is_install=True)
        except helm_python.HelmError as exc:
            raise RenderError(str(exc)) from exc
        texts = [text for path, text in sorted(files.items()) if path.endswith((".yaml", ".yml"))]
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            json.dump(values, f)
            f.flush()
            out = subprocess.run(
                [HELM_BIN, "template", name, str(CHART), "-n", "netspectra", "-f", f.name],
                capture_output=True,
                text=True,
            )
        if out.returncode != 0:
            raise RenderError(out.stderr)
        texts = [out.stdout]
    docs = [d for text in texts for d in yaml.safe_load_all(text) if d]
    assert docs, "the chart rendered nothing"
    return docs


def notes(values: dict[str, Any] | None = None) -> str:
    if helm_python is None:
        pytest.skip("NOTES.txt rendering needs helm-python-sdk")
    files = helm_python.Chart.load(str(CHART)).render(values or {}, name="ns", namespace="netspectra")
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"{kind} *{suffix}: {[d['metadata']['name'] for d in by_kind(docs, kind)]}"
    return found[0]


FULL = {
    "engine": {"members": 4},
    "ai": {"enabled": True, "alertAnalysis": True},
    "api": {"grpcHealthProbe": True, "service": {"type": "LoadBalancer"}},
    "secrets": {"aiApiKey": "sk-test", "clickhousePassword": "pw", "smtpPassword": "smtp"},
    "smtp": {"host": "smtp.example.com", "to": "a@example.com"},
    "probe": {"nodeSelector": {"netspectra.io/capture": "true"}, "extraArgs": ["--ring-mb", "256"]},
    "imagePullSecrets": [{"name": "regcred"}],
}
VALUE_SETS = {
    "defaults": {},
    "full": FULL,
    "no-probe-existing-secret": {"probe": {"enabled": False}, "secrets": {"existingSecret": "mine"}},
    "members-equal-shards": {"shards": 4, "engine": {"members": 4}},
}


# ---- Helm ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(helm_python is None and HELM_BIN is None, reason="no helm-python-sdk and no helm binary")
def test_helm_lint() -> None:
    if helm_python is not None:
        for values in VALUE_SETS.values():
            report = helm_python.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
            problems = [m for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])
            assert not problems, problems
    else:
        out = subprocess.run([HELM_BIN, "lint", "--strict", str(CHART)], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


@needs_renderer
@pytest.mark.parametrize("case", sorted(VALUE_SETS))
def test_manifests_match_kubernetes_schemas(case: str) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (in the test extra)"
    )
    docs = render(VALUE_SETS[case])
    for version in KUBE_VERSIONS:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {exc}")


# ---- the chart's contract --------------------------------------------------------------------------


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


@needs_renderer
def test_probe_daemonset() -> None:
    docs = render(FULL)
    ds = one(docs, "DaemonSet", "-probe")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["nodeSelector"] == {"netspectra.io/capture": "true"}
    c = container(ds)
    sc = c["securityContext"]
    assert set(sc["capabilities"]["add"]) == {"NET_RAW", "NET_ADMIN"}
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["runAsUser"] == 0 and not sc.get("privileged", False)
    assert c["args"][0] == "probe" and "--iface=eth0" in c["args"] and "--jetstream" in c["args"]
    assert "--shards=16" in c["args"] and c["args"][-2:] == ["--ring-mb", "256"]
    assert env_of(c)["NETSPECTRA_OPS_LISTEN"] == "0.0.0.0:9101"
    assert c["ports"][0]["hostPort"] == c["ports"][0]["containerPort"] == 9101
    assert ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9101"
    assert not by_kind(render({"probe": {"enabled": False}}), "DaemonSet")


@needs_renderer
@pytest.mark.parametrize("members", [1, 3, 16])
def test_engine_members(members: int) -> None:
    docs = render({"engine": {"members": members}})
    engines = sorted(
        (d for d in by_kind(docs, "Deployment") if "-engine-" in d["metadata"]["name"]),
        key=lambda d: int(d["metadata"]["name"].rsplit("-", 1)[1]),
    )
    assert len(engines) == members
    selectors = set()
    for k, dep in enumerate(engines):
        assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
        args = container(dep)["args"]
        assert args[0] == "engine" and "--jetstream" in args
        assert f"--members={members}" in args and f"--member={k}" in args and "--shards=16" in args
        selectors.add(json.dumps(dep["spec"]["selector"]["matchLabels"], sort_keys=True))
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["terminationGracePeriodSeconds"] >= 60
    assert len(selectors) == members, "engine Deployments share a selector"


@needs_renderer
def test_engine_members_must_not_exceed_shards() -> None:
    with pytest.raises(RenderError, match="must be <= shards"):
        render({"shards": 8, "engine": {"members": 9}})


@needs_renderer
def test_ai_needs_a_key() -> None:
    with pytest.raises(RenderError, match="aiApiKey"):
        render({"ai": {"enabled": True}})
    docs = render({"ai": {"enabled": True}, "secrets": {"existingSecret": "mine"}})
    assert one(docs, "Deployment", "-ai")
    assert not by_kind(docs, "Secret")
    assert not [d for d in render() if d["metadata"]["name"].endswith("-ai")]


@needs_renderer
def test_services_probes_annotations_and_secrets() -> None:
    docs = render(FULL)
    workloads = by_kind(docs, "Deployment") + by_kind(docs, "DaemonSet")
    assert len(workloads) == 1 + 4 + 1 + 1  # probe, 4 engines, api, ai
    for w in workloads:
        c = container(w)
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", w["metadata"]["name"]
        ready = c["readinessProbe"]
        assert ready.get("httpGet", {}).get("path") == "/readyz" or "grpc" in ready, w["metadata"]["name"]
        assert c["resources"]["requests"] and c["resources"]["limits"], w["metadata"]["name"]
        ann = w["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
        env = env_of(c)
        assert env["NETSPECTRA_LOG_FORMAT"] == "json"
        assert env["CLICKHOUSE_PASSWORD"]["secretKeyRef"]["key"] == "CLICKHOUSE_PASSWORD"
        assert env["SMTP_PASSWORD"]["secretKeyRef"]["key"] == "SMTP_PASSWORD"
        assert ("AI_API_KEY" in env) == w["metadata"]["name"].endswith("-ai")
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert "/etc/netspectra" in mounts and "--config=/etc/netspectra/netspectra.yaml" in c["args"]
    api = one(docs, "Deployment", "-api")
    assert api["spec"]["replicas"] == 2
    assert container(api)["readinessProbe"]["grpc"]["port"] == 50051
    svc = one(docs, "Service", "-api")
    assert {p["port"] for p in svc["spec"]["ports"]} == {50051, 8080, 9100}
    assert svc["spec"]["type"] == "LoadBalancer"
    assert {p["port"] for p in one(docs, "Service", "-ai")["spec"]["ports"]} == {50052, 9100}
    assert env_of(container(one(docs, "Deployment", "-engine-0")))["ALERTER_AI_ANALYSIS_ENABLED"] == "true"
    secret = one(docs, "Secret", "-secrets")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"AI_API_KEY": "sk-test", "CLICKHOUSE_PASSWORD": "pw", "SMTP_PASSWORD": "smtp"}
    defaults = render()
    api_default = container(one(defaults, "Deployment", "-api"))
    assert api_default["readinessProbe"]["httpGet"]["path"] == "/readyz"


@needs_renderer
def test_configmap_is_the_stack_configuration_and_valid(tmp_path: Path) -> None:
    shipped = (ROOT / "deploy" / "config" / "netspectra.yaml").read_text()
    assert (CHART / "files" / "netspectra.yaml").read_text() == shipped, (
        "deploy/helm/netspectra/files/netspectra.yaml must be a copy of deploy/config/netspectra.yaml"
    )
    docs = render(FULL)
    cm = one(docs, "ConfigMap", "-config")
    text = cm["data"]["netspectra.yaml"]
    assert text.strip() == shipped.strip()
    # The configuration, expanded with the environment the chart gives the engine, passes `config check`.
    (tmp_path / "netspectra.yaml").write_text(text)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    for name, value in env_of(container(one(docs, "Deployment", "-engine-0"))).items():
        env[name] = value if isinstance(value, str) else "secret"
    config = str(tmp_path / "netspectra.yaml")
    out = subprocess.run(
        [sys.executable, "-m", "netspectra", "config", "check", "--json", "-c", config],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    cfg = json.loads(out.stdout)
    assert cfg["probe"]["nats_url"] == "nats://nats:4222" and cfg["probe"]["shards"] == 16
    assert cfg["alerter"]["ai_analysis"]["service_addr"] == "ns-netspectra-ai:50052"
    custom = render({"config": "api:\n  grpc_listen_addr: ':50051'\n"})
    assert one(custom, "ConfigMap", "-config")["data"]["netspectra.yaml"].startswith("api:")


@needs_renderer
def test_notes() -> None:
    text = notes(FULL)
    assert "engine.members" in text and "port-forward svc/ns-netspectra-api" in text
