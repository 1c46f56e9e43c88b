"""Implausible wire lengths (issue 12): a record claiming more than 1 MiB is damage, not 4 GB of traffic.

The rule lives in the decoder kernel (``IMPLAUSIBLE_LENGTH``) and in :meth:`CaptureStats.add_records`
(byte totals), which capture files and the live AF_PACKET ring share; these tests drive it through
pcap, pcapng (EPB and SPB), a synthetic TPACKET_V3 ring, the flows of an exact task and ``analyze``.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netspectra.capture import status as st
from netspectra.capture.decode import decode_packet_bytes, decode_records
from netspectra.capture.decode_ref import decode_one
from netspectra.capture.reader import CaptureReader
from netspectra.capture.stats import CaptureStats
from netspectra.offline.analyzer import analyze_files
from netspectra.tasks.exact import ExactTask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_capture_container import epb, idb, pcap_header, pcap_record, shb, spb, write
from test_capture_reader import A, B, C, eth, udp4

BOGUS = 4_093_509_168  # the wire length of the damaged records seen in a real mixed capture
FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")


def mixed_pcap() -> tuple[bytes, int]:
    """Five records, two of them claiming 4 GB; returns (file, sum of the plausible wire lengths)."""
    good1, good2, good3 = eth(udp4(A, B, 1, 2)), eth(udp4(B, C, 3, 4)), eth(udp4(A, C, 5, 6))
    data = (
        pcap_header()
        + pcap_record(1, 0, good1)
        + pcap_record(2, 0, eth(udp4(A, B, 1, 2)), wirelen=BOGUS)  # same flow as good1: must not add
        + pcap_record(3, 0, good2, wirelen=1500)
        + pcap_record(4, 0, good3[:20], wirelen=BOGUS)
        + pcap_record(5, 0, good3, wirelen=st.MAX_WIRE_LENGTH)  # the limit itself is plausible
    )
    return data, len(good1) + 1500 + st.MAX_WIRE_LENGTH


@pytest.mark.parametrize("gz", [False, True])
def test_pcap_records_with_a_4gb_wire_length_are_damage_not_bytes(tmp_path: Path, gz: bool) -> None:
    data, plausible_bytes = mixed_pcap()
    p = write(tmp_path, "mixed.pcap", data, gz=gz)
    r = CaptureReader(p)
    batch = r.read_all()
    s = r.stats
    assert s.records == 5 and s.implausible_length == 2 == s.by_status["implausible_length"]
    assert s.wire_bytes == plausible_bytes  # not plausible_bytes + 2 * 4 GB
    assert s.ip_packets == len(batch) == 3 and s.ip_bytes == plausible_bytes
    assert s.ip_packets + s.skipped == s.records
    assert s.snaplen_cut == 2  # the 1500-byte and the 1 MiB records; damaged ones are not "cut"
    assert batch.length.tolist() == [len(eth(udp4(A, B, 1, 2))), 1500, st.MAX_WIRE_LENGTH]
    assert BOGUS not in batch.length.tolist()


def test_flows_never_see_an_implausible_length(tmp_path: Path) -> None:
    p = write(tmp_path, "mixed.pcap", mixed_pcap()[0])
    task = ExactTask("t", FIVE)
    result = analyze_files([p], [task])
    snap = task.snapshot()
    assert snap.total_packets == 3 and snap.total_bytes == result.stats.wire_bytes
    rows = snap.to_arrow().to_pylist()
    ab = [r for r in rows if (r["SrcPort"], r["DstPort"]) == (1, 2)]
    assert len(ab) == 1 and ab[0]["PacketCount"] == 1  # the damaged copy of this flow is not in it
    assert max(r["ByteCount"] for r in rows) <= st.MAX_WIRE_LENGTH


def test_pcapng_epb_and_spb_lengths_follow_the_same_rule(tmp_path: Path) -> None:
    frame = eth(udp4(A, B, 7, 8))
    data = (
        shb()
        + idb(1)
        + epb(0, 1, frame)
        + epb(0, 2, frame, wirelen=st.MAX_WIRE_LENGTH + 1)
        + spb(frame, wirelen=0xFFFFFFFF)
        + spb(frame)
    )
    r = CaptureReader(write(tmp_path, "x.pcapng", data))
    batch = r.read_all()
    assert len(batch) == 2 and r.stats.implausible_length == 2
    assert r.stats.wire_bytes == 2 * len(frame) == int(batch.length.sum())


def test_kernel_and_reference_agree_at_the_limit() -> None:
    frame = eth(udp4(A, B, 7, 8))
    for wire in (len(frame), st.MAX_WIRE_LENGTH, st.MAX_WIRE_LENGTH + 1, BOGUS, 0xFFFFFFFF):
        ref = decode_one(frame, 1, wire)
        assert decode_packet_bytes(frame, 1, wire) == ref
        assert (ref[0] == st.IMPLAUSIBLE_LENGTH) == (wire > st.MAX_WIRE_LENGTH), wire
    # Whatever the bytes are (even a link type nothing decodes), the length decides first.
    assert (
        decode_one(b"", 999, BOGUS)
        == (st.IMPLAUSIBLE_LENGTH, 0, None)
        == decode_packet_bytes(b"", 999, BOGUS)
    )
    assert (
        st.NAMES[st.IMPLAUSIBLE_LENGTH] == "implausible_length" and st.IMPLAUSIBLE_LENGTH in st.SKIPPED_CODES
    )


def test_stats_add_records_excludes_implausible_lengths_from_byte_totals() -> None:
    s = CaptureStats()
    caplen = np.array([60, 60, 60], np.uint32)
    wirelen = np.array([60, BOGUS, 2000], np.uint32)
    s.add_records(caplen, wirelen, np.arange(3, dtype=np.int64), np.ones(3, np.uint16))
    assert (s.records, s.wire_bytes, s.captured_bytes, s.snaplen_cut) == (3, 2060, 180, 1)
    d = s.as_dict()
    assert d["wire_bytes"] == 2060 and d["implausible_length"] == 0  # counted by the decoder, not here
    json.dumps(d)  # plain values only


# --- the live path: the AF_PACKET ring feeds the same kernel and the same stats --------------------


def tpacket_v3_block(frames: list[tuple[bytes, int, int]], block_size: int = 1 << 14) -> np.ndarray:
    """One TPACKET_V3 block handed to user space, holding ``(frame, tp_len, tp_status)`` packets."""
    ring = np.zeros(block_size, np.uint8)
    first = 48
    struct.pack_into("<IIIII", ring, 0, 1, 0, 1, len(frames), first)  # version, priv, USER, n, first
    p = first
    for i, (f, tp_len, status) in enumerate(frames):
        slot = 68 + ((len(f) + 15) & ~15)
        nxt = 0 if i == len(frames) - 1 else slot
        struct.pack_into("<IIIIIIHHIIHH", ring, p, nxt, 1000 + i, 0, len(f), tp_len, status, 68, 68,
                         0, 0x0064, 0x8100, 0)  # fmt: skip
        ring[p + 68 : p + 68 + len(f)] = np.frombuffer(f, np.uint8)
        p += slot
    return ring


def test_live_ring_lengths_are_judged_like_a_files() -> None:
    from netspectra.capture.afpacket import walk_blocks

    frame = eth(udp4(A, B, 9, 10))
    vlan_valid = 1 | 0x10 | 0x40  # TP_STATUS_USER | VLAN_VALID | VLAN_TPID_VALID
    ring = tpacket_v3_block(
        [
            (frame, len(frame), 1),
            (frame, BOGUS, 1),
            (frame, 0xFFFFFFFE, vlan_valid),  # +4 for the stripped tag must not wrap to 2
            (frame, len(frame), vlan_valid),
        ]
    )
    rec = [np.empty(8, t) for t in (np.int64, np.uint32, np.uint32, np.int64, np.uint16, np.int64)]
    n, blocks = walk_blocks(ring, ring.shape[0], 1, 0, 8, 1, *rec)
    assert (n, blocks) == (4, 1)
    off, caplen, wirelen, ts, lt, _vlan = rec
    assert wirelen[:n].tolist() == [len(frame), BOGUS, 0xFFFFFFFF, len(frame) + 4]

    stats = CaptureStats()
    out = [np.empty(n, np.int64), np.empty((n, 16), np.uint8), np.empty((n, 16), np.uint8)]
    out += [np.empty(n, np.uint16), np.empty(n, np.uint16), np.empty(n, np.uint8), np.empty(n, np.uint32)]
    status, aux = np.empty(n, np.uint8), np.empty(n, np.uint16)
    k = decode_records(ring, off, caplen, wirelen, ts, lt, n, *out, status, aux)
    stats.add_records(caplen[:n], wirelen[:n], ts[:n], lt[:n])
    stats.add_decoded(status, aux, out[6][:k])
    assert k == 2 and status.tolist() == [st.OK, st.IMPLAUSIBLE_LENGTH, st.IMPLAUSIBLE_LENGTH, st.OK]
    assert stats.implausible_length == 2 and stats.wire_bytes == 2 * len(frame) + 4 == stats.ip_bytes


# --- what a user sees ------------------------------------------------------------------------------


def test_analyze_reports_implausible_lengths_in_the_table_and_json(tmp_path: Path) -> None:
    from netspectra.cli import main as cli

    p = write(tmp_path, "mixed.pcap", mixed_pcap()[0])
    runner = CliRunner()
    res = runner.invoke(cli.app, ["analyze", str(p), "--json", "--top", "0"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["implausible_length"] == 2 and doc["by_status"]["implausible_length"] == 2
    assert doc["bytes"] == mixed_pcap()[1] == doc["tasks"][0]["bytes"]
    assert doc["packets"] == doc["ip_packets"] + doc["skipped"] == 5

    res = runner.invoke(cli.app, ["analyze", str(p), "--top", "0"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("│ implausible length"))
    assert "above 1 MiB" in line and line.rstrip(" │").endswith("2")
    summary = next(ln for ln in res.stdout.splitlines() if ln.startswith("Damaged: implausible length"))
    assert summary.endswith(" 2")
