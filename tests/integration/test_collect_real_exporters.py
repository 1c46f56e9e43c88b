"""Real exporters into ``netspectra collect``: softflowd (NetFlow v5, v9, IPFIX) and pmacct's pmacctd
(nfprobe: NetFlow v9 and IPFIX; sfprobe: sFlow v5), unsampled and sampled, checked against the capture
they watched and against nfdump's ``nfcapd`` as an independent collector.

Set-up (module fixture): two network namespaces with a veth pair (as the live-capture tests), loopback up
in the second. The exporter captures the veth end in namespace B and exports to 127.0.0.1 there, through
``nfcapd -R`` (nfdump's collector, which repeats every datagram) for NetFlow/IPFIX, into ``netspectra
collect --no-publish --dump-rows`` in the same namespace; ``tcpreplay`` sends the capture from namespace
A. After the replay the exporter is made to export everything (softflowd: ``softflowctl expire-all``;
pmacctd: SIGINT, which flushes its caches), then the collector is stopped (SIGTERM: it reads what its
socket holds) and prints its counters.

The capture is the gnutella trace (IPv4 and IPv6, TCP, UDP, ICMP, ARP) less the one record cut by the
snap length (tcpreplay sends the bytes a record holds). Truth: the capture decoder over it — packets,
directional five-tuple flows, IP bytes (what NetFlow/IPFIX count) and wire bytes (what sFlow counts).

* unsampled: packets, bytes and flows of the rows equal the truth exactly (the exporter saw every packet:
  its own statistics say so), and nfcapd/nfdump's totals equal the collector's;
* sampled (softflowd -s 10, pmacct sampling_rate 10): the exporters announce the rate, the rows are
  scaled by it, and the totals are within the sampling error of the truth (5 standard deviations of a
  binomial estimate);
* the totals that come out of the API (``up --collect``) equal those of ``netspectra analyze`` on the
  same capture: one run, softflowd IPFIX.

Skipped with the reason when not root, a namespace cannot be made, or a tool is missing (``.ci/run``
installs softflowd, pmacct, nfdump, tcpreplay, iproute2).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from netspectra.batch import PacketBatch
from netspectra.capture.reader import CaptureReader
from netspectra.probe.persist import RawFrames, write_pcap
from netspectra.tasks.exact import ExactTask

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
GNUTELLA = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"
FIVE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
#: ARP frames sent after the replay: libpcap's TPACKET_V3 ring hands a block to the exporter only once it
#: is full (or its timer retires it, which does not happen here with softflowd's and pmacctd's settings),
#: so the tail of the replay would wait in a part-filled block (measured: 790 of 3904 frames until more
#: traffic came); non-IP frames fill it and are ignored by NetFlow exporters (sFlow samples them: counted
#: as records without a flow key).
FILLER_FRAMES = 20_000
CONFIG = (
    "aggregator:\n  types: [exact]\n  exact:\n    writers: []\n    tasks: [{name: t, key_fields: [SrcIP]}]\n"
)


def _run(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool!r} is not installed (apt-get install softflowd pmacct nfdump tcpreplay)")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.fixture(scope="module")
def netns() -> Iterator[dict[str, str]]:
    if os.geteuid() != 0:
        pytest.skip("the exporter tests need root (network namespaces, packet capture)")
    _need("ip", "tcpreplay")
    tag = uuid.uuid4().hex[:6]
    ns = {"a": f"nexA{tag}", "b": f"nexB{tag}", "if_a": f"vxa{tag}", "if_b": f"vxb{tag}"}
    made: list[str] = []
    try:
        for side in ("a", "b"):
            r = _run("ip", "netns", "add", ns[side], check=False)
            if r.returncode != 0:
                pytest.skip(f"cannot create a network namespace here: {r.stderr.strip()}")
            made.append(ns[side])
            for key in ("default", "all"):  # no router solicitations or MLD reports on the link
                knob = f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6"
                _run("ip", "netns", "exec", ns[side], "sh", "-c", f"[ ! -e {knob} ] || echo 1 > {knob}")
        r = _run(
            "ip", "link", "add", ns["if_a"], "netns", ns["a"], "type", "veth",
            "peer", "name", ns["if_b"], "netns", ns["b"], check=False,
        )  # fmt: skip
        if r.returncode != 0:
            pytest.skip(f"cannot create a veth pair here: {r.stderr.strip()}")
        for side in ("a", "b"):
            _run("ip", "-n", ns[side], "link", "set", ns[f"if_{side}"], "up")
        _run("ip", "-n", ns["b"], "link", "set", "lo", "up")
        yield ns
    finally:
        for name in made:
            _run("ip", "netns", "del", name, check=False)


@dataclass
class Truth:
    pcap: Path
    batch: PacketBatch  # the IP packets as the capture decoder reads them (optional columns decoded)
    frames: int  # frames replayed (IP and not)
    filler: Path  # ARP frames sent after the replay (see flush_capture)

    def part(self, v4_only: bool) -> PacketBatch:
        if not v4_only:
            return self.batch
        b = self.batch
        v4 = (b.src_ip[:, 10] == 0xFF) & (b.src_ip[:, 11] == 0xFF) & ~b.src_ip[:, :10].any(axis=1)
        return b.take(v4)

    def totals(self, v4_only: bool = False) -> dict[str, int]:
        b = self.part(v4_only)
        t = ExactTask("truth", FIVE)
        t.update(b)
        assert b.ip_length is not None
        return {
            "packets": len(b),
            "flows": len(t.snapshot()),
            "ip_bytes": int(b.ip_length.sum(dtype=np.uint64)),
            "wire_bytes": int(b.length.sum(dtype=np.uint64)),
        }


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> Truth:
    frames: list[bytes] = []
    ts: list[int] = []
    for chunk in CaptureReader(GNUTELLA).records():
        for i in range(chunk.n):
            if chunk.caplen[i] != chunk.wirelen[i]:
                continue  # tcpreplay sends only the bytes a record holds
            o = int(chunk.off[i])
            frames.append(chunk.buf[o : o + int(chunk.caplen[i])].tobytes())
            ts.append(int(chunk.ts_ns[i]))
    d = tmp_path_factory.mktemp("exporters")
    path = write_pcap(d / "send.pcap", RawFrames.from_frames(frames, ts, 1))
    arp = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x99\x08\x06" + bytes.fromhex("0001080006040001") + bytes(38)
    fill = RawFrames.from_frames([arp] * FILLER_FRAMES, list(range(FILLER_FRAMES)), 1)
    filler = write_pcap(d / "filler.pcap", fill)
    return Truth(path, CaptureReader(path, extras=True).read_all(), len(frames), filler)


# --------------------------------------------------------------------------------------------------
# the processes
# --------------------------------------------------------------------------------------------------


def _in_b(ns: dict[str, str], *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns["b"], *cmd]


def _free_port(ns: dict[str, str]) -> int:
    r = _run(
        *_in_b(
            ns,
            sys.executable,
            "-c",
            "import socket; s=socket.socket(2,2); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])",
        )
    )
    return int(r.stdout.strip())


def _wait_file(path: Path, proc: subprocess.Popen[str], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start")
        time.sleep(0.05)


def _udp_counters(pid: int) -> dict[str, int]:
    """The UDP counters of the network namespace of process ``pid`` (``/proc/<pid>/net/snmp``)."""
    names, values = (
        line.split()[1:]
        for line in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()
        if line[:4] == "Udp:"
    )
    return dict(zip(names, map(int, values), strict=True))


def _wait_udp_read(pid: int, what: str, quiet_s: float = 0.0, timeout: float = 60.0) -> None:
    """Wait until every UDP datagram sent in the namespace of process ``pid`` has been read by the socket
    it was sent to, or dropped there: the kernel counts a datagram in ``InDatagrams`` when a process reads
    it (``NoPorts``, ``InErrors``: none could), so ``OutDatagrams`` equals their sum exactly when none is in
    flight or waiting in a socket. Every UDP datagram of namespace B is sent there, to 127.0.0.1 (the
    replay's broadcasts reach no socket: ``IgnoredMulti``). With ``quiet_s`` the sums must also stay
    unchanged that long (a repeater that has read its last datagram sends the copy just after)."""
    deadline = time.monotonic() + timeout
    seen, since = None, time.monotonic()
    while True:
        c = _udp_counters(pid)
        sums = (c["OutDatagrams"], c["InDatagrams"] + c["NoPorts"] + c["InErrors"])
        if sums != seen:
            seen, since = sums, time.monotonic()
        if sums[0] <= sums[1] and time.monotonic() - since >= quiet_s:
            return
        assert time.monotonic() < deadline, f"{what}: UDP datagrams still unread ({c})"
        time.sleep(0.02)


def _wait_started(ns: dict[str, str], proc: subprocess.Popen[str], what: str, log_line: str = "") -> None:
    """Wait until the exporter ``proc`` captures: a packet socket bound to the veth end in namespace B
    (``/proc/net/packet`` there), and with ``log_line``, that line in its log (``ns["log"]``)."""
    index = _run("ip", "-n", ns["b"], "-o", "link", "show", "dev", ns["if_b"]).stdout.split(":")[0]
    deadline = time.monotonic() + 60

    def started() -> bool:
        packet = Path(f"/proc/{proc.pid}/net/packet").read_text().splitlines()[1:]
        if not any(line.split()[4] == index for line in packet):
            return False
        return not log_line or log_line in Path(ns["log"]).read_text(errors="replace")

    while not started():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {proc.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, f"{what} did not start capturing"
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[str, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


@dataclass
class Collected:
    summary: dict
    rows: PacketBatch

    def totals(self) -> dict[str, int]:
        t = ExactTask("rows", FIVE)
        t.update(self.rows)
        return {
            "packets": int(self.rows.packet_counts().sum()),
            "flows": len(t.snapshot()),
            "bytes": int(self.rows.byte_counts().sum()),
            "records": len(self.rows),
        }


class Collector:
    """``netspectra collect --no-publish`` in namespace B (optionally behind nfcapd, which repeats)."""

    def __init__(self, ns: dict[str, str], tmp: Path, *, nfcapd: bool) -> None:
        self.ns, self.tmp = ns, tmp
        self.port = _free_port(ns)
        cfg = tmp / "collect.yaml"
        cfg.write_text(CONFIG)
        ready = tmp / "collect.ready"
        cmd = _in_b(
            ns, sys.executable, "-m", "netspectra", "collect", "-c", str(cfg), "--no-publish", "--json"
        )
        cmd += [
            "--listen",
            f"127.0.0.1:{self.port}",
            "--ready-file",
            str(ready),
            "--dump-rows",
            str(tmp / "rows"),
        ]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        )
        _wait_file(ready, self.proc, "netspectra collect")
        self.nfcapd: subprocess.Popen[str] | None = None
        self.export_port = self.port
        if nfcapd:
            _need("nfcapd", "nfdump")
            self.export_port = _free_port(ns)
            self.flowdir = tmp / "nfcapd"
            self.flowdir.mkdir()
            cmd = _in_b(ns, "nfcapd", "-w", str(self.flowdir), "-b", "127.0.0.1", "-p", str(self.export_port))
            cmd += ["-R", f"127.0.0.1/{self.port}", "-P", str(tmp / "nfcapd.pid")]
            self.nfcapd = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            _wait_file(tmp / "nfcapd.pid", self.nfcapd, "nfcapd")

    def finish(self) -> tuple[Collected, dict[str, int] | None]:
        """Stop (nfcapd first: it has repeated everything it received), read both collectors' results."""
        nf = None
        if self.nfcapd is not None:
            # nfcapd has read (and repeated) every datagram the exporter sent
            _wait_udp_read(self.proc.pid, "nfcapd", quiet_s=0.2)
            _, err = _stop(self.nfcapd)
            nf = nfdump_totals(self.flowdir)
        # the collector has read every datagram sent to it (the last repeated ones included)
        _wait_udp_read(self.proc.pid, "netspectra collect")
        out, err = _stop(self.proc)
        assert self.proc.returncode == 0, err[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        with np.load(self.tmp / "rows.npz") as z:
            cols = {k: z[k] for k in z.files}
        rows = PacketBatch(**cols)
        rows.validate()
        return Collected(summary, rows), nf


def nfdump_totals(flowdir: Path) -> dict[str, int]:
    """Flows, packets and bytes of every record nfcapd stored (``nfdump -I``: the files' statistics)."""
    files = sorted(str(p) for p in flowdir.rglob("nfcapd.*") if not p.name.startswith("nfcapd.current"))
    assert files, f"nfcapd stored nothing in {flowdir}"
    total = {"flows": 0, "packets": 0, "bytes": 0, "sequence_failures": 0}
    for f in files:
        out = _run("nfdump", "-r", f, "-I").stdout
        for key, name in (("flows", "Flows"), ("packets", "Packets"), ("bytes", "Bytes")):
            m = re.search(rf"^{name}:\s+(\d+)", out, re.M)
            assert m, out
            total[key] += int(m.group(1))
        m = re.search(r"^Sequence failures:\s+(\d+)", out, re.M)
        total["sequence_failures"] += int(m.group(1)) if m else 0
    return total


def replay(ns: dict[str, str], pcap: Path, mbps: str = "10") -> None:
    cmd = ["ip", "netns", "exec", ns["a"], "tcpreplay", "-i", ns["if_a"], "--mbps", mbps, str(pcap)]
    r = _run(*cmd, check=False)
    assert r.returncode == 0, r.stderr
    time.sleep(0.3)


def flush_capture(ns: dict[str, str]) -> None:
    """Push the replay's tail out of the exporter's capture ring (see :data:`FILLER_FRAMES`)."""
    replay(ns, Path(ns["filler"]), mbps="50")


def softflowd(ns: dict[str, str], tmp: Path, port: int, version: str, sampling: int = 0) -> dict[str, int]:
    """Run softflowd over the replay; after it, export every flow; its own statistics."""
    _need("softflowd", "softflowctl")
    ctl = tmp / "softflowd.ctl"
    cmd = _in_b(ns, "softflowd", "-i", ns["if_b"], "-n", f"127.0.0.1:{port}", "-v", version, "-d")
    cmd += ["-c", str(ctl), "-p", str(tmp / "softflowd.pid")]
    cmd += ["-6"] if version != "5" else []
    cmd += ["-s", str(sampling)] if sampling else []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_file(ctl, proc, "softflowd")
        _wait_started(ns, proc, "softflowd")  # the capture is open once the control socket is
        replay(ns, Path(ns["pcap"]))
        frames = int(ns["frames"])
        for _ in range(10):  # until softflowd has read every replayed frame (fillers follow them)
            flush_capture(ns)
            stats = _run(*_in_b(ns, "softflowctl", "-c", str(ctl), "statistics")).stdout
            m = re.search(r"Packets processed: (\d+)", stats)
            ig = re.search(r"Ignored packets: (\d+)", stats)
            if m and ig and int(m.group(1)) + int(ig.group(1)) >= frames:
                break
        # answered once every flow is expired and its export sent (its statistics say so)
        _run(*_in_b(ns, "softflowctl", "-c", str(ctl), "expire-all"))
        after = _run(*_in_b(ns, "softflowctl", "-c", str(ctl), "statistics")).stdout
        assert "Number of active flows: 0\n" in after, after
        _run(*_in_b(ns, "softflowctl", "-c", str(ctl), "shutdown"), check=False)
        proc.wait(timeout=30)
    finally:
        _stop(proc)
    m = re.search(r"Packets processed: (\d+)", stats)
    d = re.search(r"Packets dropped by libpcap: (\d+)", stats)
    assert m and d, stats
    return {"processed": int(m.group(1)), "dropped": int(d.group(1)), "text": stats}


def pmacctd(
    ns: dict[str, str], tmp: Path, port: int, plugin: str, version: int = 10, sampling: int = 0
) -> None:
    """Run pmacctd with the nfprobe or sfprobe plugin over the replay; SIGINT flushes and ends it."""
    _need("pmacctd")
    conf = tmp / "pmacctd.conf"
    lines = [
        "daemonize: false",
        f"pcap_interface: {ns['if_b']}",
        f"plugins: {plugin}",
        f"pidfile: {tmp / 'pmacctd.pid'}",
        "logfile: " + str(tmp / "pmacctd.log"),
    ]
    if plugin == "nfprobe":
        lines += [f"nfprobe_receiver: 127.0.0.1:{port}", f"nfprobe_version: {version}"]
        lines += ["aggregate: src_host, dst_host, src_port, dst_port, proto, tos"]
        lines += [
            "nfprobe_timeouts: tcp=3600:tcp.rst=3600:tcp.fin=3600:udp=3600:icmp=3600:general=3600:"
            "maxlife=86400"
        ]
    else:
        lines += [f"sfprobe_receiver: 127.0.0.1:{port}", "sfprobe_agentip: 192.0.2.50"]
    if sampling:
        lines += [f"sampling_rate: {sampling}"]
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(
        _in_b(ns, "pmacctd", "-f", str(conf)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_file(tmp / "pmacctd.pid", proc, "pmacctd")
        # plugins start after the core writes its pid: the plugin says where it exports once it runs
        _wait_started({**ns, "log": str(tmp / "pmacctd.log")}, proc, "pmacctd", f"[127.0.0.1]:{port}")
        replay(ns, Path(ns["pcap"]))
        flush_capture(ns)
        flush_capture(ns)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)  # flushes the caches: every flow exported
        proc.wait(timeout=60)
    finally:
        _stop(proc)


def _binomial_ok(estimate: int, truth: int, rate: int, what: str) -> None:
    """A 1-in-``rate`` estimate of ``truth`` events is within 5 standard deviations."""
    sd = math.sqrt(truth * (rate - 1)) if rate > 1 else 0.0
    assert abs(estimate - truth) <= 5 * sd + rate, f"{what}: {estimate} vs {truth} (rate {rate}, sd {sd:.0f})"


# --------------------------------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------------------------------


@pytest.fixture()
def env(netns: dict[str, str], truth: Truth, tmp_path: Path) -> dict:
    netns["pcap"] = str(truth.pcap)
    netns["filler"] = str(truth.filler)
    netns["frames"] = str(truth.frames)
    return {"ns": netns, "truth": truth, "tmp": tmp_path}


@pytest.mark.parametrize("version", ["5", "9", "10"])
def test_softflowd_unsampled_equals_the_capture_and_nfdump(env: dict, version: str) -> None:
    ns, truth, tmp = env["ns"], env["truth"], env["tmp"]
    col = Collector(ns, tmp, nfcapd=True)
    stats = softflowd(ns, tmp, col.export_port, version)
    got, nf = col.finish()
    want = truth.totals(v4_only=version == "5")
    assert stats["dropped"] == 0
    s = got.summary
    tot = s["decoder"]["totals"]
    assert tot["decode_errors"] == 0 and s["kernel_drops"] == 0
    assert s["rows"]["not_keyed"] == {}
    g = got.totals()
    assert g["packets"] == want["packets"] == stats["processed"], stats["text"]
    assert g["flows"] == want["flows"]
    assert g["bytes"] == want["ip_bytes"]
    assert set(np.unique(got.rows.sampling_rate).tolist()) == {1}
    # nfdump, an independent collector, on the very datagrams
    assert nf is not None
    assert (nf["flows"], nf["packets"], nf["bytes"]) == (g["records"], g["packets"], g["bytes"])
    if version == "10":
        # softflowd 1.1.0 writes an IPFIX message's sequence number after adding the message's own data
        # records (RFC 7011 3.1: the records sent before it), so consecutive messages of different sizes
        # look like gaps: nfcapd counts them too, and nothing was lost (every record is here)
        assert tot["sequence_gaps"] > 0 and nf["sequence_failures"] > 0
    else:
        assert tot["sequence_gaps"] == 0 and nf["sequence_failures"] == 0


@pytest.mark.parametrize("version", ["5", "9", "10"])
def test_softflowd_sampled_is_scaled_within_the_sampling_error(env: dict, version: str) -> None:
    ns, truth, tmp = env["ns"], env["truth"], env["tmp"]
    col = Collector(ns, tmp, nfcapd=False)
    softflowd(ns, tmp, col.export_port, version, sampling=10)
    got, _ = col.finish()
    want = truth.totals(v4_only=version == "5")
    rates = got.summary["decoder"]["exporters"]["127.0.0.1"]["sampling_rates"]
    assert set(rates) == {"10"}, rates  # announced by the exporter (v5 header, options data)
    assert got.summary["decoder"]["totals"]["records_without_sampling_rate"] == 0
    g = got.totals()
    assert g["packets"] % 10 == 0
    _binomial_ok(g["packets"], want["packets"], 10, "packets")
    mean = want["ip_bytes"] / want["packets"]
    assert abs(g["bytes"] - want["ip_bytes"]) <= 5 * math.sqrt(want["packets"] * 9) * mean * 2 + 10 * 1500


@pytest.mark.parametrize("version", [9, 10])
def test_pmacct_nfprobe_unsampled_equals_the_capture_and_nfdump(env: dict, version: int) -> None:
    ns, truth, tmp = env["ns"], env["truth"], env["tmp"]
    col = Collector(ns, tmp, nfcapd=True)
    pmacctd(ns, tmp, col.export_port, "nfprobe", version)
    got, nf = col.finish()
    want = truth.totals()
    tot = got.summary["decoder"]["totals"]
    assert tot["decode_errors"] == 0 and got.summary["kernel_drops"] == 0
    g = got.totals()
    assert (g["packets"], g["flows"], g["bytes"]) == (want["packets"], want["flows"], want["ip_bytes"])
    assert nf is not None
    assert (nf["flows"], nf["packets"], nf["bytes"]) == (g["records"], g["packets"], g["bytes"])


def test_pmacct_sfprobe_unsampled_equals_the_capture(env: dict) -> None:
    ns, truth, tmp = env["ns"], env["truth"], env["tmp"]
    col = Collector(ns, tmp, nfcapd=False)
    pmacctd(ns, tmp, col.export_port, "sfprobe")
    got, _ = col.finish()
    want = truth.totals()
    s = got.summary
    assert s["decoder"]["totals"]["decode_errors"] == 0 and s["kernel_drops"] == 0
    assert set(s["decoder"]["exporters"]) == {"192.0.2.50"}  # the agent address, not the UDP sender
    g = got.totals()
    # every IP packet sampled (rate 1) and keyed by the capture decoder from its header; pmacctd hands
    # its plugins IP packets only (a sample of anything else would be counted as not keyed)
    assert (g["packets"], g["flows"]) == (want["packets"], want["flows"])
    assert g["bytes"] == want["wire_bytes"]
    not_keyed = s["rows"]["not_keyed"]
    assert set(not_keyed) <= {"non_ip"}
    assert s["decoder"]["totals"]["records"] - sum(not_keyed.values()) == want["packets"]


def test_pmacct_sfprobe_sampled_is_scaled_within_the_sampling_error(env: dict) -> None:
    ns, truth, tmp = env["ns"], env["truth"], env["tmp"]
    col = Collector(ns, tmp, nfcapd=False)
    pmacctd(ns, tmp, col.export_port, "sfprobe", sampling=10)
    got, _ = col.finish()
    want = truth.totals()
    rates = got.summary["decoder"]["exporters"]["192.0.2.50"]["sampling_rates"]
    assert set(rates) == {"10"}, rates
    g = got.totals()
    _binomial_ok(g["packets"], want["packets"], 10, "packets")


UP_CONFIG = """
aggregator:
  types: ["exact"]
  period: "0s"
  num_workers: 2
  exact:
    writers:
      - type: clickhouse
        enabled: true
        snapshot_interval: "1s"
    tasks:
      - name: "per_five_tuple"
        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
probe:
  subject: "exporters.test"
  shards: 4
"""


def _bound_in_b(ns: dict[str, str], port: int) -> bool:
    out = _run(*_in_b(ns, "cat", "/proc/net/udp")).stdout.splitlines()[1:]
    return any(line.split()[1].endswith(f":{port:04X}") for line in out)


def _query(ns: dict[str, str], grpc_port: int, *args: str) -> dict:
    cmd = _in_b(
        ns, sys.executable, "-m", "netspectra", "query", *args, "--addr", f"127.0.0.1:{grpc_port}", "--json"
    )
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_api_totals_equal_analyze_for_softflowd_ipfix(env: dict) -> None:
    """softflowd (IPFIX) → up --collect → JetStream → engine → ClickHouse → the API, against netspectra
    analyze of the capture softflowd watched."""
    pytest.importorskip("chdb", reason="the embedded ClickHouse engine needs chdb")
    pytest.importorskip("nats", reason="nats-py is not installed")

    ns, truth, tmp = env["ns"], env["truth"], env["tmp"]
    an = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", str(truth.pcap), "--json", "--top", "0"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert an.returncode == 0, an.stderr
    analyzed = json.loads(an.stdout)
    (five,) = [t for t in analyzed["tasks"] if t["name"] == "per_five_tuple"]
    want = truth.totals()
    assert (analyzed["ip_packets"], five["flows"]) == (want["packets"], want["flows"])
    cfg = tmp / "up.yaml"
    cfg.write_text(UP_CONFIG)
    udp, grpc_port, http_port = _free_port(ns), _free_port(ns), _free_port(ns)
    cmd = _in_b(ns, sys.executable, "-m", "netspectra", "up", "-c", str(cfg), "--data-dir", str(tmp / "data"))
    cmd += ["--collect", f"127.0.0.1:{udp}", "--nats-port", "0", "--json"]
    cmd += ["--grpc-addr", f"127.0.0.1:{grpc_port}", "--http-addr", f"127.0.0.1:{http_port}"]
    up = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp)
    try:
        deadline = time.monotonic() + 120
        while not _bound_in_b(ns, udp):
            assert up.poll() is None, up.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "up --collect did not listen"
            time.sleep(0.2)
        softflowd(ns, tmp, udp, "10")
        summary: dict = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            agg = _query(ns, grpc_port, "aggregate", "--task", "per_five_tuple")
            summary = (agg.get("summaries") or [{}])[0]
            if int(summary.get("flowCount", 0)) >= want["flows"]:
                break
            time.sleep(0.5)
        exporters = _query(ns, grpc_port, "exporters")["exporters"]
    finally:
        out, err = _stop(up, timeout=120)
    assert up.returncode == 0, err[-3000:]
    (e,) = exporters
    assert e["address"] == "127.0.0.1" and e["samplingRates"] == [{"rate": 1, "records": e["records"]}]
    assert (int(e["packets"]), int(e["bytes"])) == (want["packets"], want["ip_bytes"])
    s = json.loads(out.strip().splitlines()[-1])
    assert s["pipeline"]["published"] == s["pipeline"]["received"] == int(e["records"])
    assert int(summary["flowCount"]) == five["flows"]
    # NetFlow/IPFIX count IP bytes (analyze: wire bytes, 14 more per Ethernet frame)
    assert (int(summary["totalPackets"]), int(summary["totalBytes"])) == (
        analyzed["ip_packets"],
        want["ip_bytes"],
    )
