"""Log output: the rich text handler (default) or one JSON object per line (``--log-format json``)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging"]

LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line.

    Keys: ``time`` (UTC, ISO 8601 with microseconds and ``Z``), ``level``, ``logger``, ``message``
    (the formatted message), and ``exception`` (the formatted traceback) when the record carries one;
    ``thread`` names the thread. Never raises on odd arguments: values that are not JSON-able are
    written with ``str``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: int, fmt: str, *, text_handler: logging.Handler, stream: TextIO) -> None:
    """Configure the root logger at ``level``: ``fmt`` ``"text"`` uses ``text_handler`` (the CLI's rich
    handler), ``"json"`` a :class:`JsonFormatter` on ``stream``. Replaces any earlier configuration.
    Python warnings are logged too (``logging.captureWarnings``); libraries that log through ``logging``
    (uvicorn with ``log_config=None``) come out in the same format.
    ``ValueError`` for another format."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r}: use one of {', '.join(LOG_FORMATS)}")
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(
            level=level, format="%(message)s", datefmt="[%X]", handlers=[text_handler], force=True
        )
    # warnings.warn(...) goes through the same handlers (logger "py.warnings"), not raw to stderr
    logging.captureWarnings(False)  # (re)install: someone may have replaced warnings.showwarning since
    logging.captureWarnings(True)
    # numba's own debug chatter is never what a user asks for with -vv
    logging.getLogger("numba").setLevel(logging.WARNING)
