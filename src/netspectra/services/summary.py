"""The summary a service command prints when it stops: readable sections, or JSON with ``--json``.

Readable: one small table per section (a title, then ``label  value`` lines, numbers with thousands
separators, lines that report a loss in bold red when not zero), in the style of ``analyze``'s
summary. ``--json``: one JSON object on one line (service name → counters), for scripts and tests.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from netspectra.services.base import Section

__all__ = ["print_summary"]

#: Words that mark a line as a loss (highlighted when its value is not zero).
_LOSS_WORDS = ("lost", "dropped", "drop", "gaps", "not stored", "slow-consumer", "connection losses", "error")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return str(value)


def _is_loss(label: str, value: Any) -> bool:
    if not any(w in label for w in _LOSS_WORDS):
        return False
    if isinstance(value, (int, float)):
        return value != 0
    text = str(value)
    return bool(text) and not text.startswith("0 ") and text != "0"


def print_summary(
    console: Console,
    sections: Sequence[Section],
    summary: dict[str, Any],
    *,
    as_json: bool,
    title: str = "",
) -> None:
    """Print ``summary`` as JSON (``as_json``) or ``sections`` as tables on ``console``."""
    if as_json:
        console.file.write(json.dumps(summary, default=str) + "\n")
        console.file.flush()
        return
    if title:
        console.print(Text(title, style="bold"))
    for name, lines in sections:
        if not lines:
            continue
        t = Table(title=name, title_justify="left", show_header=False, box=None, padding=(0, 2))
        t.add_column("what", style="dim", no_wrap=True)
        t.add_column("value", overflow="fold")
        for label, value in lines:
            style = "bold red" if _is_loss(label, value) else ""
            t.add_row(Text(label), Text(_cell(value), style=style))
        console.print(t)
