"""The AI gRPC service through the real OpenAI SDK against a local chat-completions server."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import typer
from typer.testing import CliRunner

from netspectra.ai.client import AiClient, AiClientError
from netspectra.ai.service import STREAM_MAX_TOKENS, AiConfigError, AiSettings, serve
from netspectra.cli.alert_ai_cmds import ai as ai_cmd
from netspectra.cli.alert_ai_cmds import ask_ai
from netspectra.config.models import AiConfig
from netspectra.proto.v1 import ai_pb2, ai_pb2_grpc

pytest.importorskip("openai", reason="the AI service needs the OpenAI SDK (pip install openai)")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.openai_server import FakeOpenAI

API_KEY = "sk-live-DO-NOT-LEAK-0123456789"


@pytest.fixture
def stack(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[FakeOpenAI, AiClient]]:
    """The fake provider (checking the key), the AI service on a free port, and a client of it.
    Everything is logged at DEBUG so that the key-leak assertions see the SDK's and HTTP client's logs."""
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(api_key=API_KEY) as fake:
        cfg = AiConfig(provider="test", api_key=API_KEY, model="netspectra-test", base_url=fake.base_url)
        server, port = serve(cfg, addr="127.0.0.1:0", max_retries=0)
        client = AiClient(f"127.0.0.1:{port}", timeout_s=10)
        try:
            yield fake, client
        finally:
            client.close()
            server.stop(0)
    assert API_KEY not in caplog.text


def test_analyze_traffic_wraps_the_alert(stack: tuple[FakeOpenAI, AiClient]) -> None:
    fake, client = stack
    assert client.analyze("<h3>Alert: X</h3>") == fake.reply
    (req,) = fake.requests
    body = req["body"]
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "netspectra-test" and not body.get("stream")
    assert "max_tokens" not in body and "temperature" not in body  # as the original: one user message only
    (msg,) = body["messages"]
    assert msg["role"] == "user"
    assert msg["content"].startswith("You are a senior network security analyst.")
    assert msg["content"].endswith("--- Alert Data ---\n<h3>Alert: X</h3>\n--- End of Alert Data ---")


def test_stream_skips_empty_and_choiceless_chunks(stack: tuple[FakeOpenAI, AiClient]) -> None:
    fake, client = stack
    fake.stream_chunks = ["", None, "Hello", "", None, ", ", "world", "!"]
    assert list(client.stream("say hi")) == ["Hello", ", ", "world", "!"]
    body = fake.requests[-1]["body"]
    assert body["stream"] is True and body["max_tokens"] == STREAM_MAX_TOKENS == 2048
    assert body["messages"] == [{"role": "user", "content": "say hi"}]  # raw prompt, no wrapper


def test_wire_compatible_paths(stack: tuple[FakeOpenAI, AiClient]) -> None:
    _, client = stack
    # a client built from the generated stub alone (as the original's Go client) reaches the same RPCs
    with grpc.insecure_channel(client.addr) as ch:
        stub = ai_pb2_grpc.AIServiceStub(ch)
        out = stub.AnalyzeTraffic(ai_pb2.AnalyzeTrafficRequest(text_input="x"), timeout=10)
        chunks = [
            r.chunk for r in stub.AnalyzePromptStream(ai_pb2.AnalyzePromptRequest(prompt="p"), timeout=10)
        ]
    assert out.text_output and "".join(chunks) == "Hello, world!"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (404, grpc.StatusCode.NOT_FOUND),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (500, grpc.StatusCode.UNAVAILABLE),
        (503, grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_provider_errors_become_status_codes(
    stack: tuple[FakeOpenAI, AiClient], status: int, code: grpc.StatusCode
) -> None:
    fake, client = stack
    # a provider that echoes the key in its error text: the service masks it
    fake.error = (status, f"upstream said no (key {API_KEY})")
    with pytest.raises(AiClientError) as info:
        client.analyze("x")
    assert info.value.code == code
    assert f"HTTP {status}" in info.value.message and "upstream said no" in info.value.message
    assert API_KEY not in info.value.message and "***" in info.value.message
    with pytest.raises(AiClientError) as info2:
        list(client.stream("x"))
    assert info2.value.code == code and API_KEY not in info2.value.message


def test_wrong_key_is_unauthenticated(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(api_key="sk-the-right-one") as fake:
        cfg = AiConfig(api_key=API_KEY, model="m", base_url=fake.base_url)
        server, port = serve(cfg, addr="127.0.0.1:0", max_retries=0)
        try:
            with AiClient(f"127.0.0.1:{port}", timeout_s=10) as client, pytest.raises(AiClientError) as info:
                client.analyze("x")
        finally:
            server.stop(0)
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert API_KEY not in info.value.message and API_KEY not in caplog.text


def test_unreachable_provider_and_deadline(stack: tuple[FakeOpenAI, AiClient]) -> None:
    fake, client = stack
    fake.delay_s = 3.0
    t0 = time.monotonic()
    with pytest.raises(AiClientError) as info:
        client.analyze("x", timeout_s=0.5)
    assert info.value.code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - t0 < 2.5
    # a provider that is not there at all
    with FakeOpenAI() as gone:
        url = gone.base_url
    server, port = serve(
        AiConfig(api_key=API_KEY, model="m", base_url=url), addr="127.0.0.1:0", max_retries=0
    )
    try:
        with AiClient(f"127.0.0.1:{port}", timeout_s=10) as c2, pytest.raises(AiClientError) as info2:
            c2.analyze("x")
    finally:
        server.stop(0)
    assert (
        info2.value.code == grpc.StatusCode.UNAVAILABLE
        and "cannot reach the AI provider" in info2.value.message
    )


def test_missing_key_or_model_refuses_to_start() -> None:
    with pytest.raises(AiConfigError, match=r"ai\.api_key is empty: set AI_API_KEY"):
        AiSettings.from_config(AiConfig(model="m"), env={})
    with pytest.raises(AiConfigError, match=r"ai\.model is empty"):
        AiSettings.from_config(AiConfig(api_key="k"), env={})
    s = AiSettings.from_config(AiConfig(model="m"), env={"OPENAI_API_KEY": API_KEY})
    assert s.api_key == API_KEY and API_KEY not in repr(s)
    app = typer.Typer()
    app.command("ai")(ai_cmd)
    app.command("ask-ai")(ask_ai)
    res = CliRunner().invoke(
        app, ["ai", "--listen", "127.0.0.1:0"], env={"AI_API_KEY": "", "OPENAI_API_KEY": ""}
    )
    assert res.exit_code == 2 and "api_key is empty" in res.output


def test_ask_ai_streams_to_the_terminal(stack: tuple[FakeOpenAI, AiClient]) -> None:
    fake, client = stack
    fake.stream_chunks = ["Port ", None, "scan ", "", "detected."]
    app = typer.Typer()
    app.command("ai")(ai_cmd)
    app.command("ask-ai")(ask_ai)
    res = CliRunner().invoke(app, ["ask-ai", "--addr", client.addr, "what", "is", "this?"])
    assert res.exit_code == 0, res.output
    assert res.stdout == "Port scan detected.\n"
    assert fake.requests[-1]["body"]["messages"][0]["content"] == "what is this?"
    fake.error = (429, "quota")
    res = CliRunner().invoke(app, ["ask-ai", "--addr", client.addr, "again"])
    assert res.exit_code == 1 and "RESOURCE_EXHAUSTED" in res.output


def test_ai_command_serves_until_sigterm(tmp_path: Path) -> None:
    """``netspectra ai`` as a process: serves the configured model, stops cleanly on SIGTERM, and never
    prints the key."""
    import os
    import signal
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with FakeOpenAI(api_key=API_KEY) as fake:
        cfg = tmp_path / "config.yaml"
        cfg.write_text(
            f"ai:\n  api_key: ${{AI_API_KEY}}\n  model: m\n  base_url: {fake.base_url}\n"
            f"  grpc_listen_addr: 127.0.0.1:{port}\n"
        )
        code = (
            "import typer, sys; from netspectra.cli.alert_ai_cmds import ai; app = typer.Typer(); "
            "app.command('ai')(ai); app.command('x')(lambda: None); app(sys.argv[1:])"
        )
        env = {
            **os.environ,
            "AI_API_KEY": API_KEY,
            "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"),
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "ai", "--config", str(cfg)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            answer = None
            while time.monotonic() < deadline and answer is None:
                try:
                    with AiClient(f"127.0.0.1:{port}", timeout_s=2) as c:
                        answer = c.analyze("x")
                except AiClientError:
                    time.sleep(0.2)
            assert answer == fake.reply
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, out
    assert "listening on port" in out and "AI service stopped" in out
    assert API_KEY not in out


def test_tokens_and_tls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ai.auth`` and ``ai.tls``: the right token over TLS with the right CA answers; no token is
    ``UNAUTHENTICATED``; another CA fails the handshake; the health check stays open; the alerter's
    client takes token and CA from ``NETSPECTRA_AI_*``; ``ask-ai`` from options or the same variables;
    the token is never logged."""
    pytest.importorskip("cryptography")
    from api_process import issue, make_ca
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from netspectra.auth import ClientSecurity
    from netspectra.config.models import AuthConfig, TlsConfig

    caplog.set_level(logging.DEBUG)
    token = "ai-token-0123456789abcdefghij"
    ca = make_ca(tmp_path, "ai-ca")
    wrong = make_ca(tmp_path, "other-ca")
    crt, key = issue(tmp_path, ca, "ai-server", server=True)
    with FakeOpenAI(api_key=API_KEY) as fake:
        cfg = AiConfig(
            api_key=API_KEY,
            model="m",
            base_url=fake.base_url,
            auth=AuthConfig(tokens=[token]),
            tls=TlsConfig(cert_file=str(crt), key_file=str(key)),
        )
        server, port = serve(cfg, addr="127.0.0.1:0", max_retries=0, env={})
        addr = f"localhost:{port}"
        try:
            good = ClientSecurity(token=token, ca_file=str(ca[0]))
            with AiClient(addr, timeout_s=10, security=good) as client:
                assert client.analyze("x") == fake.reply
                assert "".join(client.stream("p")) == "Hello, world!"
            with AiClient(addr, timeout_s=10, security=ClientSecurity(ca_file=str(ca[0]))) as client:
                with pytest.raises(AiClientError) as info:
                    client.analyze("x")
                assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
            bad = ClientSecurity(token=token, ca_file=str(wrong[0]))
            with AiClient(addr, timeout_s=10, security=bad) as client:
                with pytest.raises(AiClientError) as info:
                    client.analyze("x")
                assert info.value.code == grpc.StatusCode.UNAVAILABLE
            creds = grpc.ssl_channel_credentials(ca[0].read_bytes())
            with grpc.secure_channel(addr, creds) as channel:
                got = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert got.status == health_pb2.HealthCheckResponse.SERVING
            # the alerter's client: AiClient(addr) reads NETSPECTRA_AI_TOKEN / NETSPECTRA_AI_CA_FILE
            monkeypatch.setenv("NETSPECTRA_AI_TOKEN", token)
            monkeypatch.setenv("NETSPECTRA_AI_CA_FILE", str(ca[0]))
            with AiClient(addr, timeout_s=10) as client:
                assert client.analyze("x") == fake.reply and token not in repr(client.security)
            app = typer.Typer()
            app.command("ai")(ai_cmd)
            app.command("ask-ai")(ask_ai)
            res = CliRunner().invoke(app, ["ask-ai", "--addr", addr, "hi"])  # from the environment
            assert res.exit_code == 0 and res.stdout == "Hello, world!\n", res.output
            monkeypatch.delenv("NETSPECTRA_AI_TOKEN")
            res = CliRunner().invoke(app, ["ask-ai", "--addr", addr, "hi"])
            assert res.exit_code == 1 and "UNAUTHENTICATED" in res.output
            res = CliRunner().invoke(
                app, ["ask-ai", "--addr", addr, "--token", token, "--ca-file", str(ca[0]), "hi"]
            )
            assert res.exit_code == 0, res.output
        finally:
            server.stop(0)
    assert token not in caplog.text and "refused: no bearer token" in caplog.text
