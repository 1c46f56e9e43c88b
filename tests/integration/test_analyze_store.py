"""``netspectra analyze --store``: an offline run fills ClickHouse (embedded chdb and a real server) through
the engine, and the stored totals equal the exact totals of the capture."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"
GOLDEN = json.loads((ROOT / "tests" / "golden" / "expected" / "gnutella.pcap.summary.json").read_text())

QUERY = """
import json, sys
from netspectra.config import load_config
from netspectra.storage.clickhouse import ClickHouseStore
from netspectra.storage.queries import aggregate_flows, heavy_hitters
cfg = load_config(sys.argv[1])
store = ClickHouseStore(cfg.aggregator.exact.writers[0].params)
store.open()
import dataclasses
aggs = [dataclasses.asdict(s) for s in aggregate_flows(store)]
spread = heavy_hitters(store, "ss", 2, limit=5)
print(json.dumps({"aggs": aggs, "spread": [list(x) for x in spread]}))
"""


def config_text(clickhouse: dict[str, object]) -> str:
    ch = "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in clickhouse.items()) + "}"
    writer = f"[{{type: clickhouse, enabled: true, snapshot_interval: 60s, clickhouse: {ch}}}]"
    return (
        "aggregator:\n  types: [exact, sketch]\n"
        f"  exact:\n    writers: {writer}\n"
        "    tasks:\n      - {name: per_five_tuple, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}\n"
        "      - {name: per_src, key_fields: [SrcIP]}\n"
        f"  sketch:\n    writers: {writer}\n"
        "    tasks:\n      - {name: ss, skt_type: 1, flow_fields: [SrcIP], element_fields: [DstIP],\n"
        "         width: 4096, depth: 2, count_thereshold: 5, m: 128, size: 5, b: 1.08, base: 0.5, seed: 3}\n"
    )


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


def check_store(conf: Path, tmp: Path) -> None:
    res = run(
        [sys.executable, "-m", "netspectra", "analyze", str(CAPTURE), "-c", str(conf), "--store", "--json"],
        tmp,
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert all(w["written"] >= 1 and w["dropped"] == 0 for w in doc["store"].values()), doc["store"]
    # a second process reads the store (chdb: one process per data directory at a time)
    out = run([sys.executable, "-c", QUERY, str(conf)], tmp)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    aggs = {a["task_name"]: a for a in got["aggs"]}
    for task in ("per_five_tuple", "per_src"):
        assert aggs[task]["total_packets"] == GOLDEN["ip_packets"] == 3882
        assert aggs[task]["total_bytes"] == GOLDEN["ip_bytes"]
    assert aggs["per_five_tuple"]["flow_count"] == GOLDEN["flows"] == 937
    top_flow, top_value = got["spread"][0]
    assert top_flow == "10.0.2.15" and top_value > 300  # 514 distinct destinations (tshark)


def test_store_into_embedded_chdb(tmp_path: Path) -> None:
    pytest.importorskip("chdb", reason="chdb is not installed")
    conf = tmp_path / "c.yaml"
    conf.write_text(config_text({"data_dir": str(tmp_path / "chdb")}))
    check_store(conf, tmp_path)


def test_store_in_use_by_another_process_is_an_error_before_the_analysis(tmp_path: Path) -> None:
    """A chdb data directory another process has open (a running ``up``): ``analyze --store`` says so at
    once, in one line naming that process (it analysed, then retried for 30 s with chdb's raw log lines
    and lost the results); once that process is gone the same command stores."""
    data = tmp_path / "chdb"
    conf = tmp_path / "c.yaml"
    conf.write_text(config_text({"data_dir": str(data)}))
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from chdb import session; s = session.Session({str(data)!r}); print('open', "
         "flush=True); import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        res = run(
            [sys.executable, "-m", "netspectra", "analyze", str(CAPTURE), "-c", str(conf), "--store"],
            tmp_path,
        )
        assert res.returncode == 1, res.stderr
        text = " ".join(res.stderr.split())
        assert f"is in use by another process (pid {holder.pid})" in text, res.stderr
        assert "Cannot lock file" not in res.stderr and res.stdout == ""  # one line, before any analysis
    finally:
        holder.communicate("", timeout=60)
    check_store(conf, tmp_path)


def test_store_into_clickhouse_server(tmp_path: Path, clickhouse_server) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text(config_text(clickhouse_server.config()))
    check_store(conf, tmp_path)


def test_engine_survives_a_server_that_is_down_and_loses_nothing(
    tmp_path: Path, clickhouse_server_factory
) -> None:
    """The engine starts while ClickHouse is down, keeps counting, and stores everything once it is back."""
    from netspectra.capture.reader import CaptureReader
    from netspectra.config import load_config
    from netspectra.engine import Manager, ManualClock
    from netspectra.storage.clickhouse import ClickHouseStore
    from netspectra.storage.queries import aggregate_flows

    server = clickhouse_server_factory(tmp_path / "srv")
    server.stop()  # down before the engine starts; same ports later
    conf = tmp_path / "c.yaml"
    conf.write_text(config_text(server.config()))
    cfg = load_config(conf)
    manager = Manager.from_config(
        cfg,
        clock=ManualClock(),
        writer_backoff_initial_s=0.01,
        writer_backoff_max_s=0.2,
        writer_close_timeout_s=60,
    )
    manager.start()
    try:
        for batch in CaptureReader(CAPTURE, batch_size=500):
            manager.submit(batch)
        manager.flush()
        writers = manager.metrics_dict()["writers"]
        assert all(not w["opened"] for w in writers.values())  # nothing could connect
        server.start()
    finally:
        manager.stop()  # final snapshot of every task, retried until the server answers
    try:
        writers = manager.metrics_dict()["writers"]
        assert all(w["written"] >= 1 and w["dropped"] == 0 for w in writers.values()), writers
        assert sum(w["open_failed"] for w in writers.values()) >= 1
        store = ClickHouseStore(cfg.aggregator.exact.writers[0].params)
        store.open()
        aggs = {s.task_name: s for s in aggregate_flows(store)}
        assert aggs["per_five_tuple"].total_packets == GOLDEN["ip_packets"]
        assert aggs["per_five_tuple"].flow_count == GOLDEN["flows"]
        store.close()
    finally:
        server.stop()


def test_store_with_the_shipped_config_and_a_relative_data_dir(tmp_path: Path) -> None:
    """The shipped config stores into ./netspectra-data/chdb. `import chdb` moves the process's working
    directory for a moment; writers opening meanwhile once resolved the relative path into chdb's package."""
    pytest.importorskip("chdb", reason="chdb is not installed")
    for attempt in range(3):
        cwd = tmp_path / f"run{attempt}"
        cwd.mkdir()
        res = run(
            [sys.executable, "-m", "netspectra", "analyze", str(CAPTURE), "--store", "--json", "-n", "0"], cwd
        )
        assert res.returncode == 0, res.stderr
        assert "already uses" not in res.stderr
        writers = json.loads(res.stdout)["store"]
        assert writers and all(w["written"] >= 1 and w["open_failed"] == 0 for w in writers.values()), writers
        assert (cwd / "netspectra-data" / "chdb").is_dir()


