"""Rollups in ClickHouse, on the embedded engine and on a real clickhouse-server (18.16 in CI): the engine
(enrichment stage, an exact and a rollup task, periodic snapshots, two period ends, every write retried)
over traffic that crosses midnight, with late packets and exported flow records spread over several
minutes. Every range of whole buckets of every rollup table must give the totals of the traffic itself,
and the whole range the totals of the full-resolution ``flow_metrics``; ``TopN`` answers from the
coarsest table that answers and says which, over gRPC, REST and the CLI."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from typer.testing import CliRunner

from netspectra.batch import PacketBatch
from netspectra.config.aggregator import WriterConfig
from netspectra.config.models import Config
from netspectra.engine.enrichment import EnrichmentStage
from netspectra.engine.manager import Manager, ManualClock
from netspectra.engine.registry import build_groups
from netspectra.rollup import kernels as kern
from netspectra.rollup.dims import RESOLUTIONS
from netspectra.storage.clickhouse import ClickHouseWriter
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.queries import aggregate_flows
from netspectra.storage.rollups import DimensionFilter, choose_rollup, top_n, traffic_series
from netspectra.storage.store import ClickHouseStore, connect_store

MIN = 60 * 10**9
DAY = 86_400 * 10**9
#: 23:35 UTC, 2019-06-01: the traffic runs 50 minutes, across midnight (and two hours).
T0 = 1_559_347_200 * 10**9 + DAY - 25 * MIN
#: When the engine ran (its snapshots' time): years after the traffic.
T_RUN = 1_800_000_000 * 10**9
NETWORKS = {"10.0.0.0/8": {"name": "lan", "asn": 64500}, "10.1.0.0/16": {"name": "lab", "asn": 64501}}
DIMS = ["Protocol", "SrcAS", "SrcNetName", "Exporter", "InIf"]


class Twice:
    """A writer that stores every snapshot twice: the engine retrying a write it thinks failed."""

    def __init__(self, inner: ClickHouseWriter) -> None:
        self.inner = inner

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def write_flows(self, snap: Any, meta: Any) -> None:
        self.inner.write_flows(snap, meta)
        self.inner.write_flows(snap, meta)

    def write_rollups(self, snap: Any, meta: Any) -> None:
        self.inner.write_rollups(snap, meta)
        self.inner.write_rollups(snap, meta)


def traffic(seed: int = 3) -> list[PacketBatch]:
    """50 minutes of packets (10.x sources) and, every fifth batch, exported flow records (spans up to
    8 minutes, counts sampled up); batches reach back 2 minutes (late packets)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(50):
        export = k % 5 == 4
        n = 400 if export else 3000
        b = PacketBatch.empty(n, PacketBatch.EXPORT_COLUMNS if export else ())
        b.ts_ns[:] = T0 + k * MIN + rng.integers(-2 * MIN, MIN, n)
        b.src_ip[:] = 0
        b.src_ip[:, 10:12] = 0xFF
        b.src_ip[:, 12] = rng.choice([10, 192], n)
        b.src_ip[:, 13] = rng.integers(0, 3, n)
        b.src_ip[:, 15] = rng.integers(1, 200, n)
        b.dst_ip[:] = b.src_ip[::-1]
        b.src_port[:] = rng.integers(1024, 1100, n)
        b.dst_port[:] = 443
        b.protocol[:] = rng.choice(np.array([6, 17], np.uint8), n)
        b.length[:] = rng.integers(60, 1500, n)
        if export:
            b.flow_start_ns[:] = b.ts_ns - rng.integers(0, 8 * MIN, n)
            b.packets[:] = rng.integers(1, 1000, n)
            b.octets[:] = b.packets * rng.integers(60, 1500, n).astype(np.uint64)
            b.sampling_rate[:] = 1
            b.in_if[:] = rng.integers(1, 3, n)
            b.out_if[:] = 0
            b.exporter[:] = 0
            b.exporter[:, 10:12] = 0xFF
            b.exporter[:, 12:] = [192, 0, 2, 254]
        out.append(b)
    return out


