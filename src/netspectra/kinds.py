"""Kinds: the named, pluggable parts of NetSpectra (aggregators, sketches, writers, sources).

A *kind* is one object that declares everything the rest of the house needs to know about it — its
parameters model, defaults, outputs, metrics — and builds its implementation on demand. Every family
of kinds has one :class:`KindRegistry`: the built-ins are one line each (``name -> "module:attr"``), and
third-party packages add kinds through an entry-point group::

    # the plugin's pyproject.toml
    [project.entry-points."netspectra.aggregators"]
    flowlets = "netspectra_flowlets:KIND"

Contracts of a registry:

* **Nothing registers by being imported.** Built-ins are listed in the registry, plugins are read from
  the installed distributions' metadata each time names are asked for (milliseconds; a plugin
  installed into a running interpreter is seen).
* **Names without imports.** :meth:`KindRegistry.names` reads metadata only, so validating a name
  costs no import; :meth:`KindRegistry.get` imports the one module that declares the kind, and kind
  modules import their heavy implementation (numba kernels, pyarrow, chdb) only when they build it.
* **No silent winner.** A plugin may not take a built-in's name and two plugins may not take the
  same name: :meth:`KindRegistry.get` refuses both (which kind a name means must not depend on what
  else happens to be installed).
* Every problem is a :class:`KindError` (a ``ValueError``) whose message names the kind and the
  remedy; callers prefix the configuration key.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

T = TypeVar("T")


class KindError(ValueError):
    """A kind name that cannot be resolved: unknown, ambiguous, or a plugin that fails to load."""


#: Longest echo of one input value in a message (:func:`shown`).
SHOWN_CHARS = 80


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """How input is echoed in a message: its ``repr`` (control characters, NUL and lone surrogates
    escaped), at most ``limit`` characters, then ``…`` and the full length."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = (
        f"{len(value):,} characters" if isinstance(value, str | bytes) else f"{len(text):,} characters shown"
    )
    return f"{text[:limit]}… ({size})"


