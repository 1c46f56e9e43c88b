"""Timestamps as text: always UTC, ISO 8601 with a ``Z`` (the original stored local time as UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def format_ts_ns(ts_ns: int) -> str:
    """``2024-01-01T00:00:00.123456789Z`` for nanoseconds since the Unix epoch."""
    sec, ns = divmod(int(ts_ns), 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"
