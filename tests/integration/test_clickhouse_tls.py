"""TLS to a ClickHouse server: the ``clickhouse`` keys ``secure``, ``verify``, ``ca_file``, ``cert_file``,
``key_file`` (and the original's ``cloud``), against real ClickHouse servers (18.16 in CI) listening on a
``tcp_port_secure`` with certificates made here with ``cryptography``.

* the right CA: the writer stores the capture and the queries give the golden totals, as on the plain
  port; a wrong CA, or none, is refused with an error naming ``clickhouse.ca_file``;
* a server that requires client certificates (mutual TLS): answers with ``cert_file``/``key_file``,
  refuses without them or with a certificate of another CA, each with an error that says so;
* the keys are checked when the configuration is loaded (files, CA, key matches certificate), each
  error naming the key and the fix; the password never appears in logs, errors or reprs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_process import issue, make_ca
from test_clickhouse import (
    FIVE,
    SNAPSHOTS,
    T0,
    Step,
    expected,
    expected_all,
    expected_hitters,
    make_steps,
    read_capture,
    unique_database,
    write_steps,
)
from typer.testing import CliRunner

from netspectra.batch import PacketBatch
from netspectra.config import ConfigError, effective_config_dict, parse_config_text
from netspectra.config.aggregator import ExactWriterConfig
from netspectra.sketches.base import HitterType
from netspectra.storage import SnapshotMeta, StorageError, WriterError
from netspectra.storage.backend_server import NATIVE_PORT, NATIVE_SECURE_PORT, ServerBackend
from netspectra.storage.clickhouse import ClickHouseWriter, connect_store
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.migrations import LATEST
from netspectra.storage.queries import aggregate_flows, heavy_hitters
from netspectra.storage.store import ClickHouseStore
from netspectra.tasks.exact import ExactTask

#: The password of the test user: it must never show up in a log line, an error or a repr.
PASSWORD = "s3cret-Pa55-do-not-log"
USER = "netspectra"


class Pki:
    """A CA and what it signed (server and client certificates), and a CA that signed nothing of ours."""

    def __init__(self, tmp: Path) -> None:
        self.ca = make_ca(tmp, "ns-test-ca")
        self.other_ca = make_ca(tmp, "other-ca")
        self.server_cert, self.server_key = issue(tmp, self.ca, "clickhouse", server=True)
        self.client_cert, self.client_key = issue(tmp, self.ca, "netspectra-writer", server=False)
        self.rogue_cert, self.rogue_key = issue(tmp, self.other_ca, "rogue", server=False)

    @property
    def ca_file(self) -> str:
        return str(self.ca[0])

    @property
    def other_ca_file(self) -> str:
        return str(self.other_ca[0])


@pytest.fixture(scope="module")
def batch() -> PacketBatch:
    return read_capture()


@pytest.fixture(scope="module")
def steps(batch: PacketBatch) -> list[Step]:
    """The capture as six snapshots over two periods (as in test_clickhouse)."""
    return make_steps(batch)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    pytest.importorskip("cryptography")
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, clickhouse_server_factory: Any
) -> Iterator[Any]:
    """A server with a TLS port (no client certificates asked) and a user with a password."""
    server = clickhouse_server_factory(
        tmp_path_factory.mktemp("ch-tls"),
        tls_files=(pki.server_cert, pki.server_key, None),
        users=((USER, PASSWORD),),
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def mtls_server(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, clickhouse_server_factory: Any
) -> Iterator[Any]:
    """A server whose TLS port requires a client certificate signed by the test CA."""
    server = clickhouse_server_factory(
        tmp_path_factory.mktemp("ch-mtls"),
        tls_files=(pki.server_cert, pki.server_key, pki.ca[0]),
        users=((USER, PASSWORD),),
    )
    try:
        yield server
    finally:
        server.stop()


def tls_cfg(server: Any, **extra: object) -> dict[str, object]:
    """A ``clickhouse`` section for the TLS port of ``server``, as the test user, in a fresh database."""
    return {
        "host": server.host,
        "port": server.tls_port,
        "database": unique_database(),
        "username": USER,
        "password": PASSWORD,
        "secure": True,
        **extra,
    }


def _no_password(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text


# --------------------------------------------------------------------------------------------------
# A TLS server
# --------------------------------------------------------------------------------------------------


def test_tls_with_the_right_ca_gives_the_golden_totals(
    tls_server: Any, pki: Pki, steps: list[Step], batch: PacketBatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cfg = tls_cfg(tls_server, ca_file=pki.ca_file, history_resolution="60s")
    store = write_steps(cfg, steps)  # a real exact and a real sketch writer, six snapshots
    try:
        assert "TLS" in store.describe() and f":{tls_server.tls_port}" in store.describe()
        result = aggregate_flows(store)
        assert result == expected_all(batch, np.arange(len(batch)))
        five = next(s for s in result if s.task_name == "five")
        assert (five.total_packets, five.total_bytes, five.flow_count) == (3882, 577490, 937)
        for k in (2, 4):  # as of a past snapshot: the state then
            step = steps[k - 1]
            assert aggregate_flows(store, end_ns=step.meta.snapshot_ts_ns) == expected_all(batch, step.seen)
        want = expected_hitters(steps, "cm", HitterType.COUNT, SNAPSHOTS)
        assert heavy_hitters(store, "cm", HitterType.COUNT, limit=10_000) == want
        # the user of the configuration is the one connected (its password went over TLS)
        mine = "SELECT user FROM system.processes WHERE query LIKE %(marker)s"
        assert store.query(mine, {"marker": "%netspectra-whoami%"}) == [(USER,)]
        _no_password(repr(store), store.describe(), repr(ClickHouseConfig(**cfg)))
    finally:
        store.close()
    _no_password(caplog.text)


def test_cloud_true_is_tls_on_the_secure_port(tls_server: Any, pki: Pki, batch: PacketBatch) -> None:
    cfg = {**tls_cfg(tls_server, ca_file=pki.ca_file), "secure": False, "cloud": True}
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=cfg), "exact")
    task = ExactTask("five", FIVE)
    task.update(batch.head(700))
    with w:
        w.write_flows(task.snapshot(), SnapshotMeta(T0 + 60 * 10**9, T0, True))
        assert aggregate_flows(w.store) == [expected(batch, np.arange(700), "five", FIVE)]
        assert "TLS" in w.store.describe()


def test_default_ports_follow_tls() -> None:
    assert ServerBackend(ClickHouseConfig(host="db")).port == NATIVE_PORT == 9000
    assert ServerBackend(ClickHouseConfig(host="db", secure=True)).port == NATIVE_SECURE_PORT == 9440
    assert ServerBackend(ClickHouseConfig(host="db", cloud=True)).port == 9440
    assert ServerBackend(ClickHouseConfig(host="db", secure=True, port=19440)).port == 19440
    # a cluster's nodes are reached with the same TLS settings (and credentials)
    cfg = ClickHouseConfig(host="db", secure=True, password=PASSWORD, cluster="c")
    node = ClickHouseStore(cfg).for_node("db2", 9441)
    assert (node.cfg.secure, node.cfg.password, node.cfg.cluster, node.node) == (
        True,
        PASSWORD,
        "",
        "db2:9441",
    )
    assert node.describe() == "server db2:9441 (TLS)"


@pytest.mark.parametrize("ca", ["other", "default"])
def test_a_wrong_ca_is_a_clear_error(
    tls_server: Any, pki: Pki, ca: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A CA that did not sign the server's certificate (or the default bundle, which has not the test CA)."""
    caplog.set_level(logging.DEBUG)
    extra = {"ca_file": pki.other_ca_file} if ca == "other" else {}
    cfg = tls_cfg(tls_server, **extra)
    with pytest.raises(StorageError, match=r"CERTIFICATE_VERIFY_FAILED.*clickhouse\.ca_file") as err:
        connect_store(ClickHouseConfig(**cfg))
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=cfg), "exact")
    with pytest.raises(WriterError, match=r"127\.0\.0\.1:\d+.*certificate was not accepted") as werr:
        w.open()
    w.close()
    _no_password(str(err.value), str(werr.value), caplog.text)


