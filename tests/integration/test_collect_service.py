"""The collector as a service: UDP exports → ``netspectra collect`` → a real nats-server → an engine.

Datagrams are built by :mod:`netspectra.collect.build` (NetFlow v5, v9, IPFIX, sFlow with sampled
headers) and sent over loopback; what the engine accounts must equal the same datagrams decoded offline
(:class:`FlowDecoder` + :func:`flow_batch`) and fed to the same tasks. SIGTERM must lose nothing that
was received; bad input must be counted, never crash or stall the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("nats", reason="nats-py is not installed (pip install nats-py)")

from collect_helpers import free_udp_port, send, wait_bound
from test_ops_services import ready, samples, value, wait_until

from netspectra.batch import PacketBatch
from netspectra.collect import build
from netspectra.collect.batches import flow_batch
from netspectra.collect.capture import datagrams_from_capture
from netspectra.collect.decoder import FlowDecoder
from netspectra.collect.records import DatagramBatch
from netspectra.config import parse_config_text
from netspectra.engine import Manager
from netspectra.engine.stream import StreamConsumer, StreamOptions
from netspectra.services.collect import CollectOptions, CollectService
from netspectra.tasks.exact import ExactTask, FlowSnapshot
from netspectra.transport.natsserver import NatsServer, free_port

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from collect_cases import polls  # noqa: E402

CONFIG_YAML = """
aggregator:
  types: ["exact"]
  period: "0s"
  num_workers: 2
  exact:
    writers: []
    tasks:
      - name: "per_five_tuple"
        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
      - name: "per_src"
        key_fields: ["SrcIP"]
collect:
  listen: ["127.0.0.1:0"]
