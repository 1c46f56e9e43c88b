"""``v1.AIService`` over gRPC (the original's ns-ai): an LLM gateway to any OpenAI-compatible API.

* ``AnalyzeTraffic(text_input)``: one user message — the alert wrapper prompt (:func:`wrap_alert_data`,
  the input between ``--- Alert Data ---`` and ``--- End of Alert Data ---``) — and the first choice's
  content as ``text_output``.
* ``AnalyzePromptStream(prompt)``: the raw prompt, ``max_tokens`` 2048, streamed; every non-empty
  ``choices[0].delta.content`` becomes one ``chunk``. Chunks without choices (usage or keep-alive
  chunks) and empty deltas are skipped (the original panicked on the former). A cancelled call closes
  the upstream stream.
* The client is the OpenAI Python SDK with ``ai.api_key``, ``ai.model`` and ``ai.base_url`` (empty:
  OpenAI's endpoint); ``provider`` is informational. The key may also come from ``AI_API_KEY`` or
  ``OPENAI_API_KEY``; without one the service refuses to start (:class:`AiConfigError`).
* Provider errors become gRPC status codes (:data:`STATUS_BY_HTTP`, timeouts ``DEADLINE_EXCEEDED``,
  connection failures ``UNAVAILABLE``); the client sees one line, never a traceback, and the API key is
  masked in everything this module logs or returns (:func:`redact`).
* The call's gRPC deadline bounds the upstream request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health

from netspectra.auth import SecurityConfigError, ServiceSecurity
from netspectra.config.models import AiConfig
from netspectra.proto.v1 import ai_pb2, ai_pb2_grpc
from netspectra.rpc import create_server, warn_if_exposed

log = logging.getLogger(__name__)

SERVICE_NAME = "v1.AIService"
#: ``max_tokens`` of ``AnalyzePromptStream`` (as the original).
STREAM_MAX_TOKENS = 2048
#: Upstream request timeout when the gRPC call has no deadline.
DEFAULT_REQUEST_TIMEOUT_S = 120.0

PROMPT_TEMPLATE = (
    "You are a senior network security analyst. Analyse the following alert summary produced by the "
    "NetSpectra network traffic monitoring system. Give a concise, actionable assessment: the likely "
    "threat, its severity, and the next steps to investigate it.\n\n"
    "--- Alert Data ---\n{data}\n--- End of Alert Data ---"
)

#: HTTP status of a provider error -> gRPC status code.
STATUS_BY_HTTP: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
}


class AiConfigError(ValueError):
    """The AI service cannot start with this configuration; the message names the key and the fix."""


def wrap_alert_data(text: str) -> str:
    """The ``AnalyzeTraffic`` prompt for ``text``."""
    return PROMPT_TEMPLATE.format(data=text)


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` (if at least 4 characters) replaced by ``***``."""
    return text.replace(secret, "***") if secret and len(secret) >= 4 else text


@dataclass(frozen=True)
class AiSettings:
    """What the service needs: key (secret, never in ``repr``), model, base URL (``None``: OpenAI)."""

    api_key: str
    model: str
    base_url: str | None
    provider: str = ""

    def __repr__(self) -> str:
        return f"AiSettings(model={self.model!r}, base_url={self.base_url!r}, provider={self.provider!r})"

    @classmethod
    def from_config(cls, cfg: AiConfig, env: Mapping[str, str] | None = None) -> AiSettings:
        """From the ``ai`` section; the key falls back to ``AI_API_KEY``/``OPENAI_API_KEY``.
        :class:`AiConfigError` when the key or the model is missing."""
        env = os.environ if env is None else env
        key = cfg.api_key or env.get("AI_API_KEY", "") or env.get("OPENAI_API_KEY", "")
        if not key.strip():
            raise AiConfigError(
                "ai.api_key is empty: set AI_API_KEY (the shipped configuration reads ${AI_API_KEY}) or "
                "ai.api_key to the key of your OpenAI-compatible provider"
            )
        if not cfg.model.strip():
            raise AiConfigError(
                "ai.model is empty: name the model to use, e.g. gemini-2.5-flash or gpt-4o-mini"
            )
        return cls(key.strip(), cfg.model.strip(), cfg.base_url.strip() or None, cfg.provider)

    def client(self, *, max_retries: int = 2, timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S) -> Any:
        """An ``openai.OpenAI`` client for these settings."""
        import openai

        return openai.OpenAI(
            api_key=self.api_key, base_url=self.base_url, max_retries=max_retries, timeout=timeout_s
        )


