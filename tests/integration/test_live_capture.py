"""Live capture (AF_PACKET TPACKET_V3 ring) inside two network namespaces made by the test.

Set-up (module fixture): namespaces ``nstA``/``nstB`` with a unique suffix, a veth pair between them,
addresses from 10.200.0.0/30 inside them only, IPv6 disabled in both before the links exist (so
no router solicitations or MLD reports join the count). The host's interfaces are never touched.
Traffic: a synthetic trace (:func:`netspectra.gen.synth.generate`: IPv4/IPv6, TCP/UDP/ICMP, 5 %
VLAN-tagged), rewritten so that each record's wire length equals its captured length (tcpreplay
can only send the bytes a record holds), replayed with ``tcpreplay`` in A; the capture runs in B
as ``ip netns exec B netspectra probe --iface IF --no-publish`` (a process of its own in that
namespace, capturing without NATS and printing its counters).

Skipped, with the reason, when not root, or ``ip``/``tcpreplay`` is missing, or the namespaces
cannot be made (e.g. an unprivileged container).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.capture.afpacket import LiveCapture, LiveCaptureError, LiveOptions
from netspectra.capture.bpf import BpfError, compile_bpf
from netspectra.capture.reader import CaptureReader
from netspectra.probe.persist import RawFrames, write_pcap

SRC = Path(__file__).resolve().parents[2] / "src"
PACKETS = 20_000
RATE_MBPS = "100"  # about 230 k packets/s for this trace: a modest rate, no kernel drop expected


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture(scope="module")
def netns() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("live capture tests need root (network namespaces, AF_PACKET)")
    for tool in ("ip", "tcpreplay"):
        if shutil.which(tool) is None:
            pytest.skip(f"live capture tests need {tool!r} (apt-get install iproute2 tcpreplay)")
    tag = uuid.uuid4().hex[:6]
    ns = {"a": f"nstA{tag}", "b": f"nstB{tag}", "if_a": f"vta{tag}", "if_b": f"vtb{tag}"}
    made: list[str] = []
    try:
        for side in ("a", "b"):
            r = _run("ip", "netns", "add", ns[side], check=False)
            if r.returncode != 0:
                pytest.skip(f"cannot create a network namespace here: {r.stderr.strip()}")
            made.append(ns[side])
            # /proc/sys/net is the reading process's namespace; no such file: a kernel without IPv6.
            for key in ("default", "all"):
                knob = f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6"
                _run("ip", "netns", "exec", ns[side], "sh", "-c", f"[ ! -e {knob} ] || echo 1 > {knob}")
        r = _run(
            "ip", "link", "add", ns["if_a"], "netns", ns["a"], "type", "veth",
            "peer", "name", ns["if_b"], "netns", ns["b"], check=False,
        )  # fmt: skip
        if r.returncode != 0:
            pytest.skip(f"cannot create a veth pair here: {r.stderr.strip()}")
        for side, addr in (("a", "10.200.0.1/30"), ("b", "10.200.0.2/30")):
            _run("ip", "-n", ns[side], "addr", "add", addr, "dev", ns[f"if_{side}"])
            _run("ip", "-n", ns[side], "link", "set", ns[f"if_{side}"], "up")
        yield ns
    finally:
        for name in made:
            _run("ip", "netns", "del", name, check=False)


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PacketBatch, list[bytes]]:
    """The replayed pcap, its batch as CaptureReader reads it, and its frames."""
    from netspectra.gen.synth import generate

    d = tmp_path_factory.mktemp("live")
    synth = d / "synth.pcap"
    generate(synth, packets=PACKETS, flows=400, seed=7, write_truth=False, super_spreaders=0, ddos_victims=0)
    frames: list[bytes] = []
    ts: list[int] = []
    for chunk in CaptureReader(synth).records():
        for i in range(chunk.n):
            o = int(chunk.off[i])
            frames.append(chunk.buf[o : o + int(chunk.caplen[i])].tobytes())
            ts.append(int(chunk.ts_ns[i]))
    path = write_pcap(d / "send.pcap", RawFrames.from_frames(frames, ts, 1))
    return path, CaptureReader(path).read_all(), frames


def _capture(
    ns: dict[str, str],
    tmp: Path,
    pcap: Path,
    *args: str,
    mbps: str = RATE_MBPS,
    stop_at_once: bool = False,
    persist: tuple[Path, str] | None = None,
) -> dict:
    """Capture in B while tcpreplay sends ``pcap`` from A; the probe's JSON report with the batches of
    each socket (``batches``).

    The capture stops 1.5 s after the last packet, or with ``stop_at_once`` as soon as tcpreplay
    is done (``stop()`` right after the traffic: nothing may be lost). ``persist``: (directory,
    encoding) of ``probe.persistence``.
    """
    ready = tmp / "ready"
    stop_file = tmp / "stop"
    cfg = tmp / "probe.yaml"
    pers = ""
    if persist is not None:
        pers = f"  persistence: {{enabled: true, path: '{persist[0]}', encoding: {persist[1]}}}\n"
    cfg.write_text("probe:\n  interface: ''\n" + pers)
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cmd = ["ip", "netns", "exec", ns["b"], sys.executable, "-m", "netspectra", "probe", "-c", str(cfg)]
    cmd += ["--iface", ns["if_b"], "--no-publish", "--json", "--duration", "60", "--ready-file", str(ready)]
    cmd += ["--dump-batches", str(tmp / "cap"), *args]
    cmd += ["--stop-file", str(stop_file)] if stop_at_once else ["--idle", "1.5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate(timeout=10)
                pytest.fail(f"capture did not start: {err}")
            time.sleep(0.05)
        rate = ["--topspeed"] if mbps == "top" else ["--mbps", mbps]
        r = _run("ip", "netns", "exec", ns["a"], "tcpreplay", "-i", ns["if_a"], *rate, str(pcap), check=False)
        assert r.returncode == 0, r.stderr
        stop_file.touch()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    report = json.loads(out)
    report["batches"] = []
    for i in range(len(report["sockets"])):
        z = np.load(tmp / f"cap.{i}.npz")
        report["batches"].append(PacketBatch(*(z[c] for c in PacketBatch.COLUMNS)))
    return report


def _same_rows(got: PacketBatch, want: PacketBatch) -> None:
    """Every column but the time equal, in order (the time is the capture's, not the file's)."""
    assert len(got) == len(want)
    for c in PacketBatch.COLUMNS[1:]:
        np.testing.assert_array_equal(getattr(got, c), getattr(want, c), err_msg=c)


def test_capture_counts_exactly(netns: dict[str, str], trace, tmp_path: Path) -> None:
    pcap, want, _ = trace
    rep = _capture(netns, tmp_path, pcap)
    (sock,) = rep["sockets"]
    assert rep["linktype"] == 1
    assert sock["kernel_drops"] == 0
    assert sock["kernel_packets"] == PACKETS
    assert sock["capture"]["records"] == PACKETS
    # Lengths include the VLAN tags the kernel stripped (tp_len + 4), as on the wire.
    assert sock["capture"]["wire_bytes"] == int(want.length.sum())
    got = rep["batches"][0]
    _same_rows(got, want)
    assert np.all(np.diff(got.ts_ns) >= 0)


def test_stop_right_after_the_traffic_loses_nothing(netns: dict[str, str], trace, tmp_path: Path) -> None:
    pcap, want, _ = trace
    rep = _capture(netns, tmp_path, pcap, stop_at_once=True)
    assert rep["sockets"][0]["capture"]["records"] == PACKETS
    _same_rows(rep["batches"][0], want)


def test_bpf_filter_udp_only(netns: dict[str, str], trace, tmp_path: Path) -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("BPF filters are compiled by tcpdump (apt-get install tcpdump)")
    pcap, want, _ = trace
    rep = _capture(netns, tmp_path, pcap, "--bpf", "udp")
    udp = want.take(want.protocol == 17)
    assert 0 < len(udp) < PACKETS
    assert rep["sockets"][0]["kernel_drops"] == 0
    assert rep["sockets"][0]["capture"]["records"] == len(udp)
    _same_rows(rep["batches"][0], udp)


def test_fanout_hash_splits_without_duplicates(netns: dict[str, str], trace, tmp_path: Path) -> None:
    pcap, want, _ = trace
    rep = _capture(netns, tmp_path, pcap, "--sockets", "2", "--fanout-group", "4242")
    a, b = rep["batches"]
    assert len(a) > 0 and len(b) > 0
    assert len(a) + len(b) == PACKETS
    assert all(s["kernel_drops"] == 0 for s in rep["sockets"])

    def flows(x: PacketBatch) -> set[bytes]:
        ports = [getattr(x, c).view(np.uint8).reshape(-1, 2) for c in ("src_port", "dst_port")]
        key = np.concatenate([x.src_ip, x.dst_ip, *ports, x.protocol.reshape(-1, 1)], axis=1)
        return {row.tobytes() for row in key}

    assert not flows(a) & flows(b), "a flow was delivered to both sockets of the fan-out group"
    # Together they are exactly the trace: same multiset of rows.
    both = PacketBatch.concat([a, b])

    def rows(x: PacketBatch) -> np.ndarray:
        cols = [x.src_ip, x.dst_ip] + [
            getattr(x, c).astype(np.uint32).reshape(-1, 1).view(np.uint8)
            for c in ("src_port", "dst_port", "protocol", "length")
        ]
        m = np.ascontiguousarray(np.concatenate(cols, axis=1))
        return np.sort(m.view(np.dtype((np.void, m.shape[1]))).ravel())

    np.testing.assert_array_equal(rows(both), rows(want))


def test_persisted_pcap_holds_the_frames_as_sent(netns: dict[str, str], trace, tmp_path: Path) -> None:
    pcap, want, frames = trace
    out = tmp_path / "persist"
    rep = _capture(netns, tmp_path, pcap, persist=(out, "pcap"))
    assert rep["persistence"]["dropped_packets"] == 0
    assert rep["persistence"]["written_packets"] == PACKETS
    files = [Path(f) for f in rep["persistence"]["paths"]]
    assert len(files) == 1 and files[0].suffix == ".pcap" and files[0].exists()
    assert not list(out.glob("*.part"))
    got = CaptureReader(files[0]).read_all()
    _same_rows(got, want)
    # Byte for byte, VLAN tags re-inserted: the persisted frames are the frames that were sent.
    dpkt = pytest.importorskip("dpkt")
    with open(files[0], "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        assert reader.datalink() == 1
        persisted = [bytes(buf) for _, buf in reader]
    assert persisted == frames


def test_bad_filter_and_interface_errors() -> None:
    with pytest.raises(LiveCaptureError, match="not found"):
        LiveCapture(LiveOptions(interface="no-such-if0"))
    with pytest.raises(LiveCaptureError, match="block_size"):
        LiveCapture(LiveOptions(interface="lo", block_size=1000))
    if shutil.which("tcpdump") is None:
        pytest.skip("needs tcpdump (apt-get install tcpdump)")
    with pytest.raises(BpfError, match="bad filter expression"):
        compile_bpf("udpx and", 1, 1600)


def test_compile_bpf_caps_snaplen() -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("needs tcpdump (apt-get install tcpdump)")
    prog = compile_bpf("udp", 1, 96)
    rets = [k for code, _, _, k in prog if code == 0x06]
    assert rets and max(rets) == 96 and 0 in rets


def _fake_ring(block_size: int = 4096) -> tuple[np.ndarray, list[bytes]]:
    """Two TPACKET_V3 blocks: block 0 handed to user space with 3 packets, block 1 still the kernel's."""
    ring = np.zeros(2 * block_size, np.uint8)
    frames = [bytes(range(i, i + 60)) for i in (1, 2, 3)]
    first = 48
    struct.pack_into("<IIIII", ring, 0, 1, 0, 1, 3, first)  # version, priv, status=USER, num_pkts, first
    p = first
    for i, f in enumerate(frames):
        nxt = 0 if i == 2 else 128
        status = 1 | (0x50 if i == 1 else 0)  # the second packet had a VLAN tag (VLAN_VALID|TPID_VALID)
        struct.pack_into("<IIIIIIHHIIHH", ring, p, nxt, 1000 + i, 500, len(f), len(f), status, 68, 68,
                         0, 0x2064, 0x88A8, 0)  # fmt: skip
        ring[p + 68 : p + 68 + len(f)] = np.frombuffer(f, np.uint8)
        p += 128
    return ring, frames


