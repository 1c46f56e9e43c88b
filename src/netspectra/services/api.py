"""The query service hosted in a stack: :class:`~netspectra.api.server.ApiServer` (gRPC + HTTP, in
threads) as a :class:`~netspectra.services.base.Service`, with its request metrics and readiness.

``netspectra up`` runs it in the engine's process: with the embedded ClickHouse (chdb) the writers and
the queries must share the one session of the process. Listen addresses are ``api.grpc_listen_addr``
and ``api.http_listen_addr`` of the configuration unless given.
"""

from __future__ import annotations

import threading
from typing import Any

from netspectra.services.base import Section, Service, ServiceError

__all__ = ["ApiService", "url_host"]


def url_host(addr: str) -> str:
    """The host to put in a URL for a server listening on ``addr`` (all interfaces: 127.0.0.1)."""
    host = addr.rpartition(":")[0].strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class ApiService(Service):
    """The query service (see the module docstring)."""

    name = "api"
    stop_timeout_s = 15.0

    def __init__(self, cfg: Any, grpc_addr: str | None = None, http_addr: str | None = None) -> None:
        self.cfg = cfg
        self.grpc_addr = grpc_addr
        self.http_addr = http_addr
        self.server: Any = None
        self._ep: Any = None
        self.error = None

    def wire_ops(self, ep: Any) -> None:
        self._ep = ep
        # not ready before it serves (start() puts the real check in its place)
        ep.check("store", lambda: "the query service is not started yet")

    def start(self, cancel: threading.Event | None = None) -> None:
        from netspectra.api.server import ApiServer
        from netspectra.config import ConfigError
        from netspectra.ops.grpcmetrics import GrpcMetrics
        from netspectra.ops.httpmetrics import HttpMetrics
        from netspectra.ops.services import wire_api
        from netspectra.storage.clickhouse import StorageError

        ep = self._ep
        http_metrics = HttpMetrics() if ep is not None else None
        grpc_metrics = GrpcMetrics() if ep is not None else None
        try:
            self.server = ApiServer(self.cfg, self.grpc_addr, self.http_addr, http_metrics, grpc_metrics)
            self.server.start()
        except (ConfigError, StorageError, OSError, ValueError) as exc:
            raise ServiceError(str(exc)) from None
        if ep is not None:
            wire_api(ep, self.server.core, http_metrics, grpc_metrics)

    @property
    def http_url(self) -> str:
        s = self.server
        return f"http://{url_host(s.http_addr)}:{s.http_port}/" if s is not None else ""

    @property
    def grpc_target(self) -> str:
        s = self.server
        return f"{url_host(s.grpc_addr)}:{s.grpc_port}" if s is not None else ""

    def stop(self, timeout_s: float | None = None) -> None:
        if self.server is not None:
            budget = self.stop_timeout_s if timeout_s is None else timeout_s
            stopper = threading.Thread(
                target=self.server.stop, args=(max(1.0, (budget - 5) / 2),), name="ns-api-stop", daemon=True
            )
            stopper.start()
            stopper.join(budget)

    def report(self) -> list[Section]:
        if self.server is None:
            return []
        return [("Query service", [("HTTP", self.http_url), ("gRPC", self.grpc_target)])]
