"""``netspectra up``'s ``nats-server`` child, supervised.

:class:`NatsServerService` starts a :class:`~netspectra.transport.natsserver.NatsServer` (127.0.0.1,
JetStream store in the data directory) and watches it from a thread: when the child exits — killed,
crashed — it is reaped at once (no zombie), readiness turns false (``/readyz`` says why), and it is
started again on the same ports and store after a back-off (0.5 s, doubling, at most 10 s); the
clients reconnect by themselves and a JetStream stream and its consumers come back from disk. After
``max_restarts`` failed starts in a row the service fails: :attr:`error` says so and ``up`` stops with
that error. Stopping is bounded (SIGTERM, then SIGKILL).

The child listens on loopback and has no authentication: only processes of this machine reach it
(``docs/live.md``, *Security*).

One ``up`` per data directory: :meth:`NatsServerService.start` takes an exclusive lock
(``<directory>/up.lock``, ``flock``: released by the kernel when the process ends, however it ends)
before it starts the child, so a second ``up`` on the same directory stops at once and says which
process holds it (it used to start a second nats-server on the same JetStream store, whose engine read
the stream and could not write). The child is in a session of its own, so an ``up`` that was killed
(SIGKILL, out of memory) leaves it running: its pid is kept in ``<directory>/nats-server.pid``, and the
next ``up`` on the directory (holding the lock, so that ``up`` is gone) stops such a leftover server of
the same store before it starts its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from netspectra.services.base import Section, Service, ServiceError

log = logging.getLogger(__name__)

__all__ = ["NatsServerService", "describe_exit"]


def describe_exit(code: int) -> str:
    """``exit status 3`` or ``signal 9 (SIGKILL)`` for a ``Popen.returncode``."""
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


class NatsServerService(Service):
    """The supervised ``nats-server`` child (see the module docstring)."""

    name = "nats-server"
    stop_timeout_s = 25.0

    def __init__(
        self,
        directory: Path,
        *,
        port: int = 0,
        max_restarts: int = 5,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        poll_s: float = 0.1,
    ) -> None:
        from netspectra.transport.natsserver import NatsServer, NatsServerError, free_port

        try:
            self.server = NatsServer(directory, port=port or free_port(), jetstream=True)
        except NatsServerError as exc:
            raise ServiceError(f"nats-server: {exc}") from None
        self.max_restarts = max_restarts
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.poll_s = poll_s
        self.restarts = 0
        self.exits: list[str] = []
        self._problem: str | None = "not started"
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self.error = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def lock_path(self) -> Path:
        return self.server.directory / "up.lock"

    @property
    def pid_path(self) -> Path:
        return self.server.directory / "nats-server.pid"

    def _lock(self) -> None:
        """Take the directory's lock, or :class:`ServiceError` naming the process that holds it."""
        self.server.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ServiceError(
                f"another netspectra up (pid {holder}) uses the data directory "
                f"{self.server.directory.parent}: stop it first, or give this one another --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                self.pid_path.unlink()
            os.close(fd)

    def _stop_leftover(self) -> None:
        """Stop a nats-server on this store left running by an ``up`` that did not stop (killed)."""
        try:
            pid = int(self.pid_path.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return  # no pid file, or that process is gone
        store = str(self.server.directory / "jetstream").encode()
        if not (cmdline and cmdline[0].endswith(b"nats-server") and store in cmdline):
            return  # the pid was reused by another program
        log.warning(
            "stopping nats-server pid %d, left running on %s by an earlier netspectra up that did not stop "
            "(killed?)",
            pid,
            self.server.directory,
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15.0
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if Path(f"/proc/{pid}").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)

    def _write_pid(self) -> None:
        with contextlib.suppress(OSError):
            self.pid_path.write_text(f"{self.server.pid}\n")

    def start(self, cancel: threading.Event | None = None) -> None:
        from netspectra.transport.natsserver import NatsServerError

        self._lock()
        try:
            self._stop_leftover()
            self.server.start()
        except NatsServerError as exc:
            self._unlock()
            # one line that says why (the server's fatal log line), not its whole start-up log
            why = str(exc).splitlines()[0]
            if "address already in use" in why:
                why += (
                    f"; another process listens on port {self.server.port}: "
                    "choose another with --nats-port, or 0 for a free one"
                )
            raise ServiceError(f"{why} (its log: {self.server.log_path})") from None
        except BaseException:
            self._unlock()
            raise
        self._write_pid()
        self._problem = None
        self._thread = threading.Thread(target=self._supervise, name="ns-nats-supervisor", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        from netspectra.transport.natsserver import NatsServerError

        while not self._stopping.wait(self.poll_s):
            code = self.server.poll()  # reaps a dead child at once
            if code is None:
                continue
            what = describe_exit(code)
            self.exits.append(what)
            self._problem = f"nats-server exited ({what}); restarting"
            log.error(
                "nats-server (pid %s) exited with %s: restarting it on port %d (store %s)\n%s",
                self.server.pid,
                what,
                self.server.port,
                self.server.directory,
                self.server.log_tail(5),
            )
            failures = 0
            delay = self.backoff_initial_s
            while not self._stopping.is_set():
                if self._stopping.wait(delay):
                    return
                try:
                    self.server.start()
                except (NatsServerError, OSError) as exc:
                    failures += 1
                    self._problem = (
                        f"nats-server exited ({what}); restart {failures} of {self.max_restarts} failed"
                    )
                    log.error(
                        "restarting nats-server failed (%d of %d): %s", failures, self.max_restarts, exc
                    )
                    if failures >= self.max_restarts:
                        self.error = ServiceError(
                            f"nats-server exited ({what}) and could not be restarted ({failures} attempts): "
                            f"{exc}; see {self.server.log_path}"
                        )
                        self._problem = str(self.error)
                        return
                    delay = min(self.backoff_max_s, delay * 2)
                    continue
                self.restarts += 1
                self._write_pid()
                self._problem = None
                log.warning(
                    "nats-server restarted (pid %s, %d restart(s) so far); clients reconnect",
                    self.server.pid,
                    self.restarts,
                )
                break

    def done(self) -> bool:
        return self.error is not None

    def ready(self) -> str | None:
        return self._problem

    def wire_ops(self, ep: Any) -> None:
        ep.check("nats-server", self.ready)

    def stop(self, timeout_s: float | None = None) -> None:
        budget = self.stop_timeout_s if timeout_s is None else timeout_s
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(min(5.0, budget))
        t0 = time.monotonic()
        self.server.stop(timeout_s=max(1.0, budget - 10.0))
        self._unlock()
        log.info("nats-server stopped (%.1f s)", time.monotonic() - t0)

    def summary(self) -> dict[str, Any]:
        return {"url": self.server.url, "store": str(self.server.directory), "restarts": self.restarts,
                "exits": list(self.exits)}  # fmt: skip

    def report(self) -> list[Section]:
        lines: list[tuple[str, Any]] = [("url", self.server.url), ("restarts", self.restarts)]
        if self.exits:
            lines.append(("exits", ", ".join(self.exits)))
        if self.error is not None:
            lines.append(("error", str(self.error)))
        return [("nats-server", lines)]
