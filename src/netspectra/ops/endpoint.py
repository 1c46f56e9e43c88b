"""One service's ops endpoint: a registry, a liveness heartbeat and named readiness checks.

Liveness (``/healthz``) is a heartbeat: the service's main loop calls :meth:`Heartbeat.beat` (an
asyncio service runs :meth:`Heartbeat.run` as a task); the process is alive while the last beat is
younger than ``max_age_s``. A wedged loop (blocked by a bug, a deadlock) turns it to 503, so an
orchestrator restarts the process.

Readiness (``/readyz``) is the conjunction of named checks, each ``() -> None`` (ready) or a string
saying what is missing. Once :meth:`OpsEndpoint.set_stopping` is called (SIGTERM), the service is
not ready any more, whatever the checks say: a load balancer stops sending work while it drains.

A check that may block (a network round trip, opening a store) is registered with ``background=True``:
a :class:`BackgroundCheck` thread runs it every ``interval_s`` and ``/readyz`` and ``netspectra_ready``
read the cached answer, so a scrape never waits for the network; a run that takes longer than
``timeout_s`` makes the check "not ready" until it answers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.registry import Collector

from netspectra.ops.collectors import BuildInfoCollector, ReadyCollector
from netspectra.ops.server import OpsServer

log = logging.getLogger(__name__)

__all__ = ["BackgroundCheck", "Heartbeat", "OpsEndpoint", "parse_listen", "resolve_listen", "start_ops"]

#: A readiness check: ``None`` when ready, else what is not ready (one short sentence).
Check = Callable[[], str | None]


def parse_listen(addr: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` (loopback: ``127.0.0.1``) or ``[V6]:PORT`` as ``(host, port)``;
    ``ValueError`` naming the address otherwise. All interfaces only when asked: ``0.0.0.0:PORT``."""
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        # a port out of range is said as such: "use HOST:PORT" alone read as "the form is wrong"
        why = f"port {port} is above 65535; " if sep and port.isdigit() else ""
        raise ValueError(
            f"ops listen address {addr!r}: {why}use HOST:PORT or :PORT (e.g. 127.0.0.1:9464, or 0.0.0.0:9464 "
            "for every interface)"
        )
    return host.strip("[]") or "127.0.0.1", int(port)


def resolve_listen(option: str | None, cfg: Any = None) -> str | None:
    """The ops address: ``--ops-listen`` (or ``NETSPECTRA_OPS_LISTEN``, which typer maps onto it),
    else ``ops.listen`` of the configuration ``cfg``, else ``None`` (no endpoint)."""
    if option:
        return option
    listen = getattr(getattr(cfg, "ops", None), "listen", "") if cfg is not None else ""
    return listen or None


