"""Query-side sums of stored counters never wrap, on the embedded engine (chdb) and on a real
clickhouse-server (18.16 in CI): counters as large as 2**64 - 1 (what a hostile or broken exporter can
claim; the tasks saturate there) give exact totals, saturated at 2**64 - 1 where they go past it, and
rankings in the order of the exact sums (:mod:`netspectra.storage.sums`).

Flows go through the real path (exported records → an exact task → the ClickHouse writer); the rollup
and exporter rows are inserted as the writers store them, with chosen values. Every scenario is one that
ClickHouse's plain ``sum`` over UInt64 (which wraps modulo 2**64) or ``toInt64`` (negative from 2**63)
gets wrong."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netspectra.batch import PacketBatch
from netspectra.config.aggregator import WriterConfig
from netspectra.rollup.dims import RESOLUTIONS, Resolution
from netspectra.storage import console as cs
from netspectra.storage.base import SnapshotMeta
from netspectra.storage.clickhouse import ClickHouseWriter
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.console.sources import qualify
from netspectra.storage.exporters import list_exporters
from netspectra.storage.filter import compile_filter, field_type
from netspectra.storage.queries import (
    FlowFilter,
    aggregate_flows,
    flow_details,
    top_flows,
    totals_series,
    trace_flow,
)
from netspectra.storage.rollups import top_n, traffic_series
from netspectra.storage.schema import EXPORTER_TABLE
from netspectra.storage.store import ClickHouseStore, connect_store
from netspectra.storage.sums import U64_MAX
from netspectra.tasks.exact import ExactTask

HOUR = 3600 * 10**9
MIN = 60 * 10**9
T0 = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
TOP = 2**63  # toInt64 of this is negative


@pytest.fixture(scope="module", params=["chdb", "server"])
def ch(request: pytest.FixtureRequest, chdb_data_dir: Path) -> dict[str, object]:
    database = f"ns_sums_{uuid.uuid4().hex[:10]}"
    if request.param == "chdb":
        return {"data_dir": str(chdb_data_dir), "database": database}
    return request.getfixturevalue("clickhouse_server").config(database)


@pytest.fixture(scope="module")
def store(ch: dict[str, object]) -> Iterator[ClickHouseStore]:
    s = connect_store(ClickHouseConfig(**ch))
    s.ensure_schema()
    try:
        yield s
    finally:
        s.close()


# --------------------------------------------------------------------------------------------------
# flow_metrics through the writer
# --------------------------------------------------------------------------------------------------


def records(ts_ns: int, rows: list[tuple[int, int, int]]) -> PacketBatch:
    """Exported flow records ``(source port, packets, bytes)`` at ``ts_ns`` (10.0.0.1 → 10.0.0.2)."""
    n = len(rows)
    b = PacketBatch.empty(n, PacketBatch.EXPORT_COLUMNS)
    b.ts_ns[:] = ts_ns
    b.flow_start_ns[:] = ts_ns
    for ip, last in ((b.src_ip, 1), (b.dst_ip, 2)):
        ip[:] = 0
        ip[:, 10:12] = 0xFF
        ip[:, 12:] = [10, 0, 0, last]
    b.src_port[:] = [r[0] for r in rows]
    b.dst_port[:] = 443
    b.protocol[:] = 6
    b.length[:] = 0
    b.packets[:] = np.array([r[1] for r in rows], np.uint64)
    b.octets[:] = np.array([r[2] for r in rows], np.uint64)
    b.sampling_rate[:] = 1
    b.in_if[:] = 0
    b.out_if[:] = 0
    b.exporter[:] = 0
    return b


#: Snapshot times: period 1 runs from T0 (snapshots at T1, T2, final), period 2 from P2 (snapshot at T3).
T1, T2, P2, T3 = T0 + HOUR, T0 + 2 * HOUR, T0 + 2 * HOUR + 1, T0 + 3 * HOUR
A, B, C = 1001, 1002, 1003  # flows by source port
KEYED = ["SrcIP", "SrcPort"]  # 10.0.0.1 is every flow's source


def flow_writer(ch: dict[str, object]) -> ClickHouseWriter:
    """An open ClickHouse writer of the exact group on the module's database."""
    writer = ClickHouseWriter(
        WriterConfig.model_validate(
            {"type": "clickhouse", "enabled": True, "clickhouse": ch}, context={"group": "exact"}
        ),
        "exact",
    )
    writer.open()
    return writer


