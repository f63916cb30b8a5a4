"""The admit stage alone: records become requests; any failure gets its dead-letter reason."""

from __future__ import annotations

import json

import pytest

from streamproc.bus.base import Partition, Record
from streamproc.errors import (
    DeadlineExceeded,
    GenerationError,
    InvalidEventError,
    RecordRejected,
    StorageError,
)
from streamproc.events import CacheMode, DeadLetterReason, canonical_prompt, utcnow
from streamproc.settings import Settings
from streamproc.stages.admit import Admit, classify, event_id_or_none
from streamproc.stages.base import Trace
from tests.conftest import MakeSettings
from tests.helpers import event

PARTITION = Partition("prompts", 0)


def record(value: bytes, **fields: object) -> Record:
    return Record(value=value, partition=PARTITION, offset=7, **fields)  # type: ignore[arg-type]


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


@pytest.fixture
def admit(settings: Settings) -> Admit:
    return Admit(settings, model_id="tiny-wan", scheduler="unipc")


def test_a_valid_record_decodes_and_takes_its_origin_from_created_at(admit: Admit) -> None:
    trace = Trace(admitted=1.0)
    body = event("e1", "a lighthouse", created_at="2026-01-01T00:00:00Z")
    decoded = admit.decode(record(json.dumps(body).encode()), trace)
    assert decoded.event_id == "e1"
    assert trace.origin == decoded.created_at.timestamp()  # type: ignore[union-attr]


def test_a_record_the_source_cut_is_malformed_and_names_the_cut_not_a_setting(
    admit: Admit,
) -> None:
    with pytest.raises(InvalidEventError) as caught:
        admit.decode(record(b'{"event_id": "e', cut_at=4096), Trace(admitted=1.0))
    assert caught.value.reason == DeadLetterReason.MALFORMED
    assert caught.value.error_class == "RecordTooLarge"
    assert "4096 bytes" in caught.value.detail
    assert "local" not in caught.value.detail


def test_bytes_that_are_no_event_raise_invalid_event(admit: Admit) -> None:
    with pytest.raises(InvalidEventError) as caught:
        admit.decode(record(b"{broken"), Trace(admitted=1.0))
    assert caught.value.reason == DeadLetterReason.MALFORMED


def test_a_request_carries_canonical_prompts_shape_scope_and_mode(
    admit: Admit, settings: Settings
) -> None:
    body = event("e1", "  A Lighthouse in a storm.  ", negative_prompt="Blurry", seed=5)
    decoded = admit.decode(record(json.dumps(body).encode()), Trace(admitted=1.0))
    request = admit.request(decoded, utcnow())
    assert request.prompt == canonical_prompt(decoded.prompt) == "A Lighthouse in a storm."
    assert request.params.seed == 5 and request.params.negative_prompt == "Blurry"
    assert request.params.scheduler == "unipc"
    assert request.shape.model_id == "tiny-wan"
    assert (request.shape.width, request.shape.height) == (decoded.width, decoded.height)
    assert request.scope.model_id == "tiny-wan"
    assert request.mode is settings.cache.mode is CacheMode.REUSE


def test_an_events_own_cache_mode_wins_over_the_setting(admit: Admit) -> None:
    body = event("e1", "a fox", attributes={"cache": "bypass"})
    decoded = admit.decode(record(json.dumps(body).encode()), Trace(admitted=1.0))
    assert admit.request(decoded, utcnow()).mode is CacheMode.BYPASS


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (InvalidEventError("schema_violation", "width: too small"), "schema_violation"),
        (DeadlineExceeded("late"), "deadline_exceeded"),
        (GenerationError("nan"), "generation_failed"),
        (RecordRejected("too big", component="sink"), "result_too_large"),
        (RecordRejected("killed the encoder", component="encoder"), "generation_failed"),
        (RecordRejected("EntityTooLarge", component="store"), "internal_error"),
        (StorageError("down"), "internal_error"),
        (KeyError("bug"), "internal_error"),
    ],
)
def test_every_exception_has_a_dead_letter_reason(error: Exception, reason: str) -> None:
    assert classify(error)[0].value == reason


def test_an_unforeseen_exception_is_named_in_the_detail() -> None:
    reason, detail, error_class = classify(ZeroDivisionError("division by zero"))
    assert reason is DeadLetterReason.INTERNAL_ERROR
    assert detail == "ZeroDivisionError: division by zero"
    assert error_class == "ZeroDivisionError"


def test_the_event_id_of_bytes_that_break_the_decoder_is_none() -> None:
    assert event_id_or_none(b"[" * 100_000) is None
    assert event_id_or_none(b'{"event_id": "e9"}') == "e9"
