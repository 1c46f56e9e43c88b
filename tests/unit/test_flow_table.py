"""Address text and the flow-table writers (Parquet, CSV): formats, round trips, atomic replacement."""

from __future__ import annotations

import csv
import io
import ipaddress
import itertools
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from netspectra.batch import PacketBatch
from netspectra.output.addr import ips_to_arrow, ips_to_text, is_ipv4_mapped, parse_ip, parse_ips
from netspectra.output.flow_table import FLOW_TABLE_SCHEMA, TableStream, write_csv, write_parquet
from netspectra.tasks.exact import ExactTask

EDGE_CASES = [
    "::", "::1", "1::", "2001:db8::1", "2001:db8:0:0:1:0:0:1", "1:0:2:3:4:5:6:7", "1:0:0:2:0:0:0:3",
    "0:0:1:0:0:1:0:0", "fe80::1:0:0:0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:0:0",
    "::ffff:255.255.255.255", "::ffff:10.0.0.1", "::1.2.3.4", "64:ff9b::192.0.2.1", "::fffe:1.2.3.4",
    "0:0:0:0:0:1:ffff:0", "2001:db8:abcd:12::",
]  # fmt: skip


def python_text(row: np.ndarray) -> str:
    a = ipaddress.IPv6Address(bytes(row))
    return str(a.ipv4_mapped) if a.ipv4_mapped is not None else str(a)


def random_addresses(seed: int, m: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (m, 16), dtype=np.uint8)
    kind = rng.integers(0, 5, m)
    a[kind == 0, :10] = 0
    a[kind == 0, 10:12] = 0xFF  # IPv4-mapped
    for k, (lo, hi) in enumerate([(2, 8), (8, 16), (0, 6), (4, 10)], start=1):
        a[kind == k, lo:hi] = 0  # zero runs at start, middle, end
    # Single zero groups (never compressed) and byte-level zeros inside groups.
    a[rng.random(m) < 0.3, 6:8] = 0
    a[rng.random(m) < 0.3, 1] = 0
    return a


def test_edge_case_text_matches_ipaddress() -> None:
    rows = np.stack([np.frombuffer(ipaddress.IPv6Address(t).packed, np.uint8) for t in EDGE_CASES])
    assert ips_to_text(rows) == [python_text(r) for r in rows]
    assert ips_to_text(rows[[11, 12]]) == ["255.255.255.255", "10.0.0.1"]
    assert ips_to_text(rows[[10]]) == ["0.0.0.0"]


def test_random_text_matches_ipaddress() -> None:
    a = random_addresses(5, 20_000)
    assert ips_to_text(a) == [python_text(r) for r in a]


def test_ips_to_arrow_nulls_and_empty() -> None:
    a = random_addresses(6, 5)
    arr = ips_to_arrow(a, valid=np.array([True, False, True, True, False]))
    assert arr.type == pa.string() and arr.null_count == 2
    assert arr.to_pylist() == [python_text(a[0]), None, python_text(a[2]), python_text(a[3]), None]
    assert len(ips_to_arrow(np.zeros((0, 16), np.uint8))) == 0
    with pytest.raises(ValueError, match="16"):
        ips_to_arrow(np.zeros((3, 4), np.uint8))


def test_parse_round_trip_and_mapping() -> None:
    a = random_addresses(7, 2000)
    np.testing.assert_array_equal(parse_ips(ips_to_text(a)), a)
    assert parse_ip("10.0.0.1").tolist() == [0] * 10 + [255, 255, 10, 0, 0, 1]
    assert parse_ip(" ::ffff:10.0.0.1 ").tolist() == parse_ip("10.0.0.1").tolist()
    assert parse_ips([]).shape == (0, 16)
    with pytest.raises(ValueError):
        parse_ip("10.0.0.256")


def test_is_ipv4_mapped() -> None:
    rows = parse_ips(["1.2.3.4", "::ffff:0:0", "::1.2.3.4", "::fffe:1.2.3.4", "2001:db8::1", "0.0.0.0"])
    assert is_ipv4_mapped(rows).tolist() == [True, True, False, False, False, True]
    a = random_addresses(8, 3000)
    assert is_ipv4_mapped(a).tolist() == [ipaddress.IPv6Address(bytes(r)).ipv4_mapped is not None for r in a]


# --- writers ----------------------------------------------------------------------------------------