@pytest.fixture(scope="module")
def flows(ch: dict[str, object], store: ClickHouseStore) -> str:
    """Task ``hostile`` keyed on SrcIP and SrcPort: in period 1, flow A reaches 2**64 - 1 bytes (1 byte, then
    2**64 - 2 more: a window difference >= 2**63), B has 2**63 + 5 bytes and 2**63 packets, C is small;
    in period 2, A has 2**63 bytes more (its total 2**64 - 1 + 2**63 wraps to less than B's) and C 500."""
    writer = flow_writer(ch)
    try:
        one = ExactTask("hostile", KEYED)
        one.update(records(T1 - MIN, [(A, 1, 1), (B, TOP, TOP + 5), (C, 10, 1000)]))
        writer.write_flows(one.snapshot(), SnapshotMeta(T1, T0))
        one.update(records(T2 - MIN, [(A, 1, U64_MAX - 1)]))
        writer.write_flows(one.snapshot(), SnapshotMeta(T2, T0, final=True))
        two = ExactTask("hostile", KEYED)
        two.update(records(T3 - MIN, [(A, 1, TOP), (C, 5, 500)]))
        writer.write_flows(two.snapshot(), SnapshotMeta(T3, P2, final=True))
    finally:
        writer.close()
    return "hostile"


def test_task_totals_saturate_and_stay_exact_below(store: ClickHouseStore, flows: str) -> None:
    (every,) = aggregate_flows(store, task=flows)
    # bytes: 2**64 - 1 + 2**63 + 5 + 1000 + 2**63 + 500 > 2**64 - 1; packets: exact
    assert (every.total_bytes, every.total_packets, every.flow_count) == (U64_MAX, TOP + 18, 3)
    (first,) = aggregate_flows(store, task=flows, end_ns=T1)
    assert (first.total_bytes, first.total_packets) == (TOP + 1006, TOP + 11)
    # the window of A's 2**64 - 2 bytes (an Int64 difference of -2 before)
    (window,) = aggregate_flows(store, task=flows, start_ns=T1 + 1, end_ns=T2)
    assert (window.total_bytes, window.total_packets, window.flow_count) == (U64_MAX - 1, 1, 1)
    (late,) = aggregate_flows(store, task=flows, start_ns=T2 + 1)
    assert (late.total_bytes, late.total_packets, late.flow_count) == (TOP + 500, 6, 2)


def test_top_flows_rank_by_the_exact_sums(store: ClickHouseStore, flows: str) -> None:
    top = top_flows(store, flows, limit=3)
    assert [(t.keys["SrcPort"], t.packets, t.bytes) for t in top] == [
        (A, 3, U64_MAX),  # 2**64 - 1 + 2**63: first, shown saturated (a wrapped sum put it second)
        (B, TOP, TOP + 5),
        (C, 15, 1500),
    ]
    window = top_flows(store, flows, start_ns=T2 + 1, limit=3)
    assert [(t.keys["SrcPort"], t.packets, t.bytes) for t in window] == [(A, 1, TOP), (C, 5, 500)]


def test_trace_and_details_of_a_hostile_flow(store: ClickHouseStore, flows: str) -> None:
    life = trace_flow(store, flows, {"SrcPort": A})
    assert life is not None and (life.total_packets, life.total_bytes, life.flow_count) == (3, U64_MAX, 1)
    life = trace_flow(store, flows, {"SrcPort": A}, end_ns=T2, start_ns=T1 + 1)
    assert life is not None and (life.total_packets, life.total_bytes) == (1, U64_MAX - 1)
    rows = flow_details(store, flows, FlowFilter(), None, None, 0, 10)
    assert [(k["SrcPort"], p, b) for k, _, _, p, b in rows] == [
        (str(A), 3, U64_MAX),
        (str(B), TOP, TOP + 5),
        (str(C), 15, 1500),
    ]


