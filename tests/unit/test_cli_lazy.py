"""Start-up: the command line loads what a command needs, nothing more (issue 19)."""

from __future__ import annotations

import subprocess
import sys

from netspectra.cli.gen_cmd import DEFAULT_START_TEXT
from netspectra.gen.synth import DEFAULT_START


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_gen_default_start_matches_the_generator() -> None:
    assert DEFAULT_START.isoformat().replace("+00:00", "Z") == DEFAULT_START_TEXT


def test_kind_declarations_and_configuration_load_no_kernels() -> None:
    loaded = _modules_after(
        "from netspectra.config import load_config\n"
        "cfg = load_config()\n"
        "from netspectra.kinds import AGGREGATORS, SKETCHES, WRITERS\n"
        "[AGGREGATORS.get(n) for n in AGGREGATORS.builtins]\n"
        "[SKETCHES.get(n) for n in SKETCHES.builtins]\n"
        "[WRITERS.get(n) for n in WRITERS.builtins]"
    )
    heavy = {"numba", "pyarrow", "chdb", "grpc", "pandas", "fastapi", "openai", "numpy"}
    assert not heavy & {m.split(".")[0] for m in loaded}


def test_help_loads_no_engine_store_or_service_libraries() -> None:
    """``netspectra --help`` registers every command; none may load what only running it needs."""
    loaded = _modules_after("from netspectra.cli import main\nmain._register()")
    heavy = {"numba", "numpy", "pyarrow", "chdb", "grpc", "pandas", "fastapi", "openai", "nats", "pydantic"}
    assert not heavy & {m.split(".")[0] for m in loaded}


def test_every_extra_is_seen_as_installed_where_it_is() -> None:
    """The test environment installs ``netspectra[all]``: ``require`` must find every extra there (a
    module name in EXTRAS that no distribution provides would refuse the command to every user)."""
    import tomllib
    from pathlib import Path

    from netspectra.cli.common import EXTRAS, missing_extras

    assert missing_extras(*EXTRAS) == []
    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    declared = set(pyproject["project"]["optional-dependencies"])
    assert set(EXTRAS) <= declared, "EXTRAS names an extra pyproject.toml does not declare"
