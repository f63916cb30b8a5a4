"""A Redis outage shows on the endpoints: errors and retries count, /readyz names the cache
until Redis answers again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from streamproc.app import run_worker
from streamproc.cache.redis_store import RedisStore
from streamproc.generation.wan import WanGenerator
from streamproc.metrics import Metrics
from tests.conftest import MakeSettings
from tests.helpers import (
    GatedSource,
    RedisServer,
    SpyGenerator,
    event,
    free_port,
    semantic_cache,
    wait_for,
    write_jsonl,
)
from tests.integration.ops.scrape import ready, scrape, value


async def test_redis_outage_counts_errors_and_flips_readiness(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    settings = make_settings(metrics={"port": free_port(), "host": "127.0.0.1"})
    port = settings.metrics.port
    metrics = Metrics()
    shared = RedisStore(
        server.url,
        namespace="metrics",
        op_timeout_s=0.25,
        block_s=0.2,
        reconnect_max_s=0.3,
        metrics=metrics,
    )
    source = GatedSource(write_jsonl(tmp_path / "in.jsonl", [event("only")]))
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    run = asyncio.create_task(
        run_worker(
            settings,
            source=source,
            generator=spy,
            cache=semantic_cache(shared=shared),
            metrics=metrics,
            handle_signals=False,
        )
    )
    try:
        await _until_status(port, 200)
        healthy = await scrape(port)
        assert value(healthy, "streamproc_redis_up") == 1
        assert value(healthy, "streamproc_redis_errors_total", operation="connect") == 0

        server.stop()
        _, body = await _until_status(port, 503)
        assert body["failed"] == ["cache"]
        await wait_for(lambda: not shared.available)
        down = await scrape(port)
        assert value(down, "streamproc_redis_up") == 0
        assert value(down, "streamproc_redis_errors_total", operation="connect") >= 1
        assert value(down, "streamproc_redis_retries_total", operation="reconnect") >= 1

        server.start()
        await _until_status(port, 200)
        assert value(await scrape(port), "streamproc_redis_up") == 1
    finally:
        source.release(1)
        await asyncio.wait_for(run, 120)
        server.stop()


async def _until_status(port: int, status: int, seconds: float = 60.0) -> tuple[int, Any]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        got, body = await ready(port)
        if got == status:
            return got, body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/readyz never answered {status}: {got} {body}")
        await asyncio.sleep(0.05)
