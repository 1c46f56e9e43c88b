"""Probe → NATS → engine against a real ``nats-server`` (started here, 127.0.0.1, free ports, JetStream on).

Every test compares the engine's exact-task results with the offline analysis of the same file: per
flow, packets, bytes, first and last timestamp must be identical.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("nats", reason="nats-py is not installed (pip install nats-py)")

from netspectra.batch import PacketBatch
from netspectra.capture.reader import CaptureReader
from netspectra.config import parse_config_text
from netspectra.config.models import Config
from netspectra.engine import Manager
from netspectra.engine.stream import StreamConsumer, StreamOptions
from netspectra.probe import Publisher, PublisherOptions, pace, replay_files
from netspectra.tasks.exact import ExactTask, FlowSnapshot
from netspectra.transport.codec import batch_to_packet_infos, decode_batch, encode_batch, shard_of
from netspectra.transport.nats_bus import (
    NATS_READ_BUFFER,
    batch_subject,
    batch_wildcard,
    connect,
    encode_messages,
    max_packets_for_payload,
    member_shards,
    widen_nats_reads,
)
from netspectra.transport.natsserver import NatsServer, find_nats_server

ROOT = Path(__file__).resolve().parents[2]
SUBJECT = "test.packets"
WAIT_S = 120.0

CONFIG_YAML = """
aggregator:
  types: ["exact"]
  period: "0s"
  num_workers: 2
  size_of_packet_channel: 200000
  exact:
    writers: []
    tasks:
      - name: "per_five_tuple"
        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
      - name: "per_src"
        key_fields: ["SrcIP"]
"""
TASKS = {"per_five_tuple": ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"), "per_src": ("SrcIP",)}


def _config() -> Config:
    return parse_config_text(CONFIG_YAML, source="test.yaml", expand=False)


@pytest.fixture(scope="module")
def gen_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from netspectra.gen.synth import generate

    path = tmp_path_factory.mktemp("gen") / "gen200k.pcap"
    generate(path, packets=200_000, flows=20_000, seed=7, write_truth=False)
    return path


GNUTELLA = ROOT / "tests" / "data" / "captures" / "gnutella.pcap"


def offline(path: Path) -> dict[str, FlowSnapshot]:
    tasks = {name: ExactTask(name, fields) for name, fields in TASKS.items()}
    for batch in CaptureReader(path):
        for t in tasks.values():
            t.update(batch)
    return {name: t.snapshot() for name, t in tasks.items()}


def canonical(snap: FlowSnapshot) -> dict[str, np.ndarray]:
    s = snap.sorted("bytes")
    return {name: np.asarray(getattr(s, name)) for name in FlowSnapshot.ARRAYS}


def assert_same(got: FlowSnapshot, want: FlowSnapshot) -> None:
    assert len(got) == len(want)
    g, w = canonical(got), canonical(want)
    for name in FlowSnapshot.ARRAYS:
        assert np.array_equal(g[name], w[name]), name


def merged(snaps: list[FlowSnapshot]) -> FlowSnapshot:
    """Flows of several engines side by side (no merging of equal keys: a flow seen twice stays twice)."""
    s0 = snaps[0]
    return FlowSnapshot(
        s0.task_name,
        s0.key_fields,
        *(np.concatenate([getattr(s, name) for s in snaps]) for name in FlowSnapshot.ARRAYS),
    )


def snapshots(manager: Manager) -> dict[str, FlowSnapshot]:
    return {t.name: t.snapshot() for t in manager.tasks}


async def wait_for(cond, what: str, timeout: float = WAIT_S) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def run_pipeline(
    url: str, source, consumers: list[StreamOptions], publisher: PublisherOptions
) -> tuple[list[Manager], list[StreamConsumer], int]:  # type: ignore[no-untyped-def]
    managers = [Manager.from_config(_config(), writers=False) for _ in consumers]
    for m in managers:
        m.start()
    stop = asyncio.Event()
    cons = [StreamConsumer(m, o) for m, o in zip(managers, consumers, strict=True)]
    tasks = [asyncio.create_task(c.run(stop)) for c in cons]
    try:
        for c in cons:
            await asyncio.wait_for(c.ready.wait(), 30)
        stats = await Publisher(publisher).run(source)
        total = stats.packets_published
        await wait_for(
            lambda: sum(c.stats.packets for c in cons) >= total, "the engines to receive every packet"
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    return managers, cons, total


# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["gnutella", "gen"])
def test_replay_matches_offline(nats_server: NatsServer, gen_trace: Path, which: str) -> None:
    path = GNUTELLA if which == "gnutella" else gen_trace
    want = offline(path)
    n_packets = want["per_five_tuple"].total_packets
    opts = StreamOptions(url=nats_server.url, subject=SUBJECT, n_shards=8, queue_group=f"q-{which}")
    pub = PublisherOptions(url=nats_server.url, subject=SUBJECT, n_shards=8, probe_id=which, max_packets=5000)
    managers, cons, total = asyncio.run(
        run_pipeline(nats_server.url, replay_files([path], batch_size=20_000), [opts], pub)
    )
    assert total == n_packets
    st = cons[0].stats
    assert st.packets == n_packets
    assert st.seq_gaps == st.decode_errors == st.handoff_dropped_packets == st.slow_consumer_events == 0
    assert int(managers[0].metrics.dropped_packets.value) == 0
    got = snapshots(managers[0])
    for name in TASKS:
        assert_same(got[name], want[name])


def test_publisher_coalesces_small_parts_while_batches_wait(nats_server: NatsServer, gen_trace: Path) -> None:
    # 2 000-packet batches into 4 shards: ~500-packet parts. While batches wait in the publisher's queue
    # each shard's parts are held and go out together (messages up to max_packets), with the same
    # per-shard order, sequence numbers without a gap, and the offline results
    want = offline(gen_trace)
    n_packets = want["per_five_tuple"].total_packets
    batches = list(CaptureReader(gen_trace, batch_size=2_000))
    parts = len(batches) * 4
    opts = StreamOptions(url=nats_server.url, subject=SUBJECT, n_shards=4, queue_group="q-coalesce")
    pub = PublisherOptions(
        url=nats_server.url, subject=SUBJECT, n_shards=4, probe_id="co", max_packets=20_000
    )
    managers, cons, total = asyncio.run(run_pipeline(nats_server.url, iter(batches), [opts], pub))
    st = cons[0].stats
    assert total == st.packets == n_packets
    assert st.seq_gaps == st.decode_errors == st.handoff_dropped_packets == st.slow_consumer_events == 0
    assert st.end_markers == 4
    assert st.messages < parts / 4  # coalesced (one message a part without it)
    assert st.messages >= n_packets / 20_000  # none over max_packets
    got = snapshots(managers[0])
    for name in TASKS:
        assert_same(got[name], want[name])


def published(nats_server: NatsServer, batches: list[PacketBatch], name: str) -> tuple[list[bytes], Any]:
    """Every message (payloads, end markers included) a two-shard :class:`Publisher` sends for
    ``batches`` on ``<name>.packets``, as a raw subscriber receives them, and the publisher's stats."""
    payloads: list[bytes] = []

    async def main() -> Any:
        nc = await connect(nats_server.url, f"{name}-test")

        async def on_msg(msg: Any) -> None:
            payloads.append(bytes(msg.data))

        try:
            await nc.subscribe(batch_wildcard(f"{name}.packets"), cb=on_msg)
            await nc.flush()
            pub = PublisherOptions(url=nats_server.url, subject=f"{name}.packets", n_shards=2, probe_id=name)
            stats = await Publisher(pub).run(iter(batches))
            await wait_for(lambda: len(payloads) == stats.messages + stats.end_markers, "every message")
        finally:
            await nc.close()
        return stats

    return payloads, asyncio.run(main())


