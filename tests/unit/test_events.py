"""The event contract: validation limits, dead-letter reasons, schema files."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.errors import InvalidEventError
from streamproc.events import (
    DeadLetter,
    DeadLetterReason,
    EventLimits,
    VideoResult,
    canonical_prompt,
    decode_prompt,
    event_id_of,
    json_schemas,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
LIMITS = EventLimits(
    max_prompt_chars=100,
    max_width=512,
    max_height=512,
    max_frames=33,
    max_steps=20,
    model_id="served-model",
)


def raw(**fields: Any) -> bytes:
    return json.dumps({"event_id": "e1", "prompt": "a cat", **fields}).encode()


def reason_of(data: bytes, limits: EventLimits | None = LIMITS) -> str:
    with pytest.raises(InvalidEventError) as info:
        decode_prompt(data, limits)
    return info.value.reason


def test_minimal_event_gets_the_reference_defaults() -> None:
    event = decode_prompt(raw())
    assert (event.width, event.height, event.num_frames) == (832, 480, 17)
    assert (event.num_inference_steps, event.guidance_scale) == (16, 5.0)
    assert event.schema_version == 1


def test_event_round_trips_through_json() -> None:
    event = decode_prompt(
        raw(
            negative_prompt="blur",
            seed=7,
            priority=3,
            tenant="acme",
            created_at="2026-11-25T10:00:00Z",
            attributes={"campaign": "x", "n": 2},
        )
    )
    assert decode_prompt(event.model_dump_json().encode()) == event


@pytest.mark.parametrize(
    "data",
    [b"not json", b"\xff\xfe\x00", b"[1, 2]", b'"just a string"', b"", b"{"],
    ids=["text", "not-utf8", "array", "string", "empty", "truncated"],
)
def test_unreadable_bytes_are_malformed(data: bytes) -> None:
    assert reason_of(data) == DeadLetterReason.MALFORMED


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"width": 100}, "schema_violation"),  # not a multiple of 32
        ({"height": 0}, "schema_violation"),
        ({"width": 4096}, "schema_violation"),  # above the contract's hard limit
        ({"num_frames": 16}, "schema_violation"),  # not 4k+1
        ({"num_frames": 0}, "schema_violation"),
        ({"num_inference_steps": 0}, "schema_violation"),
        ({"guidance_scale": -1}, "schema_violation"),
        ({"guidance_scale": 31}, "schema_violation"),
        ({"seed": -1}, "schema_violation"),
        ({"priority": 10}, "schema_violation"),
        ({"tenant": "no spaces allowed"}, "schema_violation"),
        ({"prompt": "   "}, "schema_violation"),
        ({"prompt": 5}, "schema_violation"),
        ({"unknown_field": 1}, "schema_violation"),
        ({"attributes": {"cache": "sometimes"}}, "schema_violation"),
        ({"created_at": "2026-11-25T10:00:00"}, "schema_violation"),  # no timezone
        ({"prompt": "x" * 101}, "oversize_prompt"),  # configured limit
        ({"prompt": "x" * 5000}, "oversize_prompt"),  # contract limit
        ({"negative_prompt": "x" * 101}, "oversize_prompt"),
        ({"width": 544}, "unsupported_parameter"),  # valid, but above this worker's limit
        ({"height": 640}, "unsupported_parameter"),
        ({"num_frames": 37}, "unsupported_parameter"),
        ({"num_inference_steps": 21}, "unsupported_parameter"),
        ({"model": "another-model"}, "unsupported_parameter"),
    ],
)
def test_every_limit_rejects_with_its_reason(fields: dict[str, Any], reason: str) -> None:
    assert reason_of(raw(**fields)) == reason


def test_missing_event_id_is_a_schema_violation() -> None:
    assert reason_of(b'{"prompt": "a cat"}') == "schema_violation"


def test_values_at_the_limits_are_accepted() -> None:
    event = decode_prompt(
        raw(
            prompt="x" * 100,
            width=512,
            height=512,
            num_frames=33,
            num_inference_steps=20,
            model="served-model",
            guidance_scale=0,
        ),
        LIMITS,
    )
    assert (event.width, event.num_frames, event.guidance_scale) == (512, 33, 0)


def test_rejection_detail_names_the_field() -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_prompt(raw(num_frames=16), LIMITS)
    assert "num_frames" in info.value.detail
    assert "4k+1" in info.value.detail


def test_missing_seed_is_derived_stably_from_event_id() -> None:
    a = decode_prompt(raw())
    b = decode_prompt(raw())
    other = decode_prompt(json.dumps({"event_id": "e2", "prompt": "a cat"}).encode())
    assert a.effective_seed() == b.effective_seed() != other.effective_seed()
    assert decode_prompt(raw(seed=42)).effective_seed() == 42


def test_result_id_is_deterministic_per_event() -> None:
    assert VideoResult.result_id_for("e1") == VideoResult.result_id_for("e1")
    assert VideoResult.result_id_for("e1") != VideoResult.result_id_for("e2")


def test_canonical_prompt_collapses_whitespace_and_unicode_forms() -> None:
    assert canonical_prompt("  a\u00a0red   fox\n") == "a red fox"
    assert canonical_prompt("ﬁsh") == "fish"  # NFKC ligature


def test_event_id_of_reads_ids_from_invalid_events_only_when_present() -> None:
    assert event_id_of(b'{"event_id": "abc", "width": 3}') == "abc"
    assert event_id_of(b"garbage") is None
    assert event_id_of(b'{"event_id": 5}') is None


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "prompt",
                "width",
                "height",
                "num_frames",
                "seed",
                "guidance_scale",
                "priority",
                "attributes",
                "tenant",
            ]
        ),
        st.one_of(
            st.integers(-5, 5000), st.text(max_size=20), st.none(), st.floats(), st.booleans()
        ),
    )
)
def test_any_json_object_either_validates_or_raises_invalid_event(data: dict[str, Any]) -> None:
    reason = None
    try:
        decode_prompt(json.dumps(data).encode(), LIMITS)
    except InvalidEventError as exc:
        reason = exc.reason
    # A JSON object is never "malformed": it validates or violates the schema.
    assert reason != DeadLetterReason.MALFORMED


def test_dead_letter_keeps_the_original_bytes() -> None:
    letter = DeadLetter.model_validate(
        {
            "reason": "malformed",
            "detail": "x",
            "error_class": "E",
            "original": base64.b64encode(b"\x00\xffraw").decode(),
            "origin": {"topic": "t", "partition": 1, "offset": 5},
            "worker_id": "w",
            "failed_at": "2026-11-25T10:00:00Z",
        }
    )
    assert letter.original_bytes() == b"\x00\xffraw"


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_schema_files_match_the_models(name: str) -> None:
    on_disk = json.loads((SCHEMAS / name).read_text())
    assert on_disk == json_schemas()[name], "run `streamproc schemas` and commit the result"


def test_schema_accepts_what_the_model_accepts() -> None:
    schema = json.loads((SCHEMAS / "prompt-event.v1.schema.json").read_text())
    event = decode_prompt(raw(seed=3, tenant="acme", created_at="2026-11-25T10:00:00Z"))
    jsonschema.validate(json.loads(event.model_dump_json()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"event_id": "x", "prompt": "p", "width": 100}, schema)


@pytest.mark.parametrize("quality", [3, "", "  ", ["draft"]])
def test_a_quality_attribute_must_name_a_class(quality: Any) -> None:
    assert reason_of(raw(attributes={"quality": quality})) == "schema_violation"


def test_quality_standard_or_absent_is_the_full_computation() -> None:
    assert decode_prompt(raw(attributes={"quality": "standard"})).quality is None
    assert decode_prompt(raw()).quality is None
    assert decode_prompt(raw(attributes={"quality": "draft"})).quality == "draft"


def test_a_quality_class_the_worker_lacks_is_unsupported() -> None:
    limits = EventLimits(quality_classes=frozenset({"draft"}))
    with pytest.raises(InvalidEventError) as info:
        decode_prompt(raw(attributes={"quality": "cinema"}), limits)
    assert info.value.reason == "unsupported_parameter"
    assert "quality 'cinema' is not offered here (classes: draft, standard)" in info.value.detail


def test_a_model_the_worker_does_not_serve_is_named_in_the_error() -> None:
    with pytest.raises(InvalidEventError) as info:
        decode_prompt(raw(model="other", width=256, height=256), LIMITS)
    assert "model 'other' is not served here (this worker runs 'served-model')" in info.value.detail
