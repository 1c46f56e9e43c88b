"""Request counters and latency of the gRPC services (query API, AI service), by a server interceptor.

``netspectra_grpc_requests_total{method, code}`` counts finished calls by full method name
(``/v1.QueryService/AggregateFlows``) and status code name (``OK``, ``INVALID_ARGUMENT``, …);
``netspectra_grpc_request_seconds{method}`` times them (for a server-streaming call, until the last
message was sent). The method set is the services' own, so the labels stay bounded; calls to methods
no service has are counted under ``other``. One observation per call, never per packet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from netspectra.counters import Timing
from netspectra.ops.collectors import histogram_buckets
from netspectra.ops.httpmetrics import HTTP_BUCKETS

__all__ = ["GrpcMetrics"]


def _code(context: grpc.ServicerContext, default: str) -> str:
    code = context.code() if hasattr(context, "code") else None
    if isinstance(code, grpc.StatusCode):
        return code.name
    return default


class GrpcMetrics(Collector):
    """The collector and (:meth:`interceptor`) the interceptor that feeds it; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._timings: dict[str, Timing] = {}

    def observe(self, method: str, code: str, seconds: float) -> None:
        with self._lock:
            self._counts[(method, code)] = self._counts.get((method, code), 0) + 1
            timing = self._timings.get(method)
            if timing is None:
                timing = self._timings[method] = Timing(HTTP_BUCKETS)
        timing.observe(seconds)

    def interceptor(self) -> grpc.ServerInterceptor:
        """A server interceptor observing every call into this collector."""
        return _Interceptor(self)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = sorted(self._counts.items())
            timings = sorted(self._timings.items())
        requests = CounterMetricFamily(
            "netspectra_grpc_requests",
            "gRPC calls finished, by full method name and status code.",
            labels=["method", "code"],
        )
        for labels, n in counts:
            requests.add_metric(list(labels), n)
        yield requests
        seconds = HistogramMetricFamily(
            "netspectra_grpc_request_seconds",
            "gRPC call duration (server side; streaming calls until their last message), by method.",
            labels=["method"],
        )
        for method, timing in timings:
            buckets, total = histogram_buckets(timing)
            seconds.add_metric([method], buckets, total)
        yield seconds


class _Interceptor(grpc.ServerInterceptor):
    def __init__(self, metrics: GrpcMetrics) -> None:
        self._metrics = metrics

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None:
            self._metrics.observe("other", grpc.StatusCode.UNIMPLEMENTED.name, 0.0)
            return None
        method = details.method
        observe = self._metrics.observe
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, method, observe),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, method, observe),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client-streaming methods: none in our services; passed through uncounted


def _unary(behavior: Callable[..., Any], method: str, observe: Callable[[str, str, float], None]) -> Any:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        t0 = time.perf_counter()
        failed = False
        try:
            return behavior(request, context)
        except BaseException:
            failed = True
            raise
        finally:
            observe(method, _code(context, "UNKNOWN" if failed else "OK"), time.perf_counter() - t0)

    return call


def _streaming(behavior: Callable[..., Any], method: str, observe: Callable[[str, str, float], None]) -> Any:
    def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        t0 = time.perf_counter()
        failed = False
        try:
            yield from behavior(request, context)
        except BaseException:
            failed = True
            raise
        finally:
            observe(method, _code(context, "UNKNOWN" if failed else "OK"), time.perf_counter() - t0)

    return call
