"""The README's promise, container by container: every packet before the damage is still counted.

A capture cut anywhere (a download stopped, a disk filled up) must give exactly the packets of the
records that lie wholly before the cut, then one :class:`CaptureError` at the right offset. For gzip
of either format, "before the cut" means every byte zlib can decompress from what is left: the
packets are those of the records wholly inside it, and the error is the gzip damage at the
decompressed offset reached. Checked for every cut position of small synthetic files (both byte
orders, several sections, windows smaller than a record) and sampled cuts of a real capture read
with a window much smaller than the file (the case that used to lose up to a window).
"""

from __future__ import annotations

import gzip
import struct
import sys
import zlib
from pathlib import Path

import pytest

from netspectra.capture.errors import CaptureError
from netspectra.capture.reader import CaptureReader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_capture_container import epb, idb, opb, other, pcap_header, pcap_record, shb, spb
from test_capture_reader import ARP, A, B, C, eth, rows, udp4

BUNDLED = Path(__file__).resolve().parents[1] / "data" / "captures"


def synthetic_pcap(be: bool) -> bytes:
    recs = [
        pcap_record(
            1_700_000_000 + i, i, eth(udp4(A, B if i % 2 else C, 1000 + i, 53, b"x" * (i * 7))), be=be
        )
        for i in range(12)
    ]
    recs.insert(3, pcap_record(5, 5, ARP, be=be))
    return pcap_header(be=be) + b"".join(recs)


def synthetic_pcapng() -> bytes:
    """Two sections (little- then big-endian), several interfaces, every packet block kind, other blocks."""
    le = shb() + idb(1) + idb(101, tsresol=9)
    for i in range(5):
        le += epb(
            i % 2, 1_700_000_000_000_000 + i, (eth(udp4(A, B, 1, i)) if i % 2 == 0 else udp4(B, A, i, 1))
        )
    le += other() + spb(eth(udp4(C, A, 7, 7))) + opb(0, 5, eth(udp4(A, C, 8, 8)))
    be = shb(be=True) + idb(1, be=True)
    for i in range(4):
        be += epb(0, 1_800_000_000_000_000 + i, eth(udp4(C, B, 2, i), 0x0800), be=True)
    return le + be + other(be=True)


