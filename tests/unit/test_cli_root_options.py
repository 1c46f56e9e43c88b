"""A root option written after the subcommand: the usage error says where it goes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from netspectra.cli import app as cli

runner = CliRunner()


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["analyze", "-v", "x.pcap"], "write it before the command (netspectra -v analyze ...)"),
        (["analyze", "--log-format", "json", "x.pcap"], "(netspectra --log-format VALUE analyze ...)"),
        (["analyze", "--log-format=json", "x.pcap"], "(netspectra --log-format VALUE analyze ...)"),
        (["config", "check", "--quiet"], "(netspectra --quiet config check ...)"),
        (["query", "top", "--version"], "(netspectra --version)"),
    ],
)
def test_root_option_after_the_command_names_its_place(args: list[str], hint: str) -> None:
    res = runner.invoke(cli.app, args, env={"COLUMNS": "400"})
    assert res.exit_code == 2
    text = " ".join(res.output.replace("│", " ").split())
    assert "is an option of netspectra itself" in text and hint in text, text
    assert "Possible options" not in text  # click's look-alike (--flow-export for --log-format)


def test_other_unknown_options_keep_clicks_suggestion() -> None:
    res = runner.invoke(cli.app, ["analyze", "--fows", "x.pcap"], env={"COLUMNS": "400"})
    assert res.exit_code == 2 and "No such option: --fows" in res.output and "--flows" in res.output
