"""Accuracy and speed of the heavy-hitter sketch (skt_type 0, the original's "CountMin") vs exact truth.

The literature's protocol: a flow is a heavy hitter when its packets (bytes) reach a fraction ``phi``
of all packets (bytes) of the stream; the sketch reports its heavy hitters at that threshold and is
scored against the exact truth (``np.unique`` over the encoded keys):

* precision = TP / reported, recall = TP / true heavy hitters, F1 = their harmonic mean;
* ARE = mean over the true positives of ``|estimate - true| / true`` (the original's harness computed
  ``est - true/true``, an operator-precedence bug, and averaged over all flows, mice included).

Both size rules ("reduce", the default, and the original's "original") are measured at every memory
budget; memory is the whole sketch (both count and size pairs of every bucket). Speed: packets per second
of one ``update`` kernel over pre-encoded keys (one core), of key encoding, and of a NumPy baseline that
counts the same keys exactly with ``np.unique`` — all in the same run, on the same keys.

Input: a synthetic stream (``--packets`` packets over ``--flows`` flows with Zipf(``--zipf``) ranks,
wire lengths from an Internet-like mix, seeded) or a capture (``--trace PATH``, read with
:class:`netspectra.capture.reader.CaptureReader`).

Run: ``PYTHONPATH=src python3 benchmarks/sketch_accuracy.py --packets 5000000 --memory-kb 64,160,320,640``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspectra.batch import PacketBatch
from netspectra.sketches.base import HeavyHitters, HitterType
from netspectra.sketches.countmin import CountMinSketch
from netspectra.sketches.keys import encode_keys

#: (label, size_rule, estimator) of the variants measured: the default, the vote with the reduce rule,
#: and the original (replace rule, max-of-matching-counters query).
VARIANTS: tuple[tuple[str, str, str], ...] = (
    ("mv", "reduce", "mv"),
    ("vote", "reduce", "vote"),
    ("original", "original", "vote"),
)

#: Wire lengths of the synthetic stream and their probabilities (small ACKs, mid-size, full MTU frames).
LENGTH_MIX = (np.array([64, 128, 576, 1000, 1514]), np.array([0.40, 0.10, 0.10, 0.05, 0.35]))


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
    """Precision/recall/F1/ARE of one reported heavy-hitter list."""

    threshold: int
    true_hh: int
    reported: int
    tp: int
    precision: float
    recall: float
    f1: float
    are: float


def score(reported: HeavyHitters, truth_keys: np.ndarray, truth_values: np.ndarray, threshold: int) -> Score:
    """Score ``reported`` against the exact values: true heavy hitters are the keys with value
    ``>= threshold``; ARE is averaged over the true positives (``nan`` when there is none)."""
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
    if tp:
        t = true_v[ti].astype(np.float64)
        e = reported.values[ri].astype(np.float64)
        are = float(np.mean(np.abs(e - t) / t))
    else:
        are = float("nan")
    return Score(threshold, int(true_k.shape[0]), int(rep_k.shape[0]), tp, precision, recall, f1, are)


def evaluate(
    keys: np.ndarray,
    lengths: np.ndarray,
    truth: Truth,
    *,
    memory_kb: float,
    depth: int,
    size_rule: str,
    estimator: str,
    phi: float,
    seed: int,
    batch_size: int = 1 << 16,
) -> tuple[Score, Score, CountMinSketch]:
    """(count score, size score, the sketch) of one sketch of ``memory_kb`` KiB fed with ``keys`` in
    batches; thresholds are ``ceil(phi * total)`` packets and bytes."""
    L = keys.shape[1]
    width = CountMinSketch.width_for_memory(int(memory_kb * 1024), depth, L, estimator)
    cm = CountMinSketch(width, depth, seed, key_length=L, size_rule=size_rule, estimator=estimator)
    for o in range(0, keys.shape[0], batch_size):
        cm.update(keys[o : o + batch_size], lengths[o : o + batch_size])
    ct = max(1, int(np.ceil(phi * truth.total_packets)))
    st = max(1, int(np.ceil(phi * truth.total_bytes)))
    hh = cm.heavy_hitters(count_threshold=ct, size_threshold=st)
    return (
        score(hh[HitterType.COUNT], truth.keys, truth.counts, ct),
        score(hh[HitterType.SIZE], truth.keys, truth.sizes, st),
        cm,
    )


def _best(f, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_speed(
    batch: PacketBatch,
    fields: Sequence[str],
    *,
    width: int,
    depth: int,
    repeat: int = 3,
    batch_size: int = 1 << 16,
) -> dict[str, float]:
    """Packets/s (best of ``repeat``) of: key encoding, the sketch update kernel (every variant, keys
    already encoded), and the NumPy baseline (exact packet and byte counts with ``np.unique``)."""
    keys = encode_keys(batch, fields)
    lengths = batch.length
    n = keys.shape[0]
    out: dict[str, float] = {}
    out["encode"] = n / _best(lambda: encode_keys(batch, fields), repeat)
    for label, rule, est in VARIANTS:
        cm = CountMinSketch(width, depth, 1, key_length=keys.shape[1], size_rule=rule, estimator=est)
        cm.update(keys[:10], lengths[:10])  # compile outside the timing

        def run(cm: CountMinSketch = cm) -> None:
            cm.reset()
            for o in range(0, n, batch_size):
                cm.update(keys[o : o + batch_size], lengths[o : o + batch_size])

        out[f"update[{label}]"] = n / _best(run, repeat)
    out["numpy np.unique"] = n / _best(lambda: ground_truth(keys, lengths), repeat)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=5_000_000)
    ap.add_argument("--flows", type=int, default=0, help="distinct flows of the Zipf stream (0: packets/5)")
    ap.add_argument("--zipf", type=float, default=1.1)
    ap.add_argument("--trace", type=Path, help="a pcap/pcapng file instead of the synthetic stream")
    ap.add_argument("--fields", default="SrcIP", help="flow fields, comma-separated (default SrcIP)")
    ap.add_argument("--memory-kb", default="64,160,320,640", help="sketch sizes in KiB, comma-separated")
    ap.add_argument("--depth", default="2,3", help="depths, comma-separated")
    ap.add_argument("--phi", type=float, default=1e-4, help="threshold as a fraction of the total")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    args = ap.parse_args(argv)

    fields = [f.strip() for f in args.fields.split(",") if f.strip()]
    t0 = time.perf_counter()
    if args.trace:
        batch = trace_batch(args.trace, args.packets or None)
        source = f"trace {args.trace}"
    else:
        flows = args.flows or max(1, args.packets // 5)
        batch = zipf_batch(args.packets, flows, args.zipf, args.seed)
        source = f"Zipf({args.zipf}) stream, {flows} flows, seed {args.seed}"
    keys = encode_keys(batch, fields)
    lengths = batch.length
    truth = ground_truth(keys, lengths)
    print(
        f"# input: {source}; {keys.shape[0]} packets, "
        f"{truth.keys.shape[0]} distinct {'+'.join(fields)} keys, "
        f"{truth.total_bytes} bytes (prepared in {time.perf_counter() - t0:.1f} s)"
    )
    print(
        f"# thresholds: phi={args.phi:g} -> {int(np.ceil(args.phi * truth.total_packets))} packets, "
        f"{int(np.ceil(args.phi * truth.total_bytes))} bytes; key {keys.shape[1]} B"
    )
    head = (
        f"{'KiB':>6} {'d':>2} {'width':>7} {'rule':>8} | {'what':5} {'true':>5} {'rep':>5} "
        f"{'prec':>7} {'recall':>7} {'F1':>7} {'ARE':>8}"
    )
    print(head)
    print("-" * len(head))
    for kb in [float(x) for x in args.memory_kb.split(",")]:
        for depth in [int(x) for x in args.depth.split(",")]:
            for label, rule, est in VARIANTS:
                c, s, cm = evaluate(
                    keys,
                    lengths,
                    truth,
                    memory_kb=kb,
                    depth=depth,
                    size_rule=rule,
                    estimator=est,
                    phi=args.phi,
                    seed=args.seed,
                )
                for what, sc in (("count", c), ("size", s)):
                    print(
                        f"{kb:6g} {depth:2d} {cm.width:7d} {label:>8} | "
                        f"{what:5} {sc.true_hh:5d} {sc.reported:5d} "
                        f"{sc.precision:7.4f} {sc.recall:7.4f} {sc.f1:7.4f} {sc.are:8.5f}"
                    )
    if not args.no_speed:
        d0 = int(args.depth.split(",")[-1])
        kb = float(args.memory_kb.split(",")[-1])
        width = CountMinSketch.width_for_memory(int(kb * 1024), d0, keys.shape[1])
        print(
            f"\n# speed, one core, {keys.shape[0]} packets, depth {d0}, width {width} ({kb:g} KiB for mv), "
            f"batches of 65536:"
        )
        for name, pps in measure_speed(batch, fields, width=width, depth=d0).items():
            print(f"{name:>18}: {pps / 1e6:8.2f} M packets/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
