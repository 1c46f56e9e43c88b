"""Bearer tokens and TLS of a real ``netspectra api`` (certificates made here with ``cryptography``).

One process serves with a read token (configuration and ``NETSPECTRA_API_TOKENS``), an admin token (from
a file) and TLS; another requires client certificates (mutual TLS). Checked over HTTP (httpx), gRPC and
the ``netspectra query`` command line: missing or wrong tokens are refused (401 / ``UNAUTHENTICATED``),
a read token on an admin endpoint too (403 / ``PERMISSION_DENIED``), health checks stay open; the TLS
handshake works with the right CA and fails with another; mutual TLS refuses clients without a
certificate or with one of another CA; and neither the tokens nor the ``Authorization`` headers appear
in the service's debug logs or in any answer.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from api_process import GOLDEN, ApiProcess, env, fill_store, issue, make_ca

from netspectra.proto.v1 import query_pb2, query_pb2_grpc

pytest.importorskip("cryptography", reason="the certificates are made with cryptography")

READ = "read-token-0123456789abcdefXYZ"
READ_ENV = "env-read-token-9876543210abcdef"
ADMIN = "admin-token-ABCDEFGHIJ0123456789"
TOKENS = (READ, READ_ENV, ADMIN)


@dataclass
class Pki:
    ca: Path
    server_crt: Path
    server_key: Path
    wrong_ca: Path
    client_ca: Path
    client_crt: Path
    client_key: Path
    rogue_crt: Path
    rogue_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("pki")
    ca = make_ca(tmp, "netspectra-test-ca")
    server_crt, server_key = issue(tmp, ca, "netspectra-api", server=True)
    wrong = make_ca(tmp, "some-other-ca")
    client_ca = make_ca(tmp, "netspectra-clients-ca")
    client_crt, client_key = issue(tmp, client_ca, "grafana", server=False)
    rogue_crt, rogue_key = issue(tmp, wrong, "rogue", server=False)
    return Pki(
        ca[0], server_crt, server_key, wrong[0], client_ca[0], client_crt, client_key, rogue_crt, rogue_key
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill_store(tmp_path_factory.mktemp("auth-store"))


def with_api_section(conf: Path, api: str, name: str) -> Path:
    text = conf.read_text().replace(
        "  http_listen_addr: '127.0.0.1:0'\n", "  http_listen_addr: '127.0.0.1:0'\n" + api
    )
    out = conf.parent / name
    out.write_text(text)
    return out


@pytest.fixture(scope="module")
def secured(store: Path, pki: Pki) -> Iterator[ApiProcess]:
    """Tokens and TLS (server certificate only)."""
    admin_file = store.parent / "admin-tokens"
    admin_file.write_text(f"# admin tokens of the query service\n\n{ADMIN}\n")
    crt, key = json.dumps(str(pki.server_crt)), json.dumps(str(pki.server_key))
    api = (
        f"  auth: {{tokens: [{READ}], admin_tokens_file: {json.dumps(str(admin_file))}}}\n"
        f"  tls: {{cert_file: {crt}, key_file: {key}}}\n"
    )
    conf = with_api_section(store, api, "secured.yaml")
    proc = ApiProcess(conf, store.parent, {"NETSPECTRA_API_TOKENS": READ_ENV}).start()
    try:
        yield proc
    finally:
        proc.stop()
    assert proc.proc.returncode == 0, proc.stderr[-3000:]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_no_secrets(text: str) -> None:
    for token in TOKENS:
        assert token not in text
    assert "authorization" not in text.lower().replace("authorization: bearer <token>", "")


def test_http_tokens_and_scopes(secured: ApiProcess, pki: Pki) -> None:
    base = f"https://127.0.0.1:{secured.http_port}"
    with httpx.Client(base_url=base, verify=ssl.create_default_context(cafile=str(pki.ca)), timeout=60) as c:
        # open: health, the API description, Swagger UI and its assets, the dashboard page and its files
        assert c.get("/api/v1/health").json() == {"status": "ok"}
        spec = c.get("/openapi.json").json()
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
        assert c.get("/docs").status_code == 200
        assert c.get("/static/swagger-ui/swagger-ui.css").status_code == 200
        assert c.get("/", headers={"Accept": "text/html"}).status_code == 200
        assert c.get("/static/dashboard.js").status_code == 200
        # everything else needs a token
        for method, path, body in (
            ("GET", "/", None),
            ("GET", "/api/v1/tasks", None),
            ("POST", "/api/v1/aggregate", {}),
            ("POST", "/query", {"targets": [{"target": "per_src"}]}),
            ("POST", "/annotations", {}),
            ("GET", "/api/v1/alerts", None),
            ("GET", "/api/v1/config", None),
            ("GET", "/no/such/path", None),
        ):
            for headers in ({}, bearer("wrong-token-0123456789abcdef"), {"Authorization": f"Basic {READ}"}):
                res = c.request(method, path, json=body, headers=headers)
                assert res.status_code == 401, (method, path, headers, res.text)
                assert res.json()["code"] == "UNAUTHENTICATED"
                assert res.headers["www-authenticate"].startswith("Bearer")
                assert_no_secrets(res.text)
        # read tokens (configuration and environment) read; only the admin token reads the configuration
        for token in (READ, READ_ENV, ADMIN):
            res = c.post("/api/v1/aggregate", json={"taskName": "per_five_tuple"}, headers=bearer(token))
            assert res.json()["summaries"][0]["totalPackets"] == str(GOLDEN["ip_packets"]), res.text
            assert c.get("/", headers=bearer(token)).text == "ok"
        for token in (READ, READ_ENV):
            res = c.get("/api/v1/config", headers=bearer(token))
            assert res.status_code == 403 and res.json()["code"] == "PERMISSION_DENIED", res.text
        res = c.get("/api/v1/config", headers=bearer(ADMIN))
        assert res.status_code == 200, res.text
        cfg = res.json()
        assert cfg["api"]["auth"]["tokens"] == "***" and cfg["api"]["tls"]["cert_file"] == str(pki.server_crt)
        assert_no_secrets(res.text)
        # an unknown path with a valid token: 404 (after authentication)
        assert c.get("/no/such/path", headers=bearer(READ)).status_code == 404


def test_tls_handshake(secured: ApiProcess, pki: Pki) -> None:
    base = f"https://127.0.0.1:{secured.http_port}"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(base + "/api/v1/health", verify=ssl.create_default_context(cafile=str(pki.wrong_ca)))
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(base + "/api/v1/health")  # the system's CAs do not know the test CA
    # plain HTTP to the TLS port gets no answer of the API
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{secured.http_port}/api/v1/tasks", headers=bearer(READ), timeout=10)
    # gRPC: the right CA works, another fails the handshake
    ok = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(secured.grpc, ok) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        assert stub.HealthCheck(query_pb2.HealthCheckRequest(), timeout=30).status == "ok"
    bad = grpc.ssl_channel_credentials(root_certificates=pki.wrong_ca.read_bytes())
    with grpc.secure_channel(secured.grpc, bad) as channel:
        with pytest.raises(grpc.RpcError) as info:
            query_pb2_grpc.QueryServiceStub(channel).HealthCheck(query_pb2.HealthCheckRequest(), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(secured.grpc) as channel:  # plain text to a TLS port
        with pytest.raises(grpc.RpcError) as info:
            query_pb2_grpc.QueryServiceStub(channel).HealthCheck(query_pb2.HealthCheckRequest(), timeout=30)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_tokens_and_scopes(secured: ApiProcess, pki: Pki) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(secured.grpc, creds) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        # open: both health checks
        assert stub.HealthCheck(query_pb2.HealthCheckRequest(), timeout=30).status == "ok"
        got = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert got.status == health_pb2.HealthCheckResponse.SERVING
        calls = (
            (stub.SearchTasks, query_pb2.SearchTasksRequest()),
            (stub.AggregateFlows, query_pb2.AggregationRequest()),
            (stub.TraceFlow, query_pb2.TraceFlowRequest(task_name="per_src")),
            (stub.QueryHeavyHitters, query_pb2.HeavyHittersRequest(task_name="ss", type=2)),
        )
        for call, req in calls:
            for metadata in (
                (),
                (("authorization", "Bearer wrong-token-0123456789"),),
                (("authorization", READ),),
            ):
                with pytest.raises(grpc.RpcError) as info:
                    call(req, metadata=metadata, timeout=30)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, info.value.details()
                assert_no_secrets(info.value.details() or "")
            for token in (READ, READ_ENV, ADMIN):
                call(req, metadata=(("authorization", f"Bearer {token}"),), timeout=60)
        resp = stub.AggregateFlows(
            query_pb2.AggregationRequest(task_name="per_src"), metadata=(("authorization", f"bearer {READ}"),)
        )
        assert resp.summaries[0].total_packets == GOLDEN["ip_packets"]
        # server reflection needs the admin scope
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
        for token in (READ, READ_ENV):
            with pytest.raises(grpc.RpcError) as info:
                list(refl.ServerReflectionInfo(iter(ask), metadata=(("authorization", f"Bearer {token}"),)))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as info:
            list(refl.ServerReflectionInfo(iter(ask)))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answers = list(refl.ServerReflectionInfo(iter(ask), metadata=(("authorization", f"Bearer {ADMIN}"),)))
        assert "v1.QueryService" in {s.name for s in answers[0].list_services_response.service}


def query_cli(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netspectra", "query", *args],
        env={**env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_query_cli_token_and_tls(secured: ApiProcess, pki: Pki) -> None:
    common = ["aggregate", "--addr", secured.grpc, "-t", "per_src", "--json"]
    res = query_cli(*common, "--ca-file", str(pki.ca), "--token", READ)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["summaries"][0]["totalPackets"] == str(GOLDEN["ip_packets"])
    res = query_cli(
        *common, extra_env={"NETSPECTRA_API_CA_FILE": str(pki.ca), "NETSPECTRA_API_TOKEN": READ_ENV}
    )
    assert res.returncode == 0, res.stderr
    res = query_cli(*common, "--ca-file", str(pki.ca))
    assert res.returncode == 1 and "UNAUTHENTICATED" in res.stderr, res.stderr
    res = query_cli(*common, "--ca-file", str(pki.wrong_ca), "--token", READ)
    assert res.returncode == 1 and "UNAVAILABLE" in res.stderr, res.stderr
    assert_no_secrets(res.stdout + res.stderr)


def test_logs_hold_no_token(secured: ApiProcess, pki: Pki) -> None:
    # one refusal of each kind on both protocols (whatever ran before), then read the debug logs
    verify = ssl.create_default_context(cafile=str(pki.ca))
    base = f"https://127.0.0.1:{secured.http_port}"
    for headers in ({}, bearer("wrong-token-0123456789abcdef"), bearer(READ)):
        httpx.get(base + "/api/v1/config", headers=headers, verify=verify, timeout=30)
    creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(secured.grpc, creds) as channel:
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
        for token in ("", "wrong-token-0123456789abcdef", READ):
            with pytest.raises(grpc.RpcError):
                list(refl.ServerReflectionInfo(iter(ask), metadata=(("authorization", f"Bearer {token}"),)))
    wanted = [  # each reason logged (rate-limited per reason), never the token
        (proto, reason)
        for proto in ("HTTP", "gRPC")
        for reason in ("no bearer token", "invalid bearer token", "a read token on an admin")
    ]
    deadline = time.monotonic() + 30  # the service's log lines reach the file (later on a loaded machine)
    while True:
        logs = secured.logs()
        missing = [w for w in wanted if not re.search(rf"{w[0]} [^\n]* refused: {w[1]}", logs)]
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not missing, missing
    assert "2 read and 1 admin token(s)" in logs and "TLS" in logs
    assert_no_secrets(logs)


@pytest.fixture(scope="module")
def mutual(store: Path, pki: Pki, secured: ApiProcess) -> Iterator[ApiProcess]:
    """Mutual TLS, no tokens (after ``secured``: one process per chdb data directory)."""
    secured.stop()
    crt, key, ca = (json.dumps(str(p)) for p in (pki.server_crt, pki.server_key, pki.client_ca))
    api = f"  tls: {{cert_file: {crt}, key_file: {key}, client_ca_file: {ca}}}\n"
    proc = ApiProcess(with_api_section(store, api, "mutual.yaml"), store.parent).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_mutual_tls(mutual: ApiProcess, pki: Pki) -> None:
    base = f"https://127.0.0.1:{mutual.http_port}"

    def ctx(cert: Path | None, key: Path | None) -> ssl.SSLContext:
        out = ssl.create_default_context(cafile=str(pki.ca))
        if cert is not None:
            out.load_cert_chain(str(cert), str(key))
        return out

    res = httpx.get(base + "/api/v1/tasks", verify=ctx(pki.client_crt, pki.client_key), timeout=30)
    assert res.json()["taskNames"][0] == "per_five_tuple"
    for cert, key in ((None, None), (pki.rogue_crt, pki.rogue_key)):
        with pytest.raises(httpx.HTTPError):
            httpx.get(base + "/api/v1/health", verify=ctx(cert, key), timeout=30).raise_for_status()
    ca = pki.ca.read_bytes()
    good = grpc.ssl_channel_credentials(ca, pki.client_key.read_bytes(), pki.client_crt.read_bytes())
    with grpc.secure_channel(mutual.grpc, good) as channel:
        got = query_pb2_grpc.QueryServiceStub(channel).SearchTasks(query_pb2.SearchTasksRequest(), timeout=30)
        assert list(got.task_names)[:2] == ["per_five_tuple", "per_src"]
    for creds in (
        grpc.ssl_channel_credentials(ca),
        grpc.ssl_channel_credentials(ca, pki.rogue_key.read_bytes(), pki.rogue_crt.read_bytes()),
    ):
        with grpc.secure_channel(mutual.grpc, creds) as channel:
            with pytest.raises(grpc.RpcError) as info:
                query_pb2_grpc.QueryServiceStub(channel).HealthCheck(
                    query_pb2.HealthCheckRequest(), timeout=30
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    tls = ["--ca-file", str(pki.ca), "--cert-file", str(pki.client_crt), "--key-file", str(pki.client_key)]
    res = query_cli("aggregate", "--addr", mutual.grpc, "-t", "per_src", "--json", *tls)
    assert res.returncode == 0, res.stderr
    res = query_cli("aggregate", "--addr", mutual.grpc, "-t", "per_src", "--ca-file", str(pki.ca))
    assert res.returncode == 1 and "UNAVAILABLE" in res.stderr
    assert "mutual TLS" in mutual.logs()


def test_config_errors_name_the_key_and_the_fix(store: Path, pki: Pki) -> None:
    """``netspectra api`` refuses unusable TLS files or tokens before listening, naming the key."""
    missing = store.parent / "nope.pem"
    crt, key = pki.server_crt, pki.server_key
    cases = [
        (f"  tls: {{cert_file: {missing}, key_file: {key}}}\n", ["api.tls.cert_file", "does not exist"]),
        (f"  tls: {{cert_file: {crt}, key_file: {pki.client_key}}}\n", ["api.tls.key_file", "used together"]),
        (f"  tls: {{cert_file: {crt}, key_file: {key}, client_ca_file: {key}}}\n", ["tls.client_ca_file"]),
        (f"  tls: {{cert_file: {crt}}}\n", ["api.tls", "key_file is empty"]),
        (f"  auth: {{tokens_file: {missing}}}\n", ["api.auth.tokens_file", "does not exist"]),
        ("  auth: {tokens: [short]}\n", ["api.auth.tokens", "16 or more", "token_urlsafe"]),
    ]  # fmt: skip
    for i, (api, words) in enumerate(cases):
        conf = with_api_section(store, api, f"bad{i}.yaml")
        res = subprocess.run(
            [sys.executable, "-m", "netspectra", "api", "-c", str(conf)],
            env=env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 2, (api, res.stderr)
        for word in words:
            assert word in res.stderr, (api, word, res.stderr)
        assert "Traceback" not in res.stderr
