"""Start-up: the command line loads what a command needs, nothing more (issue 19)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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


#: The modules of the subcommands (netspectra.cli.main._Commands.sources); a command imports its own only.
COMMAND_MODULES = {
    "netspectra.cli.analyze_cmd",
    "netspectra.cli.gen_cmd",
    "netspectra.cli.live_cmds",
    "netspectra.cli.collect_cmd",
    "netspectra.cli.api_cmds",
    "netspectra.cli.up_cmd",
    "netspectra.cli.alert_ai_cmds",
    "netspectra.cli.config_cmd",
    "netspectra.cli.storage_cmd",
}


def _after_cli(*args: str) -> tuple[list[str], set[str]]:
    """Run ``netspectra ARGS`` in a fresh interpreter: the subcommands it built, the modules it loaded."""
    code = (
        "import sys, typer\n"
        "from netspectra.cli.main import app\n"
        "root = typer.main.get_command(app)\n"
        "try:\n"
        f"    root.main({list(args)!r}, prog_name='netspectra')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('@@', *(c.name for c in root.commands.built()))\n"
        "print('@@', *sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    built, modules = (line.split()[1:] for line in out.splitlines() if line.startswith("@@ ") or line == "@@")
    return built, set(modules)


def test_help_builds_no_subcommand_and_loads_no_engine_store_or_service_libraries() -> None:
    """``netspectra --help`` lists every command from its help text alone: no parameters are built, and
    nothing that only running a command needs is loaded — nor pydantic (parameter conversion) nor the
    configuration."""
    built, loaded = _after_cli("--help")
    assert built == []
    heavy = {"numba", "numpy", "pyarrow", "chdb", "grpc", "pandas", "fastapi", "openai", "nats", "pydantic"}
    assert not heavy & {m.split(".")[0] for m in loaded}
    assert "netspectra.config" not in loaded


def test_command_help_builds_and_imports_that_command_only() -> None:
    """``netspectra CMD --help`` builds CMD alone; the group's own options (unset ``--help`` included) are
    taken as click gives them, so that no pydantic is loaded to convert them."""
    built, loaded = _after_cli("-v", "--log-format", "json", "analyze", "--help")
    assert built == ["analyze"]
    assert not (COMMAND_MODULES - {"netspectra.cli.analyze_cmd"}) & loaded
    assert "pydantic" not in {m.split(".")[0] for m in loaded}
    built, loaded = _after_cli("storage", "status", "--help")
    assert built == ["storage"]
    assert not (COMMAND_MODULES - {"netspectra.cli.storage_cmd"}) & loaded


def test_help_summaries_are_the_built_commands_help() -> None:
    """The root ``--help`` lists summaries; each must say what the built command says (help text, short
    help, hidden, deprecated, panel), and list every subcommand in order."""
    import typer
    from typer.testing import CliRunner

    from netspectra.cli.main import _Commands, app

    root = typer.main.get_command(app)
    fields = ("name", "help", "short_help", "hidden", "deprecated", "rich_help_panel")
    for name in _Commands.sources:
        summary = root.summary(name)
        built = root.build(name)
        assert {f: getattr(summary, f) for f in fields} == {f: getattr(built, f) for f in fields}, name
    assert root.list_commands(None) == list(_Commands.sources)
    listing = CliRunner().invoke(app, ["--help"], terminal_width=100).output
    positions = [listing.index(f"\n│ {name} ") for name in _Commands.sources]
    assert positions == sorted(positions)


def test_unknown_command_is_refused_with_a_suggestion() -> None:
    from typer.testing import CliRunner

    from netspectra.cli.main import app

    res = CliRunner().invoke(app, ["anlyze", "x.pcap"])
    assert res.exit_code == 2
    assert "No such command 'anlyze'. Did you mean 'analyze'?" in res.output


def test_group_options_still_convert_and_check() -> None:
    from typer.testing import CliRunner

    from netspectra.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["--log-format", "xml", "config", "check"])
    assert res.exit_code == 2 and "'xml': use text or json" in res.output
    res = runner.invoke(
        app, ["-vv", "--log-format", "JSON", "config", "check"], env={"NETSPECTRA_LOG_FORMAT": ""}
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["config", "check"], env={"NETSPECTRA_LOG_FORMAT": "bogus"})
    assert res.exit_code == 2 and "'bogus': use text or json" in res.output
    assert (
        runner.invoke(app, ["config", "check"], env={"NETSPECTRA_LOG_FORMAT": ""}).exit_code == 0
    )  # text again


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


def test_entry_points_are_scanned_once_per_sys_path(monkeypatch) -> None:
    """Config validation asks the kind registries dozens of times; the installed distributions' metadata
    is read once (it cost a command over a second), and again only when ``sys.path`` changes."""
    import importlib.metadata

    import netspectra.kinds as kinds
    from netspectra.kinds import AGGREGATORS, SKETCHES, WRITERS

    scans = []
    real = importlib.metadata.distributions

    def counting():
        scans.append(1)
        return real()

    monkeypatch.setattr(importlib.metadata, "distributions", counting)  # (kinds imports it as it scans)
    monkeypatch.setattr(kinds, "_SCANNED", None)
    for _ in range(5):
        AGGREGATORS.names(), SKETCHES.names(), WRITERS.names(), AGGREGATORS.get("exact")
    assert len(scans) == 1
    monkeypatch.syspath_prepend("/nonexistent-netspectra-plugins")
    assert "exact" in AGGREGATORS.names() and len(scans) == 2


def test_command_line_numba_does_not_load_scipy_linalg() -> None:
    """numba imports scipy to check its version (~7 ms) and its CPU target probes for a BLAS by importing
    scipy.linalg (0.3-0.7 s) where scipy is installed; the command-line process skips both, and scipy
    stays importable afterwards."""
    import pytest

    pytest.importorskip("scipy", reason="the probe only costs anything where scipy is installed")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from netspectra.lazy import keep_scipy_out_of_numba\n"
            "keep_scipy_out_of_numba()\n"
            "import numba\n"
            "print('scipy' in sys.modules)\n"
            "import numba.np.arraymath\n"
            "print('scipy.linalg' in sys.modules)\n"
            "import scipy.linalg\n"
            "print(scipy.linalg.norm([3.0, 4.0]))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["False", "False", "5.0"]


#: The command line's set-up for numba's PyYAML, then numba, then PyYAML used.
NUMBA_YAML = """
import sys
from netspectra.lazy import keep_unread_modules_out_of_numba
keep_unread_modules_out_of_numba()
import numba
print(repr(numba.core.config.CACHE_DIR), 'yaml.reader' in sys.modules)
import yaml
print(yaml.safe_load('a: [1, yes]'), 'yaml.reader' in sys.modules)
"""


def test_command_line_numba_imports_pyyaml_only_for_its_configuration_file(tmp_path) -> None:
    """numba imports PyYAML (~10 ms) only to read ``./.numba_config.yaml``: where there is none, the
    command-line process gives it a PyYAML executed on first use, which works as PyYAML when used; where
    there is one, numba reads it as always."""
    run = [sys.executable, "-c", NUMBA_YAML]
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    out = subprocess.run(run, capture_output=True, text=True, check=True, cwd=tmp_path, env=env)
    assert out.stdout.splitlines() == ["'' False", "{'a': [1, True]} True"]
    (tmp_path / ".numba_config.yaml").write_text("cache_dir: from-the-file\n")
    out = subprocess.run(run, capture_output=True, text=True, check=True, cwd=tmp_path, env=env)
    assert out.stdout.splitlines() == ["'from-the-file' True", "{'a': [1, True]} True"]


#: The command line's set-up, numba imported; then what needs the modules numba got unexecuted.
NUMBA_UNREAD = """
import sys
from netspectra.lazy import keep_unread_modules_out_of_numba, load_cached_kernels_lean
keep_unread_modules_out_of_numba()
load_cached_kernels_lean()
import numba
print('numba.experimental.jitclass' in sys.modules, 'html.entities' in sys.modules)
import numpy as np
from numba import njit, int64
from numba.experimental import jitclass

