"""GCRA buckets in the machine's Redis: a burst, then refusals with the wait; shared by every
limiter instance (every replica) that uses the same Redis."""

from __future__ import annotations

import asyncio

from streamproc.gateway.limits import RateLimiter
from streamproc.gateway.redis import GatewayRedis
from streamproc.settings import GatewayRates


async def test_a_burst_passes_then_the_rate_applies_with_a_retry_after(
    gw_redis: GatewayRedis,
) -> None:
    limiter = RateLimiter(gw_redis, {"acme": GatewayRates(10.0, 3, 60.0, 1)})
    decisions = [await limiter.acquire("acme", "requests") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    refused = decisions[-1]
    assert 0 < refused.retry_after_s <= 0.1 and refused.retry_after_header == "1"
    await asyncio.sleep(refused.retry_after_s + 0.02)
    assert (await limiter.acquire("acme", "requests")).allowed


async def test_replicas_share_the_bucket_and_tenants_and_limits_do_not(
    gw_redis: GatewayRedis,
) -> None:
    rates = {"acme": GatewayRates(0.01, 2, 1.0, 1), "globex": GatewayRates(0.01, 2, 1.0, 1)}
    one, two = RateLimiter(gw_redis, rates), RateLimiter(gw_redis, rates)
    assert (await one.acquire("acme", "requests")).allowed
    assert (await two.acquire("acme", "requests")).allowed
    third = await one.acquire("acme", "requests")
    assert not third.allowed and third.limit == "requests"
    assert 99 <= third.retry_after_s <= 100.5  # one token per 100 s
    assert (await two.acquire("globex", "requests")).allowed
    assert (await two.acquire("acme", "videos")).allowed
    video = await one.acquire("acme", "videos")
    assert not video.allowed and 59 <= video.retry_after_s <= 60.5
