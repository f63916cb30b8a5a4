"""The control plane's contract: status and control events, and their JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from streamproc.errors import InvalidEventError
from streamproc.events import (
    ControlEvent,
    StatusEvent,
    StatusState,
    VideoResult,
    decode_control,
    utcnow,
)
from streamproc.settings import Settings

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


def schema(name: str) -> dict[str, object]:
    return json.loads((SCHEMAS / f"{name}.v1.schema.json").read_text())  # type: ignore[no-any-return]


def test_a_cancel_by_event_id_decodes() -> None:
    event = decode_control(b'{"action": "cancel", "event_id": "e-1", "reason": "user left"}')
    assert (event.event_id, event.tenant, event.reason) == ("e-1", None, "user left")


def test_a_cancel_by_tenant_decodes_with_its_issue_time() -> None:
    event = decode_control(
        b'{"action": "cancel", "tenant": "acme", "issued_at": "2026-12-01T10:00:00Z"}'
    )
    assert event.tenant == "acme"
    assert event.issued_at is not None and event.issued_at.year == 2026


@pytest.mark.parametrize(
    "raw",
    [
        b'{"action": "cancel"}',
        b'{"action": "cancel", "event_id": "e", "tenant": "t"}',
        b'{"action": "pause", "event_id": "e"}',
        b'{"action": "cancel", "event_id": "e", "extra": 1}',
        b'{"action": "cancel", "tenant": "no spaces"}',
        b"[1]",
        b"\xff",
    ],
)
def test_a_bad_control_record_raises_only_invalid_event_error(raw: bytes) -> None:
    with pytest.raises(InvalidEventError):
        decode_control(raw)


def test_the_control_schema_needs_exactly_one_target() -> None:
    spec = schema("control-event")
    jsonschema.validate({"action": "cancel", "event_id": "e"}, spec)
    jsonschema.validate({"action": "cancel", "tenant": "t", "event_id": None}, spec)
    for bad in ({"action": "cancel"}, {"action": "cancel", "event_id": "e", "tenant": "t"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, spec)


def test_a_status_event_validates_against_its_schema() -> None:
    event = StatusEvent(
        event_id="e",
        state=StatusState.GENERATING,
        at=utcnow(),
        worker_id="w",
        step=3,
        total_steps=16,
        batch_size=2,
    )
    jsonschema.validate(json.loads(event.model_dump_json()), schema("status-event"))
    assert ControlEvent.model_validate({"action": "cancel", "event_id": "e"}).event_id == "e"


def test_a_cancelled_result_is_in_the_result_schema() -> None:
    states = schema("video-result")["properties"]["status"]["enum"]  # type: ignore[index]
    assert "cancelled" in states
    assert VideoResult.model_fields["status"].annotation is not None


def test_control_plane_settings_have_defaults_the_gateway_can_read() -> None:
    settings = Settings()
    assert settings.kafka.status_topic == "streamproc.status"
    assert settings.kafka.control_topic == "streamproc.control"
    assert settings.local_status_path == str(Path("streamproc-out") / "status.jsonl")
    assert settings.tenants.quota("acme").max_in_flight == 0


def test_named_tenant_quotas_and_weights_override_the_defaults() -> None:
    settings = Settings.model_validate(
        {
            "tenants": {
                "max_in_flight": 5,
                "weights": {"gold": 4.0},
                "quotas": {"gold": {"max_in_flight": 50, "events_per_minute": 600}},
            }
        }
    )
    assert settings.tenants.quota("gold").max_in_flight == 50
    assert settings.tenants.quota("other").max_in_flight == 5
    assert settings.tenants.weight("gold") == 4.0
    assert settings.tenants.weight(None) == 1.0
