"""``analyze``'s warm-up loads every kernel signature the run will call, so that the first run after
installation does not count compilation in its "Elapsed": the decoder with the optional columns (a flows
task: 12 s of "Elapsed" on the first run before), and the tasks' kernels for weighted rows
(``--flow-export``: packets, octets and first times of flow records are arguments of other types than a
capture's packets: 4-7 s). Each check runs in a fresh process: what an earlier test compiled or loaded
must not answer for the warm-up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_CHECK = """
import os, sys
os.environ.setdefault("SMTP_PORT", "0")
os.environ.setdefault("CLICKHOUSE_PORT", "0")
import numba
from netspectra.config.loader import load_config
from netspectra.offline.warmup import warm_up

def given(dispatcher, arg):
    # whether a signature of the dispatcher has the optional argument given (not None)
    at = list(dispatcher.py_func.__code__.co_varnames).index(arg)
    return any(
        len(sig) > at and not isinstance(sig[at], (numba.types.NoneType, numba.types.Omitted))
        for sig in dispatcher.signatures
    )

cfg = load_config(sys.argv[1], log_warnings=False)
"""


def _run(body: str) -> str:
    r = subprocess.run(
        [sys.executable, "-c", _CHECK + textwrap.dedent(body), str(REPO / "configs" / "config.yaml")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip()


def test_flow_export_warm_up_loads_the_tasks_weighted_kernels() -> None:
    got = _run("""
        from netspectra.tasks import exact_kernels
        warm_up(cfg, formats=("pcap",), exports=True)
        print(given(exact_kernels.update_flows, "packets"))
    """)
    assert got == "True"


def test_warm_up_reads_with_the_optional_columns_a_flows_task_needs() -> None:
    got = _run("""
        from netspectra.capture import decode
        from netspectra.engine.kind import columns_needed
        from netspectra.flows.kind import with_flows_task
        cfg = with_flows_task(cfg)
        assert columns_needed(cfg)
        warm_up(cfg, formats=("pcap",))
        print(given(decode.decode_records, "extras"))
    """)
    assert got == "True"
