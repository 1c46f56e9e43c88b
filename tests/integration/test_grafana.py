"""The provisioned Grafana assets (deploy/grafana) against the API over a store filled from a real capture.

The dashboard JSON is loaded and exactly the requests its panels make through the ``simpod-json-datasource``
plugin (``GET /`` for the data source test, ``POST /metrics`` for the target picker, one ``POST /query`` per
panel with its targets) are sent to the app; the answers must be non-empty and right: the series end at the
golden totals of ``gnutella.pcap`` (3882 packets, 577490 bytes, 937 five-tuple flows), the top-flows
table is the golden flows with the most bytes, the heavy-hitter and super-spreader tables are what
``QueryHeavyHitters`` answers. The store has the task names of ``configs/config.yaml`` (the dashboard's
targets), with thresholds low enough for this small capture to have hitters.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("fastapi", reason="the HTTP app needs fastapi (pip install fastapi uvicorn httpx)")
from fastapi.testclient import TestClient
from test_api import FLOWS, GOLDEN, T0_S, T2_NS, fill_store

from netspectra.api.grpc_service import QueryCore
from netspectra.api.http_app import create_app
from netspectra.config import load_config, parse_config_text

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "netspectra.json"
TOTALS = {"packets": GOLDEN["ip_packets"], "bytes": GOLDEN["ip_bytes"], "flows": GOLDEN["flows"]}
# what Grafana sends: ISO 8601 bounds (with "raw"), and the panel's width as maxDataPoints
RANGE = {
    "from": "2024-01-01T00:00:00.000Z",
    "to": "2024-01-01T01:00:00.000Z",
    "raw": {"from": "x", "to": "y"},
}


def store_config_text(data_dir: str, database: str) -> str:
    """The shipped configuration's tasks (``per_five_tuple``, ``ss_src_dst``, ``cm_src_left``) writing to
    embedded chdb, snapshots every 60 s kept at that resolution; low heavy-hitter thresholds."""
    ch = f"{{data_dir: {json.dumps(data_dir)}, database: {database}, history_resolution: 60s}}"
    writer = f"[{{type: clickhouse, enabled: true, snapshot_interval: 60s, clickhouse: {ch}}}]"
    return (
        "api: {grpc_listen_addr: '127.0.0.1:0', http_listen_addr: '127.0.0.1:0'}\n"
        "aggregator:\n  types: [exact, sketch]\n  num_workers: 2\n"
        f"  exact:\n    writers: {writer}\n"
        "    tasks:\n      - {name: per_five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}\n"
        f"  sketch:\n    writers: {writer}\n"
        "    tasks:\n      - {name: ss_src_dst, skt_type: 1, flow_fields: [SrcIP], element_fields: [DstIP],\n"
        "         width: 4096, depth: 2, count_thereshold: 5, m: 128, size: 5, b: 1.08, base: 0.5, seed: 3}\n"
        "      - {name: cm_src_left, skt_type: 0, flow_fields: [SrcIP], width: 4096, depth: 2,\n"
        "         size_thereshold: 1000, count_thereshold: 10, seed: 5}\n"
    )


def serve_store(chdb_data_dir: Path) -> Iterator[QueryCore]:
    """A :class:`QueryCore` over a store filled through the engine (two snapshots, see test_api)."""
    cfg = parse_config_text(store_config_text(str(chdb_data_dir), f"ns_graf_{uuid.uuid4().hex[:10]}"))
    fill_store(cfg)
    core = QueryCore(cfg)
    try:
        yield core
    finally:
        core.close()


@pytest.fixture(scope="module")
def http(chdb_data_dir: Path) -> Iterator[TestClient]:
    for core in serve_store(chdb_data_dir):
        with TestClient(create_app(core), raise_server_exceptions=False) as client:
            yield client


def panels() -> list[dict[str, Any]]:
    return json.loads(DASHBOARD.read_text())["panels"]


def panel_request(panel: dict[str, Any]) -> dict[str, Any]:
    """The body of the ``/query`` request Grafana sends for ``panel`` (simpod-json-datasource)."""
    return {
        "app": "dashboard",
        "panelId": panel["id"],
        "range": RANGE,
        "rangeRaw": RANGE["raw"],
        "interval": "2s",
        "intervalMs": 2000,
        "maxDataPoints": 1200,
        "targets": [{k: v for k, v in t.items() if k != "datasource"} for t in panel["targets"]],
        "adhocFilters": [],
        "scopedVars": {},
    }


def golden_top(n: int) -> list[tuple[int, int]]:
    """(bytes, packets) of the ``n`` golden flows with the most bytes."""
    return sorted(((int(r["ByteCount"]), int(r["PacketCount"])) for r in FLOWS), reverse=True)[:n]


def test_provisioning_files() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "netspectra.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "simpod-json-datasource"
    assert source["url"] == "http://netspectra-api:8080"
    prov = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "netspectra.yml").read_text())
    (provider,) = prov["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    dash = json.loads(DASHBOARD.read_text())
    assert "dashboard" not in dash and dash["uid"] and dash["panels"]  # plain, not API-wrapped
    refs = {(p["datasource"]["type"], p["datasource"]["uid"]) for p in dash["panels"]}
    refs |= {(t["datasource"]["type"], t["datasource"]["uid"]) for p in dash["panels"] for t in p["targets"]}
    assert refs == {(source["type"], source["uid"])}
    # every target's task is a task of the shipped configuration
    shipped = set(load_config(ROOT / "configs" / "config.yaml").task_names())
    for p in dash["panels"]:
        for t in p["targets"]:
            assert t["target"].rpartition(":")[0] in shipped, t["target"]


def test_datasource_test_and_target_picker(http: TestClient) -> None:
    res = http.get("/", headers={"Accept": "application/json, text/plain, */*"})
    assert res.status_code == 200 and res.text == "ok"
    assert http.post("/search", json={"target": ""}).json() == ["per_five_tuple"]
    offered = [m["value"] for m in http.post("/metrics", json={}).json()]
    assert offered == [
        "per_five_tuple",
        "per_five_tuple:packets",
        "per_five_tuple:bytes",
        "per_five_tuple:flows",
        "per_five_tuple:top",
        "ss_src_dst:spread",
        "cm_src_left:count",
        "cm_src_left:size",
    ]
    assert http.post("/metric-payload-options", json={"metric": "per_five_tuple"}).json() == []
    for p in panels():
        for t in p["targets"]:
            assert t["target"] in offered


def test_dashboard_panels_answer_the_golden_totals(http: TestClient) -> None:
    seen = set()
    for panel in panels():
        res = http.post("/query", json=panel_request(panel))
        assert res.status_code == 200, (panel["title"], res.text)
        (answer,) = res.json()
        target = panel["targets"][0]["target"]
        assert answer["target"] == target
        task, _, kind = target.rpartition(":")
        if panel["type"] == "timeseries":
            assert "type" not in answer
            # two snapshots: T0+60 s (the first half of the capture) and T0+120 s (all of it)
            times = [t for _, t in answer["datapoints"]]
            assert times == [(T0_S + 60) * 1000, T2_NS // 10**6]
            assert answer["datapoints"][-1][0] == TOTALS[kind]
            assert 0 < answer["datapoints"][0][0] < TOTALS[kind]
        else:
            assert panel["type"] == "table" and answer["type"] == "table"
            rows = answer["rows"]
            assert rows, panel["title"]
            names = [c["text"] for c in answer["columns"]]
            if kind == "top":
                assert names == ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "Packets", "Bytes"]
                assert [(r[6], r[5]) for r in rows] == golden_top(10)
                golden = {
                    tuple(r[k] for k in names[:5]): (int(r["PacketCount"]), int(r["ByteCount"]))
                    for r in FLOWS
                }
                for r in rows:
                    assert golden[tuple(r[:5])] == (r[5], r[6])
            else:
                body = {"taskName": task, "type": {"count": 0, "size": 1, "spread": 2}[kind], "limit": 10}
                body |= {"startTime": RANGE["from"], "endTime": RANGE["to"]}
                rest = http.post("/api/v1/heavy-hitters", json=body).json()["hitters"]
                assert rows == [[h["flow"], int(h["value"])] for h in rest]
                check_hitters(kind, rows)
        seen.add(kind)
    assert seen == {"packets", "bytes", "flows", "top", "count", "size", "spread"}


def check_hitters(kind: str, rows: list[list[Any]]) -> None:
    """Sketch estimates against the exact per-source truth: CountMin never underestimates, and its
    largest hitter is the largest source; a super-spreader contacted more than one destination."""
    if kind in ("count", "size"):
        column = "PacketCount" if kind == "count" else "ByteCount"
        truth: Counter[str] = Counter()
        for r in FLOWS:
            truth[r["SrcIP"]] += int(r[column])
        for flow, value in rows:
            assert any(ip in flow for ip in truth), flow
            ip = next(ip for ip in sorted(truth, key=len, reverse=True) if ip in flow)
            assert value >= truth[ip], (flow, value, truth[ip])
        assert truth.most_common(1)[0][0] in rows[0][0]
    else:
        dsts: dict[str, set[str]] = {}
        for r in FLOWS:
            dsts.setdefault(r["SrcIP"], set()).add(r["DstIP"])
        top_true = max(dsts, key=lambda ip: len(dsts[ip]))
        assert any(top_true in flow for flow, _ in rows), (top_true, rows)
        assert all(value > 1 for _, value in rows)


def test_table_targets_limits_and_errors(http: TestClient) -> None:
    body = {"range": RANGE, "targets": [{"target": "per_five_tuple:top", "payload": {"limit": 3}}]}
    (answer,) = http.post("/query", json=body).json()
    assert [(r[6], r[5]) for r in answer["rows"]] == golden_top(3)
    body["targets"] = [{"target": "per_five_tuple:top", "data": {"limit": 2000}}]  # clamped to 1000
    assert len(http.post("/query", json=body).json()[0]["rows"]) == TOTALS["flows"]
    # an empty range: an empty table, not an error
    empty = {"from": "2023-01-01T00:00:00Z", "to": "2023-01-02T00:00:00Z"}
    for target in ("per_five_tuple:top", "cm_src_left:count", "ss_src_dst:spread"):
        res = http.post("/query", json={"range": empty, "targets": [{"target": target}]})
        assert res.status_code == 200 and res.json()[0]["rows"] == [], target
    for target, payload in (
        ("ss_src_dst:count", {}),  # a SuperSpread task has spread only
        ("cm_src_left:spread", {}),
        ("per_five_tuple:spread", {}),  # an exact task has no hitters
        ("cm_src_left:top", {}),  # a sketch task has no flow table
        ("per_five_tuple:top", {"limit": 0}),
        ("per_five_tuple:top", {"limit": "many"}),
    ):
        res = http.post("/query", json={"range": RANGE, "targets": [{"target": target, "payload": payload}]})
        assert res.status_code == 400, (target, res.text)
        assert res.json()["code"] == "INVALID_ARGUMENT" and "Traceback" not in res.text
        if "limit" in payload:  # what was expected, whatever the value (it echoed "many" alone)
            assert "payload.limit" in res.json()["message"] and "positive integer" in res.json()["message"]
    res = http.post("/query", json={"range": RANGE, "targets": [{"target": "nope:top"}]})
    assert res.status_code == 404, res.text


def test_browsers_get_the_web_dashboard(http: TestClient) -> None:
    res = http.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    assert "/static/dashboard.js" in res.text
    for name, kind in (("dashboard.js", "javascript"), ("dashboard.css", "text/css")):
        res = http.get(f"/static/{name}")
        assert res.status_code == 200 and kind in res.headers["content-type"], name
    assert http.get("/static/../http_app.py").status_code == 404
