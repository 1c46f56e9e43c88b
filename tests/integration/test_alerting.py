"""Alerting against real local servers: SMTP (aiosmtpd, STARTTLS + AUTH), an HTTP webhook receiver, the AI
gRPC service over the OpenAI SDK and a local chat-completions server, and the whole chain from a capture
with a planted super-spreader through the engine to the e-mail with its AI section."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from netspectra.ai.client import AiClient
from netspectra.ai.service import serve
from netspectra.alerting import (
    Alerter,
    EmailNotifier,
    LogNotifier,
    Notification,
    NotifierError,
    WebhookNotifier,
    attach_alerter,
    verify_signature,
)
from netspectra.alerting.notifiers import SIGNATURE_HEADER, TIMESTAMP_HEADER
from netspectra.capture.reader import read_captures
from netspectra.config import parse_config_text
from netspectra.config.models import AiConfig
from netspectra.engine.manager import Manager, ManualClock
from netspectra.gen.synth import generate
from netspectra.transport.natsserver import free_port

aiosmtpd = pytest.importorskip("aiosmtpd", reason="needs aiosmtpd (pip install aiosmtpd)")
from aiosmtpd.controller import Controller  # noqa: E402
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.openai_server import FakeOpenAI  # noqa: E402

# --------------------------------------------------------------------------------------------------
# SMTP server
# --------------------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """What the SMTP server received: one entry per message (envelope sender, recipients, message)."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        self.received.set()
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword) and data.login == b"alerts" and data.password == b"s3cret-pw":
            self.logins.append(data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def smtp_tls(tmp_path: Path) -> Iterator[tuple[Mailbox, int, ssl.SSLContext]]:
    """An SMTP server requiring STARTTLS and AUTH (user ``alerts``); yields (mailbox, port, client ctx)."""
    pytest.importorskip("cryptography")
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    box = Mailbox()
    port = free_port()
    ctl = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_ctx,
        require_starttls=True,
        authenticator=box.authenticate,
        auth_require_tls=True,
    )
    ctl.start()
    try:
        yield box, port, ssl.create_default_context(cafile=str(cert))
    finally:
        ctl.stop()


@pytest.fixture
def smtp_plain() -> Iterator[tuple[Mailbox, int]]:
    """A plain SMTP server without authentication; yields (mailbox, port)."""
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        yield box, port
    finally:
        ctl.stop()


def html_part(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("html",))
    assert part is not None, "no text/html part"
    assert part.get_content_type() == "text/html" and part.get_content_charset() == "utf-8"
    return str(part.get_content())


NOTE = Notification(
    subject="NetSpectra Alert Summary (1 Triggered)",
    html="<h1>NetSpectra Alert Summary</h1><p>x</p>",
    text="- rule fired",
    alerts=({"rule": "R", "task": "t", "metric": "total_bytes", "value": 5.0},),
    time_ns=1_700_000_000 * 10**9,
)


def test_email_over_starttls_with_auth(smtp_tls: tuple[Mailbox, int, ssl.SSLContext]) -> None:
    box, port, ctx = smtp_tls
    n = EmailNotifier(
        "127.0.0.1",
        port,
        sender="netspectra@example.org",
        recipients=["ops@example.org", "sec@example.org"],
        username="alerts",
        password="s3cret-pw",
        starttls="always",
        tls_context=ctx,
    )
    n.send(NOTE)
    assert box.received.wait(5)
    (mail_from, rcpts, msg) = box.messages[0]
    assert box.logins == ["alerts"]
    assert mail_from == "netspectra@example.org"
    assert sorted(rcpts) == ["ops@example.org", "sec@example.org"]
    assert msg["Subject"] == "NetSpectra Alert Summary (1 Triggered)"
    assert msg["To"] == "ops@example.org, sec@example.org"
    assert html_part(msg).strip() == NOTE.html
    text = msg.get_body(preferencelist=("plain",))
    assert text is not None and text.get_content().strip() == NOTE.text


def test_email_failures_are_reported(smtp_tls: tuple[Mailbox, int, ssl.SSLContext]) -> None:
    box, port, ctx = smtp_tls
    wrong = EmailNotifier(
        "127.0.0.1", port, sender="a@example.org", recipients=["b@example.org"], username="alerts",
        password="wrong-password", tls_context=ctx,
    )  # fmt: skip
    with pytest.raises(NotifierError, match="authentication as 'alerts' failed") as info:
        wrong.send(NOTE)
    assert "wrong-password" not in str(info.value)
    untrusted = EmailNotifier("127.0.0.1", port, sender="a@example.org", recipients=["b@example.org"])
    with pytest.raises(NotifierError, match=r"SSLCertVerificationError|certificate verify failed"):
        untrusted.send(NOTE)  # the default context does not trust the self-signed certificate
    dead = free_port()
    unreachable = EmailNotifier("127.0.0.1", dead, sender="a@example.org", recipients=["b@example.org"])
    with pytest.raises(NotifierError, match=f"SMTP 127.0.0.1:{dead}: ConnectionRefusedError"):
        unreachable.send(NOTE)
    assert not box.messages


