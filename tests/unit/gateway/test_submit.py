"""A submission's body becomes exactly the record a worker decodes, or a precise refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.events import EventLimits, decode_prompt
from streamproc.gateway.submit import (
    RequestError,
    event_id_for,
    parse_submission,
    request_model,
    video_id_from,
)

LIMITS = EventLimits()


def submit(body: bytes | str, **kw: Any) -> tuple[Any, bytes]:
    raw = body.encode() if isinstance(body, str) else body
    return parse_submission(raw, tenant="acme", video_id="v1", limits=LIMITS, **kw)


def test_the_record_is_the_body_with_the_gateways_fields_in_front() -> None:
    event, record = submit('{"prompt": "a cat", "width": 64}')
    data = json.loads(record)
    assert data["event_id"] == "acme:v1" and data["tenant"] == "acme"
    assert data["prompt"] == "a cat" and data["width"] == 64
    assert decode_prompt(record, LIMITS) == event


def test_an_empty_object_and_a_byte_order_mark_are_read_like_the_worker_does() -> None:
    with pytest.raises(RequestError) as empty:
        submit("{ }")
    assert (empty.value.status, empty.value.code) == (422, "schema_violation")
    assert "prompt" in empty.value.message
    event, _ = submit(b'\xef\xbb\xbf{"prompt": "a dog"}')
    assert event.prompt == "a dog"


def test_a_clients_created_at_is_kept() -> None:
    event, _ = submit('{"prompt": "a cat", "created_at": "2026-01-02T03:04:05Z"}')
    assert event.created_at is not None and event.created_at.year == 2026


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{", 400, "malformed"),
        ('"text"', 400, "malformed"),
        (b"\xff\xfe", 400, "malformed"),
        ('{"prompt": "a", "tenant": "x"}', 422, "reserved_field"),
        ('{"prompt": "a", "event_id": "x"}', 422, "reserved_field"),
        ('{"prompt": "a", "width": 33}', 422, "schema_violation"),
        ('{"prompt": "a", "num_inference_steps": 51}', 422, "unsupported_parameter"),
        ('{"prompt": "' + "x" * 2001 + '"}', 422, "oversize_prompt"),
        ('{"prompt": "a", "colour": "red"}', 422, "schema_violation"),
    ],
)
def test_refusals_are_precise(body: str | bytes, status: int, code: str) -> None:
    with pytest.raises(RequestError) as refused:
        submit(body)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert refused.value.message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "prompt",
            "width",
            "height",
            "num_frames",
            "seed",
            "attributes",
            "priority",
            "negative_prompt",
            "guidance_scale",
            "deadline",
            "model",
        ]
    ),
    JSON | st.just("a fox") | st.sampled_from([32, 64, 5, 9]),
    max_size=6,
)


@given(FIELDS)
def test_any_object_is_refused_or_becomes_the_event_a_worker_decodes(data: dict[str, Any]) -> None:
    body = json.dumps(data)
    try:
        event, record = submit(body)
    except RequestError as exc:
        refusal: RequestError | None = exc
    else:
        refusal = None
        assert decode_prompt(record, LIMITS) == event
    if refusal is not None:
        assert 400 <= refusal.status < 500 and refusal.code and refusal.message
        return
    assert event.event_id == "acme:v1" and event.tenant == "acme"


def test_video_ids_come_from_the_key_or_are_made_up() -> None:
    assert video_id_from("order-42_a.b~c") == "order-42_a.b~c"
    made = {video_id_from(None) for _ in range(3)}
    assert len(made) == 3
    for bad in ("", "has space", "a/b", "x" * 129, "é"):
        with pytest.raises(RequestError) as refused:
            video_id_from(bad)
        assert refused.value.code == "invalid_idempotency_key"


def test_two_tenants_never_share_an_event_id() -> None:
    assert event_id_for("a.b", "c") != event_id_for("a", "b.c")


def test_the_documented_body_has_no_gateway_fields() -> None:
    schema = request_model().model_json_schema()
    assert "prompt" in schema["required"]
    assert "event_id" not in schema["properties"] and "tenant" not in schema["properties"]
