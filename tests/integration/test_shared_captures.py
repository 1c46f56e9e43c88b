"""Every capture of the project's shared set (``../shared/data``), where it exists.

Each file is analysed through the CLI in a fresh process (as a user would run it): no traceback,
exit 0, or 1 with a clear message for the damaged ones; record counts equal MANIFEST.tsv; the
captures not bundled in tests/data (the large ones) are compared flow by flow with tshark.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.shared

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
BUNDLED = ROOT / "tests" / "data" / "captures"


def manifest() -> list[dict[str, str]]:
    if not (SHARED / "MANIFEST.tsv").exists():
        return []
    with open(SHARED / "MANIFEST.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


ROWS = manifest()
IDS = [Path(r["file"]).name for r in ROWS]
if not ROWS:
    pytest.skip("../shared/data is not present (only on the project's machines)", allow_module_level=True)


def analyze_json(path: Path) -> tuple[int, dict | None, str]:
    out = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", str(path), "--json", "--top", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    doc = json.loads(out.stdout) if out.stdout.strip() else None
    return out.returncode, doc, out.stderr


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_reads_without_traceback_and_counts_match_manifest(row: dict[str, str]) -> None:
    path = SHARED / row["file"]
    rc, doc, stderr = analyze_json(path)
    assert "Traceback" not in stderr
    if row["error"] or row["format"].startswith("unknown"):
        assert rc == 1, stderr
        assert path.name in stderr and ("byte offset" in stderr or "expected" in stderr)
    else:
        assert rc == 0, stderr
    if row["packets"]:
        assert doc is not None and doc["packets"] == int(row["packets"])
        assert doc["ip_packets"] + doc["skipped"] == doc["packets"]


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
@pytest.mark.parametrize(
    "name", [n for n in IDS if not (BUNDLED / n).exists() and n.endswith((".pcap", ".pcapng", ".gz"))]
)
def test_large_captures_match_tshark(name: str) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from goldenlib import golden_rows

    from make_golden import check_against_tshark

    path = SHARED / "captures" / name
    assert check_against_tshark(path, golden_rows(path)) == []
