"""The query service as one object: gRPC (``v1.QueryService`` + health + reflection) and HTTP (FastAPI on
uvicorn) over one :class:`~netspectra.api.QueryCore`, what ``netspectra api`` and ``netspectra up``
host (``docs/api.md``)."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

    from netspectra.config import Config

log = logging.getLogger(__name__)

__all__ = ["ApiServer"]


def _split_host_port(addr: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``:PORT`` (Go's form: every interface) → ``(host, port)``."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{addr!r} is not a listen address (host:port, or :port for every interface)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class ApiServer:
    """gRPC (``v1.QueryService`` + health + reflection) and HTTP (FastAPI on uvicorn) over one
    :class:`~netspectra.api.QueryCore`. :meth:`start` reads the tokens and TLS files of ``api.auth`` /
    ``api.tls`` (:class:`~netspectra.auth.SecurityConfigError`, a ``ValueError``, naming the key), binds
    both (``OSError`` if an address is taken) and serves in background threads; :meth:`stop` stops
    both. ``grpc_port``/``http_port`` are the bound ports (useful with port 0). ``http_metrics``
    (:class:`~netspectra.ops.httpmetrics.HttpMetrics`) counts and times the HTTP requests,
    ``grpc_metrics`` (:class:`~netspectra.ops.grpcmetrics.GrpcMetrics`) the gRPC calls. ``env``: where
    the token variables are read (default ``os.environ``)."""

    def __init__(
        self,
        cfg: Config,
        grpc_addr: str | None = None,
        http_addr: str | None = None,
        http_metrics: Any = None,
        grpc_metrics: Any = None,
        env: Any = None,
    ) -> None:
        from netspectra.api import QueryCore

        self.cfg = cfg
        self.http_metrics = http_metrics
        self.grpc_metrics = grpc_metrics
        self.grpc_addr = grpc_addr or cfg.api.grpc_listen_addr
        self.http_addr = http_addr or cfg.api.http_listen_addr
        self.env = env
        self.core = QueryCore(cfg)
        self.security: Any = None
        self.grpc_port = 0
        self.http_port = 0
        self._grpc: grpc.Server | None = None
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import uvicorn

        from netspectra.api.grpc_service import create_grpc_server
        from netspectra.api.http_app import create_app
        from netspectra.auth import ServiceSecurity
        from netspectra.rpc import warn_if_exposed

        self.security = security = ServiceSecurity.load(self.cfg.api.auth, self.cfg.api.tls, "api", self.env)
        host, port = _split_host_port(self.http_addr)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on the connections it accepts only when the
        # listening socket says TCP; without it every answer on a kept-alive connection waited ~40 ms for
        # the client's delayed ACK (headers and body are two writes; measured: 44 ms → 2 ms per request)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot listen on {self.http_addr!r} for HTTP: {exc}") from exc
        sock.listen(128)
        self.http_port = int(sock.getsockname()[1])
        try:
            icpt = [self.grpc_metrics.interceptor()] if self.grpc_metrics is not None else []
            server, self.grpc_port, _ = create_grpc_server(
                self.core, self.grpc_addr, interceptors=icpt, security=security
            )
        except OSError:
            sock.close()
            raise
        self._grpc = server
        server.start()
        # log_config=None: uvicorn's loggers propagate to our root handlers (--log-format json included)
        # instead of its own text handlers (also undo what an earlier default uvicorn.Config set up)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
        tls: dict[str, Any] = {}
        if security.tls is not None:
            tls = {"ssl_certfile": security.tls.cert_file, "ssl_keyfile": security.tls.key_file}
            if security.tls.mutual:
                tls |= {"ssl_ca_certs": security.tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
        config = uvicorn.Config(
            create_app(self.core, self.http_metrics, security.tokens),
            log_level="warning",
            lifespan="off",
            log_config=None,
            # no access log: it is off at this level anyway, and request lines must never reach the logs
            access_log=False,
            **tls,
        )
        self._uvicorn = uvicorn.Server(config)
        # uvicorn installs no signal handlers outside the main thread: `api` handles SIGINT/SIGTERM itself
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [sock]}, name="ns-http", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._uvicorn.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._uvicorn.started:
            self.stop(0)
            raise OSError(f"the HTTP server on {self.http_addr!r} did not start (see the log)")
        log.info(
            "query service: gRPC on %s (port %d), HTTP on %s (port %d); %s",
            self.grpc_addr,
            self.grpc_port,
            self.http_addr,
            self.http_port,
            security.describe(),
        )
        warn_if_exposed(self.grpc_addr, security, "the query service (gRPC)")
        warn_if_exposed(self.http_addr, security, "the query service (HTTP)")

    def stop(self, grace_s: float = 5.0) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(grace_s + 5)
        if self._grpc is not None:
            self._grpc.stop(grace_s).wait()
        self.core.close()