def test_alerter_reports_unreachable_smtp_and_still_logs(caplog: pytest.LogCaptureFixture) -> None:
    dead = free_port()
    email_n = EmailNotifier("127.0.0.1", dead, sender="a@example.org", recipients=["b@example.org"])
    al = Alerter(
        parse_config_text(CONFIG_EXACT).alerter.rules,
        [LogNotifier(), email_n],
        snapshot_of=lambda name: _FakeTotals(),
        check_interval=60,
    )
    rec = al.check()
    assert rec is not None and rec.deliveries["log"] is None
    assert "ConnectionRefusedError" in (rec.deliveries[email_n.name] or "")
    assert f"alert notification via email 127.0.0.1:{dead} failed" in caplog.text


class _FakeTotals:
    """A stand-in exact snapshot for the rules (the exact kind reads ``total_bytes``, ``total_packets``,
    ``len``)."""

    kind = "exact"
    total_bytes = 5_000_000
    total_packets = 10

    def __len__(self) -> int:
        return 3


# --------------------------------------------------------------------------------------------------
# Webhook receiver
# --------------------------------------------------------------------------------------------------


@dataclass
class Hook:
    port: int
    requests: list[tuple[Any, bytes]]  # (headers, case-insensitive; body)
    fail_next: list[int]  # statuses to answer with before succeeding

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/T000/B000/secret-token"


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook(0, [], [])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            h.requests.append((self.headers, body))
            status = h.fail_next.pop(0) if h.fail_next else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    h.port = int(srv.server_address[1])
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield h
    finally:
        srv.shutdown()
        srv.server_close()


def test_webhook_retries_once_and_is_signed(hook: Hook) -> None:
    hook.fail_next = [503]
    n = WebhookNotifier(hook.url, secret="hmac-key", retries=2, backoff_initial_s=0.05)
    n.send(NOTE)
    assert len(hook.requests) == 2  # failed once, retried, delivered
    headers, body = hook.requests[-1]
    doc = json.loads(body)
    assert doc["subject"] == NOTE.subject and doc["alerts"][0]["metric"] == "total_bytes"
    assert doc["time"] == "2023-11-14T22:13:20Z"
    assert headers[SIGNATURE_HEADER].startswith("sha256=")
    assert verify_signature("hmac-key", body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    assert not verify_signature("other-key", body, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])
    assert not verify_signature("hmac-key", body + b" ", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER])


def test_webhook_slack_format_and_failures(hook: Hook) -> None:
    WebhookNotifier(hook.url, format="slack").send(NOTE)
    headers, body = hook.requests[-1]
    assert json.loads(body) == {"text": f"*{NOTE.subject}*\n{NOTE.text}"}
    assert headers.get(SIGNATURE_HEADER) is None
    hook.fail_next = [400]
    with pytest.raises(NotifierError, match=r"HTTP 400 .*not retried"):
        WebhookNotifier(hook.url, retries=3, backoff_initial_s=0.01).send(NOTE)
    hook.fail_next = [500, 500, 500]
    n = WebhookNotifier(hook.url, retries=2, backoff_initial_s=0.01)
    with pytest.raises(NotifierError, match="failed after 3 attempt") as info:
        n.send(NOTE)
    assert "secret-token" not in str(info.value)  # the URL's token stays out of messages
    t0 = time.monotonic()
    with pytest.raises(NotifierError, match="failed after 2 attempt"):
        WebhookNotifier(f"http://127.0.0.1:{free_port()}/x", retries=1, backoff_initial_s=0.01).send(NOTE)
    assert time.monotonic() - t0 < 5


# --------------------------------------------------------------------------------------------------
# AI in the alerter, and the whole chain
# --------------------------------------------------------------------------------------------------

API_KEY = "sk-test-0123456789abcdef"

CONFIG_EXACT = """
aggregator:
  types: [exact]
  exact:
    tasks:
      - {name: per_five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}
alerter:
  enabled: true
  check_interval: 60s
  rules:
    - {name: Total_Traffic_Spike, task_name: per_five_tuple, metric: total_bytes, operator: ">",
       threshold: 1000000}
"""

