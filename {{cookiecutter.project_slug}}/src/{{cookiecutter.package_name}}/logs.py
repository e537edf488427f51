"""Logging for the service and uvicorn: plain text or JSON (LOG_FORMAT), each line with the
request ID of the request it belongs to (taken from, or added as, X-Request-ID)."""

from __future__ import annotations

import logging
import logging.config
import sys
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="-")

TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
JSON = "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record comes, not as it was at configuration (a test
    runner or a caller may have replaced it since)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def config(log_format: str = "text", level: str = "INFO") -> dict:
    """A dictConfig for the root logger and uvicorn's loggers, access log included."""
    formatter = (
        {"()": "pythonjsonlogger.json.JsonFormatter", "fmt": JSON}
        if log_format == "json"
        else {"format": TEXT}
    )
    handler = {
        "class": f"{__name__}.StderrHandler",
        "formatter": "default",
        "filters": ["request_id"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            name: {"handlers": ["default"], "level": level, "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure(log_format: str = "text", level: str = "INFO") -> None:
    logging.config.dictConfig(config(log_format, level))
