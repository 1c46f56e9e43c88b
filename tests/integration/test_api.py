"""The query service against a store filled from a real capture: every RPC and HTTP endpoint, compared
with the exact totals of ``gnutella.pcap`` (tests/golden/expected), filters, time ranges, paging, and bad
input (the right status code, never a traceback, never a changed query); the ``netspectra query`` client
and ``netspectra api``.

The store is filled in this process through the engine: a :class:`ManualClock` gives two snapshots 60 s
apart (the first half of the capture, then all of it) in the session's chdb data directory, in a database
of its own, and the gRPC server runs in this process on 127.0.0.1 (chdb: one data directory per process).
The main RPCs run against the real clickhouse-server 18.16 fixture too.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from typer.testing import CliRunner

from netspectra.api.grpc_service import QueryCore, _no_hitters, create_grpc_server
from netspectra.api.server import ApiServer
from netspectra.batch import PacketBatch
from netspectra.capture.reader import read_captures
from netspectra.cli.api_cmds import parse_time, query_app
from netspectra.config import Config, parse_config_text
from netspectra.engine.manager import Manager, ManualClock
from netspectra.proto.v1 import query_pb2, query_pb2_grpc
from netspectra.sketches.base import HitterType
from netspectra.tasks.exact import ExactTask

pytest.importorskip("fastapi", reason="the HTTP app needs fastapi (pip install fastapi uvicorn httpx)")
from fastapi.testclient import TestClient

from netspectra.api.http_app import create_app

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"
GOLDEN_DIR = ROOT / "tests" / "golden" / "expected"
GOLDEN = json.loads((GOLDEN_DIR / "gnutella.pcap.summary.json").read_text())
T0_S = 1_704_067_200  # 2024-01-01T00:00:00Z: the engine's (manual) clock at start
T1_NS = (T0_S + 60) * 10**9  # first snapshot: the first half of the capture
T2_NS = (T0_S + 120) * 10**9  # second (and final) snapshot: everything
FIVE = ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
SQLISH = ("x'; DROP TABLE flow_metrics; --", "%(task)s", "per_src' OR '1'='1", "a\x00b\nc", "")


def golden_flows() -> list[dict[str, str]]:
    with open(GOLDEN_DIR / "gnutella.pcap.flows.csv") as f:
        return list(csv.DictReader(f))


FLOWS = golden_flows()


def truth(pred: Any = lambda r: True) -> tuple[int, int, int]:
    """(packets, bytes, flows) of the golden five-tuple flows matching ``pred``."""
    rows = [r for r in FLOWS if pred(r)]
    return sum(int(r["PacketCount"]) for r in rows), sum(int(r["ByteCount"]) for r in rows), len(rows)


def iso_ns(text: str) -> int:
    """``1970-01-01T00:00:12.446804000Z`` → ns."""
    day, _, rest = text.rstrip("Z").partition("T")
    assert day == "1970-01-01"
    hms, _, frac = rest.partition(".")
    h, m, s = (int(x) for x in hms.split(":"))
    return (h * 3600 + m * 60 + s) * 10**9 + int((frac + "0" * 9)[:9])


def config_text(clickhouse: dict[str, object]) -> str:
    ch = "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in clickhouse.items()) + "}"
    writer = f"[{{type: clickhouse, enabled: true, snapshot_interval: 60s, clickhouse: {ch}}}]"
    return (
        "api: {grpc_listen_addr: '127.0.0.1:0', http_listen_addr: '127.0.0.1:0'}\n"
        "aggregator:\n  types: [exact, sketch]\n  num_workers: 2\n"
        f"  exact:\n    writers: {writer}\n"
        "    tasks:\n      - {name: per_five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}\n"
        "      - {name: per_src, key_fields: [SrcIP]}\n"
        f"  sketch:\n    writers: {writer}\n"
        "    tasks:\n      - {name: ss, skt_type: 1, flow_fields: [SrcIP], element_fields: [DstIP],\n"
        "         width: 4096, depth: 2, count_thereshold: 5, m: 128, size: 5, b: 1.08, base: 0.5, seed: 3}\n"
        "      - {name: cm, skt_type: 0, flow_fields: [SrcIP], width: 4096, depth: 2,\n"
        "         size_thereshold: 1000, count_thereshold: 10, seed: 5}\n"
    )


def fill_store(cfg: Config) -> PacketBatch:
    """Two snapshots 60 s apart through the engine: the first half of the packets, then all of them.
    Returns the first half (the truth for ``end_time = T1``)."""
    batch = PacketBatch.concat(list(read_captures([CAPTURE])))
    assert len(batch) == GOLDEN["ip_packets"]
    half = batch.take(np.arange(len(batch) // 2))
    rest = batch.take(np.arange(len(batch) // 2, len(batch)))
    clock = ManualClock(T0_S * 10**9)
    manager = Manager.from_config(cfg, clock=clock)
    manager.start()
    try:
        for part in (half, rest):
            manager.submit(part)
            assert manager.flush(60)
            clock.advance(60)
            assert manager.settle(60)
    finally:
        manager.stop()
    return half


@dataclass
class Served:
    cfg: Config
    core: QueryCore
    stub: query_pb2_grpc.QueryServiceStub
    channel: grpc.Channel
    addr: str
    half: PacketBatch


def serve(clickhouse: dict[str, object]) -> Iterator[Served]:
    cfg = parse_config_text(config_text(clickhouse))
    half = fill_store(cfg)
    core = QueryCore(cfg)
    server, port, _ = create_grpc_server(core, "127.0.0.1:0", max_workers=4)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(cfg, core, query_pb2_grpc.QueryServiceStub(channel), channel, f"127.0.0.1:{port}", half)
    finally:
        channel.close()
        server.stop(1).wait()
        core.close()


@pytest.fixture(scope="module")
def chdb_served(chdb_data_dir: Path) -> Iterator[Served]:
    db = f"ns_api_{uuid.uuid4().hex[:10]}"
    # history_resolution = the snapshot interval: every snapshot stays readable (one point per snapshot)
    yield from serve({"data_dir": str(chdb_data_dir), "database": db, "history_resolution": "60s"})


@pytest.fixture(scope="module")
def server_served(clickhouse_server: Any) -> Iterator[Served]:
    yield from serve(clickhouse_server.config())  # default history_resolution: 1h


def ts(ns: int) -> Timestamp:
    return Timestamp(seconds=ns // 10**9, nanos=ns % 10**9)


def summaries(resp: query_pb2.QueryTotalCountsResponse) -> dict[str, tuple[int, int, int]]:
    return {s.task_name: (s.total_packets, s.total_bytes, s.flow_count) for s in resp.summaries}


def expect_error(call: Any, req: Any, code: grpc.StatusCode, text: str = "") -> str:
    with pytest.raises(grpc.RpcError) as info:
        call(req, timeout=30)
    err = info.value
    assert err.code() == code, (err.code(), err.details())
    details = err.details() or ""
    assert "Traceback" not in details and 'File "' not in details
    assert text in details, details
    return details


def half_truth(half: PacketBatch, fields: list[str]) -> tuple[int, int, int]:
    task = ExactTask("t", fields)
    task.update(half)
    snap = task.snapshot()
    return snap.total_packets, snap.total_bytes, len(snap)


ALL = truth()
N_SRC = len({r["SrcIP"] for r in FLOWS})


# --------------------------------------------------------------------------------------------------
# gRPC, embedded chdb
# --------------------------------------------------------------------------------------------------


def test_health_search_and_standard_services(chdb_served: Served) -> None:
    stub = chdb_served.stub
    assert stub.HealthCheck(query_pb2.HealthCheckRequest(), timeout=10).status == "ok"
    names = list(stub.SearchTasks(query_pb2.SearchTasksRequest(), timeout=10).task_names)
    assert names == ["per_five_tuple", "per_src", "ss", "cm"]  # exact, then sketch, config order

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(chdb_served.channel)
    for service in ("", "v1.QueryService"):
        got = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert got.status == health_pb2.HealthCheckResponse.SERVING

    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    refl = reflection_pb2_grpc.ServerReflectionStub(chdb_served.channel)
    answers = list(
        refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    services = {s.name for s in answers[0].list_services_response.service}
    assert {"v1.QueryService", "grpc.health.v1.Health"} <= services


def test_aggregate_equals_golden_totals(chdb_served: Served) -> None:
    got = summaries(chdb_served.stub.AggregateFlows(query_pb2.AggregationRequest(), timeout=30))
    assert got == {
        "per_five_tuple": (GOLDEN["ip_packets"], GOLDEN["ip_bytes"], GOLDEN["flows"]),
        "per_src": (GOLDEN["ip_packets"], GOLDEN["ip_bytes"], N_SRC),
    }
    assert ALL == (3882, 577490, 937)
    one = chdb_served.stub.AggregateFlows(query_pb2.AggregationRequest(task_name="per_src"), timeout=30)
    assert summaries(one) == {"per_src": got["per_src"]}


@pytest.mark.parametrize(
    ("req", "pred"),
    [
        ({"src_ip": "10.0.2.15"}, lambda r: r["SrcIP"] == "10.0.2.15"),
        ({"dst_ip": "10.0.2.15"}, lambda r: r["DstIP"] == "10.0.2.15"),
        ({"src_ip": "::ffff:10.0.2.15"}, lambda r: r["SrcIP"] == "10.0.2.15"),
        ({"dst_port": 53}, lambda r: r["DstPort"] == "53"),
        ({"protocol": 6}, lambda r: r["Protocol"] == "6"),
        (
            {"protocol": 17, "src_ip": "10.0.2.15"},
            lambda r: r["Protocol"] == "17" and r["SrcIP"] == "10.0.2.15",
        ),
        ({"src_ip": "192.0.2.99"}, lambda r: False),
    ],
)
def test_aggregate_filters(chdb_served: Served, req: dict[str, Any], pred: Any) -> None:
    resp = chdb_served.stub.AggregateFlows(
        query_pb2.AggregationRequest(task_name="per_five_tuple", **req), timeout=30
    )
    want = truth(pred)
    assert summaries(resp) == ({"per_five_tuple": want} if want[0] else {})


def test_aggregate_time_ranges(chdb_served: Served) -> None:
    stub, half = chdb_served.stub, chdb_served.half
    h = half_truth(half, FIVE)
    assert 0 < h[0] < ALL[0]

    def agg(**kw: Any) -> tuple[int, int, int] | None:
        resp = stub.AggregateFlows(query_pb2.AggregationRequest(task_name="per_five_tuple", **kw), timeout=30)
        return summaries(resp).get("per_five_tuple")

    assert agg(end_time=ts(T1_NS)) == h  # as of the first snapshot: the first half
    assert agg(end_time=ts(T1_NS - 1)) is None  # before any snapshot
    assert agg(end_time=ts(T2_NS)) == ALL
    assert agg(start_time=ts(T1_NS)) == ALL  # inclusive start
    # [T1 + 1, ∞): the traffic of the second snapshot only (flows that had packets after the first)
    second = agg(start_time=ts(T1_NS + 1))
    assert second is not None
    assert second[:2] == (ALL[0] - h[0], ALL[1] - h[1])
    full = ExactTask("t", FIVE)
    batch = PacketBatch.concat(list(read_captures([CAPTURE])))
    full.update(batch.take(np.arange(len(half), len(batch))))
    assert second[2] == len(full.snapshot())
    assert agg(start_time=ts(T2_NS + 1)) is None
    far = Timestamp(seconds=253_402_300_799)  # 9999-12-31T23:59:59Z: beyond int64 ns, read as "no bound"
    assert agg(end_time=far) == ALL
    assert agg(start_time=far) is None


def test_trace_flow_and_paged_flows(chdb_served: Served) -> None:
    stub = chdb_served.stub
    rows = [r for r in FLOWS if r["SrcIP"] == "10.0.2.15" and r["Protocol"] == "17"]
    req = query_pb2.TraceFlowRequest(
        task_name="per_five_tuple", flow_keys={"SrcIP": "10.0.2.15", "Protocol": "17"}
    )
    resp = stub.TraceFlow(req, timeout=30)
    lc = resp.lifecycle
    assert (lc.total_packets, lc.total_bytes) == truth(lambda r: r in rows)[:2]
    assert lc.first_seen.ToNanoseconds() == min(iso_ns(r["StartTime"]) for r in rows)
    assert lc.last_seen.ToNanoseconds() == max(iso_ns(r["EndTime"]) for r in rows)
    assert not resp.flows and not resp.next_page_token  # page_size 0: the original's answer

    got: list[query_pb2.FlowDetail] = []
    # pages in the key order (unique: no ties at a page's edge); 602 rows: 12 full pages and one of 2
    size = 50
    req.page_size = size
    pages = 0
    while True:
        page = stub.TraceFlow(req, timeout=30)
        assert page.lifecycle == lc
        assert len(page.flows) <= size
        got.extend(page.flows)
        pages += 1
        if not page.next_page_token:
            break
        req.page_token = page.next_page_token
    assert pages == -(-len(rows) // size) > 2 and len(rows) % size
    want = {
        tuple(r[k] for k in FIVE): (int(r["PacketCount"]), int(r["ByteCount"]), iso_ns(r["StartTime"]))
        for r in rows
    }
    have = {
        tuple(f.flow_keys[k] for k in FIVE): (
            f.lifecycle.total_packets,
            f.lifecycle.total_bytes,
            f.lifecycle.first_seen.ToNanoseconds(),
        )
        for f in got
    }
    assert have == want and len(got) == len(rows)

    # a single five-tuple
    r = rows[0]
    one = stub.TraceFlow(
        query_pb2.TraceFlowRequest(task_name="per_five_tuple", flow_keys={k: r[k] for k in FIVE}), timeout=30
    )
    assert (one.lifecycle.total_packets, one.lifecycle.total_bytes) == (
        int(r["PacketCount"]),
        int(r["ByteCount"]),
    )
    # nothing matches: an empty lifecycle (present, zero)
    none = stub.TraceFlow(
        query_pb2.TraceFlowRequest(task_name="per_five_tuple", flow_keys={"SrcIP": "192.0.2.1"}), timeout=30
    )
    assert none.HasField("lifecycle") and none.lifecycle.total_packets == 0
    # as of the first snapshot
    early = stub.TraceFlow(
        query_pb2.TraceFlowRequest(task_name="per_src", flow_keys={"SrcIP": "10.0.2.15"}, end_time=ts(T1_NS)),
        timeout=30,
    )
    src = chdb_served.half.src_ip
    mapped = np.frombuffer(b"\x00" * 10 + b"\xff\xff" + bytes([10, 0, 2, 15]), np.uint8)
    assert early.lifecycle.total_packets == int((src == mapped).all(axis=1).sum())


def test_heavy_hitters_and_super_spreaders(chdb_served: Served) -> None:
    stub = chdb_served.stub
    spread = stub.QueryHeavyHitters(
        query_pb2.HeavyHittersRequest(task_name="ss", type=2, limit=5), timeout=30
    )
    assert spread.hitters[0].flow == "10.0.2.15" and spread.hitters[0].value > 300  # 514 distinct (tshark)
    counts = Counter()
    for r in FLOWS:
        counts[r["SrcIP"]] += int(r["PacketCount"])
    top = stub.QueryHeavyHitters(query_pb2.HeavyHittersRequest(task_name="cm", type=0, limit=3), timeout=30)
    assert top.hitters[0].flow == counts.most_common(1)[0][0]
    values = [h.value for h in top.hitters]
    assert values == sorted(values, reverse=True) and all(v >= 10 for v in values)
    size = stub.QueryHeavyHitters(query_pb2.HeavyHittersRequest(task_name="cm", type=1), timeout=30)
    assert 0 < len(size.hitters) <= 10  # limit 0: the default, 10
    # paging within the limit
    everything = stub.QueryHeavyHitters(
        query_pb2.HeavyHittersRequest(task_name="cm", type=0, limit=2**31 - 1), timeout=30
    )  # huge limit: clamped to 10 000, not rejected
    req = query_pb2.HeavyHittersRequest(task_name="cm", type=0, limit=2**31 - 1, page_size=2)
    paged: list[tuple[str, int]] = []
    while True:
        page = stub.QueryHeavyHitters(req, timeout=30)
        assert len(page.hitters) <= 2
        paged += [(h.flow, h.value) for h in page.hitters]
        if not page.next_page_token:
            break
        req.page_token = page.next_page_token
    assert paged == [(h.flow, h.value) for h in everything.hitters] and len(paged) > 2
    # a window after the last snapshot: nothing
    later = stub.QueryHeavyHitters(
        query_pb2.HeavyHittersRequest(task_name="ss", type=2, start_time=ts(T2_NS + 1)), timeout=30
    )
    assert not later.hitters
    # ... and why: the task's stored lists lie outside the range
    assert later.reason.startswith("none in the range: task 'ss' stored spread hitters from "), later.reason
    assert top.reason == "" and size.reason == ""  # answers with hitters carry no reason
    # REST and the command line show it too
    after = datetime.fromtimestamp(T2_NS / 1e9 + 1, UTC).isoformat().replace("+00:00", "Z")
    with TestClient(create_app(chdb_served.core)) as http:
        body = {"taskName": "ss", "type": 2, "startTime": after}
        doc = http.post("/api/v1/heavy-hitters", json=body).json()
    assert doc["reason"] == later.reason, doc
    res = run_cli("super-spreaders", "--addr", chdb_served.addr, "-t", "ss", "--start", after)
    assert res.exit_code == 0 and "none in the range: task 'ss'" in " ".join(res.output.split()), res.output
    # a task that stored no list of that type yet
    store = chdb_served.core.router.store_for("cm")[1]
    why = _no_hitters(store, "cm_quiet", HitterType.COUNT, None, None)
    assert why.startswith("task 'cm_quiet' stored no count hitter yet: a sketch task stores the flows"), why


def test_aggregate_paging(chdb_served: Served) -> None:
    stub = chdb_served.stub
    req = query_pb2.AggregationRequest(page_size=1)
    first = stub.AggregateFlows(req, timeout=30)
    assert [s.task_name for s in first.summaries] == ["per_five_tuple"] and first.next_page_token
    req.page_token = first.next_page_token
    second = stub.AggregateFlows(req, timeout=30)
    assert [s.task_name for s in second.summaries] == ["per_src"] and not second.next_page_token
    # a token replayed with another query is refused
    other = query_pb2.AggregationRequest(page_size=1, page_token=first.next_page_token, src_ip="10.0.2.15")
    expect_error(stub.AggregateFlows, other, grpc.StatusCode.INVALID_ARGUMENT, "page_token")
    bad = query_pb2.AggregationRequest(page_size=1, page_token="not a token")
    expect_error(stub.AggregateFlows, bad, grpc.StatusCode.INVALID_ARGUMENT, "page_token")


def test_bad_input_gives_status_codes_and_no_changed_query(chdb_served: Served) -> None:
    stub = chdb_served.stub
    A, T, H = stub.AggregateFlows, stub.TraceFlow, stub.QueryHeavyHitters
    nf, inv = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT
    for name in (*SQLISH[:-1], "nope"):
        expect_error(A, query_pb2.AggregationRequest(task_name=name), nf, "unknown task")
        expect_error(T, query_pb2.TraceFlowRequest(task_name=name, flow_keys={"SrcIP": "1.2.3.4"}), nf)
        expect_error(H, query_pb2.HeavyHittersRequest(task_name=name, type=0), nf)
    for bad in ("10.0.2.300", "10.0.2.15' OR '1'='1", "not-an-ip", "1.2.3.4; DROP TABLE flow_metrics"):
        expect_error(A, query_pb2.AggregationRequest(src_ip=bad), inv, "is not an IP address")
        expect_error(A, query_pb2.AggregationRequest(dst_ip=bad), inv, "is not an IP address")
        tr = query_pb2.TraceFlowRequest(task_name="per_five_tuple", flow_keys={"DstIP": bad})
        expect_error(T, tr, inv)
    expect_error(A, query_pb2.AggregationRequest(src_port=70000), inv, "65535")
    expect_error(A, query_pb2.AggregationRequest(protocol=256), inv, "255")
    tr = query_pb2.TraceFlowRequest(task_name="per_five_tuple", flow_keys={"Foo": "1"})
    expect_error(T, tr, inv, "unsupported flow key: Foo")
    tr = query_pb2.TraceFlowRequest(task_name="per_five_tuple", flow_keys={"SrcIp": "10.0.2.15"})
    expect_error(T, tr, inv, "unsupported flow key: SrcIp (names are case-sensitive: did you mean 'SrcIP'?)")
    hh = query_pb2.HeavyHittersRequest(task_name="per_five_tuple", type=0)
    expect_error(H, hh, inv, "'per_five_tuple' is an exact task; QueryHeavyHitters reads sketch tasks")
    tr = query_pb2.TraceFlowRequest(task_name="per_five_tuple", flow_keys={"SrcIP; DROP": "1"})
    expect_error(T, tr, inv, "unsupported flow key")
    tr = query_pb2.TraceFlowRequest(task_name="per_five_tuple", flow_keys={"DstPort": "53 OR 1=1"})
    expect_error(T, tr, inv, "DstPort")
    expect_error(T, query_pb2.TraceFlowRequest(), inv, "task_name")
    expect_error(T, query_pb2.TraceFlowRequest(task_name="ss"), inv, "sketch task")
    expect_error(A, query_pb2.AggregationRequest(task_name="cm"), inv, "sketch task")
    expect_error(H, query_pb2.HeavyHittersRequest(task_name="cm", type=7), inv, "type 7")
    expect_error(H, query_pb2.HeavyHittersRequest(task_name="cm", type=-1), inv)
    expect_error(H, query_pb2.HeavyHittersRequest(task_name="cm", type=2), inv, "CountMin")
    expect_error(H, query_pb2.HeavyHittersRequest(task_name="ss", type=0), inv, "SuperSpread")
    expect_error(H, query_pb2.HeavyHittersRequest(task_name="per_src"), inv, "exact task")
    expect_error(H, query_pb2.HeavyHittersRequest(), inv, "task_name")
    later_first = dict(start_time=ts(T2_NS), end_time=ts(T1_NS))
    expect_error(A, query_pb2.AggregationRequest(**later_first), inv, "start_time is after end_time")
    expect_error(T, query_pb2.TraceFlowRequest(task_name="per_src", **later_first), inv, "start_time")
    expect_error(H, query_pb2.HeavyHittersRequest(task_name="ss", type=2, **later_first), inv, "start_time")
    neg = query_pb2.AggregationRequest(end_time=Timestamp(seconds=-5))
    expect_error(A, neg, inv, "before 1970")
    # nothing above changed the data or the tables
    got = summaries(stub.AggregateFlows(query_pb2.AggregationRequest(), timeout=30))
    assert got["per_five_tuple"] == ALL


def closed_port() -> int:
    """A port of 127.0.0.1 nobody listens on (free a moment ago)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_store_unavailable_and_missing_writer() -> None:
    cfg = parse_config_text(config_text({"host": "127.0.0.1", "port": closed_port(), "database": "x"}))
    core = QueryCore(cfg)
    server, port, _ = create_grpc_server(core, "127.0.0.1:0", max_workers=2)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            # the service starts without its store and answers what needs none
            assert stub.HealthCheck(query_pb2.HealthCheckRequest(), timeout=10).status == "ok"
            assert len(stub.SearchTasks(query_pb2.SearchTasksRequest(), timeout=10).task_names) == 4
            un = grpc.StatusCode.UNAVAILABLE
            expect_error(stub.AggregateFlows, query_pb2.AggregationRequest(), un, "unavailable")
            tr = query_pb2.TraceFlowRequest(task_name="per_src", flow_keys={"SrcIP": "10.0.0.1"})
            expect_error(stub.TraceFlow, tr, un)
            expect_error(stub.QueryHeavyHitters, query_pb2.HeavyHittersRequest(task_name="ss", type=2), un)
    finally:
        server.stop(1).wait()
        core.close()
    text = config_text({"host": "127.0.0.1"}).replace("enabled: true", "enabled: false")
    core = QueryCore(parse_config_text(text))
    from netspectra.api.grpc_service import QueryError

    with pytest.raises(QueryError) as info:
        core.aggregate_flows(query_pb2.AggregationRequest())
    assert (
        info.value.code == grpc.StatusCode.UNAVAILABLE
        and "no enabled clickhouse writer" in info.value.message
    )


