#!/usr/bin/env python3
"""The collector's long fuzz run: many random and mutated export datagrams through FlowDecoder.

Usage: python tools/fuzz_collect.py [--datagrams 1000000] [--batch 256] [--seed 1] [--check-every 50]

Datagrams are random bytes, random bytes behind a valid NetFlow v5/v9/IPFIX/sFlow header, or the
test cases' valid datagrams with a few bytes overwritten (lengths, counts, ids set to 0, 0xFF or
anything), cut or extended — from several exporter addresses, in batches like the receive layer's.
One FlowDecoder with its default limits takes them all (templates, waiting sets and exporters
accumulate as in a long-running collector); it must never raise, never take more than
``--max-batch-s`` on a batch (a hang), and its state must stay within the configured limits.
Every ``--check-every``-th batch is also decoded, datagram by datagram, by a second decoder without
waiting sets and by the plain-Python reference, and both must give the same rows.

Prints a summary (datagrams/s, rows, errors by reason, peak state, slowest batch) and exits 1 on the
first failure, after printing the datagrams of the failing batch as hex.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from collect_cases import ALL_CASES  # noqa: E402

from netspectra.collect.decoder import FlowDecoder  # noqa: E402
from netspectra.collect.records import DatagramBatch  # noqa: E402
from netspectra.collect.reference import ReferenceDecoder  # noqa: E402
from netspectra.config.collect import CollectConfig  # noqa: E402

HEADERS = [
    b"\x00\x05",
    b"\x00\x09",
    b"\x00\x0a",
    b"\x00\x00\x00\x05\x00\x00\x00\x01",
    b"\x00\x00\x00\x05\x00\x00\x00\x02",
]


def make_datagram(rng: np.random.Generator, seeds: list[bytes]) -> bytes:
    kind = rng.integers(0, 10)
    if kind == 0:
        return rng.bytes(int(rng.integers(0, 1500)))
    if kind <= 2:
        return HEADERS[int(rng.integers(0, len(HEADERS)))] + rng.bytes(int(rng.integers(0, 800)))
    data = bytearray(seeds[int(rng.integers(0, len(seeds)))])
    for _ in range(int(rng.integers(1, 8))):
        if not data:
            break
        pos = int(rng.integers(0, len(data)))
        data[pos] = int(rng.choice([0, 0xFF, 1, 4, int(rng.integers(0, 256))]))
    if rng.random() < 0.3:
        data = data[: int(rng.integers(0, len(data) + 1))]
    if rng.random() < 0.1:
        data += rng.bytes(int(rng.integers(1, 64)))
    return bytes(data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datagrams", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exporters", type=int, default=50, help="distinct sender addresses")
    ap.add_argument("--check-every", type=int, default=50, help="compare with the reference every N batches")
    ap.add_argument("--max-batch-s", type=float, default=5.0, help="a batch slower than this is a hang")
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    seeds = [p for case in ALL_CASES.values() for p in case()]
    cfg = CollectConfig()
    dec = FlowDecoder(cfg)
    senders = [f"10.{i // 250}.{i % 250}.1" for i in range(args.exporters)]
    done = rows = 0
    slowest = 0.0
    t0 = time.perf_counter()
    nb = 0
    while done < args.datagrams:
        n = min(args.batch, args.datagrams - done)
        payloads = [make_datagram(rng, seeds) for _ in range(n)]
        sender = senders[nb % len(senders)]
        batch = DatagramBatch.from_payloads(payloads, sender, 1_700_000_000 * 10**9 + nb * 10**8)
        t = time.perf_counter()
        try:
            res = dec.decode(batch)
            res.records.validate()
        except Exception:
            print("decode raised on this batch:", *(p.hex() for p in payloads), sep="\n", file=sys.stderr)
            raise
        dt = time.perf_counter() - t
        slowest = max(slowest, dt)
        if dt > args.max_batch_s:
            print(
                f"batch {nb} took {dt:.1f} s (a hang?):",
                *(p.hex() for p in payloads),
                sep="\n",
                file=sys.stderr,
            )
            return 1
        if len(dec.templates) > cfg.max_templates or dec.pending.bytes > cfg.pending_max_bytes:
            print(f"state over its limits: {len(dec.templates)} templates, {dec.pending.bytes} pending bytes")
            return 1
        if args.check_every and nb % args.check_every == 0:
            k = FlowDecoder(CollectConfig(pending_max_age="0s"))
            ref = ReferenceDecoder()
            for p in payloads:
                got = k.decode(DatagramBatch.from_payloads([p], sender)).records.as_dicts()
                for g in got:
                    g.pop("hdr_off")
                want, _ = ref.decode(p, sender)
                if got != want:
                    print("kernel and reference disagree on:", p.hex(), got, want, sep="\n", file=sys.stderr)
                    return 1
        rows += len(res.records)
        done += n
        nb += 1
        if nb % 400 == 0:
            print(f"  {done} datagrams, {rows} rows, {time.perf_counter() - t0:.0f} s", flush=True)
    elapsed = time.perf_counter() - t0
    st = dec.stats.as_dict()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{done} datagrams in {elapsed:.1f} s ({done / elapsed:,.0f}/s incl. generation), {rows} rows")
    print(f"decode errors by reason: {st['errors']}")
    rejected = st["totals"]["templates_rejected"]
    print(f"templates kept {len(dec.templates)} (limit {cfg.max_templates}), rejected {rejected}")
    print(f"waiting sets {len(dec.pending)} ({dec.pending.bytes} bytes), streams {dec.registry.n_streams}")
    print(f"slowest batch {slowest * 1000:.1f} ms, peak RSS {peak_mb:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