def test_verify_false_encrypts_without_checking_the_server(tls_server: Any) -> None:
    store = connect_store(ClickHouseConfig(**tls_cfg(tls_server, verify=False)))
    try:
        assert "certificate NOT verified" in store.describe()
        assert store.query("SELECT 1") == [(1,)]
    finally:
        store.close()


def test_tls_to_the_plain_port_and_plain_text_to_the_tls_port_fail(tls_server: Any, pki: Pki) -> None:
    cfg = {**tls_cfg(tls_server, ca_file=pki.ca_file), "port": tls_server.tcp_port}
    with pytest.raises(StorageError, match=r"does not speak TLS.*tcp_port_secure"):
        connect_store(ClickHouseConfig(**cfg))
    plain = {**tls_cfg(tls_server), "secure": False}
    with pytest.raises(StorageError, match=rf"127\.0\.0\.1:{tls_server.tls_port}"):
        connect_store(ClickHouseConfig(**plain))


# --------------------------------------------------------------------------------------------------
# Mutual TLS
# --------------------------------------------------------------------------------------------------


def test_mutual_tls_needs_a_client_certificate_of_the_ca(
    mtls_server: Any, pki: Pki, batch: PacketBatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = tls_cfg(
        mtls_server, ca_file=pki.ca_file, cert_file=str(pki.client_cert), key_file=str(pki.client_key)
    )
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=good), "exact")
    task = ExactTask("five", FIVE)
    task.update(batch.head(1500))
    with w:
        assert "client certificate" in w.store.describe()
        w.write_flows(task.snapshot(), SnapshotMeta(T0 + 60 * 10**9, T0, True))
        assert aggregate_flows(w.store) == [expected(batch, np.arange(1500), "five", FIVE)]
        w.store.ping()  # the readiness check's own connection presents the certificate too

    without = tls_cfg(mtls_server, ca_file=pki.ca_file)
    with pytest.raises(StorageError, match=r"client certificate \(clickhouse\.cert_file") as e1:
        connect_store(ClickHouseConfig(**without))
    rogue = {**good, "cert_file": str(pki.rogue_cert), "key_file": str(pki.rogue_key)}
    # TLS 1.3: the server checks the client certificate after the client's side of the handshake, so
    # the client reads either the server's alert (unknown CA) or only the closed connection
    either = r"UNKNOWN_CA.*refused the client certificate|ended the TLS handshake.*one it does not accept"
    with pytest.raises(StorageError, match=either) as e2:
        connect_store(ClickHouseConfig(**rogue))
    _no_password(str(e1.value), str(e2.value), caplog.text)


