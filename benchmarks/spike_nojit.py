"""Research spike (not imported by the product): call NetSpectra's cached numba kernels WITHOUT importing
the ``numba`` package, and measure what that saves at start-up. See ``benchmarks/SPIKE_NOJIT.md``.
Superseded by :mod:`netspectra.jit` (with :mod:`netspectra.nojit_load`, :mod:`netspectra.nojit_export`);
kept as the spike's record.

Sub-commands (run with ``PYTHONPATH=src``):

``export DIR``
    In a process WITH numba: runs ``netspectra analyze`` of a capture in-process (the kernels are loaded
    from numba's cache or compiled), then runs it again with every kernel that analyze calls from Python
    wrapped by a recorder. Writes ``DIR/kernels.bin`` (per compiled signature: the library's object code,
    the CPython wrapper's symbol, the environment's name and pickled constants, the argument types; plus
    the NRT's own object code and the names of the C math helpers numba registers) and ``DIR/calls.pkl``
    (for each kernel the first call's arguments, the arguments after the call and the result: numba's
    answers). Two extra kernels are recorded by direct calls: ``hash_rows`` (allocates and returns an
    array: NRT) and ``decode_records`` with too short an array (raises ``ValueError``).
``check DIR [llvmlite|elf]``
    In a fresh process that never imports ``numba``: loads numba's three C extension modules by path,
    gives the kernels' external names numba's addresses, loads the NRT's and the kernels' object code
    (llvmlite's MCJIT, or :class:`ElfImage`: a linker in Python, no llvmlite), makes the callables with
    ``_dynfunc.make_function`` and calls them with the recorded arguments: every output must equal
    numba's bit for bit; the exception must be numba's. Asserts ``"numba" not in sys.modules``.
``e2e DIR CAPTURE nojit|elf|numba``
    ``netspectra analyze CAPTURE`` in this process, its kernels the numba-free ones (through a stand-in
    ``numba`` module, for measuring only) or numba's.
``time DIR [N]`` / ``time-e2e DIR [N]``
    Alternating fresh processes, medians: the kernels' load and first calls by phase (numba-free, numba,
    numba with :func:`netspectra.lazy.load_cached_kernels_lean` as the command line installs it); and
    ``analyze`` of one packet, whole process.
"""

from __future__ import annotations

import sys
import time

T_START = time.perf_counter()

import pickle  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

CAPTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "captures" / "gnutella.pcap"
#: kernels.bin: this line, then a pickle holding only builtins (bytes, str, tuples, lists, dicts)
MAGIC = b"netspectra-nojit-spike-1\n"


# --------------------------------------------------------------------------------------------------
# Step 1: export (with numba)
# --------------------------------------------------------------------------------------------------


def _arg_spec(t: Any) -> tuple:
    """A numba argument type as plain data the numba-free loader checks a call against."""
    from numba.core import types
    from numba.np import numpy_support

    if isinstance(t, types.Array):
        dt = numpy_support.as_dtype(t.dtype)
        return ("array", dt.str, t.ndim, t.layout, not t.mutable, t.aligned)
    if isinstance(t, (types.Integer, types.Float, types.Boolean)):
        return ("scalar", str(numpy_support.as_dtype(t)))
    if isinstance(t, types.NoneType):
        return ("none",)
    raise NotImplementedError(f"argument type {t!r} has no numba-free check in this spike")


def _copy(v: Any) -> Any:
    import numpy as np

    if isinstance(v, np.ndarray):
        c = v.copy(order="K")
        c.setflags(write=v.flags.writeable)
        return c
    return v


def _export_overload(disp: Any, sig: tuple) -> dict:
    """What a numba-free process needs to call the compiled ``sig`` of ``disp``."""
    cres = disp.overloads[sig]
    lib = cres.library
    fndesc = cres.fndesc
    consts = pickle.dumps(list(cres.environment.consts), protocol=5)
    return {
        "key": f"{disp.py_func.__module__}.{disp.py_func.__qualname__}",
        "modname": fndesc.modname,
        "qualname": fndesc.qualname,
        "object_code": bytes(lib._compiled_object or lib._spike_object),
        "wrapper": fndesc.llvm_cpython_wrapper_name,
        "env_name": fndesc.env_name,
        "consts": consts,
        "args": [_arg_spec(t) for t in sig],
        "restype": str(cres.signature.return_type),
    }