def test_totals_series_is_exact_then_saturates(store: ClickHouseStore, flows: str) -> None:
    assert totals_series(store, flows, "bytes") == [(T1, TOP + 1006), (T2, U64_MAX), (T3, U64_MAX)]
    assert totals_series(store, flows, "packets") == [(T1, TOP + 11), (T2, TOP + 12), (T3, TOP + 18)]


# --------------------------------------------------------------------------------------------------
# rollup tables
# --------------------------------------------------------------------------------------------------

#: Rollup rows ``(minute, SrcAS, packets, bytes)`` of task ``hostile``, each in a period of its own (so
#: no two share an identity in any table). AS 1: 2 x (2**64 - 1) bytes; AS 2 and 3 differ in the low
#: word only; AS 4 and 5 tie on bytes, 5 has more packets.
ROLLUP = [
    (0, 1, 1, U64_MAX),
    (1, 1, 1, U64_MAX),
    (0, 2, TOP, TOP + 5),
    (1, 3, 3, TOP),
    (0, 4, 10, 1000),
    (1, 5, 20, 1000),
]


@pytest.fixture(scope="module")
def rollups(store: ClickHouseStore) -> str:
    for res in RESOLUTIONS:
        buckets = [T0 + m * MIN - (T0 + m * MIN) % res.ns for m, *_ in ROLLUP]
        store.insert(
            res.table,
            pa.table(
                {
                    "TimestampNs": pa.array([T3] * len(ROLLUP), pa.uint64()),
                    "PeriodStartNs": pa.array([T0 + i for i in range(len(ROLLUP))], pa.uint64()),
                    "TaskName": ["hostile"] * len(ROLLUP),
                    "BucketNs": pa.array(buckets, pa.int64()),
                    "Epoch": pa.array([0] * len(ROLLUP), pa.uint32()),
                    "SrcAS": pa.array([r[1] for r in ROLLUP], pa.uint32()),
                    "Packets": pa.array([r[2] for r in ROLLUP], pa.uint64()),
                    "Bytes": pa.array([r[3] for r in ROLLUP], pa.uint64()),
                }
            ),
        )
    return "hostile"


@pytest.mark.parametrize("res", RESOLUTIONS, ids=lambda r: r.label)
def test_rollup_top_n_orders_exactly_and_saturates(
    store: ClickHouseStore, rollups: str, res: Resolution
) -> None:
    lo, hi = T0, T0 + HOUR
    by_bytes = top_n(store, rollups, "SrcAS", "bytes", (), lo, hi, 10, res.seconds, now_ns=T0)
    assert by_bytes.choice.table == res.table
    assert [(v.value, v.packets, v.bytes) for v in by_bytes.values] == [
        ("1", 2, U64_MAX),
        ("2", TOP, TOP + 5),
        ("3", 3, TOP),
        ("5", 20, 1000),
        ("4", 10, 1000),
    ]
    assert (by_bytes.total_packets, by_bytes.total_bytes, by_bytes.distinct) == (TOP + 35, U64_MAX, 5)
    by_packets = top_n(store, rollups, "SrcAS", "packets", (), lo, hi, 2, res.seconds, now_ns=T0)
    assert [(v.value, v.packets) for v in by_packets.values] == [("2", TOP), ("5", 20)]
    assert by_packets.total_packets == TOP + 35


def test_rollup_series_buckets_are_exact(store: ClickHouseStore, rollups: str) -> None:
    lo, hi = T0, T0 + 2 * MIN
    total = traffic_series(store, rollups, "bytes", lo, hi, step_s=60, now_ns=T0)
    assert total.choice.table == "rollup_1m"
    # minute 0: 2**64 - 1 + 2**63 + 5 + 1000 (saturated); minute 1: the same with 2**63 and 1000
    assert total.series == {"total": [(T0, U64_MAX), (T0 + MIN, U64_MAX)]}
    packets = traffic_series(store, rollups, "packets", lo, hi, step_s=60, now_ns=T0)
    assert packets.series == {"total": [(T0, TOP + 11), (T0 + MIN, 24)]}
    split = traffic_series(store, rollups, "bytes", lo, hi, step_s=60, dimension="SrcAS", top=1, now_ns=T0)
    assert split.values == ["1"]
    # "other" is the exact total minus AS 1's exact bytes, not a difference of saturated values
    assert split.series == {
        "1": [(T0, U64_MAX), (T0 + MIN, U64_MAX)],
        "other": [(T0, TOP + 1005), (T0 + MIN, TOP + 1000)],
    }


