"""A disk cache of validated configurations, so that the command line does not validate the same
configuration again at every start.

Validating a configuration costs more than its text suggests: pydantic builds every model's validator on
first use (~40 ms for the configuration's models and the kinds' task and parameter models), then
validation, the cross-section checks and the unknown-key walk run (~15 ms for the shipped configuration).
A command that starts with a configuration it validated before (``netspectra analyze`` of a small capture,
every time) gets the same :class:`~netspectra.config.models.Config` from this cache, without parsing,
without validating and without building any validator (the models are defined with pydantic's
``defer_build``: a model's validator is built when it first validates, which a cached start never does).

* **Only the command line.** :func:`active` is true only in the ``netspectra`` command's own process
  (:data:`netspectra.process.OWN_PROCESS`): a library user or a test runner calling the loader validates
  every time, whatever it changed in between.
* **Keyed by everything the result depends on.** The key is a hash of the text after ``${VAR}`` expansion,
  the YAML loader's rules (:func:`netspectra.config.loader._yaml_rules`), the NetSpectra package's
  directory and version (another installation or checkout sharing the directory has keys of its own),
  the versions of Python, pydantic and pydantic-core, the machine's physical memory (the default memory
  limit the tasks are checked against) and :data:`FORMAT`. An entry records its key (one copied, renamed
  or linked under another key's name is refused) and the source files of NetSpectra's modules that were
  loaded when it was validated, by name, size, modification and change time and inode: a NetSpectra
  upgraded or edited in place (even with its size and modification time put back) makes its entries
  stale (checked at every read, ~70 ``stat`` calls). The files validation looked at by name (a GeoIP
  database whose absence or format is warned about: ``note_outside_read(path)``) are recorded the same
  way, or as absent, in the state they had before validation looked at them (one that changed while
  validation ran, or less than :data:`RACY_NS` before, is not cached): the entry is stale once one of
  them is another, changed, appeared or gone (a path relative to the working directory is looked at
  where the command runs, as validation would).
* **What is never cached.** A text in which a variable has a value (values are often secrets), or that
  holds a secret literally (:func:`netspectra.config.parsed_cache.holds_secret`) — the rules of the
  parsed-text cache; a configuration whose validation looked outside its text at something other than a
  named file (a certificate under ``~``: :func:`netspectra.config.base.note_outside_read` without a path),
  whose result can change while its text does not; every configuration while a kind other than the
  built-ins is known (a plugin through its entry points, a writer class defined in-process: their code
  is not NetSpectra's to fingerprint); a configuration that does not validate (it is validated again,
  and fails with the same errors, every time).
* **Never fails a load.** An entry that cannot be read, is stale or damaged, or cannot be written is
  ignored (logged at debug level): the text is validated as without a cache and the entry rewritten.
  Entries are written atomically, readable by their owner only; the newest
  :data:`~netspectra.config.parsed_cache.KEEP` are kept.
* **No code in an entry.** An entry is a pickle read by an unpickler that refuses every global but the
  configuration's model classes (classes of NetSpectra's modules that are pydantic models or enums), the
  two restorers of this module (a kind's task-group class and a kind object, by name) and a few value
  types of the standard library (:data:`_STDLIB`); and it imports no module an entry names but the
  built-in kinds' (:func:`_may_import`: importing a module runs it), reading a class from its module's
  own namespace (a package's lazy attributes would import more).

The directory is the parsed-text cache's (``$NETSPECTRA_CONFIG_CACHE``, ``off``: neither cache), entries
``validated-<key>.pickle``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import pickle
import sys
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspectra.config import parsed_cache
from netspectra.user_cache import open_private, prune, write_private

log = logging.getLogger(__name__)

#: Bump when the entries' format or what a key covers changes.
FORMAT = 3
_PREFIX = "validated-"
_SUFFIX = ".pickle"
_PACKAGE = "netspectra"
#: The standard library's globals an entry may name: the value types a configuration can hold.
_STDLIB = {
    "datetime": {"timedelta", "datetime", "date", "time", "timezone"},
    "fractions": {"Fraction"},
    "decimal": {"Decimal"},
    "pathlib": {"Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "ipaddress": {"IPv4Address", "IPv6Address", "IPv4Network", "IPv6Network"},
    "collections": {"OrderedDict"},
    "builtins": {"frozenset", "set", "complex", "bytearray"},
    "copyreg": {"_reconstructor"},
}


def active() -> bool:
    """Whether configurations are cached in this process: the command line's own process, the cache
    directory not ``off``."""
    from netspectra import process

    return process.OWN_PROCESS and parsed_cache.cache_dir() is not None


def _registries() -> tuple[Any, ...]:
    from netspectra.kinds import AGGREGATORS, SKETCHES, WRITERS

    return (AGGREGATORS, SKETCHES, WRITERS)


def _only_builtin_kinds() -> bool:
    """Whether every registry knows its built-in kinds and nothing else (no plugin, no in-process kind)."""
    return all(r.names() == tuple(r.builtins) for r in _registries())


def _package() -> str:
    """Which NetSpectra validates: its package directory (two installations sharing the cache directory, or
    two checkouts, never read each other's entries: an entry's source files are checked only for the
    NetSpectra that wrote it). Not its version: an upgrade in place rewrites the source files an entry
    records (stale at the next read), and reading the version imports :mod:`importlib.metadata` (~10-20
    ms of every start)."""
    import netspectra

    return os.path.dirname(os.path.abspath(netspectra.__file__ or ""))


def _key(text: str, rules: str) -> str:
    import pydantic
    import pydantic_core

    from netspectra.config.base import physical_memory_bytes

    h = hashlib.blake2b(digest_size=20)
    parts = (
        FORMAT,
        rules,
        _package(),
        sys.version,
        pydantic.VERSION,
        pydantic_core.__version__,
        physical_memory_bytes(),
    )
    h.update(repr(parts).encode())
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _source_files() -> list[tuple[str, int, int, int, int]] | None:
    """``(path, size, mtime_ns, ctime_ns, inode)`` of the source file of every NetSpectra module loaded now;
    ``None`` when one of them cannot be looked at (a package inside an archive: nothing is cached)."""
    out = []
    for name, module in list(sys.modules.items()):
        if name != _PACKAGE and not name.startswith(_PACKAGE + "."):
            continue
        path = getattr(module, "__file__", None)
        if not path:  # a namespace package: no file of its own
            continue
        try:
            st = os.stat(path)
        except OSError:
            return None
        out.append((path, *_identity(st)))
    out.sort()
    return out or None


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    """What says a file is the one recorded: its size, modification time, change time and inode. The
    modification time alone misses a file edited in place with its size and time put back (``touch -r``,
    ``cp -p``, two writes within one tick of the file system's clock), which the change time sees (no
    program sets it), and a file replaced by another of the same size and time (a new inode)."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _file_states(seen: list[tuple[str, Any]]) -> list[tuple[str, list[int] | None]] | None:
    """``(path, identity)`` of each distinct path of ``seen`` (``(path, state)`` as each was noted, before
    validation looked at it: :func:`_file_state`), the state validation saw or an older one; ``None``
    when the entry cannot say what validation saw: a path that cannot be looked at (e.g. a directory on
    the way refuses), one noted in two states (it changed while validation ran), or one in another state
    now (it changed since: the entry would be stale at once, and which state each look saw is unknown)."""
    states: dict[str, Any] = {}
    for path, state in seen:
        if state is _UNKNOWN or states.setdefault(path, state) != state:
            return None
    for path, state in states.items():
        now = _file_state(path)
        if now is _UNKNOWN or now != state:
            return None
        if state is not None and time.time_ns() - state[2] < RACY_NS:  # changed just now: see RACY_NS
            return None
    return list(states.items())