def test_storage_init_and_status_over_mutual_tls(mtls_server: Any, pki: Pki, tmp_path: Path) -> None:
    from netspectra.cli.main import app

    database = unique_database()
    path = tmp_path / "c.yaml"
    path.write_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks: [{name: five, key_fields: [SrcIP]}]\n"
        "    writers:\n      - type: clickhouse\n        enabled: true\n        clickhouse:\n"
        f"          host: 127.0.0.1\n          port: {mtls_server.tls_port}\n"
        f"          database: {database}\n          username: {USER}\n          password: {PASSWORD}\n"
        f"          secure: true\n          ca_file: {pki.ca_file}\n"
        f"          cert_file: {pki.client_cert}\n          key_file: {pki.client_key}\n"
    )
    runner = CliRunner()
    init = runner.invoke(app, ["storage", "init", "--config", str(path)])
    assert init.exit_code == 0, init.output
    assert "(TLS, client certificate)" in init.output
    assert f"created  local: {database}.flow_metrics" in init.output
    status = runner.invoke(app, ["storage", "status", "--config", str(path)])
    assert status.exit_code == 0 and f"local: schema version {LATEST}" in status.output
    _no_password(init.output, status.output)


# --------------------------------------------------------------------------------------------------
# The keys are checked when the configuration is loaded
# --------------------------------------------------------------------------------------------------


