"""What the HTTP app accepts as input, checked before anything is queried.

* **JSON bodies are read whatever the ``Content-Type`` says** (``curl -d`` sends
  ``application/x-www-form-urlencoded``), as UTF-8, at most :data:`MAX_BODY_BYTES` (413
  ``RESOURCE_EXHAUSTED`` beyond), strictly: ``NaN``/``Infinity`` and numbers beyond a float
  (``1e400``) or with more than :data:`MAX_INT_DIGITS` digits are refused, as are nesting deeper than
  :data:`MAX_DEPTH`, strings longer than :data:`MAX_STRING_CHARS` and strings (keys included) holding
  a lone surrogate (``"\\ud800"``) — each a 400 ``INVALID_ARGUMENT`` naming where.
* Names and filters taken from the query string or a body (:func:`check_text`): at most
  :data:`MAX_NAME_CHARS` characters, no control characters, no lone surrogates.
* Input is echoed in messages only through :func:`~netspectra.api.grpc_service.shown` (bounded,
  escaped).
"""

from __future__ import annotations

import json
import math
from typing import Any

import grpc
from fastapi import Request

from netspectra.api.grpc_service import MAX_NAME_CHARS, QueryError, shown

#: Largest request body read.
MAX_BODY_BYTES = 1 << 20
#: Deepest nesting of arrays and objects in a body.
MAX_DEPTH = 32
#: Longest string (or object key) in a body.
MAX_STRING_CHARS = 16_384
#: Most digits of an integer (int64 has 19).
MAX_INT_DIGITS = 30


def _invalid(message: str) -> QueryError:
    return QueryError(grpc.StatusCode.INVALID_ARGUMENT, message)


class _BadNumberError(Exception):
    pass


def _constant(name: str) -> Any:
    raise _BadNumberError(f"{name} is not a JSON number; send a finite number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadNumberError(f"the number {shown(text, 40)} is out of range")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _BadNumberError(f"an integer of {len(text.lstrip('-'))} digits is out of range")
    return int(text)


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_tree(doc: Any) -> None:
    """Depth, string length and lone surrogates of a parsed body (iteratively: no recursion limit)."""
    stack: list[tuple[Any, str, int]] = [(doc, "$", 0)]
    while stack:
        node, where, depth = stack.pop()
        if isinstance(node, str):
            if len(node) > MAX_STRING_CHARS:
                raise _invalid(
                    f"{where}: a string of {len(node):,} characters (at most {MAX_STRING_CHARS:,})"
                )
            if _lone_surrogate(node):
                raise _invalid(
                    f"{where}: the string holds a lone surrogate (\\ud800-\\udfff), not Unicode text"
                )
        elif isinstance(node, dict | list):
            if depth >= MAX_DEPTH:
                raise _invalid(f"{where}: nested deeper than {MAX_DEPTH} levels")
            if isinstance(node, dict):
                for key, value in node.items():
                    key_where = f"{where}.{shown(key, 40)}"
                    if len(key) > MAX_STRING_CHARS or _lone_surrogate(key):
                        raise _invalid(f"{where}: an object key that is too long or not Unicode text")
                    stack.append((value, key_where, depth + 1))
            else:
                stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in enumerate(node))


def parse_json(raw: bytes) -> Any:
    """A request body as JSON (``None`` when empty), by the rules of the module docstring."""
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"the body is not UTF-8 text (byte {exc.start}); send JSON in UTF-8") from None
    try:
        doc = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except _BadNumberError as exc:
        raise _invalid(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _invalid(f"the body is nested deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise _invalid(
            f"the body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); send a JSON object "
            "(with curl: -d '{...}')"
        ) from None
    _check_tree(doc)
    return doc


async def json_body(request: Request) -> Any:
    """FastAPI dependency: the request's body as JSON, whatever its content type (``None`` if empty)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large(int(declared))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large(size)
        chunks.append(chunk)
    return parse_json(b"".join(chunks))


def _too_large(size: int) -> QueryError:
    return QueryError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"the body has {size:,} bytes or more; at most {MAX_BODY_BYTES:,} are read",
        http_status=413,
    )


def json_object(payload: Any, what: str, *, required: bool = False) -> dict[str, Any]:
    """``payload`` as an object (``{}`` when absent and not ``required``); 400 otherwise."""
    if payload is None and not required:
        return {}
    if not isinstance(payload, dict):
        got = "nothing" if payload is None else f"a JSON {type(payload).__name__}"
        raise _invalid(f"the body must be a JSON object ({what}), got {got}")
    return payload


def check_text(value: Any, what: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """A name or filter value: a string of at most ``max_chars`` characters, without control characters
    or lone surrogates; 400 otherwise."""
    if not isinstance(value, str):
        raise _invalid(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise _invalid(f"{what}: {len(value):,} characters (at most {max_chars:,})")
    if _lone_surrogate(value):
        raise _invalid(f"{what}: holds a lone surrogate (\\ud800-\\udfff), not Unicode text")
    bad = next((ch for ch in value if not ch.isprintable() and ch != " "), None)
    if bad is not None:
        raise _invalid(f"{what}: holds the control character U+{ord(bad):04X}")
    return value
