"""``netspectra ai`` (the original's ns-ai) and ``netspectra ask-ai`` (the original's scripts/ask-ai).

Register with ``app.command("ai")(ai)`` and ``app.command("ask-ai")(ask_ai)``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Annotated

import typer

from netspectra.cli.common import ConfigOption, err_console, fail, listen_option, require
from netspectra.ops.options import OpsListenOption

log = logging.getLogger(__name__)

DEFAULT_AI_ADDR = "localhost:50052"


def ai(
    config: ConfigOption = None,
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            "-l",
            callback=listen_option,
            help="gRPC listen address, HOST:PORT (default: ai.grpc_listen_addr, else 127.0.0.1:50052); :PORT "
            "listens on every interface.",
            show_default=False,
        ),
    ] = None,
    ops_listen: OpsListenOption = None,
) -> None:
    """Serve the AI analysis gRPC service (v1.AIService) in front of an OpenAI-compatible model.

    Uses ai.api_key (or AI_API_KEY / OPENAI_API_KEY), ai.model and ai.base_url (empty: OpenAI). Listens
    on 127.0.0.1 unless told otherwise; bearer tokens (ai.auth, NETSPECTRA_AI_TOKENS) and TLS (ai.tls) as
    for the query service (docs/api.md). Stops on Ctrl-C or SIGTERM, letting calls in flight finish for a
    few seconds.
    """
    require("ai", "ai")
    from netspectra.ai.service import AiConfigError, serve
    from netspectra.config import ConfigError, load_config
    from netspectra.ops.endpoint import resolve_listen, start_ops

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    try:
        ops = start_ops("ai", resolve_listen(ops_listen, cfg))
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    grpc_metrics = None
    if ops is not None:
        from netspectra.ops.grpcmetrics import GrpcMetrics

        grpc_metrics = GrpcMetrics()
        ops.add(grpc_metrics)
    try:
        server, port = serve(
            cfg.ai, addr=listen, interceptors=[grpc_metrics.interceptor()] if grpc_metrics else []
        )
    except AiConfigError as exc:
        raise fail(str(exc)) from None
    except OSError as exc:
        raise fail(str(exc)) from None
    err_console.print(f"AI service (v1.AIService) listening on port {port}; Ctrl-C to stop", highlight=False)
    done = threading.Event()
    if ops is not None:
        ops.check("grpc", lambda: None if not done.is_set() else "stopping")

    def _stop(signum: int, _frame: object) -> None:
        done.set()
        if ops is not None:
            ops.set_stopping()

    previous = (
        signal.signal(signal.SIGTERM, _stop)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        while not done.wait(0.5):
            if ops is not None:
                ops.heartbeat.beat()
    except KeyboardInterrupt:
        pass
    finally:
        if ops is not None:
            ops.set_stopping()
        server.stop(grace=5.0).wait()
        if ops is not None:
            ops.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    err_console.print("AI service stopped", highlight=False)


def ask_ai(
    question: Annotated[
        list[str] | None,
        typer.Argument(
            help="The prompt (several words are joined with spaces).", show_default=False, metavar="QUESTION"
        ),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", "-p", help="The prompt (instead of arguments).", show_default=False),
    ] = None,
    addr: Annotated[
        str | None,
        typer.Option(
            "--addr",
            "--port",
            help="Address of the AI service, host:port (default: alerter.ai_analysis.service_addr of the "
            f"configuration, else {DEFAULT_AI_ADDR}).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds allowed for the whole answer.")
    ] = 300.0,
    config: ConfigOption = None,
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar="NETSPECTRA_AI_TOKEN",
            help="Bearer token of the AI service (ai.auth). Prefer the environment variable: options are "
            "visible to other users in the process list.",
            show_default=False,
        ),
    ] = "",
    tls: Annotated[
        bool,
        typer.Option(
            "--tls", envvar="NETSPECTRA_AI_TLS", help="Speak TLS (implied by --ca-file, --cert-file)."
        ),
    ] = False,
    ca_file: Annotated[
        str,
        typer.Option(
            "--ca-file",
            envvar="NETSPECTRA_AI_CA_FILE",
            help="PEM CAs that sign the service's certificate (default with --tls: the system's).",
            show_default=False,
        ),
    ] = "",
    cert_file: Annotated[
        str,
        typer.Option(
            "--cert-file",
            envvar="NETSPECTRA_AI_CERT_FILE",
            help="PEM client certificate (mutual TLS).",
            show_default=False,
        ),
    ] = "",
    key_file: Annotated[
        str,
        typer.Option(
            "--key-file", envvar="NETSPECTRA_AI_KEY_FILE", help="PEM key of --cert-file.", show_default=False
        ),
    ] = "",
) -> None:
    """Ask the AI service a question and stream its answer to the terminal."""
    require("ask-ai", "ai")
    from netspectra.ai.client import AiClient, AiClientError
    from netspectra.auth import ClientSecurity

    text = prompt if prompt is not None else " ".join(question or [])
    if not text.strip():
        raise fail('no prompt: netspectra ask-ai "your question" (or --prompt)')
    if addr is None:
        addr = DEFAULT_AI_ADDR
        if config is not None:
            from netspectra.config import ConfigError, load_config

            try:
                addr = load_config(config, log_warnings=False).alerter.ai_analysis.service_addr or addr
            except ConfigError as exc:
                raise fail(str(exc)) from None
    if bool(cert_file) != bool(key_file):
        raise fail("--cert-file and --key-file go together", code=2)
    try:
        client = AiClient(
            addr, timeout_s=timeout, security=ClientSecurity(token.strip(), tls, ca_file, cert_file, key_file)
        )
    except ValueError as exc:
        raise fail(str(exc), code=2) from None
    started = False
    try:
        for chunk in client.stream(text):
            started = True
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except AiClientError as exc:
        if started:
            sys.stdout.write("\n")
        raise fail(f"AI service at {client.addr}: {exc}", code=1) from None
    finally:
        client.close()
    sys.stdout.write("\n")
    sys.stdout.flush()
