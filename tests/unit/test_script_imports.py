"""The benchmarks and tools import only what the package has.

They import NetSpectra's modules inside their functions (so that ``--help`` stays fast), where nothing
runs them in the suite: a function moved to another module left ``bench_pipeline.py`` failing at its
first step. Every ``from netspectra… import name`` and ``import netspectra…`` in them, at any depth,
must resolve.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("tools/*.py")])


def _netspectra_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) of every NetSpectra import in the file."""
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "netspectra":
            found += [(node.lineno, node.module or "", a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "netspectra"]
    return found


def _resolves(module: str, name: str | None) -> bool:
    mod = importlib.import_module(module)
    if name is None or hasattr(mod, name):
        return True
    try:  # a submodule: ``from netspectra.offline import warmup``
        importlib.import_module(f"{module}.{name}")
    except ModuleNotFoundError:
        return False
    return True


def test_the_scripts_are_found() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"bench_analyze.py", "bench_pipeline.py", "gen_proto.py"} <= names


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_every_netspectra_import_resolves(path: Path) -> None:
    missing = [
        f"{path.name}:{line}: {module}{'.' + name if name else ''}"
        for line, module, name in _netspectra_imports(path)
        if not _resolves(module, name)
    ]
    assert not missing, "imports of names the package does not have: " + ", ".join(missing)
