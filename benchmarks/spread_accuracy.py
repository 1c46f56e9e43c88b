"""Accuracy and speed harness of the SuperSpread sketch (skt_type 1) against exact distinct counts.

Usage::

    PYTHONPATH=src python3 benchmarks/spread_accuracy.py                     # synthetic, 2 M packets
    PYTHONPATH=src python3 benchmarks/spread_accuracy.py --packets 5000000 --threshold 1024
    PYTHONPATH=src python3 benchmarks/spread_accuracy.py --trace capture.pcap --threshold 512

The flow is the source address and the element the destination address (the original's
``ss_src_dst``). For every configuration (by default the shipped ``ss_src_dst`` sizing, w 32768 d 2,
and the original's ``BenchmarkAggregator`` sizing, w 8192 d 2; both m 128, size 5, base 0.5, b 1.08)
it prints, for super-spreaders at ``--threshold``: precision, recall, F1 and ARE = mean
``|est − true| / true`` over the true positives (the original's harness computed ``est − true/true``,
a precedence bug). Truth is exact: ``np.unique`` over the (flow, element) pairs.

Speed, in the same run and on the same stream: the sketch kernel alone (keys encoded beforehand), the
whole sketch task (key encoding from a PacketBatch + kernel), and a NumPy baseline that computes the
exact per-source distinct counts with ``np.unique`` over packed uint64 (flow, element) pairs. Rates are
packets per second on one core (the kernels are single-threaded).

Synthetic stream (seeded, :func:`synth_stream`): a Zipf background of sources talking to Zipf-popular
servers, planted super-spreaders whose spreads are log-uniform around the threshold (from a quarter of
it to 16 times it, so some planted sources are near misses), and heavy non-spreaders that send many
packets to few destinations (a sketch that counted packets instead of distinct elements would report
them). All packets are shuffled uniformly.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np

from netspectra.batch import IPV4_MAPPED_PREFIX, PacketBatch
from netspectra.sketches.base import SketchTask
from netspectra.sketches.superspread import SuperSpreadSketch

#: (label, width, depth) of the configurations measured by default.
CONFIGS: tuple[tuple[str, int, int], ...] = (("ss_src_dst", 32768, 2), ("BenchmarkAggregator", 8192, 2))
BATCH = 65536
_PLANT_SS = 0xC6120100  # 198.18.1.0/24: planted spreaders (never used by the background)
_PLANT_HEAVY = 0xC6120200  # 198.18.2.0/24: heavy non-spreaders
_BACKGROUND = 0x0A000000  # 10.0.0.0/8: background sources
_SERVERS = 0x64000000  # 100.0.0.0/8: background servers


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
    # planted super-spreaders: distinct random destinations
    spreads = np.exp(rng.uniform(np.log(threshold / 4), np.log(threshold * 16), spreaders)).astype(np.int64)
    for k, s in enumerate(spreads):
        dsts = rng.choice(1 << 32, size=int(s), replace=False).astype(np.uint32)
        reps = rng.integers(1, 4, int(s))
        dst_parts.append(np.repeat(dsts, reps))
        src_parts.append(np.full(int(reps.sum()), _PLANT_SS + k, np.uint32))
    # heavy non-spreaders: many packets, few destinations
    per_heavy = max(1, packets // (20 * max(heavy, 1)))
    for k in range(heavy):
        pool = rng.integers(0, 1 << 32, 16, dtype=np.uint32)
        dst_parts.append(pool[rng.integers(0, 16, per_heavy)])
        src_parts.append(np.full(per_heavy, _PLANT_HEAVY + k, np.uint32))
    # Zipf background: source rank r has weight (r+1)^-zipf; servers are Zipf(1)-popular
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
    """The stream as a PacketBatch (TCP, ports and lengths constant: SuperSpread ignores them)."""
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
    """Precision, recall, F1 of ``estimates`` (reported flows ≥ threshold) vs flows truly ≥ threshold."""
    reported = {k for k, v in estimates.items() if v >= threshold}
    actual = {k for k, v in truth.items() if v >= threshold}
    tp_keys = reported & actual
    tp, fp, fn = len(tp_keys), len(reported - actual), len(actual - reported)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    are = (
        float(np.mean([abs(estimates[k] - truth[k]) / truth[k] for k in tp_keys]))
        if tp_keys
        else float("nan")
    )
    return Accuracy(tp, fp, fn, precision, recall, f1, are)


def make_task(width: int, depth: int, threshold: int, seed: int) -> SketchTask:
    """The original's ``ss_src_dst`` task at the given sizing (m 128, size 5, base 0.5, b 1.08)."""
    return SketchTask(
        name="ss_src_dst",
        skt_type=1,
        flow_fields=("SrcIP",),
        element_fields=("DstIP",),
        width=width,
        depth=depth,
        count_threshold=threshold,
        m=128,
        size=5,
        b=1.08,
        base=0.5,
        seed=seed,
    )


