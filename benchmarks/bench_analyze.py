#!/usr/bin/env python3
"""Offline analysis speed: NetSpectra against dpkt and nfstream, on the same inputs, in one run.

Usage:
    python benchmarks/bench_analyze.py [--packets 5000000] [--real PCAP ...] [--peers dpkt,nfstream]
                                       [--peer-limit N] [--repeat 3] [--cpus 1,2,4,8,16] [--json OUT.json]

Inputs: a ``netspectra gen`` Zipf trace of ``--packets`` packets (made once under benchmarks/_work/)
and the largest real capture of ``../shared/data/captures`` (or ``--real``). Every measurement runs in
its own child process, so that peak memory (ru_maxrss) is that measurement's alone, and after one
untimed read of the file, so that every tool starts from the page cache. Rates are packets of the
file divided by the time to process them (best of ``--repeat``); ratios are NetSpectra's rate over
the peer's. ``--peer-limit`` caps the packets the slow peers read (their rate is then measured on
that prefix of the same file; NetSpectra's rate on the whole file is unaffected by length).

Measurements:
  parse        CaptureReader over the file: every record decoded into columnar batches
  parse+exact  the same plus one five-tuple exact task (what ``netspectra analyze`` does)
  cli          ``netspectra analyze FILE --json`` as a user runs it: process start, imports, cached
               numba kernels, summary (wall time of the whole command)
  cpus         (``--cpus``) ``cli`` on the synthetic trace confined to 1, 2, 4 ... CPUs: the scaling curve
  start-up     ``netspectra analyze`` on a one-packet capture and ``netspectra --help``, whole process,
               beside ``python -c pass``

Every row gives the whole process's wall time (what a user waits for) and its CPU seconds (user +
system: on a busy machine the wall time includes waiting for a core); peers' rows also give their
loop alone. Headline ratios are whole process against whole process; loop-only ratios are labelled.
  cold         the same CLI with an empty numba cache (the one-time compile after install)
  dpkt         dpkt.pcap.Reader + dpkt.ethernet per packet into a five-tuple dict
  nfstream     NFStreamer(statistical_analysis=False, n_dissections=0) over the file
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
SHARED = ROOT.parent / "shared" / "data" / "captures"


# ---------------------------------------------------------------------------------------------
# measurements (run in a child process: `bench_analyze.py --worker KIND FILE LIMIT`)
# ---------------------------------------------------------------------------------------------
def _w_parse(path: str, limit: int) -> tuple[int, float]:
    from netspectra.capture.reader import CaptureReader

    for _ in CaptureReader(path, batch_size=4096):  # compile / load kernels outside the timing
        break
    t0 = time.perf_counter()
    reader = CaptureReader(path)
    for _ in reader:
        pass
    return reader.stats.records, time.perf_counter() - t0


def _w_exact(path: str, limit: int) -> tuple[int, float]:
    from netspectra.capture.reader import CaptureReader
    from netspectra.tasks.exact import ExactTask

    warm = ExactTask("warm", ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"])
    for b in CaptureReader(path, batch_size=4096):
        warm.update(b)
        break
    t0 = time.perf_counter()
    task = ExactTask("per_five_tuple", ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"])
    reader = CaptureReader(path)
    for b in reader:
        task.update(b)
    snap = task.snapshot()
    elapsed = time.perf_counter() - t0
    print(f"# parse+exact flows={len(snap)} packets={snap.total_packets}", file=sys.stderr)
    return reader.stats.records, elapsed


def _w_dpkt(path: str, limit: int) -> tuple[int, float]:
    import socket

    import dpkt

    t0 = time.perf_counter()
    flows: dict[tuple, list[int]] = {}
    n = 0
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            n += 1
            try:
                eth = dpkt.ethernet.Ethernet(buf)
                ip = eth.data
                if isinstance(ip, dpkt.ip.IP):
                    src, dst = (
                        socket.inet_ntop(socket.AF_INET, ip.src),
                        socket.inet_ntop(socket.AF_INET, ip.dst),
                    )
                elif isinstance(ip, dpkt.ip6.IP6):
                    src, dst = (
                        socket.inet_ntop(socket.AF_INET6, ip.src),
                        socket.inet_ntop(socket.AF_INET6, ip.dst),
                    )
                else:
                    continue
                l4 = ip.data
                sp = getattr(l4, "sport", 0) if isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP) else 0
                dp = getattr(l4, "dport", 0) if isinstance(l4, dpkt.tcp.TCP | dpkt.udp.UDP) else 0
                key = (src, dst, sp, dp, ip.p)
                f = flows.get(key)
                if f is None:
                    flows[key] = [1, len(buf)]
                else:
                    f[0] += 1
                    f[1] += len(buf)
            except dpkt.UnpackError:
                pass
            if limit and n >= limit:
                break
    return n, time.perf_counter() - t0


def _w_nfstream(path: str, limit: int) -> tuple[int, float]:
    from nfstream import NFStreamer

    t0 = time.perf_counter()
    packets = 0
    streamer = NFStreamer(
        source=path, statistical_analysis=False, n_dissections=0, splt_analysis=0, n_meters=1
    )
    for flow in streamer:
        packets += flow.bidirectional_packets
        if limit and packets >= limit:
            break
    return packets, time.perf_counter() - t0


WORKERS = {"parse": _w_parse, "parse+exact": _w_exact, "dpkt": _w_dpkt, "nfstream": _w_nfstream}


def _worker(kind: str, path: str, limit: int) -> None:
    packets, elapsed = WORKERS[kind](path, limit)
    print(json.dumps({"packets": packets, "elapsed": elapsed}))


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def _run(
    cmd: list[str], env: dict | None = None, cpus: set[int] | None = None
) -> tuple[str, float, float, float]:
    """Run ``cmd`` (on the CPUs ``cpus`` only, when given); its stdout, wall seconds, peak RSS in MiB and
    CPU seconds (user + system; wait4 gives this child's own)."""
    pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, preexec_fn=pin)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"{cmd[:3]} exited {proc.returncode}: {err.read()[-2000:]}")
        return out.read(), elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def _child(kind: str, path: Path, limit: int, env: dict | None = None) -> dict:
    """A measurement in its own process: ``elapsed`` is its loop alone, ``process_s`` the whole process
    (interpreter start, imports, the loop) as a user running that tool would wait."""
    stdout, wall, rss, cpu = _run([sys.executable, __file__, "--worker", kind, str(path), str(limit)], env)
    res = json.loads(stdout.strip().splitlines()[-1])
    res.update(maxrss_mib=rss, process_s=wall, cpu_s=cpu)
    return res


