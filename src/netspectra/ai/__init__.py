"""AI analysis: the ``v1.AIService`` gateway to an OpenAI-compatible LLM, and its client.

* :mod:`~netspectra.ai.service` — the gRPC service (``netspectra ai``; the original's ns-ai).
* :mod:`~netspectra.ai.client` — :class:`AiClient` (used by the alerter and ``netspectra ask-ai``) and
  the markdown → HTML rendering of the analysis.

The service module imports the OpenAI SDK only when it builds a client, so the alerter's client side
needs only gRPC.
"""

from netspectra.ai.client import AiClient, AiClientError, ai_section_html, markdown_to_html

__all__ = ["AiClient", "AiClientError", "ai_section_html", "markdown_to_html"]