# --------------------------------------------------------------------------------------------------
# exporters
# --------------------------------------------------------------------------------------------------


def test_exporter_totals_are_exact_and_saturate(store: ClickHouseStore) -> None:
    """Two periods of one exporter claiming 2**64 - 1 packets each and 2**63 + 2**63 - 1 bytes."""
    n = 2
    store.insert(
        EXPORTER_TABLE,
        pa.table(
            {
                "TimestampNs": pa.array([T1, T3], pa.uint64()),
                "PeriodStartNs": pa.array([T0, P2], pa.uint64()),
                "TaskName": ["exp"] * n,
                "Exporter": ["192.0.2.1"] * n,
                "FirstSeenNs": pa.array([T0, P2], pa.int64()),
                "LastSeenNs": pa.array([T1, T3], pa.int64()),
                "Records": pa.array([3, 4], pa.uint64()),
                "Packets": pa.array([U64_MAX, U64_MAX], pa.uint64()),
                "Bytes": pa.array([TOP, TOP - 1], pa.uint64()),
                "SamplingRates": pa.array([[1, 100], [100]], pa.list_(pa.uint32())),
                "RecordsPerRate": pa.array([[1, U64_MAX], [TOP]], pa.list_(pa.uint64())),
                "RecordsWithoutRate": pa.array([2, 0], pa.uint64()),
            }
        ),
    )
    (got,) = list_exporters(store, "exp")
    assert (got.records, got.packets, got.bytes, got.records_without_rate) == (7, U64_MAX, U64_MAX, 2)
    assert (got.first_seen_ns, got.last_seen_ns) == (T0, T3)
    assert got.sampling_rates == {1: 1, 100: U64_MAX}


# --------------------------------------------------------------------------------------------------
# the console's queries (netspectra.storage.console): sums saturate in SQL, rankings never wrap
# --------------------------------------------------------------------------------------------------


def test_console_visualize_ranks_and_saturates(store: ClickHouseStore, flows: str) -> None:
    src = cs.catalog(store, {flows: tuple(KEYED)}).source(flows)
    for axis in ("first", "snapshot"):
        v = cs.visualize(store, src, axis=axis, dims=["SrcPort"], metric="bytes", points=1, exact=True)
        # A: 2**64 - 1 + 2**63 bytes (a wrapped sum ranked it below B)
        assert [(s.key["SrcPort"], s.packets, s.bytes) for s in v.series] == [
            (A, 3, U64_MAX),
            (B, TOP, TOP + 5),
            (C, 15, 1500),
        ], axis
        assert (v.total.packets, v.total.bytes) == (TOP + 18, U64_MAX), axis
        assert (v.other.packets, v.other.bytes) == (0, 0), axis
        per_bucket = [x for s in (*v.series, v.other, v.total) for x in s.values["bytes"]]
        assert max(per_bucket) == U64_MAX and min(per_bucket) >= 0, axis


def test_console_flows_on_the_snapshot_axis(store: ClickHouseStore, flows: str) -> None:
    src = cs.catalog(store, {flows: tuple(KEYED)}).source(flows)
    page = cs.flow_list(store, src, axis="snapshot", sort="Bytes", limit=10)
    at = {c: page.columns.index(c) for c in ("SrcPort", "Packets", "Bytes")}
    got = [(int(r[at["SrcPort"]]), int(r[at["Packets"]]), int(r[at["Bytes"]])) for r in page.rows]
    # a flow and period a row: A's rise of 2**64 - 2 in period 1 counted (an Int64 difference of -2)
    assert got == [(A, 2, U64_MAX), (B, TOP, TOP + 5), (A, 1, TOP), (C, 10, 1000), (C, 5, 500)]


