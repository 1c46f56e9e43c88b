"""The service layer without servers: the stack's order, supervision and bounded stop; the loop thread;
the replay source; NATS credentials (redaction, options, configuration); the summary."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from netspectra.config import ConfigError, parse_config_text
from netspectra.probe.replay import ReplaySource
from netspectra.services.base import LoopThread, Service, ServiceError
from netspectra.services.natsserver import describe_exit
from netspectra.services.stack import Stack, StopSignals
from netspectra.services.summary import print_summary
from netspectra.transport.nats_bus import NatsAuth, redact_url

GNUTELLA = Path(__file__).resolve().parents[1] / "data" / "captures" / "gnutella.pcap"


class Recorder(Service):
    """A service that records its calls; ends on its own after ``ends_after_s``, optionally failing;
    its stop may hang for ``hang_s`` (the stack must not wait longer than the service's limit)."""

    def __init__(self, name: str, log: list[str], *, ends_after_s: float | None = None,
                 fail: bool = False, hang_s: float = 0.0) -> None:  # fmt: skip
        self.name = name  # type: ignore[misc]
        self.log = log
        self.ends_after_s = ends_after_s
        self.fail = fail
        self.hang_s = hang_s
        self.stop_timeout_s = 0.5  # type: ignore[misc]
        self.t0 = 0.0
        self.error = None

    def start(self, cancel: threading.Event | None = None) -> None:
        self.t0 = time.monotonic()
        self.log.append(f"start {self.name}")

    def done(self) -> bool:
        if self.ends_after_s is None or time.monotonic() - self.t0 < self.ends_after_s:
            return False
        if self.fail:
            self.error = ServiceError(f"{self.name} broke", 1)
        return True

    def stop(self, timeout_s: float | None = None) -> None:
        self.log.append(f"stop {self.name}")
        end = time.monotonic() + min(self.hang_s, timeout_s or 0)
        while time.monotonic() < end:  # a stop that takes its whole limit, never more
            time.sleep(0.01)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name}


def test_stack_starts_in_order_stops_in_reverse_and_ends_with_an_essential_service() -> None:
    log: list[str] = []
    a, b = Recorder("a", log), Recorder("b", log, ends_after_s=0.3)
    result = Stack("t", [a, b], signals=StopSignals("t")).run()
    assert log == ["start a", "start b", "stop b", "stop a"]
    assert (
        result.error is None
        and result.code == 0
        and result.summary == {"a": {"name": "a"}, "b": {"name": "b"}}
    )


def test_stack_keeps_running_after_a_non_essential_failure_and_stops_on_an_essential_one() -> None:
    log: list[str] = []
    side = Recorder("side", log, ends_after_s=0.1, fail=True)
    core = Recorder("core", log, ends_after_s=0.6, fail=True)
    t0 = time.monotonic()
    result = Stack("t", [core, side], essential=["core"], signals=StopSignals("t")).run()
    assert time.monotonic() - t0 >= 0.5, "a non-essential failure must not stop the stack"
    assert result.error == "core broke" and result.code == 1
    assert log[-2:] == ["stop side", "stop core"]


def test_stack_stop_is_bounded_by_each_services_limit_and_duration() -> None:
    log: list[str] = []
    slow = Recorder("slow", log, hang_s=60.0)
    t0 = time.monotonic()
    result = Stack("t", [slow], duration_s=0.2, signals=StopSignals("t")).run()
    took = time.monotonic() - t0
    assert result.error is None and 0.2 <= took < 2.0, took


def test_stack_stop_requested_during_start_up_unwinds_what_started() -> None:
    log: list[str] = []
    signals = StopSignals("t")

    class Stopper(Recorder):
        def start(self, cancel: threading.Event | None = None) -> None:
            super().start(cancel)
            signals.set("SIGTERM received")  # as the handler does

    result = Stack("t", [Recorder("a", log), Stopper("b", log), Recorder("c", log)], signals=signals).run()
    assert log == ["start a", "start b", "stop b", "stop a"]
    assert result.error is None and result.interrupted


def test_stack_start_failure_is_the_result() -> None:
    class Broken(Recorder):
        def start(self, cancel: threading.Event | None = None) -> None:
            raise ServiceError("cannot start: fix X", 2)

    log: list[str] = []
    result = Stack("t", [Recorder("a", log), Broken("b", log)], signals=StopSignals("t")).run()
    # the service that failed half-way is stopped too (what it started goes down), then the others
    assert result.error == "cannot start: fix X" and result.code == 2
    assert log == ["start a", "stop b", "stop a"]