def boundaries(data: bytes) -> list[int]:
    """Offsets where a record/block ends (a file cut there is intact), by a plain parse of ``data``."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        ends, pos, bo = [], 0, "<"
        while pos < len(data):
            if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
                bo = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            pos += struct.unpack_from(bo + "I", data, pos + 4)[0]
            ends.append(pos)
        return ends
    bo = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    ends, pos = [24], 24
    while pos < len(data):
        pos += 16 + struct.unpack_from(bo + "I", data, pos + 8)[0]
        ends.append(pos)
    return ends


def read(path: Path, window: int) -> tuple[list[tuple], CaptureError | None, int]:
    """(packet rows, error, records counted) of ``path``; an error at open gives no rows."""
    try:
        r = CaptureReader(path, window_bytes=window, batch_size=3)
    except CaptureError as exc:
        return [], exc, 0
    got: list[tuple] = []
    try:
        for b in r:
            got += rows(b)
    except CaptureError as exc:
        return got, exc, r.stats.records
    return got, None, r.stats.records


class Truth:
    """The packets of every intact prefix of ``data``, computed once per boundary."""

    def __init__(self, tmp: Path, data: bytes) -> None:
        self.data, self.tmp, self.ends, self._rows = data, tmp, boundaries(data), {}
        assert self.ends[-1] == len(data)

    def intact_prefix(self, n: int) -> int:
        return max((e for e in self.ends if e <= n), default=0)

    def rows(self, end: int) -> tuple[list[tuple], int]:
        if end not in self._rows:
            p = self.tmp / "prefix.bin"
            p.write_bytes(self.data[:end])
            got, err, records = read(p, 1 << 20)
            assert err is None, err
            self._rows[end] = (got, records)
        return self._rows[end]


def check_cut(truth: Truth, path: Path, available: int, window: int, *, gz: bool, complete: bool) -> None:
    """``path`` holds the first ``available`` stream bytes of ``truth.data`` (cut there, or damaged)."""
    got, err, records = read(path, window)
    head = truth.intact_prefix(available)
    if head == 0 or (truth.data[:4] != b"\x0a\x0d\x0d\x0a" and head < 24):
        assert err is not None and got == []  # not even a header: refused at open
        return
    want, want_records = truth.rows(head)
    assert got == want, (available, window)
    assert records == want_records
    if complete:
        assert err is None
        return
    assert err is not None, available
    if gz:
        # The gzip damage, at the decompressed offset reached, not "a record runs past the end".
        assert err.decompressed and err.offset == available, (available, str(err))
        assert "gzip" in err.expected or "deflate" in err.expected, str(err)
    elif head == available:
        raise AssertionError(f"a cut at a record boundary is an intact file, got {err}")
    else:
        assert err.offset == head and not err.decompressed, (available, head, str(err))


CONTAINERS = {
    "pcap-le": lambda: synthetic_pcap(False),
    "pcap-be": lambda: synthetic_pcap(True),
    "pcapng": synthetic_pcapng,
}


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_every_cut_of_an_uncompressed_capture(tmp_path: Path, kind: str) -> None:
    data = CONTAINERS[kind]()
    truth = Truth(tmp_path, data)
    p = tmp_path / "cut.bin"
    for n in range(1, len(data) + 1):
        p.write_bytes(data[:n])
        window = 64 if n % 3 == 0 else 1 << 20  # windows smaller than a record too
        intact = n in truth.ends
        check_cut(truth, p, n, window, gz=False, complete=intact)


def _available(z: bytes) -> int:
    """Bytes zlib can decompress from the (possibly cut) gzip data ``z`` (one member)."""
    if len(z) < 10:
        return 0
    try:
        return len(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(z))
    except zlib.error:
        raise AssertionError("a cut, not corrupt, stream") from None


@pytest.mark.parametrize("kind", sorted(CONTAINERS))
def test_every_cut_of_a_gzip_capture(tmp_path: Path, kind: str) -> None:
    data = CONTAINERS[kind]()
    z = gzip.compress(data, compresslevel=1, mtime=0)  # level 1: many short blocks, more cut shapes
    truth = Truth(tmp_path, data)
    p = tmp_path / "cut.gz"
    for k in range(1, len(z) + 1):
        p.write_bytes(z[:k])
        check_cut(truth, p, _available(z[:k]), 64 if k % 2 else 1 << 20, gz=True, complete=k == len(z))


def test_cuts_of_a_real_gzip_capture_larger_than_the_window(tmp_path: Path) -> None:
    """gnutella.pcap (640 kB, 3905 records) gzipped, cut at sampled points, read through 4 kB windows."""
    data = (BUNDLED / "gnutella.pcap").read_bytes()
    z = gzip.compress(data, mtime=0)
    truth = Truth(tmp_path, data)
    p = tmp_path / "cut.gz"
    for k in [*range(11, len(z), len(z) // 23), len(z) - 8, len(z) - 3, len(z) - 1]:
        p.write_bytes(z[:k])
        check_cut(truth, p, _available(z[:k]), 4096, gz=True, complete=False)
    # Cut inside the trailer: every record is there, and the error says the trailer is missing.
    _, err, records = read(p, 4096)
    assert records == 3905 and err is not None and "8-byte gzip member trailer" in err.expected


@pytest.mark.parametrize("name", ["gnutella.pcap", "sites.pcapng", "dhcp_big_endian.pcapng"])
def test_cuts_of_real_uncompressed_captures(tmp_path: Path, name: str) -> None:
    data = (BUNDLED / name).read_bytes()
    truth = Truth(tmp_path, data)
    p = tmp_path / "cut.bin"
    step = max(1, len(data) // 23)
    for n in [*range(1, len(data), step), *(e - 1 for e in truth.ends[-3:]), *truth.ends[-3:]]:
        p.write_bytes(data[:n])
        check_cut(truth, p, n, 4096, gz=False, complete=n in truth.ends)
