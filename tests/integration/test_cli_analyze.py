"""``netspectra analyze`` as a user runs it: outputs, exit codes and messages."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from netspectra import __version__
from netspectra.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "data" / "captures"
EXPECTED = ROOT / "tests" / "golden" / "expected"
FLOW_METRICS = [
    "TaskName", "SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol",
    "StartTime", "EndTime", "ByteCount", "PacketCount",
]  # fmt: skip

runner = CliRunner()


def run(*args: str):
    return runner.invoke(cli.app, list(args), catch_exceptions=False)


def golden(name: str) -> list[dict[str, str]]:
    with open(EXPECTED / f"{name}.flows.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_help_and_version() -> None:
    res = run("--help")
    assert res.exit_code == 0 and "analyze" in res.output and "gen" in res.output and "config" in res.output
    res = run("analyze", "--help")
    assert res.exit_code == 0 and "--out" in res.output and "--csv" in res.output
    assert run("--version").output.strip() == f"netspectra {__version__}"


def test_json_summary_matches_golden() -> None:
    res = run("analyze", str(CAPTURES / "gnutella.pcap"), "--json", "--top", "3")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    summary = json.loads((EXPECTED / "gnutella.pcap.summary.json").read_text())
    assert doc["packets"] == summary["packets"] == 3905
    assert doc["bytes"] == summary["bytes"]
    assert doc["skipped"] == summary["skipped"] and doc["truncated"] == summary["truncated"]
    (task,) = doc["tasks"]
    assert task["name"] == "per_five_tuple" and task["flows"] == summary["flows"]
    assert task["packets"] == summary["ip_packets"]
    top = task["top_by_bytes"]
    assert len(top) == 3 and top[0]["ByteCount"] >= top[1]["ByteCount"] >= top[2]["ByteCount"]
    assert doc["files"][0]["error"] is None


def test_out_parquet_has_flow_metrics_columns_and_golden_values(tmp_path: Path) -> None:
    res = run("-q", "analyze", str(CAPTURES / "mdns.pcap"), "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    table = pq.read_table(tmp_path / "per_five_tuple.parquet")
    assert table.column_names == FLOW_METRICS
    assert str(table.schema.field("StartTime").type) == "timestamp[ns, tz=UTC]"
    rows = {
        (r["SrcIP"], r["DstIP"], str(r["SrcPort"]), str(r["DstPort"]), str(r["Protocol"])): (
            str(r["PacketCount"]),
            str(r["ByteCount"]),
        )
        for r in table.to_pylist()
    }
    want = {
        (g["SrcIP"], g["DstIP"], g["SrcPort"], g["DstPort"], g["Protocol"]): (
            g["PacketCount"],
            g["ByteCount"],
        )
        for g in golden("mdns.pcap")
    }
    assert rows == want


def test_out_csv_and_several_files(tmp_path: Path) -> None:
    files = [CAPTURES / "mdns.pcap", CAPTURES / "pppoe.pcap"]
    res = run("analyze", *map(str, files), "--out", str(tmp_path), "--csv", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["packets"] == 292 + 65
    with open(tmp_path / "per_five_tuple.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0].keys()) == FLOW_METRICS
    assert sum(int(r["PacketCount"]) for r in rows) == doc["ip_packets"]
    assert all(r["StartTime"].endswith("Z") for r in rows)


def test_an_out_file_that_cannot_be_written_fails_the_command(tmp_path: Path) -> None:
    """--out where a directory takes a task's file's place: the other files are written and listed, the
    command says which file was not written and why, and exits 1 (it used to retry for 30 s, log, and
    exit 0 with the file missing)."""
    (tmp_path / "per_five_tuple.parquet" / "x").mkdir(parents=True)
    res = run("analyze", str(CAPTURES / "mdns.pcap"), "--out", str(tmp_path))
    assert res.exit_code == 1
    assert f"wrote {tmp_path / 'ss_src_dst.parquet'}" in res.stdout
    assert f"wrote {tmp_path / 'per_five_tuple.parquet'}" not in res.stdout
    err = " ".join(res.stderr.split())
    assert f"error: --out: {tmp_path / 'per_five_tuple.parquet'} (task per_five_tuple) not written" in err
    assert "IsADirectoryError" in err
    names = ["cm_src_left.parquet", "per_five_tuple.parquet", "ss_src_dst.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary file left


def test_task_without_ports_writes_null_port_columns(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks:\n"
        "      - name: per_src\n        key_fields: [SrcIP]\n"
    )
    res = run("analyze", str(CAPTURES / "gnutella.pcap"), "-c", str(conf), "--out", str(tmp_path), "--csv")
    assert res.exit_code == 0, res.output
    with open(tmp_path / "per_src.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["DstIP"] == "" and r["SrcPort"] == "" and r["Protocol"] == "" for r in rows)
    assert len({r["SrcIP"] for r in rows}) == len(rows)
    assert sum(int(r["PacketCount"]) for r in rows) == 3882


def test_damaged_file_reports_offset_and_keeps_what_came_before() -> None:
    res = run("analyze", str(CAPTURES / "truncated_dns_2.pcap"), "--json")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["packets"] == 1 and doc["tasks"][0]["flows"] == 1
    assert "byte offset 240" in res.stderr and "expected a 16-byte record header" in res.stderr


def test_missing_and_foreign_files_are_errors_not_tracebacks(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a capture\n")
    res = run("analyze", str(tmp_path / "nope.pcap"), str(text), str(CAPTURES / "mdns.pcap"), "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["packets"] == 292  # the good file is still analysed
    assert "nope.pcap" in res.stderr and "notes.txt" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("size", ["0", "4194305", "99999999999999999999"])
def test_a_batch_size_out_of_range_is_a_usage_error(size: str) -> None:
    res = run("analyze", str(CAPTURES / "mdns.pcap"), "--batch-size", size)
    assert res.exit_code == 2 and "--batch-size" in res.stderr and "Traceback" not in res.stderr


def test_csv_without_out_is_a_usage_error() -> None:
    # --csv alone wrote nothing and said nothing: the user expected CSV files somewhere
    res = run("analyze", str(CAPTURES / "mdns.pcap"), "--csv")
    assert res.exit_code == 2 and "--csv" in res.stderr and "--out" in res.stderr


def test_store_losses_say_why_in_words() -> None:
    # was "could not store 1 snapshot(s): {'close': 1}" (a dict, and no word of the failed opens)
    from netspectra.cli.analyze_cmd import _store_losses

    never = {"dropped_by_reason": {"close": 1, "superseded": 2}, "opened": False, "open_failed": 7}
    some = {"dropped_by_reason": {"attempts": 2, "overflow": 1}, "opened": True, "open_failed": 0}
    fine = {"dropped_by_reason": {"superseded": 3}, "opened": True, "open_failed": 0}
    lines = _store_losses({"writers": {"exact/clickhouse[0]": never, "x/parquet[1]": some, "y": fine}})
    assert lines == [
        "writer exact/clickhouse[0] could not store 1 snapshot(s) (1 still unwritten when the writer had to "
        "close); opening it failed 7 time(s): the warnings above say why",
        "writer x/parquet[1] could not store 3 snapshot(s) (2 given up after the last retry, 1 dropped from "
        "a full buffer)",
    ]


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text("aggregator:\n  exact:\n    tasks:\n      - name: t\n        key_fields: [SrcIp]\n")
    res = run("analyze", str(CAPTURES / "mdns.pcap"), "-c", str(conf))
    assert res.exit_code == 2
    assert "key_fields" in res.stderr and "SrcIp" in res.stderr


@pytest.mark.slow
def test_console_script_runs_in_a_fresh_process() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", str(CAPTURES / "gnutella.pcap"), "-n", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Capture summary" in out.stdout and "per_five_tuple" in out.stdout


def test_ipv6_addresses_print_as_written() -> None:
    """An address with a group such as ``:b:`` is printed as it is, not as rich's emoji code for it
    (``a:b:c:12::1`` was printed ``a🅱c:12::1``)."""
    out = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", str(CAPTURES / "ipv6-srh-ext-header.pcap")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "a:b:c:12::1" in out.stdout and "a:b:c:2::f1:0" in out.stdout
    assert "\N{NEGATIVE SQUARED LATIN CAPITAL LETTER B}" not in out.stdout


def test_sketch_tasks_run_beside_exact_and_write_heavy_hitters(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text(
        "aggregator:\n  types: [sketch, exact]\n"
        "  exact:\n    tasks:\n      - name: per_src\n        key_fields: [SrcIP]\n"
        "  sketch:\n    tasks:\n"
        "      - {name: cm, skt_type: 0, flow_fields: [SrcIP], width: 4096, depth: 2,\n"
        "         count_thereshold: 100, size_thereshold: 20000, seed: 7}\n"
        "      - {name: ss, skt_type: 1, flow_fields: [SrcIP], element_fields: [DstIP], width: 4096,\n"
        "         depth: 2, count_thereshold: 50, m: 128, size: 5, b: 1.08, base: 0.5, seed: 7}\n"
    )
    res = run("analyze", str(CAPTURES / "gnutella.pcap"), "-c", str(conf), "--out", str(tmp_path), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    exact = {r["SrcIP"]: r for r in pq.read_table(tmp_path / "per_src.parquet").to_pylist()}
    cm = pq.read_table(tmp_path / "cm.parquet")
    assert cm.column_names == ["TaskName", "Flow", "Value", "Type"]
    by_type: dict[int, dict[str, int]] = {}
    for r in cm.to_pylist():
        by_type.setdefault(r["Type"], {})[r["Flow"]] = r["Value"]
    # every true heavy hitter is reported, with the exact count at this load
    for ip, r in exact.items():
        if r["PacketCount"] >= 100:
            assert by_type[0][ip] == r["PacketCount"]
        if r["ByteCount"] >= 20000:
            assert by_type[1][ip] == r["ByteCount"]
    ss = pq.read_table(tmp_path / "ss.parquet").to_pylist()
    assert ss and {r["Type"] for r in ss} == {2}
    top = max(ss, key=lambda r: r["Value"])
    assert top["Flow"] == "10.0.2.15" and 514 * 0.7 < top["Value"] < 514 * 1.3  # 514 distinct DstIPs (tshark)
    names = [t["name"] for t in doc["sketch_tasks"]]
    assert names == ["cm", "ss"] and doc["sketch_tasks"][1]["heavy_hitters"]["spread"]["count"] == len(ss)


def test_key_field_capture_files_cannot_supply_is_refused(tmp_path: Path) -> None:
    """InIf, OutIf and ExporterAddress come only with flow exports: analyze of capture files refuses a
    running task keyed on one (every packet would count under 0), naming the key, before reading."""
    conf = tmp_path / "c.yaml"
    conf.write_text(
        "aggregator:\n  types: [exact, sketch]\n  exact:\n    tasks:\n"
        "      - {name: per_if, key_fields: [SrcIP, InIf]}\n      - {name: vlans, key_fields: [VlanID]}\n"
        "  sketch:\n    tasks:\n      - {name: s, skt_type: 1, flow_fields: [SrcIP], "
        "element_fields: [ExporterAddress], width: 64, depth: 2}\n"
    )
    res = run("analyze", str(CAPTURES / "mdns.pcap"), "-c", str(conf))
    assert res.exit_code == 2
    err = " ".join(res.stderr.split())  # rich folds long lines
    assert (
        "aggregator.exact.tasks[0].key_fields[1] (per_if): analyze of capture files cannot supply InIf" in err
    )
    assert "aggregator.sketch.tasks[0].element_fields[0] (s)" in err and "ExporterAddress" in err
    assert "vlans" not in err  # captures decode VLAN tags: VlanID is theirs
    # the same for a library caller, before any file is read
    from netspectra.config.loader import ConfigError, load_config
    from netspectra.offline.run import run_offline

    with pytest.raises(ConfigError, match=r"per_if.*InIf"):
        run_offline([tmp_path / "never-read.pcap"], load_config(conf))
    # VlanID runs, keyed on the capture's outermost VLAN tag: one TCP connection seen untagged, as VLAN
    # 42 and as QinQ 10/20 is three flows per direction
    conf.write_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks:\n"
        "      - {name: vlans, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol, VlanID]}\n"
    )
    res = run("analyze", str(CAPTURES / "vlan-collisions.pcap"), "-c", str(conf), "--json", "--top", "10")
    assert res.exit_code == 0, res.stderr
    (task,) = json.loads(res.stdout)["tasks"]
    assert task["unknown_key_rows"] == {}
    assert sorted(r["VlanID"] for r in task["top_by_bytes"]) == [0, 0, 10, 10, 42, 42]
    assert len({frozenset((r["SrcIP"], r["DstIP"])) for r in task["top_by_bytes"]}) == 1


def test_out_keeps_earlier_results_when_no_input_could_be_read(tmp_path: Path) -> None:
    """A mistyped capture name with --out: nothing was read, so nothing is written — the results of an
    earlier run stay (they used to be replaced by empty tables); the command says so and exits 1. A run
    that read something writes as always, even with a missing file beside it."""
    out = tmp_path / "results"
    assert run("analyze", str(CAPTURES / "mdns.pcap"), "--out", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    res = run("analyze", str(tmp_path / "nosuch.pcap"), "--out", str(out), "--json")
    assert res.exit_code == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    doc = json.loads(res.stdout)
    assert doc["written"] == [] and doc["out_errors"] == []
    assert "nothing written; the files in" in " ".join(res.stderr.split())
    res = run(
        "analyze", str(tmp_path / "nosuch.pcap"), str(CAPTURES / "pppoe.pcap"), "--out", str(out), "--json"
    )
    assert res.exit_code == 1 and json.loads(res.stdout)["written"]  # pppoe.pcap was read: written
    assert {p.name: p.read_bytes() for p in out.iterdir()} != before
