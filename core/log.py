"""Structured logging: one event per line, JSON in production, readable on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import EventDict

SECRET_KEYS = ("password", "secret", "token", "key_data", "config", "env")


def _mask_secrets(_logger: object, _name: str, event: EventDict) -> EventDict:
    for key in list(event):
        if any(word in key.lower() for word in SECRET_KEYS):
            event[key] = "***"
    return event


def configure(fmt: str = "console", level: int = logging.INFO) -> None:
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    tracebacks = [structlog.processors.format_exc_info] if fmt == "json" else []  # the console renders its own
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask_secrets,
            *tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # asyncssh logs command lines at INFO; they can carry config values.
    logging.getLogger("asyncssh").setLevel(logging.WARNING)


def get(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)  # configure() makes it one
    return logger
