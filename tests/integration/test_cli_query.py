"""`netspectra query` as a new user meets it: the errors it gives before a query service answers."""

from __future__ import annotations

import pytest
from api_process import free_port
from typer.testing import CliRunner

from netspectra.cli import main as cli

pytest.importorskip("grpc")


def test_no_service_listening_says_what_to_start() -> None:
    # a port nobody listens on (bound, then released): gRPC answers UNAVAILABLE / connection refused,
    # which said nothing of `netspectra api` to a user who ran `query` after `analyze --store`
    addr = f"127.0.0.1:{free_port()}"
    res = CliRunner().invoke(cli.app, ["query", "aggregate", "--addr", addr, "--timeout", "5"])
    assert res.exit_code == 1, res.output
    assert f"AggregateFlows on {addr}: UNAVAILABLE" in res.stderr
    assert "netspectra api" in res.stderr and "--addr" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("command", ["api", "up"])
def test_a_listen_option_without_a_port_is_a_usage_error(command: str) -> None:
    # `--grpc-addr 127.0.0.1:` (a shell variable that was empty) made gRPC listen on port 443
    for option, value, message in (
        ("--grpc-addr", "127.0.0.1:", "has no port"),
        ("--http-addr", "8080", "is not HOST:PORT"),
    ):
        res = CliRunner().invoke(cli.app, [command, option, value])
        assert res.exit_code == 2, res.output
        assert option in res.stderr and message in res.stderr, res.stderr


def test_the_ai_service_listen_option_is_checked_too() -> None:
    res = CliRunner().invoke(cli.app, ["ai", "--listen", "127.0.0.1:"])
    assert res.exit_code == 2 and "--listen" in res.stderr and "has no port" in res.stderr, res.stderr
