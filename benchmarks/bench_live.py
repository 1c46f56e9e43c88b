"""Live capture rate: AF_PACKET senders in one network namespace, `netspectra probe --no-publish` in another.

Run as root (it creates and deletes two namespaces and a veth pair of its own)::

    python benchmarks/bench_live.py --packets 6000000 --senders 2

The sender here is not tcpreplay: tcpreplay makes one ``sendto`` system call per packet and reads its
pcap as it goes, which saturates a core at ≈ 420 kpps on this machine (docs/capture-live.md). This one
(``--send``, used by the benchmark itself) builds 4 096 distinct 60-byte Ethernet/IPv4/UDP frames
once and hands them to the kernel 1 024 at a time with ``sendmmsg`` on a ``PACKET_QDISC_BYPASS``
socket, so its per-packet cost is the kernel's: building the skb, the veth hop and — on the sender's
own core, in the softirq that the veth hop raises — the receive side including AF_PACKET's copy into
the capture's ring. The capture process only walks its ring (the numba kernel) and decodes.

Printed: packets sent and captured, kernel drops (PACKET_STATISTICS), the capture's rate over the
span between its first and last packet, its CPU time per packet, each sender's own rate, and — in the
same run — the offline analysis (file reader + exact five-tuple task) of the same frames from a pcap.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
BATCH = 1024
DISTINCT = 4096


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


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frames(seed: int) -> list[bytes]:
    """4 096 distinct 60-byte Ethernet/IPv4/UDP frames (source address and ports vary)."""
    out = []
    for i in range(DISTINCT):
        src = bytes([10, seed & 0xFF, (i >> 8) & 0xFF, i & 0xFF])
        dst = bytes([192, 0, 2, 1 + i % 200])
        udp = struct.pack("!HHHH", 1024 + i, 53, 8 + 18, 0) + bytes(18)
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0, src, dst))
        ip[10:12] = struct.pack("!H", _checksum(bytes(ip)))
        eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
        out.append(eth + bytes(ip) + udp)
    return out


def send(iface: str, count: int, seed: int) -> dict[str, float]:
    """Send ``count`` frames on ``iface`` as fast as the kernel takes them; returns count and rate."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((iface, 0))
    sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 20)
    data = frames(seed)
    buffers = [ctypes.create_string_buffer(f, len(f)) for f in data]
    iovs = (_Iovec * DISTINCT)(
        *[_Iovec(ctypes.addressof(b), len(f)) for b, f in zip(buffers, data, strict=True)]
    )
    # two rounds of headers so that any window of BATCH starting below DISTINCT is contiguous
    msgs = (_Mmsghdr * (DISTINCT + BATCH))()
    for k in range(DISTINCT + BATCH):
        msgs[k].msg_hdr.msg_iov = ctypes.pointer(iovs[k % DISTINCT])
        msgs[k].msg_hdr.msg_iovlen = 1
    size = ctypes.sizeof(_Mmsghdr)
    base = ctypes.addressof(msgs)
    fd = sock.fileno()
    sent, pos, retries = 0, 0, 0
    t0 = time.perf_counter()
    while sent < count:
        n = min(BATCH, count - sent)
        r = libc.sendmmsg(fd, ctypes.c_void_p(base + pos * size), n, 0)
        if r < 0:
            err = ctypes.get_errno()
            if err in (105, 11):  # ENOBUFS, EAGAIN: the device queue is full; try again
                retries += 1
                continue
            raise OSError(err, os.strerror(err))
        sent += r
        pos = (pos + r) % DISTINCT
    took = time.perf_counter() - t0
    sock.close()
    return {"sent": sent, "seconds": took, "pps": sent / took, "retries": retries}


def send_ring(iface: str, count: int, seed: int) -> dict[str, float]:
    """Like :func:`send`, through a TPACKET_V2 ``PACKET_TX_RING``: the frames are written into the ring
    once; each round marks every slot ``TP_STATUS_SEND_REQUEST`` and one ``send()`` makes the kernel
    transmit them all (it builds each skb on the ring's pages: no copy from user space per packet)."""
    import mmap

    import numpy as np

    frame_size, frames_per_block, block_nr = 128, 512, 16
    block_size = frame_size * frames_per_block
    n_slots = frames_per_block * block_nr
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(SOL_PACKET, 10, 1)  # PACKET_VERSION = TPACKET_V2
    sock.setsockopt(SOL_PACKET, 13, struct.pack("IIII", block_size, block_nr, frame_size, n_slots))  # TX_RING
    sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    sock.bind((iface, 0))
    ring = mmap.mmap(sock.fileno(), block_size * block_nr)
    view = np.frombuffer(ring, dtype=np.uint8).reshape(n_slots, frame_size)
    data = frames(seed)
    for k in range(n_slots):
        f = data[k % DISTINCT]
        view[k, 4:8] = np.frombuffer(struct.pack("I", len(f)), np.uint8)  # tp_len
        view[k, 32 : 32 + len(f)] = np.frombuffer(f, np.uint8)  # data at TPACKET_ALIGN(hdr)
    status = view[:, 0:4].view(np.uint32).reshape(n_slots)
    sent, rounds = 0, 0
    t0 = time.perf_counter()
    while sent < count:
        n = min(n_slots, count - sent)
        status[:n] = 1  # TP_STATUS_SEND_REQUEST
        sock.send(b"")  # blocks until every requested slot was sent
        if np.any(status[:n] != 0):
            raise OSError(f"TX ring: {int(np.count_nonzero(status[:n]))} frame(s) not sent")
        sent += n
        rounds += 1
    took = time.perf_counter() - t0
    del view, status
    ring.close()
    sock.close()
    return {"sent": sent, "seconds": took, "pps": sent / took, "rounds": rounds}


