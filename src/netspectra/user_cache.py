"""Where NetSpectra keeps what it can rebuild (compiled enrichment tables, parsed and validated
configurations, the entry-point groups the installed distributions declare), and how entries are written
there."""

from __future__ import annotations

import contextlib
import os
import tempfile
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


def write_private(directory: Path, path: Path, blob: bytes) -> None:
    """Write ``blob`` to ``path`` in ``directory`` (made if missing) atomically, readable by its owner
    only from the start (a temporary file of :func:`tempfile.mkstemp`, mode 0600, renamed into place)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def prune(directory: Path, pattern: str, keep: int) -> None:
    """Remove the entries of ``directory`` matching ``pattern`` but the newest ``keep`` by use (their
    modification time: readers touch what they use)."""
    entries = []
    for p in directory.glob(pattern):
        with contextlib.suppress(OSError):
            entries.append((p.stat().st_mtime_ns, p))
    entries.sort(reverse=True)
    for _, p in entries[keep:]:
        with contextlib.suppress(OSError):
            p.unlink()
