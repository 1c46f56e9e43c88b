"""NetSpectra's cached kernels called without importing numba (issue 19; see :mod:`netspectra.jit`).

A process with numba writes the *export* (:mod:`netspectra.nojit_export`): for every compiled signature
of a kernel, the machine code numba made (an x86-64 ELF relocatable object), the names of its CPython
wrapper and environment, the environment's constants, and the argument types as plain data. This module
loads it in a process that never imports the ``numba`` package:

* numba's three C extension modules (``numba._helperlib``, ``numba._dynfunc``,
  ``numba.core.runtime._nrt_python``) are loaded by path and registered under their dotted names, so a
  later ``import numba`` in the same process reuses them (they are single-phase-init modules whose state
  is C-static: they must not be initialised twice);
* the names numba gives its code (numba's ``_load_global_helpers``, the C math helpers, the NRT's C
  functions) are resolved to the same addresses, the rest (C API, libc) with ``dlsym``;
* :class:`ElfImage` links the objects in this process: code mapped read-write, relocated, then
  read-execute (W^X), data in a mapping of its own; only the relocations numba's JIT objects hold
  (static relocation model, large code model) are accepted;
* each wrapper becomes a callable through ``_dynfunc.make_function`` with an environment as numba's
  ``_rebuild_env`` makes it (numba's ``CPUContext.get_executable`` and ``JITCPUCodegen.set_env``).

The export is trusted as numba's own cache is (it is executed): it is read only where this user wrote it
(:func:`netspectra.user_cache.open_private`), checked with a SHA-256, and used only where its key (the
runtime: Python, numba, llvmlite, numpy, the CPU, numba's ``NUMBA_*`` switches) and the stamps of
NetSpectra's source files equal this process's. Anything else (absent, stale, damaged, another platform,
a relocation or section this linker does not know) raises :class:`NoJitUnavailableError` and the caller uses
numba. Nothing here imports numba or llvmlite.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import sys
import threading
from pathlib import Path
from typing import Any

#: The export file: this line, the SHA-256 of the rest, then a pickle holding only builtins.
MAGIC = b"netspectra-nojit-1\n"
#: The environment variable that turns the numba-free kernels off (``0``).
NOJIT_ENV = "NETSPECTRA_NOJIT"


class NoJitUnavailableError(Exception):
    """The numba-free kernels cannot be used in this process (the message says why); use numba."""


def platform_supported() -> bool:
    """Whether :class:`ElfImage` can link here: x86-64 Linux, little-endian CPython."""
    return (
        sys.platform == "linux"
        and os.uname().machine == "x86_64"
        and sys.byteorder == "little"
        and sys.implementation.name == "cpython"
    )


# --------------------------------------------------------------------------------------------------
# Where the export is kept, and what it is keyed on (read without importing numba)
# --------------------------------------------------------------------------------------------------

_PACKAGE_DIR = Path(__file__).resolve().parent


def export_path() -> Path | None:
    """The export file of this NetSpectra installation: in ``$NUMBA_CACHE_DIR`` where it is set (beside
    numba's cache of the kernels, as in the container image), else in the user's cache
    (``~/.cache/netspectra/kernels``); named by this package's directory and environment
    (``sys.prefix``), so that two installations (checkouts, virtual environments) never take turns
    overwriting one file. ``None`` where there is no such directory."""
    from netspectra.user_cache import user_cache_dir

    numba_dir = os.environ.get("NUMBA_CACHE_DIR", "").strip()
    where = Path(numba_dir).expanduser() if numba_dir else user_cache_dir("", "kernels")
    if where is None:
        return None
    tag = hashlib.sha256(f"{_PACKAGE_DIR}\n{sys.prefix}".encode()).hexdigest()[:16]
    return where / f"netspectra-nojit-{tag}.bin"


def _package_root(name: str) -> Path | None:
    """The directory of installed package ``name``, found (not imported) as ``import`` would find it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _dist_version(root: Path, name: str) -> str | None:
    """The version of distribution ``name`` whose package is ``root``, from its ``.dist-info`` directory
    beside it (one ``scandir``, not :mod:`importlib.metadata`'s scan of every distribution); ``None``
    where there is not exactly one."""
    prefix = f"{name}-"
    found = []
    try:
        with os.scandir(root.parent) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and entry.name.endswith(".dist-info"):
                    found.append(entry.name[len(prefix) : -len(".dist-info")])
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


#: numba's C extension modules the loader uses, by dotted name.
EXTENSIONS = ("numba._helperlib", "numba._dynfunc", "numba.core.runtime._nrt_python")


def _extension_path(root: Path, dotted: str) -> Path | None:
    from importlib.machinery import EXTENSION_SUFFIXES

    rel = Path(*dotted.split(".")[1:])
    for suffix in EXTENSION_SUFFIXES:
        path = root / rel.parent / (rel.name + suffix)
        if path.is_file():
            return path
    return None


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def cpu_key() -> str:
    """What the machine code depends on of the CPU numba compiled for: the first processor's vendor,
    family, model and feature flags (``/proc/cpuinfo``), hashed; empty where ``NUMBA_CPU_NAME`` and
    ``NUMBA_CPU_FEATURES`` both name the target (then they, in the key, say it)."""
    if os.environ.get("NUMBA_CPU_NAME") and os.environ.get("NUMBA_CPU_FEATURES"):
        return ""
    wanted = ("vendor_id", "cpu family", "model", "model name", "flags")
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break
                name, _, value = line.partition(":")
                if name.strip() in wanted:
                    found[name.strip()] = value.strip()
    except OSError:
        return "unknown"
    return hashlib.sha256(repr(sorted(found.items())).encode()).hexdigest()[:32]


def runtime_key() -> dict[str, Any]:
    """Everything outside NetSpectra's sources that shapes the exported machine code and the ABI it
    calls: the interpreter, numba's and llvmlite's versions and numba's C extensions (their stamps),
    numpy's version, the CPU, numba's ``NUMBA_*`` switches (optimisation level, debug, CPU name...).
    Read without importing numba; :class:`NoJitUnavailableError` where a part cannot be read."""
    numba_root = _package_root("numba")
    llvmlite_root = _package_root("llvmlite")
    if numba_root is None or llvmlite_root is None:
        raise NoJitUnavailableError("numba or llvmlite is not installed")
    numba_version = _dist_version(numba_root, "numba")
    llvmlite_version = _dist_version(llvmlite_root, "llvmlite")
    if numba_version is None or llvmlite_version is None:
        raise NoJitUnavailableError("numba's or llvmlite's version cannot be read without importing them")
    extensions = []
    for dotted in EXTENSIONS:
        path = _extension_path(numba_root, dotted)
        if path is None:
            raise NoJitUnavailableError(f"no extension module {dotted} under {numba_root}")
        extensions.append((dotted, str(path), *_stamp(path)))
    import numpy

    return {
        "python": sys.version,
        "cache_tag": sys.implementation.cache_tag,
        "machine": os.uname().machine,
        "numba": numba_version,
        "llvmlite": llvmlite_version,
        "numba_extensions": tuple(extensions),
        "numpy": numpy.__version__,
        "cpu": cpu_key(),
        "numba_env": tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("NUMBA_"))),
    }