@pytest.mark.parametrize("late_ns", [0, 2_000_000_000], ids=["in-order", "late-packet"])
def test_coalesced_messages_keep_their_timestamps_within_four_byte_offsets(
    nats_server: NatsServer, late_ns: int
) -> None:
    # each batch starts 1.5 s after the previous one: three together would span more than 2**32 ns, and
    # layout 2 would send that message's timestamps as 8 bytes, not as 4-byte offsets from a base.
    # Coalescing sends a shard's held parts before a part that would make them span that far — judged
    # by the extremes, not the first and last packets: "late-packet" puts one packet 2 s later than its
    # neighbours in the middle of each batch (captures are not always in time order)
    rng = np.random.default_rng(3)
    batches = []
    for i in range(12):
        b = PacketBatch.empty(800)
        for col in PacketBatch.COLUMNS:
            getattr(b, col)[...] = 0
        b.src_ip[:, 10:12] = b.dst_ip[:, 10:12] = 0xFF
        b.src_ip[:, 12:] = rng.integers(0, 256, (800, 4), dtype=np.uint8)
        b.ts_ns[:] = i * 1_500_000_000 + np.arange(800, dtype=np.int64) * 1_000
        b.ts_ns[400] += late_ns
        b.length[:] = 100
        batches.append(b)
    payloads, stats = published(nats_server, batches, "span")
    messages = stats.messages
    spans = []
    for p in payloads:
        batch, _ = decode_batch(p)
        if len(batch):
            spans.append(int(batch.ts_ns.max()) - int(batch.ts_ns.min()))
    assert len(spans) == messages < 12 * 2  # coalesced (24 parts) ...
    assert max(spans) < 1 << 32  # ... never across 2**32 ns
    assert sum(len(decode_batch(p)[0]) for p in payloads) == 12 * 800


def test_coalescing_never_joins_batches_with_different_optional_columns(nats_server: NatsServer) -> None:
    # batches with and without an optional column (files of different kinds replayed in one run): a
    # shard's held packets go out before a part that does not carry the same columns; nothing is lost
    batches = []
    for i in range(10):
        b = PacketBatch.empty(500, optional=("tcp_flags",) if i % 2 else ())
        for col in b.columns():
            getattr(b, col)[...] = 0
        b.src_ip[:, 10:12] = b.dst_ip[:, 10:12] = 0xFF
        b.src_ip[:, 15] = np.arange(500) % 251
        b.ts_ns[:] = i * 1_000_000 + np.arange(500, dtype=np.int64)
        b.length[:] = 60
        batches.append(b)
    payloads, _ = published(nats_server, batches, "mixed")
    got = [decode_batch(p)[0] for p in payloads]
    assert sum(len(b) for b in got) == 10 * 500
    assert sum(len(b) for b in got if "tcp_flags" in b.present()) == 5 * 500


def test_a_failed_publish_counts_what_never_went_out(nats_server: NatsServer, gen_trace: Path) -> None:
    # a send fails mid-run (here: the third message, an error raised in the publisher's own send step;
    # the server is real): the error propagates, and every packet offered that was not published —
    # the coalesced ones still held, the batches still queued, the message being sent — is counted as
    # dropped, never silently gone
    batches = list(CaptureReader(gen_trace, batch_size=2_000))[:12]
    pub = Publisher(
        PublisherOptions(
            url=nats_server.url, subject="fail.packets", n_shards=4, probe_id="f", max_packets=20_000
        )
    )
    send, calls = pub._send_shard, []

    async def failing(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected send failure")
        await send(*args)

    pub._send_shard = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="injected"):
        asyncio.run(pub.run(iter(batches)))
    st = pub.stats
    assert st.packets_in > st.packets_published > 0
    assert st.packets_published + st.dropped_packets == st.packets_in


def test_a_quiet_shards_held_packets_go_out_after_max_hold_while_the_queue_stays_busy(
    nats_server: NatsServer,
) -> None:
    # batches keep waiting in the queue (coalescing holds every part) but after the first one only
    # shard 0 gets packets: shard 1's held packet goes out once it has waited MAX_HOLD_S, not only at
    # the end of the run (a live capture's quiet shard is not held back while another is busy)
    from netspectra.probe import publisher as publisher_module

    rng = np.random.default_rng(5)
    first = PacketBatch.empty(64)
    for col in PacketBatch.COLUMNS:
        getattr(first, col)[...] = 0
    first.src_ip[:, 10:12] = first.dst_ip[:, 10:12] = 0xFF
    first.src_ip[:, 12:] = rng.integers(0, 256, (64, 4), dtype=np.uint8)
    first.ts_ns[:] = np.arange(64, dtype=np.int64)
    first.length[:] = 60
    opts = PublisherOptions(url=nats_server.url, subject="hold.packets", n_shards=2, probe_id="hold")
    shards = shard_of(first, 2, opts.shard_fields)
    assert set(shards.tolist()) == {0, 1}
    busy = first.take(np.flatnonzero(shards == 0))  # shard 0's packets only
    pub = Publisher(opts)

    async def main() -> list[int]:
        nc = await connect(nats_server.url, "hold-test")
        try:
            pub._max_bytes = int(nc.max_payload)
            assert pub._queue.put(busy, block=False)  # a batch waits: parts are held, not sent
            await pub._publish(nc, None, first, opts.max_packets)
            assert pub.stats.messages == 0 and pub._held_n == [
                int((shards == 0).sum()),
                int((shards == 1).sum()),
            ]
            await asyncio.sleep(publisher_module.MAX_HOLD_S + 0.05)
            await pub._publish(nc, None, busy, opts.max_packets)  # the queue is still not empty
            return list(pub._held_n)
        finally:
            await nc.close()

    held = asyncio.run(main())
    assert held == [0, 0]  # both shards waited MAX_HOLD_S: sent, though batches still wait
    assert pub.stats.messages == 2 and pub.stats.packets_published == 64 + len(busy)


def test_publisher_holds_nothing_back_from_a_slow_source(nats_server: NatsServer, gen_trace: Path) -> None:
    # the source is slower than the publisher (nothing waits in its queue): every part goes out at
    # once, one message each — a live capture's packets are not held back waiting for more
    batches = list(CaptureReader(gen_trace, batch_size=2_000))[:8]

    def slow() -> Iterator[PacketBatch]:
        for b in batches:
            time.sleep(0.05)
            yield b

    opts = StreamOptions(url=nats_server.url, subject=SUBJECT, n_shards=4, queue_group="q-slow")
    pub = PublisherOptions(
        url=nats_server.url, subject=SUBJECT, n_shards=4, probe_id="slow", max_packets=20_000
    )
    _, cons, total = asyncio.run(run_pipeline(nats_server.url, slow(), [opts], pub))
    parts = sum(int(np.count_nonzero(np.bincount(shard_of(b, 4, ("SrcIP",)), minlength=4))) for b in batches)
    st = cons[0].stats
    assert total == st.packets == sum(len(b) for b in batches)
    assert st.seq_gaps == 0 and st.messages == parts


