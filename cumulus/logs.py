"""Structured, one-line logs that name the service, workflow, adapter and event they concern.

Usage::

    log = get_logger("gateway")
    log.info("request.done", workflow="wf-1", adapter="ad-3", latency_ms=12.5)

prints ``ts=... level=info service=gateway event=request.done workflow=wf-1 adapter=ad-3 latency_ms=12.5``
(or the same as one JSON object with ``log_format: json``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_FORMAT = {"value": "kv"}


class StructuredLogger:
    """A thin wrapper so call sites pass fields as keywords instead of formatting strings."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._logger = logging.getLogger(f"cumulus.{service}")

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            line = format_line(level, self.service, event, fields)
            self._logger.log(level, line, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log at ERROR with the current exception's traceback attached."""
        self._log(logging.ERROR, event, fields, exc_info=True)


def format_line(level: int, service: str, event: str, fields: dict[str, Any]) -> str:
    record = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "level": logging.getLevelName(level).lower(),
        "service": service,
        "event": event,
        **fields,
    }
    if _FORMAT["value"] == "json":
        return json.dumps(record, default=str, separators=(",", ":"))
    return " ".join(f"{key}={_kv_value(value)}" for key, value in record.items())


def _kv_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if not text or any(ch in text for ch in ' ="\n'):
        return json.dumps(text)
    return text


def configure_logging(log_format: str = "kv", level: int = logging.INFO) -> None:
    """Send every logger to stderr as bare lines (the structure is in the message itself)."""
    _FORMAT["value"] = log_format
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    root.setLevel(level)


def get_logger(service: str) -> StructuredLogger:
    return StructuredLogger(service)
