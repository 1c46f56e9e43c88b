"""Capture: packets from files (pcap, pcapng, gzip) and interfaces into columnar batches.

Submodules: :mod:`.source` (bounded byte windows over a file), :mod:`.pcap` and :mod:`.pcapng`
(container record walkers), :mod:`.decode` (link/IP/L4 decoder kernel), :mod:`.reader`
(:class:`CaptureReader`), :mod:`.stats`, :mod:`.errors`, :mod:`.status`.

The names below are re-exported lazily so that importing a light submodule (``status``,
``linktypes``) does not compile or import the kernels.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netspectra.capture.errors import CaptureError
    from netspectra.capture.reader import CaptureReader, read_captures
    from netspectra.capture.stats import CaptureStats

__all__ = ["CaptureError", "CaptureReader", "CaptureStats", "read_captures"]

_WHERE = {
    "CaptureError": "netspectra.capture.errors",
    "CaptureReader": "netspectra.capture.reader",
    "read_captures": "netspectra.capture.reader",
    "CaptureStats": "netspectra.capture.stats",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
