"""The web pages' speed: every console query answered over HTTP, and page loads in headless Chromium, on a
benchmark store of ``--flows`` × ``--snapshots`` rows of ``flow_metrics`` (10 M by default) in embedded
chdb; or the dashboard's load time against a running API (``--url``, the original mode of this script).

The store: ``--flows`` five-tuple flows (sources 10.a.b.c, destinations 192.168.x.1 on ports 443 or 53,
bytes per flow spread over three orders of magnitude), each written at ``--snapshots`` snapshots 60 s
apart in one period, first packets spread over the first five minutes: one server-side ``INSERT …
SELECT FROM numbers()``, so filling is not what is measured. The API runs in this process (uvicorn on
127.0.0.1, the chdb session shared), as ``netspectra api`` does.

Measured: for each query, ``--calls`` sequential calls after one warm-up, p50 and p99 in ms, and whether
the answer was exact or a declared sample (1/N); for each view of the console and for the dashboard,
``--runs`` fresh loads in Chromium: first contentful paint and the time until the answer is drawn
(``body[data-updated]``), from the start of the navigation. Needs Debian's ``chromium`` and
``chromium-driver`` and ``selenium``::

    python benchmarks/bench_dashboard.py --chdb /tmp/bench-console          # build, then measure
    python benchmarks/bench_dashboard.py --chdb /tmp/bench-console --reuse  # measure an existing store
    python benchmarks/bench_dashboard.py --url http://127.0.0.1:8080        # the dashboard of a running API
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import threading
import time
from typing import Any
from urllib.parse import quote

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1100",
)
TIMINGS = """
const p = Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));
const n = performance.getEntriesByType('navigation')[0];
return [p['first-paint'], p['first-contentful-paint'], n.domContentLoadedEventEnd,
        Number(document.body.dataset.updated || 0) - performance.timeOrigin];
"""
T0 = 1_704_067_200 * 10**9
DATABASE = "bench_console"


def driver(chromium: str, chromedriver: str) -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for a in ARGS:
        options.add_argument(a)
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def page_loads(drv: Any, url: str, runs: int) -> list[list[float]]:
    """``runs`` fresh loads of ``url``: [first paint, first contentful paint, DOMContentLoaded, drawn] ms."""
    rows = []
    for _ in range(runs):
        drv.get("about:blank")
        drv.get(url)
        deadline = time.monotonic() + 120
        while not drv.execute_script("return document.body.dataset.updated || document.body.dataset.failed"):
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} drew no answer within 120 s")
            time.sleep(0.005)
        if drv.execute_script("return document.body.dataset.failed"):
            raise SystemExit(f"{url}: {drv.find_element('id', 'status').text}")
        rows.append(drv.execute_script(TIMINGS))
    return rows


def config(data_dir: str) -> str:
    w = (
        f"[{{type: clickhouse, enabled: true, snapshot_interval: 60s, clickhouse: "
        f"{{data_dir: '{data_dir}', database: {DATABASE}, history_resolution: 60s}}}}]"
    )
    return (
        "aggregator:\n  types: [exact, sketch, rollup]\n"
        f"  exact:\n    writers: {w}\n    tasks:\n"
        "      - {name: per_five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}\n"
        f"  sketch:\n    writers: {w}\n    tasks:\n      - {{name: cm, skt_type: 0, flow_fields: [SrcIP]}}\n"
        f"  rollup:\n    writers: {w}\n    tasks:\n      - {{name: traffic, dimensions: [Protocol]}}\n"
    )


def fill(store: Any, flows: int, snaps: int) -> None:
    """``flows`` × ``snaps`` rows, one INSERT … SELECT (see the module docstring)."""
    f = f"intDiv(number, {snaps})"  # the flow
    k = f"(number % {snaps} + 1)"  # the snapshot, 1..snaps
    start = f"{T0} + ({f} * 7919 % 300) * 1000000000 + {f} % 1000000"
    store.execute(
        f"INSERT INTO {store.table('flow_metrics')} (TimestampNs, PeriodStartNs, Bucket, TaskName, FlowHash, "
        "SrcIP, DstIP, SrcPort, DstPort, Protocol, StartNs, EndNs, ByteCount, PacketCount) "
        f"SELECT {T0} + {k} * 60000000000 AS ts, {T0}, toDateTime(intDiv(ts, 1000000000), 'UTC'), "
        f"'per_five_tuple', cityHash64({f}), "
        f"concat('10.', toString(intDiv({f}, 65536) % 256), '.', toString(intDiv({f}, 256) % 256), '.', "
        f"toString({f} % 256)), concat('192.168.', toString({f} % 200), '.1'), toUInt16(1024 + {f} % 60000), "
        f"toUInt16(if({f} % 7 = 0, 53, 443)), toUInt8(if({f} % 7 = 0, 17, 6)), toInt64({start}) AS s, "
        f"toInt64(greatest(s, ts - 1000000000)), {k} * (64 + ({f} * 2654435761) % 1000 * ({f} % 97 + 1)), "
        f"{k} * 3 "
        f"FROM numbers({flows * snaps})"
    )
    # the rollup task's rows: each flow's final counts in the bucket of its first packet (its packets all lie
    # within a second of it but the last snapshot's), per protocol, in the three tables
    for table, width in (("rollup_1m", 60), ("rollup_5m", 300), ("rollup_1h", 3600)):
        w, last = width * 10**9, T0 + snaps * 60 * 10**9
        store.execute(
            f"INSERT INTO {store.table(table)} (TimestampNs, PeriodStartNs, TaskName, BucketNs, Epoch, "
            f"Protocol, Packets, Bytes) SELECT {last}, {T0}, 'traffic', intDiv(StartNs, {w}) * {w} AS b, 0, "
            f"Protocol, sum(PacketCount), sum(ByteCount) FROM {store.table('flow_metrics')} "
            f"WHERE TimestampNs = {last} GROUP BY b, Protocol"
        )
    store.execute(
        f"INSERT INTO {store.table('heavy_hitters')} (TimestampNs, PeriodStartNs, Bucket, TaskName, Flow, "
        f"Value, Type) SELECT {T0} + 60000000000, {T0}, toDateTime({T0 // 10**9 + 60}, 'UTC'), 'cm', "
        "concat('10.0.', toString(intDiv(number, 256)), '.', toString(number % 256)), number, number % 2 "
        "FROM numbers(20000)"
    )


class Served:
    """uvicorn serving ``app`` in a thread on a free port of 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        # IPPROTO_TCP: asyncio then sets TCP_NODELAY on accepted connections (as netspectra.api.server does)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


