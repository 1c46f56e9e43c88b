"""The capture container layer: byte sources, the pcap/pcapng record kernels, errors and statistics.

The kernels are checked against their plain-Python references on the same seeded random streams
(including damaged ones); the sources against the bytes they window. Builders for synthetic
captures live here and are reused by ``test_capture_reader.py``.
"""

from __future__ import annotations

import gzip
import os
import pickle
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from netspectra.capture import pcapng as ng
from netspectra.capture import status as st
from netspectra.capture.errors import CaptureError
from netspectra.capture.pcap import (
    WALK_BAD_CAPLEN,
    WALK_END,
    WALK_FULL,
    walk_pcap_records,
    walk_pcap_records_py,
)
from netspectra.capture.source import (
    HARD_CAP_BYTES,
    GzipSource,
    MmapSource,
    RecordArrays,
    open_source,
    sniff,
)
from netspectra.capture.stats import CaptureStats

# --- builders (also used by test_capture_reader.py) ---------------------------------------------


def pcap_header(*, be: bool = False, ns: bool = False, snaplen: int = 65535, linktype: int = 1) -> bytes:
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    return struct.pack((">" if be else "<") + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(sec: int, frac: int, data: bytes, *, be: bool = False, wirelen: int | None = None) -> bytes:
    wl = len(data) if wirelen is None else wirelen
    return struct.pack((">" if be else "<") + "IIII", sec, frac, len(data), wl) + data


def block(btype: int, body: bytes, *, be: bool = False) -> bytes:
    body = body + b"\x00" * (-len(body) % 4)
    n = 12 + len(body)
    bo = ">" if be else "<"
    return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)


def shb(*, be: bool = False) -> bytes:
    return block(ng.BT_SHB, struct.pack((">" if be else "<") + "IHHq", 0x1A2B3C4D, 1, 0, -1), be=be)


def idb(
    linktype: int = 1,
    snaplen: int = 0,
    *,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    be: bool = False,
) -> bytes:
    bo = ">" if be else "<"
    body = struct.pack(bo + "HHI", linktype, 0, snaplen)
    if tsresol is not None:
        body += struct.pack(bo + "HH", ng.OPT_IF_TSRESOL, 1) + bytes([tsresol]) + b"\x00" * 3
    if tsoffset is not None:
        body += struct.pack(bo + "HHq", ng.OPT_IF_TSOFFSET, 8, tsoffset)
    if tsresol is not None or tsoffset is not None:
        body += struct.pack(bo + "HH", 0, 0)
    return block(ng.BT_IDB, body, be=be)