def export(out: Path) -> None:
    import numpy as np

    from netspectra.cli.main import main

    def analyze() -> None:
        sys.argv = ["netspectra", "-q", "analyze", str(CAPTURE), "--top", "1"]
        try:
            main()
        except SystemExit as e:
            assert not e.code, e.code

    # numba hands a cached library's object code to LLVM and drops it: keep a copy on the library
    from numba.core import codegen

    own_hook = codegen.JITCodeLibrary._object_getbuffer_hook.__func__

    def keep_object(cls: Any, ll_module: Any) -> Any:
        buf = own_hook(cls, ll_module)
        if buf is not None:
            ll_module._CPUCodeLibrary__library._spike_object = bytes(buf)
        return buf

    codegen.JITCodeLibrary._object_getbuffer_hook = classmethod(keep_object)
    analyze()  # loads (or compiles and caches) every kernel analyze uses
    from numba.core.dispatcher import Dispatcher

    used: dict[int, Any] = {}
    for name, mod in list(sys.modules.items()):
        if name.startswith("netspectra") and mod is not None:
            for o in vars(mod).values():
                if isinstance(o, Dispatcher) and o.overloads:
                    used[id(o)] = o
    calls: dict[str, dict] = {}
    wanted: list[tuple[Any, tuple]] = []

    def recorder(disp: Any) -> Any:
        key = f"{disp.py_func.__module__}.{disp.py_func.__qualname__}"

        def rec(*args: Any, **kw: Any) -> Any:
            assert not kw, "keyword arguments: not recorded by this spike"
            before = [_copy(a) for a in args]
            res = disp(*args)
            if key not in calls:
                sig = tuple(disp.typeof_pyval(a) for a in args)
                assert sig in disp.overloads, sig
                calls[key] = {"args": before, "after": [_copy(a) for a in args], "result": _copy(res)}
                wanted.append((disp, sig))
            return res

        return rec

    # every module attribute that is one of those kernels: what analyze calls from Python
    patched = []
    for name, mod in list(sys.modules.items()):
        if name.startswith("netspectra") and mod is not None:
            for attr, o in list(vars(mod).items()):
                if id(o) in used:
                    setattr(mod, attr, recorder(o))
                    patched.append((mod, attr, o))
    analyze()
    for mod, attr, o in patched:
        setattr(mod, attr, o)

    # two more: a kernel that allocates and returns an array (NRT), and one that raises on bad input
    from netspectra.capture.decode import decode_records
    from netspectra.sketches.murmur import hash_rows

    keys = np.arange(7 * 13, dtype=np.uint8).reshape(7, 13)
    res = hash_rows(keys, 42)
    sig = tuple(hash_rows.typeof_pyval(a) for a in (keys, 42))
    calls["netspectra.sketches.murmur.hash_rows"] = {"args": [keys, 42], "after": [keys, 42], "result": res}
    wanted.append((hash_rows, sig))
    dr = calls["netspectra.capture.decode.decode_records"]
    bad = [_copy(a) for a in dr["args"]]
    bad[7] = bad[7][:0]  # out_ts shorter than n
    try:
        decode_records(*bad)
    except ValueError as e:
        calls["decode_records/bad"] = {"args": bad, "raises": (type(e), e.args)}
    else:
        raise AssertionError("decode_records accepted a short output column")

    kernels = {}
    for disp, sig in wanted:
        k = _export_overload(disp, sig)
        kernels[k["key"]] = k

    # the NRT's own functions (NRT_incref, NRT_decref, atomics) as numba compiles them
    from numba.core import intrinsics
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target
    from numba.core.runtime import nrtdynmod

    with global_compiler_lock:
        ir_mod, nrt_lib = nrtdynmod.create_nrt_module(cpu_target.target_context)
        nrt_lib.enable_object_caching()
        nrt_lib.add_ir_module(ir_mod)
        nrt_lib.finalize()
    import llvmlite
    import numba

    bundle = {
        "versions": (numba.__version__, llvmlite.__version__, sys.version_info[:2]),
        "nrt_object": bytes(nrt_lib._get_compiled_object()),
        "math_symbols": sorted(intrinsics.INTR_MATH),
        "kernels": kernels,
    }
    for k in kernels.values():
        assert b"numba" not in k["consts"], f"{k['key']}: environment constants refer to numba"
    out.mkdir(parents=True, exist_ok=True)
    (out / "kernels.bin").write_bytes(MAGIC + pickle.dumps(bundle, protocol=5))
    with open(out / "calls.pkl", "wb") as fh:
        pickle.dump(calls, fh, protocol=5)
    for key, k in kernels.items():
        print(f"exported {key}: {len(k['object_code'])} B object, {len(k['args'])} args -> {k['restype']}")
    print(f"NRT object {len(bundle['nrt_object'])} B; calls recorded: {sorted(calls)}")


# --------------------------------------------------------------------------------------------------
# Step 2: the numba-free loader
# --------------------------------------------------------------------------------------------------


