"""The ``--ops-listen`` option shared by every long-running command."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["OPS_LISTEN_ENV", "OpsListenOption"]

OPS_LISTEN_ENV = "NETSPECTRA_OPS_LISTEN"

OpsListenOption = Annotated[
    str | None,
    typer.Option(
        "--ops-listen",
        envvar=OPS_LISTEN_ENV,
        show_default=False,
        help="Serve /metrics (Prometheus), /healthz and /readyz on HOST:PORT (or :PORT); default: "
        "ops.listen of the configuration, else off. See docs/operations.md.",
    ),
]