def run_config(
    batches: list[PacketBatch], width: int, depth: int, threshold: int, seed: int
) -> tuple[SketchTask, float, float]:
    """Feed ``batches`` twice through fresh tasks: once pre-encoded (kernel time), once whole (task time).

    Returns the task fed by the whole path, kernel seconds, task seconds; both runs see the same seed
    and input, so their states are identical (checked).
    """
    task = make_task(width, depth, threshold, seed)
    keys = [task.encode(b) for b in batches]
    # compile outside the timing (numba caches on disk, but the first call still loads)
    warm = make_task(64, 1, threshold, seed)
    warm.update(batches[0].head(16))
    t0 = time.perf_counter()
    for k in keys:
        task.sketch.update(k)
    kernel_s = time.perf_counter() - t0
    whole = make_task(width, depth, threshold, seed)
    t0 = time.perf_counter()
    for b in batches:
        whole.update(b)
    task_s = time.perf_counter() - t0
    sa, sb = task.sketch, whole.sketch
    assert isinstance(sa, SuperSpreadSketch) and isinstance(sb, SuperSpreadSketch)
    if not (np.array_equal(sa.values, sb.values) and np.array_equal(sa.regs, sb.regs)):
        raise AssertionError("pre-encoded and whole-task runs disagree: the sketch is not deterministic")
    return whole, kernel_s, task_s


def sketch_estimates(task: SketchTask, threshold: int) -> dict[bytes, int]:
    """Reported super-spreaders at ``threshold`` as {flow key bytes: estimate}."""
    sk = task.sketch
    assert isinstance(sk, SuperSpreadSketch)
    hh = sk.super_spreaders(threshold)
    return {bytes(hh.keys[i]): int(hh.values[i]) for i in range(len(hh))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=2_000_000, help="synthetic stream length")
    ap.add_argument("--trace", help="a pcap/pcapng file instead of the synthetic stream")
    ap.add_argument("--threshold", type=int, default=512, help="super-spreader threshold (distinct dsts)")
    ap.add_argument("--spreaders", type=int, default=40, help="planted super-spreaders (synthetic)")
    ap.add_argument("--seed", type=int, default=1, help="stream and sketch seed")
    ap.add_argument("--width", type=int, help="measure only this width (with --depth)")
    ap.add_argument("--depth", type=int, default=2)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    if args.trace:
        from netspectra.capture.reader import CaptureReader

        batch = CaptureReader(args.trace).read_all()
        label = args.trace
    else:
        stream = synth_stream(
            args.packets, seed=args.seed, threshold=args.threshold, spreaders=args.spreaders
        )
        batch = to_batch(stream)
        label = f"synthetic {len(stream)} packets, seed {args.seed}"
    gen_s = time.perf_counter() - t0
    n = len(batch)
    batches = [batch.take(slice(s, s + BATCH)) for s in range(0, n, BATCH)]

    # exact truth, timed as the NumPy baseline (uint64 pairs for IPv4-only input, void keys otherwise)
    t0 = time.perf_counter()
    v4 = bool(
        np.all(batch.src_ip[:, :12] == IPV4_MAPPED_PREFIX)
        and np.all(batch.dst_ip[:, :12] == IPV4_MAPPED_PREFIX)
    )
    if v4:
        src = np.ascontiguousarray(batch.src_ip[:, 12:]).view(">u4").reshape(-1).astype(np.uint32)
        dst = np.ascontiguousarray(batch.dst_ip[:, 12:]).view(">u4").reshape(-1).astype(np.uint32)
        srcs, spreads = exact_spreads_u32(Stream(src, dst))
        truth = {bytes(ipv4_mapped(srcs[i : i + 1])[0]): int(spreads[i]) for i in range(srcs.shape[0])}
    else:
        truth = exact_spreads_keys(batch.src_ip, batch.dst_ip)
    exact_s = time.perf_counter() - t0

    n_true = sum(1 for v in truth.values() if v >= args.threshold)
    print(f"input: {label}; {n} packets, {len(truth)} sources, {n_true} with spread >= {args.threshold}")
    print(f"  (built in {gen_s:.1f} s)")
    print(
        f"numpy exact baseline (np.unique over {'uint64' if v4 else '32-byte'} pairs): "
        f"{exact_s:.2f} s = {n / exact_s / 1e6:.2f} M packets/s"
    )
    configs = [("custom", args.width, args.depth)] if args.width else list(CONFIGS)
    hdr = (
        f"{'config':<20} {'w':>6} {'d':>2} {'MiB':>6} {'P':>6} {'R':>6} {'F1':>6} {'ARE':>7} "
        f"{'TP':>4} {'FP':>4} {'FN':>4} {'kernel Mp/s':>11} {'task Mp/s':>9} {'vs numpy':>8}"
    )
    print(hdr)
    for name, width, depth in configs:
        task, kernel_s, task_s = run_config(batches, width, depth, args.threshold, args.seed)
        acc = evaluate(sketch_estimates(task, args.threshold), truth, args.threshold)
        sk = task.sketch
        assert isinstance(sk, SuperSpreadSketch)
        print(
            f"{name:<20} {width:>6} {depth:>2} {sk.memory_bytes / 2**20:>6.1f} {acc.precision:>6.3f} "
            f"{acc.recall:>6.3f} {acc.f1:>6.3f} {acc.are:>7.4f} {acc.tp:>4} {acc.fp:>4} {acc.fn:>4} "
            f"{n / kernel_s / 1e6:>11.2f} {n / task_s / 1e6:>9.2f} {exact_s / kernel_s:>7.1f}x"
        )
        print(
            f"{'':<20} memory: ours {sk.memory_bytes / 2**20:.1f} MiB, original ≈ "
            f"{sk.original_memory_bytes / 2**20:.1f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
