"""The command's fast exit (:func:`netspectra.process.exit_now`, :func:`netspectra.cli.main.run`): what a
normal exit does for a command's output still happens; only the interpreter's teardown is skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CAPTURE = Path(__file__).parents[1] / "data" / "captures" / "gnutella.pcap"


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )


PROGRAM = """
import atexit, sys, threading, time
from pathlib import Path

class Finalized:
    def __del__(self):
        Path("finalized").write_text("yes")

keep = Finalized()  # freed only by the interpreter's own teardown
atexit.register(lambda: Path("atexit").write_text("ran"))

def late():
    time.sleep(0.3)
    Path("thread").write_text("joined")

threading.Thread(target=late).start()
from concurrent.futures import ThreadPoolExecutor
idle = ThreadPoolExecutor(2)  # never shut down: its idle workers are stopped by threading's exit hook
idle.submit(time.sleep, 0.01).result()
sys.stdout.write("buffered, no newline")
{before}
from netspectra.process import exit_now
exit_now(3)
"""


def test_exit_now_joins_threads_runs_exit_handlers_flushes_and_skips_teardown(tmp_path) -> None:
    out = _run(PROGRAM.format(before=""), tmp_path)
    assert out.returncode == 3
    assert out.stdout == "buffered, no newline"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "joined"
    assert not (tmp_path / "finalized").exists()  # the interpreter's teardown was skipped


def test_exit_now_exits_normally_while_an_embedded_clickhouse_is_loaded(tmp_path) -> None:
    pytest.importorskip("chdb")
    out = _run(PROGRAM.format(before="import chdb"), tmp_path)
    assert out.returncode == 3
    assert out.stdout == "buffered, no newline"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "finalized").read_text() == "yes"  # the normal teardown


def test_command_statuses_and_outputs_through_the_entry_point(tmp_path) -> None:
    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "netspectra", *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )

    ok = command("analyze", str(CAPTURE), "--out", "out", "--top", "1")
    assert ok.returncode == 0, ok.stderr
    assert "Packets" in ok.stdout and "3,905" in ok.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "cm_src_left.parquet",
        "per_five_tuple.parquet",
        "ss_src_dst.parquet",
    ]
    assert command("analyze", str(tmp_path / "missing.pcap")).returncode == 1
    assert command("analyze", "--no-such-option").returncode == 2
    version = command("--version")
    assert version.returncode == 0 and version.stdout.startswith("netspectra ")


def test_run_reports_a_message_exit_as_python_does(tmp_path) -> None:
    code = (
        "import sys\n"
        "import netspectra.cli.main as m\n"
        "def fail():\n    sys.exit('cannot go on')\n"
        "m.main = fail\n"
        "m.run()\n"
    )
    out = _run(code, tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == "cannot go on"


def test_a_profiled_command_still_writes_its_profile(tmp_path) -> None:
    """``python -m cProfile -o F -m netspectra ...`` writes F after the program returns: under a profiler
    the command exits the normal way."""
    import pstats

    out = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(tmp_path / "p.prof"), "-m", "netspectra", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert pstats.Stats(str(tmp_path / "p.prof")).total_calls > 0
