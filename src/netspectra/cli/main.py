"""Entry point of the ``netspectra`` command (the console script and ``python -m netspectra``).

Light on purpose: ``netspectra --version`` is answered here before the application
(:mod:`netspectra.cli.app`: typer, click, rich) is imported. The application's names (``app``,
``_Commands``, ...) are still readable from this module; each is imported on first use.
"""

from __future__ import annotations

import sys
from typing import Any

#: The application's names this module hands out on first use (:mod:`netspectra.cli.app`).
_APP_NAMES = frozenset({"app", "_Commands", "_root", "_version"})


def __getattr__(name: str) -> Any:
    if name in _APP_NAMES:
        from netspectra.cli import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run() -> None:
    """The ``netspectra`` console script and ``python -m netspectra``: :func:`main`, then the process
    ends at once with its status (:func:`netspectra.process.exit_now`: no slow interpreter teardown)."""
    from netspectra import process

    global NUMBA_FREE
    NUMBA_FREE = True  # the command's own process: its kernels may run without numba (main)
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    jit = sys.modules.get("netspectra.jit")  # not imported: no kernel (``--version``, ``--help``)
    if jit is not None:
        jit.export_if_needed()  # after a run on numba: the next one's kernels without it (netspectra.jit)
    if not isinstance(code, int):  # sys.exit("message"): printed on stderr, status 1, as Python does
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    process.exit_now(code)


#: The subcommands whose kernels run without numba where they can (:mod:`netspectra.jit`): a short command
#: whose start-up is a large part of its time. Services keep numba's dispatcher (~3 µs less a call).
NUMBA_FREE_COMMANDS = frozenset({"analyze"})


#: Whether :func:`main` runs in the command's own process (set by :func:`run`, the console script): only
#: there may a command of :data:`NUMBA_FREE_COMMANDS` run its kernels without numba. A process that calls
#: :func:`main` in-process (tests, embedders) keeps numba's kernels.
NUMBA_FREE = False


def main(*, numba_free: bool | None = None) -> None:
    """Run the command line in this process (returns, or raises ``SystemExit`` with the status).
    ``numba_free`` (default :data:`NUMBA_FREE`): a command of :data:`NUMBA_FREE_COMMANDS` calls its
    kernels without importing numba where it can (:func:`netspectra.jit.use_numba_free_kernels`)."""
    if numba_free is None:
        numba_free = NUMBA_FREE
    if sys.argv[1:] == ["--version"]:  # answered before the application and any command module is loaded
        import netspectra

        print(f"netspectra {netspectra.__version__}")
        return
    import faulthandler
    import gc

    from netspectra import process
    from netspectra.lazy import (
        keep_blas_single_threaded,
        keep_scipy_out_of_numba,
        keep_unread_modules_out_of_numba,
        load_cached_kernels_lean,
        scan_entry_points_once,
    )

    process.OWN_PROCESS = True  # this process is the command's: a stuck exit may be cut short
    command = _subcommand(sys.argv[1:])
    if command == "analyze" and gc.isenabled():
        # start-up builds a large heap and no garbage to speak of: analyze resumes the collector once its
        # kernels are ready (process.resume_gc), or this function when it returns
        gc.disable()
        process.GC_PAUSED = True
    faulthandler.enable()  # a crash in a native library (chdb, grpc, numba) prints every thread's stack
    keep_blas_single_threaded()  # numpy's idle BLAS threads spin (~0.1 s CPU)
    keep_scipy_out_of_numba()
    keep_unread_modules_out_of_numba()  # PyYAML (~10 ms) and others numba imports: executed on first use
    if numba_free and command in NUMBA_FREE_COMMANDS:
        from netspectra.jit import use_numba_free_kernels

        use_numba_free_kernels()  # kernels exported by an earlier run, without importing numba (~0.1 s)
    load_cached_kernels_lean()  # a cached kernel needs none of numba's compiler set-up (~0.25 s)
    scan_entry_points_once()  # numba, pydantic and the kind registries read the entry points once
    from netspectra.cli import help_markdown
    from netspectra.cli.app import app
    from netspectra.cli.common import run_app

    help_markdown.install()  # --help (and usage errors) without rich's Markdown parser and pygments
    try:
        run_app(app, prog_name="netspectra")
    finally:
        process.resume_gc()


def _subcommand(args: list[str]) -> str | None:
    """The subcommand ``netspectra ARGS`` runs, read as click reads it: the first argument that is neither
    a group option (:mod:`netspectra.cli.app`: ``-v``, ``-q``, ``--log-format VALUE``, ...) nor its value."""
    rest = iter(args)
    for arg in rest:
        if arg == "--log-format":
            next(rest, None)
        elif not arg.startswith("-"):
            return arg
    return None
