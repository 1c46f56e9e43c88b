"""Where a JetStream engine's periods begin and end in the stream, kept in a JetStream key-value bucket.

An engine's state lives in memory; what survives it is what its writers stored, keyed by period
(``PeriodStartNs``), and what it acknowledged in the stream. For a successor to rebuild *exactly* the
state its predecessor died with, and to store it under the *same* period start (so that its
snapshots replace the dead engine's rows instead of adding to them), it must know

* the start of the period the predecessor was in (``period_start_ns``),
* if the predecessor had begun to close that period, the last stream sequence in it (``end_seq``)
  and the start of the period after it (``next_start_ns``; ``None`` at a graceful stop, where the
  next engine starts a fresh period), and
* for a resumed period, how far the stream must be read back before the period may end
  (``replay_until``: what the dead engine had received, and so may have stored under that period).

The same bucket holds, per consumer, the skip floors of a shard hand-over (``<durable>.handover``) and,
per consumer group, the member count it runs with (``<durable prefix>.layout``).

The consumer writes one :class:`PeriodRecord` per durable consumer (the key) at each period start
and *before* each close; it acknowledges the stream only after the closed period's final snapshots
were written. On start, :func:`resume_plan` turns the record and the consumer's acknowledgement floor
into what to do; every crash point between those steps leads to the same periods, the same
boundaries and the same period starts (``docs/live.md``, "Restart").
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from nats.js.errors import BucketNotFoundError, KeyNotFoundError

log = logging.getLogger(__name__)

__all__ = ["LedgerError", "PeriodLedger", "PeriodRecord", "ResumePlan", "resume_plan"]


class LedgerError(RuntimeError):
    """A ledger entry that is not what NetSpectra wrote: the engine refuses to guess."""


@dataclass(frozen=True)
class PeriodRecord:
    """The state of one consumer's current period (JSON in the bucket)."""

    period_start_ns: int
    end_seq: int | None = None  # set when the period is being closed: its last stream sequence
    next_start_ns: int | None = None  # with end_seq: the next period's start (None: start fresh)
    replay_until: int | None = None  # a resumed period may end only after this stream sequence

    @property
    def stopped(self) -> bool:
        """The record of a graceful stop (its consumer is done once it acknowledged ``end_seq``)."""
        return self.end_seq is not None and self.next_start_ns is None

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PeriodRecord:
        """Parse a record; ``ValueError`` if ``data`` is not one."""
        try:
            d = json.loads(data)
            rec = cls(
                int(d["period_start_ns"]),
                None if d.get("end_seq") is None else int(d["end_seq"]),
                None if d.get("next_start_ns") is None else int(d["next_start_ns"]),
                None if d.get("replay_until") is None else int(d["replay_until"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"not a period record: {data[:200]!r} ({exc})") from None
        return rec


@dataclass(frozen=True)
class ResumePlan:
    """What an engine does on start.

    ``period_start_ns``: the first period's start (``None``: now, a fresh period). ``close_at_seq``:
    end that period right after applying this stream sequence (a close its predecessor began), with
    ``next_start_ns`` as the start of the period after it. ``resumed``: the period is the
    predecessor's (its stored rows will be replaced). ``replay_until``: a resumed open period may not
    end before this stream sequence was read back (recorded by an earlier successor that stopped
    before it got there).
    """

    period_start_ns: int | None
    resumed: bool = False
    close_at_seq: int | None = None
    next_start_ns: int | None = None
    replay_until: int = 0


def resume_plan(record: PeriodRecord | None, ack_floor: int) -> ResumePlan:
    """The plan for a consumer whose stream acknowledgement floor is ``ack_floor``.

    * no record: a fresh period;
    * a closing record whose ``end_seq`` is acknowledged: the close completed; the next period starts
      at ``next_start_ns`` (or now, after a graceful stop);
    * otherwise the predecessor died inside ``period_start_ns`` (which began right after the
      acknowledgement floor, since acknowledgements happen only at period ends): resume it, and if
      it was being closed, close it again at ``end_seq``.
    """
    if record is None:
        return ResumePlan(None)
    if record.end_seq is not None and ack_floor >= record.end_seq:
        return ResumePlan(record.next_start_ns, resumed=False)
    if record.end_seq is not None:
        start, end, nxt = record.period_start_ns, record.end_seq, record.next_start_ns
        return ResumePlan(start, resumed=True, close_at_seq=end, next_start_ns=nxt)
    return ResumePlan(record.period_start_ns, resumed=True, replay_until=record.replay_until or 0)


class PeriodLedger:
    """The bucket ``<stream>_PERIODS`` (one key per durable consumer) of one JetStream context."""

    def __init__(self, js: Any, stream: str, key: str) -> None:
        self._js = js
        self.bucket = f"{stream}_PERIODS"
        self.key = key
        self._kv: Any = None

    async def open(self) -> None:
        """Bind to the bucket, creating it (file storage, one revision per key) if needed."""
        try:
            self._kv = await self._js.key_value(self.bucket)
        except BucketNotFoundError:
            self._kv = await self._js.create_key_value(bucket=self.bucket, history=1)

    async def _raw(self, key: str) -> bytes | None:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return None
        return entry.value or None

    async def get(self, key: str | None = None) -> PeriodRecord | None:
        """The period record of consumer ``key`` (default: this one); ``None`` if there is none.
        :class:`LedgerError` if it is unreadable (resuming from a guess could count packets twice)."""
        data = await self._raw(key or self.key)
        if data is None:
            return None
        try:
            return PeriodRecord.from_bytes(data)
        except ValueError as exc:
            raise LedgerError(f"JetStream period ledger {self.bucket}/{key or self.key}: {exc}") from None

    async def put(self, record: PeriodRecord) -> None:
        await self._kv.put(self.key, record.to_bytes())

    async def forget(self) -> None:
        """Remove this consumer's period record (a consumer that starts afresh has none)."""
        with contextlib.suppress(KeyNotFoundError):
            await self._kv.delete(self.key)

    async def get_json(self, key: str) -> Any:
        """The JSON value stored under ``key``, ``None`` if absent; :class:`LedgerError` if unreadable."""
        data = await self._raw(key)
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise LedgerError(f"JetStream period ledger {self.bucket}/{key}: not JSON ({exc})") from None

    async def put_json(self, key: str, value: Any) -> None:
        await self._kv.put(key, json.dumps(value, separators=(",", ":"), sort_keys=True).encode())
