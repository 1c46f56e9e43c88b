"""Bearer tokens on the HTTP app (see :mod:`netspectra.auth` for tokens and scopes).

With tokens configured every request needs ``Authorization: Bearer <token>`` except
:data:`OPEN_PATHS` (the health check, the API description and Swagger UI, the dashboard's static files),
``GET /`` from a browser (the dashboard page itself: it asks for the token and holds no data) and the
console's pages (``GET /console``, ``/console/<view>``: the same static page).
:data:`ADMIN_PATHS` need an admin token. Missing or unknown token: 401 ``UNAUTHENTICATED`` with
``WWW-Authenticate: Bearer``; a read token on an admin path: 403 ``PERMISSION_DENIED``. Unknown paths
need a token too (401 before 404: nothing is learnt about the routes without one). Refusals are
logged without the token or the header, rate-limited.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from netspectra.auth import RefusalLog, Scope, TokenSet, bearer_token

log = logging.getLogger(__name__)

#: Paths any client may read.
OPEN_PATHS = frozenset({"/api/v1/health", "/openapi.json", "/docs"})
OPEN_PREFIXES = ("/static/",)
#: Paths that need an admin token.
ADMIN_PATHS = frozenset({"/api/v1/config"})


def needed_scope(request: Request) -> Scope | None:
    """The scope a request needs (``None``: open)."""
    path = request.url.path
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    if path == "/" and request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", ""):
        return None  # the dashboard page (it asks for the token); `GET /` from Grafana needs one
    if (path == "/console" or path.startswith("/console/")) and request.method in ("GET", "HEAD"):
        return None  # the console's pages: static, they hold no data and ask for the token
    return Scope.ADMIN if path in ADMIN_PATHS else Scope.READ


def install_token_check(app: FastAPI, tokens: TokenSet) -> None:
    """Check every request of ``app`` against ``tokens`` (see the module docstring)."""
    refusals = RefusalLog(log)

    @app.middleware("http")
    async def _check_token(request: Request, call_next: Any) -> Any:
        need = needed_scope(request)
        if need is None:
            return await call_next(request)
        token = bearer_token(request.headers.get("authorization"))
        scope = tokens.scope_of(token)
        if scope is not None and scope >= need:
            return await call_next(request)
        peer = request.client.host if request.client else "?"
        if scope is None:
            reason = "invalid bearer token" if token else "no bearer token"
            refusals.refused(f"HTTP {request.method} {request.url.path[:200]}", peer, reason)
            return JSONResponse(
                {
                    "code": "UNAUTHENTICATED",
                    "message": f"{reason}: send the header 'Authorization: Bearer <token>' with a token of "
                    "the query service (api.auth)",
                },
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="netspectra"'},
            )
        refusals.refused(
            f"HTTP {request.method} {request.url.path[:200]}", peer, "a read token on an admin path"
        )
        return JSONResponse(
            {
                "code": "PERMISSION_DENIED",
                "message": f"{request.url.path[:200]} needs an admin token (api.auth.admin_tokens)",
            },
            status_code=403,
        )
