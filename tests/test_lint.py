"""The code base stays ruff-clean (lint and format), as the project's style requires.

The check is the README's development command, ``ruff check . && ruff format --check .``, run with the
ruff version the ``test`` extra pins (newer ruff releases add rules and format Python blocks in
Markdown, so an unpinned ruff would make the same tree pass or fail depending on the day).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -e '.[test]')")
@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff(args: list[str]) -> None:
    out = subprocess.run(["ruff", *args, "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