def test_walk_gather_release_on_a_synthetic_ring() -> None:
    from netspectra.capture.afpacket import gather_frames, release_blocks, walk_blocks

    ring, frames = _fake_ring()
    arrs = [np.empty(8, t) for t in (np.int64, np.uint32, np.uint32, np.int64, np.uint16, np.int64)]
    assert walk_blocks(ring, 4096, 2, 0, 2, 1, *arrs) == (0, 0), "a block is never split"
    n, nb = walk_blocks(ring, 4096, 2, 0, 8, 1, *arrs)
    assert (n, nb) == (3, 1)
    off, caplen, wirelen, ts, lt, vlan = (a[:n] for a in arrs)
    assert off.tolist() == [48 + 68, 176 + 68, 304 + 68]
    assert caplen.tolist() == [60, 60, 60] and wirelen.tolist() == [60, 64, 60]
    assert ts.tolist() == [1000 * 10**9 + 500, 1001 * 10**9 + 500, 1002 * 10**9 + 500]
    assert lt.tolist() == [1, 1, 1] and vlan.tolist() == [-1, (0x88A8 << 16) | 0x2064, -1]
    data = np.empty(184, np.uint8)
    out_off = np.empty(4, np.int64)
    out_cap = np.empty(3, np.uint32)
    assert gather_frames(ring, n, *arrs[:2], arrs[5], data, out_off, out_cap) == 184
    got = [data[out_off[i] : out_off[i] + out_cap[i]].tobytes() for i in range(3)]
    assert got[0] == frames[0] and got[2] == frames[2]
    assert got[1] == frames[1][:12] + bytes([0x88, 0xA8, 0x20, 0x64]) + frames[1][12:]
    release_blocks(ring.view(np.uint32), 4096, 2, 0, 1)
    assert struct.unpack_from("<I", ring, 8)[0] == 0
    assert walk_blocks(ring, 4096, 2, 0, 8, 1, *arrs) == (0, 0)


