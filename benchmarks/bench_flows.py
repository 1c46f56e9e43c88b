#!/usr/bin/env python3
"""Flow records: NetSpectra's flows task against nfstream on the same trace, in one run, on one core.

Usage:
    python benchmarks/bench_flows.py [--packets 5000000] [--flows 500000] [--seed 7] [--repeat 3]
                                     [--peer-limit N] [--no-nfstream] [--json OUT.json]

Input: ``netspectra gen benchmarks/_work/flows_<packets>.pcap --packets P --flows F --seed S`` (made once).
Every measurement runs in its own child process after one untimed read of the file (page cache), so its
peak memory (ru_maxrss) is its own; rates are packets of the file over the measured time, best of
``--repeat`` for NetSpectra. Times are wall seconds and CPU seconds of the measuring process (on a shared
machine the CPU time is the steadier number; both are printed).

Measurements (everything from the file to the records, kernels compiled or loaded before the clock):
  decode            CaptureReader: the file into columnar batches (the exact/sketch path)
  decode+extras     the same with the optional columns a flows task needs (TCP flags, VLAN, ICMP, IP length)
  flows             decode+extras, a flows task (nfstream's timeouts, no statistics, no SPLT), the end of
                    input, the records handed out (not converted to Arrow)
  flows+stats       the same with per-direction size and inter-arrival statistics (the default)
  flows+features    statistics and SPLT of the first 16 packets
  flows+arrow       flows+stats, and the records as an Arrow table (what netspectra.flows.read returns)
  nfstream          NFStreamer(idle_timeout=120, active_timeout=1800, statistical_analysis=False,
                    n_dissections=0, n_meters=1) over the same file (--peer-limit: on a prefix of it)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "_work"


def _task(stats: bool, splt: int):  # type: ignore[no-untyped-def]
    from netspectra.flows.task import FlowParams, FlowTask

    return FlowTask("flows", FlowParams(statistics=stats, splt=splt))


def _w_decode(path: str, extras: bool) -> dict:
    from netspectra.capture.reader import CaptureReader

    for _ in CaptureReader(path, batch_size=4096, extras=extras):
        break
    w0, c0 = time.perf_counter(), time.process_time()
    reader = CaptureReader(path, extras=extras)
    for _ in reader:
        pass
    return {
        "packets": reader.stats.records,
        "wall": time.perf_counter() - w0,
        "cpu": time.process_time() - c0,
    }


def _w_flows(path: str, stats: bool, splt: int, arrow: bool) -> dict:
    from netspectra.capture.reader import CaptureReader

    warm = _task(stats, splt)
    for b in CaptureReader(path, batch_size=4096, extras=True):
        warm.update(b)
        break
    warm.finish()
    warm.drain().to_arrow()
    w0, c0 = time.perf_counter(), time.process_time()
    task = _task(stats, splt)
    reader = CaptureReader(path, extras=True)
    for b in reader:
        task.update(b)
    task.finish()
    records = task.drain()
    rows = records.to_arrow().num_rows if arrow else len(records)
    out = {"packets": reader.stats.records, "wall": time.perf_counter() - w0, "cpu": time.process_time() - c0}
    out["records"] = rows
    out["table_mib"] = task.memory_bytes / 2**20
    return out


def _w_nfstream(path: str, limit: int) -> dict:
    from nfstream import NFStreamer

    w0 = time.perf_counter()
    packets = records = 0
    streamer = NFStreamer(
        source=path,
        idle_timeout=120,
        active_timeout=1800,
        statistical_analysis=False,
        n_dissections=0,
        splt_analysis=0,
        n_meters=1,
    )
    for flow in streamer:
        packets += flow.bidirectional_packets
        records += 1
        if limit and packets >= limit:
            break
    # nfstream meters in a child process: its CPU time is that child's, so report wall time only
    return {"packets": packets, "wall": time.perf_counter() - w0, "cpu": None, "records": records}


WORKERS = {
    "decode": lambda p, limit: _w_decode(p, False),
    "decode+extras": lambda p, limit: _w_decode(p, True),
    "flows": lambda p, limit: _w_flows(p, False, 0, False),
    "flows+stats": lambda p, limit: _w_flows(p, True, 0, False),
    "flows+features": lambda p, limit: _w_flows(p, True, 16, False),
    "flows+arrow": lambda p, limit: _w_flows(p, True, 0, True),
    "nfstream": _w_nfstream,
}


def _child(kind: str, path: Path, limit: int) -> dict:
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", kind, str(path), str(limit)], stdout=out
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{kind} failed (exit {os.waitstatus_to_exitcode(status)})")
        out.seek(0)
        res = json.loads(out.read().strip().splitlines()[-1])
    res["maxrss_mib"] = usage.ru_maxrss / 1024  # the child's own peak (and its children's: nfstream's meter)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "FILE", "LIMIT"), help=argparse.SUPPRESS)
    ap.add_argument("--packets", type=int, default=5_000_000)
    ap.add_argument("--flows", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each NetSpectra measurement (best kept)")
    ap.add_argument("--peer-limit", type=int, default=0, help="packets nfstream reads at most (0: all)")
    ap.add_argument("--no-nfstream", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.worker:
        kind, path, limit = args.worker
        print(json.dumps(WORKERS[kind](path, int(limit))))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    trace = WORK / f"flows_{args.packets}_{args.flows}_{args.seed}.pcap"
    if not trace.exists():
        print(f"generating {trace} ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "netspectra", "gen", str(trace), "--packets", str(args.packets),
             "--flows", str(args.flows), "--seed", str(args.seed), "--no-progress"],
            check=True,
        )  # fmt: skip
    with open(trace, "rb") as fh:
        while fh.read(1 << 24):
            pass
    results: dict[str, dict] = {}
    for kind in ("decode", "decode+extras", "flows", "flows+stats", "flows+features", "flows+arrow"):
        runs = [_child(kind, trace, 0) for _ in range(args.repeat)]
        results[kind] = min(runs, key=lambda r: r["cpu"])
        print(f"{kind}: {_line(results[kind])}", flush=True)
    if not args.no_nfstream:
        results["nfstream"] = _child("nfstream", trace, args.peer_limit)
        print(f"nfstream: {_line(results['nfstream'])}", flush=True)
    _report(trace, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _line(r: dict) -> str:
    cpu = f"{r['cpu']:.3f}" if r.get("cpu") is not None else "-"
    return f"{r['packets']:,} packets, {r['wall']:.3f} s wall, {cpu} s cpu, {r['maxrss_mib']:.0f} MiB"


def _report(trace: Path, res: dict) -> None:
    print(f"\n== {trace.name} ({trace.stat().st_size / 1e6:,.1f} MB, {res['decode']['packets']:,} packets)")
    print(f"{'measurement':<16}{'records':>10}{'wall s':>9}{'cpu s':>9}{'Mpps wall':>11}{'Mpps cpu':>10}"
          f"{'ns/pkt cpu':>11}{'peak MiB':>10}")  # fmt: skip
    for kind, r in res.items():
        cpu = r.get("cpu")
        cpu_s = cpu if cpu is not None else float("nan")
        print(
            f"{kind:<16}{r.get('records', 0):>10,}{r['wall']:>9.3f}{cpu_s:>9.3f}"
            f"{r['packets'] / r['wall'] / 1e6:>11.2f}"
            f"{(r['packets'] / cpu / 1e6 if cpu else float('nan')):>10.2f}"
            f"{(cpu / r['packets'] * 1e9 if cpu else float('nan')):>11.1f}{r['maxrss_mib']:>10.0f}"
        )
    if "nfstream" in res:
        nf = res["nfstream"]["packets"] / res["nfstream"]["wall"]
        for kind in ("flows", "flows+stats", "flows+features"):
            print(f"{kind} / nfstream (wall): {res[kind]['packets'] / res[kind]['wall'] / nf:,.0f}x")


if __name__ == "__main__":
    main()
