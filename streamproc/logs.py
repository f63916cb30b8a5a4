"""structlog set-up: console lines on a TTY, JSON lines otherwise, always on stderr.

Every line carries the context the processor binds per event (``topic``, ``partition``,
``offset``, ``event_id``, and ``batch_id`` once it was generated) through
``structlog.contextvars``. Before rendering, :func:`redact_processor` masks secrets —
``SecretStr`` values, fields whose name says secret/password/token, passwords inside URLs —
and cuts prompt fields to ``log.max_prompt_chars``.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from pydantic import SecretStr

from streamproc.settings import LogSettings

#: Fields holding prompt text: cut to ``log.max_prompt_chars``.
PROMPT_FIELDS = frozenset({"prompt", "negative_prompt", "matched_prompt", "request"})
#: A field whose name contains one of these is never logged in clear.
SECRET_WORDS = ("password", "secret", "token", "api_key", "credential", "authorization")
MASK = "**********"
# scheme://user:password@host — the password part, up to the last '@' before the path (a
# password may hold a raw '@': redis-py and urllib split at the last one).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^/\s]+@")

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
        redact_processor(settings.max_prompt_chars),
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
        # One write per record (the message and its newline together, under a lock), so
        # records from several threads never interleave, and a progress display prints
        # each whole above its bar.
        logger_factory=structlog.WriteLoggerFactory(out),
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


def redact_processor(max_prompt_chars: int) -> structlog.types.Processor:
    """A structlog processor that masks secrets and shortens prompts (see the module doc)."""

    def redact(
        logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            event_dict[key] = _clean(key, value, max_prompt_chars)
        return event_dict

    return redact


def _clean(key: str, value: Any, max_prompt_chars: int) -> Any:
    if isinstance(value, SecretStr):
        return MASK
    lowered = key.lower()
    if any(word in lowered for word in SECRET_WORDS) and value is not None:
        return MASK
    if isinstance(value, str):
        if lowered in PROMPT_FIELDS:
            return shorten(value, max_prompt_chars)
        return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", value)
    if isinstance(value, dict):
        return {k: _clean(str(k), v, max_prompt_chars) for k, v in value.items()}
    return value
