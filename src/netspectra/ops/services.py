"""What each service exports and when it is ready (``docs/operations.md``): the wiring the CLI calls.

* engine: :func:`wire_engine` — engine, writer, stream (and alerter, enrichment) series; ready while the NATS
  consumer is subscribed and connected and every writer is open and not failing
  (:data:`WRITER_FAILURES_NOT_READY` failed attempts in a row);
* probe: :func:`wire_probe` — probe, kernel and persistence series; ready while the NATS server
  answers and the probe has not finished;
* api: :func:`wire_api` — HTTP request series; ready while every configured store answers a ping
  (checked in a background thread every 2 s; scrapes read the cached answer).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from netspectra.ops.collectors import (
    AlerterCollector,
    EngineCollector,
    EnrichmentCollector,
    ProbeCollector,
    StreamCollector,
)
from netspectra.ops.endpoint import OpsEndpoint

__all__ = [
    "WRITER_FAILURES_NOT_READY",
    "EngineOps",
    "nats_reachable",
    "store_ready",
    "wire_api",
    "wire_engine",
    "wire_probe",
    "writers_open",
]


#: A writer with this many failed attempts in a row (open or write) is not ready.
WRITER_FAILURES_NOT_READY = 3


def writers_open(manager: Any) -> str | None:
    """Readiness check: ``None`` when every writer of ``manager`` is open and working, else which are
    not (not open, or :data:`WRITER_FAILURES_NOT_READY` or more failed attempts in a row)."""
    problems = []
    for rw in manager.writers:
        failures = int(getattr(rw, "failures_in_row", 0))
        if not rw.metrics.opened:
            problems.append(f"{rw.name} not open")
        elif failures >= WRITER_FAILURES_NOT_READY:
            problems.append(f"{rw.name} failing ({failures} failed attempts in a row)")
    return f"writer(s) not ready: {', '.join(problems)}" if problems else None


class EngineOps:
    """The engine's part of an endpoint; :meth:`set_consumer` once the NATS consumer exists."""

    def __init__(self, ep: OpsEndpoint, manager: Any, alerter: Any = None) -> None:
        self.ep = ep
        self.manager = manager
        self.consumer: Any = None
        ep.add(EngineCollector(manager.metrics))
        if getattr(manager, "enrichment", None) is not None:
            ep.add(EnrichmentCollector(manager.enrichment))
        ep.add(StreamCollector(lambda: self.consumer.stats if self.consumer is not None else None))
        if alerter is not None:
            ep.add(AlerterCollector(alerter))
        ep.check("nats", self._subscribed)
        ep.check("writers", lambda: writers_open(manager))

    def set_consumer(self, consumer: Any) -> None:
        self.consumer = consumer

    def _subscribed(self) -> str | None:
        c = self.consumer
        if c is None or not c.ready.is_set():
            return "not subscribed to NATS yet"
        if not getattr(c, "is_connected", True):
            return "not connected to NATS (reconnecting)"
        return None


def wire_engine(ep: OpsEndpoint | None, manager: Any, alerter: Any = None) -> EngineOps | None:
    """:class:`EngineOps` on ``ep`` (before ``manager.start()``), or ``None`` without an endpoint."""
    return EngineOps(ep, manager, alerter) if ep is not None else None


def nats_reachable(url: str, timeout_s: float = 1.0) -> Callable[[], str | None]:
    """Readiness check: the NATS server at ``url`` accepts a connection and greets with ``INFO``.

    The result is cached for 2 s, so frequent probes cost one connection every 2 s at most.
    """
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    host, port = parts.hostname or "127.0.0.1", parts.port or 4222
    lock = threading.Lock()
    cache: list[Any] = [0.0, "not checked yet"]

    def check() -> str | None:
        with lock:
            if time.monotonic() - cache[0] < 2.0:
                return cache[1]
            try:
                with socket.create_connection((host, port), timeout=timeout_s) as s:
                    s.settimeout(timeout_s)
                    greeting = s.recv(4)
                result = None if greeting == b"INFO" else f"{host}:{port} does not speak NATS"
            except OSError as exc:
                result = f"NATS at {host}:{port} unreachable: {exc}"
            cache[0], cache[1] = time.monotonic(), result
            return result

    return check


def wire_probe(
    ep: OpsEndpoint,
    url: str,
    publisher: Callable[[], Any],
    *,
    live: Callable[[], Any] | None = None,
    persister: Callable[[], Any] | None = None,
    meter: Any = None,
    finished: Callable[[], bool] = lambda: False,
    started: Callable[[], bool] = lambda: True,
) -> None:
    """The probe's series and readiness on ``ep`` (see :class:`ProbeCollector` for the getters): not
    ready before ``started()`` (kernels loaded, source open, publisher made) nor after ``finished()``."""
    ep.add(ProbeCollector(publisher, live=live, persister=persister, meter=meter))
    if url:  # empty: a probe that only captures (--no-publish)
        ep.check("nats", nats_reachable(url), background=True)

    def source() -> str | None:
        if not started():
            return "the probe is starting (loading its kernels, opening its source)"
        return "the probe has finished its input" if finished() else None

    ep.check("source", source)


def store_ready(core: Any, timeout_s: float = 2.0) -> Callable[[], str | None]:
    """Readiness check of the query service: every group with a ClickHouse writer has an open store whose
    server answers a ping (:meth:`~netspectra.storage.clickhouse.ClickHouseStore.ping`: a connection of
    its own with ``timeout_s``, so it never waits behind a running query).

    A store not open yet is opened here (connect and schema check, as the first query would): the API
    opens its stores lazily, so without this it would never become ready before its first request. The
    check may block: :func:`wire_api` runs it in a background thread, never at scrape time.
    """
    from netspectra.api.routing import first_clickhouse

    def check() -> str | None:
        groups = [g for g in ("exact", "sketch") if first_clickhouse(core.cfg, g) is not None]
        if not groups:
            return "no enabled clickhouse writer in aggregator.exact/sketch: nothing to query"
        problems = []
        for g in groups:
            try:
                core.router.group_store(g).ping(timeout_s)
            except Exception as exc:
                problems.append(f"{g} store: {type(exc).__name__}: {exc}")
        return "; ".join(problems) or None

    return check


def wire_api(
    ep: OpsEndpoint,
    core: Any,
    http_metrics: Any,
    grpc_metrics: Any = None,
    *,
    interval_s: float = 2.0,
    timeout_s: float = 10.0,
) -> None:
    """The API's series and readiness on ``ep``: every group with a ClickHouse store must answer
    (:func:`store_ready`, in a background thread every ``interval_s``; a run longer than ``timeout_s``,
    e.g. a store that takes that long to open, is not ready)."""
    ep.add(http_metrics)
    if grpc_metrics is not None:
        ep.add(grpc_metrics)
    ep.check("store", store_ready(core), background=True, interval_s=interval_s, timeout_s=timeout_s)
