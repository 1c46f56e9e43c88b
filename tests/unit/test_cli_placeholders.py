"""--help placeholders: one word in capitals for a value, none for a flag (``--help`` included)."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from netspectra.cli import app as cli

runner = CliRunner()


def _help(*args: str) -> str:
    res = runner.invoke(cli.app, [*args, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    return res.output


def _row(text: str, option: str) -> str:
    (line,) = [ln for ln in text.splitlines() if re.search(rf"│\s+(\*\s+)?{re.escape(option)}\b", ln)]
    return line


def test_help_option_has_no_type_placeholder() -> None:
    for args in [(), ("analyze",), ("config",), ("config", "check"), ("query", "top")]:
        text = _help(*args)
        assert "<bool>" not in text, args
        assert re.search(r"--help\s+-h\s+Show this message and exit\.", _row(text, "--help")), args


def test_help_option_still_answers_to_its_short_name() -> None:
    res = runner.invoke(cli.app, ["gen", "-h"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "Usage: netspectra gen" in res.output


def test_repeatable_integer_option_shows_one_value() -> None:
    row = _row(_help("analyze"), "--export-port")
    assert re.search(r"--export-port\s+N \[0<=x<=65535\]", row), row


def test_arguments_are_named_in_capitals() -> None:
    assert "Usage: netspectra gen [OPTIONS] {OUT}" in _help("gen")
    assert "Usage: netspectra probe [OPTIONS] [FILE]..." in _help("probe")
    assert "Usage: netspectra ask-ai [OPTIONS] [QUESTION]..." in _help("ask-ai")
    res = runner.invoke(cli.app, ["gen"])
    assert res.exit_code == 2 and "Missing argument 'OUT'" in res.output


def test_arguments_show_no_annotation_type() -> None:
    for args in [("analyze",), ("gen",), ("probe",), ("ask-ai",)]:
        text = _help(*args)
        assert not re.search(r"<(list|path|str|int)", text, re.I), (args, text)
    row = _row(_help("analyze"), "FILE")
    assert re.search(r"\*\s+FILE\s+Capture files", row), row


def test_out_help_names_what_each_kind_of_task_writes() -> None:
    text = " ".join(_help("analyze").split())
    assert "an exact task's flows with the columns of the original's flow_metrics table" in text.replace(
        "│ ", ""
    )
    assert "a sketch task's list with those of its heavy_hitters table" in text.replace("│ ", "")
