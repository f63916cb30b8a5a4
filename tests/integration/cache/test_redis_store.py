"""Redis as the shared store: workers see each other's entries, warm, expire and survive
outages."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from streamproc.cache.base import CacheEntry, CacheScope, entry_id
from streamproc.cache.redis_store import RedisStore
from streamproc.cache.semantic import SemanticCache
from tests.helpers import free_port, semantic_cache, wait_for
from tests.integration.cache.conftest import redis_store

ROOT = Path(__file__).resolve().parents[3]
SCOPE = CacheScope("m", 64, 32, 5, 2, 5.0)
FOX = "a red fox crossing a frozen lake at dawn"
FOX_AGAIN = "at dawn, a red fox crosses a frozen lake"
LIGHTHOUSE = "a lighthouse on a cliff during a thunderstorm"
LIGHTHOUSE_AGAIN = "during a thunderstorm, a lighthouse on a cliff"


def entry(event_id: str) -> CacheEntry:
    return CacheEntry(f"k-{event_id}", f"file:///{event_id}.mp4", event_id, "", time.time())


class Worker:
    """A cache worker in its own process (tests/integration/cache/cache_worker.py)."""

    def __init__(self, url: str, namespace: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.cache.cache_worker", url, namespace],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},  # this checkout
        )

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "worker process ended"
        return dict(json.loads(line))

    def ask(self, **command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


async def test_a_worker_process_started_later_warms_and_entries_cross_within_a_second(
    redis_url: str, redis_prefix: str
) -> None:
    here = await started(redis_url, redis_prefix)
    await here.insert(FOX, SCOPE, entry("fox"))
    late = Worker(redis_url, redis_prefix)  # another process, started after the insert
    try:
        assert await asyncio.to_thread(late.read) == {"ready": True, "entries": 1}
        warm = await asyncio.to_thread(late.ask, op="lookup", prompt=FOX_AGAIN)
        assert warm["outcome"] == "hit-semantic" and warm["event_id"] == "fox"
        assert await here.lookup(LIGHTHOUSE_AGAIN, SCOPE) is None
        await asyncio.to_thread(late.ask, op="insert", prompt=LIGHTHOUSE, event_id="lighthouse")
        inserted = time.monotonic()
        hit = await here.lookup(LIGHTHOUSE_AGAIN, SCOPE)
        while hit is None and time.monotonic() - inserted < 5:
            await asyncio.sleep(0.005)
            hit = await here.lookup(LIGHTHOUSE_AGAIN, SCOPE)
        seen_after = time.monotonic() - inserted
        assert hit is not None and hit.entry.event_id == "lighthouse"
        assert hit.similarity is not None and hit.similarity >= 0.85
        assert seen_after < 1.0
    finally:
        await asyncio.to_thread(late.close)
        await here.stop()


async def started(url: str, prefix: str, **options: Any) -> SemanticCache:
    cache = semantic_cache(shared=redis_store(url, prefix, reconnect_max_s=0.5), **options)
    await cache.start()
    return cache


async def test_expiry_removes_the_entry_from_redis_and_every_index(
    redis_url: str, redis_prefix: str
) -> None:
    a = await started(redis_url, redis_prefix, ttl_s=1.0, sweep_interval_s=0.1)
    b = await started(redis_url, redis_prefix, ttl_s=1.0, sweep_interval_s=0.1)
    client = redis.Redis.from_url(redis_url)
    try:
        await a.insert(FOX, SCOPE, entry("fox"))
        fox = entry_id(FOX, SCOPE)
        member = f"{fox:016x}"
        key = f"{redis_prefix}:entry:{member}"
        await wait_for(lambda: fox in b.store)
        assert client.exists(key) and client.zscore(f"{redis_prefix}:expiry", member)
        for cache in (a, b):
            index = cache.store.index_of(SCOPE.key())
            assert index is not None and fox in index

        def gone() -> bool:
            return (
                not client.exists(key)
                and client.zscore(f"{redis_prefix}:expiry", member) is None
                and all(
                    fox not in c.store and c.store.index_of(SCOPE.key()) is None for c in (a, b)
                )
            )

        await wait_for(gone, seconds=15)  # swept, not merely skipped on a lookup
        assert a.stats.expired == 1 and b.stats.expired == 1
    finally:
        client.close()
        await a.stop()
        await b.stop()


async def test_a_refreshed_ttl_reaches_the_other_workers(redis_url: str, redis_prefix: str) -> None:
    a = await started(redis_url, redis_prefix, ttl_s=1.0, refresh_ttl_on_hit=True)
    b = await started(redis_url, redis_prefix, ttl_s=1.0, sweep_interval_s=0.1)
    try:
        await a.insert(FOX, SCOPE, entry("fox"))
        await wait_for(lambda: entry_id(FOX, SCOPE) in b.store)
        started_at = time.monotonic()
        while time.monotonic() - started_at < 1.8:
            assert await a.lookup(FOX, SCOPE) is not None
            await asyncio.sleep(0.2)
        hit = await b.lookup(FOX_AGAIN, SCOPE)  # past its first TTL, kept alive by a's hits
        assert hit is not None and hit.entry.event_id == "fox"
    finally:
        await a.stop()
        await b.stop()


async def test_with_degrade_at_start_an_unreachable_redis_is_not_fatal_and_the_cache_works_alone(
    redis_prefix: str,
) -> None:
    began = time.monotonic()
    url = f"redis://127.0.0.1:{free_port()}/0"
    cache = semantic_cache(shared=redis_store(url, redis_prefix, degrade_at_start=True))
    await cache.start()
    try:
        assert time.monotonic() - began < 5
        shared = cache._shared
        assert shared is not None and not shared.available
        await cache.insert(FOX, SCOPE, entry("fox"))
        hit = await cache.lookup(FOX_AGAIN, SCOPE)
        assert hit is not None and hit.entry.event_id == "fox"
    finally:
        await cache.stop()


async def test_a_write_redis_refuses_is_dropped_and_does_not_block_the_queue(
    redis_url: str, redis_prefix: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    fox_key = f"{redis_prefix}:entry:{entry_id(FOX, SCOPE):016x}"
    client.set(fox_key, "not a hash")  # HSET of this entry fails with WRONGTYPE
    cache = await started(redis_url, redis_prefix)
    store = cache._shared
    assert isinstance(store, RedisStore)
    try:
        await cache.insert(FOX, SCOPE, entry("fox"))
        await wait_for(lambda: store.stats.rejected_writes == 1)
        await cache.insert(LIGHTHOUSE, SCOPE, entry("lighthouse"))
        member = f"{entry_id(LIGHTHOUSE, SCOPE):016x}"
        await wait_for(lambda: client.zscore(f"{redis_prefix}:expiry", member) is not None)
        assert await cache.lookup(FOX_AGAIN, SCOPE) is not None  # still answered locally
        later = await started(redis_url, redis_prefix)  # the broken entry does not stop a warm
        assert later._shared is not None and later._shared.available
        assert len(later.store) == 1 and await later.lookup(LIGHTHOUSE, SCOPE) is not None
        await later.stop()
    finally:
        client.close()
        await cache.stop()
