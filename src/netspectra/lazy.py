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
