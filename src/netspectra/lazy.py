"""Lazy re-exports for package ``__init__`` modules.

A package that re-exports names of heavy submodules (numba kernels, pyarrow, chdb) would load them all
whenever any of its submodules is imported — including the light ones the configuration needs (kind
declarations). :func:`lazy_exports` gives a package a module ``__getattr__`` that imports a submodule
only when one of its names is first read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``where`` maps each exported name to its module."""

    def module_getattr(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return module_getattr


class _WithoutPandas:
    """A meta-path finder that answers "not installed" for pandas (see :func:`keep_pandas_unloaded`)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is kept unloaded in this process (start-up time)", name=name)


def keep_pandas_unloaded() -> None:
    """Make this process see pandas as absent, unless it is already loaded.

    pyarrow imports pandas (0.2-0.3 s) on its first ``pa.array`` when pandas is installed, only to ask
    whether the argument is a pandas object. NetSpectra's commands never use pandas, so ``analyze``
    (without ``--store``: chdb may use it) calls this first. Contract for the code that then runs: never
    rely on pandas-backed conversions (``to_pylist`` of nanosecond timestamps gives integers only via
    ``cast(pa.int64())``; it raises without pandas)."""
    import sys

    if "pandas" not in sys.modules and not any(isinstance(f, _WithoutPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _WithoutPandas())


class _NoBlasProbe:
    """A meta-path finder that answers "not installed" for scipy while numba imports it only to look at it
    (see :func:`keep_scipy_out_of_numba`); at any other moment it finds nothing and the normal finders
    answer."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        import sys

        if name == "scipy" or name.startswith("scipy."):
            if "numba" in sys.modules and "numba.core" not in sys.modules:
                # numba's ``__init__`` checking its dependencies' versions, before any of its modules
                raise ModuleNotFoundError(
                    f"{name} is not version-checked by numba in this process (start-up)"
                )
            arraymath = sys.modules.get("numba.np.arraymath")
            if arraymath is not None and not hasattr(arraymath, "_HAVE_BLAS"):
                raise ModuleNotFoundError(f"{name} is not probed by numba in this process (start-up time)")


def keep_scipy_out_of_numba() -> None:
    """Spare numba's start-up the imports of scipy where scipy is installed.

    Two moments import it. ``import numba`` imports ``scipy`` (~7 ms) only to refuse a SciPy older than
    1.0; and when numba first sets up its CPU target (the first kernel compiled), ``numba.np.arraymath``
    probes for a BLAS by importing ``scipy.linalg.cython_blas`` (0.3-0.7 s), only to choose between BLAS
    and a plain loop for ``np.vdot``-style inner products of floats, which no NetSpectra kernel calls.
    During those two imports scipy is seen as absent; scipy itself stays importable at any other time,
    and numba's ``np.linalg`` support still imports it when a kernel that uses it is compiled. Only the
    command-line process calls this (:func:`netspectra.cli.main.main`), before numba is imported: a
    library user's numba is left as it is."""
    import sys

    if "numba.np.arraymath" not in sys.modules and not any(
        isinstance(f, _NoBlasProbe) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _NoBlasProbe())


def _lazy_spec(name: str, path: Any) -> Any:
    """The spec the normal path finder gives for module ``name``, loaded lazily: the module is executed
    when one of its names is first read (:func:`lazy_loader`); ``None`` where there is no such spec."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec(name, path)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return None
    spec.loader = lazy_loader(spec.loader)
    return spec


def lazy_loader(loader: Any) -> Any:
    """``loader`` wrapped so that the module it loads is executed when one of its names is first read:
    :class:`importlib.util.LazyLoader`, safe for threads reading a first name at once (Python 3.12's is;
    3.11's let a second thread read the module half executed, or execute it twice)."""
    import sys
    from importlib.util import LazyLoader

    if sys.version_info >= (3, 12):
        return LazyLoader(loader)
    return _ThreadSafeLazyLoader(loader)


def _lazy_module_class() -> type:
    import types

    class _LazyModule(types.ModuleType):
        """A module not executed yet: the first name read executes it, under a lock (re-entrant: the
        module's own execution reads its names), then the module is an ordinary one."""

        def __getattribute__(self, attr: str) -> Any:
            spec = object.__getattribute__(self, "__spec__")
            state = spec.loader_state
            with state["lock"]:
                if object.__getattribute__(self, "__class__") is _LazyModule:
                    real = state["__class__"]
                    if state["loading"]:  # this thread, executing the module: its names so far
                        return real.__getattribute__(self, attr)
                    state["loading"] = True
                    namespace = real.__getattribute__(self, "__dict__")
                    before = state["__dict__"]
                    # what was set on the module since it was made (e.g. a submodule) survives execution
                    updated = {k: v for k, v in namespace.items() if k not in before or before[k] is not v}
                    spec.loader.exec_module(self)
                    namespace.update(updated)
                    self.__class__ = real
            return getattr(self, attr)

        def __delattr__(self, attr: str) -> None:
            self.__getattribute__("__class__")  # executed first
            delattr(self, attr)

    return _LazyModule


class _ThreadSafeLazyLoader:
    """:func:`lazy_loader` on Python 3.11."""

    _module_class: type | None = None

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        import threading

        cls = _ThreadSafeLazyLoader._module_class
        if cls is None:
            cls = _ThreadSafeLazyLoader._module_class = _lazy_module_class()
        module.__spec__.loader = self.loader
        module.__loader__ = self.loader
        module.__spec__.loader_state = {
            "__dict__": module.__dict__.copy(),
            "__class__": module.__class__,
            "lock": threading.RLock(),
            "loading": False,
        }
        module.__class__ = cls


#: Modules ``import numba`` imports that loading and running cached kernels never reads:
#: ``numba.experimental`` (jitclass and first-class function types: numba's CPU context imports them
#: when it compiles anything, a user's jitclass when it is defined) and ``html`` (the escaping of
#: control-flow graphs' labels): ~4 ms.
NUMBA_UNREAD = ("numba.experimental", "html")


class _LazyForNumba:
    """A meta-path finder that gives numba PyYAML and the modules of :data:`NUMBA_UNREAD` executed on
    first use (see :func:`keep_unread_modules_out_of_numba`); at any other moment it finds nothing and the
    normal finders answer."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        import os
        import sys

        if name == "yaml":
            config = sys.modules.get("numba.core.config")
            # numba.core.config executing its ``try: import yaml`` (the name it sets next not there yet),
            # and no numba configuration file (numba's ``.numba_config.yaml``, read at once) to parse
            if config is None or hasattr(config, "_HAVE_YAML") or os.path.isfile(".numba_config.yaml"):
                return None
            return _lazy_spec(name, path)
        if name in NUMBA_UNREAD:
            numba = sys.modules.get("numba")
            # numba's ``__init__`` executing (``numba.typed``, the last module it imports, not there yet)
            if numba is None or "typed" in vars(numba):
                return None
            return _lazy_spec(name, path)
        return None


def keep_unread_modules_out_of_numba() -> None:
    """Spare numba's import the import of PyYAML (~10 ms) where there is no numba configuration file, and
    of the modules of :data:`NUMBA_UNREAD` (~4 ms).

    ``numba.core.config`` imports PyYAML only to read ``./.numba_config.yaml`` when there is one; the
    command line's own configuration needs no PyYAML when its parsed data are cached
    (:mod:`netspectra.config.parsed_cache`). Without that file, numba gets PyYAML as a module executed on
    first use (:class:`importlib.util.LazyLoader`): the same module, loaded when something reads one of
    its names (numba, if the file appears before it reloads its configuration; the configuration's
    parser). The modules of :data:`NUMBA_UNREAD` alike. Two threads reading a first name at once are
    safe (:func:`lazy_loader`). Only the command-line process calls
    this (:func:`netspectra.cli.main.main`), before numba is imported; a library user's numba is left as
    it is."""
    import sys

    if "numba" not in sys.modules and not any(isinstance(f, _LazyForNumba) for f in sys.meta_path):
        sys.meta_path.insert(0, _LazyForNumba())


def _load_overload_without_refresh(self: Any, sig: Any, target_context: Any) -> Any:
    """numba's ``Cache.load_overload`` without its ``target_context.refresh()`` (see
    :func:`load_cached_kernels_lean`). The NRT is what a loaded kernel's machine code links against,
    so it is initialised as numba's refresh would have done (idempotent, under numba's compiler lock;
    its own functions' machine code from a file: :func:`netspectra.numba_lean.initialize_nrt`)."""
    from netspectra.numba_lean import initialize_nrt

    initialize_nrt(target_context)
    with self._guard_against_spurious_io_errors():
        loaded = self._load_overload(sig, target_context)
    if loaded is None:
        # a miss: numba compiles now, building a heap of IR objects that only the cyclic collector frees
        # (with analyze's start-up pause in force, a first run peaked 110 MB higher)
        from netspectra.process import resume_gc

        resume_gc()
    return loaded


#: The numba modules :func:`load_cached_kernels_lean` changes, each right after it is first imported.
_LEAN_PATCHES = (
    "numba.core.caching",
    "numba.core.typing.typeof",
    "numba.core.environment",
    "numba.core.codegen",
    "numba.core.dispatcher",
)


def _patched_spec(name: str, path: Any, patch: Callable[[str, Any], None]) -> Any:
    """The module spec the normal path finder gives for ``name``, whose loader calls ``patch(name,
    module)`` right after executing the module (``None`` where there is no such spec)."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec(name, path)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return None
    execute = spec.loader.exec_module

    def exec_module(module: Any) -> None:
        execute(module)
        patch(name, module)

    spec.loader.exec_module = exec_module  # type: ignore[method-assign]
    return spec


class _LeanCacheLoads:
    """A meta-path finder that patches the modules of :data:`_LEAN_PATCHES` right after each is first
    imported (see :func:`load_cached_kernels_lean`); it finds nothing itself, every import goes on as
    usual."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        return _patched_spec(name, path, _patch) if name in _LEAN_PATCHES else None


def _patch(name: str, module: Any) -> None:
    from netspectra import numba_lean

    if name == "numba.core.caching":
        _patch_cache_loads(module)
    elif name == "numba.core.typing.typeof":
        numba_lean.install_typeof_ndarray(module)
    elif name == "numba.core.codegen":
        numba_lean.install_unserialize_library(module)
        from netspectra import jit

        if jit._State.requested:  # the numba-free mode's export needs numba's object code
            from netspectra.nojit_export import keep_object_code

            keep_object_code(module)
    elif name == "numba.core.dispatcher":
        numba_lean.install_enable_caching(module)
    else:
        numba_lean.install_rebuild_env(module)


def _patch_cache_loads(caching: Any) -> None:
    cache = getattr(caching, "Cache", None)
    # only numba's own method is replaced: a numba whose cache class lacks the two helpers it calls (a
    # future release that reorganised it) keeps its own behaviour
    if cache is None or not all(
        hasattr(cache, a) for a in ("_load_overload", "_guard_against_spurious_io_errors")
    ):
        return
    if getattr(cache.load_overload, "__name__", "") == "load_overload":
        cache.load_overload = _load_overload_without_refresh


def load_cached_kernels_lean() -> None:
    """Load kernels from numba's on-disk cache without first setting up numba's whole compiler.

    Before it rebuilds a cached kernel, numba's ``Cache.load_overload`` calls ``target_context.refresh()``,
    which imports and registers every lowering numba has (numpy, random, polynomial, typed containers,
    unicode, cffi: ~0.25 s of a command's start-up) although a cached kernel is machine code that needs
    none of them: only the NRT's symbols, which this keeps. Compiling anything (a cache miss, a new
    signature) still sets the compiler up in full: numba's compiler refreshes both contexts itself.
    Five more savings of :mod:`netspectra.numba_lean` come with it: the NRT's own functions are loaded
    as machine code compiled on an earlier start instead of being compiled by LLVM again (~15 ms), the
    ``typeof`` of the first array argument no longer imports ``numpy.ma`` (~8 ms), a kernel's
    environments are rebuilt without importing numba's ``arrayobj`` and ``unicode`` modules (~18 ms),
    a kernel's library is loaded from its object code without parsing its linking bitcode (~20 ms for
    analyze's seven kernels), and a kernel's cache is made when the kernel is first used, not when it is
    defined (~4 ms for the sixty-odd kernels a command imports, most of them inlined helpers).
    Only the command-line process calls this (:func:`netspectra.cli.main.main`), before numba is
    imported or after; a library user's numba is left as it is."""
    import sys

    for name in _LEAN_PATCHES:
        module = sys.modules.get(name)
        if module is not None:
            _patch(name, module)
    if any(name not in sys.modules for name in _LEAN_PATCHES) and not any(
        isinstance(f, _LeanCacheLoads) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _LeanCacheLoads())


def keep_blas_single_threaded() -> None:
    """Load numpy's OpenBLAS with one thread, unless the user chose a count (``OPENBLAS_NUM_THREADS``).

    numpy's OpenBLAS starts a thread per core when numpy is imported, and those threads spin waiting for
    work: ~0.1 s of CPU in a command that never multiplies a matrix (no NetSpectra code calls BLAS),
    taken from the command's own threads on a small machine. Effective only before numpy is imported;
    only the command-line process calls this (:func:`netspectra.cli.main.main`)."""
    import os
    import sys

    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


# --------------------------------------------------------------------------------------------------
# One scan of the installed distributions' entry points
# --------------------------------------------------------------------------------------------------


def _none_declared(group: str, name: str | None = None) -> bool:
    """Whether no installed distribution declares an entry point of ``group`` (named ``name``), from the
    kind registries' one scan per ``sys.path`` (:func:`netspectra.kinds._entry_points`)."""
    from netspectra.kinds import _entry_points

    return not any(name is None or ep.name == name for ep in _entry_points(group))


def _spare_scan(name: str, module: Any) -> None:
    if name == "numba.core.entrypoints":
        # numba's init_all: with no ``numba_extensions`` ``init`` entry point it only sets this flag
        if getattr(module, "_already_initialized", True) is False and _none_declared(
            "numba_extensions", "init"
        ):
            module._already_initialized = True
    elif getattr(module, "_plugins", False) is None and _none_declared("pydantic"):
        # pydantic's get_plugins: with no ``pydantic`` entry point it finds no plugin (whatever
        # PYDANTIC_DISABLE_PLUGINS says)
        module._plugins = {}


#: The modules that scan every installed distribution for one entry-point group of their own.
_SCANNING_MODULES = ("numba.core.entrypoints", "pydantic.plugin._loader")


class _OneEntryPointScan:
    """A meta-path finder that gives numba's extension loader and pydantic's plugin loader the kind
    registries' scan, right after each is imported (see :func:`scan_entry_points_once`); it finds nothing
    itself."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        return _patched_spec(name, path, _spare_scan) if name in _SCANNING_MODULES else None


def scan_entry_points_once() -> None:
    """Read the installed distributions' entry points once for the kind registries, numba and pydantic.

    numba (its ``numba_extensions`` at the first kernel) and pydantic (its plugins at the first model)
    each read every installed distribution's entry points (~4 and ~3 ms with 160 distributions), and the
    kind registries read them once more (:func:`netspectra.kinds._entry_points`). Where the registries'
    scan finds none of numba's or pydantic's group, their loaders are told there is nothing to load —
    the state each would reach by scanning; where it finds some, they scan and load as usual. (In the
    command line's process the registries' scan itself is spared where an earlier start found none of
    the groups asked with the same distributions installed: :mod:`netspectra.declared_groups`.) Only the
    command-line process calls this (:func:`netspectra.cli.main.main`), before numba and pydantic are
    imported; a library user's are left as they are."""
    import sys

    if any(name in sys.modules for name in _SCANNING_MODULES):
        return
    if not any(isinstance(f, _OneEntryPointScan) for f in sys.meta_path):
        sys.meta_path.insert(0, _OneEntryPointScan())
