"""Shared fixtures: where the bundled and the shared captures are."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the golden helpers are imported by name from tests/golden and tools/
sys.path.insert(0, str(ROOT / "tests" / "golden"))
BUNDLED = ROOT / "tests" / "data" / "captures"
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _cache_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """User caches of this session (the enrichment's compiled tables) in a temporary directory, not in
    the home of whoever runs the tests (subprocesses inherit it)."""
    import os

    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache-home"))


@pytest.fixture(scope="session")
def bundled_captures() -> Path:
    return BUNDLED


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "MANIFEST.tsv").exists():
        pytest.skip("../shared/data is not present (only on the project's machines)")
    return SHARED


@pytest.fixture(scope="session")
def chdb_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one chdb data directory of this test process: chdb can open one data directory per process,
    ever, so every test that uses embedded ClickHouse shares this one (each with its own database)."""
    pytest.importorskip("chdb", reason="chdb is not installed (pip install chdb)")
    return tmp_path_factory.mktemp("chdb")