def test_two_engines_one_queue_group(nats_server: NatsServer, gen_trace: Path) -> None:
    want = offline(gen_trace)
    n = 16
    opts = [
        StreamOptions(url=nats_server.url, subject=SUBJECT, n_shards=n, member=k, members=2, queue_group="q2")
        for k in range(2)
    ]
    pub = PublisherOptions(url=nats_server.url, subject=SUBJECT, n_shards=n, probe_id="two")
    managers, cons, total = asyncio.run(run_pipeline(nats_server.url, replay_files([gen_trace]), opts, pub))
    assert total == want["per_src"].total_packets
    assert all(c.stats.packets > 0 for c in cons), "both engines must get a share"
    assert sum(c.stats.packets for c in cons) == total
    per_engine = [snapshots(m) for m in managers]
    for name in TASKS:
        keys = [
            {bytes(r) for r in np.hstack([s[name].src_ip, s[name].dst_ip]).view(np.uint8)} for s in per_engine
        ]
        assert not (keys[0] & keys[1]), "a flow counted by both engines"
        # sum of both engines' flows = the offline flows (a flow split across engines would appear twice)
        assert_same(merged([s[name] for s in per_engine]), want[name])


def test_same_shards_twice_in_queue_group_never_double_counts(
    nats_server: NatsServer, gen_trace: Path
) -> None:
    """Two engines covering the same shards (a rolling restart) split the messages; no packet twice."""
    want = offline(gen_trace)
    opts = [StreamOptions(url=nats_server.url, subject=SUBJECT, queue_group="q-dup") for _ in range(2)]
    pub = PublisherOptions(url=nats_server.url, subject=SUBJECT, probe_id="dup", max_packets=2000)
    managers, cons, total = asyncio.run(run_pipeline(nats_server.url, replay_files([gen_trace]), opts, pub))
    assert sum(c.stats.packets for c in cons) == total == want["per_src"].total_packets
    assert sum(snapshots(m)["per_src"].total_packets for m in managers) == total
    assert sum(snapshots(m)["per_src"].total_bytes for m in managers) == want["per_src"].total_bytes


def test_packet_info_compat_subject(nats_server: NatsServer) -> None:
    """The original's probes: one v1.PacketInfo per message on the base subject."""
    want = offline(GNUTELLA)
    batch = PacketBatch.concat(list(CaptureReader(GNUTELLA)))
    infos = [pi.SerializeToString() for pi in batch_to_packet_infos(batch)]
    subject = "compat.packets"

    async def main() -> tuple[Manager, StreamConsumer]:
        m = Manager.from_config(_config(), writers=False)
        m.start()
        stop = asyncio.Event()
        c = StreamConsumer(m, StreamOptions(url=nats_server.url, subject=subject, queue_group="q-compat"))
        task = asyncio.create_task(c.run(stop))
        await asyncio.wait_for(c.ready.wait(), 30)
        nc = await connect(nats_server.url, "test-original-probe")
        for raw in infos:
            await nc.publish(subject, raw)
        await nc.flush()
        await nc.close()
        await wait_for(lambda: c.stats.packets >= len(infos), "every PacketInfo")
        stop.set()
        await task
        return m, c

    m, c = asyncio.run(main())
    assert c.stats.compat_messages == len(infos)
    assert c.stats.compat.converted == len(infos)
    got = snapshots(m)
    for name in TASKS:
        assert_same(got[name], want[name])


def test_max_payload_respected(tmp_path: Path) -> None:
    """A server with a 16 KiB max_payload: batches are cut into messages that fit, nothing lost (layout 2,
    the probe's default, is cut by each message's real length; layout 1 by its fixed 49 bytes a packet)."""
    if find_nats_server() is None:
        pytest.skip("no nats-server binary")
    want = offline(GNUTELLA)
    limit = 16_384
    with NatsServer(tmp_path / "small", max_payload=limit, jetstream=False) as srv:
        pub = PublisherOptions(url=srv.url, subject=SUBJECT, n_shards=2, max_packets=1 << 20)
        opts = StreamOptions(url=srv.url, subject=SUBJECT, n_shards=2)
        managers, cons, _ = asyncio.run(run_pipeline(srv.url, replay_files([GNUTELLA]), [opts], pub))
    assert cons[0].stats.messages > 2
    for name in TASKS:
        assert_same(snapshots(managers[0])[name], want[name])
    batch = PacketBatch.concat(list(CaptureReader(GNUTELLA)))
    cap = max_packets_for_payload(limit, 1 << 20)
    assert all(len(p) <= limit for _, p in encode_messages(batch, cap, 1))
    assert len(encode_batch(batch.head(cap))) <= limit
    dense = list(encode_messages(batch, 1 << 20, 1, max_bytes=limit, layout=2))
    assert all(len(p) <= limit for _, p in dense) and len(dense) < -(-len(batch) // cap)


def test_connections_read_the_socket_in_large_chunks(nats_server: NatsServer) -> None:
    """connect() makes nats-py read up to NATS_READ_BUFFER bytes at a time (its own default is 32 KiB:
    a dozen parser calls and socket pauses per 350 kB message); every message still arrives whole."""
    sizes: list[int] = []
    payloads = [bytes([k]) * (600_000 + k) for k in range(4)]

    async def main() -> list[bytes]:
        nc = await connect(nats_server.url, "chunk-test")
        got: list[bytes] = []
        parse = nc._ps.parse

        async def recording_parse(data: bytes = b"") -> None:
            sizes.append(len(data))
            await parse(data)

        async def on_msg(msg: Any) -> None:
            got.append(msg.data)

        nc._ps.parse = recording_parse
        try:
            await nc.subscribe("chunks.x", cb=on_msg)
            await nc.flush()
            for p in payloads:
                await nc.publish("chunks.x", p)
            await nc.flush()
            await wait_for(lambda: len(got) == len(payloads), "the large messages")
        finally:
            await nc.close()
        return got

    got = asyncio.run(main())
    assert got == payloads
    assert max(sizes) > 32_768  # nats-py's own default would cap every read there
    assert max(sizes) <= NATS_READ_BUFFER == widen_nats_reads()


def test_direct_send_and_receive_paths_deliver_every_message_whole(nats_server: NatsServer) -> None:
    """A publisher with nats_send's piece-by-piece writes and a subscriber with nats_receive's one-copy
    payloads, through the real server: large and small messages interleaved with other commands (a
    flush's PING) arrive whole, in order, large ones as bytearrays; a JetStream pull consumer too."""
    from netspectra.transport.nats_receive import DIRECT_PAYLOAD_MIN, install_direct_payloads
    from netspectra.transport.nats_send import DIRECT_PUBLISH_MIN, install_direct_writes, publish_direct

    rng = np.random.default_rng(5)
    sizes = [0, 5, DIRECT_PUBLISH_MIN - 1, DIRECT_PUBLISH_MIN, 300_000, 900_000, 17, 250_000, 1]
    payloads = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in sizes * 3]

    async def main() -> tuple[list[Any], list[Any]]:
        pub = await connect(nats_server.url, "direct-pub")
        sub = await connect(nats_server.url, "direct-sub")
        got: list[Any] = []
        try:
            assert install_direct_writes(pub) and install_direct_payloads(sub)
            js = sub.jetstream()
            await js.add_stream(name="DIRECTS", subjects=["direct.js"])
            psub = await js.pull_subscribe("direct.js", durable="d")

            async def on_msg(msg: Any) -> None:
                got.append(msg.data)

            await sub.subscribe("direct.x", cb=on_msg)
            await sub.flush()
            for i, p in enumerate(payloads):
                await publish_direct(pub, "direct.x", p)
                await publish_direct(pub, "direct.js", p)
                if i % 2 == 0:
                    # a PING (and the server's PONG) between the messages, and a pause for the reading
                    # side: both clients share this event loop, and a server that cannot write to a
                    # client for a while cuts it off as a slow consumer (what it sent then is lost)
                    await pub.flush()
                    await sub.flush()
            await pub.flush()
            await wait_for(lambda: len(got) == len(payloads), "the messages")
            pulled: list[Any] = []
            while len(pulled) < len(payloads):
                pulled += [m.data for m in await psub.fetch(8, timeout=5)]
            await js.delete_stream("DIRECTS")
            assert sub.stats["reconnects"] == pub.stats["reconnects"] == 0
        finally:
            await pub.close()
            await sub.close()
        return got, pulled

    got, pulled = asyncio.run(main())
    for received in (got, pulled):
        assert [bytes(g) for g in received] == payloads
        # large ones the one-copy way, except where nats-py's parser took a whole one (after a PONG)
        assert all(type(g) is bytes for g in received if len(g) < DIRECT_PAYLOAD_MIN)
        assert sum(type(g) is bytearray for g in received) > len(received) // 4


