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
    """A meta-path finder that answers "not installed" for scipy while numba's ``arraymath`` module is
    being imported (see :func:`keep_scipy_out_of_numba`); at any other moment it finds nothing and the
    normal finders answer."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        import sys

        if name == "scipy" or name.startswith("scipy."):
            arraymath = sys.modules.get("numba.np.arraymath")
            if arraymath is not None and not hasattr(arraymath, "_HAVE_BLAS"):
                raise ModuleNotFoundError(f"{name} is not probed by numba in this process (start-up time)")


def keep_scipy_out_of_numba() -> None:
    """Spare numba's start-up the import of ``scipy.linalg`` (0.3-0.7 s) where scipy is installed.

    When numba first sets up its CPU target (the first kernel loaded from the cache), ``numba.np.arraymath``
    probes for a BLAS by importing ``scipy.linalg.cython_blas``, only to choose between BLAS and a plain
    loop for ``np.vdot``-style inner products of floats, which no NetSpectra kernel calls. During that one
    import the probe sees scipy as absent; scipy itself stays importable at any other time, and numba's
    ``np.linalg`` support still imports it when a kernel that uses it is compiled. Only the command-line
    process calls this (:func:`netspectra.cli.main.main`): a library user's numba is left as it is."""
    import sys

    if "numba.np.arraymath" not in sys.modules and not any(
        isinstance(f, _NoBlasProbe) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _NoBlasProbe())
