#!/usr/bin/env python3
"""Regenerate the golden files of tests/golden/ and check them against tshark.

Usage: python tools/make_golden.py [CAPTURE ...]   (default: every capture in tests/data/captures)

For every capture it writes ``tests/golden/expected/<capture>.flows.csv`` (NetSpectra's per-five-tuple
flows: key, packets, bytes, first and last timestamp) and ``<capture>.summary.json`` (the reader's
accounting: packets, skipped and truncated by reason, the damage message). Before writing, it
compares packets and bytes of every flow with the independent truth of ``tools/flow_truth.py``
(tshark) and refuses to write a golden file that disagrees, unless the capture is listed in
``KNOWN_DIFFERENCES`` below with the reason. The golden tests then pin NetSpectra to these files.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "golden"))

from goldenlib import golden_rows, golden_summary  # noqa: E402

from flow_truth import flows_of  # noqa: E402

CAPTURES = ROOT / "tests" / "data" / "captures"
EXPECTED = ROOT / "tests" / "golden" / "expected"

#: Flows where NetSpectra and tshark legitimately disagree, and why: capture -> (reason, flow keys).
#: Every other flow of the capture must still match exactly.
KNOWN_DIFFERENCES: dict[str, tuple[str, set[tuple[str, str, int, int, int]]]] = {
    "mpls-6in6-broken.pcap.gz": (
        "fuzzed frames 417, 427 (MPLS stacks of 23 and 22 labels) and 1088 (bottom label 14, OAM alert):"
        " Wireshark gives up on the stack, NetSpectra pops to the bottom of stack and finds an IPv4"
        " header there, as a router would",
        {("0.0.0.0", "0.53.0.0", 0, 0, 255), ("143.9.0.0", "0.98.0.237", 0, 0, 46)},
    ),
}


def check_against_tshark(capture: Path, rows: list[dict]) -> list[str]:
    """Differences between our flows and tshark's, as readable lines (empty when equal)."""
    truth, _non_ip, _frames = flows_of(str(capture))
    ours = {
        (r["SrcIP"], r["DstIP"], int(r["SrcPort"]), int(r["DstPort"]), int(r["Protocol"])): (
            int(r["PacketCount"]),
            int(r["ByteCount"]),
        )
        for r in rows
    }
    theirs = {k: tuple(v) for k, v in truth.items()}
    allowed = KNOWN_DIFFERENCES.get(capture.name, ("", set()))[1]
    diffs = []
    for k in sorted((set(ours) | set(theirs)) - allowed, key=str):
        if ours.get(k) != theirs.get(k):
            diffs.append(f"  {k}: netspectra {ours.get(k)} tshark {theirs.get(k)}")
    return diffs


def main(argv: list[str]) -> int:
    if shutil.which("tshark") is None:
        print("make_golden.py needs tshark (apt-get install tshark)", file=sys.stderr)
        return 2
    captures = [Path(a) for a in argv] or sorted(
        p for p in CAPTURES.iterdir() if p.name not in ("SOURCES.tsv", "README.md")
    )
    EXPECTED.mkdir(parents=True, exist_ok=True)
    failed = 0
    for cap in captures:
        rows = golden_rows(cap)
        summary = golden_summary(cap)
        diffs = check_against_tshark(cap, rows) if summary["error"] is None or rows else []
        if diffs:
            failed += 1
            print(f"DIFFERS {cap.name} ({len(diffs)} flows):", *diffs[:20], sep="\n")
            continue
        with open(EXPECTED / f"{cap.name}.flows.csv", "w", newline="") as fh:
            w = csv.DictWriter(
                fh, fieldnames=list(rows[0].keys()) if rows else ["SrcIP"], lineterminator="\n"
            )
            w.writeheader()
            w.writerows(rows)
        (EXPECTED / f"{cap.name}.summary.json").write_text(
            json.dumps(summary, indent=1, sort_keys=True) + "\n"
        )
        note = (
            f" (known difference: {KNOWN_DIFFERENCES[cap.name][0]})" if cap.name in KNOWN_DIFFERENCES else ""
        )
        print(f"ok      {cap.name}: {len(rows)} flows, {summary['packets']} packets{note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
