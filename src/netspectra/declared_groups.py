"""The entry-point groups the installed distributions declare, remembered between the command line's
starts (issue 19).

The kind registries, numba's extension loader and pydantic's plugin loader each need to know whether any
installed distribution declares an entry point of their group (``netspectra.aggregators``,
``numba_extensions``, ``pydantic``, ...); finding out reads every distribution's metadata (~4.5 ms with 160
distributions, once per process: :func:`netspectra.kinds._entry_points`). Usually none does. The command
line keeps the names of the groups that are declared, keyed by what they are read from, and a group not
among them is answered "none" without reading any metadata:

* **Keyed by the discovery's inputs.** :func:`fingerprint` covers what
  :func:`importlib.metadata.distributions` reads: every ``sys.path`` entry (the current directory for
  ``""``), and in each the name of every ``*.dist-info`` / ``*.egg-info`` (a distribution installed or
  removed adds or removes one) with the size, modification and change time and inode of its
  ``entry_points.txt`` (one rewritten in place, as an editable install does). Not the directories' own
  modification times: any file made there changes them (``python -m netspectra`` run from a busy
  directory, ``/tmp``, read the metadata at every start).
  It is computed at every start (~1 ms of ``stat`` calls). Where discovery reads something else — a
  ``sys.path`` entry that is an archive or an ``.egg``, a finder on ``sys.meta_path`` with distributions
  of its own — nothing is remembered.
* **Only an absence is taken from it.** A group the entry names as declared is read from the metadata as
  before (its entry points, their distributions and versions); only "no distribution declares this
  group" is answered from the entry.
* **Only the command line.** :func:`netspectra.kinds._entry_points` asks only in the ``netspectra``
  command's own process (:data:`netspectra.process.OWN_PROCESS`).
* **Never fails.** An entry that cannot be read or written is ignored (the metadata are read as without
  it). Entries live beside the configuration caches (``$NETSPECTRA_CONFIG_CACHE``, ``off``: none), named
  ``entry-points-<hash of sys.path and the current directory>.json``; the newest :data:`KEEP` are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

from netspectra.user_cache import CONFIG_CACHE_ENV, config_cache_dir, open_private, prune, write_private

log = logging.getLogger(__name__)

#: Bump when the entries' format or what the fingerprint covers changes.
FORMAT = 3
#: Entries kept (the newest by use).
KEEP = 8
#: The environment variable naming the directory (the configuration caches'; ``off``: none).
ENV = CONFIG_CACHE_ENV
_PREFIX = "entry-points-"


def _directory() -> Path | None:
    return config_cache_dir()


def _stat(path: str) -> tuple[int, int, int, int] | None:
    """Size, modification and change time, inode: a file rewritten in place with its size and modification
    time put back (``cp -p``, two writes within one tick of a coarse clock) still has a new change time."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def fingerprint(path_entries: Iterable[str]) -> str | None:
    """A hash of what the installed distributions' entry points are read from along ``path_entries``
    (``sys.path``), see the module docstring; ``None`` where discovery reads more than it covers."""
    from importlib.machinery import PathFinder

    if any(f is not PathFinder and hasattr(f, "find_distributions") for f in sys.meta_path):
        return None
    parts: list[object] = [FORMAT, sys.version]
    for entry in path_entries:
        root = entry or os.getcwd()
        try:
            st = os.stat(root)
        except OSError:
            parts.append((entry, None))  # not there (yet): its appearance changes the fingerprint
            continue
        if not stat.S_ISDIR(st.st_mode) or root.lower().endswith(".egg"):
            return None
        infos = []
        try:
            with os.scandir(root) as it:
                for e in it:
                    if e.name.lower().endswith((".dist-info", ".egg-info")):
                        is_dir = e.is_dir()
                        target = os.path.join(e.path, "entry_points.txt") if is_dir else e.path
                        infos.append((e.name, is_dir, _stat(target)))
        except OSError:
            return None
        infos.sort()
        parts.append((entry, root, infos))
    return hashlib.blake2b(repr(parts).encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def _entry_path(directory: Path, path_entries: tuple[str, ...]) -> Path:
    h = hashlib.blake2b(repr((path_entries, os.getcwd())).encode("utf-8", "surrogatepass"), digest_size=16)
    return directory / f"{_PREFIX}{h.hexdigest()}.json"


#: What :func:`remembered` worked out for a ``sys.path`` in this process: (key, fingerprint, answer).
_FOUND: list[tuple[tuple[str, ...], str | None, frozenset[str] | None]] = []


def _fingerprint_of(path_entries: tuple[str, ...]) -> str | None:
    if _FOUND and _FOUND[0][0] == path_entries:
        return _FOUND[0][1]
    return fingerprint(path_entries)


def remembered(path_entries: tuple[str, ...]) -> frozenset[str] | None:
    """The entry-point groups declared along ``path_entries`` as remembered by an earlier start whose
    fingerprint is this one's; ``None`` when there is no such entry (worked out once per ``sys.path`` in a
    process, before the metadata are read: a distribution installed meanwhile makes the entry stored
    after the read stale)."""
    if _FOUND and _FOUND[0][0] == path_entries:
        return _FOUND[0][2]
    answer: frozenset[str] | None = None
    fp: str | None = None
    directory = _directory()
    if directory is not None:
        fp = fingerprint(path_entries)
        try:
            path = _entry_path(directory, path_entries)

            with open_private(path) as f:
                entry = json.loads(f.read().decode("utf-8"))
            if (
                fp is not None
                and isinstance(entry, dict)
                and entry.get("format") == FORMAT
                and entry.get("fingerprint") == fp
                and isinstance(entry.get("groups"), list)
                and all(isinstance(g, str) for g in entry["groups"])
            ):
                answer = frozenset(entry["groups"])
                with contextlib.suppress(OSError):  # the newest by use survive the pruning
                    os.utime(path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.debug("entry-point groups: entry unusable (%s); reading the metadata", exc)
    _FOUND[:] = [(path_entries, fp, answer)]
    return answer


def remember(path_entries: tuple[str, ...], groups: Iterable[str]) -> None:
    """Keep ``groups`` (every entry-point group declared along ``path_entries``, just read from the
    metadata) for later starts, under the fingerprint :func:`remembered` made before the read; nothing
    where there is none or the entry cannot be written."""
    declared = frozenset(groups)
    directory = _directory()
    fp = _fingerprint_of(path_entries) if directory is not None else None
    if directory is not None and fp is not None:
        try:
            blob = json.dumps({"format": FORMAT, "fingerprint": fp, "groups": sorted(declared)})
            write_private(directory, _entry_path(directory, path_entries), blob.encode())
            prune(directory, f"{_PREFIX}*.json", KEEP)
        except (OSError, ValueError) as exc:
            log.debug("entry-point groups: cannot store them (%s)", exc)
    _FOUND[:] = [(path_entries, fp, declared)]
