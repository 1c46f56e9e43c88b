"""Every input that ever broke an invariant, replayed on every test run (not only under ``-m fuzz``).

``tests/data/fuzz/corpus.tsv`` lists each file with the window to read it through, what the reader
must give (records, IP packets, the error's expected text or nothing, warnings), who found it and
what it found. Each is also put through every fuzz invariant (:func:`fuzzlib.check_capture` for the
uncompressed bytes, :func:`fuzzlib.read` at two window sizes for gzip).
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzlib import CORPUS, check_capture, read

with open(CORPUS / "corpus.tsv", newline="") as fh:
    ENTRIES = list(csv.DictReader(fh, delimiter="\t"))


def test_every_corpus_file_is_listed() -> None:
    listed = {e["file"] for e in ENTRIES}
    present = {p.name for p in CORPUS.iterdir() if p.name not in ("corpus.tsv", "README.md")}
    assert listed == present
    assert all(len(e["what_it_found"]) > 40 and e["found_by"] for e in ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["file"])
def test_corpus_file(entry: dict[str, str], tmp_path: Path) -> None:
    path = CORPUS / entry["file"]
    got = read(path, window=int(entry["window"]))
    assert got.stats is not None
    assert (got.stats.records, got.stats.ip_packets) == (int(entry["records"]), int(entry["ip_packets"]))
    assert len(got.stats.warnings) == int(entry["warnings"])
    if entry["error"]:
        assert got.error is not None and entry["error"] in str(got.error), got.error
    else:
        assert got.error is None, got.error
    other = read(path, window=1 << 20 if int(entry["window"]) < 1 << 20 else 64)
    assert other.rows == got.rows and other.error_key() == got.error_key()
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError):
            return  # damaged gzip: checked above; its decompressed prefix is covered by the cut tests
    check_capture(data, tmp_path, cut=len(data) // 2)