"""
TASKS = {"per_five_tuple": ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"), "per_src": ("SrcIP",)}


def _cfg():  # type: ignore[no-untyped-def]
    return parse_config_text(CONFIG_YAML, source="test.yaml", expand=False)


def exports() -> list[bytes]:
    """Every protocol, sampled and not: 3000 v9 and 2000 IPFIX records, v5 sampled 1-in-10, sFlow
    samples with headers (1-in-1000)."""
    v5 = [
        build.netflow5(
            [{"src": f"10.9.{i}.1", "dst": "10.9.0.2", "sport": 1000 + i, "dport": 80, "proto": 6,
              "packets": 7, "bytes": 7000} for i in range(20)],
            sampling=(1 << 14) | 10, sequence=0,
        )
    ]  # fmt: skip
    return [
        *build.synthetic_v9(3000, seed=1),
        *build.synthetic_ipfix(2000, seed=2),
        *v5,
        *build.synthetic_sflow(400, seed=3),
    ]


def offline(payloads: list[bytes]) -> tuple[PacketBatch, dict[str, FlowSnapshot]]:
    """The same datagrams decoded and converted in-process, and the tasks over the rows."""
    dec = FlowDecoder()
    res = dec.decode(DatagramBatch.from_payloads(payloads, sender="127.0.0.1", received_ns=time.time_ns()))
    batch = flow_batch(res.records)
    tasks = {name: ExactTask(name, fields) for name, fields in TASKS.items()}
    for t in tasks.values():
        t.update(batch)
    return batch, {n: t.snapshot() for n, t in tasks.items()}


def _key_sums(snap: FlowSnapshot) -> dict[tuple, tuple[int, int]]:
    """Flow key -> (packets, bytes); times left out (sFlow rows take the receive time)."""
    return {
        (bytes(snap.src_ip[i]), bytes(snap.dst_ip[i]), int(snap.src_port[i]), int(snap.dst_port[i]),
         int(snap.protocol[i])): (int(snap.packets[i]), int(snap.bytes[i]))
        for i in range(len(snap))
    }  # fmt: skip


async def _wait(cond, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_collector_publishes_what_offline_decoding_gives(nats_server: NatsServer) -> None:
    payloads = exports()
    want_batch, want = offline(payloads)
    cfg = _cfg()
    subject = "collect.rows"

    async def main() -> tuple[Manager, CollectService]:
        m = Manager.from_config(cfg, writers=False)
        m.start()
        stop = asyncio.Event()
        c = StreamConsumer(m, StreamOptions(url=nats_server.url, subject=subject, n_shards=4))
        task = asyncio.create_task(c.run(stop))
        await asyncio.wait_for(c.ready.wait(), 30)
        svc = CollectService(CollectOptions.from_config(cfg, url=nats_server.url, subject=subject, shards=4))
        svc.start()
        try:
            port = int(svc.source.addresses[0].rsplit(":", 1)[1])
            await asyncio.to_thread(send, payloads, port)
            await _wait(
                lambda: svc.source.stats.rows.records.value >= len(want_batch), "the collector's rows"
            )
        finally:
            await asyncio.to_thread(svc.stop)
        await _wait(lambda: c.stats.packets >= svc.published_rows, "the engine to receive every row")
        stop.set()
        await task
        m.stop()
        return m, svc

    m, svc = asyncio.run(main())
    s = svc.summary()
    assert s["kernel_drops"] == 0 and s["queue_dropped_records"] == 0
    assert s["decoder"]["totals"]["datagrams"] == len(payloads)
    assert s["decoder"]["totals"]["decode_errors"] == 0
    assert svc.published_rows == len(want_batch) == s["rows"]["rows"]
    # scaled counts: what the rows stand for, exactly as offline
    assert s["rows"]["packets"] == int(want_batch.packet_counts().sum())
    assert s["rows"]["bytes"] == int(want_batch.byte_counts().sum())
    exporters = s["decoder"]["exporters"]
    assert set(exporters) == {"127.0.0.1", "192.0.2.1"}  # the UDP sender; the sFlow agent address
    assert exporters["192.0.2.1"]["sampling_rates"] == {1000: 400}
    got = {t.name: t.snapshot() for t in m.tasks}
    for name in TASKS:
        assert got[name].total_packets == want[name].total_packets, name
        assert got[name].total_bytes == want[name].total_bytes, name
        assert _key_sums(got[name]) == _key_sums(want[name]), name


def _collect_cmd(cfg_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "netspectra", "collect", "--config", str(cfg_path), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _start_collector(tmp_path: Path, port: int) -> tuple[Path, subprocess.Popen[bytes]]:
    """``netspectra collect --no-publish --json`` on ``127.0.0.1:port`` with :data:`CONFIG_YAML` (its
    configuration file, the running process)."""
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(CONFIG_YAML)
    proc = subprocess.Popen(
        _collect_cmd(cfg_path, "--listen", f"127.0.0.1:{port}", "--no-publish", "--json"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return cfg_path, proc


def test_sigterm_loses_nothing_already_received(tmp_path: Path) -> None:
    """Datagrams sent just before SIGTERM are in the socket buffer: the stop reads and decodes them."""
    port = free_udp_port()
    _, proc = _start_collector(tmp_path, port)
    try:
        wait_bound(port, proc)
        payloads = build.synthetic_ipfix(30_000, seed=5)  # 1000 datagrams
        send(payloads, port, pace_every=100)
        proc.send_signal(signal.SIGTERM)  # at once: some datagrams still wait in the socket
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-3000:]
    s = json.loads(out.decode().strip().splitlines()[-1])
    assert s["kernel_drops"] == 0
    assert s["decoder"]["totals"]["datagrams"] == len(payloads)
    assert s["decoder"]["totals"]["records"] == 30_000 == s["rows"]["rows"] == s["rows_out"]


def test_address_in_use_is_a_clear_error(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(CONFIG_YAML)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        r = subprocess.run(
            _collect_cmd(cfg_path, "--listen", f"udp://127.0.0.1:{port}", "--no-publish"),
            env=_env(),
            capture_output=True,
            timeout=120,
        )
    err = r.stderr.decode()
    assert r.returncode == 1, err
    assert f"cannot listen on udp://127.0.0.1:{port}" in err and "already listens there" in " ".join(
        err.split()
    )


def test_a_second_collector_on_a_port_in_use_is_refused(tmp_path: Path) -> None:
    """A collector running, a second one started on its port: the second must fail (it bound the port too
    — SO_REUSEADDR — and took every datagram from the running one, which went on reporting nothing)."""
    port = free_udp_port()
    cfg_path, first = _start_collector(tmp_path, port)
    try:
        wait_bound(port, first)
        second = subprocess.run(
            _collect_cmd(cfg_path, "--listen", f"127.0.0.1:{port}", "--no-publish", "--duration", "5"),
            env=_env(),
            capture_output=True,
            timeout=120,
        )
        err = second.stderr.decode()
        assert second.returncode == 1, err
        assert "already listens there" in " ".join(err.split())
        payloads = build.synthetic_ipfix(300, seed=5)
        send(payloads, port)
        time.sleep(0.5)
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    s = json.loads(out.decode().strip().splitlines()[-1])
    assert s["decoder"]["totals"]["datagrams"] == len(payloads)  # the running collector got them all


def test_bad_listen_address_is_a_usage_error(tmp_path: Path) -> None:
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(CONFIG_YAML)
    cmd = _collect_cmd(cfg_path, "--listen", "tcp://127.0.0.1:2055")
    r = subprocess.run(cmd, env=_env(), capture_output=True, timeout=120)
    assert r.returncode == 2
    assert "only udp:// is supported" in " ".join(r.stderr.decode().split())


FUZZ_DATAGRAMS = int(os.environ.get("NETSPECTRA_COLLECT_FUZZ_DATAGRAMS", "100000"))


def test_random_datagrams_are_counted_never_a_crash_or_stall() -> None:
    """Random and header-prefixed random datagrams over UDP into the running collector: every one is
    received and counted (a decode error, or decoded), the service keeps answering, memory stays bounded
    by the limits. 10^6 with NETSPECTRA_COLLECT_FUZZ_DATAGRAMS=1000000 (benchmarks/RESULTS.md)."""
    rng = random.Random(15)
    prefixes = [b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x00\x00\x00\x05\x00\x00\x00\x01", b""]
    pool = []
    for _ in range(4096):
        body = rng.randbytes(rng.randrange(0, 1400))
        pool.append(rng.choice(prefixes) + body)
    cfg = _cfg()
    svc = CollectService(CollectOptions.from_config(cfg, publish=False))
    svc.start()
    try:
        port = int(svc.source.addresses[0].rsplit(":", 1)[1])
        # many senders (source ports): many exporter streams — all from 127.0.0.1, so one exporter
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
        t0 = time.monotonic()
        for i in range(FUZZ_DATAGRAMS):
            socks[i % 8].sendto(pool[rng.randrange(4096)], ("127.0.0.1", port))
            if i % 500 == 499:
                time.sleep(0.001)
                assert not svc.done(), svc.error
        for s in socks:
            s.close()
        st = svc.source.stats
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = sum(int(x["datagrams"]) for x in st.listeners()) + st.kernel_drops
            if got >= FUZZ_DATAGRAMS:
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
    finally:
        svc.stop()
    s = svc.summary()
    received = sum(int(x["datagrams"]) for x in s["listeners"])
    assert received + s["kernel_drops"] == FUZZ_DATAGRAMS, (received, s["kernel_drops"])
    tot = s["decoder"]["totals"]
    assert tot["datagrams"] == received
    assert tot["decode_errors"] > 0.5 * received  # random bytes are mostly not exports
    assert sum(s["decoder"]["errors"].values()) == tot["decode_errors"]
    print(f"{FUZZ_DATAGRAMS} random datagrams in {elapsed:.1f} s; errors {s['decoder']['errors']}")


def test_sflow_interface_counters_on_metrics_and_in_the_summary(tmp_path: Path) -> None:
    """Counter samples (tests/data/collect/sflow.pcap's datagrams, two polls of four interfaces, Open
    vSwitch's capture ovs-sflow-counters.pcap) sent
    over loopback to a real ``netspectra collect``: ``/metrics`` carries each interface's latest counters,
    equal to the same datagrams decoded by the library; the ``--json`` summary has them per exporter."""
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(CONFIG_YAML)
    capture = ROOT / "tests" / "data" / "collect" / "sflow.pcap"
    payloads = [bytes(dg.payload(i)) for dg in datagrams_from_capture(capture) for i in range(len(dg))]
    ovs = ROOT / "tests" / "data" / "collect" / "ovs-sflow-counters.pcap"  # a real agent: Open vSwitch
    payloads += polls() + [bytes(dg.payload(i)) for dg in datagrams_from_capture(ovs) for i in range(len(dg))]
    dec = FlowDecoder()  # the library's reading of the same datagrams
    for p in payloads:
        dec.decode(DatagramBatch.from_payloads([p], "127.0.0.1", time.time_ns()))
    want = dec.interfaces.snapshot()
    assert sum(len(x) for x in want.values()) == 9
    n_counters = dec.stats.as_dict()["totals"]["interface_counters"]
    port, oport = free_udp_port(), free_port()
    cmd = _collect_cmd(cfg_path, "--listen", f"127.0.0.1:{port}", "--no-publish", "--json")
    proc = subprocess.Popen(
        [*cmd, "--ops-listen", f"127.0.0.1:{oport}"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_bound(port, proc)
        wait_until(lambda: ready(oport), "the collector's ops endpoint", proc, timeout=120)
        send(payloads, port)
        wait_until(
            lambda: (
                sum(
                    v
                    for _, v in samples(oport).get("netspectra_collect_exporter_interface_counters_total", [])
                )
                >= 10
            ),
            "the counter records",
            proc,
            timeout=60,
        )
        sm = samples(oport)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    for e, lst in want.items():
        assert value(sm, "netspectra_collect_exporter_interfaces", exporter=e) == len(lst)
        for r in lst:
            lab = {"exporter": e, "if_index": str(r["if_index"])}
            if "in_bcast" in r["unsupported"]:  # Open vSwitch: no broadcast counters, so no series
                assert not [
                    v
                    for x, v in sm.get("netspectra_collect_interface_in_broadcast_packets_total", [])
                    if x == lab
                ]
            assert value(sm, "netspectra_collect_interface_in_octets_total", **lab) == r["in_octets"]
            assert value(sm, "netspectra_collect_interface_out_octets_total", **lab) == r["out_octets"]
            assert value(sm, "netspectra_collect_interface_in_unicast_packets_total", **lab) == r["in_ucast"]
            assert value(sm, "netspectra_collect_interface_in_errors_total", **lab) == r["in_errors"]
            assert value(sm, "netspectra_collect_interface_out_errors_total", **lab) == r["out_errors"]
            assert value(sm, "netspectra_collect_interface_in_discards_total", **lab) == r["in_discards"]
            assert value(sm, "netspectra_collect_interface_speed_bits_per_second", **lab) == r["if_speed"]
            assert value(sm, "netspectra_collect_interface_oper_up", **lab) == float(r["oper_up"])
    # the values of the capture, as tshark -V shows them
    v99 = {"exporter": "192.0.2.99", "if_index": "3"}
    assert value(sm, "netspectra_collect_interface_in_octets_total", **v99) == float(1 << 40)
    assert value(sm, "netspectra_collect_interface_out_errors_total", **v99) == 5.0
    assert value(sm, "netspectra_collect_interface_speed_bits_per_second", **v99) == 1e10
    assert value(sm, "netspectra_collect_interface_in_unicast_packets_total", exporter="2001:db8::99") == 99.0
    s = json.loads(out.strip().splitlines()[-1])
    d = s["decoder"]
    assert d["totals"]["interface_counters"] == n_counters and d["totals"]["interfaces"] == 9
    assert {e: r["interfaces"] for e, r in d["exporters"].items()} == {e: len(x) for e, x in want.items()}
    drop = ("received_ns",)  # the receive time is the collector's own
    assert {
        e: [{k: v for k, v in r.items() if k not in drop} for r in x] for e, x in d["interfaces"].items()
    } == {e: [{k: v for k, v in r.items() if k not in drop} for r in x] for e, x in want.items()}


def test_the_decoders_kernels_are_loaded_before_listening(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector binds its sockets only once the decoders' kernels (and the wire encoder's when it
    publishes) are loaded: after an installation, the first datagrams would otherwise wait seconds for
    their compilation while the socket buffers fill."""
    from netspectra.collect import nf_kernels, sflow_kernels
    from netspectra.collect.source import CollectorSource
    from netspectra.offline import warmup

    seen: list[str] = []
    real_exports, real_wire, real_start = warmup.warm_up_exports, warmup.warm_up_wire, CollectorSource.start

    def exports(*args: object, **kw: object) -> None:
        seen.append("exports")
        real_exports(*args, **kw)  # type: ignore[arg-type]

    def wire() -> None:
        seen.append("wire")
        real_wire()

    def start(self: CollectorSource) -> CollectorSource:
        loaded = all(
            k.signatures
            for k in (nf_kernels.scan_datagrams, nf_kernels.decode_sets, sflow_kernels.decode_sflow)
        )
        seen.append("listen, decoders loaded" if loaded else "listen")
        return real_start(self)

    monkeypatch.setattr(warmup, "warm_up_exports", exports)
    monkeypatch.setattr(warmup, "warm_up_wire", wire)
    monkeypatch.setattr(CollectorSource, "start", start)
    for publish in (False, True):
        options = CollectOptions.from_config(_cfg(), publish=publish, url=nats_server.url)
        svc = CollectService(options)
        svc.start()
        svc.stop()
        assert svc.error is None
    assert seen == ["exports", "listen, decoders loaded", "exports", "wire", "listen, decoders loaded"]
