"""NATS plumbing shared by the probe and the engine: subjects, connections, the JetStream stream, and
cutting batches into messages that fit the server's ``max_payload``.

Subjects (``subject`` is ``probe.subject`` of the configuration, ``gons.packets.raw`` by default):

* ``<subject>.<shard>`` — NetSpectra's fast path: one ``v1.PacketBatch`` message (``docs/wire.md``) per
  message, the packets of one shard (:func:`~netspectra.transport.codec.shard_of`), ``seq`` counting
  the messages of that shard of that probe from 1, ``probe_id`` naming the probe.
* ``<subject>`` — the original's subject: one ``v1.PacketInfo`` per message (compatibility, slow path).

A subscriber of the original's subject never sees the batches (NATS matches subjects token by token),
so an original consumer and NetSpectra's engine can share one server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from netspectra.batch import PacketBatch
from netspectra.engine.metrics import RateLimitedLog
from netspectra.transport.codec import encode_batch

log = logging.getLogger(__name__)

__all__ = [
    "BYTES_PER_PACKET",
    "DEFAULT_QUEUE_GROUP",
    "DEFAULT_SHARDS",
    "DEFAULT_STREAM",
    "batch_subject",
    "batch_wildcard",
    "connect",
    "encode_messages",
    "ensure_stream",
    "max_packets_for_payload",
    "member_shards",
    "stream_subjects",
]

#: Shards (per-shard subjects) a probe publishes on unless told otherwise.
DEFAULT_SHARDS = 16
#: Queue group of the engines: each message reaches exactly one engine of the group.
DEFAULT_QUEUE_GROUP = "netspectra-engine"
#: JetStream stream that stores the packet subjects when JetStream is used.
DEFAULT_STREAM = "NETSPECTRA_PACKETS"
#: Encoded bytes per packet of a ``v1.PacketBatch``: 8 + 16 + 16 + 2 + 2 + 1 + 4.
BYTES_PER_PACKET = 49
# tags, lengths, metadata, probe id (≤ 255 bytes) and alignment padding: well under this
_HEADER_ALLOWANCE = 512


def batch_subject(subject: str, shard: int) -> str:
    """The subject of shard ``shard``'s batches."""
    return f"{subject}.{int(shard)}"


def batch_wildcard(subject: str) -> str:
    """The wildcard matching every shard subject of ``subject``."""
    return f"{subject}.*"


def member_shards(n_shards: int, member: int, members: int) -> list[int]:
    """The shards engine ``member`` of ``members`` owns: ``s % members == member`` (a partition)."""
    if members < 1 or not 0 <= member < members:
        raise ValueError(f"member must be in [0, {members}), got {member}")
    if n_shards < 1:
        raise ValueError(f"n_shards must be at least 1, got {n_shards}")
    return [s for s in range(n_shards) if s % members == member]


def max_packets_for_payload(max_payload: int, wanted: int, optional: Iterable[str] = ()) -> int:
    """Packets per message: ``wanted`` capped so that one encoded batch fits in ``max_payload`` bytes,
    batches carrying the ``optional`` columns (:data:`PacketBatch.OPTIONAL` names) included."""
    per_packet = BYTES_PER_PACKET + sum(PacketBatch.OPTIONAL[c].itemsize for c in optional)
    fit = (int(max_payload) - _HEADER_ALLOWANCE) // per_packet
    if fit < 1:
        raise ValueError(f"max_payload {max_payload} cannot hold even one packet")
    return max(1, min(int(wanted), fit))


def encode_messages(
    batch: PacketBatch, max_packets: int, first_seq: int, **meta: Any
) -> Iterator[tuple[int, bytes]]:
    """``(seq, payload)`` of ``batch`` cut into messages of at most ``max_packets`` packets.

    ``seq`` runs from ``first_seq`` by one per message; ``meta`` goes to
    :func:`~netspectra.transport.codec.encode_batch` (``probe_id``, ``shard``, ``n_shards``, counters).
    """
    n = len(batch)
    seq = first_seq
    for lo in range(0, n, max_packets):
        part = batch if (lo == 0 and n <= max_packets) else _slice(batch, lo, lo + max_packets)
        yield seq, encode_batch(part, seq=seq, **meta)
        seq += 1


def _slice(batch: PacketBatch, lo: int, hi: int) -> PacketBatch:
    return batch.slice(lo, hi)


async def connect(url: str, name: str, *, connect_attempts: int = 10, **options: Any) -> Client:
    """A connection to ``url`` that logs (not raises) asynchronous errors, e.g. slow-consumer drops.

    The first connection is tried ``connect_attempts`` times (0.5 s apart), then
    ``nats.errors.NoServersError`` is raised; once connected, the client reconnects forever. Errors
    are logged at most once per 10 s. ``options`` go to :func:`nats.connect` (``error_cb`` replaces
    the logging one).
    """
    limited = RateLimitedLog(log, 10.0)

    async def _error(exc: Exception) -> None:
        limited.log(logging.WARNING, "NATS (%s): %s", name, exc)

    opts: dict[str, Any] = {
        "name": name,
        "error_cb": _error,
        "connect_timeout": 5,
        "max_reconnect_attempts": max(1, connect_attempts),
        "reconnect_time_wait": 0.5,
    }
    opts.update(options)
    nc = await nats.connect(url, **opts)
    nc.options["max_reconnect_attempts"] = -1  # connected: never give up reconnecting
    return nc


def stream_subjects(subject: str) -> list[str]:
    """What the JetStream stream stores: the shard subjects and the original's subject."""
    return [subject, batch_wildcard(subject)]


async def ensure_stream(js: JetStreamContext, stream: str, subject: str, *, max_bytes: int = -1) -> None:
    """Create the file-backed stream ``stream`` over :func:`stream_subjects` if it does not exist.

    An existing stream with other subjects is updated to include them. Idempotent; the probe and the
    engine both call it, whichever starts first.
    """
    subjects = stream_subjects(subject)
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=stream,
                subjects=subjects,
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                max_bytes=max_bytes,
            )
        )
        log.info("JetStream stream %s created for %s", stream, ", ".join(subjects))
        return
    have = list(info.config.subjects or [])
    if not set(subjects) <= set(have):
        cfg = info.config
        cfg.subjects = sorted(set(have) | set(subjects))
        await js.update_stream(cfg)
        log.info("JetStream stream %s now also stores %s", stream, ", ".join(subjects))
