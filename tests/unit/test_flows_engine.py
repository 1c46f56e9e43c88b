"""Flow records through the engine: the configuration, the Manager's clock ticks, incremental snapshots to
every writer (the real Parquet and text writers), periods, stop, the offline run and analyze --flows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from netspectra.batch import PacketBatch
from netspectra.capture.reader import CaptureReader
from netspectra.config import ConfigError, load_config
from netspectra.config.models import Config
from netspectra.engine import Manager, ManualClock, run_offline
from netspectra.flows.kind import KIND, FlowsTaskConfig, with_flows_task
from netspectra.flows.records import FlowRecords
from netspectra.flows.task import FlowTask
from netspectra.kinds import AGGREGATORS

NS = 1_000_000_000
CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"
V4 = np.frombuffer(bytes(10) + b"\xff\xff", np.uint8)

#: The optional columns a captured packet has (the flow-export columns make a row a record).
PACKET_COLUMNS = tuple(c for c in PacketBatch.OPTIONAL if c not in PacketBatch.EXPORT_COLUMNS)


def config(
    tmp: Path, *, writers: list[dict] | None = None, task: dict | None = None, period: str | None = None
) -> Config:
    """A configuration running one flows task ``f``, read from YAML as a user's would be."""
    agg: dict = {
        "types": ["flows"],
        "flows": {"writers": writers or [], "tasks": [{"name": "f", **(task or {})}]},
    }
    if period:
        agg["period"] = period
    path = tmp / f"config-{len(list(tmp.glob('config-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({"aggregator": agg}))
    return load_config(path)


def parquet_writer(root: Path, interval: str) -> dict:
    return {
        "type": "parquet",
        "enabled": True,
        "snapshot_interval": interval,
        "parquet": {"root_path": str(root)},
    }


def conversation(t0: float, port: int, n: int = 4, gap: float = 1.0) -> PacketBatch:
    """``n`` TCP packets alternating between 10.0.0.1:port and 10.0.0.2:80, ``gap`` s apart from ``t0``."""
    b = PacketBatch.empty(n, PACKET_COLUMNS)
    a = np.concatenate([V4, [10, 0, 0, 1]]).astype(np.uint8)
    z = np.concatenate([V4, [10, 0, 0, 2]]).astype(np.uint8)
    for i in range(n):
        fwd = i % 2 == 0
        b.ts_ns[i] = int((t0 + i * gap) * NS)
        b.src_ip[i], b.dst_ip[i] = (a, z) if fwd else (z, a)
        b.src_port[i], b.dst_port[i] = (port, 80) if fwd else (80, port)
        b.protocol[i] = 6
        b.length[i] = 100
        b.tcp_flags[i] = 0x02 if i == 0 else (0x12 if i == 1 else 0x10)
        b.vlan_id[i] = 0
        b.icmp_type_code[i] = 0
        b.ip_length[i] = 86
    return b


def parquet_records(root: Path) -> pa.Table:
    files = sorted(root.rglob("*.parquet"))
    if not files:
        return pa.table({"SrcPort": pa.array([], pa.uint16())})
    return pa.concat_tables([pq.read_table(f) for f in files])


def text_records(root: Path) -> list[str]:
    lines: list[str] = []
    for f in sorted(root.rglob("flow_records.txt")):
        lines += [ln for ln in f.read_text().splitlines() if ln and not ln.startswith("#")]
    return lines


# --- configuration ------------------------------------------------------------------------------