#: A watched file whose change time is less than this old when its entry would be written keeps the
#: configuration out of the cache (validated again at the next start): it may be written again within
#: the same tick of the file system's clock (a few ms; a whole second or two on file systems that stamp
#: seconds) with the same size, after validation read it, and its identity would not show it (git's
#: "racily clean" index entries). A file changed in the future (another machine's clock) counts too.
RACY_NS = 2_000_000_000


#: :func:`_file_state` of a path that cannot be looked at.
_UNKNOWN: Any = object()


def _file_state(path: str) -> Any:
    """The identity of the file at ``path`` (a list: as JSON gives it back), ``None`` when nothing is
    there, :data:`_UNKNOWN` when that cannot be told; never raises."""
    try:
        return list(_identity(os.stat(path)))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except Exception:  # no permission on the way, a NUL in the path, not a path, ...
        return _UNKNOWN


def _files_unchanged(files: Any) -> bool:
    """Whether each recorded file is in the state recorded (:func:`_file_states`)."""
    if not isinstance(files, list):
        return False
    for item in files:
        try:
            path, state = item
            now = _file_state(path)
        except (TypeError, ValueError):
            return False
        if now is _UNKNOWN or now != state:
            return False
    return True


def _fresh(sources: Any) -> bool:
    """Whether every recorded source file is still there, the same file unchanged (:func:`_identity`)."""
    if not isinstance(sources, list) or not sources:
        return False
    for item in sources:
        try:
            path, *identity = item
            st = os.stat(path)
        except (OSError, TypeError, ValueError):
            return False
        if tuple(identity) != _identity(st):
            return False
    return True