class NoJitLoader:
    """Loads exported kernels and makes them callable without numba's Python package: only its three C
    extension modules (loaded by path under their own dotted names, the package ``numba`` itself never
    imported), and either llvmlite's MCJIT (``backend="llvmlite"``) or :class:`ElfImage`, a loader of
    the relocatable objects in pure Python (``backend="elf"``: no llvmlite either)."""

    def __init__(self, backend: str = "llvmlite") -> None:
        import importlib.util
        from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader

        self.backend = backend
        spec = importlib.util.find_spec("numba")  # finds the package, does not execute it
        assert spec is not None and spec.submodule_search_locations
        root = Path(spec.submodule_search_locations[0])

        def ext(dotted: str) -> Any:
            rel = Path(*dotted.split(".")[1:])
            for suffix in EXTENSION_SUFFIXES:
                path = root / rel.parent / (rel.name + suffix)
                if path.exists():
                    break
            else:
                raise ImportError(f"no extension module {dotted} under {root}")
            loader = ExtensionFileLoader(dotted, str(path))
            mspec = importlib.util.spec_from_file_location(dotted, path, loader=loader)
            mod = importlib.util.module_from_spec(mspec)
            loader.exec_module(mod)
            sys.modules[dotted] = mod  # so that a later `import numba` reuses them (single-phase init)
            return mod

        self.helperlib = ext("numba._helperlib")
        self.dynfunc = ext("numba._dynfunc")
        self.nrt = ext("numba.core.runtime._nrt_python")
        self._serialize_stub()
        self.nrt.memsys_use_cpython_allocator()  # numba.core.runtime.nrt does this at import
        self.objects: list[Any] = []  # keep the object files, engine or image (their memory) alive
        self.kernels: dict[str, Any] = {}

    def _serialize_stub(self) -> None:
        """numba's C helper ``numba_unpickle`` (static exceptions' arguments, a returned array's class)
        gets ``_numba_unpickle`` from ``numba.core.serialize`` on its first call, through
        ``PyImport_ImportModule``, which imports the top-level package ``numba`` too (``__import__`` of a
        dotted name without a from-list returns the top package). The helper keeps the function it got in
        a static variable: it is called here once, with ``__import__`` answering that one name with a
        stand-in holding numba's function (a memo and ``pickle.loads``, as cloudpickle's ``loads`` is),
        and nothing of it stays in ``sys.modules`` (a later ``import numba`` is numba's own)."""
        import builtins
        import ctypes
        import types

        memo: dict = {}

        def _numba_unpickle(address: int, bytedata: bytes, hashed: bytes) -> Any:
            key = (address, hashed)
            try:
                return memo[key]
            except KeyError:
                memo[key] = obj = pickle.loads(bytedata)
                return obj

        name = "numba.core.serialize"
        stub = types.ModuleType(name, "numba-free stand-in (spike): numba_unpickle's function")
        stub._numba_unpickle = _numba_unpickle  # type: ignore[attr-defined]
        own_import = builtins.__import__

        def answer(n: str, g: Any = None, lc: Any = None, fromlist: Any = (), level: int = 0) -> Any:
            return stub if n == name and level == 0 else own_import(n, g, lc, fromlist, level)

        unpickle = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)(
            self.helperlib.c_helpers["unpickle"]
        )
        data = pickle.dumps(None)
        assert name not in sys.modules
        builtins.__import__, sys.modules[name] = answer, stub
        try:
            assert unpickle(data, len(data), b"\0" * 20) is None
        finally:
            builtins.__import__ = own_import
            del sys.modules[name]

    def symbols(self, math_symbols: list[str]) -> dict[str, int]:
        """The addresses numba gives the code's external names: what its ``_load_global_helpers``,
        ``c_math_functions.install`` and ``rtsys.initialize`` register with llvmlite (the rest, the
        Python C API and libc, the engine finds in the process)."""
        import builtins

        table = {"_Py_NoneStruct": id(None)}
        for helpers in (self.helperlib.c_helpers, self.dynfunc.c_helpers):
            for py_name, addr in helpers.items():
                table["numba_" + py_name] = addr
        for obj in builtins.__dict__.values():
            if isinstance(obj, type) and issubclass(obj, BaseException):
                table[f"PyExc_{obj.__name__}"] = id(obj)
        for fname in math_symbols:
            table[fname] = self.helperlib.c_helpers[fname]
        for py_name, addr in self.nrt.c_helpers.items():
            table[py_name if py_name.startswith("_") else "NRT_" + py_name] = addr
        return table

    def _llvmlite_image(self, table: dict[str, int], objects: list[bytes]) -> Any:
        import llvmlite.binding as ll

        for name, addr in table.items():
            ll.add_symbol(name, addr)
        ll.initialize_native_target()
        ll.initialize_native_asmprinter()
        target = ll.Target.from_triple(ll.get_process_triple())
        # numba's JITCPUCodegen options; the code is already machine code, the target machine only
        # drives the engine's linking
        tm = target.create_target_machine(
            cpu=ll.get_host_cpu_name(), reloc="static", codemodel="jitdefault", jit=True
        )
        engine = ll.create_mcjit_compiler(ll.parse_assembly(""), tm)
        for code in objects:
            obj = ll.ObjectFileRef.from_data(code)
            engine.add_object_file(obj)
            self.objects.append(obj)
        engine.finalize_object()
        self.objects.append(engine)
        return engine.get_function_address, engine.get_global_value_address

    def load(self, path: Path, keys: list[str] | None = None) -> None:
        import ctypes
        import types

        data = path.read_bytes()
        assert data.startswith(MAGIC), "not a kernels file of this spike"
        bundle = pickle.loads(data[len(MAGIC) :])
        table = self.symbols(bundle["math_symbols"])
        chosen = [bundle["kernels"][k] for k in (keys or bundle["kernels"])]
        objects = [bundle["nrt_object"]] + [k["object_code"] for k in chosen]
        if self.backend == "elf":
            image = ElfImage(objects, table)
            self.objects.append(image)
            function_address = global_address = image.address
        else:
            function_address, global_address = self._llvmlite_image(table, objects)
        for k in chosen:
            addr = function_address(k["wrapper"])
            assert addr, f"{k['key']}: no {k['wrapper']} in its object code"
            env = self.dynfunc.Environment({"__name__": k["modname"]})
            env.consts[:] = pickle.loads(k["consts"])
            gv = global_address(k["env_name"])
            assert gv, f"{k['key']}: no environment variable {k['env_name']}"
            ctypes.c_void_p.from_address(gv).value = id(env)
            module = types.SimpleNamespace(__name__=k["modname"])
            fn = self.dynfunc.make_function(
                module,
                k["qualname"].split(".")[-1],
                f"compiled wrapper for {k['qualname']!r}",
                addr,
                env,
                (self, env),
            )
            self.kernels[k["key"]] = CheckedKernel(k["key"], fn, k["args"])


