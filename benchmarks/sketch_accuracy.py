"""Accuracy and speed of the heavy-hitter sketches (skt_type 0, every variant) against exact truth.

The literature's protocol: a flow is a heavy hitter when its packets (bytes) reach a fraction ``phi``
of all packets (bytes) of the stream; each sketch reports its heavy hitters at that threshold and is
scored against the exact truth (``np.unique`` over the encoded keys):

* precision P = TP / reported, recall R = TP / true heavy hitters, F1 their harmonic mean;
* ARE = mean over the true positives of ``|estimate − true| / true``; signed error = the mean of
  ``(estimate − true) / true`` over the same flows (negative: the sketch under-counts);
* top-k precision: of the sketch's k largest estimates (at any threshold), the share that are among the
  k truly largest flows (HeavyKeeper's metric);
* merged F1: the stream split by flow hash in two (as two engines with SrcIP sharding see it), one
  sketch per half, merged, scored like a single sketch.

Every variant gets the same memory — what its arrays allocate (``memory_bytes``), counted the same way
for all — and the same stream; each (variant, memory) runs with every seed of ``--seeds`` (the hash
seeds and coins differ), and the table gives the mean (F1 also the minimum). Speed: packets per second
of the variant's update calls over pre-encoded keys in batches of 65,536, one core, best over seeds.

Variants: ``heavyguardian`` (the default), ``mv``, ``original`` (bit-exact with the Go original),
``cocosketch`` — see :mod:`netspectra.sketches.variants`.

Input: a synthetic stream (``--packets`` over ``--flows`` flows with Zipf(``--zipf``) ranks, wire
lengths from an Internet-like mix, i.i.d. order, seeded) or a capture (``--trace PATH``, e.g. one
``netspectra gen`` wrote).

Run (the figures of ``benchmarks/RESULTS.md``)::

    netspectra gen /tmp/hh5m.pcap --packets 5000000 --flows 500000 --seed 1
    PYTHONPATH=src python3 benchmarks/sketch_accuracy.py --trace /tmp/hh5m.pcap --memory-kb 50,160,320,640
    PYTHONPATH=src python3 benchmarks/sketch_accuracy.py --packets 5000000 --flows 1000000 --zipf 1.0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.sketches.base import HeavyHitters, HitterType, Sketch
from netspectra.sketches.cocosketch import CocoSketch
from netspectra.sketches.countmin import CountMinSketch
from netspectra.sketches.heavyguardian import HeavyGuardianSketch
from netspectra.sketches.keys import encode_keys
from netspectra.sketches.murmur import hash_rows

#: The variants measured, in table order; the first is the default.
VARIANTS: tuple[str, ...] = ("heavyguardian", "mv", "original", "cocosketch")
#: Rows of the majority-vote and CocoSketch variants (the shipped tasks' depth; the paper's d).
DEPTH = 2
BATCH = 1 << 16

#: Wire lengths of the synthetic stream and their probabilities (small ACKs, mid-size, full MTU frames).
LENGTH_MIX = (np.array([64, 128, 576, 1000, 1514]), np.array([0.40, 0.10, 0.10, 0.05, 0.35]))


def make_sketch(variant: str, memory: int, key_length: int, seed: int) -> Sketch:
    """A sketch of ``variant`` taking at most ``memory`` bytes of arrays, for keys of ``key_length``."""
    if variant == "heavyguardian":
        return HeavyGuardianSketch(memory, seed, key_length=key_length)
    if variant == "cocosketch":
        return CocoSketch(memory, seed, key_length=key_length, depth=DEPTH)
    if variant in ("mv", "original"):
        est = "mv" if variant == "mv" else "vote"
        width = CountMinSketch.width_for_memory(memory, DEPTH, key_length, est)
        rule = "reduce" if variant == "mv" else "original"
        return CountMinSketch(width, DEPTH, seed, key_length=key_length, size_rule=rule, estimator=est)
    raise ValueError(f"unknown variant {variant!r}; measured: {', '.join(VARIANTS)}")


def zipf_batch(packets: int, flows: int, zipf: float, seed: int) -> PacketBatch:
    """A seeded stream of ``packets`` packets over ``flows`` distinct random five-tuples (IPv4-mapped
    addresses) whose packet shares follow ``rank ** -zipf``; packets arrive in uniformly random order
    (i.i.d. draws), lengths from :data:`LENGTH_MIX`."""
    rng = np.random.default_rng(seed)
    w = np.arange(1, flows + 1, dtype=np.float64) ** -zipf
    flow_of = rng.choice(flows, size=packets, p=w / w.sum())
    ips = np.zeros((flows, 2, 16), np.uint8)
    ips[:, :, 10:12] = 0xFF
    ips[:, :, 12:] = rng.integers(0, 256, size=(flows, 2, 4), dtype=np.uint8)
    sport = rng.integers(1024, 65536, size=flows).astype(np.uint16)
    dport = rng.choice(np.array([80, 443, 53, 22], np.uint16), size=flows)
    proto = rng.choice(np.array([6, 17], np.uint8), size=flows)
    return PacketBatch(
        ts_ns=np.arange(packets, dtype=np.int64),
        src_ip=np.ascontiguousarray(ips[flow_of, 0]),
        dst_ip=np.ascontiguousarray(ips[flow_of, 1]),
        src_port=sport[flow_of],
        dst_port=dport[flow_of],
        protocol=proto[flow_of],
        length=rng.choice(LENGTH_MIX[0], size=packets, p=LENGTH_MIX[1]).astype(np.uint32),
    )


def trace_batch(path: Path, limit: int | None = None) -> PacketBatch:
    """The packets of a capture file (up to ``limit``) as one batch."""
    from netspectra.capture.reader import CaptureReader

    parts: list[PacketBatch] = []
    got = 0
    for b in CaptureReader(path):
        parts.append(b)
        got += len(b)
        if limit is not None and got >= limit:
            break
    batch = PacketBatch.concat(parts)
    return batch.head(limit) if limit is not None else batch


@dataclass(frozen=True)
class Truth:
    """Exact per-key totals: ``keys`` (F, L) uint8, ``counts`` and ``sizes`` uint64 (F,)."""

    keys: np.ndarray
    counts: np.ndarray
    sizes: np.ndarray

    @property
    def total_packets(self) -> int:
        return int(self.counts.sum())

    @property
    def total_bytes(self) -> int:
        return int(self.sizes.sum())


def ground_truth(keys: np.ndarray, lengths: np.ndarray) -> Truth:
    """Exact packets and bytes per distinct key (``np.unique`` over the key bytes)."""
    keys = np.ascontiguousarray(keys, dtype=np.uint8)
    void = keys.view(np.dtype((np.void, keys.shape[1]))).ravel()
    uniq, first, inv = np.unique(void, return_index=True, return_inverse=True)
    counts = np.bincount(inv, minlength=uniq.shape[0]).astype(np.uint64)
    sizes = np.bincount(inv, weights=lengths.astype(np.float64), minlength=uniq.shape[0])
    return Truth(keys[first], counts, np.rint(sizes).astype(np.uint64))


@dataclass(frozen=True)
class Score:
    """Precision/recall/F1/ARE/signed error of one reported heavy-hitter list."""

    threshold: int
    true_hh: int
    reported: int
    tp: int
    precision: float
    recall: float
    f1: float
    are: float
    signed: float


def score(reported: HeavyHitters, truth_keys: np.ndarray, truth_values: np.ndarray, threshold: int) -> Score:
    """Score ``reported`` against the exact values: true heavy hitters are the keys with value
    ``>= threshold``; ARE and the signed error average over the true positives (``nan`` if none)."""
    L = truth_keys.shape[1]
    vt = np.dtype((np.void, L))
    hot = truth_values >= np.uint64(threshold)
    true_k = np.ascontiguousarray(truth_keys[hot]).view(vt).ravel()
    true_v = truth_values[hot]
    rep_k = np.ascontiguousarray(reported.keys).view(vt).ravel()
    _, ti, ri = np.intersect1d(true_k, rep_k, return_indices=True)
    tp = int(ti.shape[0])
    precision = tp / rep_k.shape[0] if rep_k.shape[0] else 1.0
    recall = tp / true_k.shape[0] if true_k.shape[0] else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    are = signed = float("nan")
    if tp:
        t = true_v[ti].astype(np.float64)
        rel = (reported.values[ri].astype(np.float64) - t) / t
        are, signed = float(np.mean(np.abs(rel))), float(np.mean(rel))
    return Score(threshold, int(true_k.shape[0]), int(rep_k.shape[0]), tp, precision, recall, f1, are, signed)


def topk_precision(
    candidates: HeavyHitters, truth_keys: np.ndarray, truth_values: np.ndarray, k: int
) -> float:
    """Share of the sketch's ``k`` largest estimates that are among the ``k`` truly largest flows."""
    L = truth_keys.shape[1]
    vt = np.dtype((np.void, L))
    top_true = np.ascontiguousarray(
        truth_keys[np.argsort(-truth_values.astype(np.float64), kind="stable")[:k]]
    )
    top_rep = np.ascontiguousarray(candidates.keys[:k])  # HeavyHitters are sorted by value, descending
    return np.intersect1d(top_true.view(vt).ravel(), top_rep.view(vt).ravel()).shape[0] / k