def test_stack_unexpected_start_error_stops_what_started_then_propagates() -> None:
    class Crashing(Recorder):
        def start(self, cancel: threading.Event | None = None) -> None:
            super().start(cancel)
            raise RuntimeError("a bug")

    log: list[str] = []
    with pytest.raises(RuntimeError, match="a bug"):
        Stack("t", [Recorder("a", log), Crashing("b", log)], signals=StopSignals("t")).run()
    assert log == ["start a", "start b", "stop b", "stop a"]


def test_loop_thread_stops_and_cancels_a_main_that_ignores_stop() -> None:
    async def polite(stop: asyncio.Event) -> str:
        await stop.wait()
        return "stopped"

    t = LoopThread("polite", polite).start()
    assert t.stop(2.0, "polite") and t.result == "stopped" and t.error is None

    async def deaf(stop: asyncio.Event) -> None:
        await asyncio.sleep(3600)

    t = LoopThread("deaf", deaf).start()
    t0 = time.monotonic()
    assert t.stop(0.2, "deaf")
    assert time.monotonic() - t0 < 3 and isinstance(t.error, TimeoutError)


def test_replay_source_is_a_batch_source() -> None:
    from netspectra.batch import BatchSource
    from netspectra.capture.afpacket import FanoutCapture, LiveCapture

    src = ReplaySource([GNUTELLA], batch_size=1000)
    assert isinstance(src, BatchSource)
    for cls in (LiveCapture, FanoutCapture):  # the live sources have the shape too (opening one needs root)
        assert all(callable(getattr(cls, m, None)) for m in ("__iter__", "stop", "close"))
        assert isinstance(getattr(cls, "stats", None), property)
    n = sum(len(b) for b in src)
    st = src.stats.as_dict()
    assert n == st["packets"] == st["ip_packets"] == 3882 and st["files"] == 1 and st["skipped"] == 23
    with pytest.raises(RuntimeError):
        iter(src).__next__()
    src.close()


def test_replay_source_stop_ends_a_paced_wait_at_once() -> None:
    src = ReplaySource([GNUTELLA], speed=0.001, batch_size=100)  # a thousand times slower than recorded
    got: list[int] = []
    th = threading.Thread(target=lambda: got.extend(len(b) for b in src))
    th.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    src.stop()
    th.join(5)
    assert not th.is_alive() and time.monotonic() - t0 < 1.0
    assert sum(got) < 3882 and src.stats.packets == sum(got)


def test_redact_url_hides_passwords_and_tokens() -> None:
    assert redact_url("nats://alice:s3cret@h:4222") == "nats://alice:***@h:4222"
    assert redact_url("nats://tok@h:4222") == "nats://***@h:4222"
    assert redact_url("nats://h:1,tls://a:b@x:2") == "nats://h:1,tls://a:***@x:2"
    assert redact_url("nats://127.0.0.1:4222") == "nats://127.0.0.1:4222"


def test_nats_auth_options_and_secrets_out_of_repr(tmp_path: Path) -> None:
    auth = NatsAuth(user="alice", password="s3cret")
    assert auth.connect_options() == {"user": "alice", "password": "s3cret"}
    assert "s3cret" not in repr(auth)
    assert "tls" not in auth.connect_options() and "tls" in NatsAuth().connect_options("tls://h:1")
    with pytest.raises(ValueError, match=r"nats\.tls_ca_file"):
        NatsAuth(tls_ca_file=str(tmp_path / "missing.pem")).connect_options()
    with pytest.raises(ValueError, match=r"nats\.tls_cert_file"):
        NatsAuth(
            tls_cert_file=str(tmp_path / "c.pem"), tls_key_file=str(tmp_path / "k.pem")
        ).connect_options()


def test_nats_config_section() -> None:
    cfg = parse_config_text("nats: {user: alice, password: pw}\n", source="t.yaml", expand=False)
    auth = NatsAuth.from_config(cfg)
    assert (auth.user, auth.password) == ("alice", "pw") and "pw" not in repr(cfg.nats)
    for text, msg in (
        ("nats: {user: a, token: t}\n", "not both"),
        ("nats: {password: p}\n", "nats.user is empty"),
        ("nats: {tls_cert_file: c.pem}\n", "go together"),
    ):
        with pytest.raises(ConfigError, match=msg):
            parse_config_text(text, source="t.yaml", expand=False)


def test_describe_exit() -> None:
    assert describe_exit(-9) == "signal 9 (SIGKILL)" and describe_exit(3) == "exit status 3"


def test_summary_readable_and_json() -> None:
    buf = io.StringIO()
    con = Console(file=buf, width=120, color_system=None)
    sections = [("Probe", [("packets published", 1234567), ("lost between probe and engine", 0)])]
    print_summary(con, sections, {"probe": {"packets_published": 1234567}}, as_json=False, title="done")
    text = buf.getvalue()
    assert (
        "done" in text and "Probe" in text and "1,234,567" in text and "lost between probe and engine" in text
    )
    buf = io.StringIO()
    print_summary(Console(file=buf), sections, {"probe": {"packets_published": 1}}, as_json=True)
    assert json.loads(buf.getvalue()) == {"probe": {"packets_published": 1}}


