"""The probe's persistence (netspectra.probe.persist): files, formats, rotation, bounded queue."""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from netspectra.batch import PacketBatch
from netspectra.capture.reader import CaptureReader
from netspectra.output.addr import parse_ip
from netspectra.probe.persist import (
    PARQUET_SCHEMA,
    Persister,
    RawFrames,
    format_text_lines,
    pack_pcap_records,
)


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], list[int], list[int], PacketBatch]:
    """Frames, timestamps and wire lengths of a small synthetic Ethernet trace, and its batch."""
    from netspectra.gen.synth import generate

    path = tmp_path_factory.mktemp("persist") / "t.pcap"
    generate(path, packets=3000, flows=100, seed=3, write_truth=False, super_spreaders=0, ddos_victims=0)
    frames, ts, wl = [], [], []
    for chunk in CaptureReader(path).records():
        for i in range(chunk.n):
            o = int(chunk.off[i])
            frames.append(chunk.buf[o : o + int(chunk.caplen[i])].tobytes())
            ts.append(int(chunk.ts_ns[i]))
            wl.append(int(chunk.wirelen[i]))
    return frames, ts, wl, CaptureReader(path).read_all()


def _chunks(
    frames: list[bytes], ts: list[int], wl: list[int], size: int, linktype: int = 1
) -> list[RawFrames]:
    return [
        RawFrames.from_frames(frames[i : i + size], ts[i : i + size], linktype, wl[i : i + size])
        for i in range(0, len(frames), size)
    ]


def _same(got: PacketBatch, want: PacketBatch) -> None:
    for c in PacketBatch.COLUMNS:
        np.testing.assert_array_equal(getattr(got, c), getattr(want, c), err_msg=c)


def _pcap_reference(raw: RawFrames) -> bytes:
    """Plain-Python reference of pack_pcap_records."""
    out = bytearray()
    for i in range(len(raw)):
        sec, nsec = divmod(int(raw.ts_ns[i]), 1_000_000_000)
        out += struct.pack("<IIII", sec, nsec, int(raw.caplen[i]), int(raw.wirelen[i]))
        o = int(raw.off[i])
        out += raw.data[o : o + int(raw.caplen[i])].tobytes()
    return bytes(out)


def test_pack_pcap_records_matches_reference(trace) -> None:
    frames, ts, wl, _ = trace
    raw = RawFrames.from_frames(frames[:500], ts[:500], 1, wl[:500])
    out = np.empty(16 * len(raw) + int(raw.caplen.sum()), np.uint8)
    k = pack_pcap_records(raw.data, raw.off, raw.caplen, raw.wirelen, raw.ts_ns, out)
    assert out[:k].tobytes() == _pcap_reference(raw)