def truth(batches: list[PacketBatch], width_s: int) -> dict[int, tuple[int, int]]:
    """Bucket start (ns) at ``width_s`` -> (packets, bytes), row by row with the reference split."""
    out: dict[int, list[int]] = {}
    ratio = width_s // 60
    for b in batches:
        packets = b.packet_counts()
        nbytes = b.byte_counts()
        starts = b.flow_start_ns if b.flow_start_ns is not None else b.ts_ns
        for i in range(len(b)):
            split = kern.split_ref(int(starts[i]), int(b.ts_ns[i]), int(packets[i]), int(nbytes[i]), MIN, DAY)
            for k, (p, y) in split.items():
                got = out.setdefault((k // ratio) * width_s * 10**9, [0, 0])
                got[0] += p
                got[1] += y
    return {k: (p, y) for k, (p, y) in out.items()}


def engine_config(ch: dict[str, object], before: Sequence[dict[str, object]] = ()) -> Config:
    """The configuration of the run (``before``: rollup tasks listed ahead of ``traffic``)."""
    writer = {"type": "clickhouse", "enabled": True, "snapshot_interval": "60s", "clickhouse": ch}
    return Config.model_validate(
        {
            "aggregator": {
                "types": ["exact", "rollup"],
                "exact": {
                    "writers": [writer],
                    "tasks": [{"name": "five", "key_fields": ["SrcIP", "DstIP", "SrcPort"]}],
                },
                "rollup": {
                    "writers": [writer],
                    "tasks": [*before, {"name": "traffic", "dimensions": DIMS, "close_after": "30s"}],
                },
            },
            "enrichment": {"networks": NETWORKS},
        }
    )


def run_engine(ch: dict[str, object], batches: list[PacketBatch]) -> None:
    """The batches through a manager (ManualClock): a snapshot to the writers every 60 s of its clock
    (every 4 batches), period ends after batch 17 and 34, every write done twice."""
    cfg = engine_config(ch)
    groups = []
    for g in build_groups(cfg):
        writers = tuple(
            replace(gw, writer=Twice(ClickHouseWriter(WriterConfig.model_validate(
                {"type": "clickhouse", "enabled": True, "clickhouse": ch}, context={"group": g.name}
            ), g.name)))
            for gw in g.writers
        )  # fmt: skip
        groups.append(replace(g, writers=writers))
    clock = ManualClock(T_RUN)
    m = Manager(groups, clock=clock, num_workers=2, enrichment=EnrichmentStage.from_config(cfg))
    m.start()
    for i, b in enumerate(batches):
        m.submit(b)
        if i % 4 == 3:
            m.flush()
            clock.advance(60)
            assert m.settle(60)
        if i in (17, 34):
            m.flush()
            m.end_period()
    m.flush()
    m.stop(end_of_input=True)
    lost = {name: w["dropped"] for name, w in m.metrics_dict()["writers"].items() if w["dropped"]}
    assert not lost, lost
    assert m.metrics.periods.value == 2


@dataclass
class Stored:
    store: ClickHouseStore
    batches: list[PacketBatch]


def _stored(ch: dict[str, object]) -> Iterator[Stored]:
    batches = traffic()
    run_engine(ch, batches)
    store = connect_store(ClickHouseConfig(**ch))
    try:
        yield Stored(store, batches)
    finally:
        store.close()


@pytest.fixture(scope="module", params=["chdb", "server"])
def stored(request: pytest.FixtureRequest, chdb_data_dir: Path) -> Iterator[Stored]:
    database = f"ns_rollup_{uuid.uuid4().hex[:10]}"
    if request.param == "chdb":
        ch: dict[str, object] = {"data_dir": str(chdb_data_dir), "database": database}
    else:
        ch = request.getfixturevalue("clickhouse_server").config(database)
    yield from _stored(ch)


def check_ranges(store: ClickHouseStore, batches: list[PacketBatch], seed: int = 1) -> None:
    """Random ranges of whole buckets of each table (across midnight and the periods): totals = truth."""
    rng = np.random.default_rng(seed)
    for res in RESOLUTIONS:
        want = truth(batches, res.seconds)
        keys = sorted(want)
        for _ in range(6):
            a, b = sorted(rng.choice(len(keys), 2, replace=False).tolist())
            lo, hi = keys[a], keys[b] + res.ns
            top = top_n(
                store, "traffic", "Protocol", "bytes", (), lo, hi, resolution_s=res.seconds, now_ns=T0
            )
            assert top.choice.table == res.table and (top.choice.start_ns, top.choice.end_ns) == (lo, hi)
            expect_p = sum(want[k][0] for k in keys[a : b + 1])
            expect_b = sum(want[k][1] for k in keys[a : b + 1])
            assert (top.total_packets, top.total_bytes) == (expect_p, expect_b), (res.label, lo, hi)
            assert sum(v.bytes for v in top.values) == expect_b  # two protocols: both shown


def test_every_range_of_every_rollup_equals_the_traffic(stored: Stored) -> None:
    check_ranges(stored.store, stored.batches)


def test_the_whole_range_equals_the_full_resolution_table(stored: Stored) -> None:
    """Captured packets (no exporter) in the rollups = the exact task's ``flow_metrics`` totals minus
    what the exact task makes of the exported records (counted by an exact task in this process, so the
    check holds whether the task counts a record as its packets or as one row)."""
    from netspectra.tasks.exact import ExactTask

    (exact,) = aggregate_flows(stored.store, task="five")
    local = ExactTask("five", ("SrcIP", "DstIP", "SrcPort"))
    for b in stored.batches:
        if b.exporter is not None:
            local.update(b)
    snap = local.snapshot()
    exported = (int(snap.packets.sum()), int(snap.bytes.sum()))
    captured = [b for b in stored.batches if b.exporter is None]
    want = (sum(len(b) for b in captured), sum(int(b.length.sum()) for b in captured))
    assert (exact.total_packets - exported[0], exact.total_bytes - exported[1]) == want
    no_exporter = [DimensionFilter("Exporter", ("",))]
    everything = (
        sum(int(b.packet_counts().sum()) for b in stored.batches),
        sum(int(b.byte_counts().sum()) for b in stored.batches),
    )
    for res in RESOLUTIONS:
        top = top_n(
            stored.store, "traffic", "SrcAS", "bytes", no_exporter, resolution_s=res.seconds, now_ns=T0
        )
        assert (top.total_packets, top.total_bytes) == want, res.label
        every = top_n(stored.store, "traffic", "SrcAS", resolution_s=res.seconds, now_ns=T0)
        assert (every.total_packets, every.total_bytes) == everything, res.label
    # several periods were stored, and the retried writes counted once (above)
    periods = stored.store.query(f"SELECT uniqExact(PeriodStartNs) FROM {stored.store.table('rollup_1m')}")
    assert periods[0][0] == 3


def test_traffic_has_its_own_time_and_words(stored: Stored) -> None:
    """The 2019 traffic is in 2019's buckets (not at the engine's time), enriched: ASes and names of the
    networks map, the exporters' addresses, interfaces; filters narrow, ``exclude`` inverts."""
    s = stored.store
    hours = s.query(f"SELECT DISTINCT toString(Bucket) FROM {s.table('rollup_1h')} FINAL ORDER BY 1")
    assert [h[0] for h in hours] == ["2019-06-01 23:00:00", "2019-06-02 00:00:00"]
    top = top_n(s, "traffic", "SrcNetName", now_ns=T0)
    assert {v.value for v in top.values} == {"lan", "lab", ""}
    lab = top_n(s, "traffic", "SrcAS", filters=[DimensionFilter("SrcNetName", ("lab",))], now_ns=T0)
    assert [v.value for v in lab.values] == ["64501"]
    not_lab = top_n(s, "traffic", "SrcAS", filters=[DimensionFilter("SrcNetName", ("lab",), True)], now_ns=T0)
    assert {v.value for v in not_lab.values} == {"64500", "0"}
    assert lab.total_bytes + not_lab.total_bytes == top.total_bytes
    exp = top_n(s, "traffic", "Exporter", filters=[DimensionFilter("InIf", ("1", "2"))], now_ns=T0)
    assert [v.value for v in exp.values] == ["192.0.2.254"]
    series = traffic_series(s, "traffic", "packets", T0 - 15 * MIN, T0 + 60 * MIN, step_s=300, now_ns=T0)
    assert series.choice.table == "rollup_5m" and series.step_s == 300
    assert sum(v for _, v in series.series["total"]) == top.total_packets
    by_name = traffic_series(
        s,
        "traffic",
        "bytes",
        T0 - 15 * MIN,
        T0 + 60 * MIN,
        step_s=60,
        dimension="SrcNetName",
        top=2,
        now_ns=T0,
    )
    assert set(by_name.series) == {*by_name.values, "other"} and len(by_name.values) == 2
    assert sum(x for pts in by_name.series.values() for _, x in pts) == top.total_bytes


def test_old_traffic_stored_recently_is_read_at_full_resolution(stored: Stored) -> None:
    """The traffic is from 2019, stored years later (retention counts from the writes): with the real clock
    the 1-minute rows answer although the range starts long before ``rollup_1m_retention`` — a capture
    shows its own timeline minute by minute; a task whose finer rows are gone falls back to the table that
    has them."""
    store = stored.store
    want = truth(stored.batches, 60)
    lo, hi = min(want), max(want) + MIN
    top = top_n(store, "traffic", "Protocol", "bytes", (), lo, hi, resolution_s=60)  # now: the clock
    assert top.choice.table == "rollup_1m" and "written since" in top.choice.reason
    assert (top.total_packets, top.total_bytes) == tuple(sum(v[i] for v in want.values()) for i in (0, 1))
    series = traffic_series(store, "traffic", "packets", lo, hi, 60)
    assert series.choice.table == "rollup_1m" and series.step_s == 60
    assert dict(series.series["total"]) == {k: p for k, (p, _) in want.items()}
    # "everything" (from 0 to now, no step: a dashboard's default): the points spread over the traffic
    everything = traffic_series(store, "traffic", "packets", 0, time.time_ns(), max_points=500)
    assert everything.choice.table == "rollup_1m" and everything.step_s == 60
    assert everything.series == series.series
    # rows of a task only in rollup_1h (its finer rows dropped): the finer tables are not read
    hour = lo - lo % (3600 * 10**9)
    store.execute(
        f"INSERT INTO {store.table('rollup_1h')} (TimestampNs, PeriodStartNs, TaskName, BucketNs, Epoch, "
        f"Protocol, Packets, Bytes) SELECT {T_RUN}, {hour}, 'gone', {hour}, 0, 6, 5, 500"
    )
    gone = top_n(store, "gone", "Protocol", "bytes", (), lo, hi, resolution_s=60)
    assert gone.choice.table == "rollup_1h" and "rollup_1m_retention" in gone.choice.reason
    assert (gone.total_packets, gone.total_bytes) == (5, 500)
    nothing = top_n(store, "no-such-task", "Protocol", "bytes", (), lo, hi, resolution_s=60)
    assert nothing.choice.table == "rollup_1h" and nothing.total_packets == 0


def test_choice_of_table_follows_resolution_and_retention() -> None:
    cfg = ClickHouseConfig(data_dir="/unused")
    now = T0 + 400 * DAY
    month = (T0, T0 + 30 * DAY)
    assert choose_rollup(cfg, *month, now_ns=T0).table == "rollup_1h"  # a hundredth of 30 days: 7.2 h
    assert choose_rollup(cfg, T0, T0 + DAY, now_ns=T0).table == "rollup_5m"  # 14.4 min
    assert choose_rollup(cfg, T0, T0 + 3600 * 10**9, now_ns=T0).table == "rollup_1m"  # 36 s
    assert choose_rollup(cfg, T0, T0 + DAY, resolution_s=60, now_ns=T0).table == "rollup_1m"
    c = choose_rollup(cfg, T0, T0 + DAY, resolution_s=60, now_ns=now)  # 1m rows kept a week, 5m 90 days
    assert c.table == "rollup_1h" and "rollup_1m_retention" in c.reason
    forever = ClickHouseConfig(data_dir="/unused", rollup_1m_retention="0")
    assert choose_rollup(forever, T0, T0 + DAY, resolution_s=60, now_ns=now).table == "rollup_1m"
    edges = choose_rollup(cfg, T0 + 7, T0 + DAY - 7, resolution_s=300, now_ns=T0)
    assert (edges.start_ns, edges.end_ns) == (T0 - T0 % (300 * 10**9), T0 + DAY)  # widened to whole buckets
    assert choose_rollup(cfg, None, None, now_ns=T0).table == "rollup_1h"


def test_filter_values_no_classified_row_can_hold_are_refused() -> None:
    # the classifiers store lower case, a-z 0-9 . + - only, and a boundary is external or internal: a
    # filter value outside that matched nothing and said nothing (an empty top-N for "externl")
    with pytest.raises(
        ValueError, match=r"InIfBoundary: 'externl' is not a boundary \(did you mean 'external'"
    ):
        DimensionFilter("InIfBoundary", ("externl",))
    assert DimensionFilter("OutIfBoundary", ("External", "")).values == ("external", "")
    assert DimensionFilter("InIfProvider", ("Cogent",)).values == ("cogent",)
    with pytest.raises(ValueError, match=r"OutIfConnectivity: 'Transit IP'.*write 'transitip'"):
        DimensionFilter("OutIfConnectivity", ("Transit IP",))
    assert DimensionFilter("ExporterGroup", ("Paris",)).values == ("paris",)
    # names come from the configuration as written: kept
    assert DimensionFilter("SrcNetName", ("Lab 2",)).values == ("Lab 2",)
    assert DimensionFilter("ExporterName", ("Edge1.Example",)).values == ("Edge1.Example",)


# --------------------------------------------------------------------------------------------------
# TopN over gRPC, REST and the CLI
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(stored: Stored) -> Iterator[tuple[Any, str]]:
    from netspectra.api.grpc_service import QueryCore, create_grpc_server

    cfg = engine_config(stored.store.cfg.model_dump(exclude_defaults=True))
    core = QueryCore(cfg)
    server, port, _ = create_grpc_server(core, "127.0.0.1:0")
    server.start()
    yield core, f"127.0.0.1:{port}"
    server.stop(None)
    core.close()


def test_topn_over_grpc_says_which_table(served: tuple[Any, str], stored: Stored) -> None:
    from netspectra.proto.v1 import query_pb2, query_pb2_grpc

    _, addr = served
    with grpc.insecure_channel(addr) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        req = query_pb2.TopNRequest(dimension="SrcAS", limit=2)
        req.start_time.FromNanoseconds(T0 - 10 * MIN)
        req.end_time.FromNanoseconds(T0 + 70 * MIN)
        resp = stub.TopN(req, timeout=30)
        want = top_n(stored.store, "traffic", "SrcAS", "bytes", (), T0 - 10 * MIN, T0 + 70 * MIN, 2)
        assert [(e.value, e.bytes) for e in resp.entries] == [(v.value, v.bytes) for v in want.values]
        assert resp.task_name == "traffic" and resp.table == want.choice.table and resp.reason
        assert resp.distinct_values == 3 and resp.total_bytes == want.total_bytes
        assert resp.start_time.ToNanoseconds() == want.choice.start_ns
        # an empty answer says why: no traffic in the range (and where it is), or none matching the filters
        empty = query_pb2.TopNRequest(dimension="SrcAS")
        empty.start_time.FromNanoseconds(T0 - 400 * DAY)
        empty.end_time.FromNanoseconds(T0 - 399 * DAY)
        none = stub.TopN(empty, timeout=30)
        assert not none.entries and none.table and none.total_bytes == 0
        assert (
            "no traffic in the range: rollup task 'traffic' holds traffic in the hours from 2019-06-01T"
            in none.reason
        )
        empty.start_time.FromNanoseconds(T0 - 10 * MIN)
        empty.end_time.FromNanoseconds(T0 + 70 * MIN)
        empty.filters.add(dimension="SrcNetName", values=["nowhere"])
        filtered = stub.TopN(empty, timeout=30)
        assert not filtered.entries and filtered.reason.endswith(
            "; no traffic in the range matches the filters"
        )
        assert "no traffic" not in resp.reason
        pk = stub.TopN(
            query_pb2.TopNRequest(dimension="Protocol", metric=query_pb2.TOP_METRIC_PACKETS), timeout=30
        )
        assert [e.packets for e in pk.entries] == sorted((e.packets for e in pk.entries), reverse=True)
        point = query_pb2.TopNRequest(dimension="SrcAS")  # [t, t): empty, not the minute around t
        point.start_time.FromNanoseconds(T0 + 30 * 10**9)
        point.end_time.FromNanoseconds(T0 + 30 * 10**9)
        for request, code, words in (
            (point, grpc.StatusCode.INVALID_ARGUMENT, "start_time equals end_time: the range is empty"),
            (query_pb2.TopNRequest(), grpc.StatusCode.INVALID_ARGUMENT, "dimension is required"),
            (
                query_pb2.TopNRequest(dimension="SrcAs"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "did you mean 'SrcAS'",
            ),
            (query_pb2.TopNRequest(dimension="DstAS"), grpc.StatusCode.INVALID_ARGUMENT, "keyed on DstAS"),
            (  # which dimensions the tasks have (the auto ones depend on the enrichment section)
                query_pb2.TopNRequest(dimension="DstAS"),
                grpc.StatusCode.INVALID_ARGUMENT,
                f"traffic: {', '.join(DIMS)}",
            ),
            (
                query_pb2.TopNRequest(dimension="SrcAS", task_name="five"),
                grpc.StatusCode.INVALID_ARGUMENT,
                "AggregateFlows",
            ),
            (
                query_pb2.TopNRequest(
                    dimension="SrcAS", filters=[query_pb2.DimensionFilter(dimension="SrcAS", values=["x"])]
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "not a number",
            ),
        ):
            with pytest.raises(grpc.RpcError) as err:
                stub.TopN(request, timeout=30)
            assert err.value.code() == code and words in err.value.details(), err.value.details()


def test_topn_without_a_task_reads_the_task_that_holds_the_range(stored: Stored) -> None:
    """Without ``task_name``, TopN answers from a rollup task keyed on the dimension that stored traffic in
    the range (the fewest dimensions first), not from the first one of the configuration: a task added
    later ("wide", listed first, keyed on more) holds none of it. A range no task holds: the first fitting
    task says why."""
    from netspectra.api.grpc_service import QueryCore
    from netspectra.proto.v1 import query_pb2

    wide = {"name": "wide", "dimensions": [*DIMS, "DstNetName"]}
    core = QueryCore(engine_config(stored.store.cfg.model_dump(exclude_defaults=True), [wide]))
    try:
        req = query_pb2.TopNRequest(dimension="SrcAS", limit=2)
        req.start_time.FromNanoseconds(T0 - 10 * MIN)
        req.end_time.FromNanoseconds(T0 + 70 * MIN)
        resp = core.top_n(req)
        want = top_n(stored.store, "traffic", "SrcAS", "bytes", (), T0 - 10 * MIN, T0 + 70 * MIN, 2)
        assert resp.task_name == "traffic" and resp.entries  # was "wide", empty
        assert [(e.value, e.bytes) for e in resp.entries] == [(v.value, v.bytes) for v in want.values]
        assert resp.total_bytes == want.total_bytes
        req.start_time.FromNanoseconds(T0 - 400 * DAY)
        req.end_time.FromNanoseconds(T0 - 399 * DAY)
        none = core.top_n(req)
        assert none.task_name == "wide" and not none.entries
        assert "rollup task 'wide' has stored no traffic" in none.reason
    finally:
        core.close()


def test_topn_over_rest_grafana_and_the_cli(served: tuple[Any, str], stored: Stored) -> None:
    from fastapi.testclient import TestClient

    from netspectra.api.http_app import create_app
    from netspectra.cli.api_cmds import query_app

    core, addr = served
    total = top_n(stored.store, "traffic", "SrcNetName").total_bytes
    with TestClient(create_app(core)) as client:
        r = client.post(
            "/api/v1/top",
            json={"dimension": "SrcAS", "filters": [{"dimension": "SrcNetName", "values": ["lab"]}]},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert [e["value"] for e in body["entries"]] == ["64501"] and body["table"].startswith("rollup_")
        q = client.post(
            "/query",
            json={
                "range": {"from": "2019-06-01T23:00:00Z", "to": "2019-06-02T01:00:00Z"},
                "intervalMs": 300_000,
                "targets": [{"target": "rollup:traffic:bytes"}, {"target": "top:SrcNetName"}],
            },
        )
        assert q.status_code == 200, q.text
        series, table = q.json()
        assert sum(v for v, _ in series["datapoints"]) == total
        assert table["type"] == "table" and {row[0] for row in table["rows"]} == {"lan", "lab", ""}
        # the table says which rollup table answered, as the series does (the issue: every query layer)
        assert table["meta"]["table"].startswith("rollup_") and table["meta"]["task"] == "traffic"
        assert table["meta"]["reason"].startswith(table["meta"]["table"]) and table["meta"]["step_s"] >= 60
        # a top: or rollup: target of no dimension or rollup task says so (it was "unknown task 'top:SrcASN'")
        for target, says in (
            ("top:SrcASN", "'top:SrcASN': 'SrcASN' is not a dimension (did you mean 'SrcAS'?)"),
            (
                "rollup:trafic:bytes",
                "'trafic' is not a rollup task (did you mean 'traffic'?); rollup tasks: traffic",
            ),
        ):
            bad = client.post("/query", json={"targets": [{"target": target}]})
            assert bad.status_code == 400 and says in bad.json()["message"], bad.text
        # Grafana's range holds its end: from = to is the instant (the bucket around it, as the series
        # answers), not TopN's empty range
        instant = "2019-06-01T23:40:30Z"
        both = [{"target": "rollup:traffic:packets"}, {"target": "top:SrcNetName:packets"}]
        q = client.post("/query", json={"range": {"from": instant, "to": instant}, "targets": both})
        assert q.status_code == 200, q.text
        series, table = q.json()
        assert series["datapoints"] and sum(r[1] for r in table["rows"]) == series["datapoints"][0][0]
        targets = client.post("/metrics", json={}).json()
        assert {"label": "top:SrcAS", "value": "top:SrcAS"} in targets
    runner = CliRunner()
    out = runner.invoke(query_app, ["top", "--by", "SrcNetName", "--addr", addr, "--start", "2019-06-01"])
    assert out.exit_code == 0, out.output
    assert "Top SrcNetName by bytes — rollup task traffic" in out.output and "lab" in out.output
    assert "from rollup_" in out.output
    # the epoch is a bound like any other (a Timestamp field keeps its presence on the wire): shown as
    # such, where taking 0 for "unset" showed the range as "- to -"
    for extra, span in (
        ([], "1970-01-01T00:00:00.000000000Z to -:"),
        (["--end", "2030-01-01"], "1970-01-01T00:00:00.000000000Z to 2030-01-01T00:00:00.000000000Z:"),
    ):
        out = runner.invoke(
            query_app, ["top", "--by", "SrcNetName", "--addr", addr, "--start", "1970-01-01", *extra]
        )
        assert out.exit_code == 0, out.output
        assert span in " ".join(out.output.split()) and "lab" in out.output, out.output
    out = runner.invoke(
        query_app, ["top", "--by", "SrcAS", "-f", "SrcNetName!=lab", "-n", "1", "--addr", addr, "--json"]
    )
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert len(doc["entries"]) == 1 and doc["entries"][0]["value"] in ("64500", "0")
    bad = runner.invoke(query_app, ["top", "--by", "SrcAS", "-f", "nonsense", "--addr", addr])
    assert bad.exit_code != 0 and "--filter" in bad.output
    # --resolution: a label, seconds, or a duration (was refused: '7s', '2h')
    for resolution, table in (
        ("1h", "rollup_1h"),
        ("2h", "rollup_1h"),
        ("90s", "rollup_1m"),
        ("300", "rollup_5m"),
    ):
        out = runner.invoke(
            query_app,
            [
                "top",
                "--by",
                "SrcAS",
                "--addr",
                addr,
                "--start",
                "2019-06-01",
                "--resolution",
                resolution,
                "--json",
            ],
        )
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["table"] == table, (resolution, out.output)
    for resolution in ("7x", "0s", "500ms", "-1m"):
        bad = runner.invoke(query_app, ["top", "--by", "SrcAS", "--addr", addr, "--resolution", resolution])
        assert bad.exit_code == 2 and "--resolution" in bad.output and "90s" in bad.output, bad.output


def test_grafana_adhoc_filters_filter_the_rollup_targets(served: tuple[Any, str], stored: Stored) -> None:
    """Grafana's ad-hoc filters (simpod-json-datasource: ``adhocFilters``, ``/tag-keys``, ``/tag-values``):
    the rollup series and top tables of the filtered traffic equal TopN's with the same filters; the keys
    are the rollup tasks' dimensions, the values those stored (most traffic first); a filter that cannot
    be applied is a 400 naming the entry, and a target it does not filter says so."""
    from fastapi.testclient import TestClient

    from netspectra.api.http_app import create_app

    core, _ = served
    lab = top_n(stored.store, "traffic", "SrcAS", "bytes", [DimensionFilter("SrcNetName", ("lab",))])
    not_lab = top_n(
        stored.store, "traffic", "Protocol", "bytes", [DimensionFilter("SrcNetName", ("lab",), True)]
    )
    assert lab.total_bytes and not_lab.total_bytes
    day = {"from": "2019-06-01T00:00:00Z", "to": "2019-06-03T00:00:00Z"}
    targets = [{"target": "rollup:traffic:bytes"}, {"target": "top:SrcAS"}, {"target": "top:Protocol"}]
    with TestClient(create_app(core)) as client:

        def ask(filters: list[dict[str, str]], targets: list[dict[str, str]] = targets) -> Any:
            return client.post(
                "/query",
                json={"range": day, "intervalMs": 3_600_000, "targets": targets, "adhocFilters": filters},
            )

        r = ask([{"key": "SrcNetName", "operator": "=", "value": "lab"}])
        assert r.status_code == 200, r.text
        series, by_as, by_proto = r.json()
        assert sum(v for v, _ in series["datapoints"]) == lab.total_bytes
        assert [(row[0], row[2]) for row in by_as["rows"]] == [(v.value, v.bytes) for v in lab.values]
        assert sum(row[2] for row in by_proto["rows"]) == lab.total_bytes
        r = ask([{"key": "SrcNetName", "operator": "!=", "value": "lab"}])
        series, _, by_proto = r.json()
        assert sum(v for v, _ in series["datapoints"]) == not_lab.total_bytes
        assert [(row[0], row[2]) for row in by_proto["rows"]] == [(v.value, v.bytes) for v in not_lab.values]
        # all filters hold at once (Grafana ANDs them): AS 64501 is the lab network's
        r = ask(
            [
                {"key": "SrcNetName", "operator": "=", "value": "lab"},
                {"key": "SrcAS", "operator": "=", "value": "AS64500"},
            ]
        )
        series, by_as, _ = r.json()
        assert series["datapoints"] == [] and by_as["rows"] == []
        # a target the filters cannot filter (an exact task's) says so
        r = ask([{"key": "SrcAS", "operator": "=", "value": "64501"}], [{"target": "five"}])
        assert r.status_code == 200 and "rollup targets" in r.json()[0]["meta"]["notice"], r.text
        for bad, says in (
            (
                {"key": "SrcASN", "operator": "=", "value": "1"},
                "adhocFilters[0]: 'SrcASN' is not a dimension",
            ),
            ({"key": "SrcAS", "operator": "=~", "value": "6.*"}, "adhocFilters[0].operator '=~'"),
            ({"key": "SrcAS", "operator": "=", "value": "x"}, "adhocFilters[0]: SrcAS: 'x' is not a number"),
            ({"key": "DstAS", "operator": "=", "value": "1"}, "rollup task 'traffic' is not keyed on DstAS"),
            ({"key": 3, "operator": "=", "value": "1"}, "adhocFilters[0]: key, operator and value"),
        ):
            r = ask([bad], targets[:1])
            assert r.status_code == 400 and says in r.json()["message"], (bad, r.text)
        keys = client.post("/tag-keys", json={}).json()
        assert [k["text"] for k in keys] == DIMS
        values = client.post("/tag-values", json={"key": "SrcNetName"}).json()
        everything = top_n(stored.store, "traffic", "SrcNetName", "bytes", limit=100)
        assert [v["text"] for v in values] == [v.value for v in everything.values if v.value]
        assert {v["text"] for v in values} == {"lan", "lab"}
        r = client.post("/tag-values", json={"key": "Nope"})
        assert r.status_code == 400 and "not a dimension" in r.json()["message"]


def test_the_shipped_rollup_dashboard_asks_what_the_api_answers(
    served: tuple[Any, str], stored: Stored
) -> None:
    """deploy/grafana/dashboards/netspectra-rollups.json: exactly the requests its panels make (the
    $task variable as Grafana fills it from its default) over the stored day: the series add up to the
    rollup's total, a table of a dimension the task has holds its top values (the bytes TopN gives, the
    table that answered named), and one the task lacks is a 400 naming the task's dimensions."""
    from fastapi.testclient import TestClient

    from netspectra.api.http_app import create_app

    path = (
        Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "netspectra-rollups.json"
    )
    board = json.loads(path.read_text())
    variable, adhoc = board["templating"]["list"]
    task = variable["current"]["value"]
    assert task == "traffic" and board["uid"] == "netspectra-rollups"
    # the ad-hoc filter variable asks this datasource for keys and values (/tag-keys, /tag-values)
    assert adhoc["type"] == "adhoc" and adhoc["datasource"] == board["panels"][0]["datasource"]
    # whole hours around the traffic (50 minutes from T0, records reaching back minutes): every table
    # answers the same totals
    lo, hi = T0 - 35 * MIN - 60 * MIN, T0 + 25 * MIN + 120 * MIN
    iso = {
        f: time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t // 10**9))
        for f, t in (("from", lo), ("to", hi))
    }
    total = top_n(stored.store, "traffic", "Protocol", "bytes", (), lo, hi)
    assert total.total_bytes == top_n(stored.store, "traffic", "Protocol").total_bytes > 0
    core, _ = served
    kinds = set()
    with TestClient(create_app(core)) as client:
        for panel in board["panels"]:
            targets = [dict(t, target=t["target"].replace("$task", task)) for t in panel["targets"]]
            body = {"range": iso, "intervalMs": 60_000, "maxDataPoints": 500, "targets": targets}
            r = client.post("/query", json=body)
            dim = targets[0]["target"].split(":")[1]
            if panel["type"] == "table" and dim not in DIMS:
                assert r.status_code == 400 and f"keyed on {dim}" in r.text and "SrcNetName" in r.text, r.text
                kinds.add("lacking")
                continue
            assert r.status_code == 200, (panel["title"], r.text)
            (answer,) = r.json()
            assert answer["meta"]["table"].startswith("rollup_"), answer
            if panel["type"] == "timeseries":
                metric = targets[0]["target"].rsplit(":", 1)[1]
                want = total.total_bytes if metric == "bytes" else total.total_packets
                assert sum(v for v, _ in answer["datapoints"]) == want > 0, panel["title"]
                # the same panel under an ad-hoc filter, as Grafana sends it
                lab = {"key": "SrcNetName", "operator": "=", "value": "lab"}
                (filtered,) = client.post("/query", json={**body, "adhocFilters": [lab]}).json()
                part = top_n(
                    stored.store,
                    "traffic",
                    "Protocol",
                    "bytes",
                    [DimensionFilter("SrcNetName", ("lab",))],
                    lo,
                    hi,
                )
                want = part.total_bytes if metric == "bytes" else part.total_packets
                assert sum(v for v, _ in filtered["datapoints"]) == want < total.total_bytes, panel["title"]
                kinds.add("series")
            else:
                top = top_n(stored.store, "traffic", dim, "bytes", (), lo, hi, 10)
                names = [c["text"] for c in answer["columns"]]
                assert names[:3] == [dim, "Packets", "Bytes"], names
                assert [(str(r[0]), r[2]) for r in answer["rows"]] == [(v.value, v.bytes) for v in top.values]
                kinds.add("table")
    assert kinds == {"series", "table", "lacking"}


def test_topn_filter_values_are_bounded_in_all_and_repeats_count_once(served: tuple[Any, str]) -> None:
    """Found by fuzzing the API: 50 filters of 1,000 values each (a REST body of 500 kB) made a query
    beyond ClickHouse's max_query_size, answered 503 UNAVAILABLE for bad input. The values of all filters
    together are now bounded (400 naming the filters), and a value repeated counts once."""
    from netspectra.proto.v1 import query_pb2, query_pb2_grpc
    from netspectra.storage.rollups import MAX_FILTER_VALUES

    _, addr = served
    F = query_pb2.DimensionFilter
    with grpc.insecure_channel(addr) as channel:
        stub = query_pb2_grpc.QueryServiceStub(channel)
        many = [F(dimension="SrcNetName", values=[f"net-{i:04d}-{'x' * 40}" for i in range(999)])] * 50
        with pytest.raises(grpc.RpcError) as err:
            stub.TopN(query_pb2.TopNRequest(dimension="SrcAS", filters=many), timeout=60)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
        assert f"at most {MAX_FILTER_VALUES:,}" in err.value.details() and "filters" in err.value.details()
        once = stub.TopN(
            query_pb2.TopNRequest(dimension="SrcAS", filters=[F(dimension="SrcNetName", values=["lab"])]),
            timeout=60,
        )
        repeated = stub.TopN(
            query_pb2.TopNRequest(
                dimension="SrcAS", filters=[F(dimension="SrcNetName", values=["lab"] * 5000)] * 100
            ),
            timeout=60,
        )
        assert [(e.value, e.bytes) for e in repeated.entries] == [(e.value, e.bytes) for e in once.entries]
        assert once.entries and repeated.total_bytes == once.total_bytes


def test_rest_errors_name_the_parameter_whatever_its_size(served: tuple[Any, str]) -> None:
    """Found by fuzzing the API: ``intervalMs`` of 2**63 came back as the store's "integer parameter ...
    is out of the 64-bit range" (not naming it), and a 5,000-character dimension was echoed whole, so the
    600-character message was cut before saying what was wrong."""
    from fastapi.testclient import TestClient

    from netspectra.api.http_app import create_app

    core, _ = served
    with TestClient(create_app(core)) as client:
        for interval in (2**63, 10**19, 2**53):
            r = client.post(
                "/query",
                json={"intervalMs": interval, "targets": [{"target": "rollup:traffic:bytes"}]},
            )
            assert r.status_code == 400 and "intervalMs" in r.json()["message"], (interval, r.text)
        r = client.post(
            "/query", json={"intervalMs": 300_000, "targets": [{"target": "rollup:traffic:bytes"}]}
        )
        assert r.status_code == 200, r.text
        for body in (
            {"dimension": "x" * 5000},
            {"dimension": "SrcAS", "filters": [{"dimension": "y" * 5000, "values": ["1"]}]},
            {"dimension": "SrcAS", "filters": [{"dimension": "SrcAS", "values": ["z" * 5000]}]},
        ):
            r = client.post("/api/v1/top", json=body)
            message = r.json()["message"]
            assert r.status_code == 400 and len(message) <= 600, r.text[:300]
            assert "is not a dimension" in message or "is not a number" in message, message