def did_you_mean(value: object, valid: Iterable[str], *, case_sensitive: bool = True) -> str:
    """`` (did you mean 'X'?)`` for a close match of ``value`` in ``valid``, else "".

    ``case_sensitive`` says how the caller matches names. True (the default): a name that differs from
    one of ``valid`` in case only is pointed at it as such (``names are case-sensitive: did you mean
    'SrcIP'?``), and closeness counts case. False, for a caller that takes any case (the console's dims
    and filter fields): names are compared in lower case, so ``dstprt`` is close to ``DstPort``, and the
    hint names the spelling of ``valid`` (the canonical one)."""
    if not isinstance(value, str):
        return ""
    if not case_sensitive:
        canonical: dict[str, str] = {}
        for v in valid:
            canonical.setdefault(v.lower(), v)
        close = difflib.get_close_matches(value.lower(), list(canonical), n=1, cutoff=0.75)
        return f" (did you mean {canonical[close[0]]!r}?)" if close else ""
    valid = list(valid)
    for v in valid:
        if v.lower() == value.lower() and v != value:
            return f" (names are case-sensitive: did you mean {v!r}?)"
    close = difflib.get_close_matches(value, valid, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"{ep.value}{where}"


def load_object(target: str) -> Any:
    """The object named by ``"package.module:attr"`` (imports the module)."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


_SCAN_LOCK = threading.Lock()
_SCANNED: tuple[tuple[str, ...], dict[str, list[EntryPoint]]] | None = None


def _entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` from one scan of the installed distributions per ``sys.path``.

    ``importlib.metadata.entry_points(group=...)`` reads every distribution's metadata on each call
    (about 17 ms with 160 distributions); config validation asks the registries dozens of times, which
    cost a command over a second. Distributions do not change under a running process, but a new
    ``sys.path`` entry (a plugin directory added at run time, as the tests do) does start a new scan. In
    the command line's process a group that no distribution declared at an earlier start, with the same
    distributions installed, is answered without reading any metadata (:mod:`netspectra.declared_groups`)."""
    global _SCANNED
    key = tuple(sys.path)
    with _SCAN_LOCK:
        if _SCANNED is None or _SCANNED[0] != key:
            from netspectra import process

            remembering = process.OWN_PROCESS  # the command line: groups none declares remembered
            if remembering:
                from netspectra import declared_groups

                declared = declared_groups.remembered(key)
                if declared is not None and group not in declared:
                    return []
            # imported here: importlib.metadata costs ~10 ms of a command's start-up (email, zipfile,
            # socket...), and a command whose groups are remembered never scans
            from importlib.metadata import distributions

            groups: dict[str, list[EntryPoint]] = {}
            for dist in distributions():
                for ep in dist.entry_points:
                    groups.setdefault(ep.group, []).append(ep)
            _SCANNED = (key, groups)
            if remembering:
                declared_groups.remember(key, groups)
        return list(_SCANNED[1].get(group, ()))


class KindRegistry(Generic[T]):
    """The kinds of one family: ``builtins`` (name -> ``"module:attr"``) plus the entry-point ``group``.

    ``what`` names the family in messages (``"aggregator type"``, ``"writer kind"``). ``check``, if
    given, validates a loaded object and returns it (possibly adapted, e.g. a legacy factory wrapped
    into a kind object); it raises :class:`KindError` for an object of the wrong shape.
    """

    def __init__(
        self,
        what: str,
        group: str,
        builtins: Mapping[str, str],
        *,
        check: Callable[[str, Any], T] | None = None,
        local: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.what = what
        self.group = group
        self.builtins = dict(builtins)
        self._check = check
        self._local = local
        self._loaded: dict[tuple[str, str], T] = {}

    def __repr__(self) -> str:
        return f"KindRegistry({self.what!r}, {self.group!r}, builtins={sorted(self.builtins)})"

    def _plugins(self) -> dict[str, list[EntryPoint]]:
        found: dict[str, list[EntryPoint]] = {}
        for ep in _entry_points(self.group):
            found.setdefault(ep.name, [])
            # the same distribution can be visible twice on sys.path (e.g. an editable and a site copy)
            if all(ep.value != other.value for other in found[ep.name]):
                found[ep.name].append(ep)
        return found

    def _locals(self) -> Mapping[str, Any]:
        return self._local() if self._local is not None else {}

    def names(self) -> tuple[str, ...]:
        """Every known name: the built-ins in registry order, then plugins' and in-process names sorted
        (no import)."""
        others = sorted((set(self._plugins()) | set(self._locals())) - set(self.builtins))
        return (*self.builtins, *others)

    def available(self) -> dict[str, str]:
        """Every known name -> where it comes from (``built-in`` or the plugin's entry point)."""
        out = {name: "built-in" for name in self.builtins}
        for name, eps in sorted(self._plugins().items()):
            if name not in out:
                out[name] = ", ".join(_origin(ep) for ep in eps)
        for name, obj in sorted(self._locals().items()):
            out.setdefault(name, f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}")
        return out

    def check_name(self, name: str) -> str:
        """``name`` if it is a known name (built-in or plugin, read from metadata); else :class:`KindError`
        listing the known names with a did-you-mean hint."""
        valid = self.names()
        if name not in valid:
            raise KindError(
                f"{name!r} is not a valid {self.what}{did_you_mean(name, valid)}; valid {self.what}s are "
                f"{', '.join(valid)} (plugins add more through the {self.group!r} entry-point group)"
            )
        return name

    def get(self, name: str) -> T:
        """The kind object of ``name``, importing its module on first use (see the module docstring for
        the errors)."""
        plugins = self._plugins()
        eps = plugins.get(name, [])
        if name in self.builtins:
            if eps:
                raise KindError(
                    f"{name!r} is a built-in {self.what} but the plugin(s) "
                    f"{'; '.join(_origin(ep) for ep in eps)} also register it in the {self.group!r} "
                    "entry-point group; uninstall or rename the plugin"
                )
            target = self.builtins[name]
            cache_key = (name, target)
            if cache_key not in self._loaded:
                self._loaded[cache_key] = self._validated(name, load_object(target), "built-in")
            return self._loaded[cache_key]
        if not eps:
            local = self._locals().get(name)
            if local is not None:  # defined in this process (e.g. a Writer subclass with kind=...)
                return self._validated(name, local, "defined in-process")
            self.check_name(name)  # raises with the list of known names
        if len(eps) > 1:
            raise KindError(
                f"{self.what} {name!r} is registered by several plugins "
                f"({'; '.join(_origin(ep) for ep in eps)}); uninstall all but one"
            )
        ep = eps[0]
        cache_key = (name, ep.value)
        if cache_key in self._loaded:
            return self._loaded[cache_key]
        try:
            obj = ep.load()
        except Exception as exc:  # an import error in a plugin is a start-up error, reported with its key
            raise KindError(
                f"the plugin for {self.what} {name!r} ({_origin(ep)}) failed to load: {exc!r}"
            ) from exc
        kind = self._validated(name, obj, _origin(ep))
        self._loaded[cache_key] = kind
        return kind

    def _validated(self, name: str, obj: Any, origin: str) -> T:
        if self._check is None:
            return obj
        try:
            return self._check(name, obj)
        except KindError as exc:
            raise KindError(f"the {self.what} {name!r} ({origin}): {exc}") from None


# --------------------------------------------------------------------------------------------------
# The registries: one line per built-in kind
# --------------------------------------------------------------------------------------------------


def _aggregator(name: str, obj: Any) -> Any:
    from netspectra.engine.kind import as_aggregator_kind

    return as_aggregator_kind(name, obj)


def _sketch(name: str, obj: Any) -> Any:
    from netspectra.sketches.kind import as_sketch_kind

    return as_sketch_kind(name, obj)


def _writer(name: str, obj: Any) -> Any:
    from netspectra.storage.kinds import as_writer_kind

    return as_writer_kind(name, obj)


def _local_writers() -> Mapping[str, Any]:
    import sys

    base = sys.modules.get("netspectra.storage.base")  # only classes defined since it was imported
    return base.registered_writer_classes() if base is not None else {}


#: Aggregator types (``aggregator.types``): what the engine runs. Objects: ``AggregatorKind``.
AGGREGATORS: KindRegistry[Any] = KindRegistry(
    "aggregator type",
    "netspectra.aggregators",
    {
        "exact": "netspectra.tasks.exact_kind:KIND",
        "sketch": "netspectra.sketches.sketch_kind:KIND",
        "flows": "netspectra.flows.kind:KIND",
        "rollup": "netspectra.rollup.kind:KIND",
        "exporters": "netspectra.collect.exporters_kind:KIND",
    },
    check=_aggregator,
)

#: Sketch kinds (``skt_type`` of a sketch task). Objects: ``SketchKind``.
SKETCHES: KindRegistry[Any] = KindRegistry(
    "sketch kind",
    "netspectra.sketches",
    {
        "countmin": "netspectra.sketches.countmin_kind:KIND",
        "superspread": "netspectra.sketches.superspread_kind:KIND",
    },
    check=_sketch,
)

#: Writer kinds (``type`` of a writer entry). Objects: ``WriterKind``.
WRITERS: KindRegistry[Any] = KindRegistry(
    "writer kind",
    "netspectra.writers",
    {
        "clickhouse": "netspectra.storage.kinds:CLICKHOUSE",
        "parquet": "netspectra.storage.kinds:PARQUET",
        "gob": "netspectra.storage.kinds:GOB",
        "text": "netspectra.storage.kinds:TEXT",
    },
    check=_writer,
    local=_local_writers,
)
