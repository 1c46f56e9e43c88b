"""Query-service latency over a large flow_metrics table (embedded chdb): p50/p99 and calls/s per RPC.

Fills ``--flows`` five-tuple flows × ``--snapshots`` snapshots (one row each: >= 10 M rows by default) with
one INSERT … SELECT FROM numbers() (server-side generation, so filling is not what is measured), starts the
gRPC server on 127.0.0.1 and calls it sequentially and from ``--threads`` client threads.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid

import grpc

from netspectra.api.grpc_service import QueryCore, create_grpc_server
from netspectra.config import parse_config_text
from netspectra.proto.v1 import query_pb2, query_pb2_grpc
from netspectra.storage.clickhouse import connect_store

T0 = 1_704_067_200 * 10**9


def config(data_dir: str, db: str) -> str:
    w = (
        f"[{{type: clickhouse, enabled: true, snapshot_interval: 60s, clickhouse: "
        f"{{data_dir: '{data_dir}', database: {db}, history_resolution: 60s}}}}]"
    )
    return (
        "aggregator:\n  types: [exact, sketch]\n"
        f"  exact:\n    writers: {w}\n    tasks:\n      - {{name: per_five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}}\n"
        f"  sketch:\n    writers: {w}\n    tasks:\n      - {{name: cm, skt_type: 0, flow_fields: [SrcIP]}}\n"
    )


def fill(store, flows: int, snaps: int) -> None:
    n = flows * snaps
    sql = f"""
    INSERT INTO {store.table("flow_metrics")} (TimestampNs, PeriodStartNs, Bucket, TaskName, FlowHash, SrcIP,
        DstIP, SrcPort, DstPort, Protocol, StartNs, EndNs, ByteCount, PacketCount)
    SELECT {T0} + (number % {snaps} + 1) * 60000000000 AS ts, {T0}, toDateTime(intDiv(ts, 1000000000), 'UTC'),
        'per_five_tuple', cityHash64(intDiv(number, {snaps})) AS h,
        concat('10.', toString(intDiv(intDiv(number, {snaps}), 65536) % 256), '.',
               toString(intDiv(intDiv(number, {snaps}), 256) % 256), '.', toString(intDiv(number, {snaps}) % 256)),
        concat('192.168.', toString(intDiv(number, {snaps}) % 200), '.1'),
        toUInt16(1024 + intDiv(number, {snaps}) % 60000), toUInt16(if(intDiv(number, {snaps}) % 7 = 0, 53, 443)),
        toUInt8(if(intDiv(number, {snaps}) % 7 = 0, 17, 6)), toInt64({T0}), toInt64(ts),
        (number % {snaps} + 1) * 100, number % {snaps} + 1
    FROM numbers({n})"""
    store.execute(sql)
    store.execute(f"""
    INSERT INTO {store.table("heavy_hitters")} (TimestampNs, PeriodStartNs, Bucket, TaskName, Flow, Value, Type)
    SELECT {T0} + 60000000000, {T0}, toDateTime({T0 // 10**9 + 60}, 'UTC'), 'cm',
        concat('10.0.', toString(intDiv(number, 256)), '.', toString(number % 256)), number, number % 2
    FROM numbers(20000)""")


def measure(fn, calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chdb", required=True)
    ap.add_argument("--flows", type=int, default=2_000_000)
    ap.add_argument("--snapshots", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--threads", type=int, default=4)
    a = ap.parse_args()
    cfg = parse_config_text(config(a.chdb, f"bench_{uuid.uuid4().hex[:8]}"))
    store = connect_store(cfg.aggregator.exact.writers[0].clickhouse)
    t = time.perf_counter()
    fill(store, a.flows, a.snapshots)
    rows = store.query(f"SELECT count() FROM {store.table('flow_metrics')}")[0][0]
    print(f"filled {rows:,} flow rows in {time.perf_counter() - t:.1f} s")
    core = QueryCore(cfg)
    server, port, _ = create_grpc_server(core, "127.0.0.1:0")
    server.start()
    stub = query_pb2_grpc.QueryServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    end = query_pb2.AggregationRequest().end_time.__class__(seconds=T0 // 10**9 + 180)
    cases = {
        "HealthCheck": lambda: stub.HealthCheck(query_pb2.HealthCheckRequest()),
        "AggregateFlows (all)": lambda: stub.AggregateFlows(query_pb2.AggregationRequest()),
        "AggregateFlows (end_time)": lambda: stub.AggregateFlows(query_pb2.AggregationRequest(end_time=end)),
        "AggregateFlows (src_ip)": lambda: stub.AggregateFlows(
            query_pb2.AggregationRequest(src_ip="10.1.2.3")
        ),
        "TraceFlow (SrcIP)": lambda: stub.TraceFlow(
            query_pb2.TraceFlowRequest(task_name="per_five_tuple", flow_keys={"SrcIP": "10.1.2.3"})
        ),
        "QueryHeavyHitters (limit 100)": lambda: stub.QueryHeavyHitters(
            query_pb2.HeavyHittersRequest(task_name="cm", type=0, limit=100)
        ),
    }
    got = stub.AggregateFlows(query_pb2.AggregationRequest()).summaries[0]
    assert got.flow_count == a.flows and got.total_packets == a.flows * a.snapshots, got
    print(f"| call | p50 ms | p99 ms | calls/s (1 client) | calls/s ({a.threads} clients) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, fn in cases.items():
        fn()  # warm
        n = a.calls * (50 if name.startswith(("Health", "QueryHeavy")) else 1)
        lat = measure(fn, n)
        done = [0]
        lock = threading.Lock()
        stop = time.perf_counter() + max(3.0, 3 * statistics.median(lat))

        def worker() -> None:
            while time.perf_counter() < stop:
                fn()
                with lock:
                    done[0] += 1

        t = time.perf_counter()
        ths = [threading.Thread(target=worker) for _ in range(a.threads)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        par = done[0] / (time.perf_counter() - t)
        print(
            f"| {name} | {pct(lat, 0.5) * 1e3:.1f} | {pct(lat, 0.99) * 1e3:.1f} | {len(lat) / sum(lat):.1f} | {par:.1f} |"
        )
    server.stop(1).wait()
    core.close()
    store.close()


if __name__ == "__main__":
    main()
