"""Readiness of the query service against a real ClickHouse server (Debian's clickhouse-server 18.16 in CI).

``/readyz`` and ``netspectra_ready`` read the answer of a background check (a ping on a connection of its
own), so they answer at once while a long query holds the store's connection, and the ping itself goes
on succeeding meanwhile.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ClickHouseServer, unique_database
from netspectra.api import QueryCore
from netspectra.config import load_config
from netspectra.ops.endpoint import start_ops
from netspectra.ops.httpmetrics import HttpMetrics
from netspectra.ops.services import wire_api
from netspectra.storage.base import StorageError

pytestmark = pytest.mark.timeout(120)

#: Holds the store's connection (and lock) for about 4 s on 18.16 and current servers.
LONG_QUERY = "SELECT sleepEachRow(0.5) FROM numbers(8) SETTINGS max_block_size = 1"


def timed_get(port: int, path: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            code, body = r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read().decode()
    return code, body, time.monotonic() - t0


def ready_gauge(body: str) -> float:
    for fam in text_string_to_metric_families(body):
        if fam.name == "netspectra_ready":
            return fam.samples[0].value
    raise AssertionError("no netspectra_ready in /metrics")


def test_readiness_answers_at_once_while_a_long_query_runs(
    clickhouse_server: ClickHouseServer, tmp_path: Path
) -> None:
    cfg_path = tmp_path / "api.yaml"
    cfg_path.write_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks: [{name: five, key_fields: [SrcIP]}]\n"
        "    writers: [{type: clickhouse, enabled: true, clickhouse: "
        f"{{host: '127.0.0.1', port: {clickhouse_server.tcp_port}, database: {unique_database()}}}}}]\n"
    )
    core = QueryCore(load_config(cfg_path))
    ep = start_ops("api", "127.0.0.1:0")
    assert ep is not None
    try:
        wire_api(ep, core, HttpMetrics(), interval_s=0.2)
        # the background check opens the store (the API opens it lazily) and then pings it
        deadline = time.monotonic() + 60
        while timed_get(ep.port, "/readyz")[0] != 200:
            assert time.monotonic() < deadline, timed_get(ep.port, "/readyz")[1]
            time.sleep(0.1)
        store = core.router.group_store("exact")
        errors: list[BaseException] = []

        def long_query() -> None:
            try:
                store.query(LONG_QUERY)
            except StorageError as exc:  # pragma: no cover - reported below
                errors.append(exc)

        worker = threading.Thread(target=long_query)
        started = time.monotonic()
        worker.start()
        time.sleep(0.3)
        for _ in range(2):  # the cached answer, then (after more than an interval) a fresh ping's
            code, body, took = timed_get(ep.port, "/readyz")
            assert code == 200 and took < 1.0, (code, body, took)
            code, body, took = timed_get(ep.port, "/metrics")
            assert code == 200 and took < 1.0 and ready_gauge(body) == 1.0, took
            time.sleep(1.0)
        assert worker.is_alive() and time.monotonic() - started < 3.5, "the long query ended too early"
        worker.join(30)
        assert not errors
    finally:
        ep.stop()
        core.close()


def test_an_unreachable_store_is_not_ready_without_blocking_a_scrape(tmp_path: Path) -> None:
    from netspectra.transport.natsserver import free_port

    cfg_path = tmp_path / "api.yaml"
    cfg_path.write_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks: [{name: five, key_fields: [SrcIP]}]\n"
        "    writers: [{type: clickhouse, enabled: true, clickhouse: "
        f"{{host: '127.0.0.1', port: {free_port()}, database: nothing}}}}]\n"
    )
    core = QueryCore(load_config(cfg_path))
    ep = start_ops("api", "127.0.0.1:0")
    assert ep is not None
    try:
        wire_api(ep, core, HttpMetrics(), interval_s=0.2)
        deadline = time.monotonic() + 30
        while True:
            code, body, took = timed_get(ep.port, "/readyz")
            assert code == 503 and took < 1.0, (code, body, took)
            if "exact store" in body:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
    finally:
        ep.stop()
        core.close()
