#!/usr/bin/env python3
"""Command-line start-up, whole process, of one or more source trees side by side (issue 19).

Usage:
    python benchmarks/bench_startup.py [--tree before=/work/main/src --tree after=src] [--runs 9]

Each tree is imported through ``PYTHONPATH`` (its ``netspectra`` package ahead of the installed one);
the runs of the trees alternate (ABAB…, the order flipped every round) so that a change in the machine's
load hits both alike, and the table gives medians. Bytecode caching is left on (``PYTHONDONTWRITEBYTECODE``
is removed from the children's environment): start-up with cached bytecode is what a user gets. The
analysed capture is the first record of ``tests/data/captures/gnutella.pcap``, written to
``benchmarks/_work/one_packet_gnutella.pcap``.

Commands: ``python -c pass`` (the interpreter alone), ``netspectra --version``, ``netspectra --help``,
``netspectra analyze --help``, ``netspectra analyze ONE_PACKET``, through ``python -m netspectra`` and
through the installed console script where there is one.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"


def one_packet_capture() -> Path:
    """The first record of the gnutella capture, as a classic pcap of its own."""
    src = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"
    out = WORK / "one_packet_gnutella.pcap"
    with open(src, "rb") as fh:
        head = fh.read(24)
        rec = fh.read(16)
        incl = int.from_bytes(
            rec[8:12], "little" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else "big"
        )
        data = head + rec + fh.read(incl)
    WORK.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of ``cmd`` run to completion."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--tree",
        action="append",
        metavar="LABEL=SRC[@VAR=VALUE...]",
        help="a source tree to time, with environment variables of its own after @ (repeatable; e.g."
        " 'numba=src@NETSPECTRA_NOJIT=0'; default: the installed package and this checkout's src)",
    )
    ap.add_argument("--runs", type=int, default=9, help="runs of each command and tree (medians reported)")
    ap.add_argument(
        "--no-script",
        action="store_true",
        help="leave out the installed console script (a tree older than its entry point cannot run it)",
    )
    args = ap.parse_args()
    trees = (
        [t.split("=", 1) for t in args.tree]
        if args.tree
        else [["installed", ""], ["this", str(ROOT / "src")]]
    )
    capture = str(one_packet_capture())
    base_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    commands = {
        "netspectra --version": ["-m", "netspectra", "--version"],
        "netspectra --help": ["-m", "netspectra", "--help"],
        "netspectra analyze --help": ["-m", "netspectra", "analyze", "--help"],
        "netspectra analyze (1 packet)": ["-m", "netspectra", "analyze", capture],
    }
    # the script installed beside this interpreter, not a version manager's shim found first on PATH
    script = None if args.no_script else Path(sys.executable).parent / "netspectra"
    if script is not None and not script.is_file():
        script = None
    script_commands = {
        "console script --help": ["--help"],
        "console script analyze (1 packet)": ["analyze", capture],
    }

    def env_of(spec: str) -> dict[str, str]:
        src, *assignments = spec.split("@")
        env = {**base_env, "PYTHONPATH": src} if src else dict(base_env)
        env.update(a.split("=", 1) for a in assignments)
        return env

    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for i in range(args.runs):
        results.setdefault(("python -c pass", "-"), []).append(
            timed([sys.executable, "-c", "pass"], base_env)
        )
        order = trees if i % 2 == 0 else trees[::-1]
        for name, argv in commands.items():
            for label, src in order:
                results.setdefault((name, label), []).append(timed([sys.executable, *argv], env_of(src)))
        if script:
            for name, argv in script_commands.items():
                for label, src in order:
                    results.setdefault((name, label), []).append(timed([script, *argv], env_of(src)))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {args.runs} runs each")
    print("| command | tree | median wall s | median CPU s | min wall s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for (name, label), runs in results.items():
        walls = [w for w, _ in runs]
        print(
            f"| {name} | {label} | {statistics.median(walls):.3f} | "
            f"{statistics.median(c for _, c in runs):.3f} | {min(walls):.3f} |"
        )


if __name__ == "__main__":
    main()
