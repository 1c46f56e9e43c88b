"""Options and helpers shared by every subcommand."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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

#: Results go to stdout; logs and progress go to stderr so that output can be piped.
console = Console()
err_console = Console(stderr=True)
# piped output: rich would assume 80 columns, cut IPv6 addresses and wrap log lines; it is read, not viewed
if not console.is_terminal:
    console.width = 200
if not err_console.is_terminal:
    err_console.width = 200


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as an error on stderr and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)