def _engine_cmd(cfg_path: Path, url: str) -> list[str]:
    code = "import typer; from netspectra.cli.live_cmds import engine; typer.run(engine)"
    return [
        sys.executable, "-c", code, "--config", str(cfg_path), "--url", url, "--subject", SUBJECT,
        "--jetstream", "--stream", "KILLTEST", "--durable", "killtest", "--no-writers",
    ]  # fmt: skip


def test_jetstream_engine_killed_and_restarted(
    nats_server: NatsServer, gen_trace: Path, tmp_path: Path
) -> None:
    """An engine killed mid-stream acknowledged nothing it held in memory: its successor on the same
    durable consumer gets every message again and ends with exactly the offline result; after that
    engine's graceful stop (acknowledged), a third engine receives only what was published later."""
    want = offline(gen_trace)
    batches = list(CaptureReader(gen_trace, batch_size=20_000))
    first, second = batches[: len(batches) // 2], batches[len(batches) // 2 :]
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(CONFIG_YAML)
    pub = PublisherOptions(
        url=nats_server.url, subject=SUBJECT, jetstream=True, stream="KILLTEST", probe_id="k"
    )
    durable = "killtest-0of1"

    async def consumer_info():  # type: ignore[no-untyped-def]
        nc = await connect(nats_server.url, "test-info")
        try:
            return await nc.jetstream().consumer_info("KILLTEST", durable)
        finally:
            await nc.close()

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(_engine_cmd(cfg_path, nats_server.url), env=env, stdout=subprocess.PIPE)
    try:

        async def phase1() -> int:
            stats = await Publisher(pub).run(iter(first))

            async def delivered() -> int:
                try:
                    return (await consumer_info()).delivered.stream_seq
                except Exception:
                    return 0

            deadline = time.monotonic() + WAIT_S
            while await delivered() < stats.messages:
                assert proc.poll() is None, "the engine exited early"
                assert time.monotonic() < deadline, "the engine did not receive the first half"
                await asyncio.sleep(0.1)
            return stats.messages

        n_first = asyncio.run(phase1())
    finally:
        proc.send_signal(signal.SIGKILL)  # no graceful stop: no final snapshot, no ack
        proc.wait(timeout=30)
    info = asyncio.run(consumer_info())
    assert info.ack_floor.stream_seq == 0
    assert info.num_ack_pending == n_first

    async def phase2() -> tuple[Manager, StreamConsumer]:
        await Publisher(pub).run(iter(second))
        m = Manager.from_config(_config(), writers=False)
        m.start()
        stop = asyncio.Event()
        opts = StreamOptions(
            url=nats_server.url, subject=SUBJECT, jetstream=True, stream="KILLTEST", durable="killtest"
        )
        c = StreamConsumer(m, opts)
        task = asyncio.create_task(c.run(stop))
        await wait_for(lambda: c.stats.packets >= want["per_src"].total_packets, "the replay from the stream")
        stop.set()
        await task
        return m, c

    m, c = asyncio.run(phase2())
    assert c.stats.packets == want["per_src"].total_packets
    got = snapshots(m)
    for name in TASKS:
        assert_same(got[name], want[name])
    info = asyncio.run(consumer_info())
    assert info.ack_floor.stream_seq == c.stats.acked_stream_seq > 0
    assert info.num_pending == 0 and info.num_ack_pending == 0

    # a later engine on the same durable consumer sees only new messages
    extra = batches[0]

    async def phase3() -> StreamConsumer:
        await Publisher(pub).run(iter([extra]))
        m3 = Manager.from_config(_config(), writers=False)
        m3.start()
        stop = asyncio.Event()
        opts = StreamOptions(
            url=nats_server.url, subject=SUBJECT, jetstream=True, stream="KILLTEST", durable="killtest"
        )
        c3 = StreamConsumer(m3, opts)
        task = asyncio.create_task(c3.run(stop))
        await wait_for(lambda: c3.stats.packets >= len(extra), "the new messages")
        await asyncio.sleep(0.5)  # anything older would arrive now
        stop.set()
        await task
        return c3

    c3 = asyncio.run(phase3())
    assert c3.stats.packets == len(extra)


def test_member_shards_partition() -> None:
    for members in (1, 2, 3, 5):
        owned = [member_shards(16, k, members) for k in range(members)]
        assert sorted(s for o in owned for s in o) == list(range(16))
    with pytest.raises(ValueError):
        member_shards(16, 2, 2)
    assert batch_subject("a.b", 3) == "a.b.3"


def test_pace_follows_recorded_time() -> None:
    """pace() releases each slice when its first packet is due (a fake clock: no sleeping)."""
    n = 1000
    b = PacketBatch.empty(n)
    for c in PacketBatch.COLUMNS:
        getattr(b, c)[...] = 0
    b.ts_ns[:] = np.arange(n, dtype=np.int64) * 10_000_000  # one packet per 10 ms: 10 s of trace
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    out = list(pace([b], speed=2.0, tick_s=0.1, clock=lambda: now[0], sleep=sleep))
    assert sum(len(x) for x in out) == n
    # 10 s of trace at 2x: the last slice (its first packet) is released 0.1 s of wall time before 5 s
    assert 4.9 - 1e-6 <= now[0] <= (n - 1) * 0.01 / 2.0
    assert all(len(x) <= 21 for x in out)  # 0.1 s of wall time at 2x = 20 packets per slice


class _SlowTask:
    """An exact task that takes ``delay_s`` per batch: an engine that cannot keep up."""

    def __init__(self, delay_s: float) -> None:
        self.inner = ExactTask("slow", TASKS["per_src"])
        self.name = "slow"
        self.delay_s = delay_s

    def update(self, batch: PacketBatch) -> None:
        time.sleep(self.delay_s)
        self.inner.update(batch)

    def snapshot(self) -> FlowSnapshot:
        return self.inner.snapshot()

    def reset(self) -> None:
        self.inner.reset()


def test_engine_behind_counts_drops_never_silent(nats_server: NatsServer) -> None:
    """Core NATS, an engine slower than the probe: the NATS read loop is not blocked (bug 12); batches
    the engine cannot take within the hand-off timeout are dropped and counted, the rest applied."""
    from netspectra.engine.groups import LockedTask, TaskGroup
    from netspectra.kinds import AGGREGATORS

    batch = PacketBatch.concat(list(CaptureReader(GNUTELLA)))
    total = len(batch)

    async def main() -> tuple[Manager, StreamConsumer]:
        group = TaskGroup("slow", (LockedTask(_SlowTask(0.3)),), (), AGGREGATORS.get("exact").deliver)
        m = Manager([group], num_workers=1, queue_packets=1)
        m.start()
        stop = asyncio.Event()
        opts = StreamOptions(url=nats_server.url, subject="slow.packets", n_shards=1, handoff_timeout_s=0.05)
        c = StreamConsumer(m, opts)
        task = asyncio.create_task(c.run(stop))
        await asyncio.wait_for(c.ready.wait(), 30)
        pub = PublisherOptions(url=nats_server.url, subject="slow.packets", n_shards=1, max_packets=250)
        t0 = time.monotonic()
        await Publisher(pub).run([batch])
        assert time.monotonic() - t0 < 10, "publishing must not wait for the slow engine"
        await wait_for(lambda: c.stats.packets >= total, "every message to be received")
        stop.set()
        await task
        return m, c

    m, c = asyncio.run(main())
    applied = m.task("slow").snapshot().total_packets
    dropped = int(m.metrics.dropped_packets.value)
    assert c.stats.packets == total and c.stats.seq_gaps == 0
    assert dropped > 0 and c.stats.handoff_dropped_packets == dropped
    assert applied + dropped == total


def test_probe_queue_full_drops_are_counted() -> None:
    """Live sources never block: a full probe queue drops the batch and counts it."""
    from netspectra.probe.publisher import Publisher as Pub

    p = Pub(PublisherOptions(block=False, queue_batches=2))
    b = PacketBatch.concat(list(CaptureReader(GNUTELLA)))
    assert p.offer(b) and p.offer(b)
    assert not p.offer(b)
    assert p.stats.dropped_batches == 1 and p.stats.dropped_packets == len(b)
    assert p.stats.packets_in == 3 * len(b)


def test_probe_cli_replays_to_engine(nats_server: NatsServer, tmp_path: Path) -> None:
    """``probe`` as a command (typer) feeding an engine: counters on stdout, flows as offline."""
    import json

    import typer
    from typer.testing import CliRunner

    from netspectra.cli.live_cmds import probe

    app = typer.Typer()
    app.command()(probe)
    app.command("unused")(lambda: None)  # two commands: typer keeps "probe" as a subcommand
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(CONFIG_YAML)
    want = offline(GNUTELLA)
    subject = "cli.packets"

    async def main() -> tuple[Manager, StreamConsumer, dict]:
        m = Manager.from_config(_config(), writers=False)
        m.start()
        stop = asyncio.Event()
        c = StreamConsumer(m, StreamOptions(url=nats_server.url, subject=subject, n_shards=4))
        task = asyncio.create_task(c.run(stop))
        await asyncio.wait_for(c.ready.wait(), 30)
        args = ["probe", "--config", str(cfg_path), "--url", nats_server.url, "--subject", subject]
        args += ["--shards", "4", "--speed", "0", "--json", str(GNUTELLA)]
        result = await asyncio.to_thread(CliRunner().invoke, app, args)
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout.strip().splitlines()[-1])
        await wait_for(lambda: c.stats.packets >= out["packets_published"], "the CLI probe's packets")
        stop.set()
        await task
        return m, c, out

    m, _, out = asyncio.run(main())
    assert out["packets_published"] == want["per_src"].total_packets and out["dropped_packets"] == 0
    for name in TASKS:
        assert_same(snapshots(m)[name], want[name])