class AiServicer(ai_pb2_grpc.AIServiceServicer):
    """The ``v1.AIService`` implementation over an OpenAI-compatible ``client`` (see the module)."""

    def __init__(self, client: Any, model: str, *, api_key: str = "") -> None:
        self.client = client
        self.model = model
        self._secret = api_key or str(getattr(client, "api_key", "") or "")

    def _timeout(self, context: grpc.ServicerContext) -> float:
        left = context.time_remaining()
        return DEFAULT_REQUEST_TIMEOUT_S if left is None else max(0.1, min(left, DEFAULT_REQUEST_TIMEOUT_S))

    def _abort(self, context: grpc.ServicerContext, exc: BaseException, what: str) -> None:
        code, message = provider_error_status(exc)
        message = redact(message, self._secret)
        log.warning("%s failed: %s (%s)", what, message, code.name)
        context.abort(code, message)

    def AnalyzeTraffic(  # noqa: N802 - gRPC method name
        self, request: ai_pb2.AnalyzeTrafficRequest, context: grpc.ServicerContext
    ) -> ai_pb2.AnalyzeTrafficResponse:
        if not request.text_input.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "text_input is empty")
        try:
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": wrap_alert_data(request.text_input)}],
                timeout=self._timeout(context),
            )
        except Exception as exc:
            self._abort(context, exc, "AnalyzeTraffic")
            raise  # unreachable: abort raises
        choices = getattr(resp, "choices", None) or []
        if not choices:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the model returned no choices")
        content = choices[0].message.content if choices[0].message is not None else None
        return ai_pb2.AnalyzeTrafficResponse(text_output=content or "")

    def AnalyzePromptStream(  # noqa: N802 - gRPC method name
        self, request: ai_pb2.AnalyzePromptRequest, context: grpc.ServicerContext
    ) -> Iterator[ai_pb2.AnalyzePromptResponse]:
        if not request.prompt.strip():
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "prompt is empty")
        try:
            stream = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": request.prompt}],
                max_tokens=STREAM_MAX_TOKENS,
                stream=True,
                timeout=self._timeout(context),
            )
        except Exception as exc:
            self._abort(context, exc, "AnalyzePromptStream")
            raise
        try:
            for chunk in stream:
                if not context.is_active():
                    log.info("AnalyzePromptStream: the client went away; closing the upstream stream")
                    return
                choices = getattr(chunk, "choices", None)
                if not choices:
                    continue  # usage / keep-alive chunk
                delta = getattr(choices[0], "delta", None)
                text = getattr(delta, "content", None) if delta is not None else None
                if text:
                    yield ai_pb2.AnalyzePromptResponse(chunk=text)
        except Exception as exc:
            self._abort(context, exc, "AnalyzePromptStream")
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()


def provider_error_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and a one-line message for an exception of the OpenAI SDK (or any other)."""
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a dependency of this module's users
        openai = None  # type: ignore[assignment]
    if openai is not None:
        if isinstance(exc, openai.APITimeoutError):
            return grpc.StatusCode.DEADLINE_EXCEEDED, "the AI provider did not answer in time"
        if isinstance(exc, openai.APIConnectionError):
            return grpc.StatusCode.UNAVAILABLE, f"cannot reach the AI provider: {_cause(exc)}"
        if isinstance(exc, openai.APIStatusError):
            status = int(exc.status_code)
            code = STATUS_BY_HTTP.get(status)
            if code is None:
                code = grpc.StatusCode.UNAVAILABLE if status >= 500 else grpc.StatusCode.UNKNOWN
            return code, f"AI provider error (HTTP {status}): {_provider_message(exc)}"
        if isinstance(exc, openai.OpenAIError):
            return grpc.StatusCode.INTERNAL, f"AI client error: {exc}"
    return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}: {cause}" if cause else str(exc)


def _provider_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        err = body.get("error", body)
        if isinstance(err, Mapping) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(getattr(exc, "message", "") or exc)


def create_ai_server(
    servicer: AiServicer,
    addr: str,
    *,
    max_workers: int = 16,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    security: ServiceSecurity | None = None,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """A (not yet started) gRPC server with ``v1.AIService``, the health service (``""`` and
    ``v1.AIService`` SERVING) and reflection, bound to ``addr`` (``:50052`` accepted; port 0 picks a free
    one), with the tokens and TLS of ``security`` (:mod:`netspectra.rpc`). Returns ``(server, port,
    health)``; ``OSError`` when the address cannot be bound."""
    return create_server(
        lambda server: ai_pb2_grpc.add_AIServiceServicer_to_server(servicer, server),
        ai_pb2.DESCRIPTOR.services_by_name["AIService"].full_name,
        addr,
        max_workers=max_workers,
        thread_prefix="ns-ai",
        interceptors=interceptors,
        security=security,
        service_label="the AI service (ai.auth)",
    )


def serve(
    cfg: AiConfig,
    *,
    addr: str | None = None,
    env: Mapping[str, str] | None = None,
    client: Any = None,
    max_retries: int = 2,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, int]:
    """Start the AI service of ``cfg`` on ``addr`` (default ``cfg.grpc_listen_addr``) with the tokens and
    TLS of ``ai.auth`` / ``ai.tls`` (token variables read from ``env``); returns the started server and
    its port. ``max_retries``: the SDK's retries of a failed upstream request (429, 5xx, connection
    errors). :class:`AiConfigError` without an API key or model, or for unusable tokens or TLS files
    (naming the key); ``OSError`` if the address cannot be bound."""
    settings = AiSettings.from_config(cfg, env)
    try:
        security = ServiceSecurity.load(cfg.auth, cfg.tls, "ai", env)
    except SecurityConfigError as exc:
        raise AiConfigError(str(exc)) from None
    client = client or settings.client(max_retries=max_retries)
    servicer = AiServicer(client, settings.model, api_key=settings.api_key)
    listen = addr or cfg.grpc_listen_addr
    server, port, _ = create_ai_server(servicer, listen, interceptors=interceptors, security=security)
    server.start()
    log.info(
        "AI service listening on %s (port %d; model %s, endpoint %s; %s)",
        listen,
        port,
        settings.model,
        settings.base_url or "OpenAI default",
        security.describe(),
    )
    warn_if_exposed(listen, security, "the AI service")
    return server, port
