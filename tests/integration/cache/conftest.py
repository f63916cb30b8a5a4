"""Caches over both stores: in process, and shared through the machine's Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from streamproc.cache.redis_store import RedisStore
from streamproc.cache.semantic import SemanticCache
from tests.helpers import semantic_cache

MakeCache = Callable[..., Awaitable[SemanticCache]]


def redis_store(url: str, prefix: str, **options: Any) -> RedisStore:
    """A Redis store with test-friendly timings (short stream blocks)."""
    return RedisStore(url, namespace=prefix, op_timeout_s=1.0, block_s=0.2, **options)


@pytest.fixture(params=["memory", "redis"])
async def make_cache(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[MakeCache]:
    """Started semantic caches over the real MiniLM, in process or on Redis; stopped after."""
    made: list[SemanticCache] = []

    async def make(**options: Any) -> SemanticCache:
        shared = redis_store(redis_url, redis_prefix) if request.param == "redis" else None
        cache = semantic_cache(shared=shared, **options)
        await cache.start()
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.stop()
