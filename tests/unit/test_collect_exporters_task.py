"""The exporters task (netspectra.collect.exporters_task) against a plain-Python reference, its kind, and
its rows in the ``exporters`` table (chdb)."""

from __future__ import annotations

import ipaddress
import uuid
from pathlib import Path

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.collect.exporters_kind import KIND, with_exporters_task
from netspectra.collect.exporters_task import MAX_RATES, OTHER_RATE, ExportersTask
from netspectra.kinds import AGGREGATORS


def _addr(text: str) -> np.ndarray:
    ip = ipaddress.ip_address(text)
    raw = ip.packed if ip.version == 6 else b"\x00" * 10 + b"\xff\xff" + ip.packed
    return np.frombuffer(raw, np.uint8)


def _batch(rng: np.random.Generator, n: int, exporters: list[str], rates: list[int]) -> PacketBatch:
    b = PacketBatch.empty(n, PacketBatch.EXPORT_COLUMNS)
    for c in b.columns():
        getattr(b, c)[...] = 0
    pick = rng.integers(0, len(exporters), n)
    b.exporter[:] = np.stack([_addr(e) for e in exporters])[pick]
    b.sampling_rate[:] = np.array(rates, np.uint32)[rng.integers(0, len(rates), n)]
    raw = rng.integers(1, 50, n).astype(np.uint64)
    b.packets[:] = raw * np.maximum(b.sampling_rate, 1)
    b.octets[:] = b.packets * rng.integers(40, 1500, n).astype(np.uint64)
    b.ts_ns[:] = rng.integers(10**18, 10**18 + 10**12, n)
    return b