# --------------------------------------------------------------------------------------------------
# gRPC, a real clickhouse-server (18.16 in CI)
# --------------------------------------------------------------------------------------------------


def test_main_rpcs_against_clickhouse_server(server_served: Served) -> None:
    stub = server_served.stub
    got = summaries(stub.AggregateFlows(query_pb2.AggregationRequest(), timeout=30))
    assert got["per_five_tuple"] == ALL and got["per_src"] == (ALL[0], ALL[1], N_SRC)
    h = half_truth(server_served.half, FIVE)
    resp = stub.AggregateFlows(
        query_pb2.AggregationRequest(task_name="per_five_tuple", end_time=ts(T1_NS)), timeout=30
    )
    assert summaries(resp) == {"per_five_tuple": h}
    resp = stub.AggregateFlows(
        query_pb2.AggregationRequest(task_name="per_five_tuple", src_ip="10.0.2.15", protocol=17), timeout=30
    )
    want = truth(lambda r: r["SrcIP"] == "10.0.2.15" and r["Protocol"] == "17")
    assert want[0] > 0 and summaries(resp) == {"per_five_tuple": want}
    rows = [r for r in FLOWS if r["SrcIP"] == "10.0.2.15"]
    tr = stub.TraceFlow(
        query_pb2.TraceFlowRequest(
            task_name="per_five_tuple", flow_keys={"SrcIP": "10.0.2.15"}, page_size=5000
        ),
        timeout=30,
    )
    assert (tr.lifecycle.total_packets, tr.lifecycle.total_bytes) == truth(lambda r: r in rows)[:2]
    assert len(tr.flows) == len(rows) and not tr.next_page_token
    spread = stub.QueryHeavyHitters(
        query_pb2.HeavyHittersRequest(task_name="ss", type=2, limit=1), timeout=30
    )
    assert [h.flow for h in spread.hitters] == ["10.0.2.15"]
    for name in SQLISH[:-1]:
        expect_error(
            stub.AggregateFlows, query_pb2.AggregationRequest(task_name=name), grpc.StatusCode.NOT_FOUND
        )
    tr_bad = query_pb2.TraceFlowRequest(task_name="per_five_tuple", flow_keys={"SrcIP": "1.1.1.1' OR 1=1 --"})
    expect_error(stub.TraceFlow, tr_bad, grpc.StatusCode.INVALID_ARGUMENT)
    assert summaries(stub.AggregateFlows(query_pb2.AggregationRequest(), timeout=30)) == got
    # Grafana on 18.16; the default history_resolution (1 h) keeps one point per hour: T1 and T2 share a
    # bucket, so the series has the bucket's newest snapshot only
    with TestClient(create_app(server_served.core), raise_server_exceptions=False) as http:
        targets = [{"target": f"per_five_tuple:{m}"} for m in ("packets", "bytes", "flows")]
        res = http.post("/query", json={"targets": targets, "range": {"from": 0, "to": T2_NS // 10**6}})
        assert res.status_code == 200, res.text
        t2 = T2_NS // 10**6
        assert [d["datapoints"] for d in res.json()] == [[[ALL[0], t2]], [[ALL[1], t2]], [[ALL[2], t2]]]
        # after the merges have run (T1's versions of flows that changed at T2 are gone) still exact
        store = server_served.core.router.group_store("exact")
        store.execute(f"OPTIMIZE TABLE {store.table('flow_metrics')} FINAL")
        res = http.post("/query", json={"targets": targets, "range": {"from": 0, "to": T2_NS // 10**6}})
        assert [d["datapoints"] for d in res.json()] == [[[ALL[0], t2]], [[ALL[1], t2]], [[ALL[2], t2]]]


# --------------------------------------------------------------------------------------------------
# HTTP: Grafana SimpleJSON and REST
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(chdb_served: Served) -> Iterator[TestClient]:
    with TestClient(create_app(chdb_served.core), raise_server_exceptions=False) as client:
        yield client


def test_grafana_simplejson(http: TestClient, chdb_served: Served) -> None:
    assert http.get("/").status_code == 200
    assert http.post("/search", json={"target": ""}).json() == ["per_five_tuple", "per_src"]
    assert http.post("/annotations", json={}).json() == []
    h = half_truth(chdb_served.half, FIVE)
    body = {
        "range": {"from": "2024-01-01T00:00:00Z", "to": "2024-01-01T01:00:00.000Z"},
        "targets": [
            {"target": "per_five_tuple"},
            {"target": "per_five_tuple:bytes"},
            {"target": "per_src:flows"},
        ],
        "maxDataPoints": 100,
    }
    res = http.post("/query", json=body)
    assert res.status_code == 200, res.text
    t1, t2 = T1_NS // 10**6, T2_NS // 10**6
    assert res.json() == [
        {"target": "per_five_tuple", "datapoints": [[h[0], t1], [ALL[0], t2]]},
        {"target": "per_five_tuple:bytes", "datapoints": [[h[1], t1], [ALL[1], t2]]},
        {
            "target": "per_src:flows",
            "datapoints": [[half_truth(chdb_served.half, ["SrcIP"])[2], t1], [N_SRC, t2]],
        },
    ]
    # the range is honoured at both ends (the original ignored range.from)
    body["range"] = {"from": "2024-01-01T00:01:30Z", "to": "2024-01-01T00:05:00Z"}
    body["targets"] = [{"target": "per_five_tuple"}, {"target": ""}]
    assert http.post("/query", json=body).json() == [
        {"target": "per_five_tuple", "datapoints": [[ALL[0], t2]]}
    ]
    body["range"] = {"from": "2024-01-01T00:00:00Z", "to": "2024-01-01T00:01:30Z"}
    assert http.post("/query", json=body).json()[0]["datapoints"] == [[h[0], t1]]
    body["maxDataPoints"] = 1
    body["range"] = {"from": "2024-01-01T00:00:00Z", "to": "2024-01-02T00:00:00Z"}
    assert http.post("/query", json=body).json()[0]["datapoints"] == [[ALL[0], t2]]
    # errors: JSON, never a traceback
    for target, status in (("nope", 404), ("cm", 400), ("x'; DROP TABLE flow_metrics; --", 404)):
        res = http.post("/query", json={"targets": [{"target": target}]})
        assert res.status_code == status and "Traceback" not in res.text
    res = http.post("/query", json={"range": {"from": "yesterday"}, "targets": []})
    assert res.status_code == 400 and res.json()["code"] == "INVALID_ARGUMENT"
    res = http.post("/query", json={"range": {"from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"}})
    assert res.status_code == 400


def test_rest_mirrors(http: TestClient, chdb_served: Served) -> None:
    assert http.get("/api/v1/health").json() == {"status": "ok"}
    assert http.get("/api/v1/tasks").json() == {"taskNames": ["per_five_tuple", "per_src", "ss", "cm"]}
    res = http.post("/api/v1/aggregate", json={"taskName": "per_five_tuple"})
    assert res.json() == {
        "summaries": [
            {
                "taskName": "per_five_tuple",
                "totalBytes": str(ALL[1]),
                "totalPackets": str(ALL[0]),
                "flowCount": "937",
            }
        ]
    }
    res = http.post("/api/v1/aggregate", json={"srcIp": "10.0.2.15", "endTime": "2024-01-01T00:02:00Z"})
    want = truth(lambda r: r["SrcIP"] == "10.0.2.15")
    assert [int(s["totalPackets"]) for s in res.json()["summaries"]] == [want[0], want[0]]
    body = {"taskName": "per_five_tuple", "flowKeys": {"SrcIP": "10.0.2.15", "Protocol": "17"}, "pageSize": 3}
    full = http.post("/api/v1/trace", json=body).json()
    assert len(full["flows"]) == 3 and full["nextPageToken"]
    lc = http.post("/api/v1/flows/trace", json=body).json()  # the original's shape: the bare lifecycle
    assert lc == full["lifecycle"]
    assert int(lc["totalPackets"]) == truth(lambda r: r["SrcIP"] == "10.0.2.15" and r["Protocol"] == "17")[0]
    hh = http.post("/api/v1/heavy-hitters", json={"taskName": "ss", "type": 2, "limit": 1}).json()
    assert hh["hitters"][0]["flow"] == "10.0.2.15"
    for path, payload, status, code in (
        ("/api/v1/aggregate", {"taskName": "nope"}, 404, "NOT_FOUND"),
        ("/api/v1/aggregate", {"srcIp": "10.0.0.999"}, 400, "INVALID_ARGUMENT"),
        ("/api/v1/aggregate", {"bogus": 1}, 400, "INVALID_ARGUMENT"),
        ("/api/v1/aggregate", {"srcPort": "x"}, 400, "INVALID_ARGUMENT"),
        ("/api/v1/trace", {"taskName": "per_src", "flowKeys": {"Nope": "1"}}, 400, "INVALID_ARGUMENT"),
        ("/api/v1/heavy-hitters", {"taskName": "ss", "type": 9}, 400, "INVALID_ARGUMENT"),
        ("/api/v1/heavy-hitters", {"taskName": "%(task)s", "type": 0}, 404, "NOT_FOUND"),
    ):
        res = http.post(path, json=payload)
        assert res.status_code == status, (path, payload, res.text)
        assert res.json()["code"] == code and "Traceback" not in res.text
    res = http.post("/api/v1/aggregate", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert res.status_code in (400, 422) and "Traceback" not in res.text
    # the admin endpoint exists only behind admin tokens (api.auth.admin_tokens)
    res = http.get("/api/v1/config")
    assert res.status_code == 404 and "admin_tokens" in res.json()["message"]
    # bodies are JSON whatever the content type says (curl -d sends a form content type)
    res = http.post(
        "/api/v1/aggregate",
        content=b'{"taskName": "per_src"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert res.status_code == 200 and res.json()["summaries"][0]["taskName"] == "per_src", res.text
    spec = http.get("/openapi.json").json()
    assert {"/query", "/search", "/annotations", "/api/v1/aggregate", "/api/v1/heavy-hitters"} <= set(
        spec["paths"]
    )


def test_rest_errors_name_the_parameters_the_client_passed(http: TestClient, chdb_served: Served) -> None:
    """The core's messages name the ``.proto``'s fields (``start_time``), right for gRPC; a REST client
    wrote ``startTime`` (or ``start_time``) in its body, or ``start`` in the query string, and its errors
    say so."""
    later_first = {"startTime": "2024-01-02T00:00:00Z", "endTime": "2024-01-01T00:00:00Z"}
    snake = {"start_time": "2024-01-02T00:00:00Z", "end_time": "2024-01-01T00:00:00Z"}
    for method, path, body, says in (
        ("POST", "/api/v1/aggregate", later_first, "startTime is after endTime"),
        ("POST", "/api/v1/aggregate", snake, "start_time is after end_time"),  # as written
        # a time before 1970 as the client wrote it (RFC 3339), not as seconds since the epoch
        (
            "POST",
            "/api/v1/aggregate",
            {"startTime": "1960-01-01T00:00:00Z"},
            "startTime: 1960-01-01T00:00:00Z is before 1970-01-01T00:00:00Z",
        ),
        # filter fields by the body's key, where the storage layer names columns (SrcIP, EndReason)
        ("POST", "/api/v1/aggregate", {"srcIp": "10.0.2.300"}, "srcIp: '10.0.2.300' is not an IP address"),
        ("POST", "/api/v1/aggregate", {"dstPort": 70000}, "dstPort: 70000 is not a number between 0 and"),
        ("POST", "/api/v1/flows", {"taskName": "f", "vlanId": 5000}, "vlanId: 5000 is not a number"),
        ("POST", "/api/v1/flows", {"taskName": "f", "host": "nope"}, "host: 'nope' is not an IP address"),
        ("POST", "/api/v1/flows", {"taskName": "f", "endReasons": ["nope"]}, "endReasons: 'nope' is not one"),
        ("POST", "/api/v1/flows", {"taskName": "f", "conn_states": ["XX"]}, "conn_states: 'XX' is not one"),
        # only the field is renamed, never the input echoed after it
        ("POST", "/api/v1/flows", {"taskName": "f", "srcIp": "src_ip"}, "srcIp: 'src_ip' is not an IP"),
        ("POST", "/api/v1/aggregate", {"taskName": "per_src", "pageToken": "zzz"}, "pageToken is not a"),
        ("POST", "/api/v1/trace", {}, "taskName is required"),  # absent: the documented camelCase
        ("POST", "/api/v1/heavy-hitters", {"type": 2}, "taskName is required"),
        ("POST", "/api/v1/flows", {"taskName": "per_src", "orderBy": 9}, "orderBy 9 is not a FlowOrder"),
        ("POST", "/api/v1/top", {"dimension": "SrcAS", **later_first}, "startTime is after endTime"),
        # a time that is not RFC 3339 text, as GET /api/v1/exporters says it (protobuf's message echoed a
        # part of the input: "time data '2013-11' does not match format …")
        (
            "POST",
            "/api/v1/top",
            {"dimension": "SrcAS", "startTime": "2013-11-07"},
            "startTime: '2013-11-07' is not an RFC 3339 time (2024-01-01T00:00:00Z)",
        ),
        ("POST", "/api/v1/aggregate", {"endTime": 1383821665}, "endTime: 1383821665 is not an RFC 3339 time"),
        ("POST", "/api/v1/exporters", {"taskName": "x" * 2000}, "taskName: 2,000 characters"),
        (
            "GET",
            "/api/v1/exporters?start=2024-01-02T00:00:00Z&end=2024-01-01T00:00:00Z",
            None,
            "start is after end",
        ),
        (
            "GET",
            "/api/v1/exporters?start=1960-01-01T00:00:00Z",
            None,
            "start: 1960-01-01T00:00:00Z is before 1970-01-01T00:00:00Z",
        ),
        ("GET", "/api/v1/exporters?end=yesterday", None, "end: 'yesterday' is not an RFC 3339 time"),
        ("GET", f"/api/v1/exporters?task={'x' * 2000}", None, "task: 2,000 characters"),
    ):
        res = http.post(path, json=body) if method == "POST" else http.get(path)
        message = res.json()["message"]
        assert res.status_code == 400 and res.json()["code"] == "INVALID_ARGUMENT", (path, res.text)
        assert says in message, (path, body, message)
        if body is None or not {"start_time", "conn_states"} & set(body):
            ours = re.sub(r"'[^']*'", "''", message)  # the words of the message, not the input it echoes
            proto = (
                r"\b(start_time|end_time|task_name|page_token|order_by|src_ip|dst_port|vlan_id|end_reasons)\b"
            )
            assert not re.search(proto, ours) and not re.search(
                r"\b(SrcIP|DstPort|VlanID|EndReason)\b", ours
            ), message
    # gRPC clients keep the .proto's names
    stub, inv = chdb_served.stub, grpc.StatusCode.INVALID_ARGUMENT
    for call, req, says in (
        (
            stub.AggregateFlows,
            query_pb2.AggregationRequest(start_time=ts(T2_NS), end_time=ts(T1_NS)),
            "start_time is after end_time",
        ),
        (stub.AggregateFlows, query_pb2.AggregationRequest(src_ip="x"), "src_ip: 'x' is not an IP address"),
        (
            stub.ListFlows,
            query_pb2.ListFlowsRequest(task_name="f", end_reasons=["nope"]),
            "end_reasons: 'nope' is not one of idle, ",
        ),
        (
            stub.AggregateFlows,
            query_pb2.AggregationRequest(end_time=Timestamp(seconds=-315619200)),
            "end_time: 1960-01-01T00:00:00Z is before 1970-01-01T00:00:00Z",
        ),
        # before year 1, which RFC 3339 cannot write: in seconds
        (
            stub.AggregateFlows,
            query_pb2.AggregationRequest(end_time=Timestamp(seconds=-(10**15))),
            "end_time: -1000000000000000 s is before 1970-01-01T00:00:00Z",
        ),
    ):
        expect_error(call, req, inv, says)


# --------------------------------------------------------------------------------------------------
# netspectra query (CLI) against the running gRPC server; --start/--end parsing
# --------------------------------------------------------------------------------------------------

NOW = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("now", NOW),
        ("-1h", NOW - 3600 * 10**9),
        ("now-30m", NOW - 1800 * 10**9),
        ("-1h30m", NOW - 5400 * 10**9),
        ("+5m", NOW + 300 * 10**9),
        ("-1.5s", NOW - 1_500_000_000),
        ("-2d", NOW - 2 * 86400 * 10**9),
        ("1700000000", 1_700_000_000 * 10**9),
        ("1700000000.25", 1_700_000_000_250_000_000),
        ("2024-01-31", 1_706_659_200 * 10**9),
        ("2024-01-31T12:00:00Z", 1_706_702_400 * 10**9),
        ("2024-01-31T12:00:00", 1_706_702_400 * 10**9),  # no zone: UTC (no "+8 hours")
        ("2024-01-31 12:00", 1_706_702_400 * 10**9),
        ("2024-01-31T20:00:00+08:00", 1_706_702_400 * 10**9),
        ("2024-01-31T12:00:00.123456Z", 1_706_702_400 * 10**9 + 123_456_000),
        ("2024-01-31T12:00:00.000000001Z", 1_706_702_400 * 10**9 + 1),
        ("2024-01-31T20:00:00.5+08:00", 1_706_702_400 * 10**9 + 500_000_000),
        ("1960-01-01", None),
        ("yesterday", None),
        ("-1y", None),
        ("", None),
        ("12:00", None),
    ],
)
def test_parse_time(text: str, want: int | None) -> None:
    if want is None:
        with pytest.raises(ValueError):
            parse_time(text, now_ns=NOW)
    else:
        assert parse_time(text, now_ns=NOW) == want


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(query_app, list(args))


def test_query_cli(chdb_served: Served) -> None:
    """``--json`` prints the protobuf JSON mapping, the same document the REST API answers (camelCase,
    64-bit integers as strings); tables follow ``analyze``'s style (thousands separators, numbers
    right-aligned, flow keys in the task's key order)."""
    addr = ["--addr", chdb_served.addr]
    res = run_cli("aggregate", *addr, "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    with TestClient(create_app(chdb_served.core)) as http:
        assert http.post("/api/v1/aggregate", json={}).json() == doc  # one mapping on both surfaces
    got = {s["taskName"]: s for s in doc["summaries"]}
    assert (got["per_five_tuple"]["totalPackets"], got["per_five_tuple"]["flowCount"]) == (
        str(ALL[0]),
        str(ALL[2]),
    )

    def total(*args: str, field: str = "totalPackets") -> int:
        res = run_cli("aggregate", *addr, "--json", "-t", "per_five_tuple", *args)
        assert res.exit_code == 0, res.output
        return int(json.loads(res.stdout)["summaries"][0][field])

    h = half_truth(chdb_served.half, FIVE)
    for end in ("2024-01-01T00:01:00Z", "1704067260", "2024-01-01 00:01"):
        assert total("--end", end) == h[0], end
    assert total("--start", "2024-01-01T00:01:00.000000001Z") == ALL[0] - h[0]
    want = truth(lambda r: r["SrcIP"] == "10.0.2.15" and r["DstPort"] == "6346")
    assert total("--src-ip", "10.0.2.15", "--dst-port", "6346", field="totalBytes") == want[1]
    # relative times as option values (a leading "-" is not taken for an option)
    assert total("--start", "-1000w", "--end", "+1d") == ALL[0]
    res = run_cli("aggregate", *addr, "--json", "-t", "per_five_tuple", "--start", "-1h")  # 2024 is older
    assert res.exit_code == 0 and json.loads(res.stdout) == {}  # zero values omitted: no summaries
    res = run_cli("aggregate", *addr)  # a table
    assert res.exit_code == 0 and "per_five_tuple" in res.stdout and f"{ALL[0]:,}" in res.stdout
    line = next(row for row in res.stdout.splitlines() if "per_five_tuple" in row)
    cells = [c.strip() for c in line.strip("│ ").split("│")]
    assert cells == ["per_five_tuple", f"{ALL[0]:,}", f"{ALL[1]:,}", f"{ALL[2]:,}"]
    assert line.split("│")[2].startswith(" ") and line.split("│")[2].endswith(f"{ALL[0]:,} ")  # right-aligned

    res = run_cli(
        "trace", *addr, "--json", "-t", "per_five_tuple", "-k", "SrcIP=10.0.2.15,DstPort=6346", "--flows", "3"
    )
    doc = json.loads(res.stdout)
    assert int(doc["lifecycle"]["totalBytes"]) == want[1] and len(doc["flows"]) == min(3, want[2])
    assert doc["lifecycle"]["firstSeen"].startswith("1970-01-01T")
    assert set(doc["flows"][0]["flowKeys"]) == set(FIVE)
    res = run_cli("trace", *addr, "-t", "per_src", "-k", "SrcIP=10.0.2.15")
    assert res.exit_code == 0 and "TraceFlow" in res.stdout
    # the matching flows: one column per key field, in the canonical order (or the configuration's)
    res = run_cli("trace", *addr, "-t", "per_five_tuple", "-k", "SrcIP=10.0.2.15", "--flows", "2")
    header = next(row for row in res.stdout.splitlines() if "SrcIP" in row)
    assert [c.strip() for c in header.strip("┃ ").split("┃")][:7] == [*FIVE, "First seen", "Last seen"]

    res = run_cli("super-spreaders", *addr, "--json", "-t", "ss", "-n", "1")
    assert json.loads(res.stdout)["hitters"][0]["flow"] == "10.0.2.15"
    res = run_cli("heavy-hitters", *addr, "--json", "-t", "cm", "--type", "size", "-n", "2")
    assert len(json.loads(res.stdout)["hitters"]) == 2
    res = run_cli("heavy-hitters", *addr, "-t", "cm")
    assert res.exit_code == 0 and "Heavy hitters" in res.stdout and "Packets" in res.stdout

    # errors: the status code name and the server's message, exit status 1; bad times are usage errors
    res = run_cli("aggregate", *addr, "-t", "nope")
    assert res.exit_code == 1 and "NOT_FOUND" in res.output and "Traceback" not in res.output
    res = run_cli("trace", *addr, "-t", "per_src", "-k", "Bogus=1")
    assert res.exit_code == 1 and "unsupported flow key" in res.output
    res = run_cli("aggregate", *addr, "--end", "yesterday")
    assert res.exit_code == 2 and "is not a time" in res.output
    res = run_cli("aggregate", *addr, "--start", "2024-01-02", "--end", "2024-01-01")
    assert res.exit_code == 2
    res = run_cli("heavy-hitters", *addr, "-t", "cm", "--type", "spread")
    assert res.exit_code == 2


def test_query_cli_errors_name_the_options(chdb_served: Served) -> None:
    """The service names the request's fields as the .proto does (right for gRPC clients); the command
    line says which of its own options was wrong."""
    addr = ["--addr", chdb_served.addr]
    res = run_cli("aggregate", *addr, "-t", "per_five_tuple", "--src-ip", "10.0.2.300")
    assert res.exit_code == 1
    assert "--src-ip: '10.0.2.300' is not an IP address" in " ".join(res.output.split()), res.output
    res = run_cli("aggregate", *addr, "-t", "per_five_tuple", "--start", "2024-01-02", "--end", "2024-01-01")
    assert res.exit_code != 0 and "src_ip" not in res.output and "start_time" not in res.output, res.output


def test_query_cli_trace_keys_in_configuration_order(chdb_served: Served, tmp_path: Path) -> None:
    """With ``-c``, the flow table's key columns follow the task's ``key_fields`` order."""
    conf = tmp_path / "c.yaml"
    text = config_text({"data_dir": "/nonexistent"}).replace(
        "key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]",
        "key_fields: [Protocol, DstPort, DstIP, SrcIP, SrcPort]",
    )
    conf.write_text(text)
    res = run_cli(
        "trace",
        "--addr",
        chdb_served.addr,
        "-t",
        "per_five_tuple",
        "-k",
        "SrcIP=10.0.2.15",
        "--flows",
        "2",
        "-c",
        str(conf),
    )
    assert res.exit_code == 0, res.output
    header = next(row for row in res.stdout.splitlines() if "SrcIP" in row)
    cells = [c.strip() for c in header.strip("┃ ").split("┃")]
    assert cells[:5] == ["Protocol", "DstPort", "DstIP", "SrcIP", "SrcPort"]


def test_api_server_serves_grpc_and_http(chdb_served: Served) -> None:
    """``ApiServer`` (what ``netspectra api`` runs): both protocols on real sockets, one store."""
    import httpx

    server = ApiServer(chdb_served.cfg, "127.0.0.1:0", "127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            got = summaries(
                stub.AggregateFlows(query_pb2.AggregationRequest(task_name="per_src"), timeout=30)
            )
            assert got["per_src"][0] == ALL[0]
        base = f"http://127.0.0.1:{server.http_port}"
        assert httpx.get(base + "/", timeout=10).text == "ok"
        res = httpx.post(base + "/api/v1/aggregate", json={"taskName": "per_src"}, timeout=30)
        assert res.json()["summaries"][0]["totalPackets"] == str(ALL[0])
    finally:
        server.stop(1)


def test_api_command_in_a_process_of_its_own(tmp_path: Path) -> None:
    """``api`` as a command: its own process (its own chdb data directory), SIGINT stops it cleanly."""
    conf = tmp_path / "c.yaml"
    conf.write_text(config_text({"data_dir": str(tmp_path / "chdb")}))
    grpc_port, http_port = closed_port(), closed_port()
    code = (
        "import typer, sys\n"
        "from netspectra.cli.api_cmds import api\n"
        "app = typer.Typer(); app.command()(api); app()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "-c",
            str(conf),
            "--grpc-addr",
            f"127.0.0.1:{grpc_port}",
            "--http-addr",
            f"127.0.0.1:{http_port}",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = query_pb2_grpc.QueryServiceStub(channel)
            assert stub.HealthCheck(query_pb2.HealthCheckRequest(), timeout=10).status == "ok"
            # an empty store: no summaries, no error
            assert not stub.AggregateFlows(query_pb2.AggregationRequest(), timeout=60).summaries
        import httpx

        assert httpx.get(f"http://127.0.0.1:{http_port}/api/v1/tasks", timeout=10).json()["taskNames"][0] == (
            "per_five_tuple"
        )
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert f"port {grpc_port}" in out
    time.sleep(0)


def test_a_second_grpc_server_on_a_port_in_use_is_refused(chdb_served: Served) -> None:
    """gRPC binds with SO_REUSEPORT unless told not to: a second query service on a port in use bound it
    too and the kernel spread the connections over both (two `netspectra api` on one port answered
    AggregateFlows from two different stores, alternately)."""
    with pytest.raises(OSError, match=f"cannot listen on '{chdb_served.addr}' for gRPC"):
        create_grpc_server(chdb_served.core, chdb_served.addr, max_workers=1)
    assert chdb_served.stub.SearchTasks(query_pb2.SearchTasksRequest(), timeout=10).task_names  # still serves