QUERIES: list[tuple[str, str, dict[str, Any]]] = [
    ("catalog", "/api/v1/console/catalog", {}),
    ("visualize: total, traffic time", "/api/v1/console/visualize", {"dims": ""}),
    ("visualize: top 10 DstPort", "/api/v1/console/visualize", {"dims": "DstPort"}),
    ("visualize: top 10 SrcIP", "/api/v1/console/visualize", {"dims": "SrcIP"}),
    ("visualize: sankey SrcIP·DstIP·DstPort", "/api/v1/console/visualize", {"dims": "SrcIP,DstIP,DstPort"}),
    ("visualize: filter CIDR + port", "/api/v1/console/visualize",
     {"dims": "DstIP", "filter": "SrcIP << 10.1.0.0/16 AND DstPort = 443"}),
    ("visualize: stored-time axis", "/api/v1/console/visualize", {"dims": "DstPort", "axis": "snapshot"}),
    ("visualize: top 10 DstPort, exact", "/api/v1/console/visualize", {"dims": "DstPort", "exact": "1"}),
    ("visualize: Protocol, 1-min steps (rollup)", "/api/v1/console/visualize",
     {"dims": "Protocol", "points": "5"}),
    ("visualize: Protocol, 1-min steps, full resolution", "/api/v1/console/visualize",
     {"dims": "Protocol", "points": "5", "resolution": "full"}),
    ("flows: top 50 by bytes", "/api/v1/console/flows", {}),
    ("flows: filter SrcIP", "/api/v1/console/flows", {"filter": "SrcIP = 10.1.2.3"}),
    ("host 10.1.2.3", "/api/v1/console/host", {"ip": "10.1.2.3"}),
    ("live", "/api/v1/console/live", {}),
    ("complete: field", "/api/v1/console/complete", {"text": "Dst", "cursor": "3"}),
    ("complete: values", "/api/v1/console/complete", {"text": "DstIP = 192.168.1", "cursor": "17"}),
    ("filter check", "/api/v1/console/filter", {"filter": "SrcIP << 10.0.0.0/8 AND DstPort IN (53, 443)"}),
]  # fmt: skip
VIEWS = [
    ("dashboard /", "/?refresh=0"),
    ("console: visualize", "/console/visualize?dims=DstPort"),
    ("console: visualize sankey", "/console/visualize?dims=SrcIP,DstPort&chart=sankey"),
    ("console: flows", "/console/flows"),
    ("console: host", "/console/host?ip=10.1.2.3"),
    ("console: alerts", "/console/alerts"),
    ("console: live", "/console/live?refresh=0"),
]


