"""What every NetSpectra gRPC server shares: Go-style listen addresses, health and reflection, TLS,
bearer tokens, and undecodable requests answered as ``INVALID_ARGUMENT``.

Access (when the service has tokens, see :mod:`netspectra.auth`): the health checks
(:data:`OPEN_METHODS`) need no token; server reflection (:data:`ADMIN_PREFIXES`) needs an admin token
(it is a tool for operators; clients compile the ``.proto``); every other method a read token. A call
without a valid token ends ``UNAUTHENTICATED``, one with a read token on an admin method
``PERMISSION_DENIED``; neither reaches the service, nor is its request decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from netspectra.auth import (
    RefusalLog,
    Scope,
    ServiceSecurity,
    TokenSet,
    bearer_token,
    is_loopback_host,
)

log = logging.getLogger(__name__)

#: Methods any caller may use, with or without a token.
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
#: Methods (by prefix) that need the admin scope.
ADMIN_PREFIXES = ("/grpc.reflection.",)


def grpc_bind_address(addr: str) -> str:
    """Go-style listen address → gRPC's: ``:50051`` → ``[::]:50051`` (every interface); others unchanged."""
    return f"[::]{addr}" if addr.startswith(":") else addr


def listens_beyond_loopback(addr: str) -> bool:
    """Whether a listen address (``HOST:PORT``, ``[V6]:PORT`` or ``:PORT``) accepts other machines."""
    host = addr.rpartition(":")[0].strip("[]")
    return not is_loopback_host(host)


def warn_if_exposed(addr: str, security: ServiceSecurity, what: str) -> None:
    """Log a warning when ``addr`` is reachable from other machines and ``security`` has no tokens."""
    if security.tokens or not listens_beyond_loopback(addr):
        return
    log.warning(
        "%s listens on %s, reachable from other machines, without authentication: anyone who can reach it "
        "can read what it serves. Set tokens (docs/api.md#authentication-and-tls) or listen on 127.0.0.1",
        what,
        addr,
    )


