"""Structured logs: JSON when not on a terminal, ids bound, phone numbers masked, no secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_PHONE = re.compile(r"\+\d{8,15}|(?<![\d.])0\d{9,10}(?![\d.])")


def mask_phone(text: str) -> str:
    """Keep the first 4 and last 2 digits of anything that looks like a phone number."""
    return _PHONE.sub(lambda m: m.group(0)[:4] + "*" * max(0, len(m.group(0)) - 6) + m.group(0)[-2:], text)


def _mask(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return {k: mask_phone(v) if isinstance(v, str) else v for k, v in event.items()}


def configure_logging(level: int = logging.INFO) -> None:
    """Set up structlog for this process."""
    renderer: Any = structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
