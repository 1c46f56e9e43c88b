"""numba's start-up work done with less in the command-line process (:mod:`netspectra.numba_lean`, issue
19): the NRT's functions as machine code from a file, ``typeof`` of arrays without ``numpy.ma``, cached
kernels' environments without importing numba's implementation modules. Each runs in a fresh interpreter
(what a command's process does), then still compiles a new kernel."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netspectra.numba_lean import _SYMBOLS_MAGIC

#: A module of cached kernels: one that allocates (the NRT), one that reads an array.
KERNELS = """
import numpy as np
from numba import njit

@njit(cache=True, nogil=True)
def cumulative(a):
    out = np.empty(a.size, np.int64)
    total = 0
    for i in range(a.size):
        total += a[i]
        out[i] = total
    return out

@njit(cache=True, nogil=True)
def zeros(n):
    return np.zeros(n, np.int32)

@njit(cache=True, nogil=True)
def total(a):
    s = 0.0
    for i in range(a.size):
        s += a[i]
    return s
"""

#: The command line's set-up (netspectra.cli.main.main), then the kernels, then a new compilation.
RUN = """
import sys
from netspectra.lazy import load_cached_kernels_lean
load_cached_kernels_lean()
from numba.core.runtime import nrtdynmod
built = []
create = nrtdynmod.create_nrt_module
nrtdynmod.create_nrt_module = lambda ctx: built.append(1) or create(ctx)
import numpy as np, kern
print(kern.cumulative(np.arange(5)).tolist())
print(kern.total(np.arange(4.0)))
print('NRT compiled' if built else 'NRT from file')
print('numpy.ma' in sys.modules, 'numba.np.arraymath' in sys.modules, 'numba.np.arrayobj' in sys.modules)
try:
    kern.zeros(-1)  # raised by numba's implementation of np.zeros (numba.np.arrayobj)
except ValueError as exc:
    print(kern.zeros(2).tolist(), exc)