def test_jetstream_two_members(nats_server: NatsServer, gen_trace: Path) -> None:
    """JetStream with two members: each durable consumer filters its own shards; flows as offline."""
    want = offline(gen_trace)
    opts = [
        StreamOptions(
            url=nats_server.url,
            subject="js2.packets",
            n_shards=8,
            member=k,
            members=2,
            jetstream=True,
            stream="JS2",
            durable="js2",
        )
        for k in range(2)
    ]
    pub = PublisherOptions(
        url=nats_server.url, subject="js2.packets", n_shards=8, jetstream=True, stream="JS2"
    )
    managers, cons, total = asyncio.run(run_pipeline(nats_server.url, replay_files([gen_trace]), opts, pub))
    assert total == want["per_src"].total_packets
    assert all(c.stats.packets > 0 for c in cons)
    assert all(c.stats.acked_stream_seq > 0 for c in cons)
    per_engine = [snapshots(m) for m in managers]
    for name in TASKS:
        assert_same(merged([s[name] for s in per_engine]), want[name])


def _only(batch: PacketBatch, keep: np.ndarray) -> PacketBatch:
    return PacketBatch(*(getattr(batch, c)[keep] for c in PacketBatch.COLUMNS))


def test_jetstream_member_count_change_hands_shards_over(nats_server: NatsServer, gen_trace: Path) -> None:
    """Changing --members creates new durable consumers (<durable>-KofN). They start where the earlier
    members' acknowledgements left each shard: 1 member reads part A; then only member 1 of 2 runs over
    part B (member 0 of 2 never starts); then 3 members run after part C. The 3 members must apply
    exactly B's packets of the shards member 1 of 2 did not own, plus all of C — nothing twice, nothing
    lost."""
    from netspectra.transport.codec import shard_of

    n_shards, subject, stream = 8, "hand.packets", "HAND"
    batches = list(CaptureReader(gen_trace, batch_size=20_000))
    part_a, part_b, part_c = batches[:3], batches[3:6], batches[6:]
    pub = PublisherOptions(
        url=nats_server.url, subject=subject, n_shards=n_shards, jetstream=True, stream=stream
    )

    def opts(member: int, members: int) -> StreamOptions:
        return StreamOptions(
            url=nats_server.url,
            subject=subject,
            n_shards=n_shards,
            member=member,
            members=members,
            jetstream=True,
            stream=stream,
            durable="hand",
        )

    async def phase(part: list[PacketBatch], members: list[StreamOptions], expected: int) -> list[Manager]:
        await Publisher(pub).run(iter(part))
        managers = [Manager.from_config(_config(), writers=False) for _ in members]
        stop = asyncio.Event()
        cons = [StreamConsumer(m, o) for m, o in zip(managers, members, strict=True)]
        tasks = [asyncio.create_task(c.run(stop)) for c in cons]
        try:
            await wait_for(lambda: sum(c.stats.packets for c in cons) >= expected, "the members' packets")
            await asyncio.sleep(0.5)  # anything counted twice would arrive now
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        assert sum(c.stats.packets for c in cons) == expected
        return managers

    def expected_of(part: list[PacketBatch], shard_ok) -> dict[str, FlowSnapshot]:  # type: ignore[no-untyped-def]
        tasks = {name: ExactTask(name, fields) for name, fields in TASKS.items()}
        for b in part:
            kept = _only(b, shard_ok(shard_of(b, n_shards, ("SrcIP",))))
            for t in tasks.values():
                t.update(kept)
        return {name: t.snapshot() for name, t in tasks.items()}

    n_a = sum(len(b) for b in part_a)
    asyncio.run(phase(part_a, [opts(0, 1)], n_a))

    b_odd = expected_of(part_b, lambda sh: sh % 2 == 1)
    asyncio.run(phase(part_b, [opts(1, 2)], b_odd["per_src"].total_packets))

    want_b_even = expected_of(part_b, lambda sh: sh % 2 == 0)
    want_c = expected_of(part_c, lambda sh: sh >= 0)
    expected = want_b_even["per_src"].total_packets + want_c["per_src"].total_packets
    managers = asyncio.run(phase(part_c, [opts(k, 3) for k in range(3)], expected))
    got = [snapshots(m) for m in managers]
    for name in TASKS:
        want = merged([want_b_even[name], want_c[name]])
        g = merged([s[name] for s in got])
        # a flow of B's even shards may continue in C: compare per-flow sums
        assert _flow_sums(g) == _flow_sums(want)


