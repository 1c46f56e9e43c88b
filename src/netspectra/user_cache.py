"""Where NetSpectra keeps what it can rebuild (compiled enrichment tables, parsed and validated
configurations, the entry-point groups the installed distributions declare), and how entries are written
there."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO


def user_cache_dir(setting: str, part: str) -> Path | None:
    """The cache directory a setting names: ``off`` (any case) → ``None`` (no cache); a path → that path
    (``~`` expanded); empty → ``$XDG_CACHE_HOME/netspectra/<part>`` (``~/.cache/netspectra/<part>``
    without ``XDG_CACHE_HOME``). ``None`` too where the path needs a home directory and there is none
    (no ``$HOME`` and a user id without a passwd entry, as in many containers): a cache never fails the
    command."""
    text = setting.strip()
    if text.lower() == "off":
        return None
    try:
        if text:
            return Path(text).expanduser()
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    except RuntimeError:  # pathlib: "Could not determine home directory."
        return None
    return Path(base) / "netspectra" / part


#: The environment variable naming the configuration caches' directory (the parsed and validated
#: configurations, the declared entry-point groups); ``off``: none of them.
CONFIG_CACHE_ENV = "NETSPECTRA_CONFIG_CACHE"


def config_cache_dir() -> Path | None:
    """The configuration caches' directory (``$NETSPECTRA_CONFIG_CACHE``, else the user's cache); None
    when off or when there is none."""
    return user_cache_dir(os.environ.get(CONFIG_CACHE_ENV, ""), "config")


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


def open_private(path: Path) -> BinaryIO:
    """``path`` opened for reading in binary mode where it is an entry this user wrote: a regular file
    (not a symbolic link: ``O_NOFOLLOW``; not a FIFO or a device, which are never waited on) owned by this
    user and writable by nobody else; :class:`OSError` otherwise (:class:`FileNotFoundError` when there is
    none). An entry another user could have written (a cache directory shared through
    ``$NETSPECTRA_CONFIG_CACHE``, ``/tmp``) is never read: what it holds would become this user's
    configuration."""
    # O_NONBLOCK: a FIFO in an entry's place would block the open until someone writes to it (the command
    # hung); a regular file's reads ignore the flag
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file")
        if hasattr(os, "geteuid"):  # POSIX owners and modes (Windows reports every writable file 0o666)
            if st.st_uid != os.geteuid():
                raise PermissionError(f"{path}: owned by user {st.st_uid}, not this one")
            if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise PermissionError(f"{path}: writable by other users")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
