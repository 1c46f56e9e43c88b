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