STOP_SCRIPT = """
import sys, threading, time
from netspectra.capture.afpacket import LiveCapture, LiveOptions
iface = sys.argv[1]
# close() from another thread while the iterator waits: it stops the iterator, which releases the ring.
cap = LiveCapture(LiveOptions(interface=iface, block_size=1 << 16, block_count=4))
got = []
t = threading.Thread(target=lambda: got.extend(cap))
t.start()
time.sleep(0.3)
t0 = time.monotonic()
cap.close()
t.join(5)
assert not t.is_alive(), "iterator did not end after close()"
assert time.monotonic() - t0 < 1.0, "stop did not wake the poll at once"
assert cap.live_stats().kernel_drops == 0 and cap.kernel_drops() == 0
# The context manager closes a capture whose generator is suspended in this thread.
with LiveCapture(LiveOptions(interface=iface, block_size=1 << 16, block_count=4)) as cap2:
    seen = []
    it = cap2.batches(lambda b, r: seen.append(r))
    cap2.stop()
    assert list(it) == [] and seen == []
assert cap2._closed
print("ok")
"""


def test_stop_and_close_are_clean(netns: dict[str, str]) -> None:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run(
        ["ip", "netns", "exec", netns["b"], sys.executable, "-c", STOP_SCRIPT, netns["if_b"]],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
