"""The ``netspectra`` command-line application: its group, subcommands and group options.

Built on first use by :mod:`netspectra.cli.main` (the entry point), which answers ``--version`` before
importing this module (typer, click and rich: ~40 ms)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any, ClassVar

import typer

import netspectra
from netspectra.cli.common import err_console
from netspectra.cli.lazy_group import LazyTyperGroup
from netspectra.ops.logs import LOG_FORMATS, configure_logging


class _Commands(LazyTyperGroup):
    """The subcommands, in the order ``--help`` lists them; each is imported and built only when used."""

    sources: ClassVar[dict[str, str]] = {
        "analyze": "netspectra.cli.analyze_cmd:analyze",
        "gen": "netspectra.cli.gen_cmd:gen",
        "probe": "netspectra.cli.live_cmds:probe",
        "engine": "netspectra.cli.live_cmds:engine",
        "collect": "netspectra.cli.collect_cmd:collect",
        "api": "netspectra.cli.api_cmds:api",
        "up": "netspectra.cli.up_cmd:up",
        "ai": "netspectra.cli.alert_ai_cmds:ai",
        "ask-ai": "netspectra.cli.alert_ai_cmds:ask_ai",
        "config": "netspectra.cli.config_cmd:app",
        "query": "netspectra.cli.api_cmds:query_app",
        "storage": "netspectra.cli.storage_cmd:app",
    }

    def invoke(self, ctx: Any) -> Any:
        """Run the subcommand; a root option written after it (``netspectra analyze -v``) is a usage error
        that says where it goes, not click's "No such option" with a look-alike of the subcommand's
        (``--log-format`` was answered "Possible options: --flow-export")."""
        # the click that typer runs on (typer >= 0.29 carries its own copy): the module of its exceptions
        no_such_option = sys.modules[typer.BadParameter.__module__].NoSuchOption
        try:
            return super().invoke(ctx)
        except no_such_option as e:
            name = e.option_name.split("=", 1)[0]
            if e.ctx is None or name not in {opt for param in self.params for opt in param.opts}:
                raise
            sub = e.ctx.command_path.split(" ", 1)[1] if " " in e.ctx.command_path else "COMMAND"
            value = " VALUE" if name == "--log-format" else ""
            where = "netspectra --version" if name == "--version" else f"netspectra {name}{value} {sub} ..."
            e.ctx.fail(
                f"{name} is an option of netspectra itself, not of '{e.ctx.command_path}': write it before "
                f"the command ({where})"
            )


app = typer.Typer(
    cls=_Commands,
    name="netspectra",
    help="NetSpectra: network traffic monitoring and analysis.\n\n"
    "Reads packets (capture files, live interfaces), accounts for every flow exactly, finds heavy "
    "hitters and super-spreaders with sketches, and stores and serves the results.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"netspectra {netspectra.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr.")] = False,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            envvar="NETSPECTRA_LOG_FORMAT",
            help="Log lines on stderr: text (human) or json (one object per line: time, level, logger, "
            "message, exception).",
        ),
    ] = "text",
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    fmt = log_format.strip().lower()
    if fmt not in LOG_FORMATS:
        raise typer.BadParameter(f"{log_format!r}: use text or json", param_hint="--log-format")
    from rich.logging import RichHandler  # only when a command runs (not for --help)

    configure_logging(
        level,
        fmt,
        text_handler=RichHandler(console=err_console, show_path=verbose >= 2, rich_tracebacks=False),
        stream=sys.stderr,
    )
