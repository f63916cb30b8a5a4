"""structlog set-up: console lines on a TTY, JSON lines otherwise, always on stderr."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from streamproc.settings import LogSettings

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(settings: LogSettings, stream: TextIO | None = None) -> None:
    """Configure structlog (and route stdlib logging of our dependencies through it)."""
    out = stream or sys.stderr
    use_json = settings.format == "json" or (settings.format == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json:
        shared += [structlog.processors.format_exc_info]
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[settings.level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries log through stdlib logging; keep them quiet unless they warn.
    logging.basicConfig(
        stream=out, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("diffusers", "transformers", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters for a log line (empty when ``limit`` is 0)."""
    if limit <= 0:
        return ""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"