def _flow_sums(snap: FlowSnapshot) -> dict[tuple, tuple[int, int]]:
    """Packets and bytes per flow key, summed over rows with the same key."""
    cols = [np.asarray(getattr(snap, n)) for n in ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")]
    out: dict[tuple, tuple[int, int]] = {}
    for i in range(len(snap)):
        key = tuple(c[i].tobytes() for c in cols)
        p, b = out.get(key, (0, 0))
        out[key] = (p + int(snap.packets[i]), b + int(snap.bytes[i]))
    return out


STORED_CONFIG = """
aggregator:
  types: ["exact"]
  period: "{period}"
  num_workers: 2
  exact:
    writers:
      - type: clickhouse
        enabled: true
        snapshot_interval: "300ms"
        clickhouse: {{host: "127.0.0.1", port: {port}, database: "{database}"}}
    tasks:
      - name: "per_five_tuple"
        key_fields: ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"]
      - name: "per_src"
        key_fields: ["SrcIP"]
"""


@pytest.mark.slow
@pytest.mark.parametrize("outage_s", [0.0, 5.0])
def test_jetstream_restart_resumes_the_stored_period(
    nats_server: NatsServer, gen_trace: Path, tmp_path: Path, clickhouse_server: Any, outage_s: float
) -> None:
    """An engine killed inside its second period had stored periodic snapshots of it; its successor
    resumes that period (same PeriodStartNs, recorded in the JetStream period ledger), so its rows
    replace the dead engine's: totals summed over periods in ClickHouse equal the offline analysis
    (before the ledger, the killed period's packets were counted twice). The first period was closed
    and acknowledged at its end, so the successor replays only the second one. With an outage longer
    than the period, the resumed period still takes back everything the dead engine had received
    before it ends."""
    from netspectra.storage.clickhouse import connect_store
    from netspectra.storage.clickhouse_config import ClickHouseConfig
    from netspectra.storage.queries import aggregate_flows

    want = offline(gen_trace)
    batches = list(CaptureReader(gen_trace, batch_size=20_000))
    part_a, part_b, part_c = batches[:3], batches[3:6], batches[6:]
    database = f"resume_{os.getpid()}_{int(time.time())}_{int(outage_s)}"
    # without an outage the successor must finish inside the resumed period for exactly two periods to
    # exist: its start-up, C's replay and the drain take several seconds on a loaded machine, so that
    # case gets a longer period; the outage case needs an outage longer than its period
    period_s = 4.0 if outage_s else 12.0
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(
        STORED_CONFIG.format(period=f"{period_s}s", port=clickhouse_server.tcp_port, database=database)
    )
    stream, durable = f"RESUMETEST{int(outage_s)}", f"resumetest{int(outage_s)}"
    subject = f"resume{int(outage_s)}.packets"  # one stream per subject
    pub = PublisherOptions(url=nats_server.url, subject=subject, jetstream=True, stream=stream, probe_id="r")

    async def info():  # type: ignore[no-untyped-def]
        nc = await connect(nats_server.url, "test-info")
        try:
            return await nc.jetstream().consumer_info(stream, f"{durable}-0of1")
        except Exception:
            return None
        finally:
            await nc.close()

    async def until(cond, what: str, proc: subprocess.Popen[bytes]) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + WAIT_S
        while not cond(await info()):
            assert proc.poll() is None, f"the engine exited early while waiting for {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    code = "import typer; from netspectra.cli.live_cmds import engine; typer.run(engine)"
    cmd = [
        sys.executable, "-c", code, "--config", str(cfg_path), "--url", nats_server.url, "--subject", subject,
        "--jetstream", "--stream", stream, "--durable", durable,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    store = connect_store(
        ClickHouseConfig(host="127.0.0.1", port=clickhouse_server.tcp_port, database=database)
    )

    def periods() -> int:
        table = store.table("flow_metrics")
        return int(store.query(f"SELECT uniqExact(PeriodStartNs) FROM {table}", {})[0][0])

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
    try:

        async def phase1() -> None:
            n_a = (await Publisher(pub).run(iter(part_a))).messages
            # the first period ends (finals written) and is acknowledged
            await until(lambda i: i is not None and i.ack_floor.stream_seq >= n_a, "the first period", proc)
            n_b = (await Publisher(pub).run(iter(part_b))).messages
            await until(lambda i: i.delivered.stream_seq >= n_a + n_b, "the second part", proc)
            # periodic snapshots (every 300 ms) of the second period reach ClickHouse
            deadline = time.monotonic() + WAIT_S
            while periods() < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)

        asyncio.run(phase1())
        assert periods() == 2, "the killed engine stored snapshots of its second period"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(outage_s)

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE)
    try:

        async def phase2() -> None:
            n_c = (await Publisher(pub).run(iter(part_c))).messages
            await until(
                lambda i: i is not None and i.num_pending == 0 and i.delivered.stream_seq > n_c, "C", proc
            )

        asyncio.run(phase2())
        proc.send_signal(signal.SIGTERM)  # graceful: final snapshot written, then acknowledged
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    got = {s.task_name: s for s in aggregate_flows(store)}
    for name in TASKS:
        assert got[name].total_packets == int(want[name].packets.sum())
        assert got[name].total_bytes == int(want[name].bytes.sum())
        assert got[name].flow_count == len(want[name])
    # the successor resumed the killed engine's period; after an outage longer than a period it closes
    # that one once it has taken back what the dead engine had received, and goes on in a third
    n = periods()
    assert n == 2 if outage_s == 0 else n in (2, 3), f"{n} periods stored"
    store.close()


class _Store:
    """A writer (test double of a storage writer) keeping, per (task, period, flow), the newest row:
    what NetSpectra's ReplacingMergeTree tables keep. ``down`` makes every write fail, as an
    unreachable ClickHouse; :meth:`writer` gives each engine its own writer, which writes nothing once
    that engine is ``dead`` (a killed process)."""

    def __init__(self) -> None:
        import threading

        self.down = threading.Event()
        self.lock = threading.Lock()
        self.rows: dict[tuple[str, int, tuple[bytes, ...]], int] = {}
        self.dead = False
        self.fail_intermediate = 0

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def write_flows(self, snap: FlowSnapshot, meta) -> None:  # type: ignore[no-untyped-def]
        from netspectra.storage.base import WriterError

        if self.down.is_set():
            raise WriterError("ClickHouse is down")
        if self.fail_intermediate and not meta.final:
            self.fail_intermediate -= 1
            raise WriterError("a transient failure")
        if self.dead:
            return
        cols = [
            np.asarray(getattr(snap, n)) for n in ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")
        ]
        with self.lock:
            for i in range(len(snap)):
                key = tuple(c[i].tobytes() for c in cols)
                self.rows[(snap.task_name, meta.period_start_ns, key)] = int(snap.packets[i])

    def writer(self) -> _Store:
        """A writer into the same rows whose ``dead`` flag is its own."""
        w = _Store.__new__(_Store)
        w.down, w.lock, w.rows, w.dead, w.fail_intermediate = self.down, self.lock, self.rows, False, 0
        return w

    def totals(self, task: str) -> int:
        with self.lock:  # the writer thread may be adding rows
            return sum(v for (t, _, _), v in self.rows.items() if t == task)

    def periods(self) -> set[int]:
        return {p for (_, p, _) in self.rows}


