"""The whole way through, with real parts only: a client submits over HTTP, a `streamproc run`
worker on the tiny model (Kafka, Redis ledger, moto's S3) makes the video, the client follows
the server-sent events to the result URL and downloads the MP4 through /content."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamproc.events import StatusState
from tests.integration.gateway.conftest import GatewayTopics, gateway_settings, make_keys, serve
from tests.integration.storage.conftest import MotoS3
from tests.integration.workers import Worker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def s3_bucket() -> Iterator[tuple[MotoS3, str]]:
    server = MotoS3()
    name = f"gw-{uuid.uuid4().hex[:12]}"
    server.create_bucket(name)
    try:
        yield server, name
    finally:
        server.delete_bucket(name)
        server.stop()


async def test_submit_follow_and_download_a_video_made_by_a_worker(
    kafka_bootstrap: str,
    gw_topics: GatewayTopics,
    s3_bucket: tuple[MotoS3, str],
    tmp_path: Path,
) -> None:
    s3, bucket = s3_bucket
    keys = make_keys("acme")
    settings = gateway_settings(kafka_bootstrap, gw_topics, keys)
    ledger_prefix = settings.ledger.key_prefix
    s3_env = {
        f"STREAMPROC_STORAGE__S3__{k.upper()}": str(v) for k, v in s3.settings(bucket).items()
    }
    worker = Worker(
        "w1",
        kafka_bootstrap,
        gw_topics.names,
        tmp_path,
        args=["--cache-backend", "none"],
        STREAMPROC_LEDGER__BACKEND="redis",
        STREAMPROC_LEDGER__KEY_PREFIX=ledger_prefix,
        STREAMPROC_STORAGE__BACKEND="s3",
        STREAMPROC_KAFKA__STATUS_TOPIC=gw_topics.status,
        STREAMPROC_KAFKA__CONTROL_TOPIC=gw_topics.control,
        **s3_env,
    )
    try:
        async with serve(settings) as gw, gw.client() as http:
            submitted = await http.post(
                "/v1/videos",
                json={
                    "prompt": "a kite over a beach",
                    "width": 64,
                    "height": 32,
                    "num_frames": 5,
                    "num_inference_steps": 2,
                },
                headers={**keys.auth("acme"), "Idempotency-Key": "round-trip"},
            )
            assert submitted.status_code == 202, submitted.text
            states: list[dict[str, Any]] = []

            async def follow() -> None:
                async with http.stream(
                    "GET",
                    "/v1/videos/round-trip/events",
                    headers=keys.auth("acme"),
                    timeout=None,
                ) as stream:
                    async for line in stream.aiter_lines():
                        if line.startswith("data: "):
                            states.append(json.loads(line.removeprefix("data: ")))

            # The tiny model on two shared cores: minutes at worst, never a hang.
            reader = asyncio.create_task(follow())
            while not reader.done():
                assert worker.proc.poll() is None, worker.tail()
                await asyncio.sleep(0.5)
            reader.result()
            final = states[-1]
            assert states[0]["status"] == "queued"
            assert final["status"] == "done", final
            progress = [s["progress"] for s in states]
            assert progress == sorted(progress)  # never backwards
            # The worker's status events reached the gateway's view (best effort, but the
            # broker here is healthy): the last one says the event was answered.
            for _ in range(100):
                latest = gw.parts.status.latest("acme:round-trip")
                if latest is not None and latest.state == StatusState.ANSWERED:
                    break
                await asyncio.sleep(0.1)
            assert latest is not None and latest.state == StatusState.ANSWERED, latest
            assert latest.result_id == final["result_id"]
            assert final["video_url"].startswith(s3.endpoint)
            polled = (await http.get("/v1/videos/round-trip", headers=keys.auth("acme"))).json()
            assert polled["status"] == "done" and polled["video_url"] == final["video_url"]
            redirect = await http.get("/v1/videos/round-trip/content", headers=keys.auth("acme"))
            assert redirect.status_code == 302
        async with httpx.AsyncClient(timeout=30) as plain:
            video = await plain.get(redirect.headers["location"])
        assert video.status_code == 200
        assert video.content[4:8] == b"ftyp"  # an MP4
    finally:
        worker.kill()