def test_console_live_report(store: ClickHouseStore, flows: str) -> None:
    src = cs.catalog(store, {flows: tuple(KEYED)}).source(flows)
    lv = cs.live_report(store, src, limit=5)
    assert lv.snapshot_ns == T3 and lv.previous_ns is None  # the newest period: one snapshot
    assert (lv.totals["packets"], lv.totals["bytes"], lv.totals["flows"]) == (6, TOP + 500, 2)
    # fields, then Packets, Bytes, dPackets, dBytes: 2**63 bytes (toInt64 made it negative)
    assert [[int(x) for x in r[1:]] for r in lv.by_total] == [[A, 1, TOP, 1, TOP], [C, 5, 500, 5, 500]]


def test_console_host_report(store: ClickHouseStore, flows: str) -> None:
    src = cs.catalog(store, {flows: tuple(KEYED)}).source(flows)
    h = cs.host_report(store, src, "10.0.0.1", points=1)
    # a flow and period a row (axis first): A twice, B, C twice
    assert h.totals["out"] == {"packets": TOP + 18, "bytes": U64_MAX, "flows": 5}
    assert h.totals["in"] == {"packets": 0, "bytes": 0, "flows": 0}
    assert max(h.timeline["out"]["bytes"]) == U64_MAX


def test_console_rollup_relation_saturates(store: ClickHouseStore, rollups: str) -> None:
    """The rollup relation the console reads (``rollup_1h``: AS 1's two rows of 2**64 - 1 in one bucket)."""
    fields = {"SrcAS": field_type("SrcAS", "UInt32")}
    src = cs.Source(f"rollup_1h:{rollups}", "rollup_1h", rollups, "rollup", fields, ("SrcAS",))
    sql, params = src.relation("first", T0, T0 + HOUR - 1, compile_filter("", src.fields))
    rows = store.query(qualify(store, f"SELECT SrcAS, S, P, B FROM ({sql}) ORDER BY SrcAS"), params)
    assert [tuple(int(x) for x in r) for r in rows] == [
        (1, T0, 2, U64_MAX),
        (2, T0, TOP, TOP + 5),
        (3, T0, 3, TOP),
        (4, T0, 10, 1000),
        (5, T0, 20, 1000),
    ]


@pytest.fixture(scope="module")
def wide(ch: dict[str, object], store: ClickHouseStore) -> str:
    """Task ``hostile_wide`` keyed like ``hostile``: 32 flows (source ports 2000-2031) of 2**63 bytes each,
    in one period and snapshot; a 1/2 sample keeps about half of them."""
    writer = flow_writer(ch)
    try:
        task = ExactTask("hostile_wide", KEYED)
        task.update(records(T1 - MIN, [(2000 + i, 1, TOP) for i in range(32)]))
        writer.write_flows(task.snapshot(), SnapshotMeta(T1, T0, final=True))
    finally:
        writer.close()
    return "hostile_wide"


def test_console_sampled_views_saturate(store: ClickHouseStore, wide: str) -> None:
    """A sample's estimate (a sampled sum times the sample factor) saturates at 2**64 - 1 like the exact
    sums: a flow of 2**63 bytes, scaled by 2, is no ``uint64``; packets stay exact (sampled × 2)."""
    src = cs.catalog(store, {wide: tuple(KEYED)}).source(wide)
    v = cs.visualize(store, src, axis="first", dims=["SrcPort"], metric="bytes", points=1, row_budget=16)
    assert v.sample == 2 and v.series, "32 flows over a budget of 16 rows: a 1/2 sample"
    for s in v.series:
        assert (s.packets, s.bytes, s.values["bytes"]) == (2, U64_MAX, [U64_MAX])
    assert v.total.bytes == U64_MAX and v.total.values["bytes"] == [U64_MAX]
    assert 0 < v.total.packets <= 64 and v.total.packets % 2 == 0
    lv = cs.live_report(store, src, limit=5, row_budget=16)
    assert lv.sample == 2 and lv.by_total
    assert lv.totals["bytes"] == U64_MAX and lv.totals["packets"] == v.total.packets
    # fields, then Packets, Bytes, dPackets, dBytes
    assert all([int(x) for x in r[2:]] == [2, U64_MAX, 2, U64_MAX] for r in lv.by_total)
