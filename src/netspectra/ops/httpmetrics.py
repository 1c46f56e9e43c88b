"""Request counters and latency of the HTTP API (one observation per request, never per packet).

:class:`HttpMetrics` is a Prometheus collector; :func:`install` adds a middleware to a FastAPI app
that observes every request under its *route template* (``/api/v1/aggregate``, ``/static/{path}``;
``other`` for paths no route matches) and its method (one of :data:`HTTP_METHODS`, else ``other``), so
the label set stays bounded whatever clients send.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from netspectra.counters import Timing
from netspectra.ops.collectors import histogram_buckets

__all__ = ["HTTP_METHODS", "HttpMetrics", "install", "method_label"]

#: Request latencies: milliseconds (health, dashboard assets) to a minute (big queries).
HTTP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Methods kept as the ``method`` label; any other one is counted as ``other``.
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})


def method_label(method: str) -> str:
    """``method`` (upper-cased) if it is one of :data:`HTTP_METHODS`, else ``"other"``."""
    m = method.upper()
    return m if m in HTTP_METHODS else "other"


class HttpMetrics(Collector):
    """``netspectra_http_requests_total{method, route, status}`` and
    ``netspectra_http_request_seconds{method, route}``; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}
        self._timings: dict[tuple[str, str], Timing] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method_label(method)
        key = (method, route)
        with self._lock:
            ckey = (method, route, str(status))
            self._counts[ckey] = self._counts.get(ckey, 0) + 1
            timing = self._timings.get(key)
            if timing is None:
                timing = self._timings[key] = Timing(HTTP_BUCKETS)
        timing.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = sorted(self._counts.items())
            timings = sorted(self._timings.items())
        requests = CounterMetricFamily(
            "netspectra_http_requests",
            "HTTP API requests, by method, route template and status code.",
            labels=["method", "route", "status"],
        )
        for labels, n in counts:
            requests.add_metric(list(labels), n)
        yield requests
        seconds = HistogramMetricFamily(
            "netspectra_http_request_seconds",
            "HTTP API request duration (until the response headers), by method and route template.",
            labels=["method", "route"],
        )
        for (method, route), timing in timings:
            buckets, total = histogram_buckets(timing)
            seconds.add_metric([method, route], buckets, total)
        yield seconds


def install(app: Any, metrics: HttpMetrics) -> None:
    """Observe every request of the FastAPI/Starlette ``app`` into ``metrics``."""

    @app.middleware("http")
    async def _observe(request: Any, call_next: Any) -> Any:
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", None) or "other"
            if getattr(route, "path_format", None):
                template = route.path_format
            metrics.observe(request.method, template, status, time.perf_counter() - t0)
