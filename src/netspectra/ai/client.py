"""Client of ``v1.AIService`` (the alerter's AI analysis, ``netspectra ask-ai``) and markdown → HTML.

:class:`AiClient` talks to the service over an insecure gRPC channel (as the original). Every call has
a deadline (``timeout_s``, 60 s by default as the original's alerter): a slow or dead service costs a
caller at most that long, and failures raise :class:`AiClientError` carrying the gRPC status code.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import grpc

    from netspectra.auth import ClientSecurity

# grpc, the generated stubs and markdown-it are imported when first used: the alerter imports this
# module, and a process whose alerts need no AI analysis should not load them.
log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
#: Heading of the AI section appended to an alert e-mail (the original's layout).
AI_SECTION_HEADING = "<hr><h2>AI-Powered Analysis</h2>"


@cache
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # CommonMark plus GitHub tables and strikethrough; raw HTML in the model's answer is escaped, not
    # passed through (the answer is untrusted text that ends up in an e-mail).
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])


def markdown_to_html(text: str) -> str:
    """``text`` (markdown, e.g. a model's answer) as an HTML fragment; raw HTML in it is escaped."""
    return str(_markdown().render(text))


def ai_section_html(markdown: str) -> str:
    """The section appended to an alert e-mail: ``<hr><h2>AI-Powered Analysis</h2>`` + the HTML."""
    return AI_SECTION_HEADING + markdown_to_html(markdown)


def client_address(addr: str) -> str:
    """A Go-style address as a gRPC target: ``:50052`` → ``localhost:50052``; others unchanged."""
    return f"localhost{addr}" if addr.startswith(":") else addr


class AiClientError(Exception):
    """A failed call: ``code`` (a :class:`grpc.StatusCode`) and the server's or channel's message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class AiClient:
    """``v1.AIService`` at ``addr`` (``host:port``; ``:port`` means localhost). Thread-safe.

    ``security`` (a :class:`~netspectra.auth.ClientSecurity`: bearer token, TLS) defaults to the
    environment: ``NETSPECTRA_AI_TOKEN``, ``NETSPECTRA_AI_TLS``, ``NETSPECTRA_AI_CA_FILE``,
    ``NETSPECTRA_AI_CERT_FILE``, ``NETSPECTRA_AI_KEY_FILE`` (how the alerter reaches an AI service with
    ``ai.auth`` / ``ai.tls``). ``ValueError`` when a TLS file cannot be read."""

    def __init__(
        self, addr: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, security: ClientSecurity | None = None
    ) -> None:
        if not addr:
            raise ValueError("the AI service address is empty (alerter.ai_analysis.service_addr)")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        from netspectra.auth import ClientSecurity
        from netspectra.proto.v1 import ai_pb2_grpc

        self.addr = client_address(addr)
        self.timeout_s = float(timeout_s)
        self.security = security if security is not None else ClientSecurity.from_env("NETSPECTRA_AI")
        self._channel = self.security.channel(self.addr)
        self._stub = ai_pb2_grpc.AIServiceStub(self._channel)

    def __repr__(self) -> str:
        return f"AiClient({self.addr!r}, timeout_s={self.timeout_s:g})"

    def __enter__(self) -> AiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def analyze(self, text: str, *, timeout_s: float | None = None) -> str:
        """``AnalyzeTraffic(text)``: the model's analysis (markdown). :class:`AiClientError` on failure
        or when ``timeout_s`` (default the client's) passes."""
        import grpc

        from netspectra.proto.v1 import ai_pb2

        try:
            resp = self._stub.AnalyzeTraffic(
                ai_pb2.AnalyzeTrafficRequest(text_input=text), timeout=timeout_s or self.timeout_s
            )
        except grpc.RpcError as exc:
            raise _error(exc) from None
        return str(resp.text_output)

    def stream(self, prompt: str, *, timeout_s: float | None = None) -> Iterator[str]:
        """``AnalyzePromptStream(prompt)``: the answer's chunks as they come (empty ones skipped).
        :class:`AiClientError` on failure; ``timeout_s`` bounds the whole stream."""
        import grpc

        from netspectra.proto.v1 import ai_pb2

        call = self._stub.AnalyzePromptStream(
            ai_pb2.AnalyzePromptRequest(prompt=prompt), timeout=timeout_s or self.timeout_s
        )
        try:
            for resp in call:
                if resp.chunk:
                    yield str(resp.chunk)
        except grpc.RpcError as exc:
            raise _error(exc) from None
        finally:
            call.cancel()

    def close(self) -> None:
        self._channel.close()


def _error(exc: grpc.RpcError) -> AiClientError:
    import grpc

    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return AiClientError(code or grpc.StatusCode.UNKNOWN, details or "no details")