def _stored_manager(
    store: _Store, period_s: float | None, interval_s: float | None = None, max_attempts: int = 0
) -> Manager:
    from netspectra.engine import GroupWriter, LockedTask, TaskGroup

    tasks = tuple(LockedTask(ExactTask(n, f)) for n, f in TASKS.items())
    group = TaskGroup(
        "exact", tasks, (GroupWriter("exact/store", store, interval_s),), lambda w, s, m: w.write_flows(s, m)
    )
    # a short close deadline: at stop, what a down store cannot take is given up after 2 s
    return Manager(
        [group],
        period=period_s,
        num_workers=2,
        writer_backoff_initial_s=0.02,
        writer_backoff_max_s=0.05,
        writer_close_timeout_s=2.0,
        writer_max_attempts=max_attempts,
    )


async def _kill(consumer_task: asyncio.Task, writer: _Store) -> None:
    """What SIGKILL does to an in-process engine: nothing more is written, acknowledged or recorded."""
    writer.dead = True
    consumer_task.cancel()
    with contextlib.suppress(BaseException):
        await consumer_task


def test_jetstream_stop_while_the_store_is_down_leaves_the_close_to_the_next_engine(
    nats_server: NatsServer, gen_trace: Path
) -> None:
    """A period ends while the store is down: the engine waits (it never acknowledges what is not
    stored). SIGTERM then must not hang: it stops without acknowledging and leaves the close recorded.
    The next engine, with the store back, redoes that close at the same stream sequence under the same
    period start, and the store ends with every packet exactly once."""
    from netspectra.engine.periods_ledger import PeriodLedger

    subject, stream, durable = "down.packets", "DOWN", "down"
    batches = list(CaptureReader(gen_trace, batch_size=20_000))
    total = sum(len(b) for b in batches)
    pub = PublisherOptions(url=nats_server.url, subject=subject, jetstream=True, stream=stream)
    opts = StreamOptions(url=nats_server.url, subject=subject, jetstream=True, stream=stream, durable=durable)

    async def ledger_record():  # type: ignore[no-untyped-def]
        nc = await connect(nats_server.url, "test-ledger")
        try:
            led = PeriodLedger(nc.jetstream(), stream, f"{durable}-0of1")
            await led.open()
            return await led.get()
        finally:
            await nc.close()

    store = _Store()
    store.down.set()

    async def first() -> StreamConsumer:
        await Publisher(pub).run(iter(batches[:5]))
        m = _stored_manager(store, period_s=1.0)
        stop = asyncio.Event()
        c = StreamConsumer(m, opts)
        task = asyncio.create_task(c.run(stop))
        await wait_for(lambda: c.stats.packets >= sum(len(b) for b in batches[:5]), "part one")
        deadline = time.monotonic() + 30
        while (rec := await ledger_record()) is None or rec.end_seq is None:
            assert time.monotonic() < deadline, "the period did not start closing"
            await asyncio.sleep(0.1)
        t0 = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, 30)
        assert time.monotonic() - t0 < 15, "the stop waited for the store"
        return c

    c1 = asyncio.run(first())
    assert c1.stats.acked_stream_seq == 0
    closing = asyncio.run(ledger_record())
    assert closing.end_seq is not None and closing.next_start_ns is not None
    assert store.rows == {}

    store.down.clear()

    async def second() -> tuple[StreamConsumer, Manager]:
        await Publisher(pub).run(iter(batches[5:]))
        m = _stored_manager(store, period_s=3600.0)
        stop = asyncio.Event()
        c = StreamConsumer(m, opts)
        task = asyncio.create_task(c.run(stop))
        await wait_for(lambda: c.stats.packets >= total, "the replay and part two")
        stop.set()
        await task
        return c, m

    c2, _ = asyncio.run(second())
    assert c2.stats.packets == total  # part one read again: it was never acknowledged
    for name in TASKS:
        assert store.totals(name) == total, name
    # the redone close kept the recorded boundary and period starts
    assert store.periods() == {closing.period_start_ns, closing.next_start_ns}
    assert c2.stats.acked_stream_seq > closing.end_seq


def test_jetstream_new_members_wait_for_running_earlier_members(
    nats_server: NatsServer, gen_trace: Path
) -> None:
    """Members of a new member count do not take shards over while an earlier member still runs (it
    would count the same messages): they wait, not ready, until it stops gracefully, then start from
    its acknowledgement — here they apply exactly what was published after it."""
    subject, stream = "wait.packets", "WAIT"
    batches = list(CaptureReader(gen_trace, batch_size=20_000))
    part_a, part_b = batches[:4], batches[4:]
    pub = PublisherOptions(url=nats_server.url, subject=subject, n_shards=8, jetstream=True, stream=stream)

    def opts(member: int, members: int) -> StreamOptions:
        return StreamOptions(
            url=nats_server.url,
            subject=subject,
            n_shards=8,
            member=member,
            members=members,
            jetstream=True,
            stream=stream,
            durable="wait",
        )

    async def main() -> tuple[StreamConsumer, list[StreamConsumer]]:
        await Publisher(pub).run(iter(part_a))
        stop_old, stop_new = asyncio.Event(), asyncio.Event()
        old = StreamConsumer(Manager.from_config(_config(), writers=False), opts(0, 1))
        old_task = asyncio.create_task(old.run(stop_old))
        await wait_for(lambda: old.stats.packets >= sum(len(b) for b in part_a), "the earlier member")
        new = [StreamConsumer(Manager.from_config(_config(), writers=False), opts(k, 2)) for k in range(2)]
        new_tasks = [asyncio.create_task(c.run(stop_new)) for c in new]
        await asyncio.sleep(2.0)
        assert not any(c.ready.is_set() for c in new), "a new member started beside a running earlier one"
        assert sum(c.stats.packets for c in new) == 0
        stop_old.set()
        await old_task
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in new)), 30)
        await Publisher(pub).run(iter(part_b))
        await wait_for(lambda: sum(c.stats.packets for c in new) >= sum(len(b) for b in part_b), "part B")
        await asyncio.sleep(0.5)
        stop_new.set()
        await asyncio.gather(*new_tasks)
        return old, new

    old, new = asyncio.run(main())
    assert old.stats.packets == sum(len(b) for b in part_a)
    assert sum(c.stats.packets for c in new) == sum(len(b) for b in part_b)


def _js_opts(url: str, name: str, member: int = 0, members: int = 1, n_shards: int = 16) -> StreamOptions:
    return StreamOptions(
        url=url,
        subject=f"{name}.packets",
        n_shards=n_shards,
        member=member,
        members=members,
        jetstream=True,
        stream=name.upper(),
        durable=name,
    )


