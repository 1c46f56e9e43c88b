"""``--help``'s light Markdown (netspectra.cli.help_markdown) prints exactly what rich's Markdown prints."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import typer
import typer.rich_utils as rich_utils
from rich.console import Console
from rich.markdown import Markdown
from typer.testing import CliRunner

from netspectra.cli.help_markdown import ParagraphMarkdown, paragraphs
from netspectra.cli.main import app


def _help_screens() -> list[list[str]]:
    """The argument lists of every ``--help`` of the command line: the root, each command and group, each
    command of a group."""
    root = typer.main.get_command(app)
    screens = [["--help"]]
    for name in root.list_commands(None):
        screens.append([name, "--help"])
        sub = root.commands[name]
        for inner in getattr(sub, "commands", {}):
            screens.append([name, inner, "--help"])
    return screens


SCREENS = _help_screens()


@pytest.mark.parametrize("width", [80, 131])
@pytest.mark.parametrize("color", [False, True], ids=["plain", "color"])
def test_every_help_screen_is_the_same_as_with_rich_markdown(monkeypatch, width: int, color: bool) -> None:
    monkeypatch.setattr(rich_utils, "MAX_WIDTH", width)
    monkeypatch.setattr(rich_utils, "FORCE_TERMINAL", color)
    monkeypatch.setattr(rich_utils, "COLOR_SYSTEM", "truecolor" if color else None)
    runner = CliRunner()
    assert len(SCREENS) > 20
    for args in SCREENS:
        monkeypatch.setattr(rich_utils, "Markdown", Markdown)
        want = runner.invoke(app, args)
        monkeypatch.setattr(rich_utils, "Markdown", ParagraphMarkdown)
        got = runner.invoke(app, args)
        assert want.exit_code == got.exit_code == 0, args
        assert got.output == want.output, args
        assert not color or "\x1b[" in got.output


SAMPLES = [
    "Plain text.",
    "Two lines\nof one paragraph.",
    "First paragraph.\n\nSecond, with `code span` and `x`.\n\nThird.",
    "Keeps \\<subject\\>.\\<shard\\> and snake_case_names, (parentheses): a -- b — c; 3.5 s; --flag=VALUE.",
    "A `span\nover two lines` ends.",
    "--no-publish: a line starting with an option is no list.",
    "Tabs\tinside.",
    "tasks: **per_five_tuple**, exact; (**cm_src_left** a sketch) and **two words**.\nNext **line**",
]
DELEGATED = [
    "**bold** text",
    "*emphasis*",
    "_emphasis_",
    "- a list\n- of items",
    "1. numbered",
    "# heading",
    "> quote",
    "a [link](http://example.com)",
    "html <b>tag</b>",
    "entity &amp;",
    "``double backticks``",
    "hard break  \nnext",
    "    indented code",
    "Heading\n---",
    "a ~~strike~~",
    "escaped \\*star\\*",
    "a **b*c** d",
    "a **strong\nover lines**",
    "a**glued**b",
    "a ** spaced ** b",
    "a **`code` in strong**",
    "",
]


@pytest.mark.parametrize("style", ["", "dim"])
@pytest.mark.parametrize("width", [20, 60])
def test_the_subset_renders_as_rich_markdown_renders_it(style: str, width: int) -> None:
    def render(renderable: object) -> str:
        console = Console(width=width, force_terminal=True, color_system="truecolor", record=False)
        with console.capture() as cap:
            console.print(renderable)
        return re.sub(r"id=\d+;", "", cap.get())  # a hyperlink's id is random

    for text in SAMPLES:
        assert paragraphs(text) is not None, text
        assert render(ParagraphMarkdown(text, style=style)) == render(Markdown(text, style=style)), text
    for text in DELEGATED:
        assert paragraphs(text) is None, text
        assert render(ParagraphMarkdown(text, style=style)) == render(Markdown(text, style=style)), text


def test_command_line_help_loads_no_markdown_parser_and_stays_importable() -> None:
    """``netspectra --help`` prints without markdown-it, pygments and rich's traceback; rich's Markdown is
    still the real one for code that imports it afterwards."""
    code = (
        "import sys\n"
        "sys.argv = ['netspectra', '--help']\n"
        "from netspectra.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "loaded = {m.split('.')[0] for m in sys.modules} | set(sys.modules)\n"
        "print('@@', *sorted({'markdown_it', 'pygments', 'rich.traceback', 'rich.markdown'} & loaded))\n"
        "import rich.markdown, typer.rich_utils\n"
        "print('@@', rich.markdown.Markdown.__module__, typer.rich_utils.Markdown.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    marks = [line.split()[1:] for line in out.splitlines() if line.startswith("@@")]
    assert "Commands" in out and "analyze" in out
    assert marks == [[], ["rich.markdown", "ParagraphMarkdown"]]
