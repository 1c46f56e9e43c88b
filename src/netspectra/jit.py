"""The ``njit`` NetSpectra's kernel modules use: numba's, or kernels that run without importing numba.

In an ordinary process (library users, services, tests) the names here *are* numba's: ``njit`` is
``numba.njit``, ``leading_zeros`` numba's intrinsic (a module ``__getattr__`` hands them out; nothing
changes). Only the command line turns on the numba-free mode (:func:`use_numba_free_kernels`, from
:func:`netspectra.cli.main.main`, before any kernel module is imported; ``NETSPECTRA_NOJIT=0`` turns it
off). Then ``njit`` gives a :class:`LazyKernel` for each decorated function: its first call loads the
*export* (:mod:`netspectra.nojit_load`: the machine code numba compiled for the kernel on an earlier run,
linked without numba) and every call checks its arguments exactly as numba's dispatcher types them
against the exported signatures before calling the machine code. Anything else — no export, a stale one,
no matching signature, keyword arguments, an attribute of numba's dispatcher asked for, any load error —
switches the whole process to numba (:func:`switch_to_numba`): numba is imported, the real dispatcher of
every lazy kernel made so far is built, lazy objects in NetSpectra's modules' globals are replaced by the
real ones (so that numba, compiling a caller, resolves real dispatchers and inlines as it always did),
and from then on every lazy kernel hands its calls to its dispatcher. Results are the same either way:
the same machine code runs.

When the command ran on numba (a first run, a fallback), :func:`export_if_needed` writes the export for
the next run (:mod:`netspectra.nojit_export`), at the end of the command.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, ClassVar

log = logging.getLogger(__name__)

#: numba's names other than ``njit`` the kernel modules use at module level, by the module they are in.
NUMBA_NAMES = {"leading_zeros": "numba.cpython.unsafe.numbers"}

_LOCK = threading.RLock()


class _State:
    #: "numba": the names are numba's; "nojit": lazy kernels (the command line's numba-free mode)
    mode = "numba"
    #: whether the command line asked for the numba-free mode (then it exports what numba ran)
    requested = False
    #: why the process switched to numba, once it did
    reason: str | None = None
    #: the loaded export (netspectra.nojit_load.Loaded), once loaded
    loaded: Any = None
    #: every LazyKernel made, and every dispatcher numba's njit made for this module after the switch
    kernels: ClassVar[list[Any]] = []
    dispatchers: ClassVar[list[Any]] = []
    #: LazyObject placeholders made (numba's intrinsics)
    objects: ClassVar[list[Any]] = []
    #: kernel keys made more than once (their export is ambiguous: never used)
    keys: ClassVar[dict[str, int]] = {}


def numba_free() -> bool:
    """Whether kernels made now are lazy kernels (the command line's numba-free mode, not switched)."""
    return _State.mode == "nojit"


def use_numba_free_kernels() -> bool:
    """Turn the numba-free mode on for this process, where it can be: x86-64 Linux, numba not imported
    yet (a kernel module imported before would hold numba's dispatchers), ``NETSPECTRA_NOJIT`` not
    ``0``, no numba configuration file (``.numba_config.yaml``) to honour, an export to load (without
    one, the command runs on numba and writes it at its end). Whether it did. Only the command line
    calls this (:func:`netspectra.cli.main.main`)."""
    if os.environ.get("NETSPECTRA_NOJIT", "").strip() == "0":
        return False
    from netspectra import nojit_load

    if "numba" in sys.modules or not nojit_load.platform_supported():
        return False
    if os.path.isfile(".numba_config.yaml") or os.environ.get("NUMBA_DISABLE_JIT", "0").strip() not in (
        "",
        "0",
    ):
        return False
    path = nojit_load.export_path()
    with _LOCK:
        _State.requested = True  # the command exports what it ran on numba
        if path is None or not path.is_file():  # nothing to load: numba at once (a first run)
            return False
        _State.mode = "nojit"
    return True


def __getattr__(name: str) -> Any:
    if name == "njit":
        if _State.mode == "nojit":
            return _lazy_njit
        if _State.requested:
            return _recording_njit
        from numba import njit

        return njit
    if name in NUMBA_NAMES:
        if _State.mode == "nojit":
            return _lazy_object(NUMBA_NAMES[name], name)
        import importlib

        return getattr(importlib.import_module(NUMBA_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _decorate(make: Callable[[Any, dict[str, Any]], Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
    """numba's ``njit`` calling conventions: ``@njit``, ``@njit(**options)``, ``njit(func, **options)``;
    with signatures (eager compilation) numba's own ``njit`` (the process switches to numba)."""
    if len(args) == 1 and callable(args[0]):
        return make(args[0], kw)
    if args:
        switch_to_numba("a kernel with explicit signatures")
        from numba import njit

        return njit(*args, **kw)

    def decorator(func: Any) -> Any:
        return make(func, kw)

    return decorator


def _lazy_njit(*args: Any, **kw: Any) -> Any:
    return _decorate(_make_lazy, args, kw)


def _recording_njit(*args: Any, **kw: Any) -> Any:
    """numba's ``njit`` after the switch, keeping the dispatchers it makes (to be exported)."""
    return _decorate(_make_recorded, args, kw)


def _make_recorded(func: Any, options: dict[str, Any]) -> Any:
    from numba import njit

    disp = njit(**options)(func)
    with _LOCK:
        _State.dispatchers.append(disp)
        _State.keys[kernel_key(func)] = _State.keys.get(kernel_key(func), 0) + 1
    return disp


def _make_lazy(func: Any, options: dict[str, Any]) -> Any:
    with _LOCK:
        if _State.mode != "nojit":  # switched meanwhile
            return _make_recorded(func, options)
        kernel = LazyKernel(func, options)
        _State.kernels.append(kernel)
        _State.keys[kernel.key] = _State.keys.get(kernel.key, 0) + 1
        return kernel


def kernel_key(func: Any) -> str:
    """The name a kernel's export is found by: ``module:qualname`` of its Python function."""
    return f"{func.__module__}:{func.__qualname__}"


class LazyKernel:
    """A kernel of the numba-free mode (see the module docstring): calls the exported machine code of
    the signature its arguments match exactly, or its real numba dispatcher."""

    def __init__(self, py_func: Any, options: dict[str, Any]) -> None:
        self.py_func = py_func
        self.options = options
        self.key = kernel_key(py_func)
        self.real: Any = None
        self._call: Callable[..., Any] = self._first_call
        self.__name__ = py_func.__name__
        self.__qualname__ = py_func.__qualname__
        self.__module__ = py_func.__module__
        self.__doc__ = py_func.__doc__

    def __call__(self, *args: Any, **kw: Any) -> Any:
        if kw:
            return self._miss(args, kw, "keyword arguments")
        return self._call(*args)

    def __getattr__(self, name: str) -> Any:
        # only names the object lacks: numba's dispatcher's (signatures, overloads, _numba_type_, ...)
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self.materialize(f"{self.key}.{name} asked for"), name)

    def __repr__(self) -> str:
        return f"<LazyKernel {self.key} ({'numba' if self.real is not None else 'numba-free'})>"

    def materialize(self, reason: str) -> Any:
        """The real numba dispatcher (the process switched to numba, for ``reason``, if not yet)."""
        if self.real is None:
            switch_to_numba(reason)
        return self.real

    def _miss(self, args: tuple[Any, ...], kw: dict[str, Any], why: str) -> Any:
        return self.materialize(f"{self.key}: {why}")(*args, **kw)

    def _first_call(self, *args: Any) -> Any:
        with _LOCK:
            if _is_first(self._call):  # no other thread did it meanwhile
                try:
                    self._call = self._checked_call()
                except Exception as exc:
                    switch_to_numba(f"{self.key}: {exc}")
        return self._call(*args)

    def _checked_call(self) -> Callable[..., Any]:
        """A function testing the arguments against each exported signature (generated: ~1 µs for the
        widest kernel) and calling the matching one; a miss switches to numba."""
        if _State.keys.get(self.key, 0) != 1:
            raise LookupError("defined more than once in this process")
        if _State.loaded is None:
            from netspectra import nojit_load

            _State.loaded = nojit_load.load()
        overloads = _State.loaded.overloads(self.key)
        if not overloads:
            raise LookupError("not in the export")
        return _generated_check(self.key, overloads, self._miss_positional)

    def _miss_positional(self, args: tuple[Any, ...]) -> Any:
        return self._miss(args, {}, f"no exported signature matches {_describe(args)}")


def _is_first(call: Any) -> bool:
    return getattr(call, "__func__", None) is LazyKernel._first_call


class LazyObject:
    """A numba object a kernel module names at module level (an intrinsic), in the numba-free mode: only
    numba's compiler reads it, so it is resolved (numba imported) only when numba is."""

    def __init__(self, resolve: Callable[[], Any], name: str) -> None:
        self.resolve_real = resolve
        self.name = name
        self.real: Any = None

    def __call__(self, *args: Any, **kw: Any) -> Any:
        return self.materialize()(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(self.materialize(), name)

    def materialize(self) -> Any:
        if self.real is None:
            switch_to_numba(f"{self.name} used")
        return self.real

    def __repr__(self) -> str:
        return f"<LazyObject {self.name}>"


def _lazy_object(module: str, name: str) -> LazyObject:
    import importlib

    return lazy_object(lambda: getattr(importlib.import_module(module), name), f"{module}.{name}")


def lazy_object(resolve: Callable[[], Any], name: str) -> Any:
    """``resolve()`` (a numba object, numba imported) now, or in the numba-free mode a
    :class:`LazyObject` resolved when the process switches to numba."""
    with _LOCK:
        if _State.mode != "nojit":
            return resolve()
        obj = LazyObject(resolve, name)
        _State.objects.append(obj)
        return obj


def switch_to_numba(reason: str) -> None:
    """Leave the numba-free mode for good (see the module docstring); nothing where it is not on."""
    with _LOCK:
        if _State.mode != "nojit":
            return
        log.debug("numba-free kernels: switching to numba: %s", reason)
        _State.reason = reason
        import numba

        for obj in _State.objects:
            obj.real = obj.resolve_real()
        for kernel in _State.kernels:
            kernel.real = numba.njit(**kernel.options)(kernel.py_func)
            _State.dispatchers.append(kernel.real)
        _State.mode = "numba"
        _replace_in_globals()
        for kernel in _State.kernels:
            kernel._call = kernel.real


def _replace_in_globals() -> None:
    """Every lazy kernel or object in a NetSpectra module's namespace replaced by its real one."""
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "netspectra" or name.startswith("netspectra.")):
            continue
        try:
            namespace = object.__getattribute__(module, "__dict__")
        except AttributeError:
            continue
        for attr, value in list(namespace.items()):
            if type(value) is LazyKernel or type(value) is LazyObject:
                namespace[attr] = value.real


# --------------------------------------------------------------------------------------------------
# The type check: numba's typeof, exactly, for the argument kinds an export holds
# --------------------------------------------------------------------------------------------------


def _describe(args: tuple[Any, ...]) -> str:
    return "(" + ", ".join(type(a).__name__ for a in args) + ")"


def _condition(a: str, uid: str, spec: tuple[Any, ...], ns: dict[str, Any]) -> str:
    """A Python expression true exactly when the value of expression ``a`` is typed ``spec`` by numba's
    ``typeof`` (stricter where that is simpler: an unaligned array, a scalar of a numpy type aliasing
    the dtype's own, are refused); ``uid`` names its helpers in ``ns``."""
    import numpy as np

    kind = spec[0]
    if kind == "array":
        _k, dt, ndim, layout, readonly, aligned = spec
        ns[f"d{uid}"] = np.dtype(dt)
        flags = f"(f{uid} := {a}.flags)"
        layout_test = {
            "C": f"{flags}.c_contiguous",
            "F": f"not {flags}.c_contiguous and f{uid}.f_contiguous",
            "A": f"not {flags}.c_contiguous and not f{uid}.f_contiguous",
        }[layout]
        return (
            f"(type({a}) is nd and {a}.ndim == {int(ndim)} and {a}.dtype == d{uid} and {layout_test}"
            f" and f{uid}.writeable is {not readonly} and f{uid}.aligned is {bool(aligned)})"
        )
    if kind == "none":
        return f"{a} is None"
    if kind == "tuple":  # numba's UniTuple / Tuple of exactly these element types (not a namedtuple)
        items = [_condition(f"{a}[{j}]", f"{uid}_{j}", tuple(s), ns) for j, s in enumerate(spec[1])]
        return f"(type({a}) is tuple and len({a}) == {len(items)}" + "".join(f" and {c}" for c in items) + ")"
    if kind == "scalar":
        name = spec[1]
        if name == "bool":
            return f"(type({a}) is bool or type({a}) is np.bool_)"
        if name == "int64":
            return f"(type({a}) is i64 or (type({a}) is int and {-(2**63)} <= {a} < {2**63}))"
        if name == "uint64":
            ns["u64"] = np.uint64
            return f"(type({a}) is u64 or (type({a}) is int and {2**63} <= {a} < {2**64}))"
        if name == "float64":
            return f"(type({a}) is float or type({a}) is f64)"
        ns[f"t{uid}"] = np.dtype(name).type
        return f"type({a}) is t{uid}"
    raise LookupError(f"argument kind {kind!r} has no check")


def _generated_check(
    key: str, overloads: list[tuple[list[tuple[Any, ...]], Any]], miss: Callable[[tuple[Any, ...]], Any]
) -> Callable[..., Any]:
    import numpy as np

    ns: dict[str, Any] = {"nd": np.ndarray, "np": np, "i64": np.int64, "f64": np.float64, "miss": miss}
    lines = ["def call(*args):", "    n = len(args)"]
    for j, (specs, fn) in enumerate(overloads):
        ns[f"fn{j}"] = fn
        names = [f"a{i}" for i in range(len(specs))]
        conds = [_condition(f"a{i}", f"{j}_{i}", tuple(s), ns) for i, s in enumerate(specs)]
        lines.append(f"    if n == {len(specs)}:")
        if names:
            lines.append(f"        {', '.join(names)}{',' if len(names) == 1 else ''} = args")
        lines.append(f"        if {' and '.join(conds) or 'True'}:")
        lines.append(f"            return fn{j}(*args)")
    lines.append("    return miss(args)")
    exec(compile("\n".join(lines) + "\n", f"<numba-free check of {key}>", "exec"), ns)
    return ns["call"]  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------------
# The export, at the end of a command that ran on numba
# --------------------------------------------------------------------------------------------------


def export_if_needed() -> None:
    """Write the export for the next run where this command asked for the numba-free mode and ran (some
    of) its kernels on numba: missing, stale, or lacking a signature this process compiled or loaded
    (:func:`netspectra.nojit_export.export`). Never raises: the next run falls back to numba."""
    if not _State.requested:
        return
    if "numba" not in sys.modules:
        ready = sum(1 for k in _State.kernels if k.real is None and not _is_first(k._call))
        log.debug("numba-free kernels: %d called, numba not imported", ready)
        return
    try:
        from netspectra import nojit_export

        nojit_export.export(_State.dispatchers)
    except Exception:
        log.debug("numba-free kernels: export not written", exc_info=True)