def test_consumer_counts_a_lost_tail_from_the_probes_end_marker() -> None:
    """A probe ends every shard with an empty message (core NATS): messages lost before it are a gap,
    their packets estimated from the probe's average message; the marker itself is no message."""
    from netspectra.batch import PacketBatch
    from netspectra.capture.reader import CaptureReader
    from netspectra.engine.manager import Manager
    from netspectra.engine.stream import StreamConsumer, StreamOptions
    from netspectra.transport.codec import encode_batch

    batch = next(iter(CaptureReader(GNUTELLA, batch_size=100)))
    small = batch.head(30)
    meta = {"probe_id": "p", "shard": 0, "n_shards": 1}
    # messages of 100, 100, (30, 100 lost), then the end marker: shard_packets says exactly 130 were lost
    c = StreamConsumer(Manager([]), StreamOptions())
    assert c._decode(encode_batch(batch, seq=1, shard_packets=0, **meta)) is not None
    assert c._decode(encode_batch(batch, seq=2, shard_packets=100, **meta)) is not None
    end = encode_batch(PacketBatch.empty(0), seq=5, shard_packets=330, **meta)
    assert len(c._decode(end)) == 0
    st = c.stats
    assert (st.messages, st.packets, st.end_markers) == (2, 200, 1)
    assert (st.seq_gaps, st.lost_packets) == (2, 130)
    # an older probe without shard_packets: its average message stands for each lost one
    c = StreamConsumer(Manager([]), StreamOptions())
    for seq in (1, 2):
        assert c._decode(encode_batch(batch, seq=seq, **meta)) is not None
    assert c._decode(encode_batch(small, seq=5, **meta)) is not None
    assert (c.stats.seq_gaps, c.stats.lost_packets) == (2, 153)  # 2 x 230 / 3


def engine_fed_gnutella(cfg: Any, out: Path) -> Any:
    """An engine service (no writers, ``--out out``) whose manager applied every packet of gnutella.pcap and
    stopped: what its ``--out`` writes at stop is then ready."""
    from netspectra.capture.reader import CaptureReader
    from netspectra.services.engine import EngineOptions, EngineService

    service = EngineService(cfg, EngineOptions(writers=False, flows_out=out))
    service.manager.start()
    for b in CaptureReader(Path(__file__).resolve().parents[1] / "data" / "captures" / "gnutella.pcap"):
        service.manager.submit(b)
    service.manager.stop()
    return service


def test_engine_out_file_that_cannot_be_written_is_the_service_s_error(tmp_path: Path) -> None:
    """``engine --out``: the exact tasks' files are written at stop; one whose place a directory takes is
    not written, the others are, and the service's error names it (the command exits 1; it used to raise
    out of stop, logged, exit 0)."""
    cfg = parse_config_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks:\n"
        "      - {name: five, key_fields: [SrcIP, DstIP, SrcPort, DstPort, Protocol]}\n"
        "      - {name: src, key_fields: [SrcIP]}\n"
    )
    service = engine_fed_gnutella(cfg, tmp_path)
    (tmp_path / "five.parquet").mkdir()
    service._write_flows(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["five.parquet", "src.parquet"]
    assert (tmp_path / "five.parquet").is_dir() and (tmp_path / "src.parquet").stat().st_size > 0
    assert isinstance(service.error, ServiceError) and service.error.code == 1
    want = f"--out: {tmp_path / 'five.parquet'} (task five) not written: IsADirectoryError: Is a directory"
    assert want in str(service.error) and ".tmp" not in str(service.error)


def test_engine_out_names_a_file_as_analyze_does_never_outside_the_directory(tmp_path: Path) -> None:
    """``engine --out DIR``: a task's name is one path component of DIR (percent-encoded, as analyze --out
    and the Parquet writer name it): a task named ``../up`` is written in DIR, not beside it."""
    import pyarrow.parquet as pq

    from netspectra.storage.files import safe_name

    cfg = parse_config_text(
        "aggregator:\n  types: [exact]\n  exact:\n    tasks:\n      - {name: ../up, key_fields: [SrcIP]}\n"
    )
    out = tmp_path / "out"
    service = engine_fed_gnutella(cfg, out)
    service._write_flows(out)
    assert service.error is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == [f"{safe_name('../up')}.parquet"]
    assert pq.read_table(out / f"{safe_name('../up')}.parquet").num_rows > 0