def epb(iface: int, units: int, data: bytes, *, wirelen: int | None = None, be: bool = False) -> bytes:
    wl = len(data) if wirelen is None else wirelen
    bo = ">" if be else "<"
    return block(
        ng.BT_EPB,
        struct.pack(bo + "IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(data), wl) + data,
        be=be,
    )


def opb(iface: int, units: int, data: bytes, *, be: bool = False) -> bytes:
    bo = ">" if be else "<"
    body = struct.pack(bo + "HHIIII", iface, 0, units >> 32, units & 0xFFFFFFFF, len(data), len(data)) + data
    return block(ng.BT_OPB, body, be=be)


def spb(data: bytes, *, wirelen: int | None = None, be: bool = False) -> bytes:
    wl = len(data) if wirelen is None else wirelen
    return block(ng.BT_SPB, struct.pack((">" if be else "<") + "I", wl) + data, be=be)


def other(btype: int = 0x0BAD, body: bytes = b"skip me", *, be: bool = False) -> bytes:
    return block(btype, body, be=be)


def write(tmp_path: Path, name: str, data: bytes, *, gz: bool = False) -> Path:
    p = tmp_path / name
    p.write_bytes(gzip.compress(data) if gz else data)
    return p


# --- errors -------------------------------------------------------------------------------------


def test_capture_error_is_one_line_with_path_offset_expected_found() -> None:
    e = CaptureError("a.pcap", 40, "a 16-byte record header", "7 trailing bytes")
    assert str(e) == "a.pcap: byte offset 40: expected a 16-byte record header, found 7 trailing bytes"
    assert (e.path, e.offset, e.expected, e.found) == (
        "a.pcap",
        40,
        "a 16-byte record header",
        "7 trailing bytes",
    )
    g = CaptureError("a.pcap.gz", 3, "x", "y", decompressed=True)
    assert str(g) == "a.pcap.gz: decompressed byte offset 3: expected x, found y"
    assert str(CaptureError("nope", None, "an existing capture file", "no such file")) == (
        "nope: expected an existing capture file, found no such file"
    )
    back = pickle.loads(pickle.dumps(g))
    assert str(back) == str(g) and back.decompressed and back.offset == 3


# --- byte sources -------------------------------------------------------------------------------


def _walk_source(src, data: bytes, steps: list[tuple[int, int]]) -> None:
    """Advance ``src`` by (consumed, need) steps, checking every window against ``data``."""
    win = src.window()
    assert win.tobytes() == data[src.start : src.start + len(win)]
    for consumed, need in steps:
        consumed = min(consumed, len(win))
        win = src.advance(consumed, need)
        assert win.tobytes() == data[src.start : src.start + len(win)]
        assert len(win) >= min(need, len(data) - src.start)
        assert src.at_eof == (src.start + len(win) == len(data)) or not src.at_eof
        if src.at_eof:
            assert src.start + len(win) == len(data)


def test_mmap_source_windows_and_growth(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(10_000)
    p = write(tmp_path, "raw.bin", data)
    with MmapSource(p, window_bytes=64) as src:
        assert src.total_bytes == 10_000 and not src.compressed
        assert len(src.window()) == 64 and not src.at_eof
        _walk_source(src, data, [(10, 0), (64, 0), (3, 500), (400, 0), (0, 4000)])
        assert len(src.window()) >= 4000
        win = src.advance(len(src.window()), 0)
        assert len(win) == 64  # back to the normal window once the big record is consumed
        while not src.at_eof:
            win = src.advance(len(win), 0)
        assert src.start + len(win) == len(data)
        assert not win.flags.writeable  # a read-only view of the mapping
        with pytest.raises(ValueError):
            src.advance(0, HARD_CAP_BYTES + 1)


def test_gzip_source_multi_member_padding_and_growth(tmp_path: Path) -> None:
    rnd = random.Random(2)
    parts = [rnd.randbytes(3000), b"", bytes(5000), rnd.randbytes(7)]
    data = b"".join(parts)
    p = tmp_path / "multi.gz"
    p.write_bytes(b"".join(gzip.compress(x) for x in parts) + bytes(512))  # trailing zero padding
    with GzipSource(p, window_bytes=64) as src:
        assert src.compressed and src.total_bytes == p.stat().st_size
        _walk_source(src, data, [(1, 0), (64, 0), (10, 2000), (2000, 0), (0, 0), (5, 9000)])
        win = src.window()
        while not src.at_eof:
            win = src.advance(len(win), 100)
        assert src.start + len(win) == len(data)
        assert src.bytes_done(len(win)) == p.stat().st_size


def _drain(src: GzipSource) -> bytes:
    """Every byte the source hands out, window after window, to its (possibly early) end."""
    out = [src.window().tobytes()]
    while not src.at_eof:
        out.append(src.advance(len(src.window())).tobytes())
    return b"".join(out)


def _inflate_bytewise(deflate: bytes) -> tuple[bytes, int]:
    """Raw-inflate ``deflate`` one input byte per call: (output before the error, failing byte)."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    out = []
    for i in range(len(deflate)):
        try:
            out.append(d.decompress(deflate[i : i + 1]))
        except zlib.error:
            return b"".join(out), i
    raise AssertionError("the deflate data was not damaged")


def test_gzip_source_damage_ends_the_stream_after_every_byte_before_it(tmp_path: Path) -> None:
    """Damage is not raised from the source: it ends the stream, keeps the bytes, names the offset."""
    data = random.Random(3).randbytes(50_000)
    z = gzip.compress(data)
    with GzipSource(write(tmp_path, "cut.gz", z[: len(z) // 2]), window_bytes=1 << 10) as src:
        got = _drain(src)
    assert src.damage is not None and src.damage.decompressed
    assert got == data[: len(got)] and src.damage.offset == len(got) > 0
    assert "end of file at compressed byte offset" in str(src.damage)

    # Corrupt deflate data: every byte zlib produces before the byte it rejects (fed one byte at a
    # time, nothing of an earlier byte can be lost), then the damage with both offsets.
    # (Deflate rarely notices corruption; this one is "invalid distance too far back" at byte 1012.)
    real = (Path(__file__).parents[1] / "data" / "captures" / "gnutella.pcap").read_bytes()[:200_000]
    zt = bytearray(gzip.compress(real, mtime=0))
    zt[1000:1008] = bytes(range(8))
    with GzipSource(write(tmp_path, "bad.gz", bytes(zt)), window_bytes=1 << 10) as src:
        got = _drain(src)
    want, failed_at = _inflate_bytewise(bytes(zt[10:]))
    assert src.damage is not None and src.damage.expected == "valid deflate data in the gzip member"
    assert got == want and src.damage.offset == len(got) > 0
    assert f"corrupt data at compressed byte offset {10 + failed_at} (" in src.damage.found

    # Trailing garbage is no damage: every byte, then a warning (what gzip -dc does).
    with GzipSource(write(tmp_path, "junk.gz", z + b"garbage!"), window_bytes=1 << 20) as src:
        assert _drain(src) == data
    assert src.damage is None and len(src.warnings) == 1
    assert f"compressed byte offset {len(z)}: 8 bytes of trailing garbage" in src.warnings[0]
    assert "67 61 72 62" in src.warnings[0]


def test_a_pipe_or_device_is_refused_as_such_at_once(tmp_path: Path) -> None:
    # A FIFO with no writer made the open wait forever; a pipe holding a whole capture (process
    # substitution, /dev/stdin of a pipe) and /dev/zero read as "an empty file" (stat gives size 0).
    fifo = tmp_path / "fifo.pcap"
    os.mkfifo(fifo)
    for path, found in ((fifo, "found a pipe (FIFO)"), (Path("/dev/zero"), "found a character device")):
        with pytest.raises(CaptureError) as ei:
            open_source(path)
        assert str(ei.value) == (
            f"{path}: expected a regular capture file (a pipe or a device cannot be read: write the "
            f"capture to a file first), {found}"
        )
    r, w = os.pipe()
    try:
        os.write(w, pcap_header())
        with pytest.raises(CaptureError, match="found a pipe"):
            open_source(f"/dev/fd/{r}")
    finally:
        os.close(r)
        os.close(w)


def test_open_source_rejects_what_is_not_a_capture(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="found no such file or directory"):
        open_source(tmp_path / "missing.pcap")
    with pytest.raises(CaptureError, match="found a directory"):
        open_source(tmp_path)
    with pytest.raises(CaptureError) as ei:
        open_source(write(tmp_path, "empty.pcap", b""))
    assert str(ei.value).endswith("byte offset 0: expected a capture file header, found an empty file")
    with pytest.raises(CaptureError) as ei:
        open_source(write(tmp_path, "zero.gz", gzip.compress(b"")))
    assert "an empty gzip stream" in str(ei.value)
    with pytest.raises(CaptureError) as ei:
        open_source(write(tmp_path, "short.pcap", b"\xd4\xc3"))
    assert "only 2 bytes (d4 c3)" in str(ei.value)
    with pytest.raises(CaptureError) as ei:
        open_source(write(tmp_path, "text.pcap", b"hello world"))
    msg = str(ei.value)
    assert "found bytes 68 65 6c 6c" in msg and "a1b2c3d4" in msg and "0a0d0d0a" in msg and "1f8b" in msg
    assert sniff(write(tmp_path, "x.bin", pcap_header(be=True, ns=True))) == ("pcap", False, 24)
    assert sniff(write(tmp_path, "y.pcap", shb() + idb(), gz=True))[:2] == ("pcapng", True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_open_source_unreadable(tmp_path: Path) -> None:
    p = write(tmp_path, "locked.pcap", pcap_header())
    p.chmod(0)
    with pytest.raises(CaptureError, match="permission denied"):
        open_source(p)


# --- pcap kernel --------------------------------------------------------------------------------


def random_pcap_body(rnd: random.Random, n: int, *, be: bool, max_caplen: int = 300) -> bytes:
    out = []
    for _ in range(n):
        data = rnd.randbytes(rnd.randint(0, max_caplen))
        out.append(
            pcap_record(rnd.getrandbits(32), rnd.getrandbits(20), data, be=be, wirelen=rnd.getrandbits(16))
        )
    return b"".join(out)


def _run_pcap(fn, buf: np.ndarray, pos: int, be: bool, frac: int, max_caplen: int, max_records: int):
    rec = RecordArrays(max(max_records, 1))
    n, p, code = fn(
        buf,
        pos,
        be,
        frac,
        113,
        max_caplen,
        max_records,
        rec.off,
        rec.caplen,
        rec.wirelen,
        rec.ts_ns,
        rec.linktype,
    )
    return (n, p, code), [a[:n].copy() for a in (rec.off, rec.caplen, rec.wirelen, rec.ts_ns, rec.linktype)]


@pytest.mark.parametrize("be", [False, True])
@pytest.mark.parametrize("frac", [1, 1000])
def test_pcap_kernel_agrees_with_reference(be: bool, frac: int) -> None:
    rnd = random.Random(10 + be * 2 + (frac == 1))
    body = random_pcap_body(rnd, 500, be=be)
    full = np.frombuffer(b"\x00" * 24 + body, np.uint8)
    cases = [(full, 24, 1000), (full, 24, 37)]
    for _ in range(30):  # windows cut at random points: stop inside a header or inside data
        cases.append((full[: rnd.randint(24, len(full))], 24, 1000))
    for buf, pos, max_records in cases:
        got, arrays = _run_pcap(walk_pcap_records, buf, pos, be, frac, 262144, max_records)
        want, ref = _run_pcap(walk_pcap_records_py, buf, pos, be, frac, 262144, max_records)
        assert got == want
        for a, b in zip(arrays, ref, strict=True):
            np.testing.assert_array_equal(a, b)
    got, _ = _run_pcap(walk_pcap_records, full, 24, be, frac, 262144, 1000)
    assert got == (500, len(full), WALK_END)
    assert _run_pcap(walk_pcap_records, full, 24, be, frac, 262144, 37)[0][2] == WALK_FULL
    # A caplen limit below the largest record stops at that record's header, in both.
    got, _ = _run_pcap(walk_pcap_records, full, 24, be, frac, 200, 1000)
    assert got == _run_pcap(walk_pcap_records_py, full, 24, be, frac, 200, 1000)[0]
    assert got[2] == WALK_BAD_CAPLEN


def test_pcap_kernel_timestamps_are_exact_integers() -> None:
    body = pcap_record(0xFFFFFFFF, 999_999, b"ab") + pcap_record(1_700_000_000, 123_456_789, b"")
    buf = np.frombuffer(body, np.uint8)
    rec = RecordArrays(4)
    args = (rec.off, rec.caplen, rec.wirelen, rec.ts_ns, rec.linktype)
    assert walk_pcap_records(buf, 0, False, 1000, 1, 262144, 4, *args) == (2, len(body), WALK_END)
    assert rec.ts_ns[0] == 0xFFFFFFFF * 10**9 + 999_999_000
    walk_pcap_records(buf, 0, False, 1, 1, 262144, 4, *args)
    assert rec.ts_ns[1] == 1_700_000_000_123_456_789
    assert rec.off[:2].tolist() == [16, 34] and rec.caplen[:2].tolist() == [2, 0]


# --- pcapng kernel ------------------------------------------------------------------------------

#: if_tsresol bytes covering every branch: 10^-6 (default), 10^-9, 10^-3, 10^-12 (division),
#: 2^-20, 2^-32 and 2^-40 (split multiplication).
TSRESOLS = [6, 9, 3, 12, 0x94, 0xA0, 0xA8]


def _interfaces(resols: list[int]) -> ng.PcapngWalker:
    w = ng.PcapngWalker("x.pcapng")
    for i, r in enumerate(resols):
        w.section_interfaces.append(ng.Interface(linktype=i + 1, snaplen=100 * i, tsresol=r, offset_s=i - 1))
    w._rebuild_interface_arrays()
    return w


def _run_ng(fn, w: ng.PcapngWalker, buf: np.ndarray, pos: int, be: bool, max_records: int, last_ts: int = 0):
    rec = RecordArrays(max(max_records, 1))
    counters = np.zeros(ng.N_COUNTERS, np.int64)
    res = fn(
        buf, pos, be, w._lt, w._pow2, w._mul, w._div, w._off, w._snap, len(w.section_interfaces), last_ts,
        max_records, rec.off, rec.caplen, rec.wirelen, rec.ts_ns, rec.linktype, counters,
    )  # fmt: skip
    arrays = [a[: res[0]].copy() for a in (rec.off, rec.caplen, rec.wirelen, rec.ts_ns, rec.linktype)]
    return tuple(int(x) for x in res), arrays, counters.tolist()


def random_pcapng_blocks(rnd: random.Random, n: int, n_if: int, *, be: bool) -> bytes:
    out = []
    for _ in range(n):
        kind = rnd.random()
        data = rnd.randbytes(rnd.randint(0, 200))
        units = rnd.getrandbits(rnd.choice([40, 56, 63, 64]))
        if kind < 0.5:
            out.append(epb(rnd.randrange(n_if), units, data, wirelen=len(data) + rnd.randint(0, 50), be=be))
        elif kind < 0.65:
            out.append(opb(rnd.randrange(n_if), units, data, be=be))
        elif kind < 0.85:
            out.append(spb(data, wirelen=len(data) + rnd.randint(0, 3), be=be))
        else:
            out.append(other(rnd.choice([4, 5, 10, 0x0BAD]), rnd.randbytes(rnd.randint(0, 40)), be=be))
    return b"".join(out)


@pytest.mark.parametrize("be", [False, True])
def test_pcapng_kernel_agrees_with_reference(be: bool) -> None:
    rnd = random.Random(20 + be)
    w = _interfaces(TSRESOLS)
    body = random_pcapng_blocks(rnd, 600, len(TSRESOLS), be=be)
    full = np.frombuffer(body, np.uint8)
    cases = [(full, 0, 1000, 0), (full, 0, 41, 5), (full, 0, 1000, -7)]
    cases += [(full[: rnd.randint(0, len(full))], 0, 1000, 0) for _ in range(30)]
    damaged = bytearray(body)
    damaged[len(body) // 2 :] = rnd.randbytes(len(body) - len(body) // 2)  # garbage from mid-block on
    cases.append((np.frombuffer(bytes(damaged), np.uint8), 0, 1000, 0))
    seen = set()
    for buf, pos, max_records, last_ts in cases:
        got = _run_ng(ng.walk_pcapng_blocks, w, buf, pos, be, max_records, last_ts)
        want = _run_ng(ng.walk_pcapng_blocks_py, w, buf, pos, be, max_records, last_ts)
        assert got[0] == want[0] and got[2] == want[2]
        for a, b in zip(got[1], want[1], strict=True):
            np.testing.assert_array_equal(a, b)
        seen.add(got[0][2])
    assert {ng.NG_END, ng.NG_FULL} <= seen
    assert seen - {ng.NG_END, ng.NG_FULL}, "the garbage case should have hit a damage outcome"
    (n, pos, code, _), _, counters = _run_ng(ng.walk_pcapng_blocks, w, full, 0, be, 10_000)
    assert (pos, code) == (len(full), ng.NG_END) and n + counters[ng.CTR_OTHER_BLOCKS] == 600


def test_pcapng_timestamp_conversion_is_exact() -> None:
    """Every resolution against exact big-integer arithmetic, including the 2^-k split path."""
    rnd = random.Random(30)
    for resol in [*TSRESOLS, 0, 1, 18, 27, 0x80, 0x9F, 0xA1, 0xBF]:
        pow2, mul, div = ng.Interface(1, 0, resol).scale()
        for units in [0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1, *(rnd.getrandbits(64) for _ in range(200))]:
            exact = (units * 10**9) >> div if pow2 else units * mul // div
            want = exact if exact < 2**63 - 1 else int(ng.TS_OVERFLOW)
            got = int(ng._units_to_ns(np.uint64(units), pow2, np.uint64(mul), np.uint64(div)))
            assert got == want, (resol, units)
            assert ng._units_to_ns_py(units, pow2, mul, div) == want


def test_pcapng_kernel_stops_for_section_and_interface_blocks() -> None:
    w = _interfaces([6])
    body = epb(0, 5, b"abc") + idb() + epb(0, 6, b"") + shb()
    buf = np.frombuffer(body, np.uint8)
    (n, pos, code, last), arrays, _ = _run_ng(ng.walk_pcapng_blocks, w, buf, 0, False, 100)
    assert (n, pos, code) == (1, 36, ng.NG_IDB) and last == 5000 - 10**9  # interface 0 has if_tsoffset -1 s
    assert arrays[0].tolist() == [28] and arrays[1].tolist() == [3]
    i2 = 36 + len(idb())
    (n, pos, code, _), _, _ = _run_ng(ng.walk_pcapng_blocks, w, buf, i2, False, 100)
    assert (n, pos, code) == (1, i2 + 32, ng.NG_SHB)


# --- statistics ---------------------------------------------------------------------------------


def test_stats_count_from_arrays_and_merge() -> None:
    a = CaptureStats(files=1)
    a.add_records(
        np.array([10, 60, 60], np.uint32),
        np.array([60, 60, 70], np.uint32),
        np.array([5, 3, 9], np.int64),
        np.array([1, 1, 113], np.uint16),
    )
    status = np.array(
        [st.OK, st.NON_IP, st.NON_IP, st.LINKTYPE_UNSUPPORTED, st.L2_TRUNCATED, st.OK_L4_TRUNCATED], np.uint8
    )
    aux = np.array([0, 0x0806, 0x0806, 127, 1, 0], np.uint16)
    a.add_decoded(status, aux, np.array([60, 70], np.uint32))
    assert (a.records, a.wire_bytes, a.captured_bytes, a.snaplen_cut) == (3, 190, 130, 2)
    assert (a.first_ts_ns, a.last_ts_ns, a.linktypes) == (3, 9, {1: 2, 113: 1})
    assert (a.ip_packets, a.ip_bytes) == (2, 130)
    assert a.non_ip == {0x0806: 2} and a.linktype_unsupported == {127: 1}
    assert a.by_status["non_ip"] == 2 and a.by_status["ok"] == 1 and a.by_status["ip_malformed"] == 0
    assert (a.truncated, a.skipped) == (2, 4)  # l4 + l2 truncated; non_ip x2, unsupported, l2

    b = CaptureStats(files=1, sections=2, interfaces=3, other_blocks=4)
    b.add_records(
        np.array([1], np.uint32), np.array([1], np.uint32), np.array([1], np.int64), np.array([1], np.uint16)
    )
    b.add_decoded(np.array([st.NON_IP], np.uint8), np.array([0x0806], np.uint16), np.array([], np.uint32))
    merged = a.merge(b)
    assert merged is a
    assert (a.files, a.records, a.first_ts_ns, a.last_ts_ns) == (2, 4, 1, 9)
    assert a.non_ip == {0x0806: 3} and a.linktypes == {1: 3, 113: 1} and a.by_status["non_ip"] == 3
    assert (a.sections, a.interfaces, a.other_blocks) == (2, 3, 4)
    empty = CaptureStats()
    empty.merge(CaptureStats())
    assert empty.first_ts_ns is None and empty.records == 0
    # a call whose records are all OK (counted without bincount) counts what bincount counts
    for statuses in (np.zeros(4, np.uint8), status):
        one = CaptureStats()
        one.add_decoded(statuses, np.zeros(len(statuses), np.uint16), np.array([1, 2, 3, 4], np.uint32))
        counts = np.bincount(statuses, minlength=st.N_STATUS)
        assert one.by_status == {name: int(counts[code]) for code, name in st.NAMES.items()}
        assert (one.ip_packets, one.ip_bytes) == (4, 10)
