"""Per-tenant rate limits shared by every gateway replica, in Redis.

Each limit is a GCRA bucket (the "generic cell rate algorithm": one stored timestamp per
bucket, the *theoretical arrival time*) updated by one Lua script, so the check and the update
are one atomic step in Redis and every replica sees the same bucket. The clock is Redis' own
(``TIME``), so replicas whose clocks differ still agree. Two buckets per tenant:

* ``requests``: every authenticated request (``requests_per_s``, burst ``burst_requests``);
* ``videos``: every accepted submission (``videos_per_min``, burst ``burst_videos``) —
  consumed only for a valid body that is not a retry of an accepted one.

A refused request consumes nothing and learns, in ``retry_after_s``, when it would pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from redis.commands.core import AsyncScript

from streamproc.gateway.redis import GatewayRedis
from streamproc.settings import GatewayRates

LimitName = Literal["requests", "videos"]

# KEYS[1]: the bucket. ARGV[1]: milliseconds per token; ARGV[2]: burst (tokens).
# Returns {allowed (1/0), milliseconds until allowed, tokens left}.
_GCRA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, math.ceil(allow_at - now), 0}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
return {1, 0, math.floor((now - allow_at) / interval)}
"""


@dataclass(frozen=True)
class Decision:
    """The answer of one bucket: allowed or not, and when to come back."""

    allowed: bool
    limit: LimitName
    retry_after_s: float
    remaining: int

    @property
    def retry_after_header(self) -> str:
        """Whole seconds for ``Retry-After`` (at least 1: HTTP has no fractions)."""
        return str(max(1, math.ceil(self.retry_after_s)))


class RateLimiter:
    """Checks and consumes tokens of a tenant's buckets."""

    def __init__(self, redis: GatewayRedis, tenants: dict[str, GatewayRates]) -> None:
        self._redis = redis
        self._tenants = tenants
        self._script: AsyncScript | None = None  # registered on first use (after start)

    async def acquire(self, tenant: str, limit: LimitName) -> Decision:
        """Take one token of ``tenant``'s ``limit`` bucket if one is free.

        Raises :class:`~streamproc.errors.TransientError` when Redis does not answer.
        """
        limits = self._tenants[tenant]
        if limit == "requests":
            interval_ms, burst = 1000.0 / limits.requests_per_s, limits.burst_requests
        else:
            interval_ms, burst = 60_000.0 / limits.videos_per_min, limits.burst_videos
        if self._script is None:
            self._script = self._redis.client.register_script(_GCRA)
        key = self._redis.key("rate", limit, tenant)
        allowed, wait_ms, left = await self._redis.call(
            self._script(keys=[key], args=[f"{interval_ms:.6f}", burst])
        )
        return Decision(bool(allowed), limit, int(wait_ms) / 1000.0, int(left))