def _config_error(**ch: object) -> str:
    lines = "".join(
        f"          {k}: {v!r}\n" if isinstance(v, str) else f"          {k}: {v}\n" for k, v in ch.items()
    )
    text = (
        "aggregator:\n  types: [exact]\n  exact:\n    tasks: [{name: five, key_fields: [SrcIP]}]\n"
        "    writers:\n      - type: clickhouse\n        enabled: true\n        clickhouse:\n" + lines
    )
    with pytest.raises(ConfigError) as err:
        parse_config_text(text)
    return str(err.value)


def test_tls_keys_are_checked_at_load_time(pki: Pki, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    ca, cert, key = pki.ca_file, str(pki.client_cert), str(pki.client_key)
    msg = _config_error(secure=True)
    assert "clickhouse.secure configure TLS to a ClickHouse server (clickhouse.host), which is empty" in msg
    msg = _config_error(host="db", ca_file=ca)
    assert "clickhouse.ca_file set but TLS is off: set clickhouse.secure: true" in msg
    msg = _config_error(host="db", secure=True, ca_file=str(tmp_path / "missing.pem"))
    assert "clickhouse.ca_file:" in msg and "missing.pem does not exist" in msg
    msg = _config_error(host="db", secure=True, ca_file=str(tmp_path))
    assert "is a directory" in msg
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    msg = _config_error(host="db", secure=True, ca_file=str(junk))
    assert "clickhouse.ca_file:" in msg and "holds no usable CA certificate" in msg
    msg = _config_error(host="db", secure=True, ca_file=ca, verify=False)
    assert "clickhouse.ca_file is set but clickhouse.verify is false" in msg
    msg = _config_error(host="db", secure=True, cert_file=cert)
    assert "clickhouse.cert_file is set but clickhouse.key_file is empty" in msg
    msg = _config_error(host="db", secure=True, cert_file=cert, key_file=str(pki.rogue_key))
    assert f"{pki.rogue_key} is not the private key of the certificate in {cert}" in msg
    encrypted = tmp_path / "encrypted.key"
    private = serialization.load_pem_private_key(Path(key).read_bytes(), None)
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    msg = _config_error(host="db", secure=True, cert_file=cert, key_file=str(encrypted))
    assert "clickhouse.key_file:" in msg and "is encrypted" in msg
    # every message names where the section is
    assert "aggregator.exact.writers[0].clickhouse" in msg


def test_a_valid_tls_section_loads_and_its_password_is_masked(pki: Pki) -> None:
    cfg = ClickHouseConfig(
        host="db",
        secure=True,
        ca_file=pki.ca_file,
        cert_file=str(pki.client_cert),
        key_file=str(pki.client_key),
        password=PASSWORD,
    )
    assert cfg.tls and cfg.verify
    _no_password(repr(cfg), str(cfg), ClickHouseStore(cfg).describe(), repr(ClickHouseStore(cfg)))
    text = (
        "aggregator:\n  types: [exact]\n  exact:\n    tasks: [{name: five, key_fields: [SrcIP]}]\n"
        "    writers: [{type: clickhouse, enabled: true, clickhouse: "
        f"{{host: db, secure: true, ca_file: '{pki.ca_file}', password: '{PASSWORD}'}}}}]\n"
    )
    for bad in ({"secure": True}, {"host": "db", "ca_file": pki.ca_file}, {"host": "db", "port": -1}):
        with pytest.raises(ValueError) as err:  # a direct construction echoes no input either
            ClickHouseConfig(password=PASSWORD, **bad)
        _no_password(str(err.value))
    effective = effective_config_dict(parse_config_text(text))
    ch = effective["aggregator"]["exact"]["writers"][0]["clickhouse"]
    assert ch["password"] == "***" and ch["secure"] is True and ch["ca_file"] == pki.ca_file
