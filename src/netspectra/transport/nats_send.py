"""The probe's NATS send path: a large message's payload handed to the socket without nats-py's copies.

nats-py's ``publish`` builds each message as ``b"PUB …\\r\\n" + payload + b"\\r\\n"`` (two copies of the
payload), its flusher joins everything pending into one ``bytes`` (``WriteTransport.writelines``: a
third), and the socket transport copies what one ``send`` did not take (``data[n:]``, then into its
buffer: a fourth and a fifth) — each into fresh memory for a payload of a few hundred kilobytes. For the
probe, which publishes nothing but such batches, that was a tenth of its CPU.

:func:`publish_direct` queues the message as three pieces — the control line, the payload object
itself, the CRLF — in one step (nothing can come between them), and :func:`install_direct_writes` makes
the connection's flusher write the pending pieces one by one (the socket transport sends what it can at
once and buffers the rest: one copy, of the part not yet sent). Both fall back to nats-py's own code
wherever the client is not the one they know (checked once, at installation).
"""

from __future__ import annotations

import asyncio
from typing import Any

from nats import errors

__all__ = ["DIRECT_PUBLISH_MIN", "install_direct_writes", "publish_direct"]

#: Payloads of at least this many bytes are queued as they are; smaller ones through ``nc.publish``.
DIRECT_PUBLISH_MIN = 64 * 1024

_CRLF = b"\r\n"
_CLIENT_INTERNALS = ("_pending", "_pending_data_size", "_max_pending_size", "_max_payload", "_flush_queue")


class _PieceWrites:
    """A connection's ``writelines``: each large pending piece to the stream writer as it is, the small
    ones between two large ones joined into one write (each write the socket takes at once is a segment
    of its own: a control line alone would cost the server a read).
    nats-py's ``TcpTransport`` keeps its writer in ``_io_writer``, a new one at each reconnection:
    looked up at every call."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def __call__(self, pieces: list[bytes]) -> None:
        writer = self._transport._io_writer
        small: list[bytes] = []  # control lines, CRLFs, small messages: joined (cheap), one write
        for piece in pieces:
            if len(piece) < DIRECT_PUBLISH_MIN:
                small.append(piece)
                continue
            if small:
                writer.write(b"".join(small))
                small = []
            writer.write(piece)
        if small:
            writer.write(b"".join(small))


def install_direct_writes(nc: Any) -> bool:
    """Make the connected nats-py client ``nc`` write its pending commands piece by piece and accept
    :func:`publish_direct`; returns whether it did (a client or transport of another shape — a
    WebSocket, a nats-py of an untested release line (:mod:`~netspectra.transport.nats_internals`) — is
    left alone and :func:`publish_direct` publishes through it as
    usual)."""
    from netspectra.transport.nats_internals import internals_known

    if not internals_known():  # a nats-py these paths were not tested with: its own code
        return False
    transport = getattr(nc, "_transport", None)
    if type(transport).__name__ != "TcpTransport" or not isinstance(
        getattr(transport, "_io_writer", None), asyncio.StreamWriter
    ):
        return False
    if not all(hasattr(nc, name) for name in _CLIENT_INTERNALS):
        return False
    if not isinstance(transport.__dict__.get("writelines"), _PieceWrites):
        transport.writelines = _PieceWrites(transport)
    nc._netspectra_direct_writes = True
    return True


async def publish_direct(nc: Any, subject: str, payload: bytes) -> None:
    """``await nc.publish(subject, payload)`` (no reply, no headers; the same errors), the payload queued
    as it is when it has at least :data:`DIRECT_PUBLISH_MIN` bytes and :func:`install_direct_writes`
    accepted ``nc``. ``payload`` must not change afterwards (it is written later, by the flusher)."""
    size = len(payload)
    if size < DIRECT_PUBLISH_MIN or not getattr(nc, "_netspectra_direct_writes", False):
        await nc.publish(subject, payload)
        return
    # nats-py's publish() checks, in its order
    if nc.is_closed:
        raise errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise errors.ConnectionDrainingError
    if not nc.is_connected and (
        nc._max_pending_size <= 0 or size + nc._pending_data_size > nc._max_pending_size
    ):
        raise errors.OutboundBufferLimitError
    if size > nc._max_payload:
        raise errors.MaxPayloadError
    if not subject or " " in subject or "\t" in subject or "\r" in subject or "\n" in subject:
        raise errors.BadSubjectError
    head = f"PUB {subject}  {size}\r\n".encode()
    nc._pending.extend((head, payload, _CRLF))  # one step: no other command between the pieces
    nc._pending_data_size += len(head) + size + len(_CRLF)
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += size
    if nc._max_pending_size > 0 and nc._pending_data_size > nc._max_pending_size:
        await nc._flush_pending(force_flush=True)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()
