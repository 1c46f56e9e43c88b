"""The UDP receive layer over loopback: batches, senders, several listeners, truncation, kernel drops,
the recvmsg fallback, failures in the consumer, clean stop; and receive -> decode end to end."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from collect_cases import ALL_CASES

from netspectra.collect.addr import to_text
from netspectra.collect.decoder import FlowDecoder
from netspectra.collect.receiver import UdpReceiver, proc_udp_drops
from netspectra.collect.records import DatagramBatch


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Sink:
    """Collects batches; ``wait(n)`` until n datagrams arrived."""

    def __init__(self) -> None:
        self.batches: list[DatagramBatch] = []
        self.cond = threading.Condition()

    def __call__(self, b: DatagramBatch) -> None:
        with self.cond:
            self.batches.append(b)
            self.cond.notify_all()

    def count(self) -> int:
        return sum(len(b) for b in self.batches)

    def wait(self, n: int, timeout: float = 10.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: self.count() >= n, timeout), f"{self.count()} of {n} datagrams"

    def payloads(self) -> list[tuple[bytes, str, int]]:
        return [
            (b.payload(i), to_text(b.sender[i].tobytes()), int(b.sender_port[i]))
            for b in self.batches
            for i in range(len(b))
        ]


@pytest.mark.parametrize("method", ["recvmmsg", "recvmsg"])
def test_datagrams_arrive_whole_with_their_senders(method: str) -> None:
    sink = Sink()
    addrs = [("127.0.0.1", 0)] + ([("::1", 0)] if has_ipv6() else [])
    rx = UdpReceiver(addrs, sink, rcvbuf=1 << 20, batch=16, method=method).start()
    try:
        sent = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4:
            s4.bind(("127.0.0.1", 0))
            for i in range(50):
                p = bytes([i]) * (i * 29 + 1)
                s4.sendto(p, ("127.0.0.1", rx.ports[0]))
                sent.append((p, "127.0.0.1", s4.getsockname()[1]))
            if len(addrs) > 1:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
                    s6.bind(("::1", 0))
                    for i in range(20):
                        s6.sendto(b"v6" * i, ("::1", rx.ports[1]))
                        sent.append((b"v6" * i, "::1", s6.getsockname()[1]))
        sink.wait(len(sent))
        before = time.time_ns()
    finally:
        t0 = time.monotonic()
        rx.stop()
        stop_s = time.monotonic() - t0
    assert sorted(sink.payloads()) == sorted(sent)
    assert all(b.received_ns.max() <= before for b in sink.batches)  # kernel receive times
    assert all(b.received_ns.min() > before - 60 * 10**9 for b in sink.batches)
    assert stop_s < 2.0
    st = rx.stats()
    assert [x["datagrams"] for x in st] == [50] + ([20] if len(addrs) > 1 else [])
    assert all(x["method"] == method and x["truncated"] == 0 and x["rcvbuf_granted"] > 0 for x in st)


def test_datagram_larger_than_the_slot_is_counted_not_delivered() -> None:
    sink = Sink()
    rx = UdpReceiver([("127.0.0.1", 0)], sink, batch=4, slot=100).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"a" * 500, ("127.0.0.1", rx.ports[0]))
            s.sendto(b"b" * 100, ("127.0.0.1", rx.ports[0]))
        sink.wait(1)
        time.sleep(0.2)
    finally:
        rx.stop()
    assert sink.payloads()[0][0] == b"b" * 100 and sink.count() == 1
    assert rx.stats()[0]["truncated"] == 1


def test_kernel_drops_are_counted() -> None:
    """A consumer that does not keep up: the socket buffer overflows and both counters see it."""
    gate = threading.Event()
    sink = Sink()

    def slow(b: DatagramBatch) -> None:
        gate.wait(10)
        sink(b)

    rx = UdpReceiver([("127.0.0.1", 0)], slow, rcvbuf=4096, batch=8).start()
    n = 2000
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(n):
                s.sendto(b"x" * 1000, ("127.0.0.1", rx.ports[0]))
        time.sleep(0.3)
        proc = proc_udp_drops(rx._listeners[0].sock)
        gate.set()
        assert proc is not None
        sink.wait(n - proc)  # everything the kernel kept arrives
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"late", ("127.0.0.1", rx.ports[0]))  # queued after the drops: it carries their count
        sink.wait(n - proc + 1)
    finally:
        rx.stop()
    st = rx.stats()[0]
    received = sink.count() - 1
    assert proc > 0 and received < n
    assert proc == n - received == st["drops"] == st["proc_drops"]
    # SO_RXQ_OVFL: the same counter, as each datagram carried it when it was queued (so it lags behind
    # drops until a datagram is queued after them)
    assert st["kernel_drops"] == proc


def test_consumer_failure_is_counted_and_receiving_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def flaky(b: DatagramBatch) -> None:
        calls.append(len(b))
        if len(calls) == 1:
            raise RuntimeError("consumer failed")

    rx = UdpReceiver([("127.0.0.1", 0)], flaky, batch=1, linger_s=0).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(3):
                s.sendto(b"x", ("127.0.0.1", rx.ports[0]))
                time.sleep(0.05)
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        rx.stop()
    assert len(calls) == 3
    assert rx.stats()[0]["errors"] == 1
    assert "consumer failed" in caplog.text


def test_bad_addresses_fail_at_once() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(OSError):
            UdpReceiver([("127.0.0.1", 0), ("127.0.0.1", taken.getsockname()[1])], print, method="recvmmsg")
    with pytest.raises(ValueError, match="method"):
        UdpReceiver([("127.0.0.1", 0)], print, method="magic")


def test_receive_then_decode_equals_decoding_the_datagrams() -> None:
    payloads = [p for name in sorted(ALL_CASES) for p in ALL_CASES[name]()]
    dec = FlowDecoder()
    got: list[dict] = []
    lock = threading.Lock()
    n_in = [0]

    def decode(b: DatagramBatch) -> None:
        with lock:
            got.extend(dec.decode(b).records.as_dicts())
            n_in[0] += len(b)

    rx = UdpReceiver([("127.0.0.1", 0)], decode, batch=64).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            for p in payloads:
                s.sendto(p, ("127.0.0.1", rx.ports[0]))
                time.sleep(0.002)  # keep the order of templates and data across batches
        deadline = time.monotonic() + 10
        while n_in[0] < len(payloads) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        rx.stop()
    ref = FlowDecoder()
    want = [ref.decode(DatagramBatch.from_payloads([p], "127.0.0.1")).records.as_dicts() for p in payloads]
    strip = ("received_ns", "hdr_off", "flow_start_ns", "flow_end_ns")

    def key(r: dict) -> tuple:
        return tuple(v for k, v in sorted(r.items()) if k not in strip)

    assert sorted(map(key, got)) == sorted(key(r) for rows in want for r in rows)
    assert dec.stats.as_dict()["totals"]["datagrams"] == len(payloads)
