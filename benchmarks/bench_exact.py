"""The exact task alone at 100 k, 1 M and 5 M flows: ns/packet and peak memory per flow, before and after.

    python benchmarks/bench_exact.py [--sizes 100000:5000000 1000000:10000000 5000000:20000000]
                                     [--repeat 5] [--before REV | --before-src DIR] [--json FILE]
                                     [--fields SrcIP,DstIP,SrcPort,DstPort,Protocol,InIf]

For each size ``FLOWS:PACKETS[:IPV6]`` a ``netspectra gen`` trace with that many background flows and
packets (seed 3; ``IPV6`` = the fraction of flows over IPv6, gen's default 0.1 when left out) is
written to ``--traces`` (default /tmp) unless it is there already. Every
measurement runs in a fresh process (``--worker``), which

1. reads the whole trace into memory as the reader's batches (262,144 packets each; not timed),
2. warms the kernels up on a tiny task, collects garbage, resets the process's peak RSS
   (``/proc/self/clear_refs`` = 5) and notes the resident set,
3. feeds every batch to a new five-tuple :class:`~netspectra.tasks.exact.ExactTask` (default
   capacity hint, so the table grows as in the engine) — *update* = wall time of these calls, and
   the thread's CPU time beside it,
4. takes one :meth:`~netspectra.tasks.exact.ExactTask.snapshot` (timed on its own).

``--fields`` keys the task on other key fields than the five (default): their columns are made up from
the packets before step 2 — ``InIf``/``OutIf`` from the ports, ``VlanID`` from the protocol, one
``ExporterAddress``, AS numbers and dictionary codes from the addresses' bytes — so the generic path
(extra key words) is measured; a ``before`` tree must know the fields (or use ``--no-before``).

``peak B/flow`` = (peak RSS during step 3 − resident set before it) / flows: the task's whole
footprint, its transient growth peaks included. ``+snap`` is the same peak through step 4 (the
snapshot's columns are 69 B per flow on their own).

*before* is the layout of ``--before`` (default: the commit before the redesign), checked out with
``git archive`` into ``benchmarks/_work/before-<rev>`` (numba caches its kernels there) and run with
``PYTHONPATH`` pointing at it; ``--before-src DIR`` runs a source tree as it is (e.g.
``/work/main/src``). *after* is this checkout. The two alternate run by run (before, after, before,
…) so that a neighbour's load on a shared machine hits both alike; min and median of the repeats
are printed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
#: The last commit with the array-of-structs table (9 words per slot, linear probing, full rehash).
BEFORE_REV = "5e9de9a"
DEFAULT_SIZES = ("100000:5000000", "1000000:10000000", "5000000:20000000")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _with_fields(batch, fields):  # type: ignore[no-untyped-def]
    """``batch`` with made-up columns for the key fields beyond the five (see the module docstring)."""
    import numpy as np

    from netspectra.fields import BY_NAME

    cols, dims = {}, {}
    for f in fields:
        kf = BY_NAME[f]
        if kf.column in ("in_if", "out_if"):
            port = batch.dst_port if kf.column == "in_if" else batch.src_port
            cols[kf.column] = port.astype(np.uint32) % 64
        elif kf.column == "vlan_id":
            cols["vlan_id"] = batch.protocol.astype(np.uint16)
        elif kf.column == "exporter":
            cols["exporter"] = np.ascontiguousarray(np.broadcast_to(batch.src_ip[:1], batch.src_ip.shape))
        elif kf.source == "dim":
            side = batch.dst_ip if f.startswith("Dst") else batch.src_ip
            v = side[:, 12].astype(np.uint32) << 8 | side[:, 13]
            dims[f] = (v + 64512 if kf.kind == "int" else v % 250).astype(np.dtype(kf.dtype))
    out = batch.with_columns(**cols) if cols else batch
    return out.with_dims(dims, {f: tuple(f"{f}{i}" for i in range(250)) for f in dims}) if dims else out


def worker(trace: str, fields: tuple[str, ...] = FIVE) -> dict:
    """One measurement (see the module docstring); the result as a dict."""
    import numpy as np

    from netspectra.batch import PacketBatch
    from netspectra.capture.reader import CaptureReader
    from netspectra.tasks.exact import ExactTask

    batches = list(CaptureReader(trace))
    if set(fields) - set(FIVE):
        batches = [_with_fields(b, fields) for b in batches]
    packets = sum(len(b) for b in batches)
    warm = ExactTask("warm", fields, capacity_hint=4)
    head = (np.ascontiguousarray(getattr(batches[0], c)[:64]) for c in PacketBatch.COLUMNS)
    warm.update(PacketBatch(*head) if fields == FIVE else batches[0].head(64))
    warm.snapshot()
    del warm
    gc.collect()
    gc.disable()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    base = _status_kib("VmRSS")
    task = ExactTask("bench", fields)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
    for b in batches:
        task.update(b)
    t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    peak_update = _status_kib("VmHWM")
    s0 = time.perf_counter_ns()
    snap = task.snapshot()
    s1 = time.perf_counter_ns()
    peak_snap = _status_kib("VmHWM")
    flows = len(task)
    if len(snap) != flows or snap.total_packets != packets:
        raise AssertionError(f"snapshot: {len(snap)} flows, {snap.total_packets} packets")
    return {
        "packets": packets,
        "flows": flows,
        "update_ns_per_packet": (t1 - t0) / packets,
        "update_cpu_ns_per_packet": (c1 - c0) / packets,
        "update_sys_ns_per_packet": (r1.ru_stime - r0.ru_stime) * 1e9 / packets,
        "page_faults": r1.ru_minflt - r0.ru_minflt,
        "snapshot_s": (s1 - s0) / 1e9,
        "peak_bytes_per_flow": (peak_update - base) * 1024 / flows,
        "peak_bytes_per_flow_with_snapshot": (peak_snap - base) * 1024 / flows,
        "memory_bytes_per_flow": task.memory_bytes / flows,
        "process_peak_mib": peak_snap / 1024,
    }


def _before_tree(rev: str) -> Path:
    """``src`` of ``rev`` extracted once under benchmarks/_work (kept: numba caches kernels there)."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    dest = WORK / f"before-{sha}"
    if not (dest / "src").is_dir():
        archive = ["git", "-C", str(ROOT), "archive", sha, "src"]
        data = subprocess.run(archive, check=True, capture_output=True)
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(data.stdout)) as tar:
            tar.extractall(dest, filter="data")
    return dest / "src"


