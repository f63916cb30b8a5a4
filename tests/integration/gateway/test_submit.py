"""POST /v1/videos against the real broker and Redis: a 202 means the record is in the topic,
a retry is the same video, a refusal produces nothing, a tenant sees only its own videos."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from streamproc.events import decode_prompt
from tests.integration.gateway.conftest import (
    GatewayTopics,
    gateway_settings,
    make_keys,
    serve,
)
from tests.kafka_broker import headers_of, read_all

pytestmark = pytest.mark.kafka

BODY = {"prompt": "a red fox crossing a frozen lake", "width": 64, "height": 32, "num_frames": 5}


async def test_an_accepted_submission_is_one_record_of_the_workers_contract(
    kafka_bootstrap: str, gw_topics: GatewayTopics
) -> None:
    keys = make_keys("acme")
    async with serve(gateway_settings(kafka_bootstrap, gw_topics, keys)) as gw, gw.client() as http:
        answer = await http.post(
            "/v1/videos", json=BODY, headers={**keys.auth("acme"), "Idempotency-Key": "v-1"}
        )
    assert answer.status_code == 202, answer.text
    view = answer.json()
    assert view["id"] == "v-1" and view["status"] == "queued"
    assert view["event_id"] == "acme:v-1"
    assert view["links"]["self"].endswith("/v1/videos/v-1")
    assert answer.headers["location"] == "/v1/videos/v-1"
    records = await read_all(kafka_bootstrap, gw_topics.names.prompts)
    assert len(records) == 1
    event = decode_prompt(records[0].value)  # exactly what a worker will decode
    assert event.event_id == "acme:v-1" and event.tenant == "acme"
    assert event.prompt == BODY["prompt"] and event.created_at is not None
    assert records[0].key == b"acme:v-1"
    assert headers_of(records[0])["tenant"] == b"acme"


async def test_a_retry_with_the_same_key_is_the_same_video_and_no_second_record(
    kafka_bootstrap: str, gw_topics: GatewayTopics
) -> None:
    keys = make_keys("acme")
    headers = {**keys.auth("acme"), "Idempotency-Key": "retry-me"}
    async with serve(gateway_settings(kafka_bootstrap, gw_topics, keys)) as gw, gw.client() as http:
        first = await http.post("/v1/videos", json=BODY, headers=headers)
        again = await http.post("/v1/videos", json=BODY, headers=headers)
        other = await http.post("/v1/videos", json={**BODY, "prompt": "a cat"}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["event_id"] == again.json()["event_id"]
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(await read_all(kafka_bootstrap, gw_topics.names.prompts)) == 1


async def test_refused_requests_produce_nothing(
    kafka_bootstrap: str, gw_topics: GatewayTopics
) -> None:
    keys = make_keys("acme", "ghost")
    settings = gateway_settings(
        kafka_bootstrap,
        gw_topics,
        keys,
        tenants={"acme": {"requests_per_s": 1000, "burst_requests": 1000}},
        gateway={"max_body_bytes": 2048},
    )
    # ghost's key is configured, but ghost is not a served tenant.
    auth = keys.auth("acme")
    cases = [
        ({}, json.dumps(BODY), 401, "missing_api_key"),
        ({"Authorization": "Bearer sp_not-a-key"}, json.dumps(BODY), 401, "invalid_api_key"),
        ({"Authorization": "Basic abc"}, json.dumps(BODY), 401, "missing_api_key"),
        (keys.auth("ghost"), json.dumps(BODY), 403, "unknown_tenant"),
        (auth, '{"prompt": "a cat",', 400, "malformed"),
        (auth, "[1, 2]", 400, "malformed"),
        (auth, json.dumps({**BODY, "num_frames": 6}), 422, "schema_violation"),
        (auth, json.dumps({**BODY, "width": 1600}), 422, "unsupported_parameter"),
        (auth, json.dumps({**BODY, "tenant": "other"}), 422, "reserved_field"),
        (auth, json.dumps({**BODY, "event_id": "mine"}), 422, "reserved_field"),
        (auth, json.dumps({**BODY, "prompt": "x" * 3000}), 413, "body_too_large"),
        (auth, '{"prompt": "a", "prompt": "b"}', 422, "schema_violation"),
        (
            {**auth, "Idempotency-Key": "has space"},
            json.dumps(BODY),
            400,
            "invalid_idempotency_key",
        ),
    ]
    async with serve(settings) as gw, gw.client() as http:
        for headers, body, status, code in cases:
            answer = await http.post(
                "/v1/videos", content=body, headers={**headers, "Content-Type": "application/json"}
            )
            assert answer.status_code == status, (body, answer.text)
            error = answer.json()
            assert error["error"]["code"] == code, (body, error)
            assert error["error"]["message"] and error["request_id"]
            if status == 401:
                assert answer.headers["www-authenticate"] == "Bearer"
    assert await read_all(kafka_bootstrap, gw_topics.names.prompts) == []


async def test_an_expired_key_is_refused(kafka_bootstrap: str, gw_topics: GatewayTopics) -> None:
    keys = make_keys("acme")
    settings = gateway_settings(kafka_bootstrap, gw_topics, keys)
    expired = settings.gateway.api_keys[0].model_copy(
        update={"expires_at": datetime(2020, 1, 1, tzinfo=UTC)}
    )
    settings = settings.model_copy(
        update={"gateway": settings.gateway.model_copy(update={"api_keys": [expired]})}
    )
    async with serve(settings) as gw, gw.client() as http:
        answer = await http.post("/v1/videos", json=BODY, headers=keys.auth("acme"))
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "expired_api_key"
    assert await read_all(kafka_bootstrap, gw_topics.names.prompts) == []


async def test_another_tenants_video_is_not_found(
    kafka_bootstrap: str, gw_topics: GatewayTopics
) -> None:
    keys = make_keys("acme", "globex")
    async with serve(gateway_settings(kafka_bootstrap, gw_topics, keys)) as gw, gw.client() as http:
        mine = await http.post(
            "/v1/videos", json=BODY, headers={**keys.auth("acme"), "Idempotency-Key": "shared"}
        )
        theirs = await http.get("/v1/videos/shared", headers=keys.auth("globex"))
        cancel = await http.delete("/v1/videos/shared", headers=keys.auth("globex"))
        own = await http.get("/v1/videos/shared", headers=keys.auth("acme"))
        never = await http.get("/v1/videos/never-made", headers=keys.auth("acme"))
    assert mine.status_code == 202
    assert theirs.status_code == cancel.status_code == never.status_code == 404
    assert theirs.json()["error"]["code"] == "not_found"
    assert own.status_code == 200 and own.json()["status"] == "queued"
    assert await read_all(kafka_bootstrap, gw_topics.control) == []
