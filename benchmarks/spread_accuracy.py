"""Accuracy and speed of the spread sketches (skt_type 1, every variant) against exact distinct counts.

Usage (the figures of ``benchmarks/RESULTS.md``)::

    netspectra gen /tmp/ss7.pcap --packets 3000000 --flows 600000 --seed 7 --super-spreaders 100 --spread 55
    PYTHONPATH=src python3 benchmarks/spread_accuracy.py --trace /tmp/ss7.pcap --threshold 50 \\
        --memory-kb 100,250,500,1000,2662
    PYTHONPATH=src python3 benchmarks/spread_accuracy.py --packets 5000000 --threshold 512   # synthetic

The flow is the source address and the element the destination address (the original's
``ss_src_dst``). Every variant gets the same memory — what its arrays allocate (``memory_bytes``) —
and the same stream, with every seed of ``--seeds``; the table gives means over seeds (F1 also the
minimum) of, for super-spreaders at ``--threshold``:

* precision P, recall R, F1; near R = recall of the flows whose spread is in [T, 1.2·T);
* ARE = mean ``|est − true| / true`` over the true positives (the original's harness computed
  ``est − true/true``, a precedence bug) and the signed error, the mean of ``(est − true) / true``;
* merged F1: the stream split by flow hash in two (two engines with SrcIP sharding), one sketch per
  half, merged, scored like one sketch;
* Mpps: packets per CPU second of the update calls over pre-encoded flow‖element keys (one core,
  best over seeds).

Variants: ``spreadkeeper`` (the default), ``original`` (SuperSpread as the Go original: m 128, size 5,
base 0.5, b 1.08, depth 2, the width that fits the memory) and ``spreadsketch`` (depth 2, m 32).
Truth is exact: ``np.unique`` over the (flow, element) pairs, timed as the NumPy baseline.

Synthetic stream (seeded, :func:`synth_stream`): a Zipf background of sources talking to Zipf-popular
servers, planted super-spreaders whose spreads are log-uniform around the threshold (from a quarter of
it to 16 times it, so some planted sources are near misses), and heavy non-spreaders that send many
packets to few destinations (a sketch that counted packets instead of distinct elements would report
them). All packets are shuffled uniformly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from netspectra.batch import IPV4_MAPPED_PREFIX, PacketBatch
from netspectra.sketches.base import Sketch
from netspectra.sketches.keys import encode_flow_element
from netspectra.sketches.murmur import hash_rows
from netspectra.sketches.spreadkeeper import SpreadKeeperSketch
from netspectra.sketches.spreadsketch import SpreadSketch
from netspectra.sketches.superspread import SuperSpreadParams, SuperSpreadSketch

#: The variants measured, in table order; the first is the default.
VARIANTS: tuple[str, ...] = ("spreadkeeper", "original", "spreadsketch")
BATCH = 65536
_PLANT_SS = 0xC6120100  # 198.18.1.0/24: planted spreaders (never used by the background)
_PLANT_HEAVY = 0xC6120200  # 198.18.2.0/24: heavy non-spreaders
_BACKGROUND = 0x0A000000  # 10.0.0.0/8: background sources
_SERVERS = 0x64000000  # 100.0.0.0/8: background servers


def make_sketch(variant: str, memory: int, flow_len: int, elem_len: int, seed: int, threshold: int) -> Sketch:
    """A sketch of ``variant`` taking at most ``memory`` bytes of arrays."""
    if variant == "spreadkeeper":
        return SpreadKeeperSketch(memory, seed, flow_len=flow_len, elem_len=elem_len, threshold=threshold)
    if variant == "spreadsketch":
        return SpreadSketch(memory, seed, flow_len=flow_len, elem_len=elem_len, threshold=threshold)
    if variant == "original":
        width = max(1, memory // (2 * (128 + flow_len + 20)))  # SuperSpread's d·w·(m + L + 20) bytes
        return SuperSpreadSketch(
            SuperSpreadParams.from_config(
                width=width, depth=2, threshold=threshold, m=128, size=5, base=0.5, b=1.08,
                flow_len=flow_len, elem_len=elem_len, seed=seed,
            )
        )  # fmt: skip
    raise ValueError(f"unknown variant {variant!r}; measured: {', '.join(VARIANTS)}")


@dataclass(frozen=True)
class Stream:
    """Packets as IPv4 source / destination uint32 arrays, in arrival order."""

    src: np.ndarray
    dst: np.ndarray

    def __len__(self) -> int:
        return int(self.src.shape[0])


@dataclass(frozen=True)
class Accuracy:
    """Super-spreader detection at one threshold, against exact truth."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    are: float  #: mean |est − true| / true over true positives (nan when there are none)
    signed: float = float("nan")  #: mean (est − true) / true over true positives
    near_recall: float = float("nan")  #: recall of the flows with spread in [T, 1.2 T)