CHAIN = """
aggregator:
  types: [exact, sketch]
  exact:
    tasks:
      - {{name: per_five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol], num_shards: 16}}
  sketch:
    tasks:
      - {{name: ss_src_dst, skt_type: 1, flow_fields: [SrcIP], element_fields: [DstIP], width: 4096,
         depth: 2, count_thereshold: 200, m: 128, size: 5, base: 0.5, b: 1.08, seed: 7}}
alerter:
  enabled: true
  check_interval: 60s
  ai_analysis: {{enabled: true, service_addr: "127.0.0.1:{ai_port}"}}
  rules:
    - {{name: Potential_DDoS_Source_Detected, task_name: ss_src_dst, metric: super_spreader_spread,
       operator: ">", threshold: 1000}}
smtp:
  host: 127.0.0.1
  port: {smtp_port}
  from: netspectra@example.org
  to: "soc@example.org, oncall@example.org"
"""


@pytest.fixture
def ai_stack() -> Iterator[tuple[FakeOpenAI, int]]:
    """The chat-completions server and the AI gRPC service in front of it; yields (fake, grpc port)."""
    with FakeOpenAI(api_key=API_KEY) as fake:
        server, port = serve(
            AiConfig(api_key=API_KEY, model="test-model", base_url=fake.base_url), addr="127.0.0.1:0",
            max_retries=0,
        )  # fmt: skip
        try:
            yield fake, port
        finally:
            server.stop(0)


@pytest.fixture(scope="module")
def spreader_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cap") / "spreader.pcap"
    truth = generate(
        path,
        packets=20_000,
        flows=2_000,
        seed=1,
        super_spreaders=1,
        spread=3000,
        heavy_hitters=0,
        ddos_victims=0,
    )
    assert truth["super_spreaders"][0]["src_ip"] == "198.18.1.1"
    return path


