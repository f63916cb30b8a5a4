"""Cache scopes: what must be equal for a video to be reused."""

from __future__ import annotations

import hashlib
import json

from streamproc.cache.base import scope_of
from streamproc.events import PromptEvent


def an_event(**fields: object) -> PromptEvent:
    return PromptEvent.model_validate({"event_id": "e", "prompt": "a red fox", **fields})


def test_a_draft_and_a_standard_request_never_share_a_scope() -> None:
    event = an_event()
    assert scope_of(event, "m", None).key() != scope_of(event, "m", "first-block:0.1").key()
    assert scope_of(event, "m", "first-block:0.1") != scope_of(event, "m", "first-block:0.2")


def test_standard_scopes_keep_the_ids_they_had_before_request_classes() -> None:
    # Entries written before step caches existed (Redis, other workers) must still match.
    scope = scope_of(an_event(negative_prompt="Blurry!"), "m", None)
    before = {
        "model_id": "m",
        "width": 832,
        "height": 480,
        "num_frames": 17,
        "num_inference_steps": 16,
        "guidance_scale": 5.0,
        "negative_prompt": "blurry",
        "tenant": None,
    }
    material = json.dumps(before, sort_keys=True, separators=(",", ":"))
    assert scope.key() == hashlib.sha256(material.encode()).hexdigest()[:24]


def test_tenant_and_negative_prompt_are_part_of_the_scope() -> None:
    base = scope_of(an_event(), "m", None)
    assert scope_of(an_event(tenant="acme"), "m", None) != base
    assert scope_of(an_event(negative_prompt="blur"), "m", None) != base