def synth_stream(
    packets: int,
    *,
    seed: int = 1,
    threshold: int = 512,
    spreaders: int = 40,
    heavy: int = 20,
    sources: int = 100_000,
    servers: int = 50_000,
    zipf: float = 1.1,
) -> Stream:
    """A seeded stream of about ``packets`` packets (see the module docstring for the model).

    Planted spreader ``k`` contacts ``spread_k`` distinct destinations (log-uniform in
    ``[threshold/4, 16·threshold]``) with 1 to 3 packets each; heavy non-spreader ``k`` sends
    ``packets / (20·heavy)`` packets to at most 16 destinations. The background fills the rest.
    """
    rng = np.random.default_rng(seed)
    src_parts: list[np.ndarray] = []
    dst_parts: list[np.ndarray] = []
    spreads = np.exp(rng.uniform(np.log(threshold / 4), np.log(threshold * 16), spreaders)).astype(np.int64)
    for k, s in enumerate(spreads):
        dsts = rng.choice(1 << 32, size=int(s), replace=False).astype(np.uint32)
        reps = rng.integers(1, 4, int(s))
        dst_parts.append(np.repeat(dsts, reps))
        src_parts.append(np.full(int(reps.sum()), _PLANT_SS + k, np.uint32))
    per_heavy = max(1, packets // (20 * max(heavy, 1)))
    for k in range(heavy):
        pool = rng.integers(0, 1 << 32, 16, dtype=np.uint32)
        dst_parts.append(pool[rng.integers(0, 16, per_heavy)])
        src_parts.append(np.full(per_heavy, _PLANT_HEAVY + k, np.uint32))
    rest = max(0, packets - sum(len(a) for a in src_parts))
    w_src = np.arange(1, sources + 1, dtype=np.float64) ** -zipf
    w_dst = 1.0 / np.arange(1, servers + 1, dtype=np.float64)
    src_parts.append(_BACKGROUND + rng.choice(sources, rest, p=w_src / w_src.sum()).astype(np.uint32))
    dst_parts.append(_SERVERS + rng.choice(servers, rest, p=w_dst / w_dst.sum()).astype(np.uint32))
    src = np.concatenate(src_parts)
    dst = np.concatenate(dst_parts)
    order = rng.permutation(src.shape[0])
    return Stream(np.ascontiguousarray(src[order]), np.ascontiguousarray(dst[order]))


def ipv4_mapped(a: np.ndarray) -> np.ndarray:
    """uint32 IPv4 addresses → uint8 (n, 16) IPv4-mapped IPv6 addresses (the batch encoding)."""
    out = np.empty((a.shape[0], 16), np.uint8)
    out[:, :12] = IPV4_MAPPED_PREFIX
    out[:, 12:] = a.astype(">u4").view(np.uint8).reshape(-1, 4)
    return out


def to_batch(stream: Stream) -> PacketBatch:
    """The stream as a PacketBatch (TCP, ports and lengths constant: the spread ignores them)."""
    n = len(stream)
    return PacketBatch(
        ts_ns=np.arange(n, dtype=np.int64),
        src_ip=ipv4_mapped(stream.src),
        dst_ip=ipv4_mapped(stream.dst),
        src_port=np.full(n, 40000, np.uint16),
        dst_port=np.full(n, 443, np.uint16),
        protocol=np.full(n, 6, np.uint8),
        length=np.full(n, 60, np.uint32),
    )


def exact_spreads_u32(stream: Stream) -> tuple[np.ndarray, np.ndarray]:
    """Exact distinct destinations per source: (sources uint32, spreads int64), via np.unique."""
    pairs = np.unique((stream.src.astype(np.uint64) << np.uint64(32)) | stream.dst.astype(np.uint64))
    srcs, counts = np.unique((pairs >> np.uint64(32)).astype(np.uint32), return_counts=True)
    return srcs, counts.astype(np.int64)


def exact_spreads_keys(flows: np.ndarray, elems: np.ndarray) -> dict[bytes, int]:
    """Exact distinct elements per flow for arbitrary fixed-width keys (for traces with IPv6)."""
    pair = np.ascontiguousarray(np.concatenate([flows, elems], axis=1))
    uniq = np.unique(pair.view(np.dtype((np.void, pair.shape[1]))).reshape(-1))
    u = np.frombuffer(uniq.tobytes(), np.uint8).reshape(-1, pair.shape[1])[:, : flows.shape[1]]
    fk = np.ascontiguousarray(u).view(np.dtype((np.void, flows.shape[1]))).reshape(-1)
    keys, counts = np.unique(fk, return_counts=True)
    return {bytes(k): int(c) for k, c in zip(keys, counts, strict=True)}


def evaluate(estimates: dict[bytes, int], truth: dict[bytes, int], threshold: int) -> Accuracy:
    """Precision, recall, F1, ARE and signed error of ``estimates`` (reported flows ≥ threshold)
    against the flows truly ≥ threshold."""
    reported = {k for k, v in estimates.items() if v >= threshold}
    actual = {k for k, v in truth.items() if v >= threshold}
    tp_keys = reported & actual
    tp, fp, fn = len(tp_keys), len(reported - actual), len(actual - reported)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    rel = [(estimates[k] - truth[k]) / truth[k] for k in tp_keys]
    near = {k for k in actual if truth[k] < 1.2 * threshold}
    return Accuracy(
        tp, fp, fn, precision, recall, f1,
        float(np.mean(np.abs(rel))) if rel else float("nan"),
        float(np.mean(rel)) if rel else float("nan"),
        len(near & reported) / len(near) if near else float("nan"),
    )  # fmt: skip


def reported(sk: Sketch, threshold: int) -> dict[bytes, int]:
    """The sketch's super-spreaders at ``threshold`` as {flow key bytes: estimate}."""
    hh = sk.super_spreaders(threshold)  # type: ignore[attr-defined]
    return {bytes(hh.keys[i]): int(hh.values[i]) for i in range(len(hh))}


def feed(sk: Sketch, keys: np.ndarray) -> float:
    """Feed flow‖element ``keys`` in batches of :data:`BATCH`; CPU seconds taken (``process_time``:
    time spent waiting for a core on a shared machine is not counted)."""
    t0 = time.process_time()
    for o in range(0, keys.shape[0], BATCH):
        sk.update(keys[o : o + BATCH], None)  # type: ignore[arg-type]
    return max(time.process_time() - t0, 1e-9)


def merged_sketch(factory: Callable[[], Sketch], keys: np.ndarray, flow_len: int) -> Sketch:
    """Two sketches fed the two halves of a flow-hash split, the second merged into the first."""
    half = (hash_rows(np.ascontiguousarray(keys[:, :flow_len]), 99) & 1).astype(bool)
    a, b = factory(), factory()
    feed(a, keys[~half])
    feed(b, keys[half])
    a.merge(b)
    return a


@dataclass(frozen=True)
class Row:
    """One (variant, memory) cell, averaged over seeds."""

    variant: str
    memory_kb: float
    memory_bytes: int
    seeds: int
    precision: float
    recall: float
    f1: float
    f1_min: float
    near_recall: float
    are: float
    signed: float
    f1_merged: float
    mpps: float


def measure(
    keys: np.ndarray,
    truth: dict[bytes, int],
    *,
    variant: str,
    memory_kb: float,
    threshold: int,
    flow_len: int,
    seeds: Sequence[int],
    merge: bool = True,
) -> Row:
    """One variant at one memory over ``seeds`` (module docstring)."""
    E = keys.shape[1] - flow_len
    memory = int(memory_kb * 1024)
    accs, merged, rates = [], [], []
    mem = 0
    for seed in seeds:
        sk = make_sketch(variant, memory, flow_len, E, seed, threshold)
        mem = sk.memory_bytes
        rates.append(keys.shape[0] / feed(sk, keys))
        accs.append(evaluate(reported(sk, threshold), truth, threshold))
        if merge:
            m = merged_sketch(
                lambda s=seed: make_sketch(variant, memory, flow_len, E, s, threshold), keys, flow_len
            )
            merged.append(evaluate(reported(m, threshold), truth, threshold).f1)

    def mean(f: str) -> float:
        xs = [getattr(a, f) for a in accs if not np.isnan(getattr(a, f))]
        return float(np.mean(xs)) if xs else float("nan")

    return Row(
        variant, memory_kb, mem, len(seeds), mean("precision"), mean("recall"), mean("f1"),
        min(a.f1 for a in accs), mean("near_recall"), mean("are"), mean("signed"),
        float(np.mean(merged)) if merged else float("nan"), max(rates) / 1e6,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=2_000_000, help="synthetic stream length")
    ap.add_argument("--trace", help="a pcap/pcapng file instead of the synthetic stream")
    ap.add_argument("--threshold", type=int, default=512, help="super-spreader threshold (distinct dsts)")
    ap.add_argument("--spreaders", type=int, default=40, help="planted super-spreaders (synthetic)")
    ap.add_argument("--stream-seed", type=int, default=1, help="seed of the synthetic stream")
    ap.add_argument("--seeds", default="1,2,3", help="sketch seeds, comma-separated")
    ap.add_argument("--memory-kb", default="100,250,500,1000,2662", help="memory per sketch, KiB")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="variants, comma-separated")
    ap.add_argument("--no-merge", action="store_true", help="skip the two-engine merge measurement")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    if args.trace:
        from netspectra.capture.reader import CaptureReader

        batch = CaptureReader(args.trace).read_all()
        label = args.trace
    else:
        stream = synth_stream(
            args.packets, seed=args.stream_seed, threshold=args.threshold, spreaders=args.spreaders
        )
        batch = to_batch(stream)
        label = f"synthetic {len(stream)} packets, seed {args.stream_seed}"
    keys = encode_flow_element(batch, ("SrcIP",), ("DstIP",))
    L = 16
    gen_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    truth = exact_spreads_keys(keys[:, :L], keys[:, L:])
    exact_s = time.perf_counter() - t0
    n = keys.shape[0]
    spreads = np.array(list(truth.values()))
    n_true = int((spreads >= args.threshold).sum())
    n_near = int(((spreads >= args.threshold) & (spreads < 1.2 * args.threshold)).sum())
    print(
        f"# input: {label}; {n} packets, {len(truth)} sources, {int(spreads.sum())} distinct pairs, "
        f"{n_true} with spread >= {args.threshold} ({n_near} below 1.2x); built in {gen_s:.1f} s"
    )
    print(f"# numpy exact baseline (np.unique over 32-byte pairs): {n / exact_s / 1e6:.2f} M packets/s")
    seeds = [int(s) for s in args.seeds.split(",")]
    hdr = (
        f"{'variant':>12} {'KiB':>6} | {'P':>6} {'R':>6} {'F1':>6} {'min':>6} {'near R':>6} "
        f"{'ARE':>7} {'signed':>8} | {'merged':>6} {'Mpps':>6}"
    )
    print(hdr)
    print("-" * len(hdr))
    rows = []
    for kb in [float(x) for x in args.memory_kb.split(",")]:
        for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
            r = measure(
                keys, truth, variant=variant, memory_kb=kb, threshold=args.threshold, flow_len=L,
                seeds=seeds, merge=not args.no_merge,
            )  # fmt: skip
            rows.append(r)
            print(
                f"{variant:>12} {r.memory_bytes / 1024:6.0f} | {r.precision:6.4f} {r.recall:6.4f} "
                f"{r.f1:6.4f} {r.f1_min:6.4f} {r.near_recall:6.3f} {r.are:7.2%} {r.signed:+8.3%} | "
                f"{r.f1_merged:6.4f} {r.mpps:6.1f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"input": str(label), "threshold": args.threshold, "rows": [asdict(r) for r in rows]}, fh
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
