#!/usr/bin/env python3
"""Enrichment and rollups, as a user meets them: ``netspectra analyze`` with and without enrichment, and a
30-day top-N by SrcAS from the rollup tables of the embedded ClickHouse.

Usage:
    python benchmarks/bench_rollup.py analyze [--trace /tmp/zipf.pcap] [--prefixes 520000] [--repeat 3]
        [--primed]
    python benchmarks/bench_rollup.py topn [--rows 51840000] [--repeat 7] [--data-dir DIR]
    python benchmarks/bench_rollup.py kernel [--rows 5000000] [--groups 3 100000] [--repeat 5]
    (--json OUT.json for either)

``analyze``: the whole command (``python -m netspectra analyze TRACE -c CONFIG --json``: process start,
imports, configuration, database loads, kernel cache, the analysis, the summary), wall time and
CPU time (user + system of the process, every thread: what other processes do not inflate), best and
median of ``--repeat`` rounds, each configuration in its own process on the same page-cached trace (the
``netspectra gen`` Zipf trace of 5 M packets, made if missing). Configurations: the shipped one (exact + two
sketches); the same plus a rollup task (auto dimensions: protocol, exporter, interfaces); the same plus
an ``enrichment`` section (so the rollup task is keyed on AS numbers, countries and network names of both
addresses too) with (a) the MaxMind test databases and a 6-network map, (b) an MMDB of ``--prefixes``
networks as both the ASN and the country database (bench_enrich.py builds it, cached under
benchmarks/_work/) and 2,000 networks with five attributes. Every round runs each configuration once, in
turn (a slow spell of a shared machine hits one round's runs alike); an enriched configuration is
compared with "shipped + rollup" by best, by median and by the median of the rounds' paired ratios, as
time ratios and as the issue words its bound: the whole rate with enrichment as a percentage of the rate
without (within 25 %: at least 75 %).
``--primed``: each timed command runs once more just before, untimed, so that every timed process
starts from the free memory its own command left (see ``--help``: on a VM that returns free memory to its
host, plain rounds make each enriched run fault in its extra memory cold).

``kernel`` (loop only, not a whole command): :func:`netspectra.rollup.kernels.aggregate_rows` alone over
``--rows`` packet rows in chunks of 8,192 (as :meth:`~netspectra.rollup.task.RollupTask.update` calls it),
the rows' keys drawn from ``--groups`` distinct 5-word keys in one bucket; thread CPU per row, best and
median of ``--repeat``. A few groups: the records stay in the cache, what is left is the kernel's own
work; 100,000: a table of ~8 MB, the cache misses.

``topn``: a fresh chdb database filled with ``--rows`` rows of ``rollup_1m`` over 30 days (generated in
ClickHouse from ``numbers()``, a day at a time in time order as a writer's rows arrive: one row per
minute and (protocol, SrcAS, DstAS, SrcCountry, DstCountry) tuple, each minute the 625 most popular of
4,000 tuples and 625 others at random), ``rollup_5m`` and ``rollup_1h`` aggregated from it by ``INSERT …
SELECT … GROUP BY``, and the last day of each written twice (a newer version: FINAL counts it once); then
:func:`netspectra.storage.rollups.top_n` by SrcAS over the 30 days (which picks ``rollup_1h``), first call
and best of ``--repeat``, and the same query forced onto the 1-minute table for scale.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "_work"
MMDB = ROOT.parent / "shared" / "data" / "mmdb"
DAY_S = 86_400


# --------------------------------------------------------------------------------------------------
# analyze
# --------------------------------------------------------------------------------------------------


#: Short names of the configurations of :func:`_configs`, in order (``--configs``).
CONFIGS = ("shipped", "rollup", "small", "large")


def _configs(prefixes: int) -> dict[str, dict[str, Any]]:
    import yaml

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_enrich import build_database, networks_map

    shipped = yaml.safe_load(
        (ROOT / "configs" / "config.yaml")
        .read_text()
        .replace("${SMTP_PORT}", "0")
        .replace("${CLICKHOUSE_PORT}", "0")
    )
    rollup = json.loads(json.dumps(shipped))
    rollup["aggregator"]["types"] = [*shipped["aggregator"]["types"], "rollup"]
    rollup["aggregator"]["rollup"] = {"tasks": [{"name": "traffic"}]}
    small = json.loads(json.dumps(rollup))
    small["enrichment"] = {
        "geoip": {
            "asn_database": str(MMDB / "GeoLite2-ASN-Test.mmdb"),
            "country_database": str(MMDB / "GeoLite2-Country-Test.mmdb"),
        },
        "networks": {
            "10.0.0.0/8": {"name": "lan", "role": "internal"},
            "172.16.0.0/12": {"name": "lan2", "role": "internal"},
            "192.168.0.0/16": {"name": "home", "role": "internal"},
            "100.64.0.0/10": {"name": "cgnat", "role": "provider"},
            "2001:db8::/32": {"name": "doc", "role": "lab"},
            "fc00::/7": {"name": "ula", "role": "internal"},
        },
    }
    db = WORK / f"bench-asn-country-{prefixes}.mmdb"
    if not db.exists():
        print(f"building {db} ({prefixes} networks, once; minutes) ...", flush=True)
        build_database(db, prefixes)
    large = json.loads(json.dumps(rollup))
    large["enrichment"] = {
        "geoip": {"asn_database": str(db), "country_database": str(db)},
        "networks": networks_map(),
    }
    return {
        "shipped": shipped,
        "shipped + rollup": rollup,
        "+ enrichment, MaxMind test databases": small,
        f"+ enrichment, {prefixes // 1000} k-network database": large,
    }


def _time_cli(trace: Path, cfg: Path, src: Path = ROOT / "src") -> tuple[float, dict[str, Any], float]:
    """Wall seconds, the ``--json`` summary and the CPU seconds (user + system, every thread) of one
    ``analyze`` process importing netspectra from ``src``: on a shared machine the wall clock counts
    other processes' time too."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", str(trace), "-c", str(cfg), "--json", "--top", "3"],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(src)},
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, json.loads(out.stdout), cpu


