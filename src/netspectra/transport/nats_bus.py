"""NATS plumbing shared by the probe and the engine: subjects, connections, the JetStream stream, and
cutting batches into messages that fit the server's ``max_payload``.

Subjects (``subject`` is ``probe.subject`` of the configuration, ``gons.packets.raw`` by default):

* ``<subject>.<shard>`` — NetSpectra's fast path: one ``v1.PacketBatch`` message (``docs/wire.md``) per
  message, the packets of one shard (:func:`~netspectra.transport.codec.shard_of`), ``seq`` counting
  the messages of that shard of that probe from 1, ``probe_id`` naming the probe.
* ``<subject>`` — the original's subject: one ``v1.PacketInfo`` per message (compatibility, slow path).

A subscriber of the original's subject never sees the batches (NATS matches subjects token by token),
so an original consumer and NetSpectra's engine can share one server.

Connections (:func:`connect`) authenticate with :class:`NatsAuth` (the ``nats`` section of the
configuration: user/password or token, TLS with a CA and an optional client certificate); credentials
never appear in logs or errors (:func:`redact_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from netspectra.batch import PacketBatch
from netspectra.counters import RateLimitedLog
from netspectra.transport.codec import encode_batch
from netspectra.transport.names import DEFAULT_QUEUE_GROUP, DEFAULT_SHARDS, DEFAULT_STREAM

log = logging.getLogger(__name__)

__all__ = [
    "BYTES_PER_PACKET",
    "DEFAULT_QUEUE_GROUP",
    "DEFAULT_SHARDS",
    "DEFAULT_STREAM",
    "DENSE_MIN_BYTES_PER_PACKET",
    "NATS_READ_BUFFER",
    "NatsAuth",
    "NatsConnectError",
    "batch_subject",
    "batch_wildcard",
    "connect",
    "encode_messages",
    "ensure_stream",
    "max_packets_for_payload",
    "member_shards",
    "redact_url",
    "stream_subjects",
    "widen_nats_reads",
]

#: Encoded bytes per packet of a ``v1.PacketBatch``: 8 + 16 + 16 + 2 + 2 + 1 + 4 in layout 1, and at most
#: that in layout 2 (its encoder picks a dense form only where it is smaller; a packed frame only when
#: it is smaller than the columns).
BYTES_PER_PACKET = 49
#: The fewest bytes per packet of an uncompressed layout 2 message (4-byte addresses, a uint32
#: timestamp offset, a uint16 length, ports and protocol): more packets never fit in a payload.
DENSE_MIN_BYTES_PER_PACKET = 19
# tags, lengths, metadata, probe id (≤ 255 bytes), layout 2's ts_base and packed-frame fields and the
# alignment padding before each of up to 22 columns: well under this
_HEADER_ALLOWANCE = 1024


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


def max_packets_for_payload(
    max_payload: int, wanted: int, optional: Iterable[str] = (), *, per_packet: int = BYTES_PER_PACKET
) -> int:
    """Packets per message: ``wanted`` capped so that one encoded batch fits in ``max_payload`` bytes,
    batches carrying the ``optional`` columns (:data:`PacketBatch.OPTIONAL` names) included, at
    ``per_packet`` bytes a packet besides those (layout 1's fixed size by default;
    :data:`DENSE_MIN_BYTES_PER_PACKET` gives the count above which no layout 2 message fits)."""
    per_packet = int(per_packet) + sum(PacketBatch.row_bytes(c) for c in optional)
    fit = (int(max_payload) - _HEADER_ALLOWANCE) // per_packet
    if fit < 1:
        raise ValueError(f"max_payload {max_payload} cannot hold even one packet")
    return max(1, min(int(wanted), fit))


def encode_messages(
    batch: PacketBatch,
    max_packets: int,
    first_seq: int,
    *,
    first_packet: int = 0,
    max_bytes: int | None = None,
    **meta: Any,
) -> Iterator[tuple[int, bytes]]:
    """``(seq, payload)`` of ``batch`` cut into messages of at most ``max_packets`` packets.

    ``seq`` runs from ``first_seq`` by one per message; each message's ``shard_packets`` is
    ``first_packet`` plus the packets of the messages before it (the shard's packets published before
    ``batch``: a receiver that misses a message knows how many packets it lost); ``meta`` goes to
    :func:`~netspectra.transport.codec.encode_batch` (``probe_id``, ``shard``, ``n_shards``, counters).

    ``max_bytes`` (the server's ``max_payload``; ``None``: ``max_packets`` alone decides): no payload
    is longer. A message that came out longer (layout 2 with many IPv6 rows, or a ``max_packets`` above
    :func:`max_packets_for_payload`'s worst case) is cut into as many equal parts as its length asks,
    each checked again: a dense layout fills messages by its real size, not by the worst case of 49
    bytes a packet. Raises ``ValueError`` when one packet alone does not fit in ``max_bytes``.
    """
    n = len(batch)
    seq = first_seq
    for lo in range(0, n, max_packets):
        part = batch if (lo == 0 and n <= max_packets) else _slice(batch, lo, lo + max_packets)
        for payload in _fitting(part, first_packet + lo, max_bytes, meta, seq):
            yield seq, payload
            seq += 1


def _fitting(
    part: PacketBatch, shard_packets: int, max_bytes: int | None, meta: dict[str, Any], seq: int
) -> Iterator[bytes]:
    """The payloads of ``part``'s messages, each at most ``max_bytes`` long, in order, numbered from
    ``seq`` (one per message)."""
    payload = encode_batch(part, seq=seq, shard_packets=shard_packets, **meta)
    n = len(part)
    if max_bytes is None or len(payload) <= max_bytes:
        yield payload
        return
    if n <= 1:
        raise ValueError(f"one packet needs {len(payload)} bytes, more than max_payload {max_bytes}")
    # equal parts by the measured length; a part can still be too long (IPv6 rows bunched): recurse
    k = max(2, -(-len(payload) // max(1, max_bytes - _HEADER_ALLOWANCE)))
    step = -(-n // k)
    done = 0
    for lo in range(0, n, step):
        for p in _fitting(_slice(part, lo, lo + step), shard_packets + lo, max_bytes, meta, seq + done):
            yield p
            done += 1


def _slice(batch: PacketBatch, lo: int, hi: int) -> PacketBatch:
    return batch.slice(lo, hi)


class NatsConnectError(ConnectionError):
    """The first connection to a NATS server failed; the message says why (refused credentials, TLS,
    unreachable) and what to set, never a secret."""


def redact_url(url: str) -> str:
    """``url`` with any password or token in its user part replaced by ``***`` (for logs and errors)."""
    parts = []
    for one in url.split(","):
        s = urlsplit(one.strip() if "://" in one else f"nats://{one.strip()}")
        if s.password is not None or (s.username and "@" in s.netloc):
            host = s.netloc.rpartition("@")[2]
            user = f"{s.username}:***" if s.password is not None else "***"
            s = s._replace(netloc=f"{user}@{host}")
        parts.append(urlunsplit(s))
    return ",".join(parts)


@dataclass(frozen=True)
class NatsAuth:
    """How NetSpectra's clients authenticate to NATS (``docs/live.md``, section *Security*).

    ``user``/``password`` or ``token`` (not both); TLS when ``tls_ca_file`` is set, a client certificate
    (``tls_cert_file`` + ``tls_key_file``) is given, or the URL says ``tls://``. The server certificate is
    always verified (against ``tls_ca_file``, else the system's CAs). Secrets are left out of ``repr``.
    """

    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @classmethod
    def from_config(cls, cfg: Any) -> NatsAuth:
        """From a configuration's ``nats`` section (none, e.g. an older :class:`Config`: no auth)."""
        n = getattr(cfg, "nats", None)
        if n is None:
            return cls()
        return cls(n.user, n.password, n.token, n.tls_ca_file, n.tls_cert_file, n.tls_key_file)

    def uses_tls(self, url: str = "") -> bool:
        return bool(self.tls_ca_file or self.tls_cert_file) or url.strip().startswith("tls://")

    def connect_options(self, url: str = "") -> dict[str, Any]:
        """Keyword options of :func:`nats.connect` (``ValueError`` naming the key for a bad TLS file)."""
        opts: dict[str, Any] = {}
        if self.user:
            opts["user"] = self.user
            opts["password"] = self.password
        if self.token:
            opts["token"] = self.token
        if self.uses_tls(url):
            try:
                ctx = ssl.create_default_context(cafile=self.tls_ca_file or None)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"nats.tls_ca_file {self.tls_ca_file!r}: {exc}") from None
            if self.tls_cert_file:
                try:
                    ctx.load_cert_chain(self.tls_cert_file, self.tls_key_file or None)
                except (OSError, ssl.SSLError) as exc:
                    files = f"{self.tls_cert_file!r} / tls_key_file {self.tls_key_file!r}"
                    raise ValueError(f"nats.tls_cert_file {files}: {exc}") from None
            opts["tls"] = ctx
        return opts


def _why(errors: list[Exception], auth: NatsAuth) -> str:
    """The reason of a failed first connection, from the errors the client reported (never a secret)."""
    text = " ".join(str(e) for e in errors).lower()
    if "authorization violation" in text or "authentication" in text:
        given = "a token" if auth.token else ("user " + repr(auth.user)) if auth.user else "no credentials"
        return (
            f"the server refused the credentials ({given}): set nats.user and nats.password "
            "(NATS_USER/NATS_PASSWORD) or nats.token (NATS_TOKEN) to what the server expects"
        )
    for e in errors:
        if (
            isinstance(e, ssl.SSLError)
            or "ssl" in type(e).__name__.lower()
            or "certificate" in str(e).lower()
        ):
            return (
                f"TLS failed ({type(e).__name__}: {e}): check nats.tls_ca_file (the CA of the server's "
                "certificate) and, where the server verifies clients, nats.tls_cert_file/tls_key_file"
            )
    if errors:
        e = errors[-1]
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    return "no server answered"


#: Bytes nats-py's read loop takes from the socket at a time (set by :func:`connect`). nats-py reads
#: through an asyncio ``StreamReader`` whose limit — it stops reading the socket beyond twice that — and
#: every read of whose read loop are ``nats.aio.client.DEFAULT_BUFFER_SIZE``, 32 KiB, with no connect
#: option: a 350 kB message then costs a dozen loop iterations, parser calls and pause/resume of the
#: socket's reading. Measured (a bare subscriber, 5 M packets of layout 2 in ~14 600-packet messages, 2-core
#: VM, three alternating pairs): 41-49 ns of CPU a packet with 32 KiB, 28-30 with 1 MiB.
NATS_READ_BUFFER = 1 << 20


def widen_nats_reads(size: int = NATS_READ_BUFFER) -> int:
    """Make nats-py read the socket ``size`` bytes at a time (never less than its own default), for every
    connection made afterwards in this process — it is a module setting of nats-py's client, read at
    connect and by each read loop; returns the size in effect. A nats-py without that setting is left
    alone (0 is returned)."""
    from nats.aio import client as nats_client

    current = getattr(nats_client, "DEFAULT_BUFFER_SIZE", None)
    if not isinstance(current, int):
        return 0
    if current < size:
        nats_client.DEFAULT_BUFFER_SIZE = int(size)
    return int(nats_client.DEFAULT_BUFFER_SIZE)


async def connect(
    url: str, name: str, *, connect_attempts: int = 10, auth: NatsAuth | None = None, **options: Any
) -> Client:
    """A connection to ``url`` that logs (not raises) asynchronous errors, e.g. slow-consumer drops.

    The first connection is tried ``connect_attempts`` times (0.5 s apart), then
    :class:`NatsConnectError` is raised saying why (refused credentials, TLS, unreachable); once
    connected, the client reconnects forever. Errors are logged at most once per 10 s. ``auth`` gives
    the credentials and TLS (:class:`NatsAuth`). ``options`` go to :func:`nats.connect` (``error_cb``
    is called after the logging one). nats-py reads the socket :data:`NATS_READ_BUFFER` bytes at a time
    (:func:`widen_nats_reads`).
    """
    widen_nats_reads()
    auth = auth or NatsAuth()
    limited = RateLimitedLog(log, 10.0)
    connecting: list[Exception] = []
    user_cb = options.pop("error_cb", None)
    state = {"connected": False}

    fatal = asyncio.Event()  # a refusal that trying again cannot cure: stop trying at once

    async def _error(exc: Exception) -> None:
        if not state["connected"]:
            connecting.append(exc)
            if isinstance(exc, ssl.SSLError) or "authorization violation" in str(exc).lower():
                fatal.set()
            return
        if user_cb is not None:
            await user_cb(exc)
        else:
            limited.log(logging.WARNING, "NATS (%s): %s", name, exc)

    opts: dict[str, Any] = {
        "name": name,
        "connect_timeout": 5,
        "max_reconnect_attempts": max(1, connect_attempts),
        "reconnect_time_wait": 0.5,
    }
    opts.update(auth.connect_options(url))
    opts.update(options)
    opts["error_cb"] = _error
    # bounded, and cut short by a refusal (nats-py can wait forever after a failed certificate check)
    per_try = float(opts["connect_timeout"]) + float(opts["reconnect_time_wait"])
    limit = max(1, connect_attempts) * per_try + 5
    attempt = asyncio.ensure_future(nats.connect(url, **opts))
    refused = asyncio.ensure_future(fatal.wait())
    try:
        await asyncio.wait({attempt, refused}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        if not attempt.done():
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
            raise TimeoutError(f"no connection within {limit:.0f} s")
        nc = attempt.result()
    except Exception as exc:
        if not isinstance(exc, (nats.errors.NoServersError, TimeoutError)) or not connecting:
            connecting.append(exc)
        raise NatsConnectError(
            f"cannot connect to NATS at {redact_url(url)}: {_why(connecting, auth)}"
        ) from None
    finally:
        refused.cancel()
    state["connected"] = True
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
