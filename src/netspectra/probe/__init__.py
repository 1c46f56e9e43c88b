"""The probe: packets from a source (a replayed capture file, or a live interface) published to NATS.

* :mod:`~netspectra.probe.replay` — capture files as batches (:class:`ReplaySource`, a
  :class:`~netspectra.batch.BatchSource`), at the recorded pace, a multiple of it,
  or as fast as possible.
* :mod:`~netspectra.probe.publisher` — any iterator of :class:`~netspectra.batch.PacketBatch` →
  per-shard subjects (``<subject>.<shard>``), through a bounded queue with counted drops.

The names below are imported on first use, so that a source module (e.g. live capture) can be used
without the NATS client installed.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ProbeStats", "Publisher", "PublisherOptions", "ReplaySource", "pace", "replay_files"]

_WHERE = {
    "ProbeStats": "publisher",
    "Publisher": "publisher",
    "PublisherOptions": "publisher",
    "ReplaySource": "replay",
    "pace": "replay",
    "replay_files": "replay",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
