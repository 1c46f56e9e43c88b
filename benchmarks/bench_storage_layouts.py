"""Rows stored and AggregateFlows time for three flow_metrics layouts, on chdb and/or a ClickHouse server.

Layouts, same synthetic snapshots (F flows, S snapshots 60 s apart, a fraction A of the flows active
between two snapshots):

* ``original``  Go2NetSpectra: plain MergeTree, every flow rewritten with cumulative counters at every
  snapshot; query = its two-stage argMax.
* ``replacing`` NetSpectra: ReplacingMergeTree(TimestampNs), only changed flows written (cumulative);
  query = :func:`netspectra.storage.queries.aggregate_flows`. Rows before and after OPTIMIZE FINAL
  (what background merges converge to).
* ``deltas``    plain MergeTree, one row per changed flow per snapshot with the increment since the
  previous snapshot; query = sum of increments, uniqExact of keys.

Then the insert rate of flow rows through ``ClickHouseWriter`` (``--rate-flows`` new flows in one write).

Usage: python benchmarks/bench_storage_layouts.py [--flows 100000] [--snapshots 20] [--active 1.0 0.1]
       [--rate-flows 1000000] [--server HOST:PORT] [--chdb DIR]
(a server: e.g. the one tests/integration/conftest.py starts, or any ClickHouse on its native port)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pyarrow as pa

from netspectra.config.aggregator import ExactWriterConfig
from netspectra.storage.base import SnapshotMeta
from netspectra.storage.clickhouse import ClickHouseStore, ClickHouseWriter
from netspectra.storage.clickhouse_config import ClickHouseConfig
from netspectra.storage.queries import aggregate_flows
from netspectra.tasks.exact import FlowSnapshot

FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
PLAIN_DDL = """CREATE TABLE {t} (
    Timestamp DateTime('UTC'), TaskName String, SrcIP Nullable(String), DstIP Nullable(String),
    SrcPort Nullable(UInt16), DstPort Nullable(UInt16), Protocol Nullable(UInt8),
    StartTime DateTime('UTC'), EndTime DateTime('UTC'), ByteCount UInt64, PacketCount UInt64
) ENGINE = MergeTree PARTITION BY toYYYYMM(Timestamp) ORDER BY (TaskName, Timestamp)"""
ORIGINAL_QUERY = """SELECT TaskName, sum(B), sum(P), count() FROM (
    SELECT TaskName, argMax(ByteCount, Timestamp) B, argMax(PacketCount, Timestamp) P FROM {t}
    GROUP BY TaskName, SrcIP, DstIP, SrcPort, DstPort, Protocol) GROUP BY TaskName"""
DELTA_QUERY = """SELECT TaskName, sum(ByteCount), sum(PacketCount),
    uniqExact(ifNull(SrcIP, ''), ifNull(DstIP, ''), ifNull(SrcPort, 0), ifNull(DstPort, 0),
              ifNull(Protocol, 0))
    FROM {t} GROUP BY TaskName"""


def snapshots(flows: int, count: int, active: float, seed: int = 1) -> list[FlowSnapshot]:
    rng = np.random.default_rng(seed)
    src = np.zeros((flows, 16), np.uint8)
    src[:, 10:12] = 0xFF
    src[:, 12:] = rng.integers(0, 256, (flows, 4), dtype=np.uint8)
    dst = src.copy()
    dst[:, 12:] = rng.integers(0, 256, (flows, 4), dtype=np.uint8)
    sport = rng.integers(1024, 65535, flows, dtype=np.uint16)
    dport = rng.integers(1, 1024, flows, dtype=np.uint16)
    proto = np.full(flows, 6, np.uint8)
    packets = np.zeros(flows, np.uint64)
    nbytes = np.zeros(flows, np.uint64)
    first = np.full(flows, 1_700_000_000 * 10**9, np.int64)
    last = first.copy()
    out = []
    for i in range(count):
        act = np.ones(flows, bool) if i == 0 else rng.random(flows) < active
        add = rng.integers(1, 20, flows).astype(np.uint64) * act
        packets = packets + add
        nbytes = nbytes + add * np.uint64(100)
        last = np.where(act, first + i * 60 * 10**9, last)
        out.append(
            FlowSnapshot("bench", FIVE, src.copy(), dst.copy(), sport.copy(), dport.copy(), proto.copy(),
                         first.copy(), last.copy(), packets.copy(), nbytes.copy())
        )  # fmt: skip
    return out


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def rows_and_bytes(store: ClickHouseStore, table: str) -> tuple[int, int]:
    r = store.query(
        "SELECT sum(rows), sum(data_compressed_bytes) FROM system.parts WHERE active AND database = %(d)s "
        "AND table = %(t)s",
        {"d": store.database, "t": table},
    )
    return int(r[0][0] or 0), int(r[0][1] or 0)


def plain_rows(snap: FlowSnapshot, ts_ns: int, delta_of: FlowSnapshot | None) -> pa.Table:
    t = snap.to_arrow()
    packets, nbytes = snap.packets, snap.bytes
    if delta_of is not None:
        packets = packets - delta_of.packets
        nbytes = nbytes - delta_of.bytes
        keep = packets > 0
        t = t.filter(pa.array(keep))
        packets, nbytes = packets[keep], nbytes[keep]
    m = t.num_rows
    return pa.table({
        "Timestamp": pa.array(np.full(m, ts_ns // 10**9, np.uint32)),
        "TaskName": t.column("TaskName"), "SrcIP": t.column("SrcIP"), "DstIP": t.column("DstIP"),
        "SrcPort": t.column("SrcPort"), "DstPort": t.column("DstPort"), "Protocol": t.column("Protocol"),
        "StartTime": pa.array((t.column("StartTime").cast(pa.int64()).to_numpy() // 10**9).astype(np.uint32)),
        "EndTime": pa.array((t.column("EndTime").cast(pa.int64()).to_numpy() // 10**9).astype(np.uint32)),
        "ByteCount": pa.array(nbytes), "PacketCount": pa.array(packets),
    })  # fmt: skip


def run(ch: dict, snaps: list[FlowSnapshot], label: str) -> None:
    db = ch["database"]
    admin = ClickHouseStore(ClickHouseConfig(**{**ch, "database": "default"}))
    admin.open()
    admin.execute(f"DROP DATABASE IF EXISTS `{db}`")
    admin.close()
    w = ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact")
    w.open()
    store = w.store
    base = 1_700_000_000 * 10**9
    t0 = time.perf_counter()
    for i, s in enumerate(snaps):
        w.write_flows(s, SnapshotMeta(base + i * 60 * 10**9, base))
    t_ours = time.perf_counter() - t0
    results = {}
    for name in ("original", "deltas"):
        store.execute(PLAIN_DDL.format(t=store.table(name)))
        t0 = time.perf_counter()
        for i, s in enumerate(snaps):
            prev = (snaps[i - 1] if i else None) if name == "deltas" else None
            store.insert(name, plain_rows(s, base + i * 60 * 10**9, prev if name == "deltas" else None))
        results[name] = time.perf_counter() - t0
    inserted_ours = rows_and_bytes(store, "flow_metrics")
    q = {
        "original": lambda: store.query(ORIGINAL_QUERY.format(t=store.table("original"))),
        "replacing": lambda: aggregate_flows(store),
        "deltas": lambda: store.query(DELTA_QUERY.format(t=store.table("deltas"))),
    }
    answers = {k: f() for k, f in q.items()}
    before = {k: timed(f) for k, f in q.items()}
    print(f"\n[{label}] {len(snaps)} snapshots of {len(snaps[0])} flows; version {store.version}")
    print(f"  answers: {answers}")
    for name in ("original", "replacing", "deltas"):
        table = "flow_metrics" if name == "replacing" else name
        r0, b0 = rows_and_bytes(store, table) if name != "replacing" else inserted_ours
        store.execute(f"OPTIMIZE TABLE {store.table(table)} FINAL")
        r1, b1 = rows_and_bytes(store, table)
        after = timed(q[name])
        ins = t_ours if name == "replacing" else results[name]
        print(
            f"  {name:9s} insert {ins:6.2f}s  rows {r0:>9,d} ({b0 / 2**20:6.1f} MiB)  after merge {r1:>9,d} "
            f"({b1 / 2**20:6.1f} MiB)  query {before[name] * 1000:7.1f} ms, merged {after * 1000:7.1f} ms"
        )
    w.close()


def insert_rate(ch: dict, flows: int, label: str) -> None:
    snap = snapshots(flows, 1, 1.0)[0]
    snap.to_arrow()  # compile/load the numba address formatter before the clock starts
    admin = ClickHouseStore(ClickHouseConfig(**{**ch, "database": "default"}))
    admin.open()
    admin.execute(f"DROP DATABASE IF EXISTS `{ch['database']}`")
    admin.close()
    times = []
    with ClickHouseWriter(ExactWriterConfig(type="clickhouse", enabled=True, clickhouse=ch), "exact") as w:
        for i in range(3):
            ts = 10**18 + i * 10**9
            t0 = time.perf_counter()
            w.write_flows(snap, SnapshotMeta(ts, ts))  # a new period each time: every flow is written
            times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"[{label}] writer insert: {flows:,d} rows in {best:.2f} s = {flows / best / 1e6:.2f} M rows/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flows", type=int, default=100_000)
    ap.add_argument("--snapshots", type=int, default=20)
    ap.add_argument("--active", type=float, nargs="+", default=[1.0, 0.1])
    ap.add_argument("--rate-flows", type=int, default=1_000_000)
    ap.add_argument("--server", default="", help="HOST:PORT of a ClickHouse server (native protocol)")
    ap.add_argument("--chdb", default="", help="chdb data directory (embedded engine)")
    a = ap.parse_args()
    for active in a.active:
        snaps = snapshots(a.flows, a.snapshots, active)
        snaps[0].to_arrow()  # compile/load the numba address formatter before any clock starts
        if a.chdb:
            run({"data_dir": a.chdb, "database": "bench_layouts"}, snaps, f"chdb, active {active:.0%}")
        if a.server:
            host, port = a.server.rsplit(":", 1)
            ch = {"host": host, "port": int(port), "database": "bench_layouts"}
            run(ch, snaps, f"server {a.server}, active {active:.0%}")
    if a.rate_flows:
        if a.chdb:
            insert_rate({"data_dir": a.chdb, "database": "bench_rate"}, a.rate_flows, "chdb")
        if a.server:
            host, port = a.server.rsplit(":", 1)
            insert_rate({"host": host, "port": int(port), "database": "bench_rate"}, a.rate_flows, a.server)


if __name__ == "__main__":
    main()