def source_stamps(module_files: list[str]) -> list[tuple[str, int, int]]:
    """``(path relative to the package, mtime_ns, size)`` of each NetSpectra source file of
    ``module_files`` (absolute paths; files outside the package are left out)."""
    out = []
    root = str(_PACKAGE_DIR) + os.sep
    for name in sorted(set(module_files)):
        real = os.path.realpath(name)
        if real.startswith(root):
            out.append((real[len(root) :], *_stamp(Path(real))))
    return out


def stamps_current(stamps: list[tuple[str, int, int]]) -> bool:
    """Whether every recorded source file still has its recorded stamp."""
    for rel, mtime_ns, size in stamps:
        try:
            if _stamp(_PACKAGE_DIR / rel) != (mtime_ns, size):
                return False
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------------------------------
# The export file
# --------------------------------------------------------------------------------------------------


class _BuiltinsOnly(pickle.Unpickler):
    """The export's outer pickle holds builtins only (bytes, str, numbers, tuples, lists, dicts)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the export holds no objects of {module}.{name}")


def encode_export(bundle: dict[str, Any]) -> bytes:
    body = pickle.dumps(bundle, protocol=5)
    return MAGIC + hashlib.sha256(body).digest() + body


def decode_export(data: bytes) -> dict[str, Any]:
    """The bundle in ``data`` (:class:`NoJitUnavailableError` where it is not an intact export)."""
    head = len(MAGIC) + 32
    if not data.startswith(MAGIC) or len(data) < head:
        raise NoJitUnavailableError("not an export of this format")
    body = memoryview(data)[head:]
    if hashlib.sha256(body).digest() != data[len(MAGIC) : head]:
        raise NoJitUnavailableError("damaged (SHA-256)")
    import io

    try:
        bundle = _BuiltinsOnly(io.BytesIO(body)).load()
    except Exception as exc:
        raise NoJitUnavailableError(f"unreadable: {exc}") from None
    if not isinstance(bundle, dict):
        raise NoJitUnavailableError("unreadable: not a dict")
    return bundle


def read_export(path: Path) -> dict[str, Any]:
    """The export at ``path`` if it is intact and current (runtime key and source stamps equal this
    process's); :class:`NoJitUnavailableError` otherwise."""
    from netspectra.user_cache import open_private

    try:
        with open_private(path) as fh:
            data = fh.read()
    except OSError as exc:
        raise NoJitUnavailableError(f"{path}: {exc.strerror or exc}") from None
    bundle = decode_export(data)
    if bundle.get("key") != runtime_key():
        raise NoJitUnavailableError(
            "stale: exported for another runtime (Python, numba, numpy, CPU, NUMBA_*)"
        )
    if not stamps_current(bundle.get("files", [])):
        raise NoJitUnavailableError("stale: NetSpectra's source files changed since the export")
    return bundle


# --------------------------------------------------------------------------------------------------
# numba's C extension modules and the names its code uses
# --------------------------------------------------------------------------------------------------


class Runtime:
    """numba's C runtime in this process without its Python package (see the module docstring): the
    three extension modules, ``numba_unpickle`` primed, the NRT set up as ``numba.core.runtime.nrt``
    does at import, the symbol table numba registers with LLVM, and the NRT's own compiled functions."""

    def __init__(self, nrt_object: bytes, math_symbols: list[str]) -> None:
        root = _package_root("numba")
        if root is None:
            raise NoJitUnavailableError("numba is not installed")
        if "numba" in sys.modules:
            raise NoJitUnavailableError("numba is imported")
        self.helperlib = self._extension(root, "numba._helperlib")
        self.dynfunc = self._extension(root, "numba._dynfunc")
        self.nrt = self._extension(root, "numba.core.runtime._nrt_python")
        self._prime_unpickle()
        self.nrt.memsys_use_cpython_allocator()  # numba.core.runtime.nrt does this at import
        self.table = self._symbols(math_symbols)
        self.nrt_image = ElfImage([nrt_object], self.table)

    @staticmethod
    def _extension(root: Path, dotted: str) -> Any:
        """Extension module ``dotted`` of numba, loaded by path (its package never executed) and put in
        ``sys.modules`` under its name; the one there already if it is."""
        import importlib.util
        from importlib.machinery import ExtensionFileLoader

        module = sys.modules.get(dotted)
        if module is not None:
            return module
        path = _extension_path(root, dotted)
        if path is None:
            raise NoJitUnavailableError(f"no extension module {dotted} under {root}")
        loader = ExtensionFileLoader(dotted, str(path))
        spec = importlib.util.spec_from_file_location(dotted, path, loader=loader)
        if spec is None:
            raise NoJitUnavailableError(f"{dotted}: no module spec")
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        sys.modules[dotted] = module
        return module

    def _prime_unpickle(self) -> None:
        """numba's C helper ``numba_unpickle`` (a static exception's arguments, a returned array's class)
        gets ``_numba_unpickle`` from ``numba.core.serialize`` on its first call, through
        ``PyImport_ImportModule``, which also imports the package ``numba`` (``__import__`` of a dotted
        name without a from-list). The helper keeps the function in a static variable: it is called here
        once with ``__import__`` answering that one name with a stand-in holding numba's function (a
        memo and ``pickle.loads``, which cloudpickle's ``loads`` is); nothing of it stays in
        ``sys.modules``, a later ``import numba`` is numba's own."""
        import builtins
        import ctypes
        import types

        memo: dict[tuple[int, bytes], Any] = {}

        def _numba_unpickle(address: int, bytedata: bytes, hashed: bytes) -> Any:
            key = (address, hashed)
            try:
                return memo[key]
            except KeyError:
                memo[key] = obj = pickle.loads(bytedata)
                return obj

        name = "numba.core.serialize"
        stub = types.ModuleType(name, "numba-free stand-in: numba_unpickle's function")
        stub._numba_unpickle = _numba_unpickle  # type: ignore[attr-defined]
        own_import = builtins.__import__

        def answer(n: str, g: Any = None, lc: Any = None, fromlist: Any = (), level: int = 0) -> Any:
            return stub if n == name and level == 0 else own_import(n, g, lc, fromlist, level)

        unpickle = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)(
            self.helperlib.c_helpers["unpickle"]
        )
        data = pickle.dumps(None)
        if name in sys.modules:
            raise NoJitUnavailableError(f"{name} is imported")
        builtins.__import__, sys.modules[name] = answer, stub
        try:
            if unpickle(data, len(data), b"\0" * 20) is not None:
                raise NoJitUnavailableError("numba_unpickle did not answer as expected")
        finally:
            builtins.__import__ = own_import
            del sys.modules[name]

    def _symbols(self, math_symbols: list[str]) -> dict[str, int]:
        """The addresses numba gives its code's external names: its ``_load_global_helpers``,
        ``c_math_functions.install`` and ``rtsys.initialize``."""
        import builtins

        table = {"_Py_NoneStruct": id(None)}
        for helpers in (self.helperlib.c_helpers, self.dynfunc.c_helpers):
            for py_name, addr in helpers.items():
                table["numba_" + py_name] = addr
        for obj in builtins.__dict__.values():
            if isinstance(obj, type) and issubclass(obj, BaseException):
                table[f"PyExc_{obj.__name__}"] = id(obj)
        for fname in math_symbols:
            try:
                table[fname] = self.helperlib.c_helpers[fname]
            except KeyError:
                raise NoJitUnavailableError(f"no C math helper {fname}") from None
        for py_name, addr in self.nrt.c_helpers.items():
            table[py_name if py_name.startswith("_") else "NRT_" + py_name] = addr
        return table

    def make_kernel(self, overload: dict[str, Any]) -> Any:
        """The callable of one exported compiled signature (its wrapper; no type check: see
        :mod:`netspectra.jit`)."""
        import ctypes
        import types

        image = ElfImage([overload["object_code"]], self.table, self.nrt_image.defined)
        addr = image.address(overload["wrapper"])
        gv = image.address(overload["env_name"])
        # an environment other than the kernel's own (a callee's, set by numba when it made that callee)
        # would be read as NULL here: refused (none of NetSpectra's kernels reads one)
        others = sorted(
            n for n in image.referenced if n.startswith(_ENV_PREFIX) and n != overload["env_name"]
        )
        if others:
            raise NoJitUnavailableError(f"{overload['qualname']}: reads other environments {others[:3]}")
        if not addr or not gv:
            raise NoJitUnavailableError(
                f"{overload['qualname']}: wrapper or environment missing in its object"
            )
        modname = overload["modname"]
        module = sys.modules.get(modname)
        # numba's _rebuild_env: the module's namespace as the environment's globals, the constants
        env = self.dynfunc.Environment(vars(module) if module is not None else {"__name__": modname})
        env.consts[:] = pickle.loads(overload["consts"])
        # numba's JITCPUCodegen.set_env
        ctypes.c_void_p.from_address(gv).value = id(env)
        # numba's CPUContext.get_executable
        return self.dynfunc.make_function(
            module if module is not None else types.SimpleNamespace(__name__=modname),
            overload["qualname"].split(".")[-1],
            f"compiled wrapper for {overload['qualname']!r}",
            addr,
            env,
            (image, env),
        )


