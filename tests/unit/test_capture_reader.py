"""CaptureReader end to end: synthetic pcap/pcapng/gzip files, window boundaries, every damage case
with its exact offset, and the real sample captures against MANIFEST.tsv, dpkt and tshark."""

from __future__ import annotations

import csv
import gzip
import itertools
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.capture import pcapng as ng
from netspectra.capture.errors import CaptureError
from netspectra.capture.reader import CaptureReader, read_captures
from netspectra.capture.stats import CaptureStats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_capture_container import (
    block,
    epb,
    idb,
    opb,
    other,
    pcap_header,
    pcap_record,
    shb,
    spb,
    write,
)

MAPPED = bytes(10) + b"\xff\xff"


def udp4(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes = b"p" * 10) -> bytes:
    """An IPv4/UDP packet (no link layer)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst) + udp


def eth(payload: bytes, ethertype: int = 0x0800) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", ethertype) + payload


ARP = eth(b"\x00\x01\x08\x00\x06\x04\x00\x01" + bytes(20), 0x0806)
A, B, C = bytes([10, 0, 0, 1]), bytes([192, 168, 1, 2]), bytes([172, 16, 0, 3])


def rows(batch: PacketBatch) -> list[tuple]:
    return [
        (
            int(batch.ts_ns[i]),
            batch.src_ip[i].tobytes(),
            batch.dst_ip[i].tobytes(),
            int(batch.src_port[i]),
            int(batch.dst_port[i]),
            int(batch.protocol[i]),
            int(batch.length[i]),
        )
        for i in range(len(batch))
    ]


def record_list(path: Path, **kw) -> list[tuple[int, int, int, int, bytes]]:
    """(ts_ns, caplen, wirelen, linktype, packet bytes) of every record, through ``records()``."""
    out = []
    for c in CaptureReader(path, **kw).records():
        for i in range(c.n):
            o, cl = int(c.off[i]), int(c.caplen[i])
            out.append(
                (int(c.ts_ns[i]), cl, int(c.wirelen[i]), int(c.linktype[i]), c.buf[o : o + cl].tobytes())
            )
    return out


def read_until_error(reader: CaptureReader) -> tuple[list[tuple], CaptureError | None]:
    got: list[tuple] = []
    try:
        for b in reader:
            got += rows(b)
    except CaptureError as exc:
        return got, exc
    return got, None


# --- classic pcap -------------------------------------------------------------------------------


def small_pcap(*, be: bool, ns: bool) -> bytes:
    frac = 123_456_789 if ns else 123_456
    return (
        pcap_header(be=be, ns=ns)
        + pcap_record(1_700_000_000, frac, eth(udp4(A, B, 1000, 53)), be=be)
        + pcap_record(1_700_000_001, 0, ARP, be=be, wirelen=60)
        + pcap_record(1_700_000_002, 7, eth(udp4(B, C, 53, 1000))[:34], be=be, wirelen=200)
    )


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("ns", [False, True])
@pytest.mark.parametrize("be", [False, True])
def test_pcap_byte_orders_resolutions_and_gzip(tmp_path: Path, be: bool, ns: bool, gz: bool) -> None:
    p = write(tmp_path, "x.bin", small_pcap(be=be, ns=ns), gz=gz)
    r = CaptureReader(p)
    assert (r.format, r.compressed, r.total_bytes) == ("pcap", gz, p.stat().st_size)
    recs = record_list(p)
    unit = 1 if ns else 1000
    frac = 123_456_789 if ns else 123_456
    assert [x[0] for x in recs] == [
        1_700_000_000 * 10**9 + frac * unit,
        1_700_000_001 * 10**9,
        1_700_000_002 * 10**9 + 7 * unit,
    ]
    assert [(x[1], x[2], x[3]) for x in recs] == [(52, 52, 1), (42, 60, 1), (34, 200, 1)]
    got = rows(r.read_all())
    assert got == [
        (recs[0][0], MAPPED + A, MAPPED + B, 1000, 53, 17, 52),
        (recs[2][0], MAPPED + B, MAPPED + C, 0, 0, 17, 200),  # ports cut by the snap length
    ]
    s = r.stats
    assert (s.files, s.records, s.wire_bytes, s.ip_packets, s.ip_bytes, s.snaplen_cut) == (
        1,
        3,
        312,
        2,
        252,
        2,
    )
    assert s.non_ip == {0x0806: 1} and s.linktypes == {1: 3}
    assert s.by_status["ok"] == 1 and s.by_status["l4_truncated"] == 1 and s.truncated == 1 and s.skipped == 1
    assert (s.first_ts_ns, s.last_ts_ns) == (recs[0][0], recs[2][0])


def test_pcap_linktype_field_upper_bits_are_masked(tmp_path: Path) -> None:
    # FCS-present flag + FCS length 2 words in the top bits, reserved bits set, link type 101 (raw IP).
    data = pcap_header(linktype=0x24300065) + pcap_record(1, 2, udp4(A, B, 5, 6))
    r = CaptureReader(write(tmp_path, "lt.pcap", data))
    assert rows(r.read_all())[0][1:5] == (MAPPED + A, MAPPED + B, 5, 6)
    assert r.stats.linktypes == {101: 1}


# --- pcapng -------------------------------------------------------------------------------------


def two_section_pcapng() -> tuple[bytes, list[tuple[int, int]]]:
    """BE section (2 interfaces, one 10^-9 with +100 s offset) then LE section (2^-20), every packet
    block kind and some blocks to skip. Returns the bytes and the expected (ts_ns, linktype)."""
    p1 = udp4(A, B, 1, 2)
    be = (
        shb(be=True)
        + idb(1, 0, be=True)  # Ethernet, default 10^-6
        + idb(101, 0, tsresol=9, tsoffset=100, be=True)  # raw IP, ns, +100 s
        + spb(eth(p1), be=True)  # no packet before it in the section: ts 0
        + epb(0, 1_600_000_000_123_456, eth(p1), be=True)
        + other(5, b"interface statistics", be=True)
        + opb(1, 1_600_000_000_987_654_321, udp4(B, C, 3, 4), be=True)
        + spb(ARP, be=True)  # ts of the previous packet (the OPB)
    )
    le = (
        shb()
        + other(4, b"name resolution")
        + idb(1, 0, tsresol=0x94)  # 2^-20 s units
        + epb(0, (1_700_000_000 << 20) + (1 << 19), eth(udp4(C, A, 7, 8)))  # .5 s
        + spb(eth(udp4(A, C, 9, 10)))
    )
    ts_opb = 1_600_000_000_987_654_321 + 100 * 10**9
    expect = [
        (0, 1),
        (1_600_000_000_123_456_000, 1),
        (ts_opb, 101),
        (ts_opb, 1),
        (1_700_000_000_500_000_000, 1),
        (1_700_000_000_500_000_000, 1),
    ]
    return be + le, expect


@pytest.mark.parametrize("gz", [False, True])
def test_pcapng_sections_interfaces_resolutions_and_block_kinds(tmp_path: Path, gz: bool) -> None:
    data, expect = two_section_pcapng()
    p = write(tmp_path, "two.pcapng", data, gz=gz)
    r = CaptureReader(p)
    assert (r.format, r.compressed) == ("pcapng", gz)
    recs = record_list(p)
    assert [(x[0], x[3]) for x in recs] == expect
    got = rows(r.read_all())
    assert [g[1:6] for g in got] == [
        (MAPPED + A, MAPPED + B, 1, 2, 17),
        (MAPPED + A, MAPPED + B, 1, 2, 17),
        (MAPPED + B, MAPPED + C, 3, 4, 17),
        (MAPPED + C, MAPPED + A, 7, 8, 17),
        (MAPPED + A, MAPPED + C, 9, 10, 17),
    ]
    s = r.stats
    assert (s.sections, s.interfaces, s.other_blocks, s.records, s.ip_packets) == (2, 3, 2, 6, 5)
    assert s.linktypes == {1: 5, 101: 1} and s.non_ip == {0x0806: 1} and s.ts_overflow == 0


def test_pcapng_many_interfaces_cost_linear_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel's interface arrays were rebuilt in Python at every IDB: O(n^2), a file of 20,000 IDBs took
    # over two minutes and one of 1 M hung. They now grow by doubling; every interface keeps its settings.
    n = 5000
    data = shb() + b"".join(idb(1 if i % 2 else 101, tsresol=i % 10) for i in range(n))
    data += epb(n - 1, 7, eth(udp4(A, B, 1, 2))) + epb(n - 2, 7, udp4(B, C, 3, 4))
    rebuilds = []
    real = ng.PcapngWalker._rebuild_interface_arrays
    monkeypatch.setattr(
        ng.PcapngWalker, "_rebuild_interface_arrays", lambda w, *a: rebuilds.append(a) or real(w, *a)
    )
    r = CaptureReader(write(tmp_path, "many.pcapng", data))
    got = rows(r.read_all())
    assert len(rebuilds) <= 2 + n.bit_length()
    assert [(g[0], *g[1:6]) for g in got] == [
        (7 * 10**0, MAPPED + A, MAPPED + B, 1, 2, 17),  # interface 4999: link type 1, resolution 10^-9
        (7 * 10**1, MAPPED + B, MAPPED + C, 3, 4, 17),  # interface 4998: link type 101, 10^-8
    ]
    assert r.stats.interfaces == n and r.stats.records == 2
    with pytest.raises(CaptureError, match=f"expected an interface id below {n} "):
        list(CaptureReader(write(tmp_path, "more.pcapng", data + epb(n, 1, udp4(A, B, 1, 2)))))


def test_pcapng_spb_caplen_is_bounded_by_snaplen_and_timestamp_overflow_is_counted(tmp_path: Path) -> None:
    data = shb() + idb(1, 20) + spb(eth(udp4(A, B, 1, 2)), wirelen=500) + epb(0, 2**64 - 1, ARP)
    p = write(tmp_path, "snap.pcapng", data)
    recs = record_list(p)
    assert [(x[1], x[2]) for x in recs] == [(20, 500), (42, 42)]
    assert recs[1][0] == int(ng.TS_OVERFLOW)
    r = CaptureReader(p)
    r.read_all()
    assert r.stats.ts_overflow == 1 and r.stats.snaplen_cut == 1


# --- windows, batches, progress -----------------------------------------------------------------


def straddling_files(tmp_path: Path) -> list[Path]:
    big = eth(udp4(A, B, 11, 22, b"B" * 1000))  # larger than the 64-byte window
    recs = b"".join(pcap_record(i, i, eth(udp4(A, C, i, i + 1, b"x" * (i % 23)))) for i in range(40))
    pcap = pcap_header() + recs + pcap_record(99, 0, big) + pcap_record(100, 0, ARP)
    blocks = b"".join(epb(0, i, eth(udp4(C, B, i, 3, b"y" * (i % 17)))) + other() for i in range(30))
    pcapng_data = two_section_pcapng()[0] + shb() + idb() + blocks + epb(0, 5, big)
    return [
        write(tmp_path, "s.pcap", pcap),
        write(tmp_path, "s.pcap.gz", pcap, gz=True),
        write(tmp_path, "s.pcapng", pcapng_data),
        write(tmp_path, "s.pcapng.gz", pcapng_data, gz=True),
    ]


def test_records_straddling_window_boundaries_and_larger_than_the_window(tmp_path: Path) -> None:
    for p in straddling_files(tmp_path):
        want = record_list(p)
        assert len(want) in (42, 37)
        for window in (64, 100, 333):
            assert record_list(p, window_bytes=window) == want, (p.name, window)
            tiny, ref = CaptureReader(p, window_bytes=window), CaptureReader(p)
            assert rows(tiny.read_all()) == rows(ref.read_all())
            assert tiny.stats == ref.stats


def test_batches_are_bounded_fresh_arrays(tmp_path: Path) -> None:
    p = straddling_files(tmp_path)[0]
    want = rows(CaptureReader(p).read_all())
    for bs in (1, 2, 3, 7, 1000):
        batches = list(CaptureReader(p, batch_size=bs, window_bytes=128))
        assert all(0 < len(b) <= bs for b in batches)
        for b in batches:
            b.validate()
        assert [r for b in batches for r in rows(b)] == want
        for x, y in itertools.pairwise(batches):
            assert not np.shares_memory(x.ts_ns, y.ts_ns) and not np.shares_memory(x.src_ip, y.src_ip)


def test_output_batches_are_reused_only_when_no_one_holds_them(tmp_path: Path) -> None:
    """The reader decodes into batches it made before once nothing refers to them (no page faults of
    fresh memory), and never into one that a consumer still holds, whole, sliced or one column."""
    p = straddling_files(tmp_path)[0]
    want = rows(CaptureReader(p).read_all())
    # 1. a consumer that drops each batch: the same rows, decoded into a few reused buffers
    got, buffers = [], set()
    for b in CaptureReader(p, batch_size=2, window_bytes=128):
        buffers.add(b.ts_ns.__array_interface__["data"][0])
        got += rows(b)
        del b
    assert got == want
    assert len(buffers) <= 3 < len(want) // 2
    # 2. a consumer that keeps a view of one column of each batch: those are never written again
    kept, copies = [], []
    for b in CaptureReader(p, batch_size=2, window_bytes=128):
        kept.append((b.src_ip[:1], b.length))
        copies.append((b.src_ip[:1].copy(), b.length.copy()))
    for (ip, length), (ip0, length0) in zip(kept, copies, strict=True):
        assert np.array_equal(ip, ip0) and np.array_equal(length, length0)


@pytest.mark.parametrize("gz", [False, True])
def test_ramp_gives_the_same_rows_in_small_batches_at_both_ends(tmp_path: Path, gz: bool) -> None:
    """``ramp``: batches of batch_size // 16 rows first, doubling up to batch_size, then halving the
    estimated rest near the end; the rows, their order, the counts and a damage error are those of a
    reader without it."""
    recs = b"".join(
        pcap_record(i // 1000, i % 1000, eth(udp4(A, bytes([10, 0, i >> 8 & 0xFF, i & 0xFF]), i % 999, 53)))
        for i in range(5000)
    )
    good = write(tmp_path, "ramp.pcap", pcap_header() + recs, gz=gz)
    bad = write(tmp_path, "ramp-cut.pcap", pcap_header() + recs + pcap_record(9, 0, ARP)[:-3], gz=gz)
    for p in (good, bad):
        plain = CaptureReader(p, batch_size=256, window_bytes=4096)
        ramped = CaptureReader(p, batch_size=256, window_bytes=4096, ramp=True)
        want, want_err = read_until_error(plain)
        sizes: list[int] = []
        got: list[tuple] = []
        err = None
        try:
            for b in ramped:
                b.validate()
                sizes.append(len(b))
                got += rows(b)
        except CaptureError as exc:
            err = exc
        assert got == want and len(want) == 5000
        assert ramped.stats == plain.stats
        assert (err is None) == (p is good) and str(err) == str(want_err)
        # a batch is handed out once fewer than min(16, its target // 4) more rows would fit
        ramp_up = zip(sizes[:5], (16, 32, 64, 128, 256), strict=True)
        assert all(t - min(16, t // 4) < n <= t for n, t in ramp_up), sizes
        full = [i for i, n in enumerate(sizes) if n > 240]
        assert len(full) >= 10 and full == list(range(full[0], full[-1] + 1)), sizes
        tail = sizes[full[-1] + 1 :]  # after the full batches: the estimated rest halved, down to 16
        assert len(tail) >= 3 and max(tail) <= 240, sizes
        assert all(b <= a or b <= 16 for a, b in itertools.pairwise(tail)) and min(tail[:-1]) >= 12, sizes


def test_progress_reports_file_bytes_up_to_the_total(tmp_path: Path) -> None:
    for p in straddling_files(tmp_path):
        seen: list[int] = []
        r = CaptureReader(p, window_bytes=64, progress=seen.append)
        r.read_all()
        assert seen and seen == sorted(seen) and seen[-1] == r.total_bytes == p.stat().st_size


def test_read_captures_yields_every_file_then_stops_at_damage(tmp_path: Path) -> None:
    good = straddling_files(tmp_path)[:2]
    damaged = write(
        tmp_path, "d.pcap", pcap_header() + pcap_record(1, 0, eth(udp4(A, B, 1, 2, b""))) + b"\x01\x02"
    )
    stats = CaptureStats()
    got: list[tuple] = []
    with pytest.raises(CaptureError) as ei:
        for b in read_captures([*good, damaged], batch_size=5, stats=stats):
            got += rows(b)
    assert ei.value.path == str(damaged) and ei.value.offset == 24 + 16 + 42
    assert len(got) == 41 + 41 + 1 and stats.files == 3 and stats.records == 42 + 42 + 1


# --- damage -------------------------------------------------------------------------------------

GOOD = eth(udp4(A, B, 1, 2, b""))  # 42 bytes
GOOD_REC = pcap_record(1, 0, GOOD)  # 58 bytes


def _pcap_damage_cases() -> list[tuple[str, bytes, int, int, str, str]]:
    """(name, file, rows before, offset, expected-substring, found-substring)."""
    hdr = pcap_header(snaplen=1000)
    bogus = struct.pack("<IIII", 1, 0, 262_145, 60)
    return [
        (
            "bogus caplen",
            hdr + GOOD_REC * 2 + bogus + bytes(100),
            2,
            24 + 116,
            "caplen of at most 262144",
            "bogus caplen 262145",
        ),
        (
            "record past EOF",
            hdr + GOOD_REC + GOOD_REC[:-5],
            1,
            24 + 58,
            "42 bytes of packet data",
            "37 bytes before end of file",
        ),
        (
            "trailing bytes",
            hdr + GOOD_REC * 3 + b"\x00" * 7,
            3,
            24 + 174,
            "a 16-byte record header",
            "7 trailing bytes",
        ),
    ]


@pytest.mark.parametrize("window", [1 << 20, 64])
@pytest.mark.parametrize("gz", [False, True])
def test_pcap_damage_after_yielding_everything_before_it(tmp_path: Path, gz: bool, window: int) -> None:
    for name, data, n_before, offset, expected, found in _pcap_damage_cases():
        p = write(tmp_path, "bad.pcap", data, gz=gz)
        r = CaptureReader(p, window_bytes=window, batch_size=2)
        got, err = read_until_error(r)
        assert err is not None, name
        assert len(got) == n_before and r.stats.records == n_before, name
        assert (err.path, err.offset, err.decompressed) == (str(p), offset, gz), name
        assert expected in err.expected and found in err.found, (name, str(err))
        where = "decompressed byte offset" if gz else "byte offset"
        assert str(err).startswith(f"{p}: {where} {offset}: expected "), str(err)
        assert "\n" not in str(err)


def test_pcap_header_shorter_than_24_bytes(tmp_path: Path) -> None:
    with pytest.raises(CaptureError) as ei:
        CaptureReader(write(tmp_path, "short.pcap", pcap_header()[:20]))
    assert (
        ei.value.offset == 0 and "24-byte pcap global header" in str(ei.value) and "20 bytes" in str(ei.value)
    )


def _set_u32(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + struct.pack("<I", value) + data[at + 4 :]


def _pcapng_damage_cases() -> list[tuple[str, bytes, int, int, str]]:
    """(name, file, rows before, offset, substring of the message)."""
    head = shb() + idb()  # 28 + 20 bytes
    ok = epb(0, 1, GOOD)  # 76 bytes
    at = len(head) + len(ok)  # offset of the damaged block
    victim = epb(0, 2, GOOD)
    return [
        (
            "length not a multiple of 4",
            head + ok + _set_u32(victim, 4, 30),
            1,
            at,
            "multiple of 4 and at least 12",
        ),
        ("length below 12", head + ok + _set_u32(victim, 4, 8), 1, at, "total length 8"),
        (
            "trailer mismatch",
            head + ok + victim[:-4] + struct.pack("<I", 80),
            1,
            at,
            "repeat the leading one (76), found 80",
        ),
        ("block past EOF", head + ok + victim[:-10], 1, at, "a complete block of 76 bytes"),
        ("bogus length", head + ok + _set_u32(victim, 4, 0x7FFFFFF0), 1, at, "bogus total length 2147483632"),
        ("unknown interface", head + ok + epb(3, 2, GOOD), 1, at, "interface id below 1"),
        (
            "spb without idb",
            shb() + spb(GOOD),
            0,
            28,
            "interface description block before a simple packet block",
        ),
        ("epb too short", head + ok + block(ng.BT_EPB, bytes(16)), 1, at, "at least 32 bytes"),
        (
            "caplen beyond block",
            head + ok + _set_u32(victim, 20, 50),
            1,
            at,
            "caplen 50 in a block of 76 bytes",
        ),
        ("bad byte-order magic", head + ok + _set_u32(shb(), 8, 0x11223344), 1, at + 8, "byte-order magic"),
        ("pcapng version 2", head + ok + shb()[:12] + b"\x02\x00" + shb()[14:], 1, at, "version 2.0"),
        (
            "trailing bytes",
            head + ok + b"\x00" * 5,
            1,
            at,
            "block header (at least 12 bytes), found 5 trailing",
        ),
        (
            "option past block",
            shb() + block(ng.BT_IDB, struct.pack("<HHIHH", 1, 0, 0, 9, 40)),
            0,
            28 + 16,
            "option 9 of 40 bytes",
        ),
        ("tsresol too fine", shb() + idb(1, 0, tsresol=40), 0, 28 + 16, "10^-40"),
    ]


@pytest.mark.parametrize("window", [1 << 20, 64])
@pytest.mark.parametrize("gz", [False, True])
def test_pcapng_damage_with_exact_offsets(tmp_path: Path, gz: bool, window: int) -> None:
    for name, data, n_before, offset, text in _pcapng_damage_cases():
        p = write(tmp_path, "bad.pcapng", data, gz=gz)
        r = CaptureReader(p, window_bytes=window)
        got, err = read_until_error(r)
        assert err is not None, name
        assert len(got) == n_before, name
        assert (err.offset, err.decompressed) == (offset, gz), (name, str(err))
        assert text in str(err), (name, str(err))
        assert str(err).startswith(f"{p}: "), str(err)


def test_pcapng_damage_in_a_big_endian_second_section(tmp_path: Path) -> None:
    first = shb() + idb() + epb(0, 1, GOOD)
    second = shb(be=True) + idb(be=True) + epb(0, 2, GOOD, be=True)
    bad = epb(7, 3, GOOD, be=True)
    p = write(tmp_path, "be.pcapng", first + second + bad)
    got, err = read_until_error(CaptureReader(p, window_bytes=64))
    assert len(got) == 2 and err is not None
    assert err.offset == len(first) + len(second) and "interface id 7" in err.found


def test_files_that_are_not_captures(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such file"):
        CaptureReader(tmp_path / "nope.pcap")
    with pytest.raises(CaptureError, match="found a directory"):
        CaptureReader(tmp_path)
    with pytest.raises(CaptureError) as ei:
        CaptureReader(write(tmp_path, "e.pcap", b""))
    assert (
        str(ei.value)
        == f"{tmp_path / 'e.pcap'}: byte offset 0: expected a capture file header, found an empty file"
    )
    with pytest.raises(CaptureError) as ei:
        CaptureReader(write(tmp_path, "m.pcapng", b"\x00\x00\x00\x00" + bytes(100)))
    assert "found bytes 00 00 00 00" in str(ei.value) and "a1b2c3d4" in str(ei.value)


# --- the real sample captures -------------------------------------------------------------------


def _manifest(shared: Path) -> list[dict[str, str]]:
    with open(shared / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.mark.shared
def test_real_captures_record_counts_match_the_manifest(shared_data: Path) -> None:
    checked = 0
    for row in _manifest(shared_data):
        if not row["packets"] or row["error"]:
            continue
        r = CaptureReader(shared_data / row["file"])
        n = 0
        for b in r:
            b.validate()
            n += len(b)
        assert r.stats.records == int(row["packets"]), row["file"]
        assert n == r.stats.ip_packets and r.stats.ip_packets + r.stats.skipped == r.stats.records, row[
            "file"
        ]
        assert r.format == row["format"].removeprefix("gz+"), row["file"]
        assert r.compressed == row["format"].startswith("gz+"), row["file"]
        checked += 1
    assert checked >= 60


@pytest.mark.shared
def test_real_damaged_captures(shared_data: Path) -> None:
    caps = shared_data / "captures"
    got, err = read_until_error(CaptureReader(caps / "fuzz-2021-10-13.pcap"))
    assert got == [] and err is not None and err.offset == 24 and "bogus caplen" in str(err)
    assert str(err).startswith(str(caps / "fuzz-2021-10-13.pcap"))

    r = CaptureReader(caps / "truncated_dns_2.pcap")
    got, err = read_until_error(r)
    assert len(got) == 1 and r.stats.records == 1
    assert err is not None and err.offset == 240 and "7 trailing bytes" in str(err)

    with pytest.raises(CaptureError) as ei:
        CaptureReader(caps / "test_without_pcap_header.pcap")
    assert ei.value.offset == 0 and "found bytes 00 00 00 00" in str(ei.value)
    assert "test_without_pcap_header.pcap" in str(ei.value)


@pytest.mark.shared
@pytest.mark.parametrize(
    "name", ["test.pcap", "nfsv2.pcap", "dhcp-nanosecond.pcap", "jpegs.cap", "gnutella.pcap", "local2.pcap"]
)
def test_real_pcap_records_match_dpkt(shared_data: Path, name: str) -> None:
    dpkt = pytest.importorskip("dpkt")
    path = shared_data / "captures" / name
    with open(path, "rb") as f:
        theirs = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    mine = record_list(path)
    assert len(mine) == len(theirs)
    for (ts_ns, caplen, _wl, _lt, data), (ts, buf) in zip(mine, theirs, strict=True):
        assert data == buf and caplen == len(buf)
        assert abs(ts_ns / 1e9 - float(ts)) < 2e-6  # dpkt gives float seconds


@pytest.mark.shared
@pytest.mark.tshark
def test_real_pcapng_timestamps_match_tshark(shared_data: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    for name in ["sites.pcapng", "grpc_stream_reassembly_sample.pcapng.gz", "multisection_BE_then_LE.pcapng"]:
        path = shared_data / "captures" / name
        out = subprocess.run(
            [
                "tshark",
                "-r",
                str(path),
                "-T",
                "fields",
                "-e",
                "frame.time_epoch",
                "-e",
                "frame.cap_len",
                "-e",
                "frame.len",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        theirs = []
        for t, cl, wl in zip(out[0::3], out[1::3], out[2::3], strict=True):
            sec, _, frac = t.partition(".")
            ns = int(sec) * 10**9 + int((frac + "0" * 9)[:9])
            theirs.append((ns if ns < 2**63 - 1 else int(ng.TS_OVERFLOW), int(cl), int(wl)))
        assert [(x[0], x[1], x[2]) for x in record_list(path)] == theirs, name


def test_gzip_multi_member_capture(tmp_path: Path) -> None:
    data = small_pcap(be=False, ns=False)
    p = tmp_path / "multi.pcap.gz"
    p.write_bytes(gzip.compress(data[:30]) + gzip.compress(data[30:100]) + gzip.compress(data[100:]))
    assert record_list(p, window_bytes=64) == record_list(write(tmp_path, "plain.pcap", data))


# --- the BatchSource protocol and CaptureStats.as_dict ------------------------------------------


def test_capture_reader_is_a_batch_source(tmp_path: Path) -> None:
    from netspectra.batch import BatchSource

    p = write(tmp_path, "x.pcap", small_pcap(be=False, ns=False), gz=True)
    r = CaptureReader(p, batch_size=1)
    assert isinstance(r, BatchSource)
    r.stop()  # a no-op for a file: iteration still ends by itself
    assert sum(len(b) for b in r) == 2 and r.stats.records == 3

    it = iter(r)
    assert len(next(it)) == 1
    r.close()  # ends the iteration in progress and releases its file
    assert list(it) == []
    r.close()  # idempotent
    with CaptureReader(p) as again:
        assert len(again.read_all()) == 2  # a closed reader's file can be read anew

    chunks = r.records()
    next(chunks)
    r.close()
    assert list(chunks) == []


def test_stats_as_dict_is_plain_and_complete(tmp_path: Path) -> None:
    import dataclasses
    import json

    r = CaptureReader(write(tmp_path, "x.pcap", small_pcap(be=True, ns=True)))
    r.read_all()
    d = r.stats.as_dict()
    assert {f.name for f in dataclasses.fields(CaptureStats)} <= d.keys()
    assert (d["records"], d["ip_packets"], d["skipped"], d["truncated"]) == (3, 2, 1, 1)
    assert d["implausible_length"] == 0 and d["non_ip"] == {0x0806: 1} and d["linktypes"] == {1: 3}
    assert d["by_status"]["ok"] == 1 and d["warnings"] == []
    assert json.loads(json.dumps(d))["records"] == 3
    d["by_status"]["ok"] = 99  # a copy: the stats stay as they were
    assert r.stats.by_status["ok"] == 1


def test_ramped_batches_kept_together_hold_little_more_than_their_rows(tmp_path: Path) -> None:
    """A consumer that holds many of a ramped reader's batches at once (the offline engine's queue, which
    admits two full batches' worth of rows: as many as 32 of the smallest) keeps the memory they are views
    of: each small batch must not be a view of a buffer of its own, of ``batch_size`` rows, or the
    held memory is many times the rows held. Small batches share buffers (successive rows of one)."""
    recs = b"".join(
        pcap_record(i // 1000, i % 1000, eth(udp4(A, bytes([10, 0, i >> 8 & 0xFF, i & 0xFF]), i % 999, 53)))
        for i in range(5000)
    )
    p = write(tmp_path, "ramp.pcap", pcap_header() + recs)
    plain = [r for b in CaptureReader(p, batch_size=256, window_bytes=4096) for r in rows(b)]
    kept = list(CaptureReader(p, batch_size=256, window_bytes=4096, ramp=True))
    assert [r for b in kept for r in rows(b)] == plain
    assert sum(len(b) < 128 for b in kept) >= 6  # small batches at both ends
    for column in ("ts_ns", "src_ip", "length"):
        buffers = {}
        for b in kept:
            a = getattr(b, column)
            base = a.base if a.base is not None else a
            buffers[id(base)] = base.shape[0]
        assert sum(buffers.values()) <= 5000 + 2 * 256, (column, sorted(buffers.values()))