def test_whole_chain_capture_engine_alert_ai_mail(
    spreader_pcap: Path, ai_stack: tuple[FakeOpenAI, int], smtp_plain: tuple[Mailbox, int],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    fake, ai_port = ai_stack
    box, smtp_port = smtp_plain
    cfg = parse_config_text(CHAIN.format(ai_port=ai_port, smtp_port=smtp_port))
    manager = Manager.from_config(cfg, writers=False, num_workers=2)
    alerter = attach_alerter(manager, cfg)
    assert alerter is not None and [n.kind for n in alerter.notifiers] == ["log", "email"]
    manager.start()
    for batch in read_captures([spreader_pcap]):
        manager.submit(batch)
    manager.stop()  # the final snapshot, then the alerter's final check

    assert box.received.wait(10)
    assert len(box.messages) == 1
    _, rcpts, msg = box.messages[0]
    assert sorted(rcpts) == ["oncall@example.org", "soc@example.org"]
    assert msg["Subject"] == "NetSpectra Alert Summary (1 Triggered)"
    body = html_part(msg)
    head = (
        "<h1>NetSpectra Alert Summary</h1><p>The following alerts were triggered during the last check:</p>"
        "<hr>"
    )
    assert body.startswith(head + "<h3>Alert: Potential_DDoS_Source_Detected</h3>")
    assert "<tr><td><code>198.18.1.1</code></td><td>" in body
    ai_at = body.index("<hr><h2>AI-Powered Analysis</h2>")
    assert "<h2>Assessment</h2>" in body[ai_at:] and "<strong>super-spreader</strong>" in body[ai_at:]
    # the AI service got the alert fragment inside the original's wrapper, with the configured model
    (req,) = fake.requests
    prompt = req["body"]["messages"][0]["content"]
    assert req["body"]["model"] == "test-model"
    assert "--- Alert Data ---\n<h3>Alert: Potential_DDoS_Source_Detected</h3>" in prompt
    assert prompt.endswith("</table>\n--- End of Alert Data ---")
    rec = alerter.history[-1]
    assert rec.final and rec.ai_status == "ok" and rec.delivered and not rec.failures
    assert API_KEY not in caplog.text


def test_periodic_checks_on_the_engine_clock(spreader_pcap: Path, smtp_plain: tuple[Mailbox, int]) -> None:
    box, smtp_port = smtp_plain
    text = CHAIN.format(ai_port=1, smtp_port=smtp_port).replace(
        "enabled: true, service_addr", "enabled: false, x"
    )
    cfg = parse_config_text(text)
    clock = ManualClock()
    manager = Manager.from_config(cfg, writers=False, num_workers=2, clock=clock)
    alerter = attach_alerter(manager, cfg, cooldown=3600)
    assert alerter is not None and alerter.ai_client is None
    manager.start()
    for batch in read_captures([spreader_pcap]):
        manager.submit(batch)
    manager.flush()
    clock.advance(59)
    time.sleep(0.1)
    assert alerter.checks_run == 0 and not box.messages
    clock.advance(1)
    assert alerter.wait_checks(1)
    assert box.received.wait(5) and len(box.messages) == 1
    clock.advance(60)
    assert alerter.wait_checks(2)
    manager.stop()  # the final check finds the same standing condition: no second mail
    time.sleep(0.2)
    assert len(box.messages) == 1
    assert len(alerter.history) == 1


def test_slow_or_dead_ai_never_delays_or_loses_the_alert(ai_stack: tuple[FakeOpenAI, int]) -> None:
    fake, ai_port = ai_stack
    fake.delay_s = 5.0
    got: list[Notification] = []

    class Keep(LogNotifier):
        def send(self, notification: Notification) -> None:
            got.append(notification)

    rules = parse_config_text(CONFIG_EXACT).alerter.rules
    for addr in (f"127.0.0.1:{ai_port}", f"127.0.0.1:{free_port()}"):
        al = Alerter(
            rules, [Keep()], snapshot_of=lambda n: _FakeTotals(), ai_client=AiClient(addr, timeout_s=1.0)
        )
        t0 = time.monotonic()
        rec = al.check()
        assert time.monotonic() - t0 < 3.0
        assert rec is not None and rec.delivered and rec.ai_status.startswith("failed")
        code = "DEADLINE_EXCEEDED" if addr.endswith(str(ai_port)) else "UNAVAILABLE"
        assert code in rec.ai_status
        assert "<hr><h2>AI-Powered Analysis</h2><p><em>AI analysis unavailable:" in got[-1].html
        al.stop()
    assert len(got) == 2  # one per alerter: the final check at stop finds the same standing condition


def test_final_check_at_stop_is_bounded_when_endpoints_do_not_answer() -> None:
    """A webhook and a mail server that accept connections and never answer: the final check at stop
    gives up within the alerter's final_timeout_s (a webhook like that held `up`'s Ctrl-C for 49 s —
    4 attempts of 10 s plus the back-off — and a mail server would add 30 s); the log still has it."""
    import socket

    with socket.socket() as web, socket.socket() as mail:
        for s in (web, mail):
            s.bind(("127.0.0.1", 0))
            s.listen(16)  # connections complete in the kernel's backlog; nothing ever answers
        email_n = EmailNotifier(
            "127.0.0.1", mail.getsockname()[1], sender="a@example.org", recipients=["b@example.org"]
        )
        web_n = WebhookNotifier(f"http://127.0.0.1:{web.getsockname()[1]}/hook")  # 10 s, 3 retries
        al = Alerter(
            parse_config_text(CONFIG_EXACT).alerter.rules,
            [LogNotifier(), email_n, web_n],
            snapshot_of=lambda name: _FakeTotals(),
        )
        t0 = time.monotonic()
        rec = al.stop()
        took = time.monotonic() - t0
    assert al.final_timeout_s == 10.0 and took < al.final_timeout_s + 3, took  # was 30 + 47 s
    assert rec is not None and rec.final and rec.delivered  # the log notifier
    assert rec.deliveries["log"] is None
    assert "timed out" in (rec.deliveries[email_n.name] or "")
    assert "no time left at stop" in (rec.deliveries[web_n.name] or "")
    # a notifier outside a stop keeps its own timeouts and retries
    assert WebhookNotifier("http://127.0.0.1:1/x").deadline is None


def test_stop_bounds_a_periodic_check_still_notifying() -> None:
    """stop() while a periodic check waits on a webhook that never answers: the check in flight gives up
    at the stop's deadline too (stop joined it first: its attempts and back-off ran to the end)."""
    import socket

    with socket.socket() as web:
        web.bind(("127.0.0.1", 0))
        web.listen(16)
        web_n = WebhookNotifier(f"http://127.0.0.1:{web.getsockname()[1]}/hook", timeout_s=3.0)
        al = Alerter(
            parse_config_text(CONFIG_EXACT).alerter.rules,
            [LogNotifier(), web_n],
            snapshot_of=lambda name: _FakeTotals(),
            check_interval=0.2,
            final_timeout_s=2.0,
        )
        al.start()
        web.settimeout(10)
        conn, _ = web.accept()  # the periodic check's first attempt is in flight
        with conn:
            t0 = time.monotonic()
            al.stop()
            took = time.monotonic() - t0
    # the attempt in flight ends at its own 3 s timeout, then no retry (was: 4 x 3 s + 1 + 2 + 4 s)
    assert took < 5.5, took
    assert al.history[0].deliveries[web_n.name].startswith(f"{web_n.name}: no time left at stop")