def sample_table(key_fields: list[str] | None = None) -> pa.Table:
    rng = np.random.default_rng(9)
    n = 500
    ips = parse_ips(["10.0.0.1", "10.0.0.2", "2001:db8::1", "fe80::1"])
    batch = PacketBatch(
        ts_ns=rng.integers(1_700_000_000 * 10**9, 1_700_000_100 * 10**9, n).astype(np.int64),
        src_ip=np.ascontiguousarray(ips[rng.integers(0, 4, n)]),
        dst_ip=np.ascontiguousarray(ips[rng.integers(0, 4, n)]),
        src_port=rng.integers(0, 3, n).astype(np.uint16) + 1000,
        dst_port=np.full(n, 443, np.uint16),
        protocol=np.array([6, 17], np.uint8)[rng.integers(0, 2, n)],
        length=rng.integers(60, 1500, n).astype(np.uint32),
    )
    task = ExactTask("task,one", key_fields or ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"])
    task.update(batch)
    return task.snapshot().sorted("packets").to_arrow()


def test_parquet_round_trip(tmp_path: Path) -> None:
    table = sample_table(["DstIP", "SrcPort"])
    path = tmp_path / "flows.parquet"
    assert write_parquet(table, path) == path
    back = pq.read_table(path)
    assert back.schema.equals(FLOW_TABLE_SCHEMA)
    assert back.equals(table)
    assert back.column("SrcIP").null_count == back.num_rows
    assert sorted(os.listdir(tmp_path)) == ["flows.parquet"]


def test_csv_format(tmp_path: Path) -> None:
    table = sample_table(["SrcIP", "Protocol"])
    path = tmp_path / "flows.csv"
    write_csv(table, path)
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[0] == FLOW_TABLE_SCHEMA.names
    body = rows[1:]
    assert len(body) == table.num_rows
    names = FLOW_TABLE_SCHEMA.names
    for row, want in zip(body, table.to_pylist(), strict=True):
        rec = dict(zip(names, row, strict=True))
        assert rec["TaskName"] == "task,one"  # quoted in the file, because of the comma
        assert rec["SrcIP"] == want["SrcIP"] and rec["Protocol"] == str(want["Protocol"])
        assert rec["DstIP"] == rec["SrcPort"] == rec["DstPort"] == ""  # NULL -> empty field
        assert rec["ByteCount"] == str(want["ByteCount"]) and rec["PacketCount"] == str(want["PacketCount"])
    start_ns = table.column("StartTime").cast(pa.int64()).to_pylist()
    for row, ns in zip(body, start_ns, strict=True):
        text = row[names.index("StartTime")]
        assert text.endswith("Z") and "T" in text and len(text.split(".")[1]) == 10  # 9 digits + Z
        secs = np.datetime64(text[:-1], "ns").astype(np.int64)
        assert int(secs) == ns
    assert '"task,one"' in path.read_text().splitlines()[1]


def test_csv_exact_timestamp_text(tmp_path: Path) -> None:
    table = pa.table(
        {
            "TaskName": pa.array(["t", "t"]),
            "StartTime": pa.array([1_700_000_000_123_456_789, None], pa.timestamp("ns", tz="UTC")),
            "EndTime": pa.array([-1, 0], pa.timestamp("ns", tz="UTC")),
            "When": pa.array([1_700_000_000_000_001, 0], pa.timestamp("us", tz="UTC")),
        }
    )
    path = tmp_path / "t.csv"
    write_csv(table, path)
    assert path.read_text().splitlines() == [
        '"TaskName","StartTime","EndTime","When"',
        '"t","2023-11-14T22:13:20.123456789Z","1969-12-31T23:59:59.999999999Z","2023-11-14T22:13:20.000001000Z"',
        '"t",,"1970-01-01T00:00:00.000000000Z","1970-01-01T00:00:00.000000000Z"',
    ]


@pytest.mark.parametrize("writer", [write_parquet, write_csv], ids=["parquet", "csv"])
def test_atomic_replace(tmp_path: Path, writer) -> None:
    path = tmp_path / "out.file"
    path.write_bytes(b"old contents")
    os.chmod(path, 0o640)
    old_inode = path.stat().st_ino
    writer(sample_table(), path)
    assert path.read_bytes() != b"old contents"
    assert path.stat().st_ino != old_inode  # a new file renamed over the old one, not rewritten in place
    assert path.stat().st_mode & 0o777 == 0o640  # the replaced file's mode is kept
    assert sorted(os.listdir(tmp_path)) == ["out.file"]


def test_new_file_gets_an_ordinary_mode(tmp_path: Path) -> None:
    path = tmp_path / "new.parquet"
    write_parquet(sample_table(), path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "flows.parquet"
    write_parquet(sample_table(), path)
    good = path.read_bytes()
    with pytest.raises((ValueError, pa.ArrowException)):
        write_parquet(sample_table(), path, compression="no-such-codec")
    assert path.read_bytes() == good
    assert sorted(os.listdir(tmp_path)) == ["flows.parquet"]


def flow_records_table() -> pa.Table:
    """Flow records of a real capture (list columns, durations, nulls: every kind of column to convert)."""
    from netspectra.capture.reader import CaptureReader
    from netspectra.flows.task import FlowTask

    task = FlowTask("f")
    capture = Path(__file__).resolve().parents[1] / "data" / "captures" / "gnutella.pcap"
    for b in CaptureReader(capture, extras=True):
        task.update(b)
    task.finish()
    return task.drain().to_arrow()


@pytest.mark.parametrize("csv_out", [False, True], ids=["parquet", "csv"])
@pytest.mark.parametrize("make", [sample_table, flow_records_table], ids=["flow_metrics", "flow_records"])
def test_a_table_streamed_in_parts_is_the_file_of_the_whole_table(
    tmp_path: Path, csv_out: bool, make
) -> None:
    """TableStream: parts of a table (one of them empty) written one after the other give the file
    write_parquet / write_csv write for the whole table (Parquet: the same table back, a row group per
    part; CSV: the same bytes, one header), which appears only at commit; nothing else is left."""
    table = make()
    assert table.num_rows > 50
    cuts = [0, 7, 7, table.num_rows // 2, table.num_rows]
    whole, streamed = tmp_path / "whole", tmp_path / "streamed"
    whole.mkdir()
    streamed.mkdir()
    name = "t.csv" if csv_out else "t.parquet"
    (write_csv if csv_out else write_parquet)(table, whole / name)
    stream = TableStream(streamed / name, csv=csv_out)
    for lo, hi in itertools.pairwise(cuts):
        stream.write(table.slice(lo, hi - lo))
        assert not (streamed / name).exists()  # only a temporary file until the commit
    assert stream.rows == table.num_rows
    assert stream.commit() == streamed / name
    assert sorted(os.listdir(streamed)) == [name]
    if csv_out:
        assert (streamed / name).read_bytes() == (whole / name).read_bytes()
    else:
        back = pq.read_table(streamed / name)
        assert back.schema.equals(table.schema) and back.equals(table)
        assert pq.ParquetFile(streamed / name).metadata.num_row_groups == 4


@pytest.mark.parametrize("csv_out", [False, True], ids=["parquet", "csv"])
def test_a_stream_that_fails_or_is_aborted_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, csv_out: bool
) -> None:
    """A part of another schema fails the stream: its temporary file is removed, the file that was at its
    path stays; :meth:`TableStream.abort` does the same; a stream with nothing written has nothing to
    commit."""
    path = tmp_path / ("t.csv" if csv_out else "t.parquet")
    path.write_bytes(b"old")
    stream = TableStream(path, csv=csv_out)
    stream.write(sample_table())
    with pytest.raises((ValueError, pa.ArrowException)):
        stream.write(pa.table({"other": pa.array([1, 2])}))
    assert sorted(os.listdir(tmp_path)) == [path.name] and path.read_bytes() == b"old"
    aborted = TableStream(path, csv=csv_out)
    aborted.write(sample_table())
    assert len(os.listdir(tmp_path)) == 2
    aborted.abort()
    assert sorted(os.listdir(tmp_path)) == [path.name] and path.read_bytes() == b"old"
    with pytest.raises(RuntimeError, match="nothing was written"):
        TableStream(path, csv=csv_out).commit()


def test_csv_lists_are_json_arrays(tmp_path: Path) -> None:
    """A list column (flow records' SPLT) in CSV: a JSON array per row (``[60,-54,300]``, ``[]``), empty for
    a null list: the text a Python join per row gives, made by Arrow's kernels, across chunks."""
    rng = np.random.default_rng(4)
    rows = [
        None if rng.random() < 0.1 else [int(x) for x in rng.integers(-1500, 1500, rng.integers(0, 6))]
        for _ in range(300)
    ]
    col = pa.chunked_array(
        [pa.array(rows[:120], pa.list_(pa.int32())), pa.array(rows[120:], pa.list_(pa.int32()))]
    )
    path = tmp_path / "l.csv"
    write_csv(pa.table({"n": pa.array(range(300)), "Splt": col}), path)
    got = [r["Splt"] for r in csv.DictReader(io.StringIO(path.read_text()))]
    want = ["" if v is None else "[" + ",".join(map(str, v)) + "]" for v in rows]
    assert got == want and "[]" in got and "" in got
