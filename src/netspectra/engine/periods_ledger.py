"""Where a JetStream engine's periods begin and end in the stream, kept in a JetStream key-value bucket.

An engine's state lives in memory; what survives it is what its writers stored, keyed by period
(``PeriodStartNs``), and what it acknowledged in the stream. For a successor to rebuild *exactly* the
state its predecessor died with, and to store it under the *same* period start (so that its
snapshots replace the dead engine's rows instead of adding to them), it must know

* the start of the period the predecessor was in (``period_start_ns``), and
* if the predecessor had begun to close that period, the last stream sequence in it (``end_seq``)
  and the start of the period after it (``next_start_ns``; ``None`` at a graceful stop, where the
  next engine starts a fresh period).

The consumer writes one :class:`PeriodRecord` per durable consumer (the key) at each period start
and *before* each close; it acknowledges the stream only after the closed period's final snapshots
were written. On start, :func:`resume_plan` turns the record and the consumer's acknowledgement floor
into what to do; every crash point between those steps leads to the same periods, the same
boundaries and the same period starts (``docs/live.md``, "Restart").
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from nats.js.errors import BucketNotFoundError, KeyNotFoundError

log = logging.getLogger(__name__)

__all__ = ["PeriodLedger", "PeriodRecord", "ResumePlan", "resume_plan"]


@dataclass(frozen=True)
class PeriodRecord:
    """The state of one consumer's current period (JSON in the bucket)."""

    period_start_ns: int
    end_seq: int | None = None  # set when the period is being closed: its last stream sequence
    next_start_ns: int | None = None  # with end_seq: the next period's start (None: start fresh)

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
    predecessor's (its stored rows will be replaced).
    """

    period_start_ns: int | None
    resumed: bool = False
    close_at_seq: int | None = None
    next_start_ns: int | None = None


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
    return ResumePlan(
        record.period_start_ns,
        resumed=True,
        close_at_seq=record.end_seq,
        next_start_ns=record.next_start_ns if record.end_seq is not None else None,
    )


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

    async def get(self) -> PeriodRecord | None:
        """The stored record, ``None`` if there is none (or it was unreadable: logged)."""
        try:
            entry = await self._kv.get(self.key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        try:
            return PeriodRecord.from_bytes(entry.value)
        except ValueError as exc:
            log.error("period ledger %s/%s: %s; starting a fresh period", self.bucket, self.key, exc)
            return None

    async def put(self, record: PeriodRecord) -> None:
        await self._kv.put(self.key, record.to_bytes())