def _netspectra() -> list[str]:
    """The console script installed beside this interpreter (what a user of this environment runs), else
    ``python -m netspectra``. Not whatever ``netspectra`` is first on PATH: a version manager's shim (a
    shell script that looks up the interpreter, pyenv's takes 50-150 ms) is not NetSpectra's time."""
    exe = Path(sys.executable).parent / "netspectra"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "netspectra"]


def _cli(path: Path, env: dict | None = None, cpus: set[int] | None = None) -> dict:
    cmd = [*_netspectra(), "-q", "analyze", str(path), "--json", "--top", "0"]
    stdout, elapsed, rss, cpu = _run(cmd, env, cpus)
    packets = json.loads(stdout)["packets"]
    return {"packets": packets, "elapsed": elapsed, "maxrss_mib": rss, "process_s": elapsed, "cpu_s": cpu}


def _startup(path: Path, repeat: int) -> dict[str, dict]:
    """Whole-process start-up: ``analyze`` on a one-packet capture (the first record of ``path``) and
    ``netspectra --help``, beside the interpreter alone; best of ``repeat`` by wall time."""
    one = WORK / "one_packet.pcap"
    with open(path, "rb") as fh:
        head = fh.read(24)
        rec = fh.read(16)
        incl = int.from_bytes(rec[8:12], "little" if head[:4] == b"\xd4\xc3\xb2\xa1" else "big")
        one.write_bytes(head + rec + fh.read(incl))
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "netspectra --help": [*_netspectra(), "--help"],
        "analyze 1 packet": [*_netspectra(), "-q", "analyze", str(one), "--json", "--top", "0"],
    }
    out: dict[str, dict] = {}
    for name, cmd in cases.items():
        runs = []
        for _ in range(repeat):
            _, wall, rss, cpu = _run(cmd)
            runs.append({"wall_s": wall, "cpu_s": cpu, "maxrss_mib": rss})
        out[name] = min(runs, key=lambda r: r["wall_s"])
    return out


def _best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["elapsed"] / max(r["packets"], 1))


