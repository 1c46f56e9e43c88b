"""Readiness checks that never block a scrape, engine readiness, bounded HTTP labels, the ops server's
socket timeout and JSON logs of uvicorn and of Python warnings."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
import urllib.request
import warnings
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from netspectra.engine.resilient import ResilientWriter
from netspectra.ops import server as ops_server
from netspectra.ops.endpoint import BackgroundCheck, OpsEndpoint
from netspectra.ops.httpmetrics import HttpMetrics, install, method_label
from netspectra.ops.logs import configure_logging
from netspectra.ops.services import WRITER_FAILURES_NOT_READY, EngineOps, writers_open


def _get(port: int, path: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            code, body = r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read().decode()
    return code, body, time.monotonic() - t0


# --------------------------------------------------------------------------------------------------
# Background checks
# --------------------------------------------------------------------------------------------------


def test_a_blocking_check_never_blocks_readyz_or_metrics() -> None:
    release = threading.Event()
    calls = []

    def slow() -> str | None:
        calls.append(time.monotonic())
        release.wait(30)  # e.g. a store behind a long query, a network timeout
        return None

    ep = OpsEndpoint("api", "127.0.0.1", 0).start()
    try:
        ep.check("store", slow, background=True, interval_s=0.05, timeout_s=0.5)
        code, body, took = _get(ep.port, "/readyz")
        assert code == 503 and took < 1.0
        assert json.loads(body)["checks"]["store"] in ("not checked yet",)
        time.sleep(0.8)  # the run hangs longer than its timeout: not ready, and said so
        code, body, took = _get(ep.port, "/readyz")
        assert code == 503 and took < 1.0 and "no answer for" in json.loads(body)["checks"]["store"]
        code, body, took = _get(ep.port, "/metrics")
        assert code == 200 and took < 1.0
        ready = [f for f in text_string_to_metric_families(body) if f.name == "netspectra_ready"]
        assert ready[0].samples[0].value == 0
        release.set()
        deadline = time.monotonic() + 5
        while _get(ep.port, "/readyz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        while len(calls) < 3:  # re-run every interval
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        release.set()
        ep.stop()


def test_background_check_reports_exceptions_and_stops() -> None:
    check = BackgroundCheck("boom", lambda: 1 / 0, interval_s=0.01)  # type: ignore[arg-type,return-value]
    deadline = time.monotonic() + 5
    while check() == "not checked yet":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert "ZeroDivisionError" in str(check())
    check.stop()
    check._thread.join(2)
    assert not check._thread.is_alive()


# --------------------------------------------------------------------------------------------------
# Engine readiness: NATS connected, writers working
# --------------------------------------------------------------------------------------------------


class _Writer:
    def __init__(self, name: str, opened: bool = True, failures: int = 0) -> None:
        self.name = name
        self.metrics = SimpleNamespace(opened=opened)
        self.failures_in_row = failures


def test_engine_is_not_ready_while_nats_is_disconnected_or_a_writer_keeps_failing() -> None:
    from netspectra.engine.metrics import EngineMetrics

    writers = [_Writer("exact/clickhouse[0]")]
    manager = SimpleNamespace(metrics=EngineMetrics(), writers=writers)
    ep = OpsEndpoint("engine", "127.0.0.1", 0)
    try:
        ops = EngineOps(ep, manager)
        consumer = SimpleNamespace(ready=threading.Event(), is_connected=True, stats=None)
        ops.set_consumer(consumer)
        assert ep.ready()[1]["nats"] == "not subscribed to NATS yet"
        consumer.ready.set()
        assert ep.ready() == (True, {"nats": "ok", "writers": "ok"})
        consumer.is_connected = False  # the client lost the server and reconnects
        ok, checks = ep.ready()
        assert not ok and "not connected to NATS" in checks["nats"]
        consumer.is_connected = True
        writers[0].failures_in_row = WRITER_FAILURES_NOT_READY - 1
        assert ep.ready()[0]
        writers[0].failures_in_row = WRITER_FAILURES_NOT_READY
        ok, checks = ep.ready()
        assert not ok and f"failing ({WRITER_FAILURES_NOT_READY} failed attempts" in checks["writers"]
        writers[0].failures_in_row = 0
        writers[0].metrics.opened = False
        assert "exact/clickhouse[0] not open" in str(writers_open(manager))
    finally:
        ep.stop()


def test_resilient_writer_exposes_its_failures_in_a_row() -> None:
    class Flaky:
        fail = 3

        def open(self) -> None:
            pass

        def close(self) -> None:
            pass

        def write_flows(self, snap: Any, meta: Any) -> None:
            if Flaky.fail:
                Flaky.fail -= 1
                raise RuntimeError("down")

    rw = ResilientWriter(Flaky(), name="w", backoff_initial_s=0.01, backoff_max_s=0.01)
    assert rw.failures_in_row == 0
    rw.open()
    rw.write_flows(object(), SimpleNamespace(final=False, period_start_ns=0))
    deadline = time.monotonic() + 5
    seen = 0
    while rw.metrics.written.value < 1:
        seen = max(seen, rw.failures_in_row)
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert seen >= 1 and rw.failures_in_row == 0
    rw.close()


def test_stream_consumer_is_connected_follows_its_client() -> None:
    from netspectra.engine.stream import StreamConsumer, StreamOptions

    c = StreamConsumer(SimpleNamespace(), StreamOptions(url="nats://127.0.0.1:1", subject="x"))  # type: ignore[arg-type]
    assert c.is_connected is False
    c._nc = SimpleNamespace(is_connected=True)
    assert c.is_connected is True
    c._nc.is_connected = False
    assert c.is_connected is False


# --------------------------------------------------------------------------------------------------
# HTTP metrics: bounded method label
# --------------------------------------------------------------------------------------------------


def test_http_method_label_is_bounded() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    assert method_label("get") == "GET" and method_label("PATCH") == "PATCH"
    assert method_label("M0XYZ") == "other" and method_label("") == "other"
    app = FastAPI()

    @app.get("/api/v1/x")
    def x() -> dict[str, str]:
        return {}

    metrics = HttpMetrics()
    install(app, metrics)
    client = TestClient(app)
    for i in range(5):
        client.request(f"M{i}XYZ", "/api/v1/x")
        client.request(f"Q{i}", f"/nope/{i}")
    client.get("/api/v1/x")
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics)
    methods = set()
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            if "method" in s.labels:
                methods.add(s.labels["method"])
    assert methods == {"GET", "other"}


# --------------------------------------------------------------------------------------------------
# Ops server: idle connections time out
# --------------------------------------------------------------------------------------------------


def test_idle_connections_are_closed_after_the_handler_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ops_server.HANDLER_TIMEOUT_S == 10.0
    monkeypatch.setattr(ops_server, "HANDLER_TIMEOUT_S", 0.3)
    ep = OpsEndpoint("engine", "127.0.0.1", 0).start()
    try:
        for payload in (b"", b"GET /metrics HTTP/1.1\r\nHost: x\r\n"):  # silent, then a half-sent request
            with socket.create_connection(("127.0.0.1", ep.port), timeout=5) as s:
                s.sendall(payload)
                t0 = time.monotonic()
                while s.recv(4096):  # until the server closes the connection
                    pass
                assert time.monotonic() - t0 < 3.0
        # a keep-alive client that goes quiet after a request is dropped too
        with socket.create_connection(("127.0.0.1", ep.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            t0 = time.monotonic()
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            assert data.startswith(b"HTTP/1.1 200") and time.monotonic() - t0 < 3.0
        assert _get(ep.port, "/healthz")[0] == 200
    finally:
        ep.stop()


# --------------------------------------------------------------------------------------------------
# JSON logs: uvicorn and warnings through the root handlers
# --------------------------------------------------------------------------------------------------


def test_uvicorn_and_warnings_log_as_json() -> None:
    import uvicorn

    from netspectra.api.server import ApiServer
    from netspectra.config.models import Config

    uvicorn.Config(lambda *a: None, log_level="warning", lifespan="off")  # what an earlier default did
    stream = io.StringIO()
    configure_logging(logging.INFO, "json", text_handler=logging.NullHandler(), stream=stream)
    server = ApiServer(Config(), "127.0.0.1:0", "127.0.0.1:0")
    try:
        server.start()
        logging.getLogger("uvicorn.error").error("Exception in ASGI application\nTraceback ...")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a deprecated thing", DeprecationWarning, stacklevel=1)
    finally:
        server.stop(0)
        logging.captureWarnings(False)
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]  # every line is JSON
    assert any(r["logger"] == "uvicorn.error" and "Exception in ASGI" in r["message"] for r in lines)
    assert any(r["logger"] == "py.warnings" and "a deprecated thing" in r["message"] for r in lines)
