"""Rate limits shared by gateway replicas through Redis, and the answers when Kafka or Redis
do not: 503 with Retry-After, never a 202 without its record, nothing produced for a 429."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from streamproc.gateway import service
from streamproc.gateway.auth import key_digest
from streamproc.gateway.service import TaskCrashed
from streamproc.gateway.status import StatusView
from tests.helpers import RedisServer, free_port
from tests.integration.gateway.conftest import (
    GatewayTopics,
    gateway_process,
    gateway_settings,
    make_keys,
    serve,
    tracked,
)
from tests.kafka_broker import TansuBroker, create_topics, read_all

pytestmark = pytest.mark.kafka

BODY = {"prompt": "a paper boat on a river", "width": 64, "height": 32, "num_frames": 5}


async def test_a_tenant_over_its_video_rate_gets_429_with_retry_after_and_nothing_produced(
    kafka_bootstrap: str, gw_topics: GatewayTopics
) -> None:
    keys = make_keys("acme", "globex")
    tenants = {
        "acme": {"videos_per_min": 1, "burst_videos": 2},
        "globex": {"videos_per_min": 60},
    }
    settings = gateway_settings(kafka_bootstrap, gw_topics, keys, tenants=tenants)
    async with serve(settings) as gw, gw.client() as http:
        codes = []
        for n in range(4):
            answer = await http.post(
                "/v1/videos", json=BODY, headers={**keys.auth("acme"), "Idempotency-Key": f"k{n}"}
            )
            codes.append(answer.status_code)
            if answer.status_code == 429:
                assert answer.json()["error"]["code"] == "video_rate_limited"
                assert int(answer.headers["retry-after"]) >= 1
        # A retry of an accepted video is not a new video: it passes.
        again = await http.post(
            "/v1/videos", json=BODY, headers={**keys.auth("acme"), "Idempotency-Key": "k0"}
        )
        # Another tenant has its own bucket.
        other = await http.post("/v1/videos", json=BODY, headers=keys.auth("globex"))
        refused = await http.get("/v1/videos/k3", headers=keys.auth("acme"))
    assert codes == [202, 202, 429, 429]
    assert again.status_code == 202 and other.status_code == 202
    assert refused.status_code == 404  # a refused submission leaves no video behind
    records = await read_all(kafka_bootstrap, gw_topics.names.prompts)
    assert sorted(r.key for r in records) == [
        b"acme:k0",
        b"acme:k1",
        b"globex:" + (other.json()["id"].encode()),
    ]


async def test_two_gateway_processes_share_one_request_limit(
    kafka_bootstrap: str, gw_topics: GatewayTopics, tmp_path: Path
) -> None:
    keys = make_keys("acme")
    prefix = tracked(f"gw-two-{gw_topics.status}")
    env = {
        "STREAMPROC_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAMPROC_KAFKA__PROMPTS_TOPIC": gw_topics.names.prompts,
        "STREAMPROC_KAFKA__STATUS_TOPIC": gw_topics.status,
        "STREAMPROC_KAFKA__CONTROL_TOPIC": gw_topics.control,
        "STREAMPROC_KAFKA__ENABLE_IDEMPOTENCE": "false",
        "STREAMPROC_LEDGER__BACKEND": "redis",
        "STREAMPROC_GATEWAY__KEY_PREFIX": prefix,
        "STREAMPROC_GATEWAY__HOST": "127.0.0.1",
        # 6 requests at once, then one every 100 s: the test never sees a refill.
        "STREAMPROC_GATEWAY__TENANTS": json.dumps(
            {"acme": {"requests_per_s": 0.01, "burst_requests": 6}}
        ),
        "STREAMPROC_GATEWAY__API_KEYS": json.dumps(
            [{"tenant": "acme", "sha256": key_digest(keys.by_tenant["acme"])}]
        ),
        "STREAMPROC_LOG__FORMAT": "json",
    }
    ports = [free_port(), free_port()]
    procs = [
        gateway_process({**env, "STREAMPROC_GATEWAY__PORT": str(port)}, tmp_path / f"gw{n}.log")
        for n, port in enumerate(ports)
    ]
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            for port in ports:
                await _ready(http, f"http://127.0.0.1:{port}", procs, tmp_path)
            codes = []
            for n in range(10):
                answer = await http.get(
                    f"http://127.0.0.1:{ports[n % 2]}/v1/videos/none",
                    headers=keys.auth("acme"),
                )
                codes.append(answer.status_code)
                if answer.status_code == 429:
                    assert answer.json()["error"]["code"] == "rate_limited"
                    assert int(answer.headers["retry-after"]) >= 1
        # The burst of 6 is shared: 6 answered (404: no such video), then 429 on both.
        assert codes == [404] * 6 + [429] * 4
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes_at_exit = [proc.wait(timeout=30) for proc in procs]
    assert codes_at_exit == [0, 0], (tmp_path / "gw0.log").read_text()[-2000:]
    lines = [
        json.loads(x) for x in (tmp_path / "gw0.log").read_text().splitlines() if x.startswith("{")
    ]
    access = [x for x in lines if x["event"] == "http_request" and x["route"] != "/readyz"]
    assert access and all(x["tenant"] == "acme" for x in access)
    text = (tmp_path / "gw0.log").read_text() + (tmp_path / "gw1.log").read_text()
    assert keys.by_tenant["acme"] not in text  # keys never reach the logs


async def test_a_paused_broker_is_503_and_a_retry_with_the_key_is_one_video(
    gw_topics: GatewayTopics, tmp_path: Path
) -> None:
    broker = TansuBroker(tmp_path / "broker.log")
    bootstrap = await asyncio.to_thread(broker.start)  # it probes with a loop of its own
    try:
        await create_topics(bootstrap, {gw_topics.names.prompts: 1, gw_topics.status: 1})
        keys = make_keys("acme")
        settings = gateway_settings(
            bootstrap, gw_topics, keys, gateway={"produce_timeout_ms": 1000}
        )
        headers = {**keys.auth("acme"), "Idempotency-Key": "through-outage"}
        async with serve(settings) as gw, gw.client() as http:
            broker.pause()
            try:
                down = await http.post("/v1/videos", json=BODY, headers=headers)
                ready = await http.get("/readyz")
            finally:
                broker.resume()
            assert down.status_code == 503, down.text
            assert down.json()["error"]["code"] == "unavailable"
            assert down.headers["retry-after"] == "1"
            assert ready.status_code == 503 and ready.json()["checks"]["kafka"]["ok"] is False
            up = await http.post("/v1/videos", json=BODY, headers=headers)
            assert up.status_code == 202, up.text
            again = await http.post("/v1/videos", json=BODY, headers=headers)
            assert again.status_code == 202
            assert (await http.get("/readyz")).status_code == 200
        records = await read_all(bootstrap, gw_topics.names.prompts)
        # The timed-out send may still have reached the broker: at most two copies of the
        # one event (the ledger answers the second from the first), never a second id.
        assert 1 <= len(records) <= 2
        assert {r.key for r in records} == {b"acme:through-outage"}
    finally:
        broker.stop()


async def test_redis_down_is_503_and_nothing_is_produced(
    kafka_bootstrap: str, gw_topics: GatewayTopics, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    keys = make_keys("acme")
    settings = gateway_settings(kafka_bootstrap, gw_topics, keys, redis_url=redis.url)
    try:
        async with serve(settings) as gw, gw.client() as http:
            redis.stop()
            down = await http.post("/v1/videos", json=BODY, headers=keys.auth("acme"))
            ready = await http.get("/readyz")
            assert down.status_code == 503 and down.json()["error"]["code"] == "unavailable"
            assert ready.status_code == 503 and ready.json()["checks"]["redis"]["ok"] is False
            assert (await http.get("/healthz")).status_code == 200
    finally:
        redis.stop()
    assert await read_all(kafka_bootstrap, gw_topics.names.prompts) == []


async def _ready(
    http: httpx.AsyncClient, url: str, procs: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    for _ in range(300):
        for n, proc in enumerate(procs):
            if proc.poll() is not None:
                raise AssertionError((tmp_path / f"gw{n}.log").read_text()[-3000:])
        try:
            if (await http.get(f"{url}/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never ready")


async def test_a_crashed_status_reader_stops_the_gateway_with_its_own_error(
    kafka_bootstrap: str, gw_topics: GatewayTopics, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: StatusView) -> None:
        raise ValueError("a bug in the reader")

    monkeypatch.setattr(StatusView, "_follow", broken)
    settings = gateway_settings(kafka_bootstrap, gw_topics, make_keys("acme"))
    with pytest.raises(TaskCrashed, match="a bug in the reader"):
        await asyncio.wait_for(service.serve(settings), 30)
