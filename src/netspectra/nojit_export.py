"""The export of NetSpectra's compiled kernels for the numba-free mode (issue 19; :mod:`netspectra.jit`,
:mod:`netspectra.nojit_load`), written in a process with numba.

For every compiled signature of every kernel the process holds: the machine code numba made (kept by
:func:`keep_object_code`: numba drops it once LLVM has it), the names of the CPython wrapper and of the
environment, the environment's constants (pickled; refused where they refer to numba), the argument
types as plain data; once, the NRT's own compiled functions and the names of numba's C math helpers. The
key is :func:`netspectra.nojit_load.runtime_key` and the stamps of every NetSpectra source file loaded
(every file that defines a kernel or a constant one reads: stricter than numba's own cache, which only
checks the kernel's file). One file (:func:`netspectra.nojit_load.export_path`), written atomically with
a SHA-256, only where it is missing, stale, or lacks a signature this process holds (then merged).

The numba-free loader repeats steps of numba's (``get_executable``, ``set_env``, ``_load_global_helpers``,
the C math helpers' install, ``rtsys.initialize``, ``_rebuild_env``, ``_numba_unpickle``); an export is
written only where numba's release line is one :mod:`netspectra.numba_lean` was tested with and each of
those functions has a fingerprint known here (:data:`FINGERPRINTS`): another numba gets no export, and
its commands keep running on numba.
"""

from __future__ import annotations

import logging
import pickle
import sys
from typing import Any

log = logging.getLogger(__name__)

#: :func:`netspectra.numba_lean.code_fingerprint` of the numba functions whose steps the loader repeats (their
#: body: a decorator's wrapper is looked through with ``__wrapped__``),
#: in the releases it was tested with (numba 0.68).
FINGERPRINTS: dict[str, frozenset[str]] = {
    "numba.core.cpu:CPUContext.get_executable": frozenset({"95bb047bbdf33faf"}),
    "numba.core.codegen:JITCPUCodegen.set_env": frozenset({"4a0606a3345601c4"}),
    "numba.core.base:_load_global_helpers": frozenset({"77da1e08d912519b"}),
    "numba.core.externals:_ExternalMathFunctions._do_install": frozenset({"53de15213fd7df91"}),
    "numba.core.serialize:_numba_unpickle": frozenset({"77488be2d86addaa"}),
    "numba.core.environment:_rebuild_env": frozenset({"62f7a13d0e4ff6f2"}),
    "numba.core.runtime.nrt:rtsys.initialize": frozenset({"2f46378f3f8fe9af"}),
    "numba.core.codegen:JITCodeLibrary._object_getbuffer_hook": frozenset({"342bd70bac634fa6"}),
}


def _resolve(where: str) -> Any:
    import importlib

    module, _, path = where.partition(":")
    obj: Any = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    obj = getattr(obj, "__func__", obj)
    # numba's own function where NetSpectra's start-up pieces stand in for it (same steps, checked there)
    from netspectra import numba_lean

    if obj is numba_lean.rebuild_env and numba_lean._NUMBA_REBUILD_ENV:
        return numba_lean._NUMBA_REBUILD_ENV[0]
    return getattr(obj, "__wrapped__", obj)


def numba_supported() -> bool:
    """Whether this numba is one the numba-free loader was written against (see the module docstring)."""
    from netspectra.numba_lean import code_fingerprint, numba_release_tested

    if not numba_release_tested():
        return False
    try:
        return all(code_fingerprint(_resolve(w)) in known for w, known in FINGERPRINTS.items())
    except (ImportError, AttributeError):
        return False


# --------------------------------------------------------------------------------------------------
# numba's object code, kept
# --------------------------------------------------------------------------------------------------


