"""A started gateway Redis connection under the test's own key prefix (the machine's Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from streamproc.gateway.redis import GatewayRedis


@pytest.fixture
async def gw_redis(redis_url: str, redis_prefix: str) -> AsyncIterator[GatewayRedis]:
    async with GatewayRedis(redis_url, prefix=redis_prefix, timeout_s=2.0) as redis:
        yield redis
