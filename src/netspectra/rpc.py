"""What every NetSpectra gRPC server shares: Go-style listen addresses, health and reflection."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection


def grpc_bind_address(addr: str) -> str:
    """Go-style listen address → gRPC's: ``:50051`` → ``[::]:50051``; others unchanged."""
    return f"[::]{addr}" if addr.startswith(":") else addr


def create_server(
    add_servicer: Callable[[grpc.Server], None],
    service_name: str,
    addr: str,
    *,
    max_workers: int = 16,
    thread_prefix: str = "ns-grpc",
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A (not yet started) gRPC server with the service ``add_servicer`` registers (full name
    ``service_name``, e.g. ``v1.QueryService``), the standard health service (``""`` and ``service_name``
    SERVING) and server reflection, bound to ``addr`` (Go form ``:50051`` accepted; port 0 picks a free
    one). Returns ``(server, port, health_servicer)``; ``OSError`` when the address cannot be bound.
    ``interceptors`` see every call (e.g. :meth:`netspectra.ops.grpcmetrics.GrpcMetrics.interceptor`)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_prefix),
        interceptors=list(interceptors),
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
    try:
        port = server.add_insecure_port(grpc_bind_address(addr))
    except RuntimeError as exc:
        raise OSError(f"cannot listen on {addr!r} for gRPC: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot listen on {addr!r} for gRPC")
    return server, port, health_servicer
