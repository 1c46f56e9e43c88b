"""The alert history: a real Alerter on a real engine run writes through :class:`AlertStoreSink` into
ClickHouse (embedded chdb and the 18.16 server), read back by :func:`alerts`, Grafana ``/annotations`` and
``/api/v1/alerts``; with the AI analysis on (the AI gRPC service in front of a local chat-completions
server), the analysis text is stored with the alert (migration 6) and served by ``/api/v1/alerts``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netspectra.ai.service import serve
from netspectra.alerting import attach_alerter
from netspectra.alerting.alerter import Alerter, AlertRecord
from netspectra.api.grpc_service import QueryCore
from netspectra.capture.reader import read_captures
from netspectra.config import Config, parse_config_text
from netspectra.config.models import AiConfig
from netspectra.engine.manager import Manager, ManualClock
from netspectra.storage.alerts import AlertStoreSink, alert_sink_for, alerts
from netspectra.storage.clickhouse import connect_store
from netspectra.storage.clickhouse_config import ClickHouseConfig

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient

from netspectra.api.http_app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"
T0_S = 1_704_067_200  # 2024-01-01T00:00:00Z
CHECK1_NS = (T0_S + 10) * 10**9  # the explicit check
FINAL_NS = (T0_S + 20) * 10**9  # the final check at stop
SQL_NAME = "x'); DROP TABLE alerts; -- \\ `y` %(start)s"


def config_text(clickhouse: dict[str, object], ai_port: int | None = None) -> str:
    ch = json.dumps(clickhouse)
    ai = (
        f'  ai_analysis: {{enabled: true, service_addr: "127.0.0.1:{ai_port}", timeout: 30s}}\n'
        if ai_port is not None
        else ""
    )
    writer = f"[{{type: clickhouse, enabled: true, snapshot_interval: 3600s, clickhouse: {ch}}}]"
    return (
        "aggregator:\n  types: [exact]\n  num_workers: 2\n"
        f"  exact:\n    writers: {writer}\n"
        "    tasks:\n      - {name: per_src, key_fields: [SrcIP]}\n"
        f"alerter:\n  enabled: true\n  check_interval: 3600s\n{ai}  rules:\n"
        "    - {name: bytes_over_1k, task_name: per_src, metric: total_bytes, operator: '>',"
        " threshold: 1000}\n"
        f"    - {{name: {json.dumps(SQL_NAME)}, task_name: per_src, metric: total_packets, operator: '>=',"
        " threshold: 1}\n"
    )


@dataclass
class Run:
    cfg: Config
    alerter: Alerter
    sink: AlertStoreSink
    records: list[AlertRecord]


def run_chain(clickhouse: dict[str, object], ai_port: int | None = None) -> Run:
    """The capture through the engine with the alerter: a check at T0+10 s, the final one at T0+20 s (with
    the AI analysis of the service on ``ai_port`` when given)."""
    cfg = parse_config_text(config_text(clickhouse, ai_port))
    clock = ManualClock(T0_S * 10**9)
    manager = Manager.from_config(cfg, clock=clock)
    sink = alert_sink_for(cfg)
    assert sink is not None
    alerter = attach_alerter(manager, cfg, sink=sink, cooldown=0)
    assert alerter is not None
    manager.start()
    try:
        for batch in read_captures([CAPTURE]):
            manager.submit(batch)
        assert manager.flush(60)
        clock.advance(10)
        first = alerter.check()
        assert first is not None
        clock.advance(10)
    finally:
        manager.stop()  # final check (cooldown 0: notifies again), then the sink is closed
    records = list(alerter.history)
    assert [r.time_ns for r in records] == [CHECK1_NS, FINAL_NS]
    assert sink.failed == 0 and sink.written == 4
    return Run(cfg, alerter, sink, records)


@pytest.fixture(scope="module")
def chdb_run(chdb_data_dir: Path) -> Run:
    db = f"ns_alerts_{uuid.uuid4().hex[:10]}"
    return run_chain({"data_dir": str(chdb_data_dir), "database": db})


@pytest.fixture(scope="module")
def server_run(clickhouse_server: Any) -> Run:
    return run_chain(clickhouse_server.config())


def observed(run: Run) -> dict[str, float]:
    rec = run.records[0]
    return {r.rule.name: float(r.value) for a in rec.alerts for r in a.results if r.value is not None}


def check_alerts_query(run: Run) -> None:
    store = connect_store(run.cfg.aggregator.exact.writers[0].params)
    try:
        rows = alerts(store)
        assert len(rows) == 4
        assert [r.time_ns for r in rows] == [FINAL_NS, FINAL_NS, CHECK1_NS, CHECK1_NS]  # newest first
        values = observed(run)
        assert values["bytes_over_1k"] > 1000 and values[SQL_NAME] >= 1
        for r in rows:
            assert r.task == "per_src" and r.flow is None
            assert r.rule in (SQL_NAME, "bytes_over_1k")  # stored and read back unchanged
            assert r.value == values[r.rule]
            assert (r.metric, r.operator, r.threshold) == (
                ("total_bytes", ">", 1000.0) if r.rule == "bytes_over_1k" else ("total_packets", ">=", 1.0)
            )
            assert r.subject == "NetSpectra Alert Summary (1 Triggered)"
            assert r.delivered == ("log",) and r.failed == {} and r.ai_status == "disabled"
            assert r.ai_analysis == ""  # no analysis: AI off
            assert r.final == (r.time_ns == FINAL_NS)
        # time ranges (inclusive bounds), task filter, limit
        assert {r.time_ns for r in alerts(store, start_ns=CHECK1_NS + 1)} == {FINAL_NS}
        assert {r.time_ns for r in alerts(store, end_ns=FINAL_NS - 1)} == {CHECK1_NS}
        assert len(alerts(store, start_ns=CHECK1_NS, end_ns=CHECK1_NS)) == 2
        assert alerts(store, start_ns=FINAL_NS + 1) == []
        assert alerts(store, task="per_src'; --") == [] and len(alerts(store, task="per_src")) == 4
        assert len(alerts(store, limit=1)) == 1
        with pytest.raises(ValueError):
            alerts(store, start_ns=FINAL_NS, end_ns=CHECK1_NS)
    finally:
        store.close()


def test_alerts_written_by_a_real_alerter_chdb(chdb_run: Run) -> None:
    check_alerts_query(chdb_run)


def test_alerts_written_by_a_real_alerter_clickhouse_server(server_run: Run) -> None:
    check_alerts_query(server_run)


@pytest.fixture(scope="module")
def http(chdb_run: Run) -> Iterator[TestClient]:
    core = QueryCore(chdb_run.cfg)
    try:
        with TestClient(create_app(core), raise_server_exceptions=False) as client:
            yield client
    finally:
        core.close()


def test_grafana_annotations(http: TestClient, chdb_run: Run) -> None:
    rng = {"from": "2024-01-01T00:00:05Z", "to": "2024-01-01T00:00:15Z"}
    source = {"name": "alerts", "enable": True}
    got = http.post("/annotations", json={"range": rng, "annotation": source}).json()
    assert len(got) == 2
    assert {a["time"] for a in got} == {CHECK1_NS // 10**6}
    assert {a["title"] for a in got} == {"Alert: bytes_over_1k", f"Alert: {SQL_NAME}"}
    for a in got:
        assert a["annotation"] == source
        assert a["tags"][:3] == ["netspectra", "alert", "per_src"]
        assert "Delivered: log" in a["text"] and "&lt;" not in a["text"]
    # the whole capture's range: both checks; epoch-ms bounds work too
    everything = {"from": T0_S * 1000, "to": (T0_S + 60) * 1000}
    assert len(http.post("/annotations", json={"range": everything}).json()) == 4
    # annotation.query names a task
    other = {"range": everything, "annotation": {"query": "other"}}
    assert http.post("/annotations", json=other).json() == []
    assert http.post("/annotations", json={"range": {"from": "2023-01-01", "to": "2023-01-02"}}).json() == []
    bad = http.post("/annotations", json={"range": {"from": "2024-01-02", "to": "2024-01-01"}})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID_ARGUMENT"


def test_rest_alerts(http: TestClient, chdb_run: Run) -> None:
    got = http.get("/api/v1/alerts").json()["alerts"]
    assert len(got) == 4 and got[0]["timeNs"] == str(FINAL_NS) and got[0]["final"] is True
    names = {a["rule"] for a in got}
    assert names == {"bytes_over_1k", SQL_NAME}
    one = http.get(
        "/api/v1/alerts",
        params={"start": "2024-01-01T00:00:05Z", "end": str((T0_S + 15) * 1000), "task": "per_src"},
    ).json()["alerts"]
    assert {a["timeNs"] for a in one} == {str(CHECK1_NS)} and len(one) == 2
    assert all(a["delivered"] == ["log"] and a["aiStatus"] == "disabled" for a in one)
    posted = http.post("/api/v1/alerts", json={"start": "2024-01-01T00:00:15Z", "limit": 1}).json()
    assert len(posted["alerts"]) == 1 and posted["alerts"][0]["timeNs"] == str(FINAL_NS)
    assert http.get("/api/v1/alerts", params={"task": "nope"}).json() == {"alerts": []}
    for bad in ({"limit": "0"}, {"limit": "x"}, {"start": "yesterday"}):
        r = http.get("/api/v1/alerts", params=bad)
        assert r.status_code == 400 and r.json()["code"] == "INVALID_ARGUMENT"
    r = http.post("/api/v1/alerts", json={"since": 1})
    assert r.status_code == 400


def test_sink_failures_are_logged_and_counted(caplog: pytest.LogCaptureFixture, chdb_run: Run) -> None:
    """A store that cannot be reached: the alerter still notifies, the sink counts and logs the failure."""
    ch = ClickHouseConfig(host="127.0.0.1", port=1, database="nowhere")
    sink = AlertStoreSink(ch)
    rec = chdb_run.records[0]
    with caplog.at_level(logging.ERROR):
        sink(rec)
        sink(rec)
    assert sink.failed == 2 and sink.written == 0
    assert "not stored in ClickHouse" in caplog.text
    sink.close()


READ_ALERTS = """
import json, sys
from netspectra.config import load_config
from netspectra.storage.alerts import alerts
from netspectra.storage.clickhouse import connect_store
store = connect_store(load_config(sys.argv[1]).aggregator.exact.writers[0].params)
print(json.dumps([a.to_dict() for a in alerts(store)]))
"""


def test_analyze_store_keeps_the_alerts(tmp_path: Path) -> None:
    """The wiring of ``analyze --store``: the final check's alerts land in the writer's chdb store."""
    pytest.importorskip("chdb")
    conf = tmp_path / "c.yaml"
    conf.write_text(config_text({"data_dir": str(tmp_path / "chdb"), "database": "ns"}))
    cmd = [sys.executable, "-m", "netspectra", "analyze", str(CAPTURE), "-c", str(conf), "--store", "--json"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    read = [sys.executable, "-c", READ_ALERTS, str(conf)]
    out = subprocess.run(read, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert {a["rule"] for a in got} == {"bytes_over_1k", SQL_NAME}
    assert all(a["final"] and a["delivered"] == ["log"] for a in got)


# ---- the AI analysis stored with the alert (migration 6) ---------------------------------------------

AI_KEY = "sk-test-alert-store"
ANALYSIS = (
    "## Assessment\n\nOne source, `per_src`: **bytes** over 1 kB; O'Brien's \"quoted\" note -- kept as is."
)


@contextmanager
def ai_service() -> Iterator[tuple[FakeOpenAI, int]]:
    """A local chat-completions server and the AI gRPC service in front of it: (server, gRPC port)."""
    with FakeOpenAI(api_key=AI_KEY) as fake:
        fake.reply = ANALYSIS
        server, port = serve(
            AiConfig(api_key=AI_KEY, model="test-model", base_url=fake.base_url),
            addr="127.0.0.1:0",
            max_retries=0,
        )
        try:
            yield fake, port
        finally:
            server.stop(0)


def check_ai_analysis_stored(clickhouse: dict[str, object]) -> None:
    """Every alert row carries the analysis text the alert was sent with, through the store and the REST
    API (``aiAnalysis``), unchanged (quotes, markdown, newlines)."""
    with ai_service() as (fake, port):
        run = run_chain(clickhouse, port)
    assert len(fake.requests) == 2  # one analysis per notification: the check and the final one
    assert [r.ai_status for r in run.records] == ["ok", "ok"]
    assert [r.ai_analysis for r in run.records] == [ANALYSIS, ANALYSIS]
    store = connect_store(run.cfg.aggregator.exact.writers[0].params)
    try:
        rows = alerts(store)
        assert len(rows) == 4 and {(r.ai_status, r.ai_analysis) for r in rows} == {("ok", ANALYSIS)}
        assert {r.rule for r in rows} == {SQL_NAME, "bytes_over_1k"}
    finally:
        store.close()
    core = QueryCore(run.cfg)
    try:
        with TestClient(create_app(core), raise_server_exceptions=False) as client:
            got = client.get("/api/v1/alerts")
            assert got.status_code == 200, got.text
            docs = got.json()["alerts"]
            assert len(docs) == 4 and {(d["aiStatus"], d["aiAnalysis"]) for d in docs} == {("ok", ANALYSIS)}
    finally:
        core.close()


def test_ai_analysis_is_stored_chdb(chdb_data_dir: Path) -> None:
    check_ai_analysis_stored({"data_dir": str(chdb_data_dir), "database": f"ns_ai_{uuid.uuid4().hex[:10]}"})


def test_ai_analysis_is_stored_clickhouse_server(clickhouse_server: Any) -> None:
    check_ai_analysis_stored(clickhouse_server.config())


def check_migration_6(ch: dict[str, object]) -> None:
    """An ``alerts`` table of schema version 5 (no ``AiAnalysis``) with a row: migration 6 adds the column
    (the row reads ''), once; new alerts store their analysis there."""
    from dataclasses import replace as dc_replace

    from netspectra.storage.migrations import SCHEMA_TABLE, migrate, schema_table_sql
    from netspectra.storage.schema import ALERT_TABLE, TABLES
    from netspectra.storage.store import ClickHouseStore

    params = ClickHouseConfig.model_validate(ch)
    connect_store(params).close()  # every table of the newest schema, then back to version 5:
    store = ClickHouseStore(params)
    store.open()
    try:
        old = dc_replace(
            TABLES[ALERT_TABLE], columns=tuple(c for c in TABLES[ALERT_TABLE].columns if c[0] != "AiAnalysis")
        )
        store.execute(f"DROP TABLE {store.table(ALERT_TABLE)}")
        store.execute(old.create_sql(store.table(ALERT_TABLE)))
        store.execute(f"DROP TABLE {store.table(SCHEMA_TABLE)}")  # its versions 1 to 5 only
        store.execute(schema_table_sql(store.layout))
        store.execute(
            f"INSERT INTO {store.table(SCHEMA_TABLE)} (Version, AppliedAt, Description) "
            "SELECT toUInt32(number + 1), now(), 'v' FROM system.numbers LIMIT 5"
        )
        store.execute(
            f"INSERT INTO {store.table(ALERT_TABLE)} (TimestampNs, TaskName, RuleName, Metric, Operator, "
            "Threshold, Value, Flow, Subject, Delivered, Failed, AiStatus, Final) "
            "SELECT 7, 't', 'r', 'm', '>', 1, 2, NULL, 's', '[]', '{}', 'ok', 0"
        )
        report = migrate(store)
        assert report.applied == [6]
        assert [s.sql for s in report.steps if s.sql.startswith("ALTER")] == [
            f"ALTER TABLE {store.table(ALERT_TABLE)} ADD COLUMN AiAnalysis String AFTER AiStatus"
        ]
        (row,) = alerts(store)
        assert (row.time_ns, row.ai_status, row.ai_analysis) == (7, "ok", "")
        assert migrate(store).applied == []
    finally:
        store.close()


def test_migration_6_adds_the_analysis_column_chdb(chdb_data_dir: Path) -> None:
    check_migration_6({"data_dir": str(chdb_data_dir), "database": f"ns_m6_{uuid.uuid4().hex[:10]}"})


def test_migration_6_adds_the_analysis_column_clickhouse_server(clickhouse_server: Any) -> None:
    check_migration_6(clickhouse_server.config())