@jitclass([("n", int64)])
class Counter:
    def __init__(self, n):
        self.n = n

    def add(self, k):
        self.n += k
        return self.n

@njit
def twice(c, k):
    c.add(k)
    return c.add(k)

print(twice(Counter(1), 2), njit(lambda a: a.sum())(np.arange(4)))
import html
print(html.escape("<a&b>"), 'html.entities' in sys.modules)
"""


def test_numba_modules_no_cached_kernel_reads_load_when_used(tmp_path) -> None:
    """``numba.experimental`` and ``html``, imported by ``import numba`` and never read by loading cached
    kernels, are executed on first use in the command-line process: a jitclass compiles and runs, and
    ``html`` escapes."""
    out = subprocess.run([sys.executable, "-c", NUMBA_UNREAD], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["False False", "5 6", "&lt;a&amp;b&gt; True"]


def test_analyze_of_a_cached_configuration_parses_no_yaml(tmp_path) -> None:
    """A second ``analyze`` with the same configuration takes its parsed data from the cache: PyYAML's
    modules are never executed (numba's import of it stays lazy)."""
    from pathlib import Path

    capture = Path(__file__).parents[1] / "data" / "captures" / "gnutella.pcap"
    code = (
        "import sys\n"
        f"sys.argv = ['netspectra', 'analyze', {str(capture)!r}, '--json']\n"
        "from netspectra.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('@@', 'yaml.reader' in sys.modules, 'yaml.resolver' in sys.modules)\n"
    )
    env = {**os.environ, "NETSPECTRA_CONFIG_CACHE": str(tmp_path / "cache")}
    outs = [
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path, env=env
        ).stdout.split("@@")
        for _ in range(2)
    ]
    assert [o[1].split() for o in outs] == [["True", "True"], ["False", "False"]]
    assert json.loads(outs[1][0])["packets"] == json.loads(outs[0][0])["packets"] > 0