def _warm_page_cache(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(1 << 24):
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "FILE", "LIMIT"), help=argparse.SUPPRESS)
    ap.add_argument("--packets", type=int, default=5_000_000, help="packets of the synthetic trace")
    ap.add_argument("--flows", type=int, default=500_000, help="background flows of the synthetic trace")
    ap.add_argument("--real", type=Path, nargs="*", help="real captures (default: largest shared one)")
    ap.add_argument(
        "--peers", default="dpkt,nfstream", help="comma-separated peers (dpkt, nfstream; '' for none)"
    )
    ap.add_argument("--peer-limit", type=int, default=0, help="packets the peers read at most (0: all)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each NetSpectra measurement (best kept)")
    ap.add_argument("--json", type=Path, help="write all results as JSON here")
    ap.add_argument(
        "--cpus",
        default="",
        help="comma-separated CPU counts (e.g. 1,2,4,8,16): the whole command on the synthetic trace with "
        "its affinity set to that many CPUs (the worker count follows), best of --repeat each",
    )
    args = ap.parse_args()
    if args.worker:
        kind, path, limit = args.worker
        _worker(kind, path, int(limit))
        return

    WORK.mkdir(parents=True, exist_ok=True)
    trace = WORK / f"zipf_{args.packets}.pcap"
    if not trace.exists():
        print(f"generating {trace} ({args.packets:,} packets) ...", flush=True)
        # in a child process: this driver stays small, so children forked from it measure their own RSS
        gen = [sys.executable, "-m", "netspectra", "gen", str(trace), "--packets", str(args.packets)]
        subprocess.run([*gen, "--flows", str(args.flows), "--seed", "1", "--no-progress"], check=True)
    inputs = [trace]
    if args.real:
        inputs += args.real
    elif SHARED.exists():
        inputs.append(
            max(
                (p for p in SHARED.iterdir() if p.suffix in (".pcap", ".pcapng")),
                key=lambda p: p.stat().st_size,
            )
        )
    peers = [p for p in args.peers.split(",") if p]

    results: dict[str, dict] = {}
    for path in inputs:
        _warm_page_cache(path)
        res: dict[str, dict] = {}
        for kind in ("parse", "parse+exact"):
            res[kind] = _best([_child(kind, path, 0) for _ in range(args.repeat)])
        res["cli"] = _best([_cli(path) for _ in range(args.repeat)])
        with tempfile.TemporaryDirectory() as cache:
            res["cold"] = _cli(path, env={**os.environ, "NUMBA_CACHE_DIR": cache})
        for peer in peers:
            try:
                res[peer] = _child(peer, path, args.peer_limit)
            except (subprocess.CalledProcessError, ModuleNotFoundError) as exc:
                err = getattr(exc, "stderr", "") or str(exc)
                print(f"peer {peer} failed on {path.name}: {err.strip().splitlines()[-1:]}")
        results[str(path)] = res
        _report(path, res, peers)
    if args.cpus:
        results["cpus"] = _scaling(trace, [int(n) for n in args.cpus.split(",")], args.repeat)
    start = _startup(trace, max(args.repeat, 5))
    results["startup"] = start
    print(f"\n== start-up (whole process, best of {max(args.repeat, 5)} by wall time)")
    for name, r in start.items():
        print(f"{name:<20}{r['wall_s']:>8.3f} s wall{r['cpu_s']:>8.3f} s CPU{r['maxrss_mib']:>8.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


def _scaling(trace: Path, counts: list[int], repeat: int) -> dict[str, dict]:
    """The whole command on ``trace`` confined to the first ``n`` CPUs this process may use, for each
    ``n`` of ``counts`` (those above the machine's CPUs are skipped, and said so)."""
    avail = sorted(os.sched_getaffinity(0))
    out: dict[str, dict] = {}
    print(f"\n== {trace.name}, whole command by CPUs (affinity; best of {repeat} by wall time)")
    print(f"{'CPUs':>5}{'process s':>11}{'CPU s':>8}{'Mpps (process)':>16}{'speed-up':>10}")
    for n in counts:
        if n > len(avail):
            print(f"{n:>5}  skipped: this machine has {len(avail)} CPUs")
            continue
        r = _best([_cli(trace, cpus=set(avail[:n])) for _ in range(repeat)])
        out[str(n)] = r
        base = out.get(str(counts[0]), r)["process_s"]
        print(
            f"{n:>5}{r['process_s']:>11.3f}{r['cpu_s']:>8.2f}{r['packets'] / r['process_s'] / 1e6:>16.2f}"
            f"{base / r['process_s']:>9.2f}x"
        )
    return out


def _report(path: Path, res: dict, peers: list[str]) -> None:
    print(f"\n== {path.name} ({path.stat().st_size / 1e6:,.1f} MB, {res['parse']['packets']:,} packets)")
    print(
        f"{'measurement':<14}{'packets':>12}{'loop s':>9}{'process s':>10}{'CPU s':>8}"
        f"{'Mpps (process)':>15}{'peak MiB':>10}"
    )
    rates = {}
    for kind, r in res.items():
        whole = r.get("process_s", r["elapsed"])
        rates[kind] = r["packets"] / whole if whole > 0 else float("nan")
        loop = "" if kind in ("cli", "cold") else f"{r['elapsed']:.3f}"
        print(
            f"{kind:<14}{r['packets']:>12,}{loop:>9}{whole:>10.3f}{r.get('cpu_s', float('nan')):>8.2f}"
            f"{rates[kind] / 1e6:>15.2f}{r['maxrss_mib']:>10.0f}"
        )
    for peer in peers:
        if peer in res:
            loop = (res["parse+exact"]["packets"] / res["parse+exact"]["elapsed"]) / (
                res[peer]["packets"] / res[peer]["elapsed"]
            )
            print(
                f"whole process, cli / {peer}: {rates['cli'] / rates[peer]:,.1f}x   "
                f"(loop only, parse+exact / {peer}'s loop: {loop:,.0f}x)"
            )


if __name__ == "__main__":
    main()
