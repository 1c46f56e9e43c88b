"""The engine's NATS receive path (transport/nats_receive.py) against nats-py's own parser.

The same protocol byte stream — MSG and HMSG of every size around the direct-payload threshold, PING,
PONG, +OK, INFO — is cut into reads at random places and fed to nats-py's ``Parser`` and to
``DirectPayloadParser``; both must hand over the same messages (subject, sid, reply, payload, headers)
in the same order, and the same protocol calls. Also the whole-buffer read against
``StreamReader.read``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from nats.protocol.parser import Parser, ProtocolError

from netspectra.transport.nats_receive import DIRECT_PAYLOAD_MIN, DirectPayloadParser, read_whole_buffer


class _Recorder:
    """Stands where nats-py's client stands for its parser: records what the parser hands over."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: Any, hdr: Any) -> None:
        self.events.append(("msg", sid, bytes(subject), bytes(reply), bytes(data), hdr, type(data)))

    async def _process_ping(self) -> None:
        self.events.append(("ping",))

    async def _process_pong(self) -> None:
        self.events.append(("pong",))

    async def _process_info(self, info: dict) -> None:
        self.events.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.events.append(("err", err))


def _stream(rng: random.Random) -> bytes:
    sizes = [
        0,
        1,
        100,
        DIRECT_PAYLOAD_MIN - 1,
        DIRECT_PAYLOAD_MIN,
        DIRECT_PAYLOAD_MIN + 1,
        300_000,
        1_100_000,
    ]
    out = [b'INFO {"server_id":"x","max_payload":1048576}\r\n']
    for k in range(40):
        size = rng.choice(sizes)
        payload = bytes(rng.getrandbits(8) for _ in range(min(size, 64))) * (size // 64 + 1)
        payload = payload[:size]
        reply = rng.choice([b"", b" $JS.ACK.S.c.1.%d.%d.1.0" % (k, k)])
        if rng.random() < 0.2:
            hdr = b"NATS/1.0\r\nNats-Msg-Id: %d\r\n\r\n" % k
            out.append(b"HMSG sub.%d %d%s %d %d\r\n" % (k, k % 7, reply, len(hdr), len(hdr) + size))
            out.append(hdr + payload + b"\r\n")
        else:
            out.append(b"MSG sub.%d %d%s %d\r\n" % (k, k % 7, reply, size) + payload + b"\r\n")
        out.append(rng.choice([b"", b"PING\r\n", b"PONG\r\n", b"+OK\r\n"]))
    return b"".join(out)


def _chunks(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), 60))
    # reads of every shape: a few bytes (a control line split), mid-payload, one big read
    cuts += [len(data)]
    out, lo = [], 0
    for hi in cuts:
        out.append(data[lo:hi])
        lo = hi
    return out


async def _feed(parser: Parser, chunks: list[Any]) -> None:
    for c in chunks:
        await parser.parse(c)


@pytest.mark.parametrize("seed", range(6))
def test_same_messages_as_nats_py(seed: int) -> None:
    rng = random.Random(seed)
    data = _stream(rng)
    chunks = _chunks(data, rng)
    stock, direct = _Recorder(), _Recorder()
    asyncio.run(_feed(Parser(stock), chunks))
    # the whole-buffer read hands bytearrays to the parser: feed those too
    mixed = [bytearray(c) if i % 2 else c for i, c in enumerate(chunks)]
    asyncio.run(_feed(DirectPayloadParser(direct), mixed))
    strip = [e[:6] for e in stock.events]
    assert [e[:6] for e in direct.events] == strip
    assert len(strip) > 40
    # small payloads and those with headers come as nats-py gives them; large ones the one-copy way
    # (except where nats-py's parser held the whole of one: after a control line it took over)
    msgs = [e for e in direct.events if e[0] == "msg"]
    big = [e for e in msgs if len(e[4]) >= DIRECT_PAYLOAD_MIN and e[5] is None]
    assert all(e[6] is bytes for e in msgs if e not in big)
    assert sum(e[6] is bytearray for e in big) >= len(big) // 2 > 0


def test_one_read_per_byte_and_one_read_in_all() -> None:
    rng = random.Random(99)
    payload = bytes(range(256)) * 300  # 76 800 bytes: over the threshold
    data = b"MSG a.b 1 " + b"%d\r\n" % len(payload) + payload + b"\r\nPING\r\n" + b"MSG c 2 3\r\nxyz\r\n"
    want = _Recorder()
    asyncio.run(_feed(Parser(want), [data]))
    for chunks in ([data], [data[i : i + 1] for i in range(len(data))], _chunks(data, rng)):
        got = _Recorder()
        asyncio.run(_feed(DirectPayloadParser(got), chunks))
        assert [e[:6] for e in got.events] == [e[:6] for e in want.events]


def test_payload_without_crlf_is_a_protocol_error() -> None:
    payload = b"x" * DIRECT_PAYLOAD_MIN
    data = b"MSG a 1 %d\r\n" % len(payload) + payload + b"XX"
    with pytest.raises(ProtocolError):
        asyncio.run(_feed(DirectPayloadParser(_Recorder()), [data]))


def test_reset_drops_a_payload_being_filled() -> None:
    rec = _Recorder()
    parser = DirectPayloadParser(rec)
    payload = b"y" * (DIRECT_PAYLOAD_MIN * 2)
    head = b"MSG a 1 %d\r\n" % len(payload)
    asyncio.run(parser.parse(head + payload[:1000]))
    parser.reset()  # nats-py resets its parser on a reconnection: the partial message is gone
    asyncio.run(parser.parse(b"MSG b 2 2\r\nok\r\n"))
    assert [e[:5] for e in rec.events] == [("msg", 2, b"b", b"", b"ok")]


def test_whole_buffer_read_matches_stream_reader_read() -> None:
    async def main() -> None:
        a, b = asyncio.StreamReader(), asyncio.StreamReader()
        parts = [b"abc", b"d" * 100_000, b"", b"efg"]
        got_a, got_b = [], []
        for p in parts:
            if p:
                a.feed_data(p)
                b.feed_data(p)
            got_a.append(bytes(await read_whole_buffer(a, 1 << 20)) if p else b"")
            got_b.append(await b.read(1 << 20) if p else b"")
        assert got_a == got_b
        # more than the limit held: the limit is kept, the rest comes next
        a.feed_data(b"z" * 10)
        assert bytes(await read_whole_buffer(a, 4)) == b"zzzz"
        assert bytes(await read_whole_buffer(a, 100)) == b"z" * 6
        # waits for data, then ends with b"" at EOF
        waiter = asyncio.ensure_future(read_whole_buffer(a, 100))
        await asyncio.sleep(0)
        assert not waiter.done()
        a.feed_data(b"late")
        assert bytes(await waiter) == b"late"
        a.feed_eof()
        assert await read_whole_buffer(a, 100) == b""
        # the reader's error is raised, as by StreamReader.read
        c = asyncio.StreamReader()
        c.set_exception(ConnectionResetError("gone"))
        with pytest.raises(ConnectionResetError):
            await read_whole_buffer(c, 100)

    asyncio.run(main())