def reference(batches: list[PacketBatch]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for b in batches:
        for i in range(len(b)):
            a = ipaddress.IPv6Address(bytes(b.exporter[i]))
            key = str(a.ipv4_mapped or a)
            r = out.setdefault(
                key, {"first": 2**63, "last": -(2**63), "records": 0, "packets": 0, "bytes": 0, "rates": {}}
            )
            t = int(b.ts_ns[i])
            r["first"], r["last"] = min(r["first"], t), max(r["last"], t)
            r["records"] += 1
            r["packets"] += int(b.packets[i])
            r["bytes"] += int(b.octets[i])
            rate = int(b.sampling_rate[i])
            r["rates"][rate] = r["rates"].get(rate, 0) + 1
    return out


def test_task_matches_the_reference() -> None:
    rng = np.random.default_rng(4)
    exporters = ["192.0.2.1", "192.0.2.2", "2001:db8::7", "198.51.100.9"]
    batches = [_batch(rng, 500, exporters, [1, 100, 1000, 0]) for _ in range(6)]
    batches.append(_batch(rng, 300, exporters[:1], [512]))  # the one-exporter path
    task = ExportersTask("exporters")
    for b in batches:
        task.update(b)
    task.update(PacketBatch.empty(0, PacketBatch.EXPORT_COLUMNS))
    plain = PacketBatch.empty(7)  # captured packets: no exporter column
    task.update(plain)
    snap = task.snapshot()
    want = reference(batches)
    got = {r["exporter"]: r for r in snap.rows()}
    assert set(got) == set(want)
    for e, w in want.items():
        g = got[e]
        assert (g["first_ns"], g["last_ns"]) == (w["first"], w["last"]), e
        assert (g["records"], g["packets"], g["bytes"]) == (w["records"], w["packets"], w["bytes"]), e
        assert g["sampling_rates"] == dict(sorted(w["rates"].items())), e
        assert g["records_without_rate"] == w["rates"].get(0, 0), e
    assert snap.rows_without_exporter == 7
    t = snap.to_arrow()
    assert t.num_rows == 4 and t.column("Records").to_pylist() == [
        got[e]["records"] for e in snap.addresses()
    ]
    task.reset()
    assert len(task.snapshot()) == 0


def test_rates_and_exporters_are_bounded() -> None:
    task = ExportersTask("exporters", max_exporters=2)
    b = PacketBatch.empty(MAX_RATES + 10, PacketBatch.EXPORT_COLUMNS)
    for c in b.columns():
        getattr(b, c)[...] = 0
    b.exporter[:] = _addr("192.0.2.1")
    b.sampling_rate[:] = np.arange(1, MAX_RATES + 11, dtype=np.uint32)
    task.update(b)
    (row,) = task.snapshot().rows()
    assert len(row["sampling_rates"]) == MAX_RATES + 1 and row["sampling_rates"][OTHER_RATE] == 10
    c = b.take(np.arange(3))
    c.exporter[:] = np.stack([_addr("192.0.2.2"), _addr("192.0.2.3"), _addr("192.0.2.4")])
    task.update(c)
    snap = task.snapshot()
    assert len(snap) == 2 and snap.rows_over_limit == 2


def test_kind_is_registered_and_added_once() -> None:
    from netspectra.config import parse_config_text

    assert AGGREGATORS.get("exporters") is KIND
    cfg = parse_config_text(
        """
aggregator:
  types: [exact]
  exact:
    writers: [{type: clickhouse, enabled: true, clickhouse: {data_dir: /tmp/x}}]
    tasks: [{name: exporters, key_fields: [SrcIP]}]
""",
        source="t.yaml",
        expand=False,
    )
    out = with_exporters_task(cfg)
    assert "exporters" in out.aggregator.types
    (task,) = out.aggregator.group("exporters").tasks
    assert task.name == "flow_exporters"  # "exporters" is taken by the exact task
    (w,) = out.aggregator.group("exporters").writers
    assert w.type == "clickhouse" and w.params.data_dir == "/tmp/x"
    assert with_exporters_task(out) is out


def test_rows_round_trip_through_the_exporters_table(chdb_data_dir: Path) -> None:
    pytest.importorskip("chdb", reason="the embedded ClickHouse engine needs chdb")
    from netspectra.config.aggregator import WriterConfig
    from netspectra.storage.base import SnapshotMeta
    from netspectra.storage.clickhouse import ClickHouseWriter
    from netspectra.storage.clickhouse_config import ClickHouseConfig
    from netspectra.storage.exporters import list_exporters

    rng = np.random.default_rng(9)
    ch = ClickHouseConfig(data_dir=str(chdb_data_dir), database=f"exp_test_{uuid.uuid4().hex[:8]}")
    writer = ClickHouseWriter(WriterConfig(type="clickhouse", enabled=True, params=ch), "exporters")
    writer.open()
    try:
        task = ExportersTask("exporters")
        b1 = _batch(rng, 400, ["192.0.2.1", "2001:db8::7"], [100, 0])
        task.update(b1)
        writer.write_exporters(task.snapshot(), SnapshotMeta(10, 1))
        writer.write_exporters(task.snapshot(), SnapshotMeta(11, 1))  # the same period again: replaces
        first = reference([b1])
        task.reset()
        b2 = _batch(rng, 300, ["192.0.2.1"], [100])
        task.update(b2)
        writer.write_exporters(task.snapshot(), SnapshotMeta(20, 2, final=True))  # the next period: adds
        stored = {x.address: x for x in list_exporters(writer.store)}
        both = reference([b1, b2])
        assert set(stored) == {"192.0.2.1", "2001:db8::7"}
        for e, w in both.items():
            x = stored[e]
            assert (x.records, x.packets, x.bytes) == (w["records"], w["packets"], w["bytes"])
            assert (x.first_seen_ns, x.last_seen_ns) == (w["first"], w["last"])
            assert x.sampling_rates == dict(sorted(w["rates"].items()))
            assert x.records_without_rate == w["rates"].get(0, 0)
        # a range that only the first period's records overlap
        only = list_exporters(writer.store, "exporters", end_ns=min(int(b2.ts_ns.min()), int(b1.ts_ns.min())))
        assert {x.address for x in only} <= set(first)
        with pytest.raises(ValueError, match="after end_ns"):
            list_exporters(writer.store, start_ns=5, end_ns=4)
    finally:
        writer.close()


def test_an_empty_exporters_answer_says_why(chdb_data_dir: Path) -> None:
    """``query exporters`` with nothing to list says why, as ``query top`` says which table answered: the
    service's ``reason`` (ListExportersResponse), printed by the CLI and in the REST answer; none when
    there are exporters."""
    pytest.importorskip("chdb", reason="the embedded ClickHouse engine needs chdb")
    import json

    from typer.testing import CliRunner

    from netspectra.api.grpc_service import QueryCore, create_grpc_server
    from netspectra.cli.api_cmds import query_app
    from netspectra.config import parse_config_text
    from netspectra.config.aggregator import WriterConfig
    from netspectra.storage.base import SnapshotMeta
    from netspectra.storage.clickhouse import ClickHouseWriter
    from netspectra.storage.clickhouse_config import ClickHouseConfig

    database = f"exp_why_{uuid.uuid4().hex[:8]}"
    store = f"{{data_dir: '{chdb_data_dir}', database: {database}}}"
    writer_yaml = f"[{{type: clickhouse, enabled: true, clickhouse: {store}}}]"
    exact = f"  exact:\n    writers: {writer_yaml}\n    tasks: [{{name: five, key_fields: [SrcIP]}}]\n"
    plain = parse_config_text(f"aggregator:\n  types: [exact]\n{exact}")
    with_task = parse_config_text(
        f"aggregator:\n  types: [exact, exporters]\n{exact}"
        f"  exporters:\n    writers: {writer_yaml}\n    tasks: [{{name: exporters}}]\n"
    )
    runner = CliRunner()

    def ask(cfg: object, *args: str) -> str:
        core = QueryCore(cfg)  # type: ignore[arg-type]
        server, port, _ = create_grpc_server(core, "127.0.0.1:0", max_workers=2)
        server.start()
        try:
            out = runner.invoke(query_app, ["exporters", "--addr", f"127.0.0.1:{port}", *args])
        finally:
            server.stop(1).wait()
            core.close()
        assert out.exit_code == 0, out.output
        return " ".join(out.output.split())

    # nothing stored, no exporters task: who runs one
    said = ask(plain)
    assert (
        "Flow exporters: 0" in said
        and "the configuration has no exporters task (aggregator.exporters)" in said
    )
    assert "up --collect" in said, said
    # an exporters task that stored nothing yet
    said = ask(with_task)
    assert "the exporters task 'exporters' stored no exporter yet" in said, said
    ch = ClickHouseConfig(data_dir=str(chdb_data_dir), database=database)
    writer = ClickHouseWriter(WriterConfig(type="clickhouse", enabled=True, params=ch), "exporters")
    writer.open()
    try:
        task = ExportersTask("exporters")
        task.update(_batch(np.random.default_rng(3), 50, ["192.0.2.1", "192.0.2.2"], [100]))
        writer.write_exporters(task.snapshot(), SnapshotMeta(10, 1, final=True))
    finally:
        writer.close()
    # stored, but not in the range asked for
    said = ask(with_task, "--start", "2100-01-01")
    assert "none in the range: the 2 exporters stored sent records from 2001-09-09T" in said, said
    # a task name near a stored one
    said = ask(plain, "--task", "exporter")
    assert "no exporter stored for task 'exporter' (did you mean 'exporters'?)" in said, said
    # exporters listed: no reason
    said = ask(plain, "--json")
    doc = json.loads(said)
    assert {e["address"] for e in doc["exporters"]} == {"192.0.2.1", "192.0.2.2"} and "reason" not in doc
