#!/usr/bin/env python3
"""Enrichment speed: ASN + country + networks for both addresses of every packet of the gen trace.

Usage:
    python benchmarks/bench_enrich.py [--trace /tmp/zipf.pcap] [--prefixes 500000] [--repeat 5]
                                      [--bits 12,16,20] [--json OUT.json]

Inputs: the ``netspectra gen`` Zipf trace (``netspectra gen /tmp/zipf.pcap --packets 5000000 --flows
500000 --seed 7``, made here if missing) and an MMDB database of ``--prefixes`` networks built once with
the ``mmdb-writer`` package (cached under benchmarks/_work/; it takes minutes: the writer is pure
Python). Each network's record carries an AS number and a country, as IPinfo's lite database does, so
the same file serves as the ASN and the country database; 80 % of the networks are IPv4 (/16 ... /24,
most /24), 20 % IPv6 (/28 ... /48 in 2000::/4, where the trace's IPv6 addresses are). The ``networks``
map has 2,000 nested entries (IPv4 and IPv6) with all five attributes.

Measured (one core: the kernel runs in this thread; numba compiled before timing). Rates are rows over
this thread's CPU time (``time.thread_time``), best of ``--repeat``: on a shared machine the wall time
also counts the time other processes hold the core; the wall-clock rate is printed beside it.
  load       Enricher.from_config: both databases walked with maxminddb and compiled, networks
             compiled, tables merged and indexed (wall time)
  enrich     Enricher.enrich over every batch of the trace, in memory (batches read beforehand):
             rows per second, best of --repeat; per bucket-index width when --bits lists several
  reference  the plain-Python reference's rate on a sample (for scale)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "_work"

_COUNTRIES = ("US", "CN", "DE", "FR", "GB", "JP", "BR", "IN", "RU", "NL", "SE", "CA", "AU", "KR", "IT", "ES")


def _disjoint_ipv4(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` disjoint IPv4 prefixes (/16 ... /24, 70 % of them /24) spread over the whole space."""
    weights = np.full(9, 0.3 / 8)
    weights[-1] = 0.7
    plens = rng.choice(np.arange(16, 25), size=n, p=weights)
    sizes = np.left_shift(np.int64(1), 32 - plens)
    free = (1 << 32) - int(sizes.sum())
    if free <= 0:
        raise ValueError("too many prefixes for IPv4")
    gaps = rng.exponential(free / n / 2, size=n).astype(np.int64)
    out = []
    pos = 0
    for plen, size, gap in zip(plens.tolist(), sizes.tolist(), gaps.tolist(), strict=True):
        start = -(-(pos + gap) // size) * size  # aligned on its own size
        if start + size > 1 << 32:
            break
        out.append(f"{ipaddress.IPv4Address(start)}/{plen}")
        pos = start + size
    return out


def _disjoint_ipv6(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` disjoint IPv6 prefixes (/28 ... /48) in 2000::/4, where the trace's IPv6 addresses are."""
    plens = rng.integers(28, 49, size=n)
    starts = sorted(int(rng.integers(0, 1 << 60)) for _ in range(n))
    out = []
    end = -1
    for plen, top in zip(plens.tolist(), starts, strict=True):
        a = ((0x2 << 124) | (top << 64)) & ~((1 << (128 - plen)) - 1)
        if a <= end:
            continue
        out.append(f"{ipaddress.IPv6Address(a)}/{plen}")
        end = a + (1 << (128 - plen)) - 1
    return out


def build_database(path: Path, prefixes: int, seed: int = 11) -> tuple[float, int]:
    """Write an MMDB of ``prefixes`` disjoint networks (see the module docstring): (seconds, networks)."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    nets = _disjoint_ipv4(rng, prefixes * 4 // 5)
    nets += _disjoint_ipv6(rng, prefixes - len(nets))
    writer = MMDBWriter(ip_version=6, database_type="NetSpectra-Bench-ASN-Country", ipv4_compatible=True)
    asns = rng.integers(1, 400_000, size=len(nets))
    ccs = rng.integers(0, len(_COUNTRIES), size=len(nets))
    for net, asn, cc in zip(nets, asns.tolist(), ccs.tolist(), strict=True):
        writer.insert_network(
            IPSet([net]), {"autonomous_system_number": asn, "country": {"iso_code": _COUNTRIES[cc]}}
        )
    tmp = path.with_suffix(".tmp")
    writer.to_db_file(str(tmp))
    tmp.replace(path)
    return time.perf_counter() - t0, len(nets)


def networks_map(count: int = 2000, seed: int = 5) -> dict[str, dict[str, str]]:
    """``count`` nested networks: /8 ... /28 in IPv4, /32 ... /64 in IPv6, every one of the five
    attributes set (the most work: attributes no network sets are not computed)."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, str]] = {}
    while len(out) < count:
        if rng.random() < 0.8:
            plen = int(rng.integers(8, 29))
            a = int(rng.integers(0, 1 << 32)) & ~((1 << (32 - plen)) - 1)
            net = f"{ipaddress.IPv4Address(a)}/{plen}"
        else:
            plen = int(rng.integers(32, 65))
            a = ((0x2 << 124) | (int(rng.integers(0, 1 << 60)) << 64)) & ~((1 << (128 - plen)) - 1)
            net = f"{ipaddress.IPv6Address(a)}/{plen}"
        out[net] = {
            "name": f"net{len(out)}",
            "role": ("customer", "server", "transit")[len(out) % 3],
            "site": f"site{len(out) % 40}",
            "region": f"region{len(out) % 7}",
            "tenant": f"tenant{len(out) % 11}",
        }
    return out


def read_trace(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    from netspectra.capture.reader import CaptureReader

    return [(b.src_ip, b.dst_ip) for b in CaptureReader(path)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path, default=Path("/tmp/zipf.pcap"))
    ap.add_argument("--prefixes", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--bits",
        default="auto",
        help="bucket-index widths to measure: auto (the default) and/or numbers, e.g. auto,16",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from netspectra.config.enrichment import EnrichmentConfig
    from netspectra.enrich.enricher import Enricher
    from netspectra.enrich.kernels import enrich_side_ref

    WORK.mkdir(parents=True, exist_ok=True)
    db = WORK / f"bench-asn-country-{args.prefixes}.mmdb"
    result: dict[str, object] = {"prefixes": args.prefixes}
    if not db.exists():
        print(f"building {db} ({args.prefixes} networks, once) ...", flush=True)
        seconds, count = build_database(db, args.prefixes)
        result["db_build_s"] = round(seconds, 1)
        print(f"  built in {seconds:.0f} s ({count} networks)")
    import maxminddb

    with maxminddb.open_database(str(db)) as reader:
        result["db_networks"] = sum(1 for _ in reader)
    print(f"database: {db.name}, {result['db_networks']} networks (as the reader walks them)")
    if not args.trace.exists():
        print(f"generating {args.trace} ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "netspectra", "gen", str(args.trace), "--packets", "5000000",
             "--flows", "500000", "--seed", "7"],
            check=True, capture_output=True,
        )  # fmt: skip
    batches = read_trace(args.trace)
    rows = sum(s.shape[0] for s, _ in batches)
    result.update(trace=str(args.trace), rows=rows, batches=len(batches))
    cfg = EnrichmentConfig.model_validate(
        {
            "geoip": {"asn_database": str(db), "country_database": str(db)},
            "networks": networks_map(),
        }
    )
    for name in args.bits.split(","):
        bits = None if name == "auto" else int(name)
        t0, c0 = time.perf_counter(), time.thread_time()
        enricher = Enricher.from_config(cfg, bits4=bits, bits6=bits)
        load_s, load_cpu = time.perf_counter() - t0, time.thread_time() - c0
        table = enricher.table
        enricher.enrich(batches[0][0][:64], batches[0][1][:64])  # kernels compiled / loaded from cache
        best = best_cpu = float("inf")
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.thread_time()
            for src, dst in batches:
                enricher.enrich(src, dst)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.thread_time() - c0)
        rate = rows / best
        cpu_rate = rows / best_cpu
        m = enricher.metrics()["misses"]
        per = args.repeat  # the 64-row warm-up call is negligible
        print(
            f"index bits={name} (IPv4 {32 - table.shift4}, IPv6 {61 - table.shift6}): load+compile "
            f"{load_cpu:.1f} s CPU ({load_s:.1f} s wall), table {len(table.steps4)} IPv4 + "
            f"{len(table.steps6)} IPv6 ranges ({table.nbytes / 2**20:.1f} MiB); "
            f"enrich {cpu_rate / 1e6:.1f} M rows/s per core "
            f"(CPU time {best_cpu:.3f} s for {rows} rows, both addresses; wall {rate / 1e6:.1f} M rows/s); "
            f"unknown AS src {m['SrcAS'] / per / rows:.1%}"
        )
        result[f"bits_{name}"] = {
            "load_s": round(load_s, 2),
            "load_cpu_s": round(load_cpu, 2),
            "ranges4": len(table.steps4),
            "ranges6": len(table.steps6),
            "table_mib": round(table.nbytes / 2**20, 1),
            "rows_per_cpu_s": round(cpu_rate),
            "cpu_seconds": round(best_cpu, 4),
            "rows_per_wall_s": round(rate),
            "wall_seconds": round(best, 4),
        }
    src, dst = batches[0]
    sample = min(20_000, src.shape[0])
    t0 = time.perf_counter()
    enrich_side_ref(src[:sample], *table.kernel_args())
    ref_rate = sample / (time.perf_counter() - t0)
    print(f"plain-Python reference: {ref_rate / 1e3:.1f} k addresses/s (one side)")
    result["reference_addresses_per_s"] = round(ref_rate)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