def bench_analyze(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    WORK.mkdir(parents=True, exist_ok=True)
    if not args.trace.exists():
        print(f"generating {args.trace} ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "netspectra", "gen", str(args.trace), "--packets", "5000000",
             "--flows", "500000", "--seed", "7"],
            check=True, capture_output=True,
        )  # fmt: skip
    args.trace.read_bytes()  # into the page cache
    results: dict[str, Any] = {"trace": str(args.trace), "rounds": args.repeat, "primed": args.primed}
    trees = {"this tree": ROOT / "src"}
    if args.baseline_src:
        trees = {"baseline": args.baseline_src.resolve(), **trees}
        results["baseline_src"] = str(args.baseline_src)
    with tempfile.TemporaryDirectory() as tmp:
        chosen: list[tuple[str, str, Path]] = []  # (short name, label, config file)
        for short, (name, doc) in zip(CONFIGS, _configs(args.prefixes).items(), strict=True):
            if args.configs and short not in args.configs:
                continue
            cfg = Path(tmp) / f"{short}.yaml"
            cfg.write_text(yaml.safe_dump(doc))
            chosen.append((short, name, cfg))
        runs: dict[tuple[str, str], list[tuple[float, dict[str, Any], float]]] = {}
        for short, _, cfg in chosen:
            for tree, src in trees.items():
                _time_cli(args.trace, cfg, src)  # numba cache, page cache, the database's compiled table
                runs[short, tree] = []
        # Every round runs every configuration (and tree) once, in turn: a slow spell of the machine
        # hits a round's runs alike, and each round gives a paired ratio (enriched / not, same round).
        for _ in range(args.repeat):
            for short, _, cfg in chosen:
                for tree, src in trees.items():
                    if args.primed:  # the same command just before, not timed (see --primed)
                        _time_cli(args.trace, cfg, src)
                    runs[short, tree].append(_time_cli(args.trace, cfg, src))
        for short, name, _ in chosen:
            for tree in trees:
                got = runs[short, tree]
                best, summary, _ = min(got, key=lambda r: r[0])
                cpu = min(r[2] for r in got)
                median = statistics.median(r[0] for r in got)
                cpu_median = statistics.median(r[2] for r in got)
                packets = summary["packets"]
                row = {
                    "seconds": round(best, 3),
                    "median_s": round(median, 3),
                    "packets_per_s": round(packets / best),
                    "inner_s": summary["elapsed_s"],
                    "cpu_s": round(cpu, 3),
                    "cpu_median_s": round(cpu_median, 3),
                    "runs_s": [round(r[0], 3) for r in got],
                    "cpu_runs_s": [round(r[2], 3) for r in got],
                }
                if "enrichment" in summary:
                    row["enrichment_stage_s"] = summary["enrichment"].get("seconds")
                    row["enriched_rows"] = summary["enrichment"]["rows"]
                    row["columns"] = summary["enrichment"]["columns"]
                ratio = ""
                ref = runs.get(("rollup", tree))
                if ref and short not in ("shipped", "rollup"):
                    paired = [r[0] / b[0] for r, b in zip(got, ref, strict=True)]
                    paired_cpu = [r[2] / b[2] for r, b in zip(got, ref, strict=True)]
                    row["vs_without_enrichment"] = round(best / min(b[0] for b in ref), 3)
                    ref_median = statistics.median(b[0] for b in ref)
                    row["median_vs_without_enrichment"] = round(median / ref_median, 3)
                    row["paired_ratios"] = [round(x, 3) for x in paired]
                    row["paired_median_ratio"] = round(statistics.median(paired), 3)
                    row["cpu_paired_median_ratio"] = round(statistics.median(paired_cpu), 3)
                    # the words: the whole *rate* with enrichment within 25 % of the rate without
                    keys = ("vs_without_enrichment", "median_vs_without_enrichment", "paired_median_ratio")
                    rates = [round(100 / row[k], 1) for k in keys]
                    row["rate_pct_of_without"] = dict(zip(("best", "median", "paired"), rates, strict=True))
                    ci = _median_ci(paired)
                    if ci is not None:  # higher time ratio, lower rate: the bounds swap
                        interval = [round(100 / ci[1], 1), round(100 / ci[0], 1)]
                        row["rate_pct_of_without"]["paired_ci95"] = interval
                    ratio = (
                        f"; vs without enrichment: best {row['vs_without_enrichment']:.2f}x, median "
                        f"{row['median_vs_without_enrichment']:.2f}x, paired per round "
                        f"{row['paired_median_ratio']:.2f}x "
                        f"(CPU {row['cpu_paired_median_ratio']:.2f}x); whole rate "
                        f"{rates[0]:.0f} / {rates[1]:.0f} / {rates[2]:.0f} % of the rate without"
                    )
                    if ci is not None:
                        low, high = row["rate_pct_of_without"]["paired_ci95"]
                        ratio += f" (paired: 95 % confidence interval of the median {low:.0f}–{high:.0f} %)"
                results[name if len(trees) == 1 else f"{name} ({tree})"] = row
                label = name if len(trees) == 1 else f"{name} [{tree}]"
                print(
                    f"{label:58s} {best:6.2f} s (median {median:.2f})  "
                    f"{packets / best / 1e6:5.2f} M packets/s "
                    f"whole command (analysis alone {summary['elapsed_s']:.2f} s); "
                    f"CPU {cpu:.2f} s, median {cpu_median:.2f} s{ratio}",
                    flush=True,
                )
    return results


