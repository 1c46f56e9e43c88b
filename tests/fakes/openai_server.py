"""A small, real HTTP server speaking the OpenAI chat-completions protocol, for tests.

``POST /v1/chat/completions`` (also ``/chat/completions``): a JSON completion, or with ``"stream": true``
server-sent events (``data: {chunk}\\n\\n`` … ``data: [DONE]\\n\\n``). It listens on 127.0.0.1 on a free
port in a background thread; every request (path, headers with lower-case names, JSON body) is recorded in
:attr:`FakeOpenAI.requests`. Behaviour is set per test through attributes:

* ``reply`` — the content of a non-streamed answer;
* ``stream_chunks`` — the contents of the streamed chunks; ``None`` in the list sends a chunk with no
  ``choices`` (as providers do for usage), ``""`` a chunk with an empty delta;
* ``error`` — ``(http_status, message)``: answer every request with an OpenAI-style error document;
* ``delay_s`` — wait before answering (timeouts);
* ``api_key`` — when set, a request without ``Authorization: Bearer <api_key>`` gets HTTP 401.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (deadline tests) closes the connection under a slow answer: not an error
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeOpenAI:
    """The server; use as a context manager (``with FakeOpenAI() as srv: srv.base_url``)."""

    def __init__(self, *, api_key: str | None = None) -> None:
        self.reply = "## Assessment\n\nA **super-spreader** is scanning the network."
        self.stream_chunks: list[str | None] = ["Hello", "", None, ", ", "world", "!"]
        self.error: tuple[int, str] | None = None
        self.delay_s = 0.0
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _json(self, status: int, doc: dict[str, Any]) -> None:
                data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    fake.requests.append({"path": self.path, "headers": headers, "body": body})
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._json(401, {"error": {"message": "Incorrect API key provided", "type": "auth"}})
                    return
                if fake.error is not None:
                    status, message = fake.error
                    self._json(status, {"error": {"message": message, "type": "error", "code": status}})
                    return
                model = body.get("model", "")
                created = int(time.time())
                if not body.get("stream"):
                    self._json(
                        200,
                        {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion",
                            "created": created,
                            "model": model,
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": fake.reply},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                        },
                    )
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()
                base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created}
                for text in fake.stream_chunks:
                    if text is None:
                        chunk = {**base, "model": model, "choices": [], "usage": None}
                    else:
                        chunk = {
                            **base,
                            "model": model,
                            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
                        }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                end = {
                    **base,
                    "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
                self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
                self.close_connection = True

        return Handler