def keep_object_code(codegen_module: Any) -> bool:
    """Keep a copy of the object code numba hands to LLVM for each code library (``codegen_module`` is
    ``numba.core.codegen``, just imported, before any code generator is made: they bind the hook when
    made). numba drops the library's copy once LLVM has it. Once only; whether it did."""
    library_class = getattr(codegen_module, "JITCodeLibrary", None)
    own_method = getattr(library_class, "_object_getbuffer_hook", None)
    own = getattr(own_method, "__func__", None)
    if own is None or getattr(own, "_netspectra_keeps_objects", False):
        return False

    def keep(cls: Any, ll_module: Any) -> Any:
        buf = own(cls, ll_module)
        if buf is not None:
            library = getattr(ll_module, "_CPUCodeLibrary__library", None)
            if library is not None:
                library._netspectra_object = bytes(buf)
        return buf

    keep._netspectra_keeps_objects = True  # type: ignore[attr-defined]
    keep.__wrapped__ = own  # type: ignore[attr-defined]
    library_class._object_getbuffer_hook = classmethod(keep)
    return True


def _object_code(library: Any) -> bytes | None:
    code = getattr(library, "_compiled_object", None) or getattr(library, "_netspectra_object", None)
    return bytes(code) if code else None


# --------------------------------------------------------------------------------------------------
# One compiled signature as plain data
# --------------------------------------------------------------------------------------------------


def arg_spec(t: Any) -> tuple[Any, ...] | None:
    """A numba argument type as the plain data :mod:`netspectra.jit`'s check tests a call against;
    ``None`` for a type it has no exact check for (such a signature is not exported)."""
    from numba.core import types
    from numba.np import numpy_support

    scalar = (types.Integer, types.Float, types.Boolean)
    if type(t) is types.Array:
        if not isinstance(t.dtype, scalar):
            return None
        dt = numpy_support.as_dtype(t.dtype)
        return ("array", dt.str, t.ndim, t.layout, not t.mutable, bool(t.aligned))
    if isinstance(t, scalar):
        return ("scalar", str(numpy_support.as_dtype(t)))
    if isinstance(t, types.NoneType):
        return ("none",)
    if type(t) in (types.UniTuple, types.Tuple):  # a plain tuple (not a named one) of such values
        items = tuple(arg_spec(x) for x in t.types)
        return None if any(x is None for x in items) else ("tuple", items)
    return None


def overload_entry(disp: Any, sig: tuple[Any, ...], cres: Any) -> dict[str, Any] | None:
    """What the numba-free loader needs to call compiled signature ``sig`` of ``disp``; ``None`` where
    it cannot (an argument type without a check, object mode, lifted loops or dynamic globals as numba's
    cache refuses them, no object code kept, constants that need numba)."""
    if getattr(cres, "objectmode", False) or getattr(cres, "lifted", ()):
        return None
    # numba's own test of whether machine code may be used in another process (its cache's
    # check_cachable): no addresses of this process's objects (ctypes pointers, large global arrays)
    if getattr(cres.library, "has_dynamic_globals", True):
        return None
    specs = [arg_spec(t) for t in sig]
    if any(s is None for s in specs):
        return None
    code = _object_code(cres.library)
    if code is None:
        return None
    fndesc = cres.fndesc
    try:
        consts = pickle.dumps(list(cres.environment.consts), protocol=5)
    except Exception:
        return None
    if b"numba" in consts:  # unpickling would import numba
        return None
    return {
        "modname": fndesc.modname,
        "qualname": fndesc.qualname,
        "object_code": code,
        "wrapper": fndesc.llvm_cpython_wrapper_name,
        "env_name": fndesc.env_name,
        "consts": consts,
        "args": specs,
    }


