"""What the fuzz tests share: settings, seed captures, input builders and the invariants they check.

The invariants are functions of an input, so that the fuzz tests (hypothesis) and the replay of the
crash corpus in ``tests/data/fuzz`` check exactly the same things:

* the capture reader raises nothing but :class:`CaptureError` (at open or while iterating), and
  no input takes more than the per-example deadline of 30 s (a hang shows up as a deadline failure);
* accounting holds: ``ip_packets + skipped == records``, the rows handed out are ``ip_packets``,
  ``ip_bytes`` is the sum of their lengths, no length is above 1 MiB, ``wire_bytes`` is the sum of
  every record's wire length up to 1 MiB (read back through ``records()``);
* the window size changes nothing (64-byte windows give what 1 MiB windows give);
* gzip of the input gives the same packets, statistics and error as the input itself;
* a cut input gives a prefix of the whole input's packets (every packet before the damage).

Run length: ``NETSPECTRA_FUZZ_EXAMPLES`` (default: the short run of the test suite, derandomized
so that it is reproducible); set it to run longer with fresh random inputs, e.g.
``NETSPECTRA_FUZZ_EXAMPLES=20000 python -m pytest -m fuzz tests/fuzz``.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings

from netspectra.batch import PacketBatch
from netspectra.capture import status as st
from netspectra.capture.errors import CaptureError
from netspectra.capture.reader import CaptureReader
from netspectra.capture.stats import CaptureStats

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "data" / "captures"
CORPUS = ROOT / "tests" / "data" / "fuzz"

_LONG = os.environ.get("NETSPECTRA_FUZZ_EXAMPLES")


def fuzz_settings(short_examples: int) -> settings:
    """``short_examples`` derandomized examples; ``NETSPECTRA_FUZZ_EXAMPLES`` random ones if set."""
    return settings(
        max_examples=int(_LONG) if _LONG else short_examples,
        derandomize=not _LONG,
        # per input: a hang fails here. Far above the few ms an input takes, and above what a loaded
        # machine makes of them (an example of test_mutated_real_captures took 3.9 s beside a full
        # suite and a benchmark on the 2-core VM: a 2 s deadline failed there, a timing, not a defect)
        deadline=timedelta(seconds=30),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
        database=None if not _LONG else settings.default.database,
    )


# --- seeds: real captures cut at a record/block boundary to a few kB ------------------------------

SEED_NAMES = (
    "gnutella.pcap",  # little-endian µs pcap, Ethernet
    "pptp.pcap",  # big-endian pcap, GRE
    "dhcp-nanosecond.pcap",  # ns pcap
    "linux_dlt_sll2.pcap",  # SLL2
    "mpls-in-vlan.pcap",
    "ipv6_ext_headers.pcap",
    "dhcp_big_endian.pcapng",  # big-endian pcapng
    "multisection_BE_then_LE.pcapng",  # two sections of different byte order
    "sites.pcapng",  # 22 interfaces, mixed if_tsresol
    "wireguard_is_pcapng_ns.pcap",  # pcapng, ns resolution
    "ipv6_fragments.pcapng",
)


def boundaries(data: bytes) -> list[int]:
    """Offsets where a record (pcap) or block (pcapng) of ``data`` ends, by a plain parse."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        ends, pos, bo = [], 0, "<"
        while pos + 12 <= len(data):
            if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
                bo = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            blen = struct.unpack_from(bo + "I", data, pos + 4)[0]
            if blen < 12 or pos + blen > len(data):
                break
            pos += blen
            ends.append(pos)
        return ends
    bo = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    ends, pos = [24], 24
    while pos + 16 <= len(data):
        end = pos + 16 + struct.unpack_from(bo + "I", data, pos + 8)[0]
        if end > len(data):
            break
        ends.append(end)
        pos = end
    return ends


def seeds(limit: int = 6000) -> list[bytes]:
    """Every seed capture cut at its last record/block boundary within ``limit`` bytes."""
    out = []
    for name in SEED_NAMES:
        data = (CAPTURES / name).read_bytes()
        ends = [e for e in boundaries(data) if e <= limit]
        out.append(data[: ends[-1]])
    return out


# --- running the reader and checking one outcome ----------------------------------------------------


