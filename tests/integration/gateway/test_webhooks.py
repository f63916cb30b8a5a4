"""Webhooks: the final state is POSTed to the URL given at submit, signed, and retried until
the receiver takes it; a submission whose webhook cannot work is refused before Kafka."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from streamproc.gateway.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER
from tests.helpers import free_port
from tests.integration.gateway.conftest import GatewayTopics, gateway_settings, make_keys, serve
from tests.integration.gateway.test_follow import answer_in_ledger
from tests.kafka_broker import read_all

pytestmark = pytest.mark.kafka

SECRET = "whsec-test-0123456789"
BODY = {"prompt": "a heron in the reeds", "width": 64, "height": 32, "num_frames": 5}


class Receiver:
    """An HTTP server on loopback that fails its first ``failures`` POSTs with 500."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.read()))
        if len(self.calls) <= self.failures:
            return web.Response(status=500)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(failures=1)
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    found.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield found
    finally:
        await runner.cleanup()


def signed_correctly(headers: dict[str, str], body: bytes) -> bool:
    fields = dict(part.split("=", 1) for part in headers[SIGNATURE_HEADER].split(","))
    mac = hmac.new(SECRET.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(mac.hexdigest(), fields["v1"])


async def test_the_final_state_is_posted_signed_and_retried_until_taken(
    kafka_bootstrap: str, gw_topics: GatewayTopics, receiver: Receiver
) -> None:
    keys = make_keys("acme")
    tenants = {"acme": {"requests_per_s": 100, "webhook_secret": SECRET}}
    settings = gateway_settings(
        kafka_bootstrap, gw_topics, keys, tenants=tenants, gateway={"webhook_poll_s": 0.2}
    )
    headers = {**keys.auth("acme"), "Idempotency-Key": "hooked", "Webhook-URL": receiver.url}
    async with serve(settings) as gw, gw.client() as http:
        answer = await http.post("/v1/videos", json=BODY, headers=headers)
        assert answer.status_code == 202, answer.text
        await asyncio.sleep(0.6)
        assert receiver.calls == []  # nothing before the video ended
        await answer_in_ledger(gw.parts, "acme:hooked", "https://cdn.example/h.mp4")
        for _ in range(100):
            if len(receiver.calls) >= 2:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # a third POST would be a bug: give it the time to show
        redis = gw.parts.redis
        left = await redis.client.zcard(redis.key("hooks-due"))
    assert len(receiver.calls) == 2, receiver.calls  # a 500, then the delivery
    for sent_headers, body in receiver.calls:
        assert sent_headers[EVENT_ID_HEADER] == "acme:hooked"
        assert signed_correctly(sent_headers, body)
        view: dict[str, Any] = json.loads(body)
        assert view["status"] == "done" and view["video_url"] == "https://cdn.example/h.mp4"
        assert view["id"] == "hooked"
    assert left == 0


async def test_a_webhook_that_cannot_work_refuses_the_submission(
    kafka_bootstrap: str, gw_topics: GatewayTopics
) -> None:
    keys = make_keys("acme", "globex")
    tenants = {"acme": {"webhook_secret": SECRET}, "globex": {"requests_per_s": 100}}
    settings = gateway_settings(kafka_bootstrap, gw_topics, keys, tenants=tenants)
    async with serve(settings) as gw, gw.client() as http:
        no_secret = await http.post(
            "/v1/videos",
            json=BODY,
            headers={**keys.auth("globex"), "Webhook-URL": "https://example.com/hook"},
        )
        bad_url = await http.post(
            "/v1/videos",
            json=BODY,
            headers={**keys.auth("acme"), "Webhook-URL": "ftp://example.com/hook"},
        )
    assert no_secret.status_code == 422
    assert no_secret.json()["error"]["code"] == "webhooks_not_enabled"
    assert bad_url.status_code == 422 and bad_url.json()["error"]["code"] == "invalid_webhook_url"
    assert await read_all(kafka_bootstrap, gw_topics.names.prompts) == []


async def test_two_replicas_deliver_a_webhook_once(
    kafka_bootstrap: str, gw_topics: GatewayTopics
) -> None:
    found = Receiver(failures=0)
    app = web.Application()
    app.router.add_post("/hook", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    keys = make_keys("acme")
    tenants = {"acme": {"requests_per_s": 100, "webhook_secret": SECRET}}
    prefix = f"gw-hooks-{gw_topics.status}"
    settings = gateway_settings(
        kafka_bootstrap,
        gw_topics,
        keys,
        prefix=prefix,
        tenants=tenants,
        gateway={"webhook_poll_s": 0.05},
    )
    headers = {**keys.auth("acme"), "Webhook-URL": f"http://127.0.0.1:{port}/hook"}
    try:
        async with serve(settings) as one, serve(settings) as two, one.client() as http:
            for n in range(5):
                answer = await http.post(
                    "/v1/videos", json=BODY, headers={**headers, "Idempotency-Key": f"h{n}"}
                )
                assert answer.status_code == 202
            for n in range(5):
                await answer_in_ledger(two.parts, f"acme:h{n}", f"https://cdn.example/{n}.mp4")
            for _ in range(100):
                if len(found.calls) >= 5:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # time for a duplicate to show
    finally:
        await runner.cleanup()
    delivered = sorted(h[EVENT_ID_HEADER] for h, _ in found.calls)
    assert delivered == [f"acme:h{n}" for n in range(5)]
