"""The Dockerfile, checked statically (no Docker daemon here): base image, stages, user, entrypoint, what
it copies, and that the build-time warm-up calls code that exists."""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: continuations joined, comments and blank lines dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            word, _, rest = current.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued instruction"
    return out


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    assert DOCKERFILE.is_file(), "Dockerfile missing at the repository root"
    return instructions(DOCKERFILE.read_text())


def global_args(parsed: list[tuple[str, str]]) -> dict[str, str]:
    """ARGs before the first FROM, with their defaults."""
    args: dict[str, str] = {}
    for ins, rest in parsed:
        if ins == "FROM":
            break
        if ins == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def stages(parsed: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins, rest in parsed:
        if ins == "FROM":
            out.append([])
        if out:
            out[-1].append((ins, rest))
    return out


def resolve(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def test_base_image_is_python_311_slim(parsed: list[tuple[str, str]]) -> None:
    args = global_args(parsed)
    bases = [resolve(rest.split()[0], args) for ins, rest in parsed if ins == "FROM"]
    assert bases, "no FROM"
    stage_names = {rest.split()[-1] for ins, rest in parsed if ins == "FROM" and " AS " in rest.upper()}
    for base in bases:
        assert base in stage_names or base.startswith("python:3.11-slim"), base
    assert bases[-1].startswith("python:3.11-slim"), "the runtime stage must be python:3.11-slim"


def test_runtime_stage_runs_as_non_root_with_tini_and_netspectra(parsed: list[tuple[str, str]]) -> None:
    final = stages(parsed)[-1]
    users = [rest for ins, rest in final if ins == "USER"]
    assert users, "the runtime stage sets no USER (it would run as root)"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    entry = [rest for ins, rest in final if ins == "ENTRYPOINT"]
    assert entry, "no ENTRYPOINT"
    argv = json.loads(entry[-1])  # exec form: signals reach the process, no shell in between
    assert argv[-1] == "netspectra", argv
    assert any(Path(a).name == "tini" for a in argv[:-1]), f"no tini in the entrypoint: {argv}"
    run_text = " ".join(rest for ins, rest in final if ins == "RUN")
    assert re.search(r"apt-get install[^&]*\btini\b", run_text), "tini is not installed in the runtime stage"
    cmd = [rest for ins, rest in final if ins == "CMD"]
    assert cmd and json.loads(cmd[-1]) == ["--help"], cmd


def test_no_remote_add_and_copied_paths_exist(parsed: list[tuple[str, str]]) -> None:
    for ins, rest in parsed:
        assert ins != "ADD" or not re.search(r"https?://|git@", rest), f"ADD of a URL: {rest}"
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        state = False
        for pattern in ignore:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            parts = Path(path).parts
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            if any(fnmatch.fnmatch(p, pat) for p in prefixes):
                state = not negate
        return state

    copied = 0
    for ins, rest in parsed:
        if ins not in ("COPY", "ADD"):
            continue
        words = shlex.split(rest)
        if any(w.startswith("--from") for w in words):
            continue
        sources = [w for w in words if not w.startswith("--")][:-1]
        for src in sources:
            assert (ROOT / src).exists(), f"{ins} {src}: not in the repository"
            assert not ignored(src), f"{ins} {src}: excluded by .dockerignore"
            copied += 1
    assert copied, "the Dockerfile copies nothing from the build context"
    for needed in ("pyproject.toml", "README.md", "src/netspectra/__init__.py"):
        assert not ignored(needed), f".dockerignore excludes {needed}, which the build needs"
    for junk in (".git/config", "tests/conftest.py", "py_spy-0.4.3-py2.py3-none-manylinux1_x86_64.whl"):
        assert ignored(junk), f".dockerignore lets {junk} into the build context"


def test_package_is_installed_non_editable(parsed: list[tuple[str, str]]) -> None:
    run_text = " ".join(rest for ins, rest in parsed if ins == "RUN")
    assert re.search(r"pip install (--\S+ )*\"?\.(\[all\])?\"?(\s|$)", run_text), (
        "the package is not pip-installed from . (with every extra)"
    )
    assert not re.search(r"pip install[^&]*(-e|--editable)\b", run_text), "editable install in the image"


def test_build_time_warm_up_calls_existing_code(parsed: list[tuple[str, str]]) -> None:
    final = stages(parsed)[-1]
    env = " ".join(rest for ins, rest in final if ins == "ENV")
    assert "NUMBA_CACHE_DIR=" in env, "the numba cache directory is not fixed in the image"
    runs = [rest for ins, rest in final if ins == "RUN" and "warm_up" in rest]
    assert runs, "no numba warm-up at build time"
    # Every `from X import Y` of the warm-up snippet resolves in this checkout.
    imports = re.findall(r"from ([\w.]+) import (\w+)", runs[0])
    assert imports
    for module, name in imports:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name} does not exist"
    # It runs as the service user, after USER, so the cache it writes is readable (and writable) there.
    order = [ins for ins, rest in final if ins == "USER" or (ins == "RUN" and "warm_up" in rest)]
    assert order.index("USER") < order.index("RUN"), "the warm-up runs before USER"


def test_ops_port_exposed(parsed: list[tuple[str, str]]) -> None:
    exposed = " ".join(rest for ins, rest in parsed if ins == "EXPOSE").split()
    for port in ("9100", "50051", "8080", "50052"):
        assert port in exposed, f"port {port} is not exposed"