def test_configuration_defaults_and_errors(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    (task,) = cfg.aggregator.group("flows").tasks
    assert isinstance(task, FlowsTaskConfig)
    assert (task.idle_timeout.total_seconds(), task.active_timeout.total_seconds()) == (120, 1800)
    assert (task.tcp_end, task.splt, task.statistics, task.max_flows) == (False, 0, True, 1_000_000)
    with pytest.raises(ConfigError, match=r"aggregator.flows.tasks\[0\].idle_timeout: '0s' must be positive"):
        config(tmp_path, task={"idle_timeout": "0s"})
    with pytest.raises(ConfigError, match=r"aggregator.flows.tasks\[0\].splt"):
        config(tmp_path, task={"splt": 300})
    # the ClickHouse writer stores flow records (the flows table); an unknown kind is refused by name
    cfg = config(tmp_path, writers=[{"type": "clickhouse", "enabled": True}])
    assert [w.type for w in cfg.aggregator.group("flows").writers] == ["clickhouse"]
    with pytest.raises(ConfigError, match=r"'clickhose' is not a writer type of the flows group"):
        config(tmp_path, writers=[{"type": "clickhose", "enabled": True}])
    assert "flows" in AGGREGATORS.names() and AGGREGATORS.get("flows") is KIND
    assert KIND.memory_bytes(task) > 0 and "max_flows 1,000,000" in KIND.memory_detail(task)


def test_with_flows_task_adds_a_default_task_once(tmp_path: Path) -> None:
    plain = Config.model_validate(
        {"aggregator": {"types": ["exact"], "exact": {"tasks": [{"name": "e", "key_fields": ["SrcIP"]}]}}}
    )
    cfg = with_flows_task(plain)
    assert cfg.aggregator.types == ("exact", "flows")
    assert [t.name for t in cfg.aggregator.group("flows").tasks] == ["flows"]
    assert with_flows_task(cfg) is cfg
    own = config(tmp_path, task={"idle_timeout": "5s"})
    assert with_flows_task(own) is own


# --- the clock ----------------------------------------------------------------------------------


def test_a_quiet_connection_is_emitted_by_the_clock(tmp_path: Path) -> None:
    """No packet after the connection: its record leaves within idle_timeout + one snapshot interval."""
    clock = ManualClock()
    cfg = config(tmp_path, writers=[parquet_writer(tmp_path / "pq", "10s")], task={"idle_timeout": "30s"})
    m = Manager.from_config(cfg, clock=clock, num_workers=1)
    m.start()
    try:
        m.submit(conversation(1_400_000_000.0, 40000, n=4))  # packet time of 2014: the clock is another
        m.flush()
        waited = 0
        while True:
            clock.advance(5)
            waited += 5
            assert m.settle()
            got = parquet_records(tmp_path / "pq")
            if got.num_rows:
                break
            assert waited <= 40, "not emitted within idle_timeout + one snapshot interval"
        assert waited >= 30  # and not before the idle timeout has passed on the clock
        (row,) = got.to_pylist()
        assert (row["EndReason"], row["SrcToDstPackets"], row["DstToSrcPackets"]) == ("idle", 2, 2)
        assert row["ConnState"] == "S1"
    finally:
        m.stop()
    assert parquet_records(tmp_path / "pq").num_rows == 1  # the stop adds nothing: it was handed out


def test_every_writer_gets_every_record_once_across_periods_and_stop(tmp_path: Path) -> None:
    clock = ManualClock()
    writers = [
        parquet_writer(tmp_path / "pq", "10s"),
        {
            "type": "text",
            "enabled": True,
            "snapshot_interval": "25s",
            "text": {"root_path": str(tmp_path / "txt")},
        },
        {"type": "parquet", "enabled": True, "parquet": {"root_path": str(tmp_path / "final_only")}},
    ]
    cfg = config(tmp_path, writers=writers, task={"idle_timeout": "20s"}, period="60s")
    m = Manager.from_config(cfg, clock=clock, num_workers=2)
    direct = FlowTask("f", KIND.build_task(cfg.aggregator.group("flows").tasks[0]).task.params)
    m.start()
    t0 = 1_500_000_000.0
    for step in range(24):
        # a new short conversation every 5 s of both times; some ports come back after a quiet spell
        b = conversation(t0 + 5 * step, 40000 + step % 7, n=3, gap=0.5)
        m.submit(b)
        direct.update(b)
        m.flush()
        clock.advance(5)
        assert m.settle()
    m.stop()
    direct.tick(10**12)
    direct.finish("shutdown")
    cols = ["SrcPort", "FirstSeen", "SrcToDstPackets", "DstToSrcPackets"]
    want = sorted(
        direct.drain().to_arrow().select(cols).to_pylist(), key=lambda r: (r["FirstSeen"], r["SrcPort"])
    )
    assert m.metrics.periods.value >= 2
    for root in ("pq", "final_only"):
        got = parquet_records(tmp_path / root).select(
            ["SrcPort", "FirstSeen", "SrcToDstPackets", "DstToSrcPackets"]
        )
        assert sorted(got.to_pylist(), key=lambda r: (r["FirstSeen"], r["SrcPort"])) == want, root
    assert len(text_records(tmp_path / "txt")) == len(want)
    files = list((tmp_path / "pq").rglob("*.parquet"))
    assert len(files) > 5  # the 10 s writer received increments, not one final file
    summaries = [json.loads(f.read_text()) for f in (tmp_path / "txt").rglob("summary.json")]
    assert sum(s["records"] for s in summaries) == len(want)


def test_stop_ends_open_flows_with_shutdown_and_offline_with_end_of_input(tmp_path: Path) -> None:
    cfg = config(tmp_path, writers=[parquet_writer(tmp_path / "live", "10s")])
    m = Manager.from_config(cfg, clock=ManualClock(), num_workers=1)
    m.start()
    m.submit(conversation(1_400_000_000.0, 41000))
    m.stop()
    assert parquet_records(tmp_path / "live").column("EndReason").to_pylist() == ["shutdown"]
    run = run_offline([CAPTURES / "tcp-handshake-nano.pcap"], cfg, writers=False, out=tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "f.parquet")
    assert table.num_rows > 0 and set(table.column("EndReason").to_pylist()) <= {"end_of_input", "idle"}
    snap = run.manager.task("f").snapshot()
    assert isinstance(snap, FlowRecords) and len(snap) == 0  # everything was handed out
    assert snap.summary.records == table.num_rows


def test_a_records_task_needs_the_decoded_columns(tmp_path: Path) -> None:
    """The offline run decodes the optional columns when a flows task runs (TCP state is known)."""
    cfg = config(tmp_path)
    run = run_offline([CAPTURES / "tcp-handshake-nano.pcap"], cfg, writers=False, out=tmp_path / "o")
    table = pq.read_table(tmp_path / "o" / "f.parquet")
    assert set(table.column("ConnState").to_pylist()) - {None}
    assert run.manager.task("f").task.missing_columns == set()


def test_capture_after_capture_in_older_time_starts_a_new_time_base(tmp_path: Path) -> None:
    newer, older = CAPTURES / "tcp-handshake-nano.pcap", CAPTURES / "gnutella.pcap"
    cfg = config(tmp_path)
    run_offline([newer, older], cfg, writers=False, out=tmp_path / "both")
    both = pq.read_table(tmp_path / "both" / "f.parquet")
    separately = []
    for p in (newer, older):
        run_offline([p], cfg, writers=False, out=tmp_path / p.stem)
        separately.append(pq.read_table(tmp_path / p.stem / "f.parquet"))
    cols = [
        "SrcIP",
        "DstIP",
        "SrcPort",
        "DstPort",
        "FirstSeen",
        "LastSeen",
        "SrcToDstPackets",
        "DstToSrcPackets",
    ]
    key = lambda r: tuple(str(v) for v in r.values())  # noqa: E731
    assert sorted(both.select(cols).to_pylist(), key=key) == sorted(
        pa.concat_tables(separately).select(cols).to_pylist(), key=key
    )


def test_analyze_flows_cli_writes_flows_parquet_and_csv(tmp_path: Path) -> None:
    cap = CAPTURES / "tcp-handshake-nano.pcap"
    env_cmd = [sys.executable, "-m", "netspectra", "analyze", str(cap), "--flows"]
    out = subprocess.run(
        [*env_cmd, "--out", str(tmp_path / "pq"), "--json"], capture_output=True, text=True, check=True
    )
    doc = json.loads(out.stdout)
    (task,) = doc["flow_tasks"]
    assert task["name"] == "flows" and task["records"] > 0 and task["by_end_reason"]["end_of_input"] >= 1
    table = pq.read_table(tmp_path / "pq" / "flows.parquet")
    required = "SrcIP DstIP SrcPort DstPort Protocol VlanID FirstSeen LastSeen SrcToDstPackets SrcToDstBytes"
    for col in (*required.split(), "DstToSrcPackets", "DstToSrcBytes", "EndReason"):
        assert col in table.column_names
    assert table.schema.field("FirstSeen").type == pa.timestamp("ns", tz="UTC")
    assert table.num_rows == task["records"]
    subprocess.run([*env_cmd, "--out", str(tmp_path / "csv"), "--csv"], capture_output=True, check=True)
    header = (tmp_path / "csv" / "flows.csv").read_text().splitlines()[0]
    assert header.startswith('"TaskName","SrcIP","DstIP"')
    text = subprocess.run(env_cmd, capture_output=True, text=True, check=True).stdout
    assert "Flow records by end reason" in text and "connections by bytes" in text


def test_flows_task_name_clash_is_a_configuration_error() -> None:
    agg = {
        "types": ["exact", "flows"],
        "exact": {"tasks": [{"name": "f", "key_fields": ["SrcIP"]}]},
        "flows": {"tasks": [{"name": "f"}]},
    }
    with pytest.raises(ValueError, match="unique"):
        Config.model_validate({"aggregator": agg})


def test_reader_batches_feed_the_same_records_in_any_batch_size() -> None:
    recs = []
    for bs in (64, 100_000):
        task = FlowTask("t")
        for b in CaptureReader(CAPTURES / "gnutella.pcap", extras=True, batch_size=bs):
            task.update(b)
        task.finish()
        recs.append(task.drain().to_arrow().sort_by([("FirstSeen", "ascending"), ("SrcPort", "ascending")]))
    assert recs[0].equals(recs[1])


def test_python_api_reads_a_capture_like_the_task() -> None:
    import netspectra.flows

    table = netspectra.flows.read(CAPTURES / "gnutella.pcap", idle_timeout=30, splt=4, batch_size=500)
    task = FlowTask(
        "flows", KIND.build_task(FlowsTaskConfig(name="x", idle_timeout="30s", splt=4)).task.params
    )
    for b in CaptureReader(CAPTURES / "gnutella.pcap", extras=True):
        task.update(b)
    task.finish()
    want = task.drain().to_arrow()
    order = [("FirstSeen", "ascending"), ("SrcIP", "ascending"), ("SrcPort", "ascending")]
    assert table.sort_by(order).equals(want.sort_by(order))
    assert "SpltSize" in table.column_names
    pytest.importorskip("pandas")
    df = table.to_pandas()
    assert len(df) == table.num_rows and str(df["FirstSeen"].dtype).startswith("datetime64[ns")
    with pytest.raises(ValueError, match="idle_timeout must be a positive number"):
        netspectra.flows.read(CAPTURES / "gnutella.pcap", idle_timeout=0)
    from netspectra.capture.errors import CaptureError

    with pytest.raises(CaptureError):
        netspectra.flows.read(CAPTURES / "does-not-exist.pcap")


def test_python_api_takes_durations_as_the_configuration_writes_them() -> None:
    import netspectra.flows

    path = CAPTURES / "gnutella.pcap"
    want = netspectra.flows.read(path, idle_timeout=30, active_timeout=1800)
    assert netspectra.flows.read(path, idle_timeout="30s", active_timeout="30m").equals(want)
    # a text that is no duration, or another type, is a ValueError naming the argument, not float()'s
    with pytest.raises(ValueError, match=r"idle_timeout must be .*'120s'.*missing unit"):
        netspectra.flows.read(path, idle_timeout="30")
    with pytest.raises(ValueError, match=r"active_timeout must be .*got \[1\]"):
        netspectra.flows.read(path, active_timeout=[1])


class _RacingClock(ManualClock):
    """A clock on which an hour passes at every look: an engine that counted its time without batches
    as quiet time of the traffic would end every open flow ``idle``."""

    def monotonic_ns(self) -> int:
        self.advance(3600)
        return super().monotonic_ns()


@pytest.mark.parametrize("inline", [True, False])
def test_an_offline_run_ends_flows_in_the_packets_time_whatever_the_clock(
    tmp_path: Path, inline: bool
) -> None:
    """The offline run reads files whose time is the packets' own: the records (end reasons included) are
    those of the task fed directly and finished at the end of the input, however long the engine's
    clock says the reading took. Before, the stop told the task how long the engine had been without
    batches: flows within that much of their idle timeout at the end ended ``idle`` in one run and
    ``end_of_input`` in the next (a 1 M-flow trace: 10-20 flows of 272 k)."""
    cfg = config(tmp_path, task={"idle_timeout": "5s"})
    capture = CAPTURES / "gnutella.pcap"
    run = run_offline(
        [capture],
        cfg,
        writers=False,
        out=tmp_path / "out",
        clock=_RacingClock(),
        inline=inline,
        num_workers=2,
    )
    got = pq.read_table(tmp_path / "out" / "f.parquet")
    direct = FlowTask("f", KIND.build_task(cfg.aggregator.group("flows").tasks[0]).task.params)
    for b in CaptureReader(capture, extras=True):
        direct.update(b)
    direct.finish("end_of_input")
    want = direct.drain().to_arrow()
    order = [("FirstSeen", "ascending"), ("SrcIP", "ascending"), ("SrcPort", "ascending")]
    cols = ["SrcIP", "SrcPort", "FirstSeen", "LastSeen", "SrcToDstPackets", "EndReason"]
    assert got.select(cols).sort_by(order).equals(want.select(cols).sort_by(order))
    reasons = set(want["EndReason"].to_pylist())
    assert reasons == {"idle", "end_of_input"}  # both kinds of ends are there to be told apart
    assert run.manager.task("f").snapshot().summary.records == want.num_rows


def test_an_unread_offline_run_forgets_ended_records_as_it_goes(tmp_path: Path) -> None:
    """Without --out (no writer, nothing looks at the tasks) the flows task counts its ended records in
    its summary as they end and writes its outbox over instead of enlarging it: the same summary as a
    run that keeps them (records by reason, the largest ones), an outbox of its initial size."""
    cfg = config(tmp_path, task={"idle_timeout": "5s"})
    capture = CAPTURES / "gnutella.pcap"
    kept = run_offline([capture], cfg, writers=False, out=tmp_path / "out")
    gone = run_offline([capture], cfg, writers=False)
    task = gone.manager.task("f").task
    assert task.unread and not kept.manager.task("f").task.unread
    a, b = kept.manager.task("f").snapshot().summary, gone.manager.task("f").snapshot().summary
    assert a.records == b.records > 100 and a.by_reason == b.by_reason
    assert a.top.to_arrow().equals(b.top.to_arrow())
    with pytest.raises(RuntimeError, match="peeks=False"):
        gone.manager.snapshot("f")


def test_a_flows_task_told_it_is_unread_keeps_its_summary_in_a_small_outbox() -> None:
    """FlowTask.forget_unread: an outbox of a few rows, counted and written over whenever it is full
    (in updates and in the final expiry), gives the summary of a task that keeps every record."""
    summaries = []
    for unread in (False, True):
        task = FlowTask("t", outbox_rows=4)
        if unread:
            task.forget_unread()
        for b in CaptureReader(CAPTURES / "gnutella.pcap", extras=True, batch_size=256):
            task.update(b)
        task.finish()
        summaries.append(task.summary())
        assert (task._out.shape[0] == 4) == unread
        if unread:
            assert len(task.drain()) <= 4  # only what ended since the outbox was last counted
    a, b = summaries
    assert a.records == b.records > 100 and a.by_reason == b.by_reason
    assert a.top.to_arrow().equals(b.top.to_arrow())


def test_a_flows_task_that_spills_hands_out_every_record_once_in_order() -> None:
    """FlowTask.spill_to: every full outbox (4 rows here) goes to the sink, counted in the summary first;
    the parts and the final drain together are the records of a task that keeps them all, in the same
    order, with the same summary; the outbox never grows."""
    kept = FlowTask("t", outbox_rows=4)
    spilling = FlowTask("t", outbox_rows=4)
    parts: list[FlowRecords] = []
    spilling.spill_to(parts.append)
    for task in (kept, spilling):
        for b in CaptureReader(CAPTURES / "gnutella.pcap", extras=True, batch_size=256):
            task.update(b)
        task.finish()
    assert spilling._out.shape[0] == 4 and kept._out.shape[0] > 4
    assert len(parts) > 100 and all(len(p) == 4 and p.summary is None for p in parts)
    last = spilling.drain()
    got = pa.concat_tables([p.to_arrow() for p in [*parts, last]])
    assert got.equals(kept.drain().to_arrow())
    a, b = kept.summary(), spilling.summary()
    assert a.records == b.records == got.num_rows and a.by_reason == b.by_reason
    assert a.top.to_arrow().equals(b.top.to_arrow())


@pytest.fixture(scope="module")
def many_flows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated trace of ~20 k flow records: more than a flows task's outbox holds (8,192)."""
    from netspectra.gen.synth import generate

    path = tmp_path_factory.mktemp("many") / "many.pcap"
    generate(path, packets=80_000, flows=20_000, seed=4, write_truth=False, super_spreaders=0, ddos_victims=0)
    return path


@pytest.mark.parametrize("csv_out", [False, True], ids=["parquet", "csv"])
def test_analyze_out_streams_flow_records_into_the_file(
    tmp_path: Path, many_flows: Path, csv_out: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --out as the only reader, the flows task hands its records to the file as its outbox fills, and
    the file is written in parts (every STREAM_ROWS records) instead of from every record gathered at the
    end: the file is the one a run that keeps them all writes (the same bytes for CSV), and the task's
    outbox never grew. With --store (periodic snapshots) nothing spills."""
    import netspectra.offline.run as offline

    cfg = config(tmp_path, task={"idle_timeout": "5s"})
    name = "f.csv" if csv_out else "f.parquet"
    outboxes: list[int] = []  # the outbox's rows after each time it was full
    grow = FlowTask._grow_outbox

    def spy(self: FlowTask) -> None:
        grow(self)
        outboxes.append(self._out.shape[0])

    monkeypatch.setattr(FlowTask, "_grow_outbox", spy)
    monkeypatch.setattr(offline, "STREAM_ROWS", 3000)
    streamed = run_offline([many_flows], cfg, writers=False, out=tmp_path / "s", csv=csv_out)
    task = streamed.manager.task("f").task
    records = task.summary().records
    assert task._spill is not None and records > 3 * 8192
    assert len(outboxes) >= 3 and max(outboxes) == 8192
    stored = run_offline([many_flows], cfg, writers=True, out=tmp_path / "st", csv=csv_out)
    assert stored.manager.task("f").task._spill is None  # --store: its snapshots drain the records
    outboxes.clear()
    monkeypatch.setattr(offline, "STREAM_ROWS", 1 << 40)  # nothing is written before the final snapshot
    monkeypatch.setattr(FlowTask, "spill_to", lambda self, sink: None)  # the task keeps every record
    whole = run_offline([many_flows], cfg, writers=False, out=tmp_path / "w", csv=csv_out)
    assert whole.written == [tmp_path / "w" / name]
    assert max(outboxes) > records // 2  # it doubled up to every record
    assert streamed.written == [tmp_path / "s" / name]
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [name]  # no temporary file left
    if csv_out:
        assert (tmp_path / "s" / name).read_bytes() == (tmp_path / "w" / name).read_bytes()
        assert len((tmp_path / "s" / name).read_text().splitlines()) == records + 1
    else:
        got = pq.read_table(tmp_path / "s" / name)
        assert got.num_rows == records and got.equals(pq.read_table(tmp_path / "w" / name))
        assert pq.ParquetFile(tmp_path / "s" / name).metadata.num_row_groups > 3


def test_an_out_file_that_cannot_be_written_is_an_error_not_a_retry(tmp_path: Path, many_flows: Path) -> None:
    """--out of a flows task whose file's place is taken by a directory: the run is not held up by
    retries, every other file is written, and the failure is in ``out_errors`` (analyze prints it and
    exits 1), with no temporary file left; streamed or written whole."""
    cfg = config(tmp_path, task={"idle_timeout": "5s"})
    for capture in (CAPTURES / "gnutella.pcap", many_flows):  # written whole, streamed
        out = tmp_path / capture.stem
        (out / "f.parquet" / "x").mkdir(parents=True)
        run = run_offline([capture], cfg, writers=False, out=out)
        assert run.written == []
        assert len(run.out_errors) == 1
        # the reason, not the OS error's text with the temporary file's name (gone, and no one's to look for)
        assert run.out_errors == [
            f"--out: {out / 'f.parquet'} (task f) not written: IsADirectoryError: Is a directory"
        ]
        assert sorted(p.name for p in out.iterdir()) == ["f.parquet"]
        assert run.manager.metrics_dict()["writers"]["flows/out"]["dropped"] == 0


def test_analyze_cli_out_file_that_cannot_be_written_exits_1_and_json_says_which(tmp_path: Path) -> None:
    """``analyze --flows --out DIR --json`` where a directory takes flows.parquet's place: exit status 1,
    stderr names the file and the reason (not the temporary file), the JSON summary's ``out_errors`` says
    the same and ``written`` lists the files that were written; no temporary file is left. A run whose
    files are all written has ``out_errors`` empty."""
    out = tmp_path / "out"
    (out / "flows.parquet").mkdir(parents=True)
    cmd = [
        sys.executable,
        "-m",
        "netspectra",
        "analyze",
        str(CAPTURES / "gnutella.pcap"),
        "--flows",
        "--json",
    ]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    want = f"--out: {out / 'flows.parquet'} (task flows) not written: IsADirectoryError: Is a directory"
    assert doc["out_errors"] == [want]
    assert want in " ".join(proc.stderr.split()) and ".tmp" not in proc.stderr
    assert doc["written"] == [
        str(out / n) for n in ("cm_src_left.parquet", "per_five_tuple.parquet", "ss_src_dst.parquet")
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        "cm_src_left.parquet",
        "flows.parquet",
        "per_five_tuple.parquet",
        "ss_src_dst.parquet",
    ]
    assert (out / "flows.parquet").is_dir()
    ok = subprocess.run([*cmd, "--out", str(tmp_path / "ok")], capture_output=True, text=True, check=True)
    assert json.loads(ok.stdout)["out_errors"] == []


def test_results_writer_keeps_every_period_s_records_and_a_later_write_makes_good(tmp_path: Path) -> None:
    """ResultsWriter without streaming (a run with periods, --store): the file written at each period's
    end holds every record handed out so far, not only that period's; a final write that failed is an
    error until a later period's write of the same file succeeds; ``spill`` is refused."""
    from netspectra.offline.run import ResultsWriter
    from netspectra.storage.base import SnapshotMeta

    task = FlowTask("f", outbox_rows=4)
    parts = []
    for b in CaptureReader(CAPTURES / "gnutella.pcap", extras=True, batch_size=512):
        task.update(b)
        parts.append(task.drain())
    task.finish()
    parts.append(task.drain())
    first, second = parts[: len(parts) // 2], parts[len(parts) // 2 :]
    writer = ResultsWriter(tmp_path)
    (tmp_path / "f.parquet").mkdir()  # the first period's write fails
    for i, p in enumerate(first):
        writer.write_flow_records(p, SnapshotMeta(1, 0, i == len(first) - 1))
    assert len(writer.errors) == 1 and "IsADirectoryError" in writer.errors[0] and writer.written == []
    (tmp_path / "f.parquet").rmdir()
    for i, p in enumerate(second):
        writer.write_flow_records(p, SnapshotMeta(2, 1, i == len(second) - 1))
    assert writer.errors == [] and writer.written == [tmp_path / "f.parquet"]
    want = pa.concat_tables([p.to_arrow() for p in parts])
    assert want.num_rows > 100 and pq.read_table(tmp_path / "f.parquet").equals(want)
    with pytest.raises(RuntimeError, match="does not stream"):
        writer.spill(parts[0])


def test_on_reading_done_runs_once_after_reading_before_the_files_are_written(tmp_path: Path) -> None:
    """run_offline's on_reading_done (analyze shows "finishing: writing the --out files" then): once, after
    every file was read, before the final results are handed out (no --out file exists yet)."""
    cfg = config(tmp_path)
    seen: list[bool] = []
    run = run_offline(
        [CAPTURES / "gnutella.pcap"],
        cfg,
        writers=False,
        out=tmp_path / "out",
        on_reading_done=lambda: seen.append((tmp_path / "out" / "f.parquet").exists()),
    )
    assert seen == [False] and run.written == [tmp_path / "out" / "f.parquet"]
    assert run.result.stats.records == 3905  # (every packet read before the call)