def feed(sk: Sketch, keys: np.ndarray, lengths: np.ndarray) -> float:
    """Feed ``keys`` in batches of :data:`BATCH`; CPU seconds taken (``process_time``: on a shared
    machine, time spent waiting for a core is not counted, so packets / CPU second is the rate of one
    core — shared caches still slow it down)."""
    t0 = time.process_time()
    for o in range(0, keys.shape[0], BATCH):
        sk.update(keys[o : o + BATCH], lengths[o : o + BATCH])
    return max(time.process_time() - t0, 1e-9)


def merged_sketch(
    factory: Callable[[], Sketch], keys: np.ndarray, lengths: np.ndarray, shard_seed: int = 99
) -> Sketch:
    """Two sketches, each fed the flows of one half of a flow-hash split, the second merged into the
    first (what two engines with flow sharding produce)."""
    half = (hash_rows(np.ascontiguousarray(keys), shard_seed) & 1).astype(bool)
    a, b = factory(), factory()
    feed(a, keys[~half], lengths[~half])
    feed(b, keys[half], lengths[half])
    a.merge(b)
    return a


@dataclass(frozen=True)
class Row:
    """One (variant, memory) cell, averaged over seeds."""

    variant: str
    memory_kb: float
    memory_bytes: int
    seeds: int
    f1_count: float
    f1_count_min: float
    p_count: float
    r_count: float
    are_count: float
    signed_count: float
    f1_size: float
    f1_size_min: float
    p_size: float
    r_size: float
    are_size: float
    signed_size: float
    top100: float
    f1_merged: float
    mpps: float