FLOWS_QUERY = """
import json, sys
from netspectra.config import load_config
from netspectra.storage.clickhouse import ClickHouseStore
from netspectra.storage.flow_records import FlowRecordFilter, list_flows
cfg = load_config(sys.argv[1])
store = ClickHouseStore(cfg.aggregator.exact.writers[0].params)
store.open()
page = list_flows(store, FlowRecordFilter(task="flows"), order_by="bytes", descending=True, limit=1)
print(json.dumps({"total": page.total, "top": page.records.to_pylist()[0]["SrcToDstBytes"]}))
"""


def test_analyze_flows_store_puts_the_records_next_to_the_totals(tmp_path: Path) -> None:
    """``analyze --flows --store`` with no aggregator.flows section: the flows task gets the exact group's
    ClickHouse writer, and every record the run reports is in the ``flows`` table."""
    pytest.importorskip("chdb", reason="chdb is not installed")
    conf = tmp_path / "c.yaml"
    conf.write_text(config_text({"data_dir": str(tmp_path / "chdb")}))
    res = run(
        [sys.executable, "-m", "netspectra", "analyze", str(CAPTURE), "-c", str(conf), "--flows", "--store",
         "--json", "--out", str(tmp_path / "out")],
        tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert all(w["dropped"] == 0 for w in doc["store"].values()), doc["store"]
    import pyarrow.parquet as pq

    records = pq.read_table(tmp_path / "out" / "flows.parquet")
    out = run([sys.executable, "-c", FLOWS_QUERY, str(conf)], tmp_path)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["total"] == records.num_rows > 100
    import pyarrow.compute as pc

    biggest = pc.add(records["SrcToDstBytes"], records["DstToSrcBytes"])
    top = records.filter(pc.equal(biggest, pc.max(biggest)))["SrcToDstBytes"].to_pylist()
    assert got["top"] in top