from numba import njit
print(njit(lambda n: np.arange(1, n + 1).cumsum()[-1])(6))  # compiled now, links the NRT's functions
print(kern.cumulative(np.arange(3)).tolist())
"""


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "kern.py").write_text(textwrap.dedent(KERNELS))
    return {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }


def _run(code: str, env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _nrt_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").rglob("netspectra-nrt-*.bin"))


class _Caches:
    """The kernels' module in one directory of this test module, and numba's cache directory as two
    processes leave it: after :data:`RUN` (the kernels compiled and cached under the command line's
    set-up, the NRT file written) and after :data:`RUN` then :data:`LINKED` (the symbol files written too).
    Made once: a test that starts from one of these states copies it (:meth:`env`) instead of compiling
    again; tests about the first process's own compilation keep their own :func:`_env`."""

    def __init__(self, root: Path) -> None:
        self.source = root / "source"
        self.source.mkdir()
        # numba's cache files are placed and keyed by the source file's path and stamp: one shared file
        # (never written again) keeps every copy valid
        self._plain = _env(self.source)
        self.after_run = root / "after-run"
        self._plain["NUMBA_CACHE_DIR"] = str(self.after_run)
        #: the output of the first RUN process (the kernels and the NRT compiled, their files written)
        self.first_run: list[str] = _run(RUN, self._plain)
        self.after_linked = root / "after-linked"
        shutil.copytree(self.after_run, self.after_linked)
        self._plain["NUMBA_CACHE_DIR"] = str(self.after_linked)
        #: the output of the first LINKED process (numba's own loading, the symbol files written)
        self.linked: list[str] = _run(LINKED, self._plain)

    def env(self, tmp_path: Path, state: Path) -> dict[str, str]:
        """An environment whose ``NUMBA_CACHE_DIR`` (``tmp_path / "cache"``) is a copy of ``state``."""
        shutil.copytree(state, tmp_path / "cache")  # copy2: the files' times kept
        return {**self._plain, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> _Caches:
    return _Caches(tmp_path_factory.mktemp("numba-lean"))


def test_this_numba_is_one_the_lean_pieces_were_written_against() -> None:
    """Each piece takes over only from the numba function it repeats; with the installed numba they do
    (after a numba upgrade: compare its ``_Runtime.initialize``, ``_typeof_ndarray``, ``_rebuild_env``,
    ``CPUCodeLibrary._unserialize``, ``JitEngine._load_defined_symbols`` and
    ``Dispatcher.enable_caching`` with the copies in
    netspectra.numba_lean, then add their fingerprints and its release line)."""
    import numba
    import numba.core.codegen as codegen
    import numba.core.dispatcher as dispatcher
    import numba.core.environment as environment
    import numba.core.runtime.nrt as nrt
    import numba.core.typing.typeof as typeof

    from netspectra.numba_lean import (
        ENABLE_CACHING_FINGERPRINTS,
        LOAD_DEFINED_SYMBOLS_FINGERPRINTS,
        NRT_INITIALIZE_FINGERPRINTS,
        REBUILD_ENV_FINGERPRINTS,
        TYPEOF_NDARRAY_FINGERPRINTS,
        UNSERIALIZE_FINGERPRINTS,
        code_fingerprint,
        nrt_from_file_supported,
        numba_release_tested,
    )

    assert numba_release_tested(), f"numba {numba.__version__} is not in TESTED_NUMBA_RELEASES"
    assert code_fingerprint(type(nrt.rtsys).initialize) in NRT_INITIALIZE_FINGERPRINTS
    assert code_fingerprint(typeof._typeof_ndarray) in TYPEOF_NDARRAY_FINGERPRINTS
    assert code_fingerprint(environment._rebuild_env) in REBUILD_ENV_FINGERPRINTS
    assert nrt_from_file_supported()
    assert (
        code_fingerprint(codegen.CPUCodeLibrary.__dict__["_unserialize"].__func__) in UNSERIALIZE_FINGERPRINTS
    )
    assert code_fingerprint(codegen.JitEngine._load_defined_symbols) in LOAD_DEFINED_SYMBOLS_FINGERPRINTS
    assert code_fingerprint(dispatcher.Dispatcher.enable_caching) in ENABLE_CACHING_FINGERPRINTS


def test_code_fingerprint_tells_functions_apart() -> None:
    from netspectra.numba_lean import code_fingerprint

    def a(x):
        return x.flags.writeable

    def b(x):
        return x.flags.aligned

    def a_again(x):
        return x.flags.writeable

    assert code_fingerprint(a) == code_fingerprint(a_again) != code_fingerprint(b)


def test_nrt_functions_load_from_their_file_and_kernels_still_compile(tmp_path, caches) -> None:
    """The first process compiles the NRT's functions (and writes their file beside the kernels' cache);
    the next loads them from it: the cached kernels run correctly, ``numpy.ma`` and numba's numpy lowering
    stay unloaded, and a kernel compiled afterwards (linking the NRT's functions) works."""
    first = caches.first_run  # the first process, on an empty cache directory
    env = caches.env(tmp_path, caches.after_run)  # what it left there
    assert first[:3] == ["[0, 1, 3, 6, 10]", "6.0", "NRT compiled"]
    assert first[4:] == ["[0, 0] negative dimensions not allowed", "21", "[0, 1, 3]"]
    (nrt_file,) = _nrt_files(tmp_path)
    assert nrt_file.stat().st_size > 1000
    second = _run(RUN, env)
    assert second == [
        "[0, 1, 3, 6, 10]",
        "6.0",
        "NRT from file",
        "False False False",
        "[0, 0] negative dimensions not allowed",
        "21",
        "[0, 1, 3]",
    ]
    assert _nrt_files(tmp_path) == [nrt_file]


#: A process without the command line's set-up (pytest, a service): numba's own loading.
PLAIN = """
import numpy as np, kern
print(kern.cumulative(np.arange(5)).tolist(), kern.zeros(2).tolist(), kern.total(np.arange(4.0)))
"""


def test_kernels_cached_under_the_lean_set_up_load_in_a_plain_process(tmp_path, caches) -> None:
    """Kernels compiled and cached in the command line's process (its environments pickled while
    :func:`~netspectra.numba_lean.rebuild_env` stands in for numba's) load where it is not installed: the
    pickles name numba's ``_rebuild_env`` (a cache written by a command once broke the test process)."""
    env = caches.env(tmp_path, caches.after_run)  # the three kernels compiled and cached under the set-up
    index = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*.nbc"))
    assert b"netspectra.numba_lean" not in index
    assert _run(PLAIN, env) == ["[0, 1, 3, 6, 10] [0, 0] 6.0"]
    assert _run(RUN, env)[:3] == ["[0, 1, 3, 6, 10]", "6.0", "NRT from file"]  # and again under the set-up


def test_a_pickle_naming_the_lean_function_loads_in_a_plain_process() -> None:
    """A cache written before its pickles named numba's function (they named
    ``netspectra.numba_lean.rebuild_env``) still loads where the function was never installed."""
    code = """
from netspectra import numba_lean
from numba.core.environment import Environment
env = numba_lean.rebuild_env("json", [1, "x"], "env_plain_1")  # numba reads the module's globals
print(type(env) is Environment, env.consts, env.globals.get("__name__"))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0] == "True [1, 'x'] json"


#: analyze's start-up (the collector paused, netspectra.cli.main), then one kernel.
PAUSED = """
import gc
from netspectra import process
from netspectra.lazy import load_cached_kernels_lean
gc.disable()
process.GC_PAUSED = True
load_cached_kernels_lean()
import numpy as np, kern
print(kern.total(np.arange(4.0)), gc.isenabled(), process.GC_PAUSED)
"""


def test_a_cache_miss_resumes_the_paused_collector(tmp_path) -> None:
    """A kernel compiled on a cache miss (a first run, an edited source, an unwritable cache) builds a heap
    only the collector frees: the paused collector is switched on for it; a kernel loaded from the cache
    leaves the pause in force."""
    env = _env(tmp_path)
    assert _run(PAUSED, env) == ["6.0 True False"]  # compiled: collector on
    assert _run(PAUSED, env) == ["6.0 False True"]  # loaded: still paused


@pytest.mark.parametrize("damage", ["cut", "garbage", "empty"])
def test_a_damaged_nrt_file_is_compiled_again_and_rewritten(tmp_path, caches, damage) -> None:
    env = caches.env(tmp_path, caches.after_run)
    (nrt_file,) = _nrt_files(tmp_path)
    good = nrt_file.read_bytes()
    # cut short; the object code's bytes changed (the lengths still agree: the checksum tells); nothing
    damaged = {"cut": good[: len(good) // 2], "garbage": good[:60] + b"\x00" * (len(good) - 60), "empty": b""}
    nrt_file.write_bytes(damaged[damage])
    out = _run(RUN, env)
    assert out[:3] == ["[0, 1, 3, 6, 10]", "6.0", "NRT compiled"] and out[-2:] == ["21", "[0, 1, 3]"]
    assert nrt_file.read_bytes() == good  # the same machine code, written again
    assert _run(RUN, env)[2] == "NRT from file"


def test_without_a_cache_place_the_nrt_is_compiled_as_numba_does(tmp_path) -> None:
    """Where numba's locators give no place for the file (here: none can be asked), the NRT is compiled at
    every start, as numba does, and nothing is written."""
    env = _env(tmp_path)
    code = (
        "from numba.core import caching\ncaching.CompileResultCacheImpl = None  # no locator at all\n" + RUN
    )
    for _ in range(2):
        out = _run(code, env)
        assert out[:3] == ["[0, 1, 3, 6, 10]", "6.0", "NRT compiled"] and out[-2:] == ["21", "[0, 1, 3]"]
    assert not _nrt_files(tmp_path)


def test_typeof_of_arrays_without_numpy_ma_types_as_numba_does() -> None:
    """Array types (dtype, dimensions, layout, read-only) are numba's own; a masked array, once
    ``numpy.ma`` is imported, is refused with numba's message; an unsupported dtype too."""
    code = """
import sys
from netspectra.lazy import load_cached_kernels_lean
load_cached_kernels_lean()
import numpy as np
from numba import typeof
from netspectra.numba_lean import _NUMBA_TYPEOF_NDARRAY
assert _NUMBA_TYPEOF_NDARRAY, "not installed"
own = _NUMBA_TYPEOF_NDARRAY[0]
ro = np.zeros(3); ro.flags.writeable = False
arrays = [np.zeros(3, np.uint8), np.zeros((2, 3)), np.zeros((4, 4))[:, ::2], np.zeros((3, 2), order="F"), ro,
          np.zeros(2, np.dtype([("a", np.int32), ("b", np.float64)])), np.zeros((0, 5), np.int16),
          np.zeros(2, object), np.zeros(2, "U3")]
ours = [typeof(a) for a in arrays]
try:
    typeof(np.zeros(2, [("a", object)]))
except Exception as exc:
    refused = f"{type(exc).__name__} {exc}"
print('numpy.ma' in sys.modules)
print(refused)
assert ours == [own(a, None) for a in arrays], ours  # numba's own (which imports numpy.ma)
import numpy.ma
try:
    typeof(numpy.ma.masked_array([1, 2], mask=[0, 1]))
except Exception as exc:
    print(type(exc).__name__, exc)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "False"
    assert "NumbaValueError" in lines[1] and "Unsupported array dtype: [('a', 'O')]" in lines[1]
    assert "NumbaTypeError" in lines[2] and "Unsupported array type: numpy.ma.MaskedArray." in lines[2]


def test_another_numba_release_keeps_numbas_own_functions() -> None:
    """A numba of an untested release line keeps its own functions, whatever the fingerprints say."""
    code = """
import numba, numba.core.environment as environment, numba.core.typing.typeof as typeof
from netspectra import numba_lean
numba.__version__ = "0.99.0"
import numba.core.codegen as codegen, numba.core.dispatcher as dispatcher
print(numba_lean.numba_release_tested(), numba_lean.nrt_from_file_supported(),
      numba_lean.install_rebuild_env(environment), numba_lean.install_typeof_ndarray(typeof),
      numba_lean.install_unserialize_library(codegen), numba_lean.install_enable_caching(dispatcher))
own = codegen.JITCodeLibrary._unserialize.__func__
print(environment._rebuild_env is numba_lean.rebuild_env, own.__module__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["False False False False False False", "False numba.core.codegen"]


#: The command line's set-up, the kernels (the names the engine was told each library defines), then
#: compilations that link a loaded library: the NRT's (every compilation) and a cached kernel's.
LINKED = """
import hashlib
from netspectra.lazy import load_cached_kernels_lean
load_cached_kernels_lean()
import numpy as np, kern
from numba import njit
from numba.core.registry import cpu_target
print(kern.cumulative(np.arange(5)).tolist(), kern.zeros(2).tolist(), kern.total(np.arange(4.0)))
libraries = [kern.cumulative, kern.zeros, kern.total]
print(sorted({type(d.overloads[d.signatures[0]].library).__name__ for d in libraries}))
engine = cpu_target.target_context.codegen()._engine
print(hashlib.sha256(repr(sorted(engine._defined_symbols)).encode()).hexdigest())
print(njit(lambda a: kern.total(a) * 2 + kern.cumulative(np.arange(3))[-1])(np.arange(4.0)))
print(njit(lambda n: np.arange(1, n + 1).cumsum()[-1])(6))
"""


def _symbol_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").rglob("netspectra-symbols-*.json"))


def test_cached_libraries_load_without_parsing_their_linking_bitcode(tmp_path, caches) -> None:
    """The first process that loads a cached kernel (numba's own loading) keeps the names its library
    defines in a file; the next loads the library from its object code alone, tells the execution engine
    the same names, and parses the linking bitcode only when a new compilation links the library (a
    kernel calling cached kernels; any kernel, which links the NRT's library)."""
    # the kernels compiled and cached, then the first process that loads them (numba's own loading),
    # which wrote the files
    first = caches.linked
    env = caches.env(tmp_path, caches.after_linked)
    assert first[0] == "[0, 1, 3, 6, 10] [0, 0] 6.0"
    assert first[1] == "['JITCodeLibrary']"
    files = _symbol_files(tmp_path)
    assert len(files) == 4  # the three kernels' and the NRT's libraries
    second = _run(LINKED, env)
    assert second[0] == first[0]
    assert second[1] == "['LazyLinkingJITCodeLibrary']"
    assert second[2] == first[2]  # the engine knows the same defined names
    assert second[3:] == first[3:] == ["15.0", "21"]
    assert _symbol_files(tmp_path) == files


#: numba's own loading of the kernels, after numba's own set-up of its CPU target (which loads the NRT).
PLAIN_SYMBOLS = """
import hashlib, numpy as np, kern
from numba.core.registry import cpu_target
cpu_target.target_context.refresh()
kern.cumulative(np.arange(5)), kern.zeros(2), kern.total(np.arange(4.0))
engine = cpu_target.target_context.codegen()._engine
print(hashlib.sha256(repr(sorted(engine._defined_symbols)).encode()).hexdigest())
"""


def test_the_stored_names_are_those_numba_finds(tmp_path, caches) -> None:
    """The execution engine of a process loading from the symbol files knows exactly the names that
    numba's own loading (a process without the set-up) gives it."""
    env = caches.env(tmp_path, caches.after_linked)  # RUN, then LINKED: the symbol files written
    lean = _run(LINKED, env)
    assert lean[1] == "['LazyLinkingJITCodeLibrary']"
    assert lean[2] == _run(PLAIN_SYMBOLS, env)[0]


@pytest.mark.parametrize("damage", ["cut", "garbage", "empty", "not names"])
def test_a_damaged_symbol_file_is_read_by_numba_again_and_rewritten(tmp_path, caches, damage) -> None:
    env = caches.env(tmp_path, caches.after_linked)  # RUN, then LINKED: the symbol files written
    first = caches.linked
    good = {p: p.read_bytes() for p in _symbol_files(tmp_path)}
    for path, data in good.items():
        if damage == "not names":  # a valid checksum over a body that is not a list of names
            body = b'{"a": 1}'
            path.write_bytes(_SYMBOLS_MAGIC + hashlib.sha256(body).digest() + body)
        else:
            path.write_bytes(
                {"cut": data[: len(data) // 2], "garbage": data[:60] + b"x" * 9, "empty": b""}[damage]
            )
    again = _run(LINKED, env)
    assert again[1] == "['JITCodeLibrary']" and again[2:] == first[2:]
    assert {p: p.read_bytes() for p in _symbol_files(tmp_path)} == good
    assert _run(LINKED, env)[1] == "['LazyLinkingJITCodeLibrary']"


#: The command line's set-up, then the kernels: which have a cache made, before and after calls.
MADE = """
from netspectra.lazy import load_cached_kernels_lean
load_cached_kernels_lean()
import numpy as np, kern
kernels = {"cumulative": kern.cumulative, "zeros": kern.zeros, "total": kern.total}
def made():
    return sorted(name for name, k in kernels.items() if k._cache._real is not None)
print(type(kern.total._cache).__name__, made())
print(kern.total(np.arange(4.0)), kern.cumulative(np.arange(3)).tolist(), made())
stats = kern.total.stats
same_path = stats.cache_path == kern.total._cache.cache_path
print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()), same_path)
"""


def test_a_kernels_cache_is_made_when_the_kernel_is_first_used(tmp_path) -> None:
    """Under the command line's set-up a kernel defined with ``cache=True`` has its cache made when it is
    first compiled or loaded, not when its module is imported; the cache works as numba's: a first process
    compiles and stores, the next loads."""
    env = _env(tmp_path)
    first = _run(MADE, env)
    assert first == [
        "LazyFunctionCache []",
        "6.0 [0, 1, 3] ['cumulative', 'total']",
        "0 1 True",
    ]
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").rglob("*.nbi")) == [
        "kern.cumulative",
        "kern.total",
    ]
    second = _run(MADE, env)
    assert second[:2] == first[:2]
    assert second[2] == "1 0 True"  # loaded from the cache the first process wrote
