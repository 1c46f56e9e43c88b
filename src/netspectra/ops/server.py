"""The ops HTTP server: ``GET /metrics``, ``/healthz``, ``/readyz`` (stdlib, in a daemon thread).

Contract: :meth:`OpsServer.start` binds (``OSError`` when the address is taken or invalid) and serves
in a daemon thread, one thread per request, so a slow scrape never blocks a service and the server
never keeps a process alive. Handlers never raise to the client: a failing collector or check gives
a 500/503 with the reason, and is logged. A connection idle for :data:`HANDLER_TIMEOUT_S` (a
keep-alive client that sends nothing, a half-sent request) is closed, so it cannot hold a thread.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

__all__ = ["HANDLER_TIMEOUT_S", "OpsServer"]

#: Seconds a connection may stay silent (reading a request, or between keep-alive requests).
HANDLER_TIMEOUT_S = 10.0

#: ``() -> (ok, details)``: details is JSON-able and goes into the response body.
Probe = Callable[[], tuple[bool, dict[str, Any]]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class OpsServer:
    """Serves ``registry`` at ``/metrics``, ``alive`` at ``/healthz`` and ``ready`` at ``/readyz``.

    ``/healthz`` and ``/readyz`` answer 200 when their probe says ok, else 503, with a JSON body
    ``{"status": "ok"|"unavailable", ...details}``. ``host`` may be an IPv6 address.
    """

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, *, alive: Probe, ready: Probe
    ) -> None:
        self.registry = registry
        self._alive = alive
        self._ready = ready
        handler = _make_handler(self)
        server_cls = _Server
        if ":" in host:
            server_cls = type("_Server6", (_Server,), {"address_family": socket.AF_INET6})
        self._httpd = server_cls((host, port), handler)
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve in a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="ns-ops", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    # -- request handling ----------------------------------------------------------------------------

    def metrics_body(self) -> bytes:
        return generate_latest(self.registry)

    def probe(self, which: str) -> tuple[int, dict[str, Any]]:
        fn = self._alive if which == "healthz" else self._ready
        try:
            ok, details = fn()
        except Exception as exc:  # a broken check is "not ok", never a crash of the server
            log.exception("ops: /%s check failed", which)
            ok, details = False, {"error": f"{type(exc).__name__}: {exc}"}
        return (200 if ok else 503), {"status": "ok" if ok else "unavailable", **details}


def _make_handler(ops: OpsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "netspectra-ops"
        protocol_version = "HTTP/1.1"
        timeout = HANDLER_TIMEOUT_S  # socket timeout: an idle or slow client is dropped, not waited for

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                try:
                    body = ops.metrics_body()
                except Exception as exc:
                    log.exception("ops: collecting metrics failed")
                    self._send(
                        500, "text/plain; charset=utf-8", f"collecting metrics failed: {exc}\n".encode()
                    )
                    return
                self._send(200, CONTENT_TYPE_LATEST, body)
            elif path in ("/healthz", "/readyz"):
                code, doc = ops.probe(path[1:])
                self._send(code, "application/json", (json.dumps(doc, default=str) + "\n").encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /readyz\n")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("ops: %s " + format, self.address_string(), *args)

    return Handler