class _Undecodable:
    """What a request that could not be decoded becomes (instead of the framework's ``INTERNAL``)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:
            return _Undecodable(type(exc).__name__)

    return decode


def _reject_undecodable(context: grpc.ServicerContext, request: Any, method: str) -> None:
    if isinstance(request, _Undecodable):
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid message for {method} ({request.reason}: malformed protobuf, or a "
            "string field that is not UTF-8)",
        )


def _checked_iterator(requests: Iterator[Any], context: grpc.ServicerContext, method: str) -> Iterator[Any]:
    for request in requests:
        _reject_undecodable(context, request, method)
        yield request


class DecodeInterceptor(grpc.ServerInterceptor):
    """Requests the service's messages cannot be decoded from (bad protobuf, strings that are not UTF-8)
    end ``INVALID_ARGUMENT`` with one line, instead of gRPC's ``INTERNAL`` "Exception deserializing
    request!"."""

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = details.method
        decode = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                _reject_undecodable(context, request, method)
                return inner_uu(request, context)

            return handler._replace(request_deserializer=decode, unary_unary=unary_unary)
        if handler.unary_stream is not None:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Any:
                _reject_undecodable(context, request, method)
                yield from inner_us(request, context)

            return handler._replace(request_deserializer=decode, unary_stream=unary_stream)
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            def stream_unary(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                return inner_su(_checked_iterator(requests, context, method), context)

            return handler._replace(request_deserializer=decode, stream_unary=stream_unary)
        inner_ss = handler.stream_stream

        def stream_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            yield from inner_ss(_checked_iterator(requests, context, method), context)

        return handler._replace(request_deserializer=decode, stream_stream=stream_stream)


def needed_scope(method: str) -> Scope | None:
    """The scope a gRPC method needs (``None``: open to every caller)."""
    if method in OPEN_METHODS:
        return None
    return Scope.ADMIN if method.startswith(ADMIN_PREFIXES) else Scope.READ


class TokenInterceptor(grpc.ServerInterceptor):
    """Checks the ``authorization: Bearer <token>`` metadata of every call against ``tokens`` (see the
    module docstring for which method needs which scope). Refused calls are logged without the token,
    rate-limited."""

    def __init__(self, tokens: TokenSet, service: str, extra_open: Sequence[str] = ()) -> None:
        self.tokens = tokens
        self.service = service
        self.extra_open = frozenset(extra_open)
        self._log = RefusalLog(log)

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        method = details.method
        need = None if method in self.extra_open else needed_scope(method)
        if need is None:
            return continuation(details)
        header = next((v for k, v in details.invocation_metadata or () if k == "authorization"), None)
        token = bearer_token(header if isinstance(header, str) else None)
        scope = self.tokens.scope_of(token)
        if scope is not None and scope >= need:
            return continuation(details)
        handler = continuation(details)
        if handler is None:
            return None
        if scope is None:
            code = grpc.StatusCode.UNAUTHENTICATED
            reason = "invalid bearer token" if token else "no bearer token"
            message = (
                f"{reason}: send the metadata 'authorization: Bearer <token>' with a token of {self.service}"
            )
        else:
            code = grpc.StatusCode.PERMISSION_DENIED
            reason = "a read token on an admin method"
            message = f"{method} needs an admin token of {self.service}"
        return _refusal(handler, code, message, self._log, reason, method)


_REFUSED = object()


def _refusal(
    handler: Any, code: grpc.StatusCode, message: str, refusals: RefusalLog, reason: str, method: str
) -> Any:
    """A handler of ``handler``'s kind that ends the call with ``code``, without decoding the request."""

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        refusals.refused(f"gRPC {method}", context.peer(), reason)
        context.abort(code, message)

    def refuse_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        refuse(request, context)
        yield  # unreachable: abort raises

    ignore = lambda data: _REFUSED  # noqa: E731 - nothing of a refused request is decoded (None = failure)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(refuse, request_deserializer=ignore)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(refuse_stream, request_deserializer=ignore)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(refuse, request_deserializer=ignore)
    return grpc.stream_stream_rpc_method_handler(refuse_stream, request_deserializer=ignore)


def create_server(
    add_servicer: Callable[[grpc.Server], None],
    service_name: str,
    addr: str,
    *,
    max_workers: int = 16,
    thread_prefix: str = "ns-grpc",
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    security: ServiceSecurity | None = None,
    service_label: str = "",
    open_methods: Sequence[str] = (),
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A (not yet started) gRPC server with the service ``add_servicer`` registers (full name
    ``service_name``, e.g. ``v1.QueryService``), the standard health service (``""`` and ``service_name``
    SERVING) and server reflection, bound to ``addr`` (Go form ``:50051`` accepted; port 0 picks a free
    one). Returns ``(server, port, health_servicer)``; ``OSError`` when the address cannot be bound.

    ``interceptors`` see every call first (e.g. :meth:`netspectra.ops.grpcmetrics.GrpcMetrics.interceptor`,
    which then counts refused calls too); then tokens are checked (``security.tokens``; ``open_methods``
    are open like the health checks) and undecodable requests refused. ``security.tls``: TLS, mutual when
    it has client CAs."""
    security = security or ServiceSecurity()
    chain: list[grpc.ServerInterceptor] = list(interceptors)
    if security.tokens:
        chain.append(TokenInterceptor(security.tokens, service_label or service_name, open_methods))
    chain.append(DecodeInterceptor())
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_prefix),
        interceptors=chain,
        # gRPC sets SO_REUSEPORT by default: a second server on a port in use bound it too and the kernel
        # spread the connections over both (two `netspectra api` on one port answered from two stores)
        options=[("grpc.so_reuseport", 0)],
    )
    add_servicer(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", service_name):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    names = (
        service_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    bind = grpc_bind_address(addr)
    try:
        if security.tls is None:
            port = server.add_insecure_port(bind)
        else:
            creds = grpc.ssl_server_credentials(
                [(security.tls.private_key, security.tls.cert_chain)],
                root_certificates=security.tls.client_ca,
                require_client_auth=security.tls.mutual,
            )
            port = server.add_secure_port(bind, creds)
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {addr!r} for gRPC: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {addr!r} for gRPC")
    return server, port, health_servicer
