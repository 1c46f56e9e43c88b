#!/usr/bin/env python3
"""Where ``netspectra analyze`` spends the time after start-up: in-process timers, trees side by side.

Usage:
    python benchmarks/bench_analyze_phases.py [--tree LABEL=SRC ...] [--runs 8] [--config YAML] [FILE]

Runs ``netspectra analyze FILE --json`` (default: ``benchmarks/_work/zipf_5000000.pcap``) ``--runs`` times
per tree (with ``-c YAML`` when ``--config`` is given), the trees alternating (``--tree main=/work/main/src
--tree mine=src``: each run imports that ``src``; default: this checkout's ``src``), each run in a child
process with timers wrapped around the command's steps, and prints per tree the medians (and minima) of:

  loop        ``analyze_files``: reading, decoding and handing every batch to the engine, to the last submit
  tail        ``Manager.flush``: the workers finishing the last batch after its submit (the submit of the
              last batch itself waits, inside ``loop``, for the batch before it to be applied everywhere)
  finish      from the end of reading to the command's ``os._exit`` (tail, stop, the report's snapshots,
              the summary, printing)
  after       from the start of ``warm_up`` to ``os._exit``: everything after start-up proper
  first put   from the start of reading to the first batch submitted (the workers idle until then)
  CPU         thread CPU of the reading thread over ``analyze_files`` and of each task's updates (ms)
  on numba    1 where the run imported numba (no numba-free export to load yet: a first run), else 0

Each child turns the numba-free kernels on first, as the command line does for ``analyze``
(:func:`netspectra.jit.use_numba_free_kernels`): the timers' imports of the kernel modules came first
before 2026-12-07, and those runs were on numba (the "after" of a one-packet capture 135-185 ms instead
of 57-63 on the same machine).

Wall times on a machine shared with other work vary with its load: compare trees in the same run (they
alternate), and prefer the CPU columns for the per-packet work.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The child: the console script's own entry point, with timers patched in around the command's steps.
CHILD = r"""
import functools, importlib, json, os, sys, threading, time
T0 = time.perf_counter()
marks, spans, task_cpu = {}, [], {}
def now(): return (time.perf_counter() - T0) * 1000
def wrap(modname, attr, label):
    m = importlib.import_module(modname)
    owner, name = (getattr(m, attr.split(".")[0]), attr.split(".")[1]) if "." in attr else (m, attr)
    f = getattr(owner, name)
    @functools.wraps(f)
    def g(*a, **k):
        c0, t = time.thread_time(), now()
        try:
            return f(*a, **k)
        finally:
            spans.append((label, t, now(), (time.thread_time() - c0) * 1000))
    setattr(owner, name, g)
sys.argv = ["netspectra", "analyze", sys.argv[1], "--json", *sys.argv[2:]]
import netspectra.cli.main as cli
real_main = cli.main
def main():
    # as the command line does for analyze, before any kernel module is imported (the wrapping below
    # imports them): otherwise the child ran on numba, not the numba-free kernels a user's command runs
    from netspectra.jit import use_numba_free_kernels
    use_numba_free_kernels()
    for mod, attr, label in [
        ("netspectra.offline.warmup", "warm_up", "warm_up"),
        ("netspectra.offline.run", "analyze_files", "loop"),
        ("netspectra.engine.manager", "Manager.flush", "tail"),
        ("netspectra.engine.manager", "_LaneQueue.put", "put"),
    ]:
        wrap(mod, attr, label)
    mg = importlib.import_module("netspectra.engine.manager")
    update = mg.Manager._update
    def timed_update(self, task, batch, block=True):
        c0 = time.thread_time()
        try:
            return update(self, task, batch, block=block)
        finally:
            task_cpu[task.name] = task_cpu.get(task.name, 0.0) + (time.thread_time() - c0) * 1000
    mg.Manager._update = timed_update
    real_main()
cli.main = main
real_exit = os._exit
def exit_(code):
    out = {"exit": now(), "spans": spans, "task_cpu": task_cpu, "numba": "numba" in sys.modules}
    with open(os.environ["NS_PHASES_OUT"], "w") as fh:
        json.dump(out, fh)
    real_exit(code)
os._exit = exit_
cli.run()
"""


def _one(src: str, capture: Path, out: Path, extra: list[str]) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=src, NS_PHASES_OUT=str(out))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [sys.executable, "-c", CHILD, str(capture), *extra]
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    doc = json.loads(out.read_text())
    spans = doc["spans"]

    def last(label: str) -> tuple[float, float, float]:  # (warm_up may run a small engine of its own)
        return [(a, b, c) for name, a, b, c in spans if name == label][-1]

    warm, loop, tail = last("warm_up"), last("loop"), last("tail")
    puts = [s for s in spans if s[0] == "put"]
    row = {
        "loop": loop[1] - loop[0],
        "tail": tail[1] - tail[0],
        "finish": doc["exit"] - loop[1],
        "after": doc["exit"] - warm[0],
        "first put": (puts[0][1] - loop[0]) if puts else 0.0,
        "CPU reader": loop[2],
    }
    row.update({f"CPU {k}": v for k, v in sorted(doc["task_cpu"].items())})
    row["on numba"] = float(doc["numba"])  # 0: the numba-free kernels, as a user's command (1: a first run)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    trace = ROOT / "benchmarks" / "_work" / "zipf_5000000.pcap"
    ap.add_argument("capture", nargs="?", type=Path, default=trace)
    ap.add_argument("--tree", action="append", default=[], help="LABEL=SRC (repeatable); default: this src")
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--config", type=Path, help="the configuration the command runs with (default: shipped)")
    args = ap.parse_args()
    trees = [t.split("=", 1) for t in args.tree] or [["this", str(ROOT / "src")]]
    if not args.capture.exists():
        sys.exit(f"{args.capture}: no such capture (benchmarks/bench_analyze.py generates the Zipf trace)")
    args.capture.read_bytes()  # into the page cache before the first run
    out = ROOT / "benchmarks" / "_work" / "phases.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, float]]] = {label: [] for label, _ in trees}
    for _ in range(args.runs):
        for label, src in trees:
            rows[label].append(_one(src, args.capture, out, ["-c", str(args.config)] if args.config else []))
    print(f"{args.capture.name}: medians (min) in ms over {args.runs} runs per tree, trees alternating")
    for label, runs in rows.items():
        cols = {k: [r[k] for r in runs] for k in runs[0]}
        cells = [f"{k} {statistics.median(v):.0f} ({min(v):.0f})" for k, v in cols.items()]
        print(f"{label:>10}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
