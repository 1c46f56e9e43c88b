"""The file writers (Parquet, its ``gob`` alias, text) and the writer registry: layout, content, atomicity.

Snapshots come from real tasks run over tests/data/captures/gnutella.pcap.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netspectra.capture.reader import CaptureReader
from netspectra.config.aggregator import ExactWriterConfig, SketchWriterConfig
from netspectra.output.flow_table import FLOW_TABLE_SCHEMA, TIMESTAMP_TYPE
from netspectra.sketches.base import HEAVY_HITTERS_SCHEMA, HitterType, SketchSnapshot, SketchTask
from netspectra.storage import SnapshotMeta, Writer, WriterError, known_kinds, writer_class
from netspectra.storage.files import ParquetWriter, TextWriter, safe_name, snapshot_dir_name
from netspectra.tasks.exact import ExactTask, FlowSnapshot

CAPTURE = Path(__file__).resolve().parent.parent / "data" / "captures" / "gnutella.pcap"
FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
T0 = 1_704_067_200 * 10**9  # 2024-01-01T00:00:00Z
META = SnapshotMeta(T0 + 60 * 10**9 + 123_456_789, T0, final=True)
DIR = "2024-01-01T00-01-00Z"


@pytest.fixture(scope="module")
def flows() -> FlowSnapshot:
    task = ExactTask("five", FIVE)
    task.update(CaptureReader(CAPTURE).read_all())
    return task.snapshot()


@pytest.fixture(scope="module")
def sketches() -> dict[str, SketchSnapshot]:
    batch = CaptureReader(CAPTURE).read_all()
    tasks = [
        SketchTask("cm", 0, ["SrcIP"], width=512, depth=2, size_threshold=5000, count_threshold=20, seed=3),
        SketchTask("ss", 1, ["SrcIP"], ["DstIP"], width=128, depth=2, count_threshold=2, seed=3),
    ]
    for t in tasks:
        t.update(batch)
    return {t.name: t.snapshot() for t in tasks}


def exact_cfg(kind: str, root: Path) -> ExactWriterConfig:
    return ExactWriterConfig(type=kind, enabled=True, **{kind: {"root_path": str(root)}})


def sketch_cfg(kind: str, root: Path) -> SketchWriterConfig:
    return SketchWriterConfig(type=kind, enabled=True, **{kind: {"root_path": str(root)}})


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------
# Registry and base contract
# --------------------------------------------------------------------------------------------------


def test_writer_class_finds_every_kind() -> None:
    assert writer_class("parquet") is ParquetWriter
    assert writer_class("gob") is ParquetWriter
    assert writer_class("text") is TextWriter
    assert {"clickhouse", "gob", "parquet", "text"} <= set(known_kinds())
    with pytest.raises(
        ValueError, match=r"'kafka' is not a valid writer kind; valid writer kinds are .*clickhouse.*parquet"
    ):
        writer_class("kafka")


def test_a_kind_cannot_be_registered_twice() -> None:
    with pytest.raises(TypeError, match="already registered"):

        class Other(Writer, kind="parquet"):  # pragma: no cover - the class statement itself fails
            pass


def test_snapshot_meta_is_checked() -> None:
    for bad in ({"snapshot_ts_ns": -1, "period_start_ns": 0}, {"snapshot_ts_ns": 1.5, "period_start_ns": 0}):
        with pytest.raises(ValueError, match="non-negative int"):
            SnapshotMeta(**bad)  # type: ignore[arg-type]
    assert SnapshotMeta(5, 3).final is False


def test_groups_are_kept_apart(
    tmp_path: Path, flows: FlowSnapshot, sketches: dict[str, SketchSnapshot]
) -> None:
    with pytest.raises(ValueError, match="group must be the name of an aggregator kind"):
        ParquetWriter(exact_cfg("parquet", tmp_path), "")
    with (
        ParquetWriter(exact_cfg("parquet", tmp_path), "exact") as w,
        pytest.raises(TypeError, match="sketch group"),
    ):
        w.write_hitters(sketches["cm"], META)
    with (
        ParquetWriter(sketch_cfg("parquet", tmp_path), "sketch") as w,
        pytest.raises(TypeError, match="exact"),
    ):
        w.write_flows(flows, META)
    assert files_under(tmp_path) == []


def test_root_path_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"parquet\.root_path is empty"):
        ParquetWriter(ExactWriterConfig(type="parquet", enabled=True), "exact")
    with pytest.raises(ValueError, match=r"text\.root_path is empty"):
        TextWriter(SketchWriterConfig(type="text", enabled=True), "sketch")


def test_writing_before_open_fails(tmp_path: Path, flows: FlowSnapshot) -> None:
    with pytest.raises(WriterError, match="not open"):
        ParquetWriter(exact_cfg("parquet", tmp_path), "exact").write_flows(flows, META)


# --------------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------------


def test_parquet_exact_layout_and_content(tmp_path: Path, flows: FlowSnapshot) -> None:
    with ParquetWriter(exact_cfg("parquet", tmp_path), "exact") as w:
        w.write_flows(flows, META)
    assert files_under(tmp_path) == [f"{DIR}/five.parquet"]
    table = pq.read_table(tmp_path / DIR / "five.parquet")
    assert table.column_names == ["Timestamp", "PeriodStart", *FLOW_TABLE_SCHEMA.names]
    assert table.schema.field("Timestamp").type == TIMESTAMP_TYPE
    assert table.column("Timestamp").cast(pa.int64()).to_pylist() == [META.snapshot_ts_ns] * len(flows)
    assert table.column("PeriodStart").cast(pa.int64()).to_pylist() == [T0] * len(flows)
    assert table.select(FLOW_TABLE_SCHEMA.names).equals(flows.to_arrow())
    meta = table.schema.metadata
    assert meta[b"netspectra.final"] == b"true" and meta[b"netspectra.key_fields"] == ",".join(FIVE).encode()


def test_parquet_sketch_content(tmp_path: Path, sketches: dict[str, SketchSnapshot]) -> None:
    with ParquetWriter(sketch_cfg("parquet", tmp_path), "sketch") as w:
        for snap in sketches.values():
            w.write_hitters(snap, META)
    assert files_under(tmp_path) == [f"{DIR}/cm.parquet", f"{DIR}/ss.parquet"]
    for name, snap in sketches.items():
        table = pq.read_table(tmp_path / DIR / f"{name}.parquet")
        assert table.select(HEAVY_HITTERS_SCHEMA.names).equals(snap.to_arrow())
        assert len(table) == len(snap) > 0


def test_gob_is_parquet_under_gob_root(
    tmp_path: Path, flows: FlowSnapshot, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="netspectra.storage.files"):
        w = writer_class("gob")(exact_cfg("gob", tmp_path / "gobdir"), "exact")
    assert "gob is the original's Go serialisation" in caplog.text
    with w:
        w.write_flows(flows, META)
    assert files_under(tmp_path) == [f"gobdir/{DIR}/five.parquet"]
    assert pq.read_table(tmp_path / "gobdir" / DIR / "five.parquet").num_rows == len(flows)


def test_second_snapshot_in_the_same_second_gets_its_own_directory(
    tmp_path: Path, flows: FlowSnapshot
) -> None:
    later = SnapshotMeta(META.snapshot_ts_ns + 500_000_000, T0)  # same second, half a second later
    with ParquetWriter(exact_cfg("parquet", tmp_path), "exact") as w:
        w.write_flows(flows, META)
        w.write_flows(flows.top(10), later)
        w.write_flows(flows.top(10), later)  # a retry of the same snapshot replaces its own file
    precise = snapshot_dir_name(later.snapshot_ts_ns, precise=True)
    assert precise == "2024-01-01T00-01-00.623456789Z"
    assert files_under(tmp_path) == [f"{precise}/five.parquet", f"{DIR}/five.parquet"]
    assert pq.read_table(tmp_path / DIR / "five.parquet").num_rows == len(flows)
    assert pq.read_table(tmp_path / precise / "five.parquet").num_rows == 10


def test_task_names_cannot_leave_the_snapshot_directory(tmp_path: Path, flows: FlowSnapshot) -> None:
    root = tmp_path / "root"
    names = ["../../escape", ".hidden", "a/b", "ok name"]
    with ParquetWriter(exact_cfg("parquet", root), "exact") as w:
        for name in names:
            w.write_flows(
                FlowSnapshot(name, flows.key_fields, *(getattr(flows, a) for a in flows.ARRAYS)), META
            )
    assert files_under(tmp_path) == sorted(f"root/{DIR}/{safe_name(n)}.parquet" for n in names)
    assert safe_name("../../escape") == "%2E.%2F..%2Fescape" and safe_name(".hidden") == "%2Ehidden"
    with pytest.raises(ValueError):
        safe_name("")


def test_one_writer_per_root(tmp_path: Path) -> None:
    first = ParquetWriter(exact_cfg("parquet", tmp_path), "exact")
    first.open()
    second = TextWriter(exact_cfg("text", tmp_path), "exact")
    with pytest.raises(WriterError, match="already the root_path of ParquetWriter"):
        second.open()
    first.close()
    second.open()  # free again once the first is closed
    second.close()


def test_a_failed_parquet_write_leaves_no_file(tmp_path: Path, flows: FlowSnapshot) -> None:
    # both names the snapshot could take are occupied by directories: the final rename must fail
    (tmp_path / DIR / "five.parquet").mkdir(parents=True)
    (tmp_path / snapshot_dir_name(META.snapshot_ts_ns, precise=True) / "five.parquet").mkdir(parents=True)
    with (
        ParquetWriter(exact_cfg("parquet", tmp_path), "exact") as w,
        pytest.raises(WriterError, match="cannot write"),
    ):
        w.write_flows(flows, META)
    assert files_under(tmp_path) == []  # no temporary file left behind either


# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------


def test_text_countmin_files(tmp_path: Path, sketches: dict[str, SketchSnapshot]) -> None:
    with TextWriter(sketch_cfg("text", tmp_path), "sketch") as w:
        w.write_hitters(sketches["cm"], META)
    assert files_under(tmp_path) == [f"{DIR}/cm/count_hh.txt", f"{DIR}/cm/size_hh.txt"]
    for t, name in ((HitterType.COUNT, "count_hh.txt"), (HitterType.SIZE, "size_hh.txt")):
        lines = (tmp_path / DIR / "cm" / name).read_text().splitlines()
        want = sketches["cm"].hitters[t].to_list()
        assert len(want) > 0
        assert [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1])) for line in lines] == want


def test_text_superspread_file(tmp_path: Path, sketches: dict[str, SketchSnapshot]) -> None:
    with TextWriter(sketch_cfg("text", tmp_path), "sketch") as w:
        w.write_hitters(sketches["ss"], META)
    assert files_under(tmp_path) == [f"{DIR}/ss/spread_ss.txt"]
    lines = (tmp_path / DIR / "ss" / "spread_ss.txt").read_text().splitlines()
    assert lines == [f"{f} {v}" for f, v in sketches["ss"].spread.to_list()]  # type: ignore[union-attr]


def test_text_empty_sketch_writes_empty_files(tmp_path: Path) -> None:
    with TextWriter(sketch_cfg("text", tmp_path), "sketch") as w:
        w.write_hitters(SketchSnapshot("cm", 0, ("SrcIP",)), META)
    assert files_under(tmp_path) == [f"{DIR}/cm/count_hh.txt", f"{DIR}/cm/size_hh.txt"]
    assert (tmp_path / DIR / "cm" / "count_hh.txt").read_text() == ""


def test_text_exact_flows_and_summary(tmp_path: Path, flows: FlowSnapshot) -> None:
    with TextWriter(exact_cfg("text", tmp_path), "exact") as w:
        w.write_flows(flows, META)
    assert files_under(tmp_path) == [f"{DIR}/five/flows.txt", f"{DIR}/five/summary.json"]
    lines = (tmp_path / DIR / "five" / "flows.txt").read_text().splitlines()
    assert lines[0] == "# flow packets bytes first_seen last_seen"
    rows = [line.split(" ") for line in lines[1:]]
    assert len(rows) == len(flows)
    assert sum(int(r[1]) for r in rows) == flows.total_packets
    assert sum(int(r[2]) for r in rows) == flows.total_bytes
    top = flows.sorted("bytes")
    assert rows[0][:3] == [top.flow_keys()[0], str(top.packets[0]), str(top.bytes[0])]
    first = np.datetime_as_string(np.datetime64(int(top.first_ns[0]), "ns"), unit="ns") + "Z"
    assert rows[0][3] == first and rows[0][4].endswith("Z")
    assert sorted(r[0] for r in rows) == sorted(flows.flow_keys())
    summary = json.loads((tmp_path / DIR / "five" / "summary.json").read_text())
    assert summary == {
        "task_name": "five",
        "total_flows": len(flows),
        "total_bytes": flows.total_bytes,
        "total_packets": flows.total_packets,
        "timestamp": "2024-01-01T00:01:00.123456789Z",
        "period_start": "2024-01-01T00:00:00.000000000Z",
        "final": True,
    }


def test_text_snapshot_directory_is_replaced_whole(tmp_path: Path, flows: FlowSnapshot) -> None:
    later = SnapshotMeta(META.snapshot_ts_ns + 1, T0)
    with TextWriter(exact_cfg("text", tmp_path), "exact") as w:
        w.write_flows(flows, META)
        w.write_flows(flows.top(3), later)  # same second: its own, nanosecond-named directory
        w.write_flows(flows.top(5), later)  # the same snapshot again: the directory is swapped as a whole
    precise = snapshot_dir_name(later.snapshot_ts_ns, precise=True)
    assert files_under(tmp_path) == sorted(
        [
            f"{DIR}/five/flows.txt",
            f"{DIR}/five/summary.json",
            f"{precise}/five/flows.txt",
            f"{precise}/five/summary.json",
        ]
    )  # and no temporary or old directory left
    assert len((tmp_path / precise / "five" / "flows.txt").read_text().splitlines()) == 1 + 5
    assert sorted(p.name for p in (tmp_path / precise).iterdir()) == ["five"]


def test_a_failed_text_write_raises_writer_error(tmp_path: Path, flows: FlowSnapshot) -> None:
    (tmp_path / DIR).write_text("a file where the snapshot directory should go")
    with (
        TextWriter(exact_cfg("text", tmp_path), "exact") as w,
        pytest.raises(WriterError, match="cannot write"),
    ):
        w.write_flows(flows, META)
    assert files_under(tmp_path) == [DIR]
