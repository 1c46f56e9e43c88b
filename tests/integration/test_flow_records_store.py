"""Flow records in ClickHouse (the ``flows`` table) and the ``ListFlows`` query, on the embedded engine
and on a real clickhouse-server (18.16 in CI).

Records come from real flows tasks over real captures (gnutella: IPv4 TCP/UDP with SPLT and statistics;
ip6_esp + QinQ: IPv6 and VLANs, without SPLT or statistics), are written through the ``clickhouse``
writer in two increments, each twice (a retried write), and must read back exactly as
:meth:`FlowRecords.to_arrow` gave them. Filters, order and pages are checked against the same computation
done on the Arrow table; the gRPC, REST and CLI faces against the engine writing through the configuration.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from netspectra.capture.reader import CaptureReader
from netspectra.config.aggregator import WriterConfig
from netspectra.flows.records import FlowRecords
from netspectra.flows.task import FlowParams, FlowTask
from netspectra.storage import SnapshotMeta
from netspectra.storage.clickhouse import ClickHouseWriter, connect_store
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.flow_records import (
    FLOW_ORDERS,
    FlowRecordFilter,
    flow_record_tasks,
    list_flows,
    record_schema,
)
from netspectra.storage.store import ClickHouseStore

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"
IDENTITY = ["TaskName", "FirstSeen", "SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol", "VlanID"]
T_WRITE = 1_800_000_000 * 10**9


def run_task(name: str, captures: list[str], params: FlowParams) -> list[FlowRecords]:
    """Two increments of one flows task over ``captures``: the records ended in the first half of the
    batches, then the rest (the end of the input ends every open flow)."""
    batches = [b for c in captures for b in CaptureReader(CAPTURES / c, batch_size=4096, extras=True)]
    task = FlowTask(name, params)
    parts = []
    for i, b in enumerate(batches):
        task.update(b)
        if i == len(batches) // 2:
            parts.append(task.drain())
    task.finish("end_of_input")
    parts.append(task.drain())
    return parts


@pytest.fixture(scope="module")
def increments() -> dict[str, list[FlowRecords]]:
    return {
        "gnu": run_task(
            "gnu", ["gnutella.pcap"], FlowParams(splt=8, statistics=True, idle_timeout_ns=15 * 10**9)
        ),
        "v6vlan": run_task("v6vlan", ["ip6_esp.pcap", "QinQpacket.pcap"], FlowParams(statistics=False)),
    }


def expected(increments: dict[str, list[FlowRecords]], task: str) -> pa.Table:
    """What the store must give back for ``task``: the Arrow records, with empty SPLT lists where the
    task keeps none."""
    t = pa.concat_tables([r.to_arrow() for r in increments[task]])
    if "SpltSize" not in t.column_names:
        empty = pa.ListArray.from_arrays(
            pa.array(np.zeros(t.num_rows + 1, np.int32)), pa.array([], pa.uint32())
        )
        t = t.append_column("SpltSize", empty)
        t = t.append_column("SpltDirection", empty.cast(pa.list_(pa.uint8())))
    return t.cast(record_schema())


def sort_identity(t: pa.Table) -> pa.Table:
    return t.sort_by([(c, "ascending") for c in IDENTITY])


def write_all(ch: dict[str, object], increments: dict[str, list[FlowRecords]]) -> ClickHouseStore:
    wc = WriterConfig.model_validate(
        {"type": "clickhouse", "enabled": True, "clickhouse": ch}, context={"group": "flows"}
    )
    with ClickHouseWriter(wc, "flows") as w:
        for parts in increments.values():
            for i, part in enumerate(parts):
                meta = SnapshotMeta(T_WRITE + i * 60 * 10**9, T_WRITE, i == len(parts) - 1)
                w.write_flow_records(part, meta)
                w.write_flow_records(part, meta)  # the engine retrying a write it thinks failed
    return connect_store(ClickHouseConfig(**ch))


def unique_database() -> str:
    return f"ns_flows_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def stored_chdb(chdb_data_dir: Path, increments: dict[str, list[FlowRecords]]) -> Iterator[ClickHouseStore]:
    store = write_all({"data_dir": str(chdb_data_dir), "database": unique_database()}, increments)
    yield store
    store.close()


@pytest.fixture(scope="module")
def stored_server(
    clickhouse_server: Any, increments: dict[str, list[FlowRecords]]
) -> Iterator[ClickHouseStore]:
    store = write_all(clickhouse_server.config(), increments)
    yield store
    store.close()


@pytest.fixture(params=["chdb", "server"])
def store(request: pytest.FixtureRequest) -> ClickHouseStore:
    return request.getfixturevalue(f"stored_{request.param}")


def listing(store: ClickHouseStore, **kw: Any) -> pa.Table:
    page = list_flows(store, limit=10_000, **kw)
    assert page.total == page.records.num_rows
    return page.records


def test_records_read_back_exactly_once(
    store: ClickHouseStore, increments: dict[str, list[FlowRecords]]
) -> None:
    assert flow_record_tasks(store) == ["gnu", "v6vlan"]
    for task in increments:
        want = expected(increments, task)
        assert want.num_rows > 10
        got = listing(store, filt=FlowRecordFilter(task=task))
        assert got.schema == want.schema
        assert sort_identity(got).equals(sort_identity(want)), task
    # the data really has what the columns are for
    gnu = expected(increments, "gnu")
    assert pc.sum(pc.list_value_length(gnu["SpltSize"])).as_py() > 0
    assert gnu["SrcToDstIATMean"].null_count < gnu.num_rows
    v6 = expected(increments, "v6vlan")
    assert pc.any(pc.greater(v6["VlanID"], 0)).as_py()
    assert pc.any(pc.match_substring(v6["SrcIP"], ":")).as_py()


def _check(store: ClickHouseStore, want: pa.Table, mask: Any, **kw: Any) -> None:
    got = listing(store, **kw)
    assert sort_identity(got).equals(sort_identity(want.filter(mask))), kw
    assert got.num_rows > 0, f"{kw}: a filter that matches nothing checks nothing"


def test_filters_match_the_same_selection_on_the_records(
    store: ClickHouseStore, increments: dict[str, list[FlowRecords]]
) -> None:
    gnu = expected(increments, "gnu")
    task = FlowRecordFilter(task="gnu")
    from collections import Counter

    host = Counter(gnu["SrcIP"].to_pylist() + gnu["DstIP"].to_pylist()).most_common(1)[0][0]
    port = Counter(gnu["DstPort"].to_pylist()).most_common(1)[0][0]
    either = pc.or_(pc.equal(gnu["SrcIP"], host), pc.equal(gnu["DstIP"], host))
    _check(store, gnu, either, filt=FlowRecordFilter(task="gnu", host=host))
    _check(store, gnu, pc.equal(gnu["SrcIP"], host), filt=FlowRecordFilter(task="gnu", src_ip=host))
    _check(
        store,
        gnu,
        pc.or_(pc.equal(gnu["SrcPort"], port), pc.equal(gnu["DstPort"], port)),
        filt=FlowRecordFilter(task="gnu", port=str(port)),
    )
    _check(store, gnu, pc.equal(gnu["Protocol"], 17), filt=FlowRecordFilter(task="gnu", protocol=17))
    _check(
        store,
        gnu,
        pc.is_in(gnu["EndReason"], pa.array(["idle"])),
        filt=FlowRecordFilter(task="gnu", end_reasons=("idle",)),
    )
    states = ("S0", "SF", "REJ")
    _check(
        store,
        gnu,
        pc.is_in(gnu["ConnState"], pa.array(states)),
        filt=FlowRecordFilter(task="gnu", conn_states=states),
    )
    total = pc.add(gnu["SrcToDstBytes"], gnu["DstToSrcBytes"])
    _check(store, gnu, pc.greater_equal(total, 5000), filt=FlowRecordFilter(task="gnu", min_bytes=5000))
    # a time range selects the records active in it: first packet at or before its end, last at or after
    # its start
    first = gnu["FirstSeen"].cast(pa.int64()).to_numpy()
    last = gnu["LastSeen"].cast(pa.int64()).to_numpy()
    lo, hi = np.quantile(first, 0.3).astype(np.int64), np.quantile(first, 0.6).astype(np.int64)
    _check(store, gnu, (first <= hi) & (last >= lo), filt=task, start_ns=int(lo), end_ns=int(hi))
    # a combination: every condition at once
    v6 = expected(increments, "v6vlan")
    vlan = int(pc.max(v6["VlanID"]).as_py())
    _check(store, v6, pc.equal(v6["VlanID"], vlan), filt=FlowRecordFilter(task="v6vlan", vlan_id=vlan))
    none = list_flows(store, FlowRecordFilter(task="gnu", host="192.0.2.254"))
    assert none.total == 0 and none.records.num_rows == 0 and none.records.schema == record_schema()


@pytest.mark.parametrize("order_by", FLOW_ORDERS)
def test_order_and_pages(
    store: ClickHouseStore, increments: dict[str, list[FlowRecords]], order_by: str
) -> None:
    gnu = expected(increments, "gnu")
    sort_value = {
        "first_seen": gnu["FirstSeen"].cast(pa.int64()),
        "last_seen": gnu["LastSeen"].cast(pa.int64()),
        "duration": gnu["Duration"].cast(pa.int64()),
        "bytes": pc.add(gnu["SrcToDstBytes"], gnu["DstToSrcBytes"]),
        "packets": pc.add(gnu["SrcToDstPackets"], gnu["DstToSrcPackets"]),
    }[order_by]
    filt = FlowRecordFilter(task="gnu")
    pages = []
    offset = 0
    while True:
        page = list_flows(store, filt, order_by=order_by, descending=True, limit=97, offset=offset)  # type: ignore[arg-type]
        assert page.total == gnu.num_rows
        pages.append(page.records)
        offset += 97
        if offset >= page.total:
            break
    got = pa.concat_tables(pages)
    assert len(sort_value) == got.num_rows == gnu.num_rows
    # sorted by the value, descending; pages neither overlap nor miss a record
    got_values = {
        "first_seen": got["FirstSeen"].cast(pa.int64()),
        "last_seen": got["LastSeen"].cast(pa.int64()),
        "duration": got["Duration"].cast(pa.int64()),
        "bytes": pc.add(got["SrcToDstBytes"], got["DstToSrcBytes"]),
        "packets": pc.add(got["SrcToDstPackets"], got["DstToSrcPackets"]),
    }[order_by].to_numpy()
    assert (np.diff(got_values.astype(np.int64)) <= 0).all()
    assert sort_identity(got).equals(sort_identity(gnu))


def test_bad_arguments_are_refused_before_any_query(stored_chdb: ClickHouseStore) -> None:
    for kw, words in (
        ({"host": "10.0.0.300"}, "host"),
        ({"src_port": 70000}, "SrcPort"),
        ({"protocol": "tcp"}, "Protocol"),
        ({"vlan_id": 5000}, "VlanID"),
        ({"end_reasons": ("nope",)}, "EndReason"),
        ({"conn_states": ("XX",)}, "ConnState"),
    ):
        with pytest.raises(ValueError, match=words):
            FlowRecordFilter(**kw)
    with pytest.raises(ValueError, match="order_by"):
        list_flows(stored_chdb, order_by="size")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="start_ns"):
        list_flows(stored_chdb, start_ns=10, end_ns=5)
    with pytest.raises(ValueError, match="offset"):
        list_flows(stored_chdb, offset=-1)
    # values that look like SQL are values
    assert list_flows(stored_chdb, FlowRecordFilter(task="gnu' OR '1'='1")).total == 0


# --------------------------------------------------------------------------------------------------
# Through the configuration: engine → writer → ListFlows over gRPC, REST and the CLI
# --------------------------------------------------------------------------------------------------


def config_text(ch: dict[str, object]) -> str:
    block = "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in ch.items()) + "}"
    writer = f"[{{type: clickhouse, enabled: true, snapshot_interval: 60s, clickhouse: {block}}}]"
    return (
        "api: {grpc_listen_addr: '127.0.0.1:0', http_listen_addr: '127.0.0.1:0'}\n"
        "aggregator:\n  types: [exact, flows]\n  num_workers: 2\n"
        f"  exact:\n    writers: {writer}\n"
        "    tasks:\n      - {name: per_src, key_fields: [SrcIP]}\n"
        f"  flows:\n    writers: {writer}\n"
        "    tasks:\n      - {name: conns, idle_timeout: 15s, splt: 4}\n"
    )


@pytest.fixture(scope="module")
def served(chdb_data_dir: Path) -> Iterator[tuple[Any, str, pa.Table]]:
    """A configuration with a flows task writing to chdb, filled by the engine from gnutella.pcap, and a
    query service (gRPC on 127.0.0.1) over it; yields (core, gRPC address, the records run directly)."""
    pytest.importorskip("fastapi")
    from netspectra.api.grpc_service import QueryCore, create_grpc_server
    from netspectra.config import parse_config_text
    from netspectra.engine.manager import Manager, ManualClock

    cfg = parse_config_text(config_text({"data_dir": str(chdb_data_dir), "database": unique_database()}))
    clock = ManualClock(1_704_067_200 * 10**9)
    manager = Manager.from_config(cfg, clock=clock)
    manager.start()
    try:
        for b in CaptureReader(CAPTURES / "gnutella.pcap", batch_size=8192, extras=True):
            manager.submit(b)
        assert manager.flush(60)
    finally:
        manager.stop(end_of_input=True)
    truth = [r for r in run_task("conns", ["gnutella.pcap"], FlowParams(splt=4, idle_timeout_ns=15 * 10**9))]
    core = QueryCore(cfg)
    server, port, _ = create_grpc_server(core, "127.0.0.1:0")
    server.start()
    yield core, f"127.0.0.1:{port}", pa.concat_tables([r.to_arrow() for r in truth])
    server.stop(None)
    core.close()


def test_list_flows_over_grpc_pages_every_record(served: tuple[Any, str, pa.Table]) -> None:
    from netspectra.proto.v1 import query_pb2, query_pb2_grpc

    _, addr, truth = served
    with grpc.insecure_channel(addr) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        req = query_pb2.ListFlowsRequest(
            task_name="conns", order_by=query_pb2.FLOW_ORDER_BYTES, descending=True, page_size=200
        )
        seen = []
        while True:
            resp = stub.ListFlows(req, timeout=30)
            assert resp.total == truth.num_rows
            seen.extend(resp.flows)
            if not resp.next_page_token:
                break
            req.page_token = resp.next_page_token
        assert len(seen) == truth.num_rows
        totals = [f.src_to_dst_bytes + f.dst_to_src_bytes for f in seen]
        assert totals == sorted(totals, reverse=True)
        # every record is the task's record, field by field (matched on its identity)
        plain = truth.set_column(
            truth.schema.get_field_index("FirstSeen"), "FirstSeen", truth["FirstSeen"].cast(pa.int64())
        )
        rows = {
            (r["SrcIP"], r["DstIP"], r["SrcPort"], r["DstPort"], r["FirstSeen"]): r for r in plain.to_pylist()
        }
        assert len(rows) == truth.num_rows
        assert max(totals) == int(pc.max(pc.add(truth["SrcToDstBytes"], truth["DstToSrcBytes"])).as_py())
        for f in seen:
            row = rows[
                (
                    f.src_ip,
                    f.dst_ip,
                    f.src_port,
                    f.dst_port,
                    f.first_seen.seconds * 10**9 + f.first_seen.nanos,
                )
            ]
            assert (f.src_to_dst_packets, f.dst_to_src_bytes) == (
                row["SrcToDstPackets"],
                row["DstToSrcBytes"],
            )
            assert f.end_reason == row["EndReason"]
            assert list(f.splt_size) == row["SpltSize"] and list(f.splt_direction) == row["SpltDirection"]
            assert f.HasField("conn_state") == (row["ConnState"] is not None)
            if row["SrcToDstSizeMean"] is not None:
                assert f.src_to_dst_size_mean == pytest.approx(row["SrcToDstSizeMean"])
            assert f.HasField("dst_to_src_iat_mean_ns") == (row["DstToSrcIATMean"] is not None)
        # errors: the right code and a one-line reason
        for request, code, words in (
            (query_pb2.ListFlowsRequest(), grpc.StatusCode.INVALID_ARGUMENT, "task_name is required"),
            (query_pb2.ListFlowsRequest(task_name="nope"), grpc.StatusCode.NOT_FOUND, "unknown task"),
            (
                query_pb2.ListFlowsRequest(task_name="per_src"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "AggregateFlows",
            ),
            (
                query_pb2.ListFlowsRequest(task_name="conns", end_reasons=["later"]),
                grpc.StatusCode.INVALID_ARGUMENT,
                "end_reasons: 'later' is not one of",  # the request's field, not the column EndReason
            ),
            (
                query_pb2.ListFlowsRequest(task_name="conns", page_token="garbage"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "page_token",
            ),
        ):
            with pytest.raises(grpc.RpcError) as err:
                stub.ListFlows(request, timeout=30)
            assert err.value.code() == code
            assert words in err.value.details()


def test_list_flows_over_rest_and_the_cli(served: tuple[Any, str, pa.Table]) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from netspectra.api.http_app import create_app
    from netspectra.cli.api_cmds import query_app

    core, addr, truth = served
    udp = int(pc.sum(pc.equal(truth["Protocol"], 17)).as_py())
    with TestClient(create_app(core)) as client:
        r = client.post("/api/v1/flows", json={"taskName": "conns", "protocol": 17, "pageSize": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert int(body["total"]) == udp and len(body["flows"]) == min(5, udp)
        assert all(f["protocol"] == 17 for f in body["flows"])
        assert body["flows"][0]["firstSeen"].endswith("Z")
        bad = client.post("/api/v1/flows", json={"taskName": "conns", "srcIp": "not-an-ip"})
        # named as the body named it (the column is SrcIP, the .proto's field src_ip)
        assert bad.status_code == 400 and bad.json()["message"].startswith("srcIp: 'not-an-ip' is not an IP")
    runner = CliRunner()
    out = runner.invoke(
        query_app, ["flows", "-t", "conns", "--addr", addr, "--protocol", "17", "-n", "3", "--json"]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert len(doc["flows"]) == min(3, udp) and int(doc["total"]) == udp
    out = runner.invoke(
        query_app, ["flows", "-t", "conns", "--addr", addr, "--sort", "bytes", "--desc", "-n", "5"]
    )
    assert out.exit_code == 0, out.output
    assert "Flow records — task conns: 5 of" in out.output
    out = runner.invoke(query_app, ["flows", "-t", "conns", "--addr", addr, "--sort", "size"])
    assert out.exit_code != 0 and "--sort" in out.output


def test_flows_retention_drops_old_record_days_and_only_those(
    chdb_data_dir: Path, increments: dict[str, list[FlowRecords]]
) -> None:
    """``clickhouse.flows_retention`` drops the days of records whose newest write is older than it;
    ``retention`` (the aggregates') does not touch them, and without it nothing of theirs is dropped."""
    day = 86_400 * 10**9
    ch = {"data_dir": str(chdb_data_dir), "database": unique_database(), "flows_retention": "168h"}
    store = write_all(ch, increments)
    try:
        n = list_flows(store).total
        assert n > 0
        assert store.expire(now_ns=T_WRITE + 6 * day) == []  # a week is not over
        assert list_flows(store).total == n
        dropped = store.expire(now_ns=T_WRITE + 8 * day)
        assert dropped, "the record days should have expired"
        assert list_flows(store).total == 0
    finally:
        store.close()
    aggregates_only = {"data_dir": str(chdb_data_dir), "database": unique_database(), "retention": "1h"}
    store = write_all(aggregates_only, increments)
    try:
        n = list_flows(store).total
        store.expire(now_ns=T_WRITE + 30 * day)
        assert list_flows(store).total == n
    finally:
        store.close()
