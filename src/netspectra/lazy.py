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