class ElfImage:
    """The kernels' x86-64 ELF relocatable objects, linked in this process by Python code: the sections
    that occupy memory copied into one anonymous mapping, the relocations applied, every symbol's
    address known. numba compiles for the JIT with the static relocation model and the large code model,
    so its objects hold only absolute 64-bit relocations (``R_X86_64_64``) in code and data and
    PC-relative 64-bit ones (``R_X86_64_PC64``) in ``.eh_frame`` (unwind tables: not loaded here, as
    nothing unwinds through numba's code; LLVM registers them for debuggers). Any other relocation type
    is refused. A symbol defined by several objects (numba's linkonce_odr copies of shared helpers) is
    taken from the first; an undefined one from ``table`` (numba's helpers), else from the process
    (``dlsym``: the Python C API, libc, libm)."""

    R_X86_64_64 = 1
    SHN_COMMON = 0xFFF2
    R_X86_64_PC64 = 24

    def __init__(self, objects: list[bytes], table: dict[str, int]) -> None:
        import ctypes
        import mmap
        import struct

        parsed = [self._parse(o) for o in objects]
        size = 0
        places: list[dict[int, int]] = []
        for sections, _syms, _relas in parsed:
            where = {}
            for idx, sec in sections.items():
                size = (size + sec["align"] - 1) // sec["align"] * sec["align"]
                where[idx] = size
                size += sec["size"]
            places.append(where)
        # common symbols (numba's environment pointers are common globals): zeroed, one per name
        commons: dict[str, int] = {}
        for _sections, syms, _relas in parsed:
            for name, shndx, value, _bind, st_size in syms:
                if shndx == self.SHN_COMMON and name not in commons:
                    align = max(value, 1)
                    size = (size + align - 1) // align * align
                    commons[name] = size
                    size += st_size
        self._map = mmap.mmap(-1, max(size, 1), prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        self.base = base
        # copy the sections, collect the symbols every object defines
        defined: dict[str, int] = {}
        for (sections, syms, _relas), where in zip(parsed, places, strict=True):
            for idx, sec in sections.items():
                if sec["data"] is not None:
                    self._map[where[idx] : where[idx] + sec["size"]] = sec["data"]
            for name, shndx, value, bind, _size in syms:
                if shndx in where and bind != 0 and name not in defined:  # global or weak, first wins
                    defined[name] = base + where[shndx] + value
        for name, off in commons.items():
            defined.setdefault(name, base + off)
        self.defined = defined
        process = ctypes.CDLL(None)
        pack = struct.Struct("<Q").pack_into
        for (_sections, syms, relas), where in zip(parsed, places, strict=True):
            for target, entries in relas.items():
                if target not in where:
                    continue  # a section not loaded (.eh_frame)
                for offset, kind, symidx, addend in entries:
                    name, shndx, value, bind, _size = syms[symidx]
                    if shndx in where and (bind == 0 or not name):
                        s_addr = base + where[shndx] + value  # local symbol or section
                    elif name in defined:
                        s_addr = defined[name]
                    elif name in table:
                        s_addr = table[name]
                    else:
                        try:
                            s_addr = ctypes.cast(getattr(process, name), ctypes.c_void_p).value or 0
                        except AttributeError:
                            raise ImportError(f"unresolved symbol {name} in a kernel's object code") from None
                    p_off = where[target] + offset
                    if kind == self.R_X86_64_64:
                        pack(self._map, p_off, (s_addr + addend) & 0xFFFFFFFFFFFFFFFF)
                    elif kind == self.R_X86_64_PC64:
                        pack(self._map, p_off, (s_addr + addend - (base + p_off)) & 0xFFFFFFFFFFFFFFFF)
                    else:
                        raise ImportError(f"relocation type {kind} (symbol {name}) not supported")

    def address(self, name: str) -> int:
        return self.defined.get(name, 0)

    @staticmethod
    def _parse(data: bytes) -> tuple[dict[int, dict], list[tuple], dict[int, list[tuple]]]:
        """An ELF64 little-endian x86-64 relocatable object: its sections that occupy memory (index:
        size, alignment, bytes or None for NOBITS), its symbols (name, section index, value, binding)
        and its relocations with addends by the section they apply to."""
        import struct

        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ImportError("not an ELF64 little-endian object")
        e_type, e_machine = struct.unpack_from("<HH", data, 16)
        if e_type != 1 or e_machine != 62:
            raise ImportError("not an x86-64 relocatable object")
        (e_shoff,) = struct.unpack_from("<Q", data, 0x28)
        e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
        heads = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
        SHF_ALLOC, SHT_NOBITS, SHT_SYMTAB, SHT_RELA, SHT_REL = 0x2, 8, 2, 4, 9
        sections = {}
        syms: list[tuple] = []
        relas: dict[int, list[tuple]] = {}
        for i, (_nm, sh_type, flags, _a, off, size, link, _info, align, _es) in enumerate(heads):
            if sh_type == SHT_REL:
                raise ImportError("REL relocations (without addends) not supported")
            if flags & SHF_ALLOC and size:
                name_off = heads[e_shstrndx][4] + _nm
                name = data[name_off : data.index(b"\0", name_off)]
                if name.startswith(b".eh_frame"):
                    continue
                sections[i] = {
                    "size": size,
                    "align": max(align, 1),
                    "data": None if sh_type == SHT_NOBITS else data[off : off + size],
                }
            elif sh_type == SHT_SYMTAB:
                stroff = heads[link][4]
                for j in range(size // 24):
                    st_name, st_info, _other, st_shndx, st_value, _sz = struct.unpack_from(
                        "<IBBHQQ", data, off + j * 24
                    )
                    name = data[stroff + st_name : data.index(b"\0", stroff + st_name)].decode()
                    syms.append((name, st_shndx, st_value, st_info >> 4, _sz))
        for _nm, sh_type, _f, _a, off, size, _link, info, _al, _es in heads:
            if sh_type == SHT_RELA:
                relas[info] = [
                    (r_off, r_info & 0xFFFFFFFF, r_info >> 32, addend)
                    for r_off, r_info, addend in struct.iter_unpack("<QQq", data[off : off + size])
                ]
        return sections, syms, relas


class CheckedKernel:
    """A loaded kernel with the type check numba's dispatcher did: the compiled wrapper unboxes its
    arguments as the compiled types (an array of another dtype, rank or layout would be read as if it
    were one of those), so a call whose arguments numba would type differently is refused here (a
    production version would hand it to numba: import it, compile)."""

    def __init__(self, key: str, fn: Any, specs: list[tuple]) -> None:
        self.key, self.fn, self.specs = key, fn, specs
        self.call = self._fast_call

    def __call__(self, *args: Any) -> Any:
        return self.call(*args)

    def _slow(self, args: tuple) -> Any:
        """The generated check refused ``args``: why (or, where it was too strict, the call)."""
        if len(args) != len(self.specs):
            raise TypeError(f"{self.key}: {len(args)} arguments, compiled for {len(self.specs)}")
        for i, (a, spec) in enumerate(zip(args, self.specs, strict=True)):
            if _typeof(a) != spec:
                raise TypeError(f"{self.key}: argument {i} is {_typeof(a)}, compiled for {spec}")
        return self.fn(*args)

    @property
    def _fast_call(self) -> Any:
        """A function generated for the signature: one expression testing every argument as numba's
        typeof would type it (~1 µs for analyze's widest kernel, against ~13 µs for :func:`_typeof`
        argument by argument), then the compiled wrapper."""
        import numpy as np

        names = [f"a{i}" for i in range(len(self.specs))]
        ns: dict[str, Any] = {"nd": np.ndarray, "fn": self.fn, "slow": self._slow, "np": np}
        conds = []
        for i, spec in enumerate(self.specs):
            a = names[i]
            if spec[0] == "array":
                _k, dt, ndim, layout, readonly, aligned = spec
                ns[f"d{i}"] = np.dtype(dt)
                layout_test = {
                    "C": f"f{i}.c_contiguous",
                    "F": f"(f{i}.f_contiguous and not f{i}.c_contiguous)",
                    "A": f"not (f{i}.c_contiguous or f{i}.f_contiguous)",
                }[layout]
                conds.append(
                    f"type({a}) is nd and {a}.ndim == {ndim} and ({a}.dtype is d{i} or {a}.dtype == d{i})"
                    f" and {layout_test.replace(f'f{i}.', f'(f{i} := {a}.flags).', 1)}"
                    f" and f{i}.writeable is {not readonly} and f{i}.aligned is {aligned}"
                )
            elif spec == ("none",):
                conds.append(f"{a} is None")
            elif spec == ("scalar", "bool"):
                conds.append(f"(type({a}) is bool or type({a}) is np.bool_)")
            elif spec == ("scalar", "int64"):
                conds.append(f"(type({a}) is np.int64 or (type({a}) is int and -{2**63} <= {a} < {2**63}))")
            elif spec == ("scalar", "float64"):
                conds.append(f"(type({a}) is float or type({a}) is np.float64)")
            else:  # another numpy scalar kind: its own type only
                ns[f"t{i}"] = np.dtype(spec[1]).type
                conds.append(f"type({a}) is t{i}")
        params = ", ".join(names)
        src = (
            f"def call(*args):\n"
            f"    if len(args) == {len(names)}:\n"
            f"        {params}{',' if len(names) == 1 else ''} = args\n"
            f"        if {' and '.join(conds) or 'True'}:\n"
            f"            return fn(*args)\n"
            f"    return slow(args)\n"
        )
        exec(compile(src, f"<check of {self.key}>", "exec"), ns)
        return ns["call"]


def _typeof(v: Any) -> tuple:
    """numba's typing of a call argument, for the kinds the spike's kernels take."""
    import numpy as np

    if v is None:
        return ("none",)
    if type(v) is np.ndarray:
        f = v.flags
        layout = "C" if f.c_contiguous else "F" if f.f_contiguous else "A"
        return ("array", v.dtype.str, v.ndim, layout, not f.writeable, f.aligned)
    if isinstance(v, bool | np.bool_):
        return ("scalar", "bool")
    if type(v) is int:
        return ("scalar", "int64" if -(2**63) <= v < 2**63 else "uint64")
    if type(v) is float:
        return ("scalar", "float64")
    if isinstance(v, np.integer | np.floating):
        return ("scalar", str(v.dtype))
    return ("unsupported", type(v).__name__)


def _same(a: Any, b: Any) -> bool:
    import numpy as np

    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    return type(a) is type(b) and a == b


def check(where: Path, backend: str) -> None:
    t0 = time.perf_counter()
    import numpy as np

    t1 = time.perf_counter()
    loader = NoJitLoader(backend)
    loader.load(where / "kernels.bin")
    t2 = time.perf_counter()
    with open(where / "calls.pkl", "rb") as fh:
        calls = pickle.load(fh)
    failures = 0
    for key, kernel in loader.kernels.items():
        call = calls[key]
        args = [_copy(a) for a in call["args"]]
        res = kernel(*args)
        ok = _same(res, call["result"]) and all(_same(a, b) for a, b in zip(args, call["after"], strict=True))
        failures += not ok
        print(
            f"{'OK  ' if ok else 'FAIL'} {key}: result {type(res).__name__}"
            f" {res if np.ndim(res) == 0 else ''}"
        )
    bad = calls["decode_records/bad"]
    try:
        loader.kernels["netspectra.capture.decode.decode_records"](*[_copy(a) for a in bad["args"]])
    except Exception as e:
        ok = (type(e), e.args) == bad["raises"]
        print(f"{'OK  ' if ok else 'FAIL'} decode_records(bad): raised {type(e).__name__}{e.args}")
    else:
        ok = False
        print("FAIL decode_records(bad): did not raise")
    failures += not ok
    # numba's dispatcher's type check, kept: a float array where uint64 words are expected is refused
    kernel = loader.kernels["netspectra.sketches.murmur.hash_rows"]
    try:
        kernel(np.zeros((2, 3), np.float64), 1)
    except TypeError as e:
        print(f"OK   hash_rows(float64 array) refused: {e}")
    else:
        failures += 1
        print("FAIL hash_rows(float64 array) accepted")
    print(f"numba modules: {sorted(m for m in sys.modules if m.startswith('numba'))}")
    assert "numba" not in sys.modules, "numba was imported"
    assert backend != "elf" or "llvmlite" not in sys.modules, "llvmlite was imported"
    print(f"numpy {1e3 * (t1 - t0):.1f} ms, load {len(loader.kernels)} kernels {1e3 * (t2 - t1):.1f} ms")
    assert not failures, f"{failures} failures"


# --------------------------------------------------------------------------------------------------
# Step 3: timing
# --------------------------------------------------------------------------------------------------

#: One fresh process of each variant: the time from the script's start (interpreter up) to every kernel
#: loaded and called once, in phases, printed as one JSON line. The recorded arguments are read right
#: after numpy is imported; their unpickling is not counted.
_CHILD = r"""
import sys, time
t0 = time.perf_counter()
import numpy as np
t_np = time.perf_counter()
import json, pickle
sys.path.insert(0, {bench!r})
with open({calls!r}, "rb") as fh:
    calls = pickle.load(fh)
t_c = time.perf_counter()
phases = {{"numpy": t_np - t0}}
mark = t_c
def phase(name):
    global mark
    now = time.perf_counter()
    phases[name] = now - mark
    mark = now
variant = {variant!r}
if variant in ("nojit", "elf"):
    if variant == "nojit":
        import llvmlite.binding
        phase("llvmlite")
    import spike_nojit
    loader = spike_nojit.NoJitLoader("elf" if variant == "elf" else "llvmlite")
    phase("C extensions + symbols")
    loader.load(spike_nojit.Path({kernels!r}))
    phase("objects + callables")
    kernels = loader.kernels
else:
    if variant == "lean":  # what netspectra.cli.main.main installs before numba is imported
        from netspectra.lazy import (keep_scipy_out_of_numba, keep_unread_modules_out_of_numba,
                                     load_cached_kernels_lean, scan_entry_points_once)
        keep_scipy_out_of_numba(); keep_unread_modules_out_of_numba(); load_cached_kernels_lean()
        scan_entry_points_once()
    import llvmlite.binding
    phase("llvmlite")
    import numba
    phase("numba")
    import importlib
    kernels = {{}}
    for key in calls:
        if "/" in key:
            continue
        mod, _, name = key.rpartition(".")
        kernels[key] = getattr(importlib.import_module(mod), name)
    phase("kernel modules")
for key, k in kernels.items():
    k(*[a.copy() if isinstance(a, np.ndarray) and a.flags.writeable else a for a in calls[key]["args"]])
phase("first calls")
assert variant not in ("nojit", "elf") or "numba" not in sys.modules
assert variant != "elf" or "llvmlite" not in sys.modules
print("TIMING", json.dumps({{k: 1e3 * v for k, v in phases.items()}}))
"""


def timing(where: Path, n: int) -> None:
    import json
    import os
    import statistics
    import subprocess

    bench = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    variants = ("nojit", "elf", "numba", "lean")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for i in range(n + 1):
        for v in variants:
            code = _CHILD.format(
                bench=bench, calls=str(where / "calls.pkl"), kernels=str(where / "kernels.bin"), variant=v
            )
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t
            if out.returncode:
                raise SystemExit(f"{v}: {out.stderr}")
            line = next(ln for ln in out.stdout.splitlines() if ln.startswith("TIMING"))
            phases = json.loads(line.split(" ", 1)[1])
            phases["wall (process)"] = 1e3 * wall
            if i:  # the first round warms the OS cache
                results[v].append(phases)
    print(f"{n} alternating rounds, medians in ms (python {sys.version.split()[0]})")
    for v in variants:
        rows = results[v]
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        kernel = statistics.median(
            sum(x for k, x in r.items() if k not in ("numpy", "wall (process)")) for r in rows
        )
        parts = ", ".join(f"{k} {x:.1f}" for k, x in med.items())
        print(f"  {v:6s} kernels ready+called {kernel:6.1f}  [{parts}]")


# --------------------------------------------------------------------------------------------------
# Step 3b: end to end, `netspectra analyze` with the numba-free kernels
# --------------------------------------------------------------------------------------------------


class _Missing:
    """What the stand-in numba gives for anything but a loaded kernel: NetSpectra's modules only name
    these at import (inlined helpers, intrinsics, ``leading_zeros``); calling one from Python is an
    error that names it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *a: Any, **k: Any) -> Any:
        if len(a) == 1 and callable(a[0]) and not k:  # used as a decorator (intrinsic)
            return _Missing(getattr(a[0], "__qualname__", self.name))
        raise NotImplementedError(f"{self.name}: not loaded numba-free (the spike would import numba here)")

    def __getattr__(self, name: str) -> Any:
        return _Missing(f"{self.name}.{name}")


def install_standin_numba(kernels: dict[str, Any]) -> None:
    """A stand-in package ``numba`` in ``sys.modules`` whose ``njit`` gives the numba-free kernel of the
    decorated function where one is loaded (ONLY to measure analyze end to end: a product would have a
    decorator of its own; the loader itself never puts ``numba`` in ``sys.modules``)."""
    import types

    def bind(f: Any) -> Any:
        key = f"{f.__module__}.{f.__qualname__}"
        return kernels.get(key) or _Missing(key)

    def njit(*a: Any, **kw: Any) -> Any:
        return bind(a[0]) if a and callable(a[0]) and not kw else bind

    class StandIn(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            return _Missing(f"{self.__name__}.{name}")

    for name in (
        "numba",
        "numba.core",
        "numba.extending",
        "numba.cpython",
        "numba.cpython.unsafe",
        "numba.cpython.unsafe.numbers",
    ):
        mod = StandIn(name)
        mod.__path__ = []  # type: ignore[attr-defined]
        mod.njit = njit  # type: ignore[attr-defined]
        sys.modules[name] = mod


def e2e(kernels_file: Path, capture: str, variant: str) -> None:
    """``netspectra analyze CAPTURE`` in this process, with the numba-free kernels (``nojit``) or as
    the console script runs it (``numba``); ``nojit``: llvmlite's MCJIT, ``elf``: :class:`ElfImage`."""
    if variant != "numba":
        loader = NoJitLoader("elf" if variant == "elf" else "llvmlite")
        loader.load(kernels_file)
        install_standin_numba(loader.kernels)
    from netspectra.cli.main import run

    sys.argv = ["netspectra", "analyze", capture]
    run()  # as the console script: the process ends at once with the status


def timing_e2e(where: Path, n: int) -> None:
    """Whole processes, alternating: ``netspectra analyze ONE_PACKET`` through ``python -m netspectra``,
    and through this script with numba (``e2e ... numba``) and with the numba-free kernels (``e2e ...
    nojit``); medians of wall and CPU time."""
    import os
    import resource
    import statistics
    import subprocess

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_startup import one_packet_capture

    capture = str(one_packet_capture())
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    bench = str(Path(__file__).resolve().parent)

    def spike(variant: str) -> list[str]:
        # imported, not run as a script: a script's bytecode is compiled at every start (~20 ms here)
        code = (
            f"import sys; sys.path.insert(0, {bench!r}); import spike_nojit; "
            f"spike_nojit.e2e(spike_nojit.Path({str(where / 'kernels.bin')!r}), {capture!r}, {variant!r})"
        )
        return [sys.executable, "-c", code]

    variants = {
        "python -m netspectra analyze": [sys.executable, "-m", "netspectra", "analyze", capture],
        "spike e2e numba": spike("numba"),
        "spike e2e nojit (llvmlite)": spike("nojit"),
        "spike e2e nojit (elf)": spike("elf"),
    }
    res: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    for i in range(n + 1):
        order = list(variants) if i % 2 else list(reversed(variants))
        for v in order:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            out = subprocess.run(variants[v], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wall = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if out.returncode:
                raise SystemExit(f"{v}: {out.stderr.decode()[-2000:]}")
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if i:
                res[v].append((wall, cpu))
    print(f"{n} alternating rounds, analyze of one packet, medians (s)")
    for v, rows in res.items():
        print(
            f"  {v:30s} wall {statistics.median(r[0] for r in rows):.3f}"
            f"  cpu {statistics.median(r[1] for r in rows):.3f}"
        )


if __name__ == "__main__":
    cmd, where = sys.argv[1], Path(sys.argv[2])
    if cmd == "export":
        export(where)
    elif cmd == "check":
        check(where, sys.argv[3] if len(sys.argv) > 3 else "llvmlite")
    elif cmd == "e2e":
        e2e(where / "kernels.bin", sys.argv[3], sys.argv[4])
    elif cmd == "time-e2e":
        timing_e2e(where, int(sys.argv[3]) if len(sys.argv) > 3 else 10)
    elif cmd == "time":
        timing(where, int(sys.argv[3]) if len(sys.argv) > 3 else 10)
    else:
        raise SystemExit(__doc__)
