"""pcapng ``if_tsoffset`` (issue 12): signed seconds added as Wireshark does, clamped, never wrapped.

Before: an offset of 2**62 s raised OverflowError (a traceback that also lost the other files of the
command) and an offset pushing a time past int64 ns wrapped it to 1962. Now every time that int64
nanoseconds cannot hold is clamped to +-(2**63 - 1) and counted in ``ts_overflow``; negative offsets
give earlier times (before 1970 if they go there), as in Wireshark.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netspectra.capture import pcapng as ng
from netspectra.capture.reader import CaptureReader
from netspectra.offline.analyzer import analyze_files
from netspectra.tasks.exact import ExactTask

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_capture_container import epb, idb, shb, write
from test_capture_reader import A, B, eth, udp4

MAX = 2**63 - 1
FRAME = eth(udp4(A, B, 1, 2))


def exact(ts_ns: int, off_s: int) -> int:
    """The specification: the exact sum, clamped to [-(2**63 - 1), 2**63 - 1]."""
    return min(max(ts_ns + off_s * 10**9, -MAX), MAX)


def test_add_offset_kernel_is_exact_at_every_edge() -> None:
    rnd = random.Random(12)
    lim = ng.MAX_TSOFFSET_S
    edges_ts = [0, 1, 10**9 - 1, 10**9, MAX // 2, MAX - 10**9, MAX - 2, 854_775_806, 145_224_193, 145_224_192]
    edges_off = [
        1,
        -1,
        9_223_372_036,
        -9_223_372_036,
        9_223_372_037,
        -9_223_372_037,
        -9_223_372_038,
        lim,
        -lim,
    ]
    cases = [(t, o) for t in edges_ts for o in edges_off]
    cases += [(rnd.randrange(MAX), rnd.randrange(-(2**35), 2**35)) for _ in range(20_000)]
    cases += [(rnd.randrange(MAX), rnd.randrange(-lim, lim + 1)) for _ in range(2_000)]
    for t, o in cases:
        assert int(ng._add_offset(np.int64(t), np.int64(o))) == exact(t, o), (t, o)


def offset_capture(offsets: list[int], units: int = 1_700_000_000_000_000) -> bytes:
    """One interface per offset (microsecond resolution), one packet each at ``units``."""
    data = shb() + b"".join(idb(1, tsoffset=o) for o in offsets)
    return data + b"".join(epb(i, units, FRAME) for i in range(len(offsets)))


def test_offsets_from_harmless_to_absurd(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    t = 1_700_000_000 * 10**9
    offsets = [0, 3600, -3600, -1_700_000_000 - 10, -9_000_000_000, 2**62, -(2**62), 2**63 - 1, -(2**63)]
    p = write(tmp_path, "off.pcapng", offset_capture(offsets))
    r = CaptureReader(p)
    batch = r.read_all()
    want = [exact(t, o) for o in offsets]
    assert batch.ts_ns.tolist() == want
    assert want[3] == -10 * 10**9  # ten seconds before the epoch, as Wireshark shows it
    assert want[4] < 0 and want[5:] == [MAX, -MAX, MAX, -MAX]
    assert r.stats.ts_overflow == 4
    assert r.stats.first_ts_ns == -MAX and r.stats.last_ts_ns == MAX
    assert sum("if_tsoffset" in m for m in caplog.messages) == 4  # one line per absurd interface
    assert any("4 packet timestamps outside the int64-nanosecond range" in m for m in caplog.messages)


def test_offsets_kernel_agrees_with_reference() -> None:
    rnd = random.Random(5)
    offsets = [rnd.choice([0, 1, -1, 2**40, -(2**40), rnd.randrange(-(2**34), 2**34)]) for _ in range(8)]
    body = b"".join(
        epb(rnd.randrange(8), rnd.choice([0, 2**63 // 1000 - 5, rnd.randrange(2**60)]), FRAME)
        for _ in range(500)
    )
    w = ng.PcapngWalker("x")
    w.section_interfaces = [ng.Interface(1, 0, 6, o) for o in offsets]
    w._rebuild_interface_arrays()
    buf = np.frombuffer(body, np.uint8)
    got, want = [], []
    for fn, into in ((ng.walk_pcapng_blocks, got), (ng.walk_pcapng_blocks_py, want)):
        rec = ng.RecordArrays(600)
        counters = np.zeros(ng.N_COUNTERS, np.int64)
        n, pos, code, _ = fn(
            buf, 0, False, w._lt, w._pow2, w._mul, w._div, w._off, w._snap, 8, 0, 600,
            rec.off, rec.caplen, rec.wirelen, rec.ts_ns, rec.linktype, counters,
        )  # fmt: skip
        into.extend([n, pos, code, rec.ts_ns[:n].tolist(), counters.tolist()])
    assert got == want and got[0] == 500 and got[4][ng.CTR_TS_OVERFLOW] > 0


def test_other_files_of_the_command_are_still_analysed(tmp_path: Path) -> None:
    from netspectra.cli import main as cli

    huge = write(tmp_path, "huge.pcapng", offset_capture([2**62]))
    wrap = write(tmp_path, "wrap.pcapng", offset_capture([9_000_000_000]))
    good = Path(__file__).resolve().parents[1] / "data" / "captures" / "mdns.pcap"
    task = ExactTask("t", ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"))
    result = analyze_files([huge, good, wrap], [task])
    assert [f.error for f in result.files] == [None, None, None]
    assert result.stats.records == 1 + 292 + 1 and result.stats.ts_overflow == 2

    res = CliRunner().invoke(cli.app, ["analyze", str(huge), str(good), str(wrap), "--json", "--top", "0"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["packets"] == 294 and doc["ts_overflow"] == 2 and doc["last_ts_ns"] == MAX


@pytest.mark.shared
def test_repro_tsoffset_files(shared_data: Path) -> None:
    repro = shared_data / "repro"
    for name, ts, overflow in [
        ("ng_tsoffset_huge.pcapng", MAX, 1),
        ("ng_tsoffset_wrap.pcapng", MAX, 1),  # was -223372036854781616 (1962)
        ("ng_tsoffset_neg.pcapng", -8_999_999_999_999_999_000, 0),  # 1684, as Wireshark shows it
    ]:
        r = CaptureReader(repro / name)
        batch = r.read_all()
        assert batch.ts_ns.tolist() == [ts] and r.stats.ts_overflow == overflow, name
