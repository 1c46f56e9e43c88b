"""Flow-export collector: decode rate per core, and the UDP receive layer over loopback.

    python benchmarks/bench_collect.py                 # everything, a few seconds each
    python benchmarks/bench_collect.py --only decode   # decode only (decode | receive | lossless)

Decode (one thread, i.e. one core; datagrams built beforehand by ``netspectra.collect.build``, decoded
in batches of 256 as the receive layer hands them over):

* NetFlow v9 and IPFIX: 30 records of a 45-byte router template per datagram (addresses, ports,
  protocol, flags, counters, interfaces, times, next hop, ToS, AS), the template again every 20
  datagrams; NetFlow v5: 30 records per datagram;
* sFlow v5: 8 flow samples per datagram, each a 128-byte raw Ethernet/IPv4/TCP header and an
  extended switch record; "+ keys" adds the capture decoder over the headers
  (``keys_from_headers``: ``decode_records``), i.e. samples with their flow keys.

Receive (``--only receive``): a sender process writes pre-built 1 400-byte v9 datagrams with
``sendmmsg`` to 127.0.0.1 as fast as it can for ``--seconds``; the receiver is
``netspectra.collect.receiver.UdpReceiver`` counting the batches (``recvmmsg``, then the
``recvmsg_into`` fallback, then recvmmsg with the decoder in the receiving thread). Printed: datagrams
sent and received, kernel drops (SO_RXQ_OVFL, /proc/net/udp), rates.

Lossless (``--only lossless``): the same sender paced at ``--records-per-s`` (default 250 000 records/s,
i.e. ~8 300 datagrams/s of 30 records) and the receiver decoding: zero drops expected.

Service (``--only service``): the whole collector as ``netspectra collect`` runs it —
:class:`~netspectra.services.collect.CollectService`: listener, decoder, rows (``flow_batch``), the
bounded queue and the probe's publisher to a real ``nats-server`` (started here, core NATS, 16 shards) —
with the same sender paced at ``--records-per-s`` and then flat out (``--rates``). Printed: datagrams
sent, received, dropped by the kernel, records dropped by the collector's queue, rows published, and the
process's CPU time per record (listener, decoder, publisher together).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import socket
import sys
import time

import numpy as np

from netspectra.collect import build
from netspectra.collect.decoder import FlowDecoder
from netspectra.collect.headers import keys_from_headers
from netspectra.collect.receiver import UdpReceiver, proc_udp_drops
from netspectra.collect.records import DatagramBatch
from netspectra.config.collect import CollectConfig

BATCH = 256


def _batches(payloads: list[bytes]) -> list[DatagramBatch]:
    return [
        DatagramBatch.from_payloads(payloads[i : i + BATCH], "192.0.2.1", 1_700_000_000 * 10**9)
        for i in range(0, len(payloads), BATCH)
    ]


def _time_decode(payloads: list[bytes], repeat: int, keys: bool = False) -> tuple[float, float, int]:
    """Best wall and CPU (this thread) seconds over ``repeat`` passes of a fresh decoder over every
    batch, and the rows. CPU time is the per-core cost even when other work shares the machine."""
    batches = _batches(payloads)
    FlowDecoder().decode(batches[0])  # compile / load the kernels outside the timing
    best, best_cpu, rows = float("inf"), float("inf"), 0
    for _ in range(repeat):
        dec = FlowDecoder(CollectConfig(default_sampling_rate=1))
        t0, c0 = time.perf_counter(), time.thread_time()
        n = 0
        for b in batches:
            r = dec.decode(b).records
            if keys:
                keys_from_headers(r)
            n += len(r)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.thread_time() - c0)
        rows = n
    return best, best_cpu, rows


def bench_decode(records: int, repeat: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    cases = {
        "netflow9": build.synthetic_v9(records, 30, template_every=20),
        "ipfix": build.synthetic_ipfix(records, 30, template_every=20),
        "netflow5": _v5(records),
    }
    sf = build.synthetic_sflow(records // 3, 8)
    runs = [(name, p, False) for name, p in cases.items()] + [("sflow", sf, False), ("sflow+keys", sf, True)]
    for name, payloads, keys in runs:
        secs, cpu, rows = _time_decode(payloads, repeat, keys)
        out[name] = {
            "records": rows,
            "datagrams": len(payloads),
            "seconds": secs,
            "cpu_seconds": cpu,
            "records_per_s": rows / secs,
            "records_per_cpu_s": rows / cpu,
        }
    return out


def _v5(records: int) -> list[bytes]:
    f = build.synthetic_flows(records)
    out = []
    for start in range(0, records, 30):
        recs = [
            {
                k: int(f[k][i])
                for k in ("src", "dst", "sport", "dport", "proto", "packets", "bytes", "input", "output")
            }
            for i in range(start, min(start + 30, records))
        ]
        out.append(build.netflow5(recs, sequence=start, sampling=(1 << 14) | 100))
    return out


# --------------------------------------------------------------------------------------------------
# loopback sender (a separate process: the receiver must not share its interpreter)
# --------------------------------------------------------------------------------------------------


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _Msghdr), ("msg_len", ctypes.c_uint)]


def _sender(port: int, seconds: float, rate: float, result: mp.Queue) -> None:
    """Send v9 datagrams (template first) to 127.0.0.1:port with sendmmsg; ``rate`` datagrams/s (0:
    as fast as possible). Puts ``{"sent": n, "seconds": s}`` on ``result``."""
    libc = ctypes.CDLL(None, use_errno=True)
    payloads = build.synthetic_v9(30 * 4096, 30, template_every=20)
    n = len(payloads)
    burst = 64
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.connect(("127.0.0.1", port))
    bufs = [ctypes.create_string_buffer(p, len(p)) for p in payloads]
    iovs = (_Iovec * n)(*[_Iovec(ctypes.addressof(b), len(p)) for b, p in zip(bufs, payloads, strict=True)])
    msgs = (_Mmsghdr * (n + burst))()
    for k in range(n + burst):
        msgs[k].msg_hdr.msg_iov = ctypes.pointer(iovs[k % n])
        msgs[k].msg_hdr.msg_iovlen = 1
    size = ctypes.sizeof(_Mmsghdr)
    base = ctypes.addressof(msgs)
    fd = sock.fileno()
    sent = pos = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if rate > 0:
            due = int((now - t0) * rate)
            if sent >= due:
                time.sleep(min(0.001, (sent + burst - due) / rate))
                continue
        r = libc.sendmmsg(fd, ctypes.c_void_p(base + pos * size), burst, 0)
        if r < 0:
            err = ctypes.get_errno()
            if err in (105, 11):
                continue
            raise OSError(err, os.strerror(err))
        sent += r
        pos = (pos + r) % n
    result.put({"sent": sent, "seconds": time.perf_counter() - t0})
    sock.close()


def bench_receive(
    seconds: float, method: str, decode: bool, rate: float = 0.0, rcvbuf: int = 32 << 20
) -> dict:
    dec = FlowDecoder() if decode else None
    counts = {"datagrams": 0, "records": 0, "first": 0.0, "last": 0.0, "cpu0": 0.0, "cpu": 0.0, "n0": 0}

    def on_batch(b: DatagramBatch) -> None:
        now = time.perf_counter()
        if not counts["first"]:
            # the receiving thread's CPU clock from here on: its cost per datagram, whatever else runs
            counts["first"], counts["cpu0"], counts["n0"] = now, time.thread_time(), len(b)
        counts["datagrams"] += len(b)
        if dec is not None:
            counts["records"] += len(dec.decode(b).records)
        counts["last"] = time.perf_counter()
        counts["cpu"] = time.thread_time()

    if dec is not None:
        dec.decode(DatagramBatch.from_payloads(build.synthetic_v9(30, 30)))  # load the kernels first
    rx = UdpReceiver([("127.0.0.1", 0)], on_batch, rcvbuf=rcvbuf, batch=BATCH, method=method).start()
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_sender, args=(rx.ports[0], seconds, rate, q))
    p.start()
    sent = q.get(timeout=seconds + 120)
    p.join()
    time.sleep(0.5)  # let the receiver drain the socket
    st = rx.stats()[0]
    proc = proc_udp_drops(rx._listeners[0].sock)
    rx.stop()
    span = max(counts["last"] - counts["first"], 1e-9)
    cpu = max(counts["cpu"] - counts["cpu0"], 1e-9)
    after_first = counts["datagrams"] - counts["n0"]
    return {
        "receiver_cpu_s": cpu,
        "receiver_us_per_datagram": cpu / max(after_first, 1) * 1e6,
        "capacity_per_core_per_s": after_first / cpu,
        "method": method,
        "decode": decode,
        "sent": sent["sent"],
        "sender_per_s": sent["sent"] / sent["seconds"],
        "received": counts["datagrams"],
        "received_per_s": counts["datagrams"] / span,
        "records": counts["records"],
        "records_per_s": counts["records"] / span,
        "kernel_drops_rxq_ovfl": st["kernel_drops"],
        "proc_net_udp_drops": proc,
        "lost": sent["sent"] - counts["datagrams"],
        "rcvbuf_granted": st["rcvbuf_granted"],
    }


def bench_service(seconds: float, records_per_s: float) -> dict:
    """The collect service over loopback publishing to a real nats-server (see the module docstring)."""
    import tempfile
    from pathlib import Path

    from netspectra.probe.publisher import PublisherOptions
    from netspectra.services.collect import CollectOptions, CollectService
    from netspectra.transport.natsserver import NatsServer

    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp), jetstream=False).start()
        try:
            opts = CollectOptions(
                collect=CollectConfig(listen=("127.0.0.1:0",)),
                publisher=PublisherOptions(url=server.url, subject="bench.collect", n_shards=16),
            )
            svc = CollectService(opts, readiness=False)
            svc.start()
            port = int(svc.source.addresses[0].rsplit(":", 1)[1])
            ctx = mp.get_context("spawn")
            q: mp.Queue = ctx.Queue()
            cpu0, t0 = time.process_time(), time.perf_counter()
            p = ctx.Process(target=_sender, args=(port, seconds, records_per_s / 30, q))
            p.start()
            sent = q.get(timeout=seconds + 120)
            p.join()
            st = svc.source.stats
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # until every datagram is read (or counted as dropped)
                got = sum(int(x["datagrams"]) for x in st.listeners()) + st.kernel_drops
                if got >= sent["sent"]:
                    break
                time.sleep(0.05)
            svc.stop()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        finally:
            server.stop()
    s = svc.summary()
    received = sum(int(x["datagrams"]) for x in s["listeners"])
    records = s["decoder"]["totals"]["records"]
    return {
        "records_per_s_asked": records_per_s,
        "sent": sent["sent"],
        "sender_records_per_s": 30 * sent["sent"] / sent["seconds"],
        "received": received,
        "kernel_drops": s["kernel_drops"],
        "lost": sent["sent"] - received,
        "records": records,
        "queue_dropped_records": s["queue_dropped_records"],
        "rows_published": s["publisher"]["packets_published"],
        "messages": s["publisher"]["messages"],
        "process_cpu_us_per_record": cpu / max(records, 1) * 1e6,
        "process_cpu_s": cpu,
        "wall_s": wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["decode", "receive", "lossless", "service"], action="append")
    ap.add_argument(
        "--rates",
        default="250000,500000,0",
        help="records/s of the service runs, comma-separated (0: the sender flat out)",
    )
    ap.add_argument("--records", type=int, default=600_000, help="records per decode case")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0, help="sending time per receive run")
    ap.add_argument("--records-per-s", type=float, default=250_000, help="the lossless run's rate")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    only = set(args.only or ["decode", "receive", "lossless"])
    report: dict[str, object] = {}
    if "decode" in only:
        dec = bench_decode(args.records, args.repeat)
        report["decode"] = dec
        print(
            f"decode, one thread, best of {args.repeat}, batches of {BATCH} datagrams (wall; per CPU second):"
        )
        for name, r in dec.items():
            print(
                f"  {name:<12} {r['records']:>9} rows  {r['records_per_s'] / 1e6:6.2f} M/s wall  "
                f"{r['records_per_cpu_s'] / 1e6:6.2f} M/s per core  ({r['datagrams']} datagrams)"
            )
    if "receive" in only:
        runs = [
            bench_receive(args.seconds, "recvmmsg", False),
            bench_receive(args.seconds, "recvmsg", False),
            bench_receive(args.seconds, "recvmmsg", True),
        ]
        report["receive"] = runs
        print(f"receive over loopback, sender flat out for {args.seconds:.0f} s (1 400-byte v9 datagrams):")
        for r in runs:
            print(
                f"  {r['method']:<9}{' + decode' if r['decode'] else '':<10} sent {r['sent']:>8} "
                f"({r['sender_per_s'] / 1e3:5.0f} k/s)  received {r['received']:>8} "
                f"({r['received_per_s'] / 1e3:5.0f} k/s)  drops SO_RXQ_OVFL {r['kernel_drops_rxq_ovfl']}, "
                f"/proc {r['proc_net_udp_drops']}, lost {r['lost']}; receiver "
                f"{r['receiver_us_per_datagram']:.1f} µs CPU/datagram "
                f"= {r['capacity_per_core_per_s'] / 1e3:.0f} k/s per core"
            )
    if "lossless" in only:
        rate = args.records_per_s / 30
        r = bench_receive(max(args.seconds, 10.0), "recvmmsg", True, rate=rate)
        report["lossless"] = r
        print(
            f"paced at {args.records_per_s / 1e3:.0f} k records/s ({rate:.0f} datagrams/s), receive+decode: "
            f"sent {r['sent']}, received {r['received']}, records {r['records']} "
            f"({r['records_per_s'] / 1e3:.0f} k/s), drops SO_RXQ_OVFL {r['kernel_drops_rxq_ovfl']}, "
            f"/proc {r['proc_net_udp_drops']}, lost {r['lost']}"
        )
    if "service" in only:
        runs = [bench_service(max(args.seconds, 10.0), float(r)) for r in args.rates.split(",")]
        report["service"] = runs
        print("collect service (listener, decoder, rows, publisher to nats-server), loopback sender:")
        for r in runs:
            asked = f"{r['records_per_s_asked'] / 1e3:.0f} k/s" if r["records_per_s_asked"] else "flat out"
            print(
                f"  {asked:>9}: sent {r['sent']} datagrams "
                f"({r['sender_records_per_s'] / 1e3:.0f} k records/s), "
                f"received {r['received']}, kernel drops {r['kernel_drops']}, lost {r['lost']}; "
                f"records {r['records']}, queue drops {r['queue_dropped_records']}, published "
                f"{r['rows_published']} rows in {r['messages']} messages; "
                f"{r['process_cpu_us_per_record']:.2f} µs CPU/record (process)"
            )
    if args.json:
        print(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
