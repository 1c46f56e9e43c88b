"""The engine's NATS receive path: large message payloads copied once, not five times.

A payload nats-py receives is copied five times after the socket's ``recv``: into the
``asyncio.StreamReader``'s buffer, by its ``read`` (``bytes(buffer[:n])``: a slice, then ``bytes``), into
the protocol parser's buffer, and out of it (``bytes(buf[:n])``: a slice, then ``bytes``). For the engine,
whose messages are batches of a few hundred kilobytes, that is most of what its NATS client costs per
packet. Two changes to one client (:func:`install_direct_payloads`), nats-py's code otherwise:

* :class:`DirectPayloadParser` reads the control line of a ``MSG`` itself and copies the payload of one
  of at least :data:`DIRECT_PAYLOAD_MIN` bytes from each read straight into a ``bytearray`` of the
  payload's size, which becomes the message's ``data``. Everything else — small messages, ``HMSG``
  (headers), ``+OK``, ``-ERR``, ``PING``, ``PONG``, ``INFO``, a control line split between two reads —
  goes through nats-py's own parser, unchanged.
* :func:`read_whole_buffer` replaces the connection's read: it takes the ``StreamReader``'s whole
  buffer (a swap, no copy) instead of copying it twice, and falls back to ``StreamReader.read``
  wherever that buffer is not the plain one it expects.

Measured (5 M packets of layout 2 in 358 JetStream messages of ~300 kB, a pull consumer that decodes
each message and applies it to an exact task, in one thread, 2-core VM, three alternating pairs): 50-55
ns of CPU a packet with nats-py's path, 44-50 with this one; the engine's page faults while receiving
fall by about a third.

Contract for subscribers of a connection with this parser (:func:`install_direct_payloads`): a
message's ``data`` is a ``bytearray`` when its payload has at least :data:`DIRECT_PAYLOAD_MIN` bytes
(``bytes`` otherwise). Both are bytes-like objects with the same contents; the engine's decoder
(:func:`~netspectra.transport.codec.decode_batch`) takes either and its arrays are then views of
the ``bytearray``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats.protocol.parser import (
    AWAITING_CONTROL_LINE,
    AWAITING_MSG_PAYLOAD,
    CRLF_SIZE,
    MAX_CONTROL_LINE_SIZE,
    MSG_RE,
    Parser,
    ProtocolError,
)

__all__ = ["DIRECT_PAYLOAD_MIN", "DirectPayloadParser", "install_direct_payloads", "read_whole_buffer"]

#: Payloads of at least this many bytes are copied once, into a ``bytearray`` of their own; smaller
#: ones take nats-py's path (control-plane replies, acknowledgements, ``PacketInfo`` messages).
DIRECT_PAYLOAD_MIN = 64 * 1024

_CRLF = b"\r\n"


class DirectPayloadParser(Parser):
    """nats-py's parser with the one-copy path for large ``MSG`` payloads (see the module docstring).

    State of a payload being filled: ``_payload`` (its ``bytearray``, ``needed`` + 2 bytes for the
    trailing CRLF), ``_filled`` (bytes written so far) and ``_msg`` (its subject, sid and reply).
    """

    def reset(self) -> None:
        super().reset()
        self._payload: bytearray | None = None
        self._filled = 0
        self._msg: tuple[bytes, int, bytes] = (b"", 0, b"")
        self._done = bytearray()

    async def parse(self, data: bytes = b"") -> None:  # type: ignore[override]
        view = memoryview(data).cast("B")
        pos, end = 0, len(view)
        while True:
            if self._payload is not None:
                pos = self._fill(view, pos, end)
                if self._payload is not None:
                    return  # the rest of the payload comes with the next read
                await self._dispatch_filled()
                continue
            if self.buf or self.state != AWAITING_CONTROL_LINE:
                # bytes held by nats-py's parser (a split control line, a small payload): let it go on
                # with this read, then take over a large payload it has started
                if not await self._through_nats_py(view, pos, end):
                    return
                pos = end
                continue
            if pos >= end:
                return
            m = MSG_RE.match(view[pos : pos + MAX_CONTROL_LINE_SIZE])
            if m is None or int(m.group(5)) < DIRECT_PAYLOAD_MIN:
                # anything else starts here: nats-py's parser takes the rest of this read
                if not await self._through_nats_py(view, pos, end):
                    return
                pos = end
                continue
            subject, sid, _, reply, needed = m.groups()
            try:
                self._start(subject, int(sid), reply or b"", int(needed))
            except ValueError:
                raise ProtocolError("nats: malformed MSG") from None
            pos += m.end()

    async def _through_nats_py(self, view: memoryview, pos: int, end: int) -> bool:
        """nats-py's parser takes ``view[pos:end]`` (it extends its buffer with it: one copy); whether it
        stopped inside a large payload, now taken over by this parser and filled from the next reads."""
        await super().parse(view[pos:end])
        self._take_over()
        return self._payload is not None

    def _start(self, subject: bytes, sid: int, reply: bytes, needed: int) -> None:
        self._payload = bytearray(needed + CRLF_SIZE)
        self._filled = 0
        self._msg = (subject, sid, reply)
        self.state = AWAITING_MSG_PAYLOAD

    def _fill(self, view: memoryview, pos: int, end: int) -> int:
        """Copy what ``view[pos:end]`` holds of the payload being filled; the new ``pos``. Leaves
        ``_payload`` ``None`` and the filled payload in ``_done`` once complete."""
        payload = self._payload
        assert payload is not None
        take = min(end - pos, len(payload) - self._filled)
        payload[self._filled : self._filled + take] = view[pos : pos + take]
        self._filled += take
        if self._filled == len(payload):
            if payload[-CRLF_SIZE:] != _CRLF:
                raise ProtocolError("nats: MSG payload not followed by CRLF")
            del payload[-CRLF_SIZE:]  # shrinking by two bytes: no copy
            self._done = payload
            self._payload = None
            self.state = AWAITING_CONTROL_LINE
        return pos + take

    async def _dispatch_filled(self) -> None:
        subject, sid, reply = self._msg
        payload, self._done = self._done, bytearray()
        await self.nc._process_msg(sid, subject, reply, payload, None)

    def _take_over(self) -> None:
        """nats-py's parser stopped inside a large ``MSG`` payload (no headers): move the part it holds
        into a payload of its own, to be filled from the next reads without its copies."""
        if (
            self.state != AWAITING_MSG_PAYLOAD
            or self.header_needed
            or self.needed < DIRECT_PAYLOAD_MIN
            or len(self.buf) >= self.needed + CRLF_SIZE
        ):
            return
        arg = self.msg_arg
        self._start(arg["subject"], arg["sid"], arg["reply"], self.needed)
        held = memoryview(self.buf)
        try:
            self._fill(held, 0, len(held))
        finally:
            held.release()
        self.buf = bytearray()


async def read_whole_buffer(reader: asyncio.StreamReader, limit: int) -> bytes | bytearray:
    """What ``reader`` holds (waiting for data when it holds nothing), at most ``limit`` bytes: its
    buffer itself when that is all of it — handed over, a fresh one left in its place — else
    ``reader.read(limit)``. Same contract as ``StreamReader.read`` (``b""`` at the end of the stream,
    the reader's exception raised); the result may be a ``bytearray``.

    Relies on the ``StreamReader`` internals that CPython has kept since 3.5 (``_buffer``,
    ``_exception``, ``_eof``, ``_wait_for_data``, ``_maybe_resume_transport``);
    :func:`install_direct_payloads` checks them before installing this."""
    if reader._exception is None and not reader._buffer and not reader._eof:  # type: ignore[attr-defined]
        await reader._wait_for_data("read")  # type: ignore[attr-defined]
    buf = reader._buffer  # type: ignore[attr-defined]
    if reader._exception is not None or type(buf) is not bytearray or not buf or len(buf) > limit:  # type: ignore[attr-defined]
        return await reader.read(limit)
    reader._buffer = bytearray()  # type: ignore[attr-defined]
    reader._maybe_resume_transport()  # type: ignore[attr-defined]
    return buf


_READER_INTERNALS = ("_buffer", "_exception", "_eof", "_wait_for_data", "_maybe_resume_transport")


class _WholeBufferReads:
    """A connection's ``read`` by :func:`read_whole_buffer` (nats-py's ``TcpTransport`` keeps its reader in
    ``_io_reader``, a new one at each reconnection: looked up at every read)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    async def __call__(self, buffer_size: int) -> bytes | bytearray:
        reader = self._transport._io_reader
        if not all(hasattr(reader, name) for name in _READER_INTERNALS):
            return await reader.read(buffer_size)
        return await read_whole_buffer(reader, buffer_size)


