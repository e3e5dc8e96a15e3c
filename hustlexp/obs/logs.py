"""Logging setup: one JSON object per line (HUSTLEXP_LOG_FORMAT=json, the production default)
or readable text, both carrying the current request id. Fields passed as
`extra={"fields": {...}}` become top-level keys of the JSON line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from hustlexp.obs.context import current_request_id

ACCESS_LOGGER = "hustlexp.access"
# Dates and dataclasses in log fields are written as their str(), as the stdlib encoder's
# default=str wrote them (orjson would write its own forms).
_PASSTHROUGH = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One compact JSON object per record (orjson: the stdlib encoder was most of what the
    access line cost); values JSON cannot hold are written as their str()."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(line, default=str, option=_PASSTHROUGH).decode()
        except (TypeError, orjson.JSONEncodeError):  # what orjson refuses (a lone surrogate...)
            return json.dumps(line, default=str, ensure_ascii=False)


def configure(fmt: str, level: int) -> None:
    """Root handler on stderr in the chosen format; the access log always at INFO (one line
    per request is its whole point). Like logging.basicConfig, a process whose logging is
    already set up (a host embedding us, pytest) keeps its handlers."""
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO)
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
