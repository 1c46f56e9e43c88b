"""ClickHouse storage end to end, on the embedded engine (chdb) and on a real clickhouse-server (18.16 in CI).

The data: tests/data/captures/gnutella.pcap run through real exact and sketch tasks, cut into six
snapshots over two aggregation periods (a final snapshot and a reset after the third). Every check that
can be made on both engines runs on both (``stored`` is parametrised); the answers are compared with what
the tasks compute directly from the packets.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.capture.reader import CaptureReader
from netspectra.config.aggregator import ExactWriterConfig, SketchWriterConfig
from netspectra.output.addr import ips_to_text, parse_ip
from netspectra.sketches.base import HeavyHitterList, HitterType, SketchSnapshot, SketchTask
from netspectra.storage import SnapshotMeta, StorageError, WriterError, writer_class
from netspectra.storage.clickhouse import ClickHouseStore, ClickHouseWriter, connect_store
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.queries import (
    DEFAULT_HITTERS_LIMIT,
    FlowFilter,
    FlowLifecycle,
    TaskSummary,
    aggregate_flows,
    heavy_hitters,
    task_names,
    trace_flow,
)
from netspectra.storage.schema import FLOW_COLUMNS, HITTER_COLUMNS, bind, quote_string
from netspectra.tasks.exact import ExactTask, FlowSnapshot

CAPTURE = Path(__file__).resolve().parent.parent / "data" / "captures" / "gnutella.pcap"
FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
T0 = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
STEP = 60 * 10**9
SNAPSHOTS = 6
FINAL_AT = (3, 6)  # 1-based snapshot numbers that end a period
#: History kept at the snapshot interval, so that every snapshot stays answerable after merges.
HISTORY = "60s"
EVIL = [
    "x'; DROP TABLE flow_metrics; --",
    "a\\' OR 1=1 --",
    "%(task)s",
    "` OR `1`=`1",
    "line\nbreak\x00nul\ttab",
    "' UNION SELECT 'pwn', 1, 1, 1 --",
    "../../etc/passwd",
]


def unique_database() -> str:
    return f"ns_test_{uuid.uuid4().hex[:12]}"


@dataclass
class Step:
    """One snapshot of every task: its meta and the packets it has seen since the capture began."""

    meta: SnapshotMeta
    flows: dict[str, FlowSnapshot]
    hitters: dict[str, SketchSnapshot]
    seen: np.ndarray  # indices of the packets accounted up to this snapshot


@dataclass
class Stored:
    engine: str
    cfg: dict[str, object]
    store: ClickHouseStore


def exact_tasks() -> list[ExactTask]:
    return [ExactTask("five", FIVE), ExactTask("by_src", ("SrcIP",))]


def sketch_tasks() -> list[SketchTask]:
    return [
        SketchTask("cm", 0, ["SrcIP"], width=1024, depth=2, size_threshold=1, count_threshold=1, seed=7),
        SketchTask("ss", 1, ["SrcIP"], ["DstIP"], width=256, depth=2, count_threshold=1, seed=7),
    ]


def read_capture() -> PacketBatch:
    return CaptureReader(CAPTURE).read_all()


def make_steps(batch: PacketBatch) -> list[Step]:
    """Six snapshots over two periods (final snapshot + reset after the third)."""
    chunks = np.array_split(np.arange(len(batch)), SNAPSHOTS)
    exact, sketch = exact_tasks(), sketch_tasks()
    out: list[Step] = []
    period = T0
    for i, idx in enumerate(chunks, start=1):
        part = batch.take(idx)
        for t in exact:
            t.update(part)
        for s in sketch:
            s.update(part)
        final = i in FINAL_AT
        meta = SnapshotMeta(T0 + i * STEP, period, final)
        flows = {t.name: t.snapshot() for t in exact}
        hitters = {s.name: s.snapshot(reset=final) for s in sketch}
        out.append(Step(meta, flows, hitters, np.concatenate(chunks[:i])))
        if final:
            for t in exact:
                t.reset()
            period = meta.snapshot_ts_ns
    return out


@pytest.fixture(scope="module")
def batch() -> PacketBatch:
    return read_capture()


@pytest.fixture(scope="module")
def steps(batch: PacketBatch) -> list[Step]:
    return make_steps(batch)


def write_steps(ch: dict[str, object], steps: list[Step]) -> ClickHouseStore:
    """Write every step through a real exact and a real sketch writer; return an open store."""
    exact = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    sketch = ClickHouseWriter(SketchWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "sketch")
    with exact, sketch:
        for step in steps:
            for snap in step.flows.values():
                exact.write_flows(snap, step.meta)
            for hh in step.hitters.values():
                sketch.write_hitters(hh, step.meta)
    return connect_store(ClickHouseConfig(**ch))


def chdb_cfg(chdb_data_dir: Path, **extra: object) -> dict[str, object]:
    return {"data_dir": str(chdb_data_dir), "database": unique_database(), **extra}


@pytest.fixture(scope="module")
def stored_chdb(chdb_data_dir: Path, steps: list[Step]) -> Iterator[Stored]:
    cfg = chdb_cfg(chdb_data_dir, history_resolution=HISTORY)
    store = write_steps(cfg, steps)
    yield Stored("chdb", cfg, store)
    store.close()


@pytest.fixture(scope="module")
def stored_server(clickhouse_server: Any, steps: list[Step]) -> Iterator[Stored]:
    cfg = clickhouse_server.config(history_resolution=HISTORY)
    store = write_steps(cfg, steps)
    yield Stored("server", cfg, store)
    store.close()


@pytest.fixture(params=["chdb", "server"])
def stored(request: pytest.FixtureRequest) -> Stored:
    return request.getfixturevalue(f"stored_{request.param}")


@pytest.fixture(params=["chdb", "server"])
def ch(request: pytest.FixtureRequest) -> dict[str, object]:
    """A ``clickhouse`` writer section for a fresh database on either engine."""
    if request.param == "chdb":
        return chdb_cfg(request.getfixturevalue("chdb_data_dir"))
    return request.getfixturevalue("clickhouse_server").config()


def expected(batch: PacketBatch, idx: np.ndarray, name: str, fields: tuple[str, ...]) -> TaskSummary | None:
    """What an exact task counts over the packets ``idx`` (None when there are none)."""
    task = ExactTask(name, fields)
    task.update(batch.take(idx))
    snap = task.snapshot()
    return TaskSummary(name, snap.total_bytes, snap.total_packets, len(snap)) if len(snap) else None


def expected_all(batch: PacketBatch, idx: np.ndarray) -> list[TaskSummary]:
    found = [expected(batch, idx, "by_src", ("SrcIP",)), expected(batch, idx, "five", FIVE)]
    return [s for s in found if s is not None]


# --------------------------------------------------------------------------------------------------
# Totals, periods, time windows
# --------------------------------------------------------------------------------------------------


def test_totals_over_periods_equal_the_whole_capture(stored: Stored, batch: PacketBatch) -> None:
    result = aggregate_flows(stored.store)
    assert result == expected_all(batch, np.arange(len(batch)))
    # the golden summary of this capture: 3882 IP packets, 577490 bytes, 937 five-tuple flows
    five = next(s for s in result if s.task_name == "five")
    assert (five.total_packets, five.total_bytes, five.flow_count) == (3882, 577490, 937)
    assert aggregate_flows(stored.store, task="by_src") == [r for r in result if r.task_name == "by_src"]
    assert aggregate_flows(stored.store, task="no_such_task") == []


@pytest.mark.parametrize("k", range(1, SNAPSHOTS + 1))
def test_as_of_end_gives_the_state_at_that_snapshot(
    stored: Stored, steps: list[Step], batch: PacketBatch, k: int
) -> None:
    step = steps[k - 1]
    assert aggregate_flows(stored.store, end_ns=step.meta.snapshot_ts_ns) == expected_all(batch, step.seen)
    # a moment before the first snapshot there is nothing
    assert aggregate_flows(stored.store, end_ns=steps[0].meta.snapshot_ts_ns - 1) == []


@pytest.mark.parametrize(("after", "upto"), [(1, 5), (2, 3), (3, 6), (0, 6), (4, 5), (2, 4)])
def test_window_counts_only_the_traffic_between_start_and_end(
    stored: Stored, steps: list[Step], batch: PacketBatch, after: int, upto: int
) -> None:
    """start just after snapshot ``after``, end at snapshot ``upto``: the packets of the chunks between."""
    start = steps[after - 1].meta.snapshot_ts_ns + 1 if after else 0
    end = steps[upto - 1].meta.snapshot_ts_ns
    before = steps[after - 1].seen if after else np.zeros(0, np.int64)
    window = np.setdiff1d(steps[upto - 1].seen, before)
    assert aggregate_flows(stored.store, end_ns=end, start_ns=start) == expected_all(batch, window)


def test_bad_times_are_refused(stored: Stored, steps: list[Step]) -> None:
    ts = steps[3].meta.snapshot_ts_ns
    assert aggregate_flows(stored.store, start_ns=ts + 1, end_ns=ts + 2) == []  # no snapshot in between
    with pytest.raises(ValueError, match="after end_ns"):
        aggregate_flows(stored.store, end_ns=5, start_ns=6)
    with pytest.raises(ValueError, match="non-negative int"):
        aggregate_flows(stored.store, end_ns=-1)


def test_merges_change_no_answer(stored: Stored, steps: list[Step]) -> None:
    store = stored.store
    ends = [None] + [s.meta.snapshot_ts_ns for s in steps]
    before = [aggregate_flows(store, end_ns=e) for e in ends]
    store.execute(f"OPTIMIZE TABLE {store.table('flow_metrics')} FINAL")
    assert [aggregate_flows(store, end_ns=e) for e in ends] == before


def test_rows_are_bounded_by_flows_per_period_and_bucket(
    ch: dict[str, object], steps: list[Step], batch: PacketBatch
) -> None:
    """With the default 1 h history all six snapshots share a bucket: after merges one row per flow and
    period remains, however many snapshots were written, and the newest answers are unchanged."""
    store = write_steps(ch, steps)
    before = aggregate_flows(store)
    store.execute(f"OPTIMIZE TABLE {store.table('flow_metrics')} FINAL")
    assert aggregate_flows(store) == before == expected_all(batch, np.arange(len(batch)))
    periods = {
        (s.meta.period_start_ns, name, len(f)) for s in steps if s.meta.final for name, f in s.flows.items()
    }
    rows = store.query(
        f"SELECT TaskName, PeriodStartNs, count() FROM {store.table('flow_metrics')} "
        "GROUP BY TaskName, PeriodStartNs"
    )
    assert {(int(p), str(t), int(n)) for t, p, n in rows} == periods
    store.close()


# --------------------------------------------------------------------------------------------------
# Filters, TraceFlow
# --------------------------------------------------------------------------------------------------


def _mask(
    batch: PacketBatch, src_ip: str | None = None, dst_port: int | None = None, proto: int | None = None
):
    m = np.ones(len(batch), bool)
    if src_ip is not None:
        m &= (batch.src_ip == parse_ip(src_ip)).all(axis=1)
    if dst_port is not None:
        m &= batch.dst_port == dst_port
    if proto is not None:
        m &= batch.protocol == proto
    return np.flatnonzero(m)


def test_filters_select_the_matching_flows(stored: Stored, batch: PacketBatch) -> None:
    top_src = "10.0.2.15"
    got = aggregate_flows(stored.store, filters=FlowFilter(src_ip=top_src))
    assert got == expected_all(batch, _mask(batch, src_ip=top_src))
    # a field the by_src task does not key on matches nothing there: only the five-tuple task answers
    got = aggregate_flows(stored.store, filters=FlowFilter(dst_port=6346, protocol=6))
    five = expected(batch, _mask(batch, dst_port=6346, proto=6), "five", FIVE)
    assert got == [five]
    got = aggregate_flows(stored.store, filters=FlowFilter(src_ip=top_src, protocol="17"))
    assert got == [expected(batch, _mask(batch, src_ip=top_src, proto=17), "five", FIVE)]
    # IPv4-mapped IPv6 text and raw 4-byte addresses mean the same address
    assert aggregate_flows(stored.store, filters=FlowFilter(src_ip="::ffff:" + top_src)) == aggregate_flows(
        stored.store, filters=FlowFilter(src_ip=bytes([10, 0, 2, 15]))
    )
    assert aggregate_flows(stored.store, filters=FlowFilter(src_ip="192.0.2.99")) == []


def test_trace_flow_sums_over_periods(stored: Stored, steps: list[Step], batch: PacketBatch) -> None:
    whole = ExactTask("w", FIVE)
    whole.update(batch)
    snap = whole.snapshot().top(5, "packets")
    table = snap.to_arrow()
    for i in range(len(snap)):
        keys = {f: str(table.column(f)[i].as_py()) for f in FIVE}
        got = trace_flow(stored.store, "five", keys)
        want = FlowLifecycle(
            int(snap.first_ns[i]), int(snap.last_ns[i]), int(snap.packets[i]), int(snap.bytes[i]), 1
        )
        assert got == want
    # keys naming part of the flow: every flow from that source, summed
    src = str(table.column("SrcIP")[0].as_py())
    got = trace_flow(stored.store, "five", {"SrcIP": src})
    sel = _mask(batch, src_ip=src)
    part = batch.take(sel)
    want_flows = expected(batch, sel, "five", FIVE)
    assert got is not None and want_flows is not None
    assert (got.total_packets, got.total_bytes, got.flow_count) == (
        want_flows.total_packets,
        want_flows.total_bytes,
        want_flows.flow_count,
    )
    assert (got.first_seen_ns, got.last_seen_ns) == (int(part.ts_ns.min()), int(part.ts_ns.max()))
    # the window after the reset holds only the second period's packets of that source
    start = steps[2].meta.snapshot_ts_ns + 1
    got = trace_flow(stored.store, "five", {"SrcIP": src}, start_ns=start)
    in_b = np.intersect1d(sel, np.setdiff1d(steps[-1].seen, steps[2].seen))
    assert got is not None and got.total_packets == len(in_b)
    assert trace_flow(stored.store, "five", {"SrcIP": "192.0.2.99"}) is None


def test_trace_flow_keys_are_whitelisted_and_checked(stored: Stored) -> None:
    with pytest.raises(ValueError, match="unsupported flow key: DropTable"):
        trace_flow(stored.store, "five", {"DropTable": "1", "SrcIP": "10.0.2.15"})
    with pytest.raises(ValueError, match="unsupported flow key: srcip"):
        trace_flow(stored.store, "five", {"srcip": "10.0.2.15"})
    with pytest.raises(ValueError, match=r"SrcIP.*not an IP address"):
        trace_flow(stored.store, "five", {"SrcIP": "1.2.3.4' OR '1'='1"})
    with pytest.raises(ValueError, match=r"DstPort.*between 0 and 65535"):
        trace_flow(stored.store, "five", {"DstPort": "80 OR 1=1"})
    with pytest.raises(ValueError, match=r"Protocol.*between 0 and 255"):
        trace_flow(stored.store, "five", {"Protocol": 256})


# --------------------------------------------------------------------------------------------------
# Heavy hitters
# --------------------------------------------------------------------------------------------------


def expected_hitters(steps: list[Step], task: str, t: HitterType, upto: int) -> list[tuple[str, int]]:
    """Newest value per flow over the snapshots of the period of snapshot ``upto`` (1-based)."""
    period = steps[upto - 1].meta.period_start_ns
    newest: dict[str, int] = {}
    for step in steps[:upto]:
        if step.meta.period_start_ns != period:
            continue
        lst = step.hitters[task].hitters.get(t)
        for flow, value in lst or ():
            newest[flow] = value
    return sorted(newest.items(), key=lambda kv: (-kv[1], kv[0]))


@pytest.mark.parametrize(
    ("task", "type_"), [("cm", HitterType.COUNT), ("cm", HitterType.SIZE), ("ss", HitterType.SPREAD)]
)
def test_heavy_hitters_by_type_newest_period_only(
    stored: Stored, steps: list[Step], task: str, type_: HitterType
) -> None:
    want = expected_hitters(steps, task, type_, SNAPSHOTS)
    assert len(want) > 3
    assert heavy_hitters(stored.store, task, type_, limit=10_000) == want
    assert heavy_hitters(stored.store, task, int(type_), limit=3) == want[:3]
    assert heavy_hitters(stored.store, task, type_, limit=0) == want[:DEFAULT_HITTERS_LIMIT]  # not empty
    assert heavy_hitters(stored.store, task, type_, limit=10**9) == want  # capped, not an error
    # as of the end of the first period: that period's list, not the second's
    end_a = steps[2].meta.snapshot_ts_ns
    assert heavy_hitters(stored.store, task, type_, end_ns=end_a, limit=10_000) == expected_hitters(
        steps, task, type_, 3
    )


def test_heavy_hitters_of_a_type_the_task_lacks_are_empty(stored: Stored) -> None:
    assert heavy_hitters(stored.store, "ss", HitterType.SIZE) == []
    assert heavy_hitters(stored.store, "cm", HitterType.SPREAD) == []
    with pytest.raises(ValueError, match="not a heavy-hitter type"):
        heavy_hitters(stored.store, "cm", 3)


def test_task_names(stored: Stored) -> None:
    assert task_names(stored.store) == ["by_src", "five", "cm", "ss"]


# --------------------------------------------------------------------------------------------------
# Both engines store the same thing; UTC
# --------------------------------------------------------------------------------------------------


def _dump(store: ClickHouseStore, table: str, columns: tuple[tuple[str, str], ...]) -> list[tuple]:
    store.execute(f"OPTIMIZE TABLE {store.table(table)} FINAL")
    names = ", ".join(n for n, _ in columns)
    return store.query(f"SELECT {names} FROM {store.table(table)} ORDER BY {names}")


def test_chdb_and_server_store_the_same_rows_and_answers(stored_chdb: Stored, stored_server: Stored) -> None:
    for table, cols in (("flow_metrics", FLOW_COLUMNS), ("heavy_hitters", HITTER_COLUMNS)):
        a, b = _dump(stored_chdb.store, table, cols), _dump(stored_server.store, table, cols)
        assert len(a) > 100
        assert a == b
    assert aggregate_flows(stored_chdb.store) == aggregate_flows(stored_server.store)
    assert stored_chdb.store.version[0] >= 20 and stored_server.store.version >= (18, 16)


def test_both_backends_give_the_same_arrow_types_and_values(
    stored_chdb: Stored, stored_server: Stored
) -> None:
    """The backend seam: one SELECT, the same Arrow column types and values from chdb and from the
    server (whose time zone is Asia/Shanghai: a DateTime without a zone still reads as UTC seconds)."""
    sql = (
        "SELECT toUInt64(18446744073709551615) AS u64, toInt64(-5) AS i64, toUInt8(7) AS u8, 1.5 AS f, "
        "'é %(x)s' AS s, toNullable('n') AS ns, CAST(NULL AS Nullable(String)) AS nul, "
        "toDateTime(1700000000, 'UTC') AS dt_utc, toDateTime(1700000000) AS dt_server, "
        "toDate('2024-01-02') AS d, [toUInt16(1), toUInt16(2)] AS arr, %(v)s AS bound"
    )
    params = {"v": "x'y"}

    def shape(t: Any) -> list[tuple[str, str]]:
        # nullability differs (chdb marks non-Nullable columns "not null"); types and names must not
        return [(f.name, str(f.type).replace(" not null", "")) for f in t.schema]

    a = stored_chdb.store.query_arrow(sql, params)
    b = stored_server.store.query_arrow(sql, params)
    assert shape(a) == shape(b)
    assert dict(shape(a))["dt_server"] == "uint32" and dict(shape(a))["arr"] == "list<item: uint16>"
    assert a.to_pylist() == b.to_pylist()
    row = a.to_pylist()[0]
    assert (row["u64"], row["dt_utc"], row["dt_server"], row["nul"], row["bound"]) == (
        2**64 - 1,
        1_700_000_000,
        1_700_000_000,
        None,
        "x'y",
    )
    empty = "SELECT toUInt64(1) AS a, toNullable('s') AS b WHERE 0"
    ea, eb = stored_chdb.store.query_arrow(empty), stored_server.store.query_arrow(empty)
    assert ea.num_rows == eb.num_rows == 0 and shape(ea) == shape(eb) == [("a", "uint64"), ("b", "string")]


def test_times_are_utc_whatever_the_server_time_zone(stored: Stored, steps: list[Step]) -> None:
    """The test server runs in Asia/Shanghai: stored times must still read as UTC."""
    store = stored.store
    rows = store.query(
        "SELECT toString(Timestamp) AS ts, toString(PeriodStart) AS ps, toString(Bucket) AS b, "
        f"min(StartNs), toString(min(StartTime)) FROM {store.table('flow_metrics')} "
        "WHERE TimestampNs = %(ts)s GROUP BY ts, ps, b",
        {"ts": steps[4].meta.snapshot_ts_ns},
    )
    assert [r[:3] for r in rows] == [("2024-01-01 00:05:00", "2024-01-01 00:03:00", "2024-01-01 00:05:00")]
    first_ns, first_text = rows[0][3], rows[0][4]
    assert first_text == np.datetime_as_string(np.datetime64(first_ns // 10**9, "s")).replace("T", " ")


# --------------------------------------------------------------------------------------------------
# Nothing a value holds can change a query
# --------------------------------------------------------------------------------------------------


def test_bound_values_come_back_unchanged(stored: Stored) -> None:
    for value in [*EVIL, "é 中 \\x41 \\\\ '' \"", ""]:
        assert stored.store.query("SELECT %(v)s AS v, %(n)s AS n", {"v": value, "n": 2**64 - 1}) == [
            (value, 2**64 - 1)
        ]


def test_sql_looking_task_names_and_flows_change_nothing(ch: dict[str, object], batch: PacketBatch) -> None:
    part = batch.head(500)
    exact = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    sketch = ClickHouseWriter(SketchWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "sketch")
    meta = SnapshotMeta(T0 + STEP, T0, True)
    with exact, sketch:
        for k, name in enumerate(EVIL):
            task = ExactTask(name, FIVE)
            task.update(part.head(100 * (k % 5 + 1)))
            exact.write_flows(task.snapshot(), meta)
            flows = tuple(EVIL[k:] + EVIL[:k])
            values = np.arange(len(flows), 0, -1, dtype=np.uint64) * 10
            hitters = {HitterType.COUNT: HeavyHitterList(flows, values, np.zeros((len(flows), 0), np.uint8))}
            sketch.write_hitters(SketchSnapshot(name, 0, ("SrcIP",), hitters), meta)
        store = exact.store
        for k, name in enumerate(EVIL):
            want = expected(batch, np.arange(100 * (k % 5 + 1)), name, FIVE)
            assert aggregate_flows(store, task=name) == [want]
            hh = heavy_hitters(store, name, HitterType.COUNT, limit=100)
            assert hh == [(f, 10 * (len(EVIL) - i)) for i, f in enumerate(EVIL[k:] + EVIL[:k])]
        assert sorted(task_names(store)) == sorted(EVIL)
        assert {r[0] for r in store.query(f"SELECT TaskName FROM {store.table('flow_metrics')}")} == set(EVIL)
        assert len(aggregate_flows(store)) == len(EVIL)  # every table still there, nothing added


def test_names_holding_placeholders_work_end_to_end(ch: dict[str, object], batch: PacketBatch) -> None:
    """A database (and so every quoted name) containing ``%(d)s``: DDL without parameters is not bound,
    quoted names are never taken for placeholders, and the writer, retention and queries all work."""
    from netspectra.storage.cluster import Layout
    from netspectra.storage.migrations import MIGRATIONS, record_sql

    database = f"x%(d)s_{uuid.uuid4().hex[:8]}"
    assert record_sql(Layout(database=database), MIGRATIONS[0]).startswith(f"INSERT INTO `{database}`.")
    cfg = {**ch, "database": database, "retention": "1h"}
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=cfg), "exact")
    with w:
        task = ExactTask("five", FIVE)
        task.update(batch.head(200))
        w.write_flows(task.snapshot(), SnapshotMeta(T0 + STEP, T0, True))
        store = w.store
        assert store.ensure_schema().applied == []  # versions read back from `x%(d)s…`.netspectra_schema
        assert aggregate_flows(store, task="five") == [expected(batch, np.arange(200), "five", FIVE)]
        assert store.expire(3600 * 10**9) == [20240101]  # a bound query over the quoted names
        names = store.query("SELECT name FROM system.tables WHERE database = %(d)s", {"d": database})
        assert {"flow_metrics", "heavy_hitters", "alerts"} <= {n for (n,) in names}
        with pytest.raises(StorageError, match="no value for query parameter 'd'"):
            store.query("SELECT %(d)s", {"e": 1})
        store.execute(f"DROP DATABASE {store.db}")


def test_bind_refuses_what_it_cannot_quote_safely() -> None:
    assert bind("SELECT %(a)s, %(b)s, %(a)s", {"a": "x'y", "b": -3}) == "SELECT 'x\\'y', -3, 'x\\'y'"
    assert bind("SELECT %(a)s", {"a": "%(b)s"}) == "SELECT '%(b)s'"  # values are never expanded again
    assert quote_string("a\\b\x00\n") == "'a\\\\b\\x00\\x0a'"
    with pytest.raises(KeyError, match="no value for query parameter 'b'"):
        bind("SELECT %(b)s", {})
    with pytest.raises(ValueError, match="not used"):
        bind("SELECT 1", {"a": 1})
    for bad in (1.5, None, b"x", True, [1]):
        with pytest.raises(TypeError):
            bind("SELECT %(a)s", {"a": bad})
    with pytest.raises(ValueError, match="64-bit"):
        bind("SELECT %(a)s", {"a": 2**64})


# --------------------------------------------------------------------------------------------------
# The writer: changed flows only, empty snapshots, schema guard, retention, failures
# --------------------------------------------------------------------------------------------------


def _rows_at(store: ClickHouseStore, ts: int) -> int:
    # the newest version of a row is never merged away, so counting a snapshot's rows right after its write
    # is exact even while background merges run
    q = f"SELECT count() FROM {store.table('flow_metrics')} WHERE TimestampNs = %(ts)s"
    return int(store.query(q, {"ts": ts})[0][0])


def test_writer_writes_changed_flows_only_and_skips_empty(ch: dict[str, object], batch: PacketBatch) -> None:
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    task = ExactTask("five", FIVE)
    with w:
        w.write_flows(task.snapshot(), SnapshotMeta(T0, T0))  # empty: no insert, no error
        assert _rows_at(w.store, T0) == 0
        task.update(batch.head(2000))
        s1 = task.snapshot()
        w.write_flows(s1, SnapshotMeta(T0 + STEP, T0))
        assert _rows_at(w.store, T0 + STEP) == len(s1)
        w.write_flows(task.snapshot(), SnapshotMeta(T0 + 2 * STEP, T0))  # nothing new happened
        assert _rows_at(w.store, T0 + 2 * STEP) == 0
        task.update(batch.take(np.arange(2000, 2300)))
        s3 = task.snapshot()
        w.write_flows(s3, SnapshotMeta(T0 + 3 * STEP, T0))
        touched = ExactTask("t", FIVE)
        touched.update(batch.take(np.arange(2000, 2300)))
        assert 0 < _rows_at(w.store, T0 + 3 * STEP) == len(touched.snapshot())
        # a new period writes every flow again, even unchanged ones
        w.write_flows(s3, SnapshotMeta(T0 + 4 * STEP, T0 + 3 * STEP))
        assert _rows_at(w.store, T0 + 4 * STEP) == len(s3)
        got = aggregate_flows(w.store)
        assert got == [TaskSummary("five", s3.total_bytes * 2, s3.total_packets * 2, len(s3))]
        with pytest.raises(TypeError, match="sketch group"):
            w.write_hitters(SketchSnapshot("cm", 0, ("SrcIP",)), SnapshotMeta(T0, T0))


def test_writer_refuses_a_table_of_the_original(ch: dict[str, object]) -> None:
    store = ClickHouseStore(ClickHouseConfig(**ch))
    store.open()
    try:
        store.execute(f"CREATE DATABASE IF NOT EXISTS {store.db}")
        store.execute(
            f"CREATE TABLE {store.table('flow_metrics')} (Timestamp DateTime, TaskName String, "
            "SrcIP Nullable(String), ByteCount UInt64, PacketCount UInt64) "
            "ENGINE = MergeTree PARTITION BY toYYYYMM(Timestamp) ORDER BY (TaskName, Timestamp)"
        )
    finally:
        store.close()
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    with pytest.raises(WriterError, match=r"exists without the columns .*PeriodStartNs"):
        w.open()
    w.close()


def test_retention_drops_whole_old_periods(ch: dict[str, object], batch: PacketBatch) -> None:
    import time

    now = time.time_ns()
    old, recent = now - 10 * 86_400 * 10**9, now - 3600 * 10**9
    task = ExactTask("five", FIVE)
    task.update(batch.head(300))
    snap = task.snapshot()
    hh = SketchSnapshot(
        "cm",
        0,
        ("SrcIP",),
        {
            HitterType.COUNT: HeavyHitterList(
                ("1.2.3.4",), np.array([5], np.uint64), np.zeros((1, 0), np.uint8)
            )
        },
    )
    plain = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    sk = ClickHouseWriter(SketchWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "sketch")
    with plain, sk:
        for ts in (old, recent):
            plain.write_flows(snap, SnapshotMeta(ts, ts - STEP))
            sk.write_hitters(hh, SnapshotMeta(ts, ts - STEP))
        assert aggregate_flows(plain.store)[0].total_packets == 2 * snap.total_packets
    # a writer configured with a retention of 7 days applies it when it opens
    with ClickHouseWriter(
        ExactWriterConfig(type="clickhouse", enabled=True, clickhouse={**ch, "retention": "168h"}), "exact"
    ) as w:
        assert aggregate_flows(w.store) == [
            TaskSummary("five", snap.total_bytes, snap.total_packets, len(snap))
        ]
        assert heavy_hitters(w.store, "cm", 0, start_ns=0, end_ns=old) == []
        assert heavy_hitters(w.store, "cm", 0) == [("1.2.3.4", 5)]
        assert w.store.expire(7 * 86_400 * 10**9) == []  # nothing left to drop


def test_a_writer_drops_old_rows_of_its_groups_tables_and_of_the_keys_it_sets(ch: dict[str, object]) -> None:
    """Writers sharing a store: each applies the retentions of its section to its own group's tables (the
    defaults included) and to the tables whose key its section sets. An exact writer applied the rollup
    retentions' defaults too: 1-minute rollup rows went after a week where the rollup writer's section
    said 30 days (found by an operator's walk, session 18)."""
    import time

    from netspectra.config.aggregator import WriterConfig
    from netspectra.rollup.task import RollupRows

    def writer(group: str, **keys: str) -> ClickHouseWriter:
        section = {"type": "clickhouse", "enabled": True, "clickhouse": {**ch, **keys}}
        return ClickHouseWriter(WriterConfig.model_validate(section, context={"group": group}), group)

    def count(w: ClickHouseWriter) -> int:
        return int(w.store.query(f"SELECT count() FROM {w.store.table('rollup_1m')}")[0][0])

    old = time.time_ns() - 10 * 86_400 * 10**9
    rows = RollupRows(
        "traffic", ("Protocol",), np.zeros(3, np.uint8), old // 60_000_000_000 + np.arange(3),
        np.zeros(3, np.int64), np.array([[6], [17], [1]], np.uint32), np.ones(3, np.uint64),
        np.full(3, 100, np.uint64), {},
    )  # fmt: skip
    with writer("rollup", rollup_1m_retention="720h") as w:
        w.write_rollups(rows, SnapshotMeta(old, old - STEP))
        assert count(w) == 3  # 10 days old, kept for 30
    with writer("exact") as w:  # no rollup key of its own: the rollup tables are not its to expire
        assert count(w) == 3
    with writer("exact", rollup_1m_retention="720h") as w:  # its own key, the same: kept
        assert count(w) == 3
    with writer("rollup") as w:  # the default, a week: dropped
        assert count(w) == 0


def test_writer_reports_a_server_that_is_down_and_recovers(
    tmp_path: Path, batch: PacketBatch, clickhouse_server_factory: Any
) -> None:
    """A server of its own for this test: stopped under the writer, then started again on the same ports."""
    server = clickhouse_server_factory(tmp_path)
    try:
        cfg = ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=server.config())
        w = ClickHouseWriter(cfg, "exact")
        task = ExactTask("five", FIVE)
        task.update(batch.head(1000))
        w.open()
        w.write_flows(task.snapshot(), SnapshotMeta(T0 + STEP, T0))
        server.stop()
        task.update(batch.take(np.arange(1000, 1500)))
        s2 = task.snapshot()
        with pytest.raises(WriterError, match=r"127\.0\.0\.1"):
            w.write_flows(s2, SnapshotMeta(T0 + 2 * STEP, T0))
        server.start()
        w.write_flows(s2, SnapshotMeta(T0 + 2 * STEP, T0))  # the engine's retry: same snapshot, now stored
        assert aggregate_flows(w.store) == [TaskSummary("five", s2.total_bytes, s2.total_packets, len(s2))]
        w.close()
    finally:
        server.stop()
    # nothing listens there any more: open fails with a WriterError (retryable), not another exception
    with pytest.raises(WriterError):
        ClickHouseWriter(cfg, "exact").open()