# --------------------------------------------------------------------------------------------------
# Pickling: kinds' group classes and kind objects by name; nothing but known classes on the way back
# --------------------------------------------------------------------------------------------------


def task_group_class(task_model: type) -> type:
    """The group class of a kind's ``task_model`` (:func:`netspectra.config.aggregator.group_model`):
    made at run time, so an entry names it by its task model."""
    from netspectra.config.aggregator import group_model

    return group_model(task_model)


def kind_object(group: str, name: str) -> Any:
    """The kind object ``name`` of the registry of entry-point group ``group`` (e.g. a sketch task's
    sketch kind), as the registry gives it: one object per kind in a process."""
    for registry in _registries():
        if registry.group == group:
            return registry.get(name)
    raise pickle.UnpicklingError(f"no kind registry {group!r}")


class _Pickler(pickle.Pickler):
    def __init__(self, file: Any) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        from netspectra.config.aggregator import GroupConfig

        self._group_base = GroupConfig
        self._kinds = {
            id(obj): (registry.group, name)
            for registry in _registries()
            for (name, _), obj in registry._loaded.items()
        }

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type):
            if issubclass(obj, self._group_base) and obj is not self._group_base:
                (task_model, _) = typing.get_args(obj.model_fields["tasks"].annotation)
                return task_group_class, (task_model,)
            return NotImplemented
        kind = self._kinds.get(id(obj))
        if kind is not None:
            return kind_object, kind
        return NotImplemented


def _may_import(module: str) -> bool:
    """Whether an entry may name a class of NetSpectra's ``module``: one imported already, a built-in kind's
    module, or one a built-in kind's module of the same subpackage imports (a kind's nested models).
    Nothing else is imported for an entry: importing a module runs it (``netspectra.__main__`` runs the
    whole command), and an entry is only data."""
    if module in sys.modules:
        return True
    kinds = [target.partition(":")[0] for registry in _registries() for target in registry.builtins.values()]
    if module in kinds:
        return True
    import importlib

    package = module.split(".")[:2]
    for kind_module in kinds:
        if kind_module.split(".")[:2] == package:
            importlib.import_module(kind_module)
    return module in sys.modules


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name in ("task_group_class", "kind_object"):
            return globals()[name]
        if name in _STDLIB.get(module, ()):
            return super().find_class(module, name)
        if module.startswith(_PACKAGE + ".") and "." not in name and _may_import(module):
            import enum
            import importlib

            from pydantic import BaseModel

            # the module's own namespace, not getattr: a package's lazy attributes (its __getattr__)
            # import modules of their own
            obj = vars(importlib.import_module(module)).get(name)
            if isinstance(obj, type) and issubclass(obj, BaseModel | enum.Enum):
                return obj
        raise pickle.UnpicklingError(f"an entry may not name {module}.{name}")


