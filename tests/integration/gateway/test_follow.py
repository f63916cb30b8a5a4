"""Following a video: GET and the server-sent event stream from status events and the ledger;
DELETE as a cancel on the control topic."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from streamproc.events import ControlEvent, StatusEvent, StatusState
from streamproc.gateway.app import Parts
from streamproc.ledger.base import LedgerEntry, event_key
from tests.helpers import sample_result
from tests.integration.gateway.conftest import GatewayTopics, gateway_settings, make_keys, serve
from tests.kafka_broker import produce, read_all

pytestmark = pytest.mark.kafka

BODY = {"prompt": "a lighthouse in a storm", "width": 64, "height": 32, "num_frames": 5}


def status(event_id: str, state: StatusState, **fields: Any) -> bytes:
    event = StatusEvent(
        event_id=event_id, state=state, at=datetime.now(UTC), worker_id="w1", **fields
    )
    return event.model_dump_json().encode()


async def answer_in_ledger(parts: Parts, event_id: str, url: str) -> None:
    result = sample_result(event_id).model_copy(update={"video_url": url})
    entry = LedgerEntry(
        key=event_key(event_id),
        payload_hash="",
        kind="result",
        body=result.model_dump_json(),
        sink="results",
        recorded_at=0.0,
    )
    await parts.ledger.claim(entry)


async def test_get_and_the_event_stream_follow_status_events_to_the_ledgers_answer(
    kafka_bootstrap: str, gw_topics: GatewayTopics
) -> None:
    keys = make_keys("acme")
    headers = {**keys.auth("acme"), "Idempotency-Key": "follow-1"}
    settings = gateway_settings(kafka_bootstrap, gw_topics, keys)
    async with serve(settings) as gw, gw.client() as http:
        assert (await http.post("/v1/videos", json=BODY, headers=headers)).status_code == 202
        await asyncio.sleep(0.5)  # the status reader is assigned and at the topic's end
        seen: list[dict[str, Any]] = []

        async def stream() -> None:
            async with http.stream(
                "GET", "/v1/videos/follow-1/events", headers=keys.auth("acme")
            ) as answer:
                assert answer.status_code == 200
                assert answer.headers["content-type"].startswith("text/event-stream")
                async for line in answer.aiter_lines():
                    if line.startswith("data: "):
                        seen.append(json.loads(line.removeprefix("data: ")))

        reader = asyncio.create_task(stream())
        await _until(lambda: len(seen) >= 1)
        assert seen[0]["status"] == "queued"
        await produce(
            kafka_bootstrap,
            gw_topics.status,
            [
                (
                    None,
                    b"acme:follow-1",
                    status("acme:follow-1", StatusState.QUEUED, queue_position=3),
                    [],
                )
            ],
        )
        await _until(lambda: seen[-1].get("queue_position") == 3)
        await produce(
            kafka_bootstrap,
            gw_topics.status,
            [
                (
                    None,
                    b"acme:follow-1",
                    status(
                        "acme:follow-1", StatusState.GENERATING, step=4, total_steps=8, batch_size=1
                    ),
                    [],
                )
            ],
        )
        await _until(lambda: seen[-1]["status"] == "generating")
        assert seen[-1]["progress"] == 50
        polled = (await http.get("/v1/videos/follow-1", headers=keys.auth("acme"))).json()
        assert polled["status"] == "generating" and polled["progress"] == 50
        await answer_in_ledger(gw.parts, "acme:follow-1", "https://cdn.example/v.mp4")
        await asyncio.wait_for(reader, 15)  # the stream ends at a final state
        assert seen[-1]["status"] == "done"
        assert seen[-1]["video_url"] == "https://cdn.example/v.mp4"
        content = await http.get("/v1/videos/follow-1/content", headers=keys.auth("acme"))
        assert content.status_code == 302
        assert content.headers["location"] == "https://cdn.example/v.mp4"
        late = await http.delete("/v1/videos/follow-1", headers=keys.auth("acme"))
        assert late.status_code == 409 and late.json()["error"]["code"] == "already_finished"
    assert await read_all(kafka_bootstrap, gw_topics.control) == []


async def test_delete_sends_a_cancel_for_the_event_to_the_control_topic(
    kafka_bootstrap: str, gw_topics: GatewayTopics
) -> None:
    keys = make_keys("acme")
    headers = {**keys.auth("acme"), "Idempotency-Key": "cancel-me"}
    async with serve(gateway_settings(kafka_bootstrap, gw_topics, keys)) as gw, gw.client() as http:
        assert (await http.post("/v1/videos", json=BODY, headers=headers)).status_code == 202
        answer = await http.delete("/v1/videos/cancel-me", headers=keys.auth("acme"))
        assert answer.status_code == 202, answer.text
        not_ready = await http.get("/v1/videos/cancel-me/content", headers=keys.auth("acme"))
        assert not_ready.status_code == 409 and not_ready.json()["error"]["code"] == "not_ready"
    records = await read_all(kafka_bootstrap, gw_topics.control)
    assert len(records) == 1
    cancel = ControlEvent.model_validate_json(records[0].value)
    assert cancel.action == "cancel" and cancel.event_id == "acme:cancel-me"
    assert cancel.tenant is None and cancel.issued_at is not None
    assert records[0].key == b"acme:cancel-me"


async def _until(check: Any, seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)