# --------------------------------------------------------------------------------------------------
# A linker for numba's x86-64 ELF relocatable objects
# --------------------------------------------------------------------------------------------------

#: The mangled names of numba's environment globals (``_ZN08NumbaEnv`` + the function's name).
_ENV_PREFIX = "_ZN08NumbaEnv"
_PROT_READ, _PROT_WRITE, _PROT_EXEC = 1, 2, 4
_MAP_PRIVATE, _MAP_ANONYMOUS = 0x02, 0x20
_R_X86_64_64, _R_X86_64_PC64 = 1, 24
_SHN_UNDEF, _SHN_ABS, _SHN_COMMON = 0, 0xFFF1, 0xFFF2
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR, _SHF_TLS = 0x1, 0x2, 0x4, 0x400
_SHT_PROGBITS, _SHT_SYMTAB, _SHT_RELA, _SHT_NOBITS, _SHT_REL = 1, 2, 4, 8, 9
_STB_LOCAL, _STB_WEAK = 0, 2
_PAGE = 4096

_LIBC: list[Any] = []


def _libc() -> Any:
    if not _LIBC:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        libc.mprotect.restype = ctypes.c_int
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _LIBC.append(libc)
    return _LIBC[0]


def _map(size: int) -> int:
    """A new private anonymous read-write mapping of ``size`` bytes (whole pages), never unmapped: kernels
    live as long as the process, as numba's do."""
    import ctypes

    size = max(_PAGE, (size + _PAGE - 1) // _PAGE * _PAGE)
    addr = _libc().mmap(None, size, _PROT_READ | _PROT_WRITE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise NoJitUnavailableError(f"mmap failed: {os.strerror(ctypes.get_errno())}")
    return int(addr)


class ElfImage:
    """x86-64 ELF relocatable objects linked into this process: the sections that occupy memory copied
    into two mappings (code: read-write while relocated, then read-execute; data and common symbols:
    read-write), the relocations applied, every defined symbol's address known.

    numba compiles for its JIT with the static relocation model and the large code model, so its objects
    hold only absolute 64-bit relocations (``R_X86_64_64``) in code and data, and PC-relative 64-bit
    ones in ``.eh_frame`` (unwind tables, not loaded: nothing unwinds through the kernels). Anything
    else — another relocation type, REL relocations, thread-local or constructor sections, an
    unresolved name — raises :class:`NoJitUnavailableError`. A name defined by several objects (numba's
    ``linkonce_odr`` copies of shared helpers) is taken from the first; an undefined one from the image's
    own definitions, ``extra`` (another image's), ``table`` (numba's helpers), else the process
    (``dlsym``: the C API, libc, libm)."""

    def __init__(
        self, objects: list[bytes], table: dict[str, int], extra: dict[str, int] | None = None
    ) -> None:
        import ctypes

        parsed = [self._parse(o) for o in objects]
        sizes = {"code": 0, "data": 0}
        places: list[dict[int, tuple[str, int]]] = []
        for sections, _syms, _relas in parsed:
            where = {}
            for idx, sec in sections.items():
                kind = "code" if sec["exec"] else "data"
                off = (sizes[kind] + sec["align"] - 1) // sec["align"] * sec["align"]
                where[idx] = (kind, off)
                sizes[kind] = off + sec["size"]
            places.append(where)
        # common symbols (numba's environment pointers are common globals): zeroed, one per name
        commons: dict[str, int] = {}
        for _sections, syms, _relas in parsed:
            for name, shndx, value, _bind, st_size in syms:
                if shndx == _SHN_COMMON and name not in commons:
                    align = max(value, 1)
                    off = (sizes["data"] + align - 1) // align * align
                    commons[name] = off
                    sizes["data"] = off + st_size
        base = {"code": _map(sizes["code"]), "data": _map(sizes["data"])}
        self.base = base

        def addr_of(where: dict[int, tuple[str, int]], shndx: int) -> int:
            kind, off = where[shndx]
            return base[kind] + off

        defined: dict[str, int] = {}
        for (sections, syms, _relas), where in zip(parsed, places, strict=True):
            for idx, sec in sections.items():
                if sec["data"] is not None:
                    ctypes.memmove(addr_of(where, idx), sec["data"], sec["size"])
            for name, shndx, value, bind, _size in syms:
                if name and bind != _STB_LOCAL and name not in defined:
                    if shndx in where:
                        defined[name] = addr_of(where, shndx) + value
                    elif shndx == _SHN_ABS:
                        defined[name] = value
        for name, off in commons.items():
            defined.setdefault(name, base["data"] + off)
        self.defined = defined
        process = ctypes.CDLL(None)
        extra = extra or {}
        self.referenced: set[str] = set()
        for (_sections, syms, relas), where in zip(parsed, places, strict=True):
            for target, entries in relas.items():
                if target not in where:
                    continue  # .eh_frame (checked by _parse: no other section is left out)
                for offset, kind, symidx, addend in entries:
                    name, shndx, value, bind, _size = syms[symidx]
                    if name and bind != _STB_LOCAL:
                        self.referenced.add(name)
                    if shndx in where and (bind == _STB_LOCAL or not name):
                        s_addr = addr_of(where, shndx) + value  # a local symbol or a section
                    elif name in defined:
                        s_addr = defined[name]
                    elif name in extra:
                        s_addr = extra[name]
                    elif name in table:
                        s_addr = table[name]
                    else:
                        try:
                            s_addr = ctypes.cast(getattr(process, name), ctypes.c_void_p).value or 0
                        except AttributeError:
                            s_addr = 0
                        if not s_addr:
                            raise NoJitUnavailableError(
                                f"unresolved symbol {name!r} in a kernel's object code"
                            )
                    place = addr_of(where, target) + offset
                    if kind == _R_X86_64_64:
                        value64 = s_addr + addend
                    elif kind == _R_X86_64_PC64:
                        value64 = s_addr + addend - place
                    else:
                        raise NoJitUnavailableError(f"relocation type {kind} (symbol {name!r}) not supported")
                    ctypes.c_uint64.from_address(place).value = value64 & 0xFFFFFFFFFFFFFFFF
        # W^X: the code is never writable and executable at once
        code_size = max(_PAGE, (sizes["code"] + _PAGE - 1) // _PAGE * _PAGE)
        if _libc().mprotect(base["code"], code_size, _PROT_READ | _PROT_EXEC) != 0:
            raise NoJitUnavailableError(f"mprotect read-execute refused: {os.strerror(ctypes.get_errno())}")

    def address(self, name: str) -> int:
        """The address of defined symbol ``name`` (0 where none)."""
        return self.defined.get(name, 0)

    @staticmethod
    def _parse(data: bytes) -> tuple[dict[int, dict[str, Any]], list[tuple[Any, ...]], dict[int, list[Any]]]:
        """An ELF64 little-endian x86-64 relocatable object: its sections that occupy memory (index:
        size, alignment, executable, bytes or None for NOBITS), its symbols (name, section index, value,
        binding, size) and its relocations with addends by the section they apply to."""
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise NoJitUnavailableError("not an ELF64 little-endian object")
        e_type, e_machine = struct.unpack_from("<HH", data, 16)
        if e_type != 1 or e_machine != 62:
            raise NoJitUnavailableError("not an x86-64 relocatable object")
        (e_shoff,) = struct.unpack_from("<Q", data, 0x28)
        e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        heads = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
        names_at = heads[e_shstrndx][4]

        def section_name(i: int) -> bytes:
            off = names_at + heads[i][0]
            return data[off : data.index(b"\0", off)]

        sections: dict[int, dict[str, Any]] = {}
        skipped: set[int] = set()
        syms: list[tuple[Any, ...]] = []
        relas: dict[int, list[Any]] = {}
        for i, (_nm, sh_type, flags, _a, off, size, link, _info, align, _es) in enumerate(heads):
            if sh_type == _SHT_REL:
                raise NoJitUnavailableError("REL relocations (without addends) not supported")
            if flags & _SHF_ALLOC:
                name = section_name(i)
                if name.startswith(b".eh_frame"):
                    skipped.add(i)
                    continue
                if flags & _SHF_TLS or name.startswith(
                    (b".init_array", b".fini_array", b".ctors", b".dtors")
                ):
                    raise NoJitUnavailableError(f"section {name.decode(errors='replace')} not supported")
                if sh_type not in (_SHT_PROGBITS, _SHT_NOBITS):
                    raise NoJitUnavailableError(f"section {name.decode(errors='replace')} of type {sh_type}")
                if size:
                    sections[i] = {
                        "size": size,
                        "align": max(align, 1),
                        "exec": bool(flags & _SHF_EXECINSTR),
                        "data": None if sh_type == _SHT_NOBITS else data[off : off + size],
                    }
            elif sh_type == _SHT_SYMTAB:
                stroff = heads[link][4]
                for j in range(size // 24):
                    st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from(
                        "<IBBHQQ", data, off + j * 24
                    )
                    name = data[stroff + st_name : data.index(b"\0", stroff + st_name)].decode()
                    syms.append((name, st_shndx, st_value, st_info >> 4, st_size))
        for _nm, sh_type, _f, _a, off, size, _link, info, _al, _es in heads:
            if sh_type == _SHT_RELA and heads[info][2] & _SHF_ALLOC:
                if info not in sections and info not in skipped and heads[info][5]:
                    raise NoJitUnavailableError("relocations for a section not loaded")
                relas[info] = [
                    (r_off, r_info & 0xFFFFFFFF, r_info >> 32, addend)
                    for r_off, r_info, addend in struct.iter_unpack("<QQq", data[off : off + size])
                ]
        return sections, syms, relas


# --------------------------------------------------------------------------------------------------
# The loaded export
# --------------------------------------------------------------------------------------------------


class Loaded:
    """The current export of this process and numba's runtime for it: the kernels' callables are made
    on first request, per compiled signature."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundle = bundle
        self.runtime = Runtime(bundle["nrt_object"], bundle["math_symbols"])
        self._lock = threading.Lock()

    def overloads(self, key: str) -> list[tuple[list[tuple[Any, ...]], Any]]:
        """``(argument specs, callable)`` of every exported compiled signature of kernel ``key``
        (``module:qualname``); empty where none is exported."""
        with self._lock:
            return [
                (list(map(tuple, o["args"])), self.runtime.make_kernel(o))
                for o in self.bundle["kernels"].get(key, [])
            ]


def load(path: Path | None = None) -> Loaded:
    """The current export (``path``, default :func:`export_path`), loaded; :class:`NoJitUnavailableError`
    where there is none to use (see the module docstring)."""
    if not platform_supported():
        raise NoJitUnavailableError("not x86-64 Linux CPython")
    path = path or export_path()
    if path is None:
        raise NoJitUnavailableError("no cache directory")
    return Loaded(read_export(path))
