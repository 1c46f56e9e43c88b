"""Where NetSpectra keeps what it can rebuild (compiled enrichment tables, parsed configurations)."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir(setting: str, part: str) -> Path | None:
    """The cache directory a setting names: ``off`` (any case) → ``None`` (no cache); a path → that path
    (``~`` expanded); empty → ``$XDG_CACHE_HOME/netspectra/<part>`` (``~/.cache/netspectra/<part>``
    without ``XDG_CACHE_HOME``)."""
    text = setting.strip()
    if text.lower() == "off":
        return None
    if text:
        return Path(text).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netspectra" / part