def _js_pub(url: str, name: str, n_shards: int = 16, **options: Any) -> PublisherOptions:
    return PublisherOptions(
        url=url, subject=f"{name}.packets", n_shards=n_shards, jetstream=True, stream=name.upper(), **options
    )


def test_jetstream_resumed_period_stopped_before_it_is_read_back_stays_open(
    nats_server: NatsServer, gen_trace: Path
) -> None:
    """Killed inside a period after storing snapshots of it; the successor is stopped (SIGTERM) before
    it has read back what the dead engine received: it must neither close the period nor acknowledge,
    or the next engine would count those packets in a new period while the dead engine's rows stay."""
    url = nats_server.url
    batches = list(CaptureReader(gen_trace, batch_size=20_000))
    total = sum(len(b) for b in batches)
    store = _Store()

    async def killed() -> None:
        # many small messages (the publisher would coalesce each shard's parts into one or two): the
        # successor must still be reading back when it is stopped
        await Publisher(_js_pub(url, "reread", max_packets=1250)).run(iter(batches))
        w = store.writer()
        c = StreamConsumer(_stored_manager(w, 3600.0, interval_s=0.2), _js_opts(url, "reread"))
        t = asyncio.create_task(c.run(asyncio.Event()))
        await wait_for(lambda: c.stats.packets >= total, "the first engine")
        # periodic snapshots reach the store (waited for: a slow machine may take longer than a few
        # intervals to write the first one)
        await wait_for(lambda: store.totals("per_src") > 0, "a periodic snapshot in the store")
        await asyncio.sleep(0.3)
        await _kill(t, w)

    async def stopped_at_once() -> StreamConsumer:
        c = StreamConsumer(_stored_manager(store.writer(), 3600.0, interval_s=0.2), _js_opts(url, "reread"))
        stop = asyncio.Event()
        t = asyncio.create_task(c.run(stop))
        await asyncio.wait_for(c.ready.wait(), 30)
        stop.set()
        await t
        return c

    async def third() -> StreamConsumer:
        c = StreamConsumer(_stored_manager(store.writer(), 3600.0, interval_s=0.2), _js_opts(url, "reread"))
        stop = asyncio.Event()
        t = asyncio.create_task(c.run(stop))
        await wait_for(lambda: c.stats.packets >= total, "the third engine")
        stop.set()
        await t
        return c

    asyncio.run(killed())
    assert store.totals("per_src") > 0
    second = asyncio.run(stopped_at_once())
    assert second.stats.acked_stream_seq == 0
    third_c = asyncio.run(third())
    assert third_c.stats.packets == total and third_c.stats.acked_stream_seq > 0
    for name in TASKS:
        assert store.totals(name) == total, name
    assert len(store.periods()) == 1


def test_jetstream_hand_over_floors_survive_a_restart(nats_server: NatsServer, gen_trace: Path) -> None:
    """A member of a new member count that crashes before its first acknowledgement still skips, after
    its restart, what the earlier members acknowledged (the skip floors are in the ledger)."""
    from netspectra.transport.codec import shard_of

    url, n = nats_server.url, 2
    batches = list(CaptureReader(gen_trace, batch_size=20_000))
    total = sum(len(b) for b in batches)
    odd = sum(int((shard_of(b, n, ("SrcIP",)) % 2 == 1).sum()) for b in batches)

    async def run(member: int, members: int, until: int, crash: bool = False) -> StreamConsumer:
        w = _Store()
        c = StreamConsumer(_stored_manager(w, None), _js_opts(url, "floors", member, members, n_shards=n))
        stop = asyncio.Event()
        t = asyncio.create_task(c.run(stop))
        await wait_for(lambda: c.stats.packets >= until, f"member {member} of {members}")
        await asyncio.sleep(0.5)
        if crash:
            await _kill(t, w)
        else:
            stop.set()
            await t
        return c

    async def main() -> list[int]:
        await Publisher(_js_pub(url, "floors", n_shards=n)).run(iter(batches))
        applied = [(await run(1, 2, odd)).stats.packets]  # only member 1 of 2 ran
        applied.append((await run(0, 1, total - odd, crash=True)).stats.packets)
        applied.append((await run(0, 1, total - odd)).stats.packets)
        return applied

    assert asyncio.run(main()) == [odd, total - odd, total - odd]


def test_jetstream_back_to_an_earlier_member_count(nats_server: NatsServer, gen_trace: Path) -> None:
    """1 → 2 → 1 members with the old consumers kept: the returning member count takes its shards over
    from the 2-member consumers instead of resuming its own old consumer (which would re-read part B)."""
    url = nats_server.url
    batches = list(CaptureReader(gen_trace, batch_size=20_000))
    parts = [batches[:3], batches[3:6], batches[6:]]

    async def phase(part: list[PacketBatch], members: int) -> int:
        await Publisher(_js_pub(url, "back", n_shards=8)).run(iter(part))
        cs = [
            StreamConsumer(_stored_manager(_Store(), None), _js_opts(url, "back", k, members, n_shards=8))
            for k in range(members)
        ]
        stop = asyncio.Event()
        ts = [asyncio.create_task(c.run(stop)) for c in cs]
        want = sum(len(b) for b in part)
        await wait_for(lambda: sum(c.stats.packets for c in cs) >= want, f"{members} member(s)")
        await asyncio.sleep(0.5)  # anything counted twice would arrive now
        stop.set()
        await asyncio.gather(*ts)
        return sum(c.stats.packets for c in cs)

    async def main() -> list[int]:
        return [await phase(parts[0], 1), await phase(parts[1], 2), await phase(parts[2], 1)]

    assert asyncio.run(main()) == [sum(len(b) for b in p) for p in parts]


def test_jetstream_writer_loss_stops_the_engine_without_acknowledging(
    nats_server: NatsServer, gen_trace: Path
) -> None:
    """A writer gives a snapshot up (here: one failed attempt allowed) during a period: at the period's
    end the engine stops on its own, says why, and acknowledges nothing of it; the next engine redoes
    the period and the store ends with every packet once."""
    url = nats_server.url
    batches = list(CaptureReader(gen_trace, batch_size=20_000))
    total = sum(len(b) for b in batches)
    store = _Store()

    async def lossy() -> StreamConsumer:
        await Publisher(_js_pub(url, "lossy")).run(iter(batches[:5]))
        w = store.writer()
        w.fail_intermediate = 1
        c = StreamConsumer(_stored_manager(w, 1.0, interval_s=0.1, max_attempts=1), _js_opts(url, "lossy"))
        await asyncio.wait_for(c.run(asyncio.Event()), 60)  # ends by itself
        return c

    async def successor() -> StreamConsumer:
        await Publisher(_js_pub(url, "lossy")).run(iter(batches[5:]))
        c = StreamConsumer(_stored_manager(store.writer(), 3600.0), _js_opts(url, "lossy"))
        stop = asyncio.Event()
        t = asyncio.create_task(c.run(stop))
        await wait_for(lambda: c.stats.packets >= total, "the successor")
        stop.set()
        await t
        return c

    first = asyncio.run(lossy())
    assert "lost 1 snapshot" in first.stats.aborted
    assert first.stats.acked_stream_seq == 0
    second = asyncio.run(successor())
    assert second.stats.packets == total and not second.stats.aborted
    for name in TASKS:
        assert store.totals(name) == total, name