def test_one_chdb_directory_per_process(chdb_data_dir: Path, tmp_path: Path) -> None:
    first = ClickHouseStore(ClickHouseConfig(data_dir=str(chdb_data_dir)))
    first.open()
    try:
        other = ClickHouseStore(ClickHouseConfig(data_dir=str(tmp_path / "other")))
        with pytest.raises(StorageError, match=r"same clickhouse\.data_dir"):
            other.open()
        w = ClickHouseWriter(
            ExactWriterConfig(type="clickhouse", enabled=True, clickhouse={"data_dir": str(tmp_path / "x")}),
            "exact",
        )
        with pytest.raises(WriterError, match="cannot open a second data directory"):
            w.open()
    finally:
        first.close()


def test_threads_share_the_chdb_session(chdb_data_dir: Path, batch: PacketBatch) -> None:
    """Writers of several tasks and a reader in threads at once (chdb's own sessions mix up concurrent
    Python() inserts; the shared, locked session must not)."""
    ch = chdb_cfg(chdb_data_dir)
    names = [f"t{i}" for i in range(4)]
    snaps = {}
    for i, name in enumerate(names):
        task = ExactTask(name, FIVE)
        task.update(batch.head(500 * (i + 1)))
        snaps[name] = task.snapshot()
    errors: list[BaseException] = []
    reader = connect_store(ClickHouseConfig(**ch))

    def write(name: str) -> None:
        try:
            with ClickHouseWriter(
                ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact"
            ) as w:
                for k in range(5):
                    w.write_flows(snaps[name], SnapshotMeta(T0 + k * STEP, T0 + k * STEP))
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(20):
                aggregate_flows(reader)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in names] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    want = [
        TaskSummary(n, 5 * snaps[n].total_bytes, 5 * snaps[n].total_packets, len(snaps[n])) for n in names
    ]
    assert aggregate_flows(reader) == want
    reader.close()


def test_writer_kind_is_registered() -> None:
    assert writer_class("clickhouse") is ClickHouseWriter


def test_flow_filter_normalises_and_validates() -> None:
    f = FlowFilter(src_ip="::FFFF:10.0.0.1", dst_ip="2001:DB8::1", src_port="443", protocol=6)
    assert (f.src_ip, f.dst_ip, f.src_port, f.protocol) == ("10.0.0.1", "2001:db8::1", 443, 6)
    assert FlowFilter.from_keys({"DstPort": "80", "SrcIP": b"\x0a\x00\x00\x01"}) == FlowFilter(
        src_ip="10.0.0.1", dst_port=80
    )
    assert ips_to_text(parse_ip("10.0.0.1").reshape(1, 16)) == ["10.0.0.1"]
    with pytest.raises(ValueError, match="unsupported flow key: Mac"):
        FlowFilter.from_keys({"Mac": "x"})
    for bad in ({"src_port": 65536}, {"src_port": "-1"}, {"protocol": True}, {"dst_ip": b"\x01\x02"}):
        with pytest.raises(ValueError):
            FlowFilter(**bad)