def offline_rate(packets: int, senders: int, directory: Path) -> dict[str, float]:
    """The offline analysis (file reader + one exact five-tuple task) over the same frames, as a pcap
    written here: packets per second of the second (warm) run."""
    import numpy as np

    from netspectra.capture.reader import CaptureReader
    from netspectra.tasks.exact import ExactTask

    rows = np.zeros((packets, 16 + 60), dtype=np.uint8)
    rows[:, 8:12] = np.frombuffer(struct.pack("<I", 60), np.uint8)  # incl_len
    rows[:, 12:16] = np.frombuffer(struct.pack("<I", 60), np.uint8)  # orig_len
    rows[:, 4:8] = np.frombuffer(struct.pack("<I", 0), np.uint8)
    rows[:, 0:4] = np.frombuffer(struct.pack("<I", 1_750_000_000), np.uint8)
    table = np.array([list(f) for k in range(senders) for f in frames(k)], dtype=np.uint8)
    rows[:, 16:] = table[np.arange(packets) % len(table)]
    path = directory / "live-frames.pcap"
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        f.write(rows.tobytes())
    five = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
    seconds = 0.0
    for _ in range(2):  # the first run compiles/loads the kernels and warms the page cache
        task = ExactTask("per_five_tuple", five)
        t0 = time.perf_counter()
        for batch in CaptureReader(path):
            task.update(batch)
        seconds = time.perf_counter() - t0
    assert task.snapshot().total_packets == packets
    return {"packets": packets, "seconds": seconds, "pps": packets / seconds}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def run(packets: int, senders: int, block_size: int, block_count: int, method: str) -> dict[str, object]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        sys.exit("needs root and iproute2 (ip)")
    tag = f"{os.getpid() % 100000}"
    ns_a, ns_b, if_a, if_b = f"nsbA{tag}", f"nsbB{tag}", f"vA{tag}", f"vB{tag}"
    _ip("netns", "add", ns_a)
    _ip("netns", "add", ns_b)
    try:
        _ip("link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        _ip("-n", ns_a, "link", "set", if_a, "up")
        _ip("-n", ns_b, "link", "set", if_b, "up")
        with tempfile.TemporaryDirectory() as tmp:
            ready = Path(tmp) / "ready"
            cap = subprocess.Popen(
                ["ip", "netns", "exec", ns_b, sys.executable, "-m", "netspectra", "probe", "--iface", if_b,
                 "--no-publish", "--json", "--idle", "2", "--ready-file", str(ready), "--bpf", "udp",
                 "--block-size", str(block_size), "--block-count", str(block_count)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while not ready.exists():
                if cap.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the capture did not start")
                time.sleep(0.05)
            time.sleep(0.5)
            per = packets // senders
            cmd = ["ip", "netns", "exec", ns_a, sys.executable, __file__, "--send", if_a, "--method", method]
            cmd += ["--packets", str(per)]
            procs = [
                subprocess.Popen([*cmd, "--seed", str(k)], stdout=subprocess.PIPE, text=True)
                for k in range(senders)
            ]
            sent = [json.loads(p.communicate()[0]) for p in procs]
            out, _ = cap.communicate(timeout=120)
        report = json.loads(out)
    finally:
        subprocess.run(["ip", "netns", "del", ns_a], check=False)
        subprocess.run(["ip", "netns", "del", ns_b], check=False)
    return {"senders": sent, "capture": report, "packets_sent": sum(int(s["sent"]) for s in sent)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=6_000_000)
    ap.add_argument("--senders", type=int, default=2)
    ap.add_argument("--block-size", type=int, default=4 << 20)
    ap.add_argument("--block-count", type=int, default=64)
    ap.add_argument(
        "--method",
        choices=("tx-ring", "sendmmsg"),
        default="sendmmsg",
        help="how the senders hand frames to the kernel (sendmmsg measured faster here than a TX ring)",
    )
    ap.add_argument("--send", metavar="IFACE", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.send:
        sender = send_ring if args.method == "tx-ring" else send
        print(json.dumps(sender(args.send, args.packets, args.seed)))
        return
    r = run(args.packets, args.senders, args.block_size, args.block_count, args.method)
    sock = r["capture"]["sockets"][0]  # type: ignore[index]
    cap = sock["capture"]
    # the capture's BPF filter (udp) keeps the link's own chatter (IPv6 ND at link-up) out of the span
    span = (cap["last_ts_ns"] - cap["first_ts_ns"]) / 1e9
    r["summary"] = {
        "method": args.method,
        "senders": args.senders,
        "packets_sent": r["packets_sent"],
        "packets_captured": cap["records"],
        "kernel_drops": sock["kernel_drops"],
        "capture_span_s": round(span, 3),
        "captured_pps": round(cap["records"] / span) if span > 0 else None,
        "capture_cpu_ns_per_packet": round(r["capture"]["cpu_seconds"] / max(1, cap["records"]) * 1e9, 1),  # type: ignore[index]
        "sender_pps": [round(s["pps"]) for s in r["senders"]],  # type: ignore[union-attr]
    }
    with tempfile.TemporaryDirectory() as tmp:
        off = offline_rate(min(args.packets, 2_000_000), args.senders, Path(tmp))
    r["summary"]["offline_five_tuple_pps"] = round(off["pps"])  # type: ignore[index]
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
