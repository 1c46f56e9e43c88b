"""Golden tests: every bundled capture in, the expected per-flow CSV and accounting out.

The expected files are written by ``tools/make_golden.py``, which refuses to write one that
disagrees with tshark; ``test_matches_tshark`` re-checks that agreement wherever tshark exists.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
from goldenlib import golden_rows, golden_summary

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "tests" / "data" / "captures"
EXPECTED = Path(__file__).parent / "expected"
ALL = sorted(p.name for p in CAPTURES.iterdir() if p.suffix not in (".tsv", ".md"))


def test_every_capture_has_a_golden_file() -> None:
    missing = [n for n in ALL if not (EXPECTED / f"{n}.summary.json").exists()]
    assert not missing, f"run tools/make_golden.py for {missing}"


@pytest.mark.parametrize("name", ALL)
def test_flows_match_golden(name: str) -> None:
    with open(EXPECTED / f"{name}.flows.csv", newline="") as fh:
        expected = list(csv.DictReader(fh))
    assert golden_rows(CAPTURES / name) == expected


@pytest.mark.parametrize("name", ALL)
def test_summary_matches_golden(name: str) -> None:
    expected = json.loads((EXPECTED / f"{name}.summary.json").read_text())
    assert golden_summary(CAPTURES / name) == expected


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)")
@pytest.mark.parametrize("name", ALL)
def test_matches_tshark(name: str) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    from make_golden import check_against_tshark

    rows = golden_rows(CAPTURES / name)
    assert check_against_tshark(CAPTURES / name, rows) == []