class BackgroundCheck:
    """A readiness check run in a daemon thread every ``interval_s``; calling it returns the last answer
    at once (thread-safe).

    Before the first answer it says ``"not checked yet"``; while a run has been going for more than
    ``timeout_s`` it says so (the check hangs: not ready), whatever the previous answer was. A check that
    raises is not ready, with the exception. :meth:`stop` ends the thread and waits (bounded) for a run
    in progress, so a check never touches a service that is being stopped.
    """

    def __init__(self, name: str, fn: Check, *, interval_s: float = 2.0, timeout_s: float = 5.0) -> None:
        self.name = name
        self.fn = fn
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._result: str | None = "not checked yet"
        self._running_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ns-ready-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._running_since = time.monotonic()
            try:
                result = self.fn()
            except Exception as exc:
                result = f"check failed: {type(exc).__name__}: {exc}"
            with self._lock:
                self._result, self._running_since = result, None
            self._stop.wait(self.interval_s)

    def __call__(self) -> str | None:
        with self._lock:
            result, since = self._result, self._running_since
        if since is not None and time.monotonic() - since > self.timeout_s:
            return f"no answer for {time.monotonic() - since:.0f} s (timeout {self.timeout_s:g} s)"
        return result

    def stop(self, wait_s: float | None = None) -> None:
        """No run after this one; wait up to ``wait_s`` (default ``timeout_s``) for a run in progress."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(self.timeout_s if wait_s is None else wait_s)


class Heartbeat:
    """Liveness of a main loop (see the module docstring); thread-safe."""

    def __init__(self, max_age_s: float = 30.0) -> None:
        self.max_age_s = max_age_s
        self._last = time.monotonic()

    def beat(self) -> None:
        self._last = time.monotonic()

    def age(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self._last

    def alive(self) -> bool:
        return self.age() <= self.max_age_s

    async def run(self, interval_s: float = 1.0) -> None:
        """Beat every ``interval_s`` until cancelled (run it as a task of the service's loop)."""
        while True:
            self.beat()
            await asyncio.sleep(interval_s)


class OpsEndpoint:
    """The ops endpoint of one ``service`` (``probe``, ``engine``, ``api``, ``ai``, ``up``).

    Construction binds ``host:port`` (``OSError``); :meth:`start` serves. Register collectors with
    :meth:`add` and readiness checks with :meth:`check` at any time (before or after start).
    """

    def __init__(self, service: str, host: str, port: int, *, max_beat_age_s: float = 30.0) -> None:
        self.service = service
        self.heartbeat = Heartbeat(max_beat_age_s)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(BuildInfoCollector(service))
        self.registry.register(ReadyCollector(self.ready))
        ProcessCollector(registry=self.registry)
        self._lock = threading.Lock()
        self._checks: dict[str, Check] = {}
        self._stopping: str | None = None
        self.server = OpsServer(host, port, self.registry, alive=self._alive, ready=self._ready)

    @property
    def port(self) -> int:
        return self.server.port

    def add(self, collector: Collector) -> None:
        """Serve ``collector``'s series too."""
        self.registry.register(collector)

    def check(
        self,
        name: str,
        fn: Check,
        *,
        background: bool = False,
        interval_s: float = 2.0,
        timeout_s: float = 5.0,
    ) -> None:
        """Add (or replace) the readiness check ``name``. ``background``: ``fn`` may block, so it runs in
        a :class:`BackgroundCheck` thread every ``interval_s`` and readiness reads its last answer."""
        check: Check = fn
        if background:
            check = BackgroundCheck(name, fn, interval_s=interval_s, timeout_s=timeout_s)
        with self._lock:
            old = self._checks.get(name)
            self._checks[name] = check
        if isinstance(old, BackgroundCheck):
            old.stop()

    def set_stopping(self, reason: str = "stopping (signal received)") -> None:
        """From now on the service is not ready (it drains and stops). Background checks stop here, before
        the services do: a check run after its service stopped could reopen what it closed (a store's
        embedded engine, reopened while the process exits, crashes it)."""
        self._stopping = reason
        with self._lock:
            checks = list(self._checks.values())
        for c in checks:
            if isinstance(c, BackgroundCheck):
                c.stop()

    def ready(self) -> tuple[bool, dict[str, str]]:
        """``(ready, {check: "ok" | what is missing})``; a check that raises is not ready."""
        with self._lock:
            checks = list(self._checks.items())
        out: dict[str, str] = {}
        for name, fn in checks:
            try:
                problem = fn()
            except Exception as exc:
                problem = f"check failed: {type(exc).__name__}: {exc}"
            out[name] = "ok" if problem is None else problem
        if self._stopping is not None:
            out["stopping"] = self._stopping
        ok = bool(checks) and all(v == "ok" for v in out.values())
        if not checks:
            out["checks"] = "none registered yet (starting)"
        return ok, out

    def _alive(self) -> tuple[bool, dict[str, Any]]:
        age = self.heartbeat.age()
        return age <= self.heartbeat.max_age_s, {"service": self.service, "heartbeat_age_s": round(age, 3)}

    def _ready(self) -> tuple[bool, dict[str, Any]]:
        ok, checks = self.ready()
        return ok, {"service": self.service, "checks": checks}

    def start(self) -> OpsEndpoint:
        self.server.start()
        log.info(
            "%s: ops endpoint on http://%s:%d (/metrics, /healthz, /readyz)",
            self.service,
            self.server.host,
            self.port,
        )
        return self

    def stop(self) -> None:
        self.server.stop()
        with self._lock:
            checks = list(self._checks.values())
        for c in checks:
            if isinstance(c, BackgroundCheck):
                c.stop()


def start_ops(service: str, listen: str | None) -> OpsEndpoint | None:
    """A started :class:`OpsEndpoint` on ``listen``, or ``None`` when ``listen`` is empty.
    ``ValueError`` for a malformed address, ``OSError`` when it cannot be bound."""
    if not listen:
        return None
    host, port = parse_listen(listen)
    try:
        ep = OpsEndpoint(service, host, port)
    except OSError as exc:
        raise OSError(f"cannot listen on {listen!r} for the ops endpoint: {exc}") from exc
    return ep.start()
