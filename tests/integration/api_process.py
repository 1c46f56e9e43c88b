"""A real ``netspectra api`` process over an embedded (chdb) store filled from a real capture.

:func:`fill_store` runs ``netspectra analyze gnutella.pcap --store`` with the alerter on (so the store
has flows, sketches and alerts); :class:`ApiProcess` then serves that store from a process of its own
(chdb: one process per data directory at a time), with debug JSON logs captured for the tests to read.
Used by the hostile-input and the authentication/TLS tests.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"
GOLDEN = json.loads((ROOT / "tests" / "golden" / "expected" / "gnutella.pcap.summary.json").read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_text(data_dir: Path, api: str = "", ss: str = "ss", cm: str = "cm") -> str:
    """Exact tasks per_five_tuple and per_src, sketch tasks ``ss`` (SuperSpread) and ``cm`` (CountMin),
    the flows task ``flows`` (flow records), all in the embedded store at ``data_dir``; alert rules on
    per_src and ss; ``api``: extra lines of ``api:``."""
    ch = json.dumps({"data_dir": str(data_dir), "database": "hostile", "history_resolution": "60s"})
    writer = f"[{{type: clickhouse, enabled: true, snapshot_interval: 60s, clickhouse: {ch}}}]"
    return (
        f"api:\n  grpc_listen_addr: '127.0.0.1:0'\n  http_listen_addr: '127.0.0.1:0'\n{api}"
        "aggregator:\n  types: [exact, sketch, flows]\n  num_workers: 2\n"
        f"  exact:\n    writers: {writer}\n"
        "    tasks:\n      - {name: per_five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}\n"
        "      - {name: per_src, key_fields: [SrcIP]}\n"
        f"  sketch:\n    writers: {writer}\n"
        f"    tasks:\n      - {{name: {ss}, skt_type: 1, flow_fields: [SrcIP], element_fields: [DstIP],\n"
        "         width: 4096, depth: 2, count_thereshold: 5, m: 128, size: 5, b: 1.08, base: 0.5, seed: 3}\n"
        f"      - {{name: {cm}, skt_type: 0, flow_fields: [SrcIP], width: 4096, depth: 2,\n"
        "         size_thereshold: 1000, count_thereshold: 10, seed: 5}\n"
        f"  flows:\n    writers: {writer}\n"
        "    tasks:\n      - {name: flows, idle_timeout: 15s, splt: 4}\n"
        "alerter:\n  enabled: true\n  check_interval: 3600s\n  rules:\n"
        "    - {name: bytes_over_1k, task_name: per_src, metric: total_bytes, operator: '>',\n"
        "       threshold: 1000}\n"
        f"    - {{name: spread_over_5, task_name: {ss}, metric: super_spreader_spread, operator: '>',\n"
        "       threshold: 5}\n"
    )


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("NETSPECTRA_")}
    out["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    return out


def fill_store(tmp: Path, **names: str) -> Path:
    """A configuration whose store holds gnutella.pcap (flows, sketches, alerts); returns its path.
    ``names``: other names of the sketch tasks (``ss=``, ``cm=``)."""
    conf = tmp / "netspectra.yaml"
    conf.write_text(config_text(tmp / "chdb", **names))
    res = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", str(CAPTURE), "-c", str(conf), "--store", "--json"],
        cwd=tmp,
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode in (0, 1), res.stderr  # 1: alerts fired (they did: that is the point)
    doc = json.loads(res.stdout)
    assert all(w["written"] >= 1 and w["dropped"] == 0 for w in doc["store"].values()), doc["store"]
    return conf


@dataclass
class ApiProcess:
    """``netspectra -vv --log-format json api -c CONF`` on free ports of 127.0.0.1; :meth:`stop` sends
    SIGINT and returns the process's stderr (its logs)."""

    conf: Path
    cwd: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    grpc_port: int = 0
    http_port: int = 0
    proc: Any = None
    stdout: str = ""
    stderr: str = ""

    def start(self, timeout_s: float = 120.0) -> ApiProcess:
        self.grpc_port, self.http_port = free_port(), free_port()
        self._out = open(self.cwd / f"api-{self.grpc_port}.out", "w+")  # noqa: SIM115 - closed in stop()
        self._err = open(self.cwd / f"api-{self.grpc_port}.err", "w+")  # noqa: SIM115
        args = [
            sys.executable, "-m", "netspectra", "-vv", "--log-format", "json", "api", "-c", str(self.conf),
            "--grpc-addr", f"127.0.0.1:{self.grpc_port}", "--http-addr", f"127.0.0.1:{self.http_port}",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, cwd=self.cwd, env={**env(), **self.extra_env}, stdout=self._out, stderr=self._err, text=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._out.seek(0)
            if "NetSpectra query service" in self._out.read():
                return self
            if self.proc.poll() is not None:
                self._err.seek(0)
                raise AssertionError(
                    f"netspectra api exited {self.proc.returncode}: {self._err.read()[-3000:]}"
                )
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"netspectra api did not start in {timeout_s} s: {self.stderr[-3000:]}")

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def logs(self) -> str:
        if self._err.closed:
            return self.stderr
        self._err.flush()
        self._err.seek(0)
        return self._err.read()

    def stop(self) -> str:
        if self._out.closed:  # stopped already
            return self.stderr
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.seek(0)
        self.stdout = self._out.read()
        self.stderr = self.logs()
        self._out.close()
        self._err.close()
        return self.stderr


def make_ca(tmp: Path, name: str) -> tuple[Path, Any, Any]:
    """A self-signed CA: ``(PEM path, certificate, key)``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, cert, key


def issue(tmp: Path, ca: tuple[Path, Any, Any], name: str, *, server: bool) -> tuple[Path, Path]:
    """A certificate signed by ``ca`` for ``name`` (server: SANs localhost and 127.0.0.1); returns the
    PEM paths ``(certificate, key)``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    _, ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
