#!/usr/bin/env python3
"""Memory of ``netspectra analyze`` on long captures: peak RSS against file size and flow count.

Usage:
    python benchmarks/bench_memory.py [--packets 100000000] [--flows 100000,1000000,10000000]
                                      [--seed 11] [--duration 60] [--flow-records] [--out] [--keep]
                                      [--json OUT.json]

For each flow count, ``netspectra gen`` writes a trace of ``--packets`` packets with that many
background five-tuples (under benchmarks/_work/, removed after its run unless ``--keep``), then
``netspectra analyze TRACE --json`` runs on it as a user runs it — whole process, shipped configuration
(the five-tuple exact task, the CountMin heavy-hitter and SuperSpread tasks). Its peak resident memory
is the child's own ``ru_maxrss`` (``os.wait4``); CPU is its user + system time. The claim checked: the
reader holds a bounded window of the file (memory does not grow with packets), so the peak is the
exact task's table (about 65-75 bytes per flow, docs/engine.md) plus fixed costs (interpreter,
kernels, sketches at their configured sizes, one batch).

``--flow-records`` runs ``analyze --flows`` (a flows task beside the shipped ones): without ``--out`` no
one reads its records, so the task counts them as they end (docs/flows.md) and memory follows the flows
open at once, not the records of the whole capture; ``--duration`` spreads the trace over that many
seconds, so that flows end (idle, active) during the run. ``--out`` adds ``--out DIR`` (a temporary
directory, removed after the run): every task's file is written; a flows task's records go into its file
as they end (docs/flows.md), so memory still follows the flows open at once.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench_analyze import WORK, _netspectra, _run  # the same process runner (wait4: the child's own RSS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=100_000_000)
    ap.add_argument("--flows", default="100000,1000000,10000000", help="comma-separated flow counts")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds the trace covers (gen --duration)")
    ap.add_argument("--flow-records", action="store_true", help="analyze --flows: a flows task too")
    ap.add_argument("--out", action="store_true", help="analyze --out DIR: every task's file written too")
    ap.add_argument("--keep", action="store_true", help="keep the traces under benchmarks/_work/")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    print(f"{'flows':>12} {'packets':>13} {'file MiB':>9} {'gen s':>7} {'wall s':>7} {'CPU s':>7} "
          f"{'Mpps(CPU)':>9} {'peak MiB':>9} {'B/flow':>7}")  # fmt: skip
    for flows in (int(f) for f in args.flows.split(",")):
        trace = WORK / f"mem_{args.packets}_{flows}_{args.seed}_{args.duration:g}.pcap"
        t0 = time.perf_counter()
        if not trace.exists():
            _run([*_netspectra(), "gen", str(trace), "--packets", str(args.packets), "--flows", str(flows),
                  "--seed", str(args.seed), "--duration", str(args.duration), "--no-progress"])  # fmt: skip
        gen_s = time.perf_counter() - t0
        truth = json.loads(trace.with_suffix(".truth.json").read_text())
        five_tuples = int(truth["totals"]["distinct_five_tuples"])
        with trace.open("rb") as fh:  # page cache: every run starts from memory, as bench_analyze does
            while fh.read(64 << 20):
                pass
        extra = ["--flows"] if args.flow_records else []
        with tempfile.TemporaryDirectory(dir=WORK) as out:
            if args.out:
                extra += ["--out", out]
            command = [*_netspectra(), "analyze", str(trace), "--json", "--top", "0", *extra]
            stdout, wall, rss, cpu = _run(command)
        doc = json.loads(stdout)
        packets = int(doc["packets"])
        exact = [t for t in doc.get("tasks", []) if t.get("name") == "per_five_tuple"]
        counted = int(exact[0]["flows"]) if exact else five_tuples
        row = {
            "flows": counted,
            "packets": packets,
            "file_mib": trace.stat().st_size / 2**20,
            "gen_s": gen_s,
            "wall_s": wall,
            "cpu_s": cpu,
            "peak_mib": rss,
        }
        if args.flow_records:
            row["flow_records"] = int(doc["flow_tasks"][0]["records"])
        rows.append(row)
        if counted != five_tuples:
            raise SystemExit(f"analyze counted {counted:,} five-tuples, the truth file says {five_tuples:,}")
        mib = row["file_mib"]
        print(f"{counted:>12,} {packets:>13,} {mib:>9,.0f} {gen_s:>7.1f} {wall:>7.1f} {cpu:>7.1f} "
              f"{packets / cpu / 1e6:>9.2f} {rss:>9,.0f} {rss * 2**20 / counted:>7.0f}"
              + (f"  flow records {row['flow_records']:,}" if args.flow_records else ""),
              flush=True)  # fmt: skip
        if not args.keep:
            trace.unlink()
            trace.with_suffix(".truth.json").unlink(missing_ok=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