# --------------------------------------------------------------------------------------------------
# Reading and writing entries: a JSON header line (format, key, source files), then the pickle
# --------------------------------------------------------------------------------------------------


def _read(path: Path, key: str) -> Any:
    """The configuration of the entry at ``path`` stored for ``key``; raises when there is none or it cannot
    be used."""
    with open_private(path) as f:
        head = json.loads(f.readline())
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            raise ValueError("not an entry of this format")
        if head.get("key") != key:  # an entry copied, renamed or linked under another key's name
            raise ValueError("stored for another key")
        if not _fresh(head.get("sources")):
            raise ValueError("NetSpectra's source changed since it was stored")
        if not _files_unchanged(head.get("files")):
            raise ValueError("a file its validation looked at changed since it was stored")
        cfg = _Unpickler(f).load()
    from netspectra.config.models import Config

    if type(cfg) is not Config:
        raise ValueError(f"holds a {type(cfg).__name__}, not a Config")
    with contextlib.suppress(OSError):  # the newest by use survive the pruning
        os.utime(path)
    return cfg


def _write(directory: Path, path: Path, key: str, cfg: Any, watched: list[tuple[str, Any]]) -> None:
    sources = _source_files()
    if sources is None:
        log.debug("validated config cache: NetSpectra's source files cannot be looked at; not cached")
        return
    files = _file_states(watched)
    if files is None:
        log.debug("validated config cache: a file its validation looked at cannot be looked at; not cached")
        return
    body = io.BytesIO()
    head = {"format": FORMAT, "key": key, "sources": sources, "files": files}
    body.write(json.dumps(head).encode() + b"\n")
    _Pickler(body).dump(cfg)
    write_private(directory, path, body.getvalue())
    prune(directory, f"{_PREFIX}*{_SUFFIX}", parsed_cache.KEEP)


def validated(text: str, rules: str, source: str, validate: Callable[[], tuple[Any, Any]]) -> Any:
    """The :class:`~netspectra.config.models.Config` of ``text`` (expanded, no variable with a value;
    parsed with the loader's ``rules``): from an entry stored for the same key, else ``validate()``'s,
    stored when it may be. ``validate`` returns ``(config, parsed data)``; its exceptions (the
    configuration's errors) propagate unchanged, and nothing is stored for them. ``source`` becomes the
    configuration's :attr:`~netspectra.config.models.Config.source` either way."""
    directory = parsed_cache.cache_dir()
    if directory is None or not _only_builtin_kinds():
        return validate()[0]
    key = _key(text, rules)
    path = directory / f"{_PREFIX}{key}{_SUFFIX}"
    try:
        cfg = _read(path, key)
    except FileNotFoundError:
        pass
    except Exception as exc:  # damaged, stale or foreign: validate, then replace it
        log.debug("validated config cache: entry %s unusable (%s); validating", path, exc)
    else:
        cfg._source = source
        return cfg
    from netspectra.config.base import outside_reads, watching_files

    before = outside_reads()
    watched: list[tuple[str, Any]] = []  # each named file in the state it had before validation looked
    with watching_files(lambda p: watched.append((p, _file_state(p)))):
        cfg, data = validate()
    if outside_reads() != before:
        log.debug("validated config cache: validation looked outside the text; not cached")
    elif parsed_cache.holds_secret(data):
        log.debug("validated config cache: the text holds a secret; not cached")
    else:
        try:
            _write(directory, path, key, cfg, watched)
        except Exception as exc:  # never fails a load
            log.debug("validated config cache: cannot store %s (%s)", path, exc)
    return cfg