def install_direct_payloads(nc: Any) -> bool:
    """Give the nats-py client ``nc`` a :class:`DirectPayloadParser` and, over TCP (TLS included), reads
    by :func:`read_whole_buffer` (right after connecting, before it receives anything that matters).
    Returns whether the parser was installed — a nats-py of an untested release line
    (:mod:`~netspectra.transport.nats_internals`), a nats-py whose client has no ``_ps`` parser, or one of
    another type, is left alone, and so is one in the middle of a command (nats-py's parser is idle once
    ``connect`` has returned); so is a transport that is not nats-py's ``TcpTransport`` (WebSocket).
    Both survive reconnections (nats-py resets the parser, which this class supports, and keeps the
    transport object)."""
    from netspectra.transport.nats_internals import internals_known

    if not internals_known():  # a nats-py these paths were not tested with: its own code
        return False
    transport = getattr(nc, "_transport", None)
    tcp = type(transport).__name__ == "TcpTransport"
    reads = isinstance(getattr(transport, "_io_reader", None), asyncio.StreamReader)
    if tcp and reads and not isinstance(transport.__dict__.get("read"), _WholeBufferReads):
        transport.read = _WholeBufferReads(transport)
    ps = getattr(nc, "_ps", None)
    if type(ps) is not Parser:
        return isinstance(ps, DirectPayloadParser)
    if ps.buf or ps.state != AWAITING_CONTROL_LINE:
        # nats-py's parser holds part of a command (the read loop may be inside it): not now
        return False
    nc._ps = DirectPayloadParser(nc)
    return True
