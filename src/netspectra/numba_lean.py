"""Five pieces of numba's work at every start that a command loading cached kernels can do with less
(issue 19; installed by :func:`netspectra.lazy.load_cached_kernels_lean`, only in the command-line
process).

* :func:`initialize_nrt` — numba's ``rtsys.initialize``, with the NRT's own functions (atomic reference
  counts, ``NRT_incref``/``NRT_decref``, the unresolved-symbol abort) loaded as machine code from a file
  instead of being built and compiled by LLVM at every start (~15 ms). The file is written the first
  time, next to numba's cache of NetSpectra's kernels, holding exactly what numba compiled (the object
  code and the module that later compilations link against, numba's own serialisation of a library);
  it is keyed on everything that shapes that code (numba's and llvmlite's versions, the CPU, its
  features and the target triple, numba's NRT debug switches and optimisation level).
* :func:`typeof_ndarray` — numba's ``typeof`` of a NumPy array without reading ``np.ma.MaskedArray``
  while ``numpy.ma`` is not imported: NumPy loads ``numpy.ma`` on that first read (~8 ms), and no masked
  array can exist before it is imported.
* :func:`rebuild_env` — numba's rebuilding of a cached kernel's environments without importing numba's
  own implementation modules that are not loaded yet (``numba.np.arrayobj`` and with it
  ``numba.cpython.unicode``: ~18 ms), only to hand their module dictionary to the environment of a helper
  they implement (``np.empty``, ...). That dictionary is read only by object-mode code, which numba's
  implementations never are; the environment's constants (what its exceptions raise) are restored as
  numba restores them.
* :func:`unserialize_library` — numba's loading of a cached kernel's code library without parsing the
  LLVM bitcode of its module for linking and walking every function of it through llvmlite, only to
  learn which names the library defines (~3 ms a kernel): the names are kept in a file of their own,
  written the first time a library is loaded, and the bitcode is parsed only if a later compilation
  links the library.
* :func:`enable_caching` — numba's ``cache=True`` of a kernel being defined, with the kernel's cache
  (its directory found, made sure writable, its source hashed: ~75 µs) made when the kernel is first
  compiled or loaded: most of the kernels a command imports are helpers inlined into others, never
  called from Python.

Each takes over only from the numba code it was written against: numba must be of a tested release
line (:data:`TESTED_NUMBA_RELEASES`) and :func:`code_fingerprint` of numba's function one this module
knows (:data:`NRT_INITIALIZE_FINGERPRINTS`, :data:`TYPEOF_NDARRAY_FINGERPRINTS`,
:data:`REBUILD_ENV_FINGERPRINTS`, :data:`UNSERIALIZE_FINGERPRINTS` with
:data:`LOAD_DEFINED_SYMBOLS_FINGERPRINTS`, :data:`ENABLE_CACHING_FINGERPRINTS`); any other numba keeps
its own behaviour.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

#: The numba release lines (major.minor) the pieces were tested with: a fingerprint reads a function's
#: names and constants, not its bytecode, so another release is refused even where they match (a test
#: fails when the installed numba is not one of these: the pieces are never silently untested).
TESTED_NUMBA_RELEASES = ("0.68",)

#: :func:`code_fingerprint` of ``numba.core.runtime.nrt._Runtime.initialize`` in the numba releases whose
#: steps :func:`initialize_nrt` repeats (numba 0.68: switch the statistics on if asked, register the C
#: helpers' symbols, compile ``nrtdynmod.compile_nrt_functions``).
NRT_INITIALIZE_FINGERPRINTS = frozenset({"9b900e3bdae5e6f5"})
#: :func:`code_fingerprint` of ``numba.core.typing.typeof._typeof_ndarray`` in the releases whose body
#: :func:`typeof_ndarray` repeats (numba 0.68).
TYPEOF_NDARRAY_FINGERPRINTS = frozenset({"ab7322ba122dccb3"})
#: :func:`code_fingerprint` of ``numba.core.environment._rebuild_env`` in the releases whose body
#: :func:`rebuild_env` repeats (numba 0.68).
REBUILD_ENV_FINGERPRINTS = frozenset({"62f7a13d0e4ff6f2"})
#: :func:`code_fingerprint` of ``numba.core.codegen.CPUCodeLibrary._unserialize`` in the releases whose
#: steps :func:`unserialize_library` repeats (numba 0.68).
UNSERIALIZE_FINGERPRINTS = frozenset({"12bfad871f72bc06"})
#: :func:`code_fingerprint` of ``numba.core.codegen.JitEngine._load_defined_symbols`` in the releases whose
#: set of names :func:`defined_symbols` repeats (numba 0.68).
LOAD_DEFINED_SYMBOLS_FINGERPRINTS = frozenset({"09f849cb6ba44702"})
#: :func:`code_fingerprint` of ``numba.core.dispatcher.Dispatcher.enable_caching`` in the releases whose
#: body :func:`enable_caching` repeats, but later (numba 0.68).
ENABLE_CACHING_FINGERPRINTS = frozenset({"938fef973c69e330"})

#: The NRT file: this line, the SHA-256 of the rest after the lengths, the lengths of the object code and
#: of the linking bitcode (two little-endian 64-bit words), then the two.
_MAGIC = b"netspectra-nrt-1\n"


def numba_release_tested() -> bool:
    """Whether the numba being imported or imported is of a release line in :data:`TESTED_NUMBA_RELEASES`
    (read from the package's ``__version__``, which numba sets before importing its own modules)."""
    numba = sys.modules.get("numba")
    version = str(getattr(numba, "__version__", ""))
    return ".".join(version.split(".")[:2]) in TESTED_NUMBA_RELEASES


def code_fingerprint(function: Any) -> str:
    """What a function does, as far as its code object says, independent of the Python version's
    bytecode: the names, constants (nested code objects by their own fingerprint) and argument names it
    uses; 16 hex digits."""
    code = function.__code__

    def consts(c: Any) -> tuple[Any, ...]:
        return tuple(consts(k) if hasattr(k, "co_names") else repr(k) for k in c.co_consts if k is not None)

    def names(c: Any) -> tuple[Any, ...]:
        nested = tuple(names(k) for k in c.co_consts if hasattr(k, "co_names"))
        return (c.co_names, c.co_varnames[: c.co_argcount], nested)

    text = repr((names(code), consts(code)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# The NRT's functions from a file
# --------------------------------------------------------------------------------------------------


def _anchor() -> None:
    """The function whose source file places the NRT file among numba's cache files (numba's locators)."""


def _cache_place() -> Path | None:
    """numba's cache directory for this package's files (``NUMBA_CACHE_DIR``, else ``__pycache__`` beside
    this module, else the user's cache), where the NRT file and the symbol files are kept; ``None`` where
    numba finds no writable place. Asked of numba once per process."""
    if not _CACHE_PLACE:
        from numba.core import caching

        try:
            _CACHE_PLACE.append(Path(caching.CompileResultCacheImpl(_anchor).locator.get_cache_path()))
        except Exception:  # no locator (e.g. a read-only install without a user cache): as numba does
            _CACHE_PLACE.append(None)
    return _CACHE_PLACE[0]


#: :func:`_cache_place`'s answer, once asked.
_CACHE_PLACE: list[Path | None] = []


def _nrt_file(codegen: Any) -> Path | None:
    """Where the NRT's machine code for ``codegen`` is kept: in :func:`_cache_place`, named by the key;
    ``None`` where numba finds no writable place."""
    import llvmlite
    import numba
    from numba.core import config

    where = _cache_place()
    if where is None:
        return None
    key = repr(
        (
            numba.__version__,
            llvmlite.__version__,
            codegen.magic_tuple(),
            config.OPT,
            config.DEBUG_NRT,
            config.DEBUG_NRT_STACK_LIMIT,
            sys.version_info[:2],
        )
    )
    return where / f"netspectra-nrt-{hashlib.sha256(key.encode()).hexdigest()[:20]}.bin"


def _read_nrt(path: Path) -> tuple[bytes, bytes] | None:
    """The object code and linking bitcode stored at ``path``, or ``None`` (absent, unreadable, cut short,
    damaged: the SHA-256 of the two parts is checked, so that LLVM never sees a damaged object)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + 32 + 16
    if not data.startswith(_MAGIC) or len(data) < head:
        return None
    digest = data[len(_MAGIC) : len(_MAGIC) + 32]
    n_obj, n_bc = struct.unpack_from("<QQ", data, len(_MAGIC) + 32)
    body = data[head:]
    if n_obj + n_bc != len(body) or hashlib.sha256(body).digest() != digest:
        return None
    return body[:n_obj], body[n_obj:]


def _write_nrt(path: Path, object_code: bytes, bitcode: bytes) -> None:
    """Store the two parts at ``path`` (:func:`_write_atomically`)."""
    body = object_code + bitcode
    head = _MAGIC + hashlib.sha256(body).digest() + struct.pack("<QQ", len(object_code), len(bitcode))
    _write_atomically(path, head + body)


def _write_atomically(path: Path, data: bytes) -> None:
    """Store ``data`` at ``path`` (:func:`netspectra.atomic.atomic_file`: a reader sees the whole file
    or none); a failure leaves no file and is not an error (the next start does the work again)."""
    from netspectra.atomic import atomic_file

    with contextlib.suppress(OSError), atomic_file(path) as fh:
        fh.write(data)


def _nrt_library(ctx: Any) -> Any:
    """The NRT's code library for the CPU target context ``ctx``: numba's ``compile_nrt_functions``, or
    its machine code as that compiled it on an earlier start. Called under numba's compiler lock."""
    from numba.core.runtime import nrtdynmod

    codegen = ctx.codegen()
    path = _nrt_file(codegen)
    stored = _read_nrt(path) if path is not None else None
    if stored is not None:
        object_code, bitcode = stored
        try:
            return codegen.unserialize_library(("nrt", "object", (object_code, bitcode)))
        except Exception:  # a damaged file LLVM refuses: compiled below and written again
            pass
    # numba's compile_nrt_functions, keeping the object code
    ir_mod, library = nrtdynmod.create_nrt_module(ctx)
    library.enable_object_caching()
    library.add_ir_module(ir_mod)
    library.finalize()
    if path is not None:
        _name, _kind, (object_code, bitcode) = library.serialize_using_object_code()
        _write_nrt(path, object_code, bitcode)
    return library


def nrt_from_file_supported() -> bool:
    """Whether this numba's ``rtsys.initialize`` is one :func:`initialize_nrt` repeats."""
    try:
        from numba.core.codegen import CPUCodeLibrary
        from numba.core.runtime import nrt, nrtdynmod
    except ImportError:
        return False
    runtime = nrt.rtsys
    return (
        numba_release_tested()
        and code_fingerprint(type(runtime).initialize) in NRT_INITIALIZE_FINGERPRINTS
        and hasattr(runtime, "_init")
        and hasattr(nrtdynmod, "create_nrt_module")
        and all(
            hasattr(CPUCodeLibrary, a)
            for a in ("enable_object_caching", "serialize_using_object_code", "_unserialize")
        )
    )


def initialize_nrt(ctx: Any) -> None:
    """numba's ``rtsys.initialize(ctx)`` with the NRT library from its file when there is one (see the
    module docstring); numba's own where this numba is not one it was written against. Idempotent, under
    numba's compiler lock, as numba's."""
    from numba.core.runtime import nrt

    runtime = nrt.rtsys
    if not nrt_from_file_supported():
        runtime.initialize(ctx)
        return
    from llvmlite import binding as ll
    from numba.core import config
    from numba.core.compiler_lock import global_compiler_lock

    with global_compiler_lock:
        if runtime._init:
            return
        # numba's steps, in its order
        if config.NRT_STATS:
            nrt._nrt.memsys_enable_stats()
        for py_name in nrt._nrt.c_helpers:
            c_name = py_name if py_name.startswith("_") else "NRT_" + py_name
            ll.add_symbol(c_name, nrt._nrt.c_helpers[py_name])
        runtime._library = _nrt_library(ctx)
        runtime._init = True


def prepare_nrt() -> None:
    """Initialise numba's NRT now through :func:`initialize_nrt`, writing its file where there is none:
    for an image build (the ``Dockerfile``), so that its containers' commands load the NRT's machine
    code with their cached kernels instead of compiling it at every start."""
    from numba.core.registry import cpu_target

    initialize_nrt(cpu_target.target_context)


# --------------------------------------------------------------------------------------------------
# typeof of an array without numpy.ma
# --------------------------------------------------------------------------------------------------


def typeof_ndarray(val: Any, c: Any) -> Any:
    """numba's ``_typeof_ndarray`` (its body, for numba's ``typeof_impl`` of ``np.ndarray``) without
    importing ``numpy.ma`` to ask whether ``val`` is a masked array: none can exist before ``numpy.ma``
    is imported; once it is, numba's own function answers."""
    from numba.core import errors, types
    from numba.np import numpy_support

    if "numpy.ma" in sys.modules:
        return _NUMBA_TYPEOF_NDARRAY[0](val, c)
    try:
        dtype = numpy_support.from_dtype(val.dtype)
    except errors.NumbaNotImplementedError:
        raise errors.NumbaValueError(f"Unsupported array dtype: {val.dtype}") from None
    layout = numpy_support.map_layout(val)
    readonly = not val.flags.writeable
    return types.Array(dtype, val.ndim, layout, readonly=readonly)


#: numba's own ``_typeof_ndarray``, once :func:`install_typeof_ndarray` replaced it.
_NUMBA_TYPEOF_NDARRAY: list[Any] = []


def install_typeof_ndarray(typeof_module: Any) -> bool:
    """Register :func:`typeof_ndarray` for ``np.ndarray`` in numba's ``typeof_impl`` (``typeof_module``
    is ``numba.core.typing.typeof``, just imported), when numba's own is the one it repeats; whether it
    did. Once only."""
    import numpy as np

    own = getattr(typeof_module, "_typeof_ndarray", None)
    impl = getattr(typeof_module, "typeof_impl", None)
    if own is None or impl is None or _NUMBA_TYPEOF_NDARRAY or not numba_release_tested():
        return False
    if code_fingerprint(own) not in TYPEOF_NDARRAY_FINGERPRINTS:
        return False
    if impl.registry.get(np.ndarray) is not own:
        return False
    _NUMBA_TYPEOF_NDARRAY.append(own)
    impl.register(np.ndarray)(typeof_ndarray)
    return True


# --------------------------------------------------------------------------------------------------
# A cached kernel's environments without importing numba's implementation modules
# --------------------------------------------------------------------------------------------------


def rebuild_env(modname: str, consts: Any, env_name: str) -> Any:
    """numba's ``_rebuild_env`` (unpickling a cached kernel's ``Environment``), except for a module of
    numba's own (``numba.*``) that is not imported yet: its environment gets a dictionary holding the
    module's name instead of the module's own dictionary, so that the module is not imported (see the
    module docstring). Any other module: numba's own function."""
    from numba.core import environment
    from numba.core.environment import Environment, lookup_environment

    if not _NUMBA_REBUILD_ENV:  # never installed here (a cache written by an earlier release naming this)
        return environment._rebuild_env(modname, consts, env_name)
    if not modname.startswith("numba.") or modname in sys.modules:
        return _NUMBA_REBUILD_ENV[0](modname, consts, env_name)
    env = lookup_environment(env_name)
    if env is not None:
        return env
    env = Environment(
        {"__name__": modname}
    )  # what numba's pickling of it reads back (Environment.__reduce__)
    env.consts[:] = consts
    env.env_name = env_name
    Environment._memo[env_name] = env
    return env


#: numba's own ``_rebuild_env``, once :func:`install_rebuild_env` replaced it.
_NUMBA_REBUILD_ENV: list[Any] = []


def install_rebuild_env(environment_module: Any) -> bool:
    """Put :func:`rebuild_env` in place of numba's ``_rebuild_env`` in ``environment_module``
    (``numba.core.environment``, where pickled environments name it), when numba's own is the one it
    repeats; whether it did. Once only."""
    own = getattr(environment_module, "_rebuild_env", None)
    if own is None or _NUMBA_REBUILD_ENV or not numba_release_tested():
        return False
    if code_fingerprint(own) not in REBUILD_ENV_FINGERPRINTS:
        return False
    if not all(hasattr(environment_module, a) for a in ("Environment", "lookup_environment")):
        return False
    _NUMBA_REBUILD_ENV.append(own)
    # numba pickles an environment as a call of the module's ``_rebuild_env`` (Environment.__reduce__):
    # under numba's name, a kernel compiled and cached in this process stays loadable where this function
    # is not installed (pytest, services), where the name gives numba's own again
    rebuild_env.__module__, rebuild_env.__qualname__ = environment_module.__name__, "_rebuild_env"
    environment_module._rebuild_env = rebuild_env
    return True


# --------------------------------------------------------------------------------------------------
# A cached kernel's library without parsing its linking bitcode
# --------------------------------------------------------------------------------------------------


def defined_symbols(module: Any) -> set[str]:
    """The names an LLVM module defines (functions and global variables that are not declarations):
    what numba's ``JitEngine._load_defined_symbols`` adds to the execution engine's defined symbols."""
    return {
        gv.name
        for gsets in (module.functions, module.global_variables)
        for gv in gsets
        if not gv.is_declaration
    }


def _symbols_file(bitcode: bytes) -> Path | None:
    """Where the names that the linking bitcode ``bitcode`` defines are kept: in :func:`_cache_place`,
    named by a hash of the bitcode and of the numba and llvmlite that read it; ``None`` where numba
    finds no writable place."""
    import llvmlite
    import numba

    where = _cache_place()
    if where is None:
        return None
    digest = hashlib.sha256(f"{numba.__version__} {llvmlite.__version__}\n".encode() + bitcode).hexdigest()
    return where / f"netspectra-symbols-{digest[:32]}.json"


def _read_symbols(path: Path) -> set[str] | None:
    """The names stored at ``path``, or ``None`` (absent, unreadable, damaged: the SHA-256 of the names
    is checked, so that the execution engine is never told of a symbol the object code lacks)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(_SYMBOLS_MAGIC) + 32
    body = data[head:]
    if (
        not data.startswith(_SYMBOLS_MAGIC)
        or hashlib.sha256(body).digest() != data[len(_SYMBOLS_MAGIC) : head]
    ):
        return None
    try:
        names = json.loads(body)
    except ValueError:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return set(names)


def _write_symbols(path: Path, names: set[str]) -> None:
    body = json.dumps(sorted(names)).encode()
    _write_atomically(path, _SYMBOLS_MAGIC + hashlib.sha256(body).digest() + body)


#: A symbol file: this line, the SHA-256 of the rest, then the names as a JSON list.
_SYMBOLS_MAGIC = b"netspectra-symbols-1\n"


def _lazy_linking_class(base: type) -> type:
    """A subclass of numba's code library class ``base`` whose module for linking (``_shared_module``)
    is parsed from the cached bitcode when first asked for (by a compilation that links the library, or
    by numba serialising it again) instead of when the library is loaded."""

    class LazyLinkingLibrary(base):  # type: ignore[misc, valid-type]
        _linking_bitcode: bytes | None = None

        @property
        def _shared_module(self) -> Any:
            module = self.__dict__.get("_parsed_shared_module")
            if module is None and self._linking_bitcode is not None:
                from llvmlite import binding as ll

                module = self.__dict__["_parsed_shared_module"] = ll.parse_bitcode(self._linking_bitcode)
                self._linking_bitcode = None
            return module

        @_shared_module.setter
        def _shared_module(self, module: Any) -> None:
            self.__dict__["_parsed_shared_module"] = module

    LazyLinkingLibrary.__qualname__ = f"LazyLinking{base.__name__}"
    LazyLinkingLibrary.__name__ = LazyLinkingLibrary.__qualname__
    return LazyLinkingLibrary


def unserialize_library(cls: type, codegen: Any, state: Any) -> Any:
    """numba's ``CPUCodeLibrary._unserialize`` (a library loaded from numba's cache: its object code, and
    the bitcode of its module for linking) without parsing that bitcode and walking every function and
    global of it through llvmlite, only to learn which names it defines (~2 ms a kernel): the names are
    kept in a file of their own (:func:`_symbols_file`), written the first time, and the module is parsed
    only if something links against the library later (:func:`_lazy_linking_class`). Without a stored
    file, or for a library of another kind (bitcode), numba's own function."""
    own = _NUMBA_UNSERIALIZE[0]
    name, kind, data = state
    engine = getattr(codegen, "_engine", None)
    if kind != "object" or not isinstance(getattr(engine, "_defined_symbols", None), set):
        return own(cls, codegen, state)
    object_code, bitcode = data
    path = _symbols_file(bitcode)
    names = _read_symbols(path) if path is not None else None
    if names is None:
        library = own(cls, codegen, state)
        if path is not None:
            _write_symbols(path, defined_symbols(library._shared_module))
        return library
    lazy = _LAZY_CLASSES.get(cls)
    if lazy is None:
        lazy = _LAZY_CLASSES[cls] = _lazy_linking_class(cls)
    # numba's steps, in its order, but the parse and the walk
    library = lazy(codegen, name)
    library.enable_object_caching()
    library._set_compiled_object(object_code)
    library._linking_bitcode = bitcode
    library._finalize_final_module()
    engine._defined_symbols |= names
    return library


#: numba's own ``_unserialize`` (its function), once :func:`install_unserialize_library` replaced it.
_NUMBA_UNSERIALIZE: list[Any] = []
#: :func:`_lazy_linking_class` of each code library class met.
_LAZY_CLASSES: dict[type, type] = {}


def install_unserialize_library(codegen_module: Any) -> bool:
    """Put :func:`unserialize_library` in place of numba's ``_unserialize`` for JIT code libraries
    (``JITCodeLibrary`` of ``codegen_module``, ``numba.core.codegen``, just imported), when numba's own
    is the one it repeats; whether it did. Once only."""
    library_class = getattr(codegen_module, "JITCodeLibrary", None)
    engine_class = getattr(codegen_module, "JitEngine", None)
    own = getattr(getattr(library_class, "_unserialize", None), "__func__", None)
    load_symbols = getattr(engine_class, "_load_defined_symbols", None)
    if own is None or load_symbols is None or _NUMBA_UNSERIALIZE or not numba_release_tested():
        return False
    if code_fingerprint(own) not in UNSERIALIZE_FINGERPRINTS:
        return False
    if code_fingerprint(load_symbols) not in LOAD_DEFINED_SYMBOLS_FINGERPRINTS:
        return False
    if not all(
        hasattr(library_class, a)
        for a in ("enable_object_caching", "_set_compiled_object", "_finalize_final_module")
    ):
        return False
    _NUMBA_UNSERIALIZE.append(own)
    library_class._unserialize = classmethod(unserialize_library)
    return True


# --------------------------------------------------------------------------------------------------
# A kernel's cache made when the kernel is first compiled or loaded, not when it is defined
# --------------------------------------------------------------------------------------------------


class LazyFunctionCache:
    """numba's ``FunctionCache`` of a function, made when first used (see :func:`enable_caching`): every
    attribute is the real cache's, made on the first look-up."""

    def __init__(self, make: Any, py_func: Any) -> None:
        self._make = make
        self._py_func = py_func
        self._real: Any = None

    def __getattr__(self, name: str) -> Any:  # only names the proxy itself lacks
        own = self.__dict__
        if "_make" not in own:  # not initialised (a copy being made)
            raise AttributeError(name)
        real = own["_real"]
        if real is None:
            real = self._real = self._make(self._py_func)
        return getattr(real, name)

    def __repr__(self) -> str:
        return f"<LazyFunctionCache of {self._py_func!r}: {'made' if self._real is not None else 'not made'}>"


def enable_caching(self: Any) -> None:
    """numba's ``Dispatcher.enable_caching`` (what ``cache=True`` does when a kernel is defined), with
    the kernel's ``FunctionCache`` made only when the kernel is first compiled or loaded (~75 µs each:
    numba finds the cache's directory, makes sure it exists and is writable by creating a file in it,
    and hashes the source file): most kernels a module defines are never called from Python (helpers
    that numba inlines into the ones that are), and a command imports about sixty of them."""
    from numba.core.caching import FunctionCache

    self._cache = LazyFunctionCache(FunctionCache, self.py_func)


#: numba's own ``Dispatcher.enable_caching``, once :func:`install_enable_caching` replaced it.
_NUMBA_ENABLE_CACHING: list[Any] = []


def install_enable_caching(dispatcher_module: Any) -> bool:
    """Put :func:`enable_caching` in place of numba's ``Dispatcher.enable_caching`` in
    ``dispatcher_module`` (``numba.core.dispatcher``, just imported), when numba's own is the one it
    repeats; whether it did. Once only."""
    dispatcher = getattr(dispatcher_module, "Dispatcher", None)
    own = getattr(dispatcher, "enable_caching", None)
    if own is None or _NUMBA_ENABLE_CACHING or not numba_release_tested():
        return False
    if code_fingerprint(own) not in ENABLE_CACHING_FINGERPRINTS:
        return False
    _NUMBA_ENABLE_CACHING.append(own)
    dispatcher.enable_caching = enable_caching
    return True
