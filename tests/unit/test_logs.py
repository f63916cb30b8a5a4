"""Log lines: JSON off a terminal, console on one; per-event context; no secrets, short prompts."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from pydantic import SecretStr

from streamproc.logs import MASK, configure_logging
from streamproc.settings import LogSettings


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_off_a_terminal_lines_are_json_with_the_bound_event_context() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(), stream=out)
    structlog.contextvars.bind_contextvars(
        topic="prompts", partition=2, offset=41, event_id="e-1", batch_id="b7"
    )
    structlog.get_logger("t").info("event_generated", object_key="videos/x.mp4")
    [line] = lines(out)
    assert line["event"] == "event_generated"
    assert line["level"] == "info"
    assert {k: line[k] for k in ("topic", "partition", "offset", "event_id", "batch_id")} == {
        "topic": "prompts",
        "partition": 2,
        "offset": 41,
        "event_id": "e-1",
        "batch_id": "b7",
    }
    assert "timestamp" in line


def test_on_a_terminal_lines_are_for_people_not_json() -> None:
    out = Terminal()
    configure_logging(LogSettings(), stream=out)
    structlog.get_logger("t").info("worker_started", worker_id="w1")
    text = out.getvalue()
    assert "worker_started" in text and "worker_id" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_format_json_forces_json_even_on_a_terminal() -> None:
    out = Terminal()
    configure_logging(LogSettings(format="json"), stream=out)
    structlog.get_logger("t").info("worker_started")
    assert lines(out)[0]["event"] == "worker_started"


def test_prompts_are_cut_to_the_configured_length() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(max_prompt_chars=10), stream=out)
    structlog.get_logger("t").info("x", prompt="a" * 500, negative_prompt="short")
    [line] = lines(out)
    assert line["prompt"] == "a" * 9 + "…"
    assert line["negative_prompt"] == "short"


def test_a_zero_limit_never_logs_prompts() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(max_prompt_chars=0), stream=out)
    structlog.get_logger("t").info("x", prompt="a secret plan")
    assert lines(out)[0]["prompt"] == ""


def test_secrets_never_reach_the_log() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(), stream=out)
    structlog.get_logger("t").warning(
        "connect_failed",
        redis_url=SecretStr("redis://:hunter2@cache:6379/0"),
        sasl_password="hunter2",
        error="ConnectionError('redis://user:hunter2@cache:6379/0 refused')",
        settings={"secret_access_key": "hunter2", "bucket": "videos"},
    )
    text = out.getvalue()
    assert "hunter2" not in text
    [line] = lines(out)
    assert line["redis_url"] == MASK and line["sasl_password"] == MASK
    assert line["error"] == f"ConnectionError('redis://user:{MASK}@cache:6379/0 refused')"
    assert line["settings"] == {"secret_access_key": MASK, "bucket": "videos"}


def test_a_password_with_a_raw_at_sign_is_masked_whole_and_the_host_stays() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(), stream=out)
    structlog.get_logger("t").warning("x", error="redis://:hun@ter2@cache:6379/0 refused")
    [line] = lines(out)
    assert line["error"] == f"redis://:{MASK}@cache:6379/0 refused"