def test_version_loads_no_application() -> None:
    """``netspectra --version`` answers before typer, click, rich and the application are imported (the
    console script's module, :mod:`netspectra.cli.main`, is light); the application's names are still
    readable from it."""
    import netspectra

    code = (
        "import sys\n"
        "sys.argv = ['netspectra', '--version']\n"
        "from netspectra.cli.main import main\n"
        "main()\n"
        "print('@@', *sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    version, modules = out.splitlines()
    assert version == f"netspectra {netspectra.__version__}"
    loaded = set(modules.split()[1:])
    assert not {"typer", "click", "rich", "pydantic", "numpy"} & {m.split(".")[0] for m in loaded}
    assert not {"netspectra.cli.app", "netspectra.cli.common"} & loaded
    from netspectra.cli import app, main

    assert main.app is app.app and main._Commands is app._Commands


@pytest.mark.parametrize("rollup", [False, True], ids=["shipped", "rollup"])
def test_analyze_report_loads_no_writer_or_dataframe_libraries(tmp_path, rollup: bool) -> None:
    """``analyze`` without ``--out``/``--store`` prints a report: pyarrow (its Parquet and CSV writers, the
    Arrow address formatter), pandas, scipy's linear algebra, chdb, grpc and ssl are not loaded (each 5-500
    ms of start-up), nor any other command; nor python-dotenv where there is no ``.env`` file. Also with a
    rollup task, whose report names its top values (an address dimension's included)."""
    from pathlib import Path

    capture = Path(__file__).parents[1] / "data" / "captures" / "gnutella.pcap"
    listing = tmp_path / "modules.txt"
    extra: list[str] = []
    if rollup:
        conf = tmp_path / "rollup.yaml"
        doc = {"aggregator": {"types": ["rollup"], "rollup": {"tasks": [{"name": "t"}]}}}
        conf.write_text(json.dumps(doc))
        extra = ["-c", str(conf)]
    code = (
        "import sys\n"
        f"sys.argv = ['netspectra', 'analyze', {str(capture)!r}, '--top', '1', *{extra!r}]\n"
        "from netspectra.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        f"open({str(listing)!r}, 'w').write('\\n'.join(sys.modules))\n"
    )
    # run where there is no ./.env: python-dotenv is imported only to read one
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    loaded = set(listing.read_text().split())
    ran = "netspectra.rollup.task" if rollup else "netspectra.tasks.exact"
    assert {ran, "netspectra.offline.report"} <= loaded  # it did run
    unwanted = {
        "pyarrow",
        "pandas",
        "scipy.linalg",
        "chdb",
        "grpc",
        "ssl",
        "netspectra.output.addr",
        "dotenv",
    }
    unwanted |= {"netspectra.enrich.enricher", "netspectra.enrich.expr"}  # no enrichment configured
    assert not unwanted & loaded
    # no progress bar (stderr is no terminal), and the other subcommands are neither imported nor built
    assert not {"rich.progress", "rich.live", "rich.status"} & loaded
    assert not (COMMAND_MODULES - {"netspectra.cli.analyze_cmd"}) & loaded


def test_cached_kernels_load_without_numba_compiler_setup(tmp_path) -> None:
    """The command line loads cached kernels without numba's full target refresh (~0.25 s): a kernel
    that allocates (NRT) loads from the cache and runs correctly, numba's numpy lowering modules stay
    unloaded until something is compiled, and compiling a new kernel afterwards still works."""
    from tests.unit.test_numba_lean import _env

    env = _env(tmp_path)  # a module of cached kernels (kern.py) and numba's cache directory for it
    run = (
        "import sys\n"
        "from netspectra.lazy import load_cached_kernels_lean\n"
        "load_cached_kernels_lean()\n"
        "import numpy as np, kern\n"
        "print(kern.cumulative(np.arange(5)).tolist())\n"
        "print('numba.np.arraymath' in sys.modules)\n"
        "from numba import njit\n"
        "print(njit(lambda a: int(np.sum(a * 2)))(np.arange(4)))\n"
        "print(kern.cumulative(np.arange(3)).tolist())\n"
    )
    outs = [
        subprocess.run(
            [sys.executable, "-c", run], capture_output=True, text=True, check=True, env=env
        ).stdout.split("\n")
        for _ in range(2)
    ]
    # the first process compiles (and caches) the kernel: the compiler is set up in full
    assert outs[0][:4] == ["[0, 1, 3, 6, 10]", "True", "12", "[0, 1, 3]"]
    # the second loads it from the cache: correct, without numba's numpy lowering; then compiles anew
    assert outs[1][:4] == ["[0, 1, 3, 6, 10]", "False", "12", "[0, 1, 3]"]


def test_lean_cache_loads_patch_numba_once_whether_imported_before_or_after(tmp_path) -> None:
    code = (
        "import sys\n"
        "from netspectra.lazy import load_cached_kernels_lean\n"
        "{before}"
        "load_cached_kernels_lean(); load_cached_kernels_lean()\n"
        "import numba.core.caching as c\n"
        "print(c.Cache.load_overload.__name__)\n"
        "print(sum(type(f).__name__ == '_LeanCacheLoads' for f in sys.meta_path))\n"
    )
    for before, finders in (("", "1"), ("import numba\n", "0")):
        out = subprocess.run(
            [sys.executable, "-c", code.format(before=before)], capture_output=True, text=True, check=True
        )
        assert out.stdout.split() == ["_load_overload_without_refresh", finders]


def test_command_line_numpy_starts_no_blas_threads_unless_the_user_asks() -> None:
    import os

    code = (
        "import os\n"
        "from netspectra.lazy import keep_blas_single_threaded\n"
        "keep_blas_single_threaded()\n"
        "import numpy\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], len(os.listdir('/proc/self/task')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["1", "1"]  # numpy loaded, no thread besides the main one
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "OPENBLAS_NUM_THREADS": "2"},
    )
    assert out.stdout.split()[0] == "2"  # the user's choice stands