def _median_ci(xs: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval of the median of ``xs`` (order statistics: the number of
    samples below the true median is binomial(n, 1/2)); ``None`` with too few samples (fewer than 6 at
    95 %). What a noisy machine's paired ratios support, without assuming their distribution."""
    n = len(xs)
    tail = (1 - level) / 2
    k = 0  # the interval is [x_(k+1), x_(n-k)] (1-based) while P(X <= k) <= tail
    cum = 0.0
    while True:
        cum += math.comb(n, k) / 2**n
        if cum > tail:
            break
        k += 1
    if k == 0:
        return None
    s = sorted(xs)
    return s[k - 1], s[n - k]


# --------------------------------------------------------------------------------------------------
# the counting kernel alone
# --------------------------------------------------------------------------------------------------


def bench_kernel(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from netspectra.rollup import kernels as rk
    from netspectra.rollup.task import CHUNK, RESOLUTIONS, _Table

    rng = np.random.default_rng(7)
    chunks = max(1, args.rows // CHUNK)
    end = np.full(CHUNK, 1_767_225_600 * 10**9, np.int64)  # one minute
    nbytes = rng.integers(60, 1500, CHUNK, dtype=np.uint64)
    none_i, none_u = np.empty(0, np.int64), np.empty(0, np.uint64)
    results: dict[str, Any] = {"rows": chunks * CHUNK}
    for groups in args.groups:
        keys = rng.integers(0, 2**32, size=(groups, 5), dtype=np.uint64).astype(np.uint32)
        mats = [keys[rng.integers(0, groups, CHUNK)] for _ in range(8)]
        table = _Table(5, 1 << max(10, (4 * groups - 1).bit_length()), True)

        def run(mats: list[Any] = mats, table: Any = table) -> float:
            t = time.thread_time()
            width, limit = RESOLUTIONS[0].ns, table.limit(10**9)
            for c in range(chunks):
                got = rk.aggregate_rows(
                    0, end, none_i, none_u, nbytes, mats[c % 8], width, 10**18, limit,
                    0, table.rec, table.reci, table.rec32, table.rw, table.epoch, table.touched, table.meta,
                )  # fmt: skip
                assert got == CHUNK
                table.meta[rk.M_TOUCHED] = 0  # (as a carry leaves it; the entries stay pending)
            return time.thread_time() - t

        run()  # the kernel's cache load, the table's pages
        times = [run() for _ in range(args.repeat)]
        row = {
            "ns_per_row_best": round(min(times) / (chunks * CHUNK) * 1e9, 1),
            "ns_per_row_median": round(statistics.median(times) / (chunks * CHUNK) * 1e9, 1),
        }
        results[f"{groups}_groups"] = row
        print(
            f"aggregate_rows, {groups:,} groups, {chunks * CHUNK:,} rows: {row['ns_per_row_best']} ns/row "
            f"best, {row['ns_per_row_median']} median (thread CPU, loop only)",
            flush=True,
        )
    return results


# --------------------------------------------------------------------------------------------------
# top-N over the rollups
# --------------------------------------------------------------------------------------------------

_TUPLES = 4000
_PER_MINUTE = 1250
_DIMS = "TaskName, Protocol, SrcAS, DstAS, SrcCountry, DstCountry"


def _days(rows: int) -> int:
    """Days of traffic :func:`_fill` writes for ``rows`` rows of rollup_1m (at most 30)."""
    return min(30, -(-rows // (_PER_MINUTE * 1440)))


def _filled(store: Any, rows: int, t0_ns: int) -> bool:
    """Whether a complete :func:`_fill` of ``rows`` rows is there: its last step (the last day of rollup_1h
    written again with a newer version) is. The row count cannot tell: a fill makes about ``rows``."""
    last = t0_ns + (_days(rows) - 1) * DAY_S * 10**9
    got = store.query(
        f"SELECT uniqExact(TimestampNs) FROM {store.table('rollup_1h')} WHERE BucketNs >= {last}"
    )
    return bool(got) and int(got[0][0]) >= 2


def _fill(store: Any, rows: int, t0_ns: int) -> dict[str, int]:
    """About ``rows`` rows of rollup_1m over (at most) 30 days from ``t0_ns``: one per minute and tuple,
    each minute the 625 most popular of 4,000 tuples and 625 others drawn at random; rollup_5m and
    rollup_1h aggregated from them. Inserted a day at a time in time order, as a writer's rows arrive
    (so parts cover successive time ranges, as background merges leave them); then the last day's rows
    of every table once more with a newer version (provisional rows replaced by their final value: FINAL
    must count them once)."""
    days = _days(rows)
    half = _PER_MINUTE // 2
    day_ns = DAY_S * 10**9
    for day in range(days):
        m0 = day * 1440
        tup = f"if(J < {half}, J, {half} + cityHash64(M, J) % {_TUPLES - half})"
        store.execute(
            f"INSERT INTO {store.table('rollup_1m')} (TimestampNs, PeriodStartNs, TaskName, BucketNs, Epoch, "
            "Protocol, SrcAS, DstAS, SrcCountry, DstCountry, Packets, Bytes) "
            f"SELECT {t0_ns + (day + 1) * day_ns}, {t0_ns}, 'traffic', {t0_ns} + M * 60000000000, 0, "
            "[6, 17, 1][1 + T % 3], 1000 + T % 1777, 60000 + intDiv(T, 7) % 431, "
            "['US','DE','FR','CN','BR','JP','GB','NL','IN','SE'][1 + T % 10], "
            "['US','DE','FR','CN','BR','JP','GB','NL','IN','SE'][1 + intDiv(T, 10) % 10], "
            # popular tuples carry more: packets fall with the tuple's rank
            "sum(1 + intDiv(100000, T + 10) + cityHash64(M, T) % 50) AS P, P * (60 + cityHash64(T) % 1400) "
            f"FROM (SELECT {m0} + intDiv(number, {_PER_MINUTE}) AS M, number % {_PER_MINUTE} AS J, "
            f"{tup} AS T "
            f"FROM numbers({1440 * _PER_MINUTE})) GROUP BY M, T ORDER BY M"
        )
        lo, hi = t0_ns + day * day_ns, t0_ns + (day + 1) * day_ns
        for table, width in (("rollup_5m", 300), ("rollup_1h", 3600)):
            w = width * 10**9
            store.execute(
                f"INSERT INTO {store.table(table)} (TimestampNs, PeriodStartNs, BucketNs, Epoch, {_DIMS}, "
                f"Packets, Bytes) SELECT max(TimestampNs), {t0_ns}, intDiv(BucketNs, {w}) * {w} AS B, 0, "
                f"{_DIMS}, sum(Packets), sum(Bytes) FROM {store.table('rollup_1m')} "
                f"WHERE BucketNs >= {lo} AND BucketNs < {hi} GROUP BY B, {_DIMS} ORDER BY B"
            )
    last = t0_ns + (days - 1) * day_ns
    names = f"TimestampNs, PeriodStartNs, BucketNs, Epoch, {_DIMS}, Packets, Bytes"
    for table in ("rollup_1m", "rollup_5m", "rollup_1h"):
        again = names.replace("TimestampNs,", "TimestampNs + 1,", 1)
        store.execute(
            f"INSERT INTO {store.table(table)} ({names}) SELECT {again} FROM {store.table(table)} "
            f"WHERE BucketNs >= {last}"
        )
    counts = {}
    for table in ("rollup_1m", "rollup_5m", "rollup_1h"):
        counts[table] = int(store.query(f"SELECT count() FROM {store.table(table)}")[0][0])
    return counts


def bench_topn(args: argparse.Namespace) -> dict[str, Any]:
    from netspectra.storage.clickhouse_config import ClickHouseConfig
    from netspectra.storage.rollups import top_n
    from netspectra.storage.store import connect_store

    data_dir = args.data_dir or str(WORK / "chdb-topn")
    database = f"bench_topn_v2_{args.rows}"
    ch = ClickHouseConfig(data_dir=data_dir, database=database)
    store = connect_store(ch)
    t0_ns = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
    end_ns = t0_ns + 30 * DAY_S * 10**9
    now = end_ns + 3600 * 10**9
    counts = {
        t: int(store.query(f"SELECT count() FROM {store.table(t)}")[0][0]) for t in ("rollup_1m", "rollup_1h")
    }
    if not _filled(store, args.rows, t0_ns):  # (an interrupted fill, a fresh database: fill again)
        for t in ("rollup_1m", "rollup_5m", "rollup_1h"):
            store.execute(f"TRUNCATE TABLE {store.table(t)}")
        t = time.perf_counter()
        counts = _fill(store, args.rows, t0_ns)
        print(f"filled in {time.perf_counter() - t:.0f} s: {counts}", flush=True)
    else:
        counts["rollup_5m"] = int(store.query(f"SELECT count() FROM {store.table('rollup_5m')}")[0][0])
    result: dict[str, Any] = {"rows": counts, "data_dir": data_dir}

    def once(**kw: Any) -> tuple[float, Any]:
        t = time.perf_counter()
        got = top_n(store, "traffic", "SrcAS", "bytes", (), t0_ns, end_ns, 10, now_ns=now, **kw)
        return time.perf_counter() - t, got

    first, top = once()
    times = [once()[0] for _ in range(args.repeat)]
    fine_first, fine = once(resolution_s=60)
    fine_times = [once(resolution_s=60)[0] for _ in range(max(1, args.repeat // 3))]
    assert top.total_bytes == fine.total_bytes and [v.value for v in top.values] == [
        v.value for v in fine.values
    ]
    result.update(
        table=top.choice.table,
        reason=top.choice.reason,
        first_ms=round(first * 1000, 1),
        best_ms=round(min(times) * 1000, 1),
        median_ms=round(sorted(times)[len(times) // 2] * 1000, 1),
        top=[(v.value, v.bytes) for v in top.values[:3]],
        one_minute_table_best_ms=round(min(fine_times) * 1000, 1),
        one_minute_table_first_ms=round(fine_first * 1000, 1),
    )
    print(
        f"30-day top-10 SrcAS over {counts['rollup_1m']:,} rows of rollup_1m: answered from "
        f"{top.choice.table} "
        f"({counts['rollup_1h']:,} rows) in {result['best_ms']} ms best, {result['median_ms']} ms median, "
        f"{result['first_ms']} ms first; from rollup_1m itself {result['one_minute_table_best_ms']} ms",
        flush=True,
    )
    store.close()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    a = sub.add_parser("analyze")
    a.add_argument("--trace", type=Path, default=Path("/tmp/zipf.pcap"))
    a.add_argument("--prefixes", type=int, default=520_000)
    a.add_argument("--repeat", type=int, default=3)
    a.add_argument("--json", type=Path)
    a.add_argument(
        "--baseline-src",
        type=Path,
        help="another tree's src directory (e.g. `git archive COMMIT src | tar -x -C /tmp/base`): every "
        "configuration's runs alternate between it and this tree, side by side",
    )
    a.add_argument(
        "--configs",
        nargs="+",
        choices=CONFIGS,
        help="run only these configurations (default: all; 'rollup' is the reference of the ratios)",
    )
    a.add_argument(
        "--primed",
        action="store_true",
        help="run each timed command once more just before it, untimed: every timed process then starts "
        "from the memory its own command left free. On a VM that hands free memory back to its host "
        "(virtio-balloon free page reporting), memory freed seconds ago is fast to fault in again and "
        "older free memory slow (here up to ~10 ms per MB in 2 MB pages): in plain rounds each enriched "
        "run follows a smaller run and faults in ~75 MB more that the previous process did not leave",
    )
    k = sub.add_parser("kernel")
    k.add_argument("--rows", type=int, default=5_000_000)
    k.add_argument("--groups", type=int, nargs="+", default=[3, 100_000])
    k.add_argument("--repeat", type=int, default=5)
    k.add_argument("--json", type=Path)
    t = sub.add_parser("topn")
    t.add_argument("--rows", type=int, default=54_000_000)
    t.add_argument("--repeat", type=int, default=7)
    t.add_argument("--data-dir", default="")
    t.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = {"analyze": bench_analyze, "kernel": bench_kernel, "topn": bench_topn}[args.what](args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