def bench_store(a: argparse.Namespace) -> None:
    import httpx

    from netspectra.api.grpc_service import QueryCore
    from netspectra.api.http_app import create_app
    from netspectra.config import parse_config_text
    from netspectra.storage.store import connect_store

    cfg = parse_config_text(config(a.chdb))
    store = connect_store(cfg.aggregator.exact.writers[0].params)
    have = store.query(f"SELECT count() FROM {store.table('flow_metrics')}")[0][0]
    if not (a.reuse and have):
        store.execute(f"TRUNCATE TABLE {store.table('flow_metrics')}")
        store.execute(f"TRUNCATE TABLE {store.table('heavy_hitters')}")
        for table in ("rollup_1m", "rollup_5m", "rollup_1h"):
            store.execute(f"TRUNCATE TABLE {store.table(table)}")
        t = time.perf_counter()
        fill(store, a.flows, a.snapshots)
        print(f"filled in {time.perf_counter() - t:.1f} s")
    rows = store.query(f"SELECT count() FROM {store.table('flow_metrics')}")[0][0]
    print(f"flow_metrics: {rows:,} rows ({a.flows:,} flows × {a.snapshots} snapshots), embedded chdb\n")
    core = QueryCore(cfg)
    with Served(create_app(core)) as served, httpx.Client(base_url=served.url, timeout=300) as http:
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"| query (HTTP, {a.calls} calls) | p50 ms | p99 ms | min ms | answer |")
        print("| --- | ---: | ---: | ---: | --- |")
        for name, path, params in QUERIES:
            res = http.get(path, params=params)  # warm-up (and the answer's shape)
            assert res.status_code == 200, (name, res.text)
            doc = res.json()
            lat = []
            for _ in range(a.calls):
                t = time.perf_counter()
                assert http.get(path, params=params).status_code == 200
                lat.append((time.perf_counter() - t) * 1000)
            sample = doc.get("sample", 1) if isinstance(doc, dict) else 1
            how = f"sample 1/{sample}" if sample > 1 else "exact"
            if name.startswith("visualize"):
                how += f", total {doc['total']['packets']:,} packets, from {doc['table']}"
            print(f"| {name} | {pct(lat, 0.5):.0f} | {pct(lat, 0.99):.0f} | {min(lat):.0f} | {how} |")
        # the flows page found among the flows of the top rows equals the page of every flow grouped
        from netspectra.storage.console import flows as flows_module

        fast = http.get("/api/v1/console/flows", params={"limit": 50}).json()["rows"]
        tries, flows_module._TRIES = flows_module._TRIES, 0
        full = http.get("/api/v1/console/flows", params={"limit": 50}).json()["rows"]
        flows_module._TRIES = tries
        assert fast == full, "the flows page from candidates differs from the full grouping"
        drv = driver(a.chromium, a.chromedriver)
        try:
            heads = "first contentful paint p50 ms | answer drawn p50 ms | drawn min ms | drawn max ms"
            print(f"\n| page (fresh loads) | {heads} |")
            print("| --- | ---: | ---: | ---: | ---: |")
            for name, path in VIEWS:
                # the dashboard's series regroup every stored version: tens of seconds here, 2 loads do
                runs = min(a.runs, 2) if path.startswith("/?") else a.runs
                loads = page_loads(drv, f"{served.url}{path}", runs)
                fcp = [r[1] for r in loads if r[1] is not None]
                drawn = [r[3] for r in loads]
                cells = (
                    f"{statistics.median(fcp):.0f} | {statistics.median(drawn):.0f} | {min(drawn):.0f} | "
                    f"{max(drawn):.0f}"
                )
                print(f"| {name} ({runs}) | {cells} |")
        finally:
            drv.quit()
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    core.close()
    store.close()
    _ = quote


def bench_url(a: argparse.Namespace) -> None:
    drv = driver(a.chromium, a.chromedriver)
    try:
        rows = page_loads(drv, f"{a.url}/?refresh=0", a.runs)
    finally:
        drv.quit()
    print(f"{a.runs} loads of {a.url}/ (ms)          p50      max")
    for i, name in enumerate(("first paint", "first contentful paint", "DOMContentLoaded", "data drawn")):
        values = [r[i] for r in rows if r[i] is not None]
        print(f"  {name:<32} {statistics.median(values):8.1f} {max(values):8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chdb", help="data directory of the benchmark store (built unless --reuse)")
    ap.add_argument("--reuse", action="store_true", help="measure the store already in --chdb")
    ap.add_argument("--flows", type=int, default=2_000_000)
    ap.add_argument("--snapshots", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--url", help="measure the dashboard of a running API instead")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    a = ap.parse_args()
    if a.url:
        bench_url(a)
    elif a.chdb:
        bench_store(a)
    else:
        ap.error("give --chdb DIR (a benchmark store) or --url URL (a running API)")


if __name__ == "__main__":
    main()