def _trace(traces: Path, spec: str) -> Path:
    flows, packets, *ipv6 = spec.split(":")
    path = traces / f"exact_f{flows}_p{packets}{'_v6' + ipv6[0] if ipv6 else ''}.pcap"
    if not path.exists():
        print(f"writing {path} ...", file=sys.stderr, flush=True)
        subprocess.run(
            [sys.executable, "-m", "netspectra", "gen", str(path), "--packets", packets,
             "--flows", flows, "--seed", "3", "--no-progress", *(["--ipv6", ipv6[0]] if ipv6 else [])],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return path


def _run_worker(src: Path, trace: Path, fields: tuple[str, ...] = FIVE) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    cmd = [sys.executable, __file__, "--worker", str(trace), "--fields", ",".join(fields)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), metavar="FLOWS:PACKETS[:IPV6]")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--before", default=BEFORE_REV, metavar="REV", help="git revision of the old layout")
    ap.add_argument("--before-src", type=Path, metavar="DIR", help="run this source tree as 'before'")
    ap.add_argument("--no-before", action="store_true", help="measure this checkout only")
    ap.add_argument("--traces", type=Path, default=Path("/tmp"), metavar="DIR")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write every run here")
    ap.add_argument("--fields", default=",".join(FIVE), help="the task's key fields (comma-separated)")
    ap.add_argument("--worker", metavar="TRACE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    fields = tuple(f.strip() for f in args.fields.split(",") if f.strip())
    if args.worker:
        print(json.dumps(worker(args.worker, fields)))
        return

    layouts: dict[str, Path] = {}
    if not args.no_before:
        layouts["before"] = args.before_src or _before_tree(args.before)
    layouts["after"] = ROOT / "src"
    runs: list[dict] = []
    for spec in args.sizes:
        trace = _trace(args.traces, spec)
        for rep in range(args.repeat):
            for name, src in layouts.items():
                r = _run_worker(src, trace, fields)
                r.update(layout=name, size=spec, rep=rep)
                runs.append(r)
                print(
                    f"{spec:>18} {name:>6} #{rep}: {r['update_ns_per_packet']:6.1f} ns/pkt "
                    f"(cpu {r['update_cpu_ns_per_packet']:6.1f}, sys {r['update_sys_ns_per_packet']:5.1f}), "
                    f"{r['peak_bytes_per_flow']:6.1f} B/flow, "
                    f"{r['flows']:,} flows",
                    file=sys.stderr,
                    flush=True,
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(runs, indent=1))
    _print_table(runs, list(layouts))


def _print_table(runs: list[dict], layouts: list[str]) -> None:
    def mm(values: list[float], fmt: str) -> str:
        return f"{min(values):{fmt}} / {statistics.median(values):{fmt}}"

    print(
        "| trace flows:packets[:ipv6] | flows | layout | wall ns/packet | CPU ns/packet | of which system "
        "| peak B/flow | +snapshot B/flow | memory_bytes/flow | snapshot s |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in dict.fromkeys(r["size"] for r in runs):
        for name in layouts:
            rs = [r for r in runs if r["size"] == size and r["layout"] == name]
            if not rs:
                continue
            print(
                f"| {size} | {rs[0]['flows']:,} | {name} "
                f"| {mm([r['update_ns_per_packet'] for r in rs], '.1f')} "
                f"| {mm([r['update_cpu_ns_per_packet'] for r in rs], '.1f')} "
                f"| {mm([r['update_sys_ns_per_packet'] for r in rs], '.1f')} "
                f"| {mm([r['peak_bytes_per_flow'] for r in rs], '.0f')} "
                f"| {mm([r['peak_bytes_per_flow_with_snapshot'] for r in rs], '.0f')} "
                f"| {statistics.median(r['memory_bytes_per_flow'] for r in rs):.0f} "
                f"| {mm([r['snapshot_s'] for r in rs], '.2f')} |"
            )
    print("(min / median of the runs)")


if __name__ == "__main__":
    main()