def _nrt_object() -> bytes:
    """The NRT's own functions as numba compiles them (``nrtdynmod.create_nrt_module``): the object code
    :mod:`netspectra.numba_lean` keeps in its NRT file where there is one (~30 ms less), else compiled."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target
    from numba.core.runtime import nrtdynmod

    from netspectra import numba_lean

    path = numba_lean._nrt_file(cpu_target.target_context.codegen())
    stored = numba_lean._read_nrt(path) if path is not None else None
    if stored is not None:
        return stored[0]
    with global_compiler_lock:
        ir_mod, library = nrtdynmod.create_nrt_module(cpu_target.target_context)
        library.enable_object_caching()
        library.add_ir_module(ir_mod)
        library.finalize()
        return bytes(library._get_compiled_object())


def _loaded_source_files() -> list[str]:
    files = []
    for name, module in list(sys.modules.items()):
        if module is not None and (name == "netspectra" or name.startswith("netspectra.")):
            path = getattr(module, "__file__", None) if type(module).__name__ != "_LazyModule" else None
            if isinstance(path, str) and path.endswith(".py"):
                files.append(path)
    return files


# --------------------------------------------------------------------------------------------------
# The export
# --------------------------------------------------------------------------------------------------


def export(dispatchers: list[Any], path: Any = None) -> bool:
    """Write the export of every compiled signature of ``dispatchers`` (numba dispatchers of NetSpectra's
    kernels) where the current one (``path``, default :func:`netspectra.nojit_load.export_path`) is
    missing, stale, or lacks one of them; whether it wrote. Nothing where this numba is not supported."""
    import llvmlite
    import numba

    from netspectra import jit, nojit_load

    if not nojit_load.platform_supported() or not numba_supported():
        log.debug("numba-free kernels: numba %s is not one the loader was tested with", numba.__version__)
        return False
    path = path or nojit_load.export_path()
    if path is None:
        return False
    key = nojit_load.runtime_key()
    if key["numba"] != numba.__version__ or key["llvmlite"] != llvmlite.__version__:
        log.debug("numba-free kernels: numba's or llvmlite's version not readable from its distribution")
        return False
    try:
        current: dict[str, Any] | None = nojit_load.read_export(path)
    except nojit_load.NoJitUnavailableError:
        current = None
    kernels: dict[str, list[dict[str, Any]]] = {
        k: list(v) for k, v in (current or {}).get("kernels", {}).items()
    }
    added = 0
    seen: set[int] = set()
    for disp in dispatchers:
        if id(disp) in seen:
            continue
        seen.add(id(disp))
        py_func = disp.py_func
        name = jit.kernel_key(py_func)
        if jit._State.keys.get(name, 0) > 1 or py_func.__closure__:
            continue  # ambiguous, or constants of a closure that another process may give other values
        entries = kernels.setdefault(name, [])
        have = {tuple(map(tuple, e["args"])) for e in entries}
        for sig, cres in list(disp.overloads.items()):
            entry = overload_entry(disp, sig, cres)
            if entry is not None and tuple(map(tuple, entry["args"])) not in have:
                entries.append(entry)
                have.add(tuple(map(tuple, entry["args"])))
                added += 1
        if not entries:
            del kernels[name]
    if not added:
        return False
    files = _loaded_source_files() + [
        str(nojit_load._PACKAGE_DIR / rel) for rel, *_ in (current or {}).get("files", [])
    ]
    from numba.core import intrinsics

    bundle = {
        "key": key,
        "files": nojit_load.source_stamps(files),
        "numba": numba.__version__,
        "nrt_object": current["nrt_object"] if current else _nrt_object(),
        "math_symbols": sorted(intrinsics.INTR_MATH),
        "kernels": kernels,
    }
    from netspectra.atomic import atomic_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as fh:
        fh.write(nojit_load.encode_export(bundle))
    log.debug(
        "numba-free kernels: exported %d signatures (%d new) to %s",
        sum(map(len, kernels.values())),
        added,
        path,
    )
    return True


def prepare() -> bool:
    """Load (or compile) every kernel of the offline path as a command does
    (:func:`netspectra.offline.warmup.warm_up` of every aggregator kind) and write their export, so that
    ``netspectra analyze`` runs numba-free from its first start: for an image build (the
    ``Dockerfile``). Call it in a fresh process (numba not imported yet); whether it wrote."""
    from netspectra import jit
    from netspectra.lazy import load_cached_kernels_lean

    if "numba" in sys.modules:
        raise RuntimeError("prepare() needs a process where numba is not imported yet")
    jit._State.requested = True  # njit keeps the dispatchers it makes; numba's object code is kept
    load_cached_kernels_lean()
    from netspectra.offline.warmup import warm_up

    warm_up()
    return export(jit._State.dispatchers)