def batch_rows(batch: PacketBatch) -> list[tuple]:
    return list(
        zip(
            batch.ts_ns.tolist(),
            map(bytes, batch.src_ip),
            map(bytes, batch.dst_ip),
            batch.src_port.tolist(),
            batch.dst_port.tolist(),
            batch.protocol.tolist(),
            batch.length.tolist(),
            strict=True,
        )
    )


@dataclass
class Outcome:
    """What reading one file gave: packet rows, statistics (``None`` if refused at open), error."""

    rows: list[tuple]
    stats: CaptureStats | None
    error: CaptureError | None

    def error_key(self) -> tuple | None:
        e = self.error
        return None if e is None else (e.offset, e.expected)


def read(path: Path, *, window: int = 1 << 20, batch_size: int = 7) -> Outcome:
    """Read ``path`` to its end or its damage; any exception but CaptureError propagates (a failure)."""
    try:
        reader = CaptureReader(path, window_bytes=window, batch_size=batch_size)
    except CaptureError as exc:
        _check_error(exc, path)
        return Outcome([], None, exc)
    got: list[tuple] = []
    error = None
    try:
        for b in reader:
            b.validate()
            assert 0 < len(b) <= batch_size
            got += batch_rows(b)
    except CaptureError as exc:
        _check_error(exc, path)
        error = exc
    check_accounting(reader.stats, got)
    return Outcome(got, reader.stats, error)


def _check_error(exc: CaptureError, path: Path) -> None:
    msg = str(exc)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    assert exc.offset is None or exc.offset >= 0, msg


def check_accounting(s: CaptureStats, got: list[tuple]) -> None:
    assert s.ip_packets == len(got), (s.ip_packets, len(got))
    assert s.ip_packets + s.skipped == s.records, s
    assert s.ip_bytes == sum(r[6] for r in got)
    assert all(r[6] <= st.MAX_WIRE_LENGTH for r in got), "an implausible length reached a batch"
    assert s.ip_bytes <= s.wire_bytes <= s.records * st.MAX_WIRE_LENGTH
    assert sum(s.by_status.values()) == s.records


def check_records_pass(path: Path, whole: Outcome) -> None:
    """``records()`` sees the same records, and ``wire_bytes`` is their plausible wire lengths."""
    if whole.stats is None:
        return
    reader = CaptureReader(path)
    n, plausible = 0, 0
    try:
        for chunk in reader.records(max_records=5):
            n += chunk.n
            w = chunk.wirelen
            plausible += int(w[w <= st.MAX_WIRE_LENGTH].sum())
    except CaptureError as exc:
        assert (exc.offset, exc.expected) == whole.error_key()
    else:
        assert whole.error is None
    assert n == whole.stats.records and plausible == whole.stats.wire_bytes


def check_capture(data: bytes, tmp: Path, *, cut: int | None = None) -> Outcome:
    """Every invariant of the module docstring for the capture ``data``; returns the whole read."""
    p = tmp / "input.bin"
    p.write_bytes(data)
    whole = read(p)
    small = read(p, window=64, batch_size=3)
    assert small.rows == whole.rows and small.error_key() == whole.error_key()
    check_records_pass(p, whole)

    gz = tmp / "input.gz"
    gz.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
    zipped = read(gz, window=64)
    if data and data[:2] != b"\x1f\x8b":  # (an empty file and an empty gzip stream are told apart;
        # a gzip input gzipped again is one layer short of a capture)
        assert zipped.rows == whole.rows
        assert zipped.error_key() == whole.error_key(), (zipped.error, whole.error)
        assert zipped.error is None or zipped.error.decompressed

    if cut is not None and data:
        c = cut % (len(data) + 1)
        p.write_bytes(data[:c])
        part = read(p, window=128)
        assert part.rows == whole.rows[: len(part.rows)], c
        z = gzip.compress(data, compresslevel=1, mtime=0)
        gz.write_bytes(z[: cut % (len(z) + 1)])
        part = read(gz, window=128)
        assert part.rows == whole.rows[: len(part.rows)], c
    return whole


def check_damaged_gzip(data: bytes, tmp: Path) -> Outcome:
    """Arbitrary (possibly corrupt) gzip bytes: only CaptureError, accounting holds."""
    p = tmp / "input.gz"
    p.write_bytes(data)
    return read(p, window=256)