def test_subcommand_is_read_as_click_reads_it() -> None:
    from netspectra.cli.main import _subcommand

    assert _subcommand(["analyze", "x.pcap"]) == "analyze"
    assert _subcommand(["-vv", "--log-format", "json", "analyze", "-c", "c.yaml"]) == "analyze"
    assert _subcommand(["--log-format=json", "-q", "config", "check"]) == "config"
    assert _subcommand(["--log-format", "analyze", "engine"]) == "engine"  # a value, not the command
    assert _subcommand(["--help"]) is None and _subcommand([]) is None


def test_garbage_collector_paused_for_analyze_start_up_only(tmp_path) -> None:
    """The entry point pauses the cyclic collector while ``analyze`` starts (imports, configuration,
    kernels: ~200 collections over a growing heap); analyze resumes it once its kernels are ready, before
    any packet is read. Other commands run with it on; it is on when ``main`` returns, whatever happened."""
    from pathlib import Path

    capture = Path(__file__).parents[1] / "data" / "captures" / "gnutella.pcap"
    code = (
        "import gc, sys\n"
        "import netspectra.offline.warmup as w, netspectra.offline.run as r, netspectra.cli.config_cmd\n"
        "seen = []\n"
        "warm, run = w.warm_up, r.run_offline\n"
        "w.warm_up = lambda *a, **k: seen.append(('warm_up', gc.isenabled())) or warm(*a, **k)\n"
        "r.run_offline = lambda *a, **k: seen.append(('run', gc.isenabled())) or run(*a, **k)\n"
        "from netspectra.cli.main import main\n"
        "for argv in ({argvs}):\n"
        "    sys.argv = ['netspectra', *argv]\n"
        "    seen.append(('start', gc.isenabled()))\n"
        "    try:\n        main()\n    except SystemExit as exc:\n        seen.append(('exit', exc.code))\n"
        "    seen.append(('end', gc.isenabled()))\n"
        "print('@@', seen)\n"
    )
    argvs = [
        ["-q", "analyze", str(capture), "--top", "1"],
        ["analyze", str(tmp_path / "missing.yaml"), "-c", str(tmp_path / "missing.yaml")],
        ["config", "check"],
    ]
    out = subprocess.run(
        [sys.executable, "-c", code.format(argvs=repr(argvs)[1:-1] + ",")],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    import ast

    (line,) = (line for line in out.stdout.splitlines() if line.startswith("@@ "))
    seen = ast.literal_eval(line[3:])
    assert seen == [
        ("start", True), ("warm_up", False), ("run", True), ("exit", 0), ("end", True),  # analyze
        ("start", True), ("exit", 2), ("end", True),  # analyze refused: a missing configuration
        ("start", True), ("exit", 0), ("end", True),  # config check
    ]  # fmt: skip


#: The command line's set-up, then a pydantic model and a cached-or-compiled kernel: what numba's and
#: pydantic's loaders did, and how many times the installed distributions were read.
_ONE_SCAN = """
import sys
import importlib.metadata as metadata
reads = []
real = metadata.distributions
metadata.distributions = lambda *a, **k: reads.append(1) or real(*a, **k)
from netspectra.lazy import scan_entry_points_once
scan_entry_points_once()
import netspectra.kinds
import pydantic
class M(pydantic.BaseModel):
    x: int
M(x=1)
import numpy as np
from numba import njit
print(njit(lambda a: a.sum())(np.arange(4)))
import pydantic.plugin._loader as loader, numba.core.entrypoints as entrypoints
from netspectra.kinds import AGGREGATORS
AGGREGATORS.names()
plugins = sorted(type(p).__name__ for p in loader._plugins.values())
print(plugins, entrypoints._already_initialized, len(reads))
print(sorted(m for m in sys.modules if m.startswith("ns_scan_")))
"""


def test_entry_points_read_once_for_numba_pydantic_and_the_kinds(tmp_path) -> None:
    """numba's extension loader and pydantic's plugin loader take the kind registries' scan when it holds
    none of their groups: the installed distributions are read once."""
    out = subprocess.run([sys.executable, "-c", _ONE_SCAN], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["6", "[] True 1", "[]"]


def test_declared_numba_extensions_and_pydantic_plugins_still_load(tmp_path) -> None:
    """Where a distribution declares a numba extension and a pydantic plugin, both loaders scan and load
    them as usual."""
    import os

    (tmp_path / "ns_scan_ext.py").write_text("def init():\n    pass\n")
    (tmp_path / "ns_scan_plugin.py").write_text(
        "class Plugin:\n    def new_schema_validator(self, *a, **k):\n        return None, None, None\n"
        "plugin = Plugin()\n"
    )
    info = tmp_path / "ns_scan_probe-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ns-scan-probe\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[numba_extensions]\ninit = ns_scan_ext:init\n\n[pydantic]\nprobe = ns_scan_plugin:plugin\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _ONE_SCAN], capture_output=True, text=True, check=True, env=env
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "6"
    plugins, initialized, reads = lines[1].rsplit(" ", 2)
    assert plugins == "['Plugin']" and initialized == "True" and int(reads) > 1
    assert lines[2] == "['ns_scan_ext', 'ns_scan_plugin']"


def _outcome(coerce, value, param, ctx):  # type: ignore[no-untyped-def]
    """What a conversion gives: its value (and type), or its error's type and message."""
    try:
        out = coerce(value, param=param, ctx=ctx)
    except Exception as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return ("error", type(exc).__name__, message)
    return ("ok", out, type(out).__name__, [type(v).__name__ for v in out] if isinstance(out, list) else None)


def test_quick_conversions_are_typers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A built command's paths, whole numbers and flags are converted without pydantic adapters where the
    value is certain, to what typer's own conversion gives; anything else goes through typer's, with its
    errors."""
    import typer
    from typer._click import Context
    from typer._coercion import build_runtime_param

    from netspectra.cli.lazy_group import _QuickRuntimeParam
    from netspectra.cli.main import app

    command = typer.main.get_group(app).commands["analyze"]
    ctx = Context(command)
    a_file = tmp_path / "a.pcap"
    a_file.write_bytes(b"")
    a_dir = tmp_path / "d"
    a_dir.mkdir()
    missing = str(tmp_path / "missing")
    cases = {
        # (a number of more than 4,300 digits: int() raises, typer answers "exceeded maximum size")
        "top": [
            *("0", "10", "010", "-1", "+3", "5x", " 5", "1_0", "", "٣", 3, 0, -2, None),
            *("9" * 18, "9" * 19, "9" * 5000),
        ],
        "batch_size": ["0", "1", "262144", 262_144],
        "export_port": [("53", "70000"), ("0053",), ("x",), (), ("65535", "0"), "53", None, ("1" * 4400,)],
        "out": [str(a_file), str(a_dir), missing, "", None],
        "config": [str(a_file), str(a_dir), missing, None],
        "files": [(str(a_file),), (missing, str(a_dir)), ()],
        "progress": [None, True, False, "yes"],
        "json_out": [True, False],
    }
    seen = set()
    for param in command.params:
        if param.name not in cases:
            continue
        seen.add(param.name)
        ours = param.get_runtime_param()
        assert isinstance(ours, _QuickRuntimeParam), param.name
        theirs = build_runtime_param(param.type_descriptor)
        for value in cases[param.name]:
            expected = _outcome(theirs.coerce, value, param, ctx)
            assert _outcome(ours.coerce, value, param, ctx) == expected, (param.name, value)
    assert seen == set(cases)


def test_a_plain_analyze_builds_no_pydantic_adapter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``netspectra analyze FILE`` with its options written as plain numbers and paths converts them all
    without typer's pydantic adapters (their first one costs ~5 ms of start-up)."""
    capture = tmp_path / "empty.pcap"
    capture.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    code = (
        "import sys\nimport typer._coercion as c, typer.core as core\n"
        "built = []\nreal = c.build_runtime_param\n"
        "def counted(desc):\n    built.append(repr(desc.annotation))\n    return real(desc)\n"
        "c.build_runtime_param = core.build_runtime_param = counted\n"
        f"sys.argv = ['netspectra', 'analyze', {str(capture)!r}, '--top', '3', '--batch-size', '1000', "
        f"'--out', {str(tmp_path / 'out')!r}, '--no-progress', '--json']\n"
        "from netspectra.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('BUILT', built, file=sys.stderr)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "BUILT []" in res.stderr, res.stderr


def test_a_lazily_loaded_module_read_by_many_threads_at_once_runs_once_and_whole(tmp_path) -> None:
    """The command line's lazily executed modules (PyYAML for numba, ...): threads reading a first name
    at once all see the whole module, executed once (Python 3.11's LazyLoader let the others read it
    half executed: AttributeError)."""
    (tmp_path / "slow_mod.py").write_text(
        "import time\nimport runs_log\nruns_log.RUNS.append(1)\nFIRST = 1\ntime.sleep(0.3)\nLAST = 2\n"
    )
    (tmp_path / "runs_log.py").write_text("RUNS = []\n")
    code = f"""
import sys, threading
sys.path.insert(0, {str(tmp_path)!r})
from importlib.machinery import PathFinder
from importlib.util import module_from_spec
from netspectra.lazy import lazy_loader
spec = PathFinder.find_spec("slow_mod", None)
spec.loader = lazy_loader(spec.loader)
mod = module_from_spec(spec)
sys.modules["slow_mod"] = mod
spec.loader.exec_module(mod)
import runs_log
assert runs_log.RUNS == []  # nothing executed until a name is read
got, errors = [], []
def read():
    try:
        got.append(mod.LAST)
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=read) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(got, errors, runs_log.RUNS, mod.FIRST)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[2,", "2,", "2,", "2,", "2,", "2,", "2,", "2]", "[]", "[1]", "1"]