def test_pcap_ethernet_readable_by_reader_dpkt_tshark(trace, tmp_path: Path) -> None:
    frames, ts, wl, want = trace
    with Persister(tmp_path, "pcap") as p:
        for raw in _chunks(frames, ts, wl, 700):
            assert p.offer(raw=raw)
    st = p.stats
    assert st.written_packets == len(frames) and st.dropped_packets == 0
    (f,) = (Path(x) for x in st.files)
    assert f.suffix == ".pcap" and f.exists() and not list(tmp_path.glob("*.part"))
    _same(CaptureReader(f).read_all(), want)  # nanosecond timestamps survive exactly
    dpkt = pytest.importorskip("dpkt")
    with open(f, "rb") as fh:
        r = dpkt.pcap.Reader(fh)
        assert r.datalink() == 1
        assert [bytes(b) for _, b in r] == frames
    if shutil.which("tshark"):
        out = subprocess.run(
            ["tshark", "-r", str(f), "-T", "fields", "-e", "frame.encap_type", "-c", "1"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out == ["1"]  # WTAP_ENCAP_ETHERNET


def test_pcap_keeps_the_real_link_type(tmp_path: Path) -> None:
    # Raw IP (LINKTYPE_RAW 101): IPv4/UDP packets without any link-layer header.
    def ip_udp(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, src, dst)
        return ip + struct.pack("!HHHH", sport, dport, 8, 0)

    frames = [ip_udp(bytes([10, 0, 0, i]), bytes([10, 0, 1, i]), 1000 + i, 53) for i in range(1, 11)]
    ts = [1_700_000_000_000_000_000 + i * 1000 for i in range(10)]
    with Persister(tmp_path, "pcap") as p:
        p.offer(raw=RawFrames.from_frames(frames, ts, 101))
    (f,) = (Path(x) for x in p.stats.files)
    assert struct.unpack_from("<I", f.read_bytes(), 20)[0] == 101
    b = CaptureReader(f).read_all()
    assert len(b) == 10 and set(b.dst_port.tolist()) == {53} and set(b.protocol.tolist()) == {17}
    np.testing.assert_array_equal(b.ts_ns, ts)
    dpkt = pytest.importorskip("dpkt")
    with open(f, "rb") as fh:
        assert dpkt.pcap.Reader(fh).datalink() == 101
    if shutil.which("tshark"):
        out = subprocess.run(
            ["tshark", "-r", str(f), "-T", "fields", "-e", "ip.src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out == [f"10.0.0.{i}" for i in range(1, 11)]


def test_link_type_change_starts_a_new_file(trace, tmp_path: Path) -> None:
    frames, ts, _wl, _ = trace
    with Persister(tmp_path, "pcap") as p:
        p.offer(raw=RawFrames.from_frames(frames[:10], ts[:10], 1))
        p.offer(raw=RawFrames.from_frames([f[14:] for f in frames[10:20]], ts[10:20], 101))
    files = [Path(x) for x in p.stats.files]
    assert len(files) == 2
    assert [struct.unpack_from("<I", f.read_bytes(), 20)[0] for f in files] == [1, 101]


def test_rotation_by_size(trace, tmp_path: Path) -> None:
    frames, ts, wl, want = trace
    with Persister(tmp_path, "pcap", rotate_bytes=20_000) as p:
        for raw in _chunks(frames, ts, wl, 100):
            assert p.offer(raw=raw)
    files = [Path(x) for x in p.stats.files]
    assert len(files) > 3
    assert sorted(files) == files, "names are UTC open times: their order is the capture order"
    assert all(f.stat().st_size >= 20_000 for f in files[:-1])
    got = PacketBatch.concat([CaptureReader(f).read_all() for f in files])
    _same(got, want)
    for f in files:
        stamp = f.name.split(".")[0]
        datetime.strptime(stamp, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def test_rotation_by_time_closes_idle_files(trace, tmp_path: Path) -> None:
    frames, ts, _wl, _ = trace
    p = Persister(tmp_path, "pcap", rotate_seconds=0.2).start()
    try:
        p.offer(raw=RawFrames.from_frames(frames[:50], ts[:50], 1))
        deadline = time.monotonic() + 5
        while not p.stats.files and time.monotonic() < deadline:
            time.sleep(0.02)
        # The first file was completed by its age alone, while idle.
        assert len(p.stats.files) == 1 and Path(p.stats.files[0]).exists()
        p.offer(raw=RawFrames.from_frames(frames[50:80], ts[50:80], 1))
    finally:
        p.stop()
    assert len(p.stats.files) == 2
    assert [len(CaptureReader(f).read_all()) for f in p.stats.files] == [50, 30]


def test_tiny_queue_drops_and_counts_with_rate_limited_logs(trace, tmp_path: Path, caplog) -> None:
    frames, ts, wl, _ = trace
    p = Persister(tmp_path, "pcap", max_queued_packets=10, log_interval_s=3600)
    raws = _chunks(frames[:1000], ts[:1000], wl[:1000], 5)  # 200 batches of 5 packets
    with caplog.at_level(logging.WARNING, logger="netspectra.probe.persist"):
        accepted = [p.offer(raw=r) for r in raws]  # writers not started: nothing drains
        assert accepted[:2] == [True, True] and not any(accepted[2:])
        assert p.queued_packets == 10
        p.start()
        st = p.stop()
    assert st.accepted == 2 and st.dropped_batches == 198 and st.dropped_packets == 990
    assert st.written_packets == 10 and st.offered == 200
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert 1 <= len(drops) <= 2, "drop logs are rate-limited, never one per drop"
    assert "990 packets dropped in all" in drops[-1].getMessage()


def test_an_oversized_batch_is_taken_by_an_empty_queue(trace, tmp_path: Path) -> None:
    frames, ts, _wl, _ = trace
    with Persister(tmp_path, "pcap", max_queued_packets=10) as p:
        assert p.offer(raw=RawFrames.from_frames(frames[:100], ts[:100], 1))
    assert p.stats.written_packets == 100


def test_offer_after_stop_and_missing_input(trace, tmp_path: Path) -> None:
    frames, ts, _wl, want = trace
    p = Persister(tmp_path, "pcap").start()
    with pytest.raises(ValueError, match="raw frames"):
        p.offer(batch=want)
    p.stop()
    assert not p.offer(raw=RawFrames.from_frames(frames[:3], ts[:3], 1))
    assert p.stats.rejected_after_stop == 1
    with pytest.raises(ValueError, match="PacketBatch"):
        Persister(tmp_path, "text").offer(raw=RawFrames.from_frames(frames[:3], ts[:3], 1))
    with pytest.raises(ValueError, match="encoding"):
        Persister(tmp_path, "gob")


def test_one_writer_per_file_with_several_workers(trace, tmp_path: Path) -> None:
    frames, ts, wl, want = trace
    with Persister(tmp_path, "pcap", num_workers=3) as p:
        for raw in _chunks(frames, ts, wl, 50):
            assert p.offer(raw=raw)
    files = [Path(x) for x in p.stats.files]
    assert files and all("-w" in f.name for f in files)
    got = PacketBatch.concat([CaptureReader(f).read_all() for f in files])
    assert len(got) == len(want)
    # Each file is a valid capture on its own (no interleaved writers): rows sorted back match.
    order = np.argsort(got.ts_ns, kind="stable")
    _same(got.take(order), want)


def _two_row_batch() -> PacketBatch:
    b = PacketBatch.empty(2)
    t0 = int(datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC).timestamp()) * 10**9
    b.ts_ns[:] = [t0 + 678_901_234, t0 + 10**9 + 5_000_000]
    b.src_ip[:] = [parse_ip("10.0.0.1"), parse_ip("2001:db8::1")]
    b.dst_ip[:] = [parse_ip("192.168.1.20"), parse_ip("2001:db8::2")]
    b.src_port[:] = [1234, 0]
    b.dst_port[:] = [80, 0]
    b.protocol[:] = [6, 58]
    b.length[:] = [60, 1514]
    return b


def test_text_lines_in_the_original_format_utc() -> None:
    assert format_text_lines(_two_row_batch()).splitlines() == [
        "2024-01-02 03:04:05.678 - 10.0.0.1:1234 -> 192.168.1.20:80, Proto: 6, Len: 60",
        "2024-01-02 03:04:06.005 - 2001:db8::1:0 -> 2001:db8::2:0, Proto: 58, Len: 1514",
    ]
    assert format_text_lines(PacketBatch.empty(0)) == ""


def test_text_and_parquet_files(tmp_path: Path) -> None:
    b = _two_row_batch()
    with Persister(tmp_path / "t", "text") as p:
        p.offer(b)
        p.offer(b)
    (f,) = (Path(x) for x in p.stats.files)
    assert f.suffix == ".log"
    assert f.read_text() == format_text_lines(b) * 2
    with Persister(tmp_path / "p", "parquet") as p:
        p.offer(b)
        p.offer(b.head(1))
    (f,) = (Path(x) for x in p.stats.files)
    table = pq.read_table(f)
    assert table.schema.equals(PARQUET_SCHEMA)
    assert table.num_rows == 3
    got = table.to_pydict()
    assert got["src_ip"][0] == b.src_ip[0].tobytes() and got["dst_ip"][1] == b.dst_ip[1].tobytes()
    assert got["src_port"] == [1234, 0, 1234] and got["protocol"] == [6, 58, 6]
    assert table.column("ts_ns").cast("int64").to_pylist() == [*b.ts_ns.tolist(), int(b.ts_ns[0])]


def test_from_config(tmp_path: Path, caplog) -> None:
    from netspectra.config.models import PersistenceConfig

    cfg = PersistenceConfig(
        enabled=True, path=str(tmp_path), num_workers=2, channel_buffer_size=123, encoding="gob"
    )
    with caplog.at_level(logging.WARNING, logger="netspectra.probe.persist"):
        p = Persister.from_config(cfg, rotate_seconds=60)
    assert p.encoding == "parquet" and "gob" in caplog.text
    assert (p.num_workers, p.max_queued_packets, p.rotate_seconds) == (2, 123, 60)
    assert p.directory == tmp_path
    assert Persister.from_config(PersistenceConfig()).directory == Path(".")


def test_a_write_error_is_counted_and_the_writer_goes_on(trace, tmp_path: Path, monkeypatch) -> None:
    import netspectra.probe.persist as persist

    frames, ts, _wl, _ = trace
    real = persist._FileWriter.write
    calls = []

    def flaky(self, it) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real(self, it)

    monkeypatch.setattr(persist._FileWriter, "write", flaky)
    with Persister(tmp_path, "pcap") as p:
        p.offer(raw=RawFrames.from_frames(frames[:10], ts[:10], 1))
        time.sleep(0.2)
        p.offer(raw=RawFrames.from_frames(frames[10:30], ts[10:30], 1))
    st = p.stats
    assert st.errors == 1 and st.dropped_packets == 10 and st.written_packets == 20
    assert [len(CaptureReader(f).read_all()) for f in st.files] == [0, 20]
