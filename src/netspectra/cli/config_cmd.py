"""``netspectra config``: inspect and validate the configuration."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from netspectra.cli.common import ConfigOption, console, err_console, fail

app = typer.Typer(
    help="Inspect and validate the configuration (configs/config.yaml, the original's schema).",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


@app.callback()
def _group() -> None:
    # A callback keeps `config` a group even while it has a single command, so `netspectra config check`
    # stays the spelling when more commands are added.
    pass


@app.command()
def check(
    config: ConfigOption = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the effective configuration as one JSON document.")
    ] = False,
) -> None:
    """Validate a configuration and print it with every default applied (secrets shown as ***).

    Reads .env files and expands ${VAR} exactly as the services do. Warnings (unknown keys, tasks that
    will not run, ...) go to stderr. Exit status 0 when the configuration is valid, 2 otherwise, with
    every problem listed: its key path, the bad value and the fix.
    """
    import yaml
    from rich.syntax import Syntax

    from netspectra.config import ConfigError, effective_config_dict, load_config

    try:
        cfg = load_config(config, log_warnings=False)
    except ConfigError as exc:
        raise fail(str(exc), code=2) from None
    effective = effective_config_dict(cfg)
    if json_out:
        # Plain print: JSON on stdout must not be re-wrapped or highlighted by rich.
        print(json.dumps(effective, indent=2))
    else:
        text = yaml.safe_dump(effective, sort_keys=False, allow_unicode=True, width=110)
        if console.is_terminal:
            console.print(Syntax(text, "yaml", background_color="default", word_wrap=True))
        else:
            # Piped: exact YAML, never re-wrapped at the console width (it must parse back).
            print(text, end="")
    for w in cfg.warnings:
        err_console.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    n = len(cfg.warnings)
    err_console.print(
        f"[green]valid:[/] {cfg.source}" + (f" ({n} warning{'s' if n != 1 else ''})" if n else ""),
        highlight=False,
        soft_wrap=True,
    )