def evaluate(
    keys: np.ndarray,
    lengths: np.ndarray,
    truth: Truth,
    *,
    variant: str,
    memory_kb: float,
    phi: float,
    seeds: Sequence[int],
    merge: bool = True,
    topk: int = 100,
) -> Row:
    """Measure one variant at one memory over ``seeds`` (module docstring)."""
    L = keys.shape[1]
    memory = int(memory_kb * 1024)
    ct = max(1, int(np.ceil(phi * truth.total_packets)))
    st = max(1, int(np.ceil(phi * truth.total_bytes)))
    cs, ss, tops, merged, rates = [], [], [], [], []
    mem = 0
    for seed in seeds:
        sk = make_sketch(variant, memory, L, seed)
        mem = sk.memory_bytes
        rates.append(keys.shape[0] / feed(sk, keys, lengths))
        hh = sk.heavy_hitters(count_threshold=ct, size_threshold=st)  # type: ignore[call-arg]
        cs.append(score(hh[HitterType.COUNT], truth.keys, truth.counts, ct))
        ss.append(score(hh[HitterType.SIZE], truth.keys, truth.sizes, st))
        every = sk.heavy_hitters(count_threshold=1, size_threshold=1)  # type: ignore[call-arg]
        tops.append(topk_precision(every[HitterType.COUNT], truth.keys, truth.counts, topk))
        if merge:
            m = merged_sketch(lambda seed=seed: make_sketch(variant, memory, L, seed), keys, lengths)
            mh = m.heavy_hitters(count_threshold=ct, size_threshold=st)  # type: ignore[call-arg]
            merged.append(score(mh[HitterType.COUNT], truth.keys, truth.counts, ct).f1)

    def mean(xs: list[Score], f: str) -> float:
        return float(np.nanmean([getattr(x, f) for x in xs]))

    return Row(
        variant, memory_kb, mem, len(seeds),
        mean(cs, "f1"), min(c.f1 for c in cs), mean(cs, "precision"), mean(cs, "recall"),
        mean(cs, "are"), mean(cs, "signed"),
        mean(ss, "f1"), min(s.f1 for s in ss), mean(ss, "precision"), mean(ss, "recall"),
        mean(ss, "are"), mean(ss, "signed"),
        float(np.mean(tops)), float(np.mean(merged)) if merged else float("nan"), max(rates) / 1e6,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=5_000_000, help="synthetic stream length")
    ap.add_argument("--limit", type=int, default=0, help="read at most this many packets of --trace")
    ap.add_argument("--flows", type=int, default=0, help="distinct flows of the Zipf stream (0: packets/5)")
    ap.add_argument("--zipf", type=float, default=1.1)
    ap.add_argument("--stream-seed", type=int, default=1, help="seed of the synthetic stream")
    ap.add_argument("--trace", type=Path, help="a pcap/pcapng file instead of the synthetic stream")
    ap.add_argument("--fields", default="SrcIP", help="flow fields, comma-separated (default SrcIP)")
    ap.add_argument("--memory-kb", default="50,160,320,640", help="memory per sketch in KiB, comma-separated")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="variants, comma-separated")
    ap.add_argument("--seeds", default="1,2,3", help="sketch seeds, comma-separated")
    ap.add_argument("--phi", type=float, default=1e-4, help="threshold as a fraction of the total")
    ap.add_argument("--no-merge", action="store_true", help="skip the two-engine merge measurement")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args(argv)

    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    t0 = time.perf_counter()
    if args.trace:
        batch = trace_batch(args.trace, args.limit or None)
        source = f"trace {args.trace}"
    else:
        flows = args.flows or max(1, args.packets // 5)
        batch = zipf_batch(args.packets, flows, args.zipf, args.stream_seed)
        source = f"Zipf({args.zipf}) stream, {flows} flows, seed {args.stream_seed}"
    keys = encode_keys(batch, fields)
    lengths = np.ascontiguousarray(batch.length, dtype=np.uint32)
    truth = ground_truth(keys, lengths)
    ct = int(np.ceil(args.phi * truth.total_packets))
    st = int(np.ceil(args.phi * truth.total_bytes))
    print(
        f"# input: {source}; {keys.shape[0]} packets, {truth.keys.shape[0]} distinct {'+'.join(fields)} "
        f"keys (key {keys.shape[1]} B), prepared in {time.perf_counter() - t0:.1f} s"
    )
    print(
        f"# thresholds phi={args.phi:g}: {ct} packets ({int((truth.counts >= ct).sum())} heavy), "
        f"{st} bytes ({int((truth.sizes >= st).sum())} heavy); seeds {args.seeds}; one core"
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    head = (
        f"{'variant':>13} {'KiB':>6} | {'F1 c':>6} {'min':>6} {'P':>6} {'R':>6} {'ARE':>7} {'signed':>8} | "
        f"{'F1 s':>6} {'min':>6} {'ARE':>7} {'signed':>8} | {'top100':>6} {'merged':>6} {'Mpps':>6}"
    )
    print(head)
    print("-" * len(head))
    rows = []
    for kb in [float(x) for x in args.memory_kb.split(",")]:
        for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
            r = evaluate(
                keys, lengths, truth, variant=variant, memory_kb=kb, phi=args.phi, seeds=seeds,
                merge=not args.no_merge,
            )  # fmt: skip
            rows.append(r)
            print(
                f"{variant:>13} {r.memory_bytes / 1024:6.0f} | {r.f1_count:6.4f} {r.f1_count_min:6.4f} "
                f"{r.p_count:6.4f} {r.r_count:6.4f} {r.are_count:7.2%} {r.signed_count:+8.3%} | "
                f"{r.f1_size:6.4f} {r.f1_size_min:6.4f} {r.are_size:7.2%} {r.signed_size:+8.3%} | "
                f"{r.top100:6.3f} {r.f1_merged:6.4f} {r.mpps:6.1f}",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"input": source, "rows": [asdict(r) for r in rows]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
