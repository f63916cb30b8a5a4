"""The gateway's Redis connection, its errors classified once.

Every replica talks to the same Redis: API keys stored there, rate-limit buckets and the
records of accepted videos. A Redis that does not answer (connection refused, timeout, a
failover in progress) is :class:`~streamproc.errors.TransientError` — the request is answered
503 with ``Retry-After`` and nothing reaches Kafka; a Redis that refuses the gateway
(credentials, ACLs) is :class:`~streamproc.errors.ServiceRefused`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from redis.asyncio import Redis

from streamproc.errors import ConfigError, ServiceRefused, TransientError
from streamproc.resource import AsyncResource
from streamproc.retry import redis_call, redis_no_retry
from streamproc.urls import redis_address

T = TypeVar("T")


class GatewayRedis(AsyncResource):
    """One Redis client for the whole gateway process (a connection pool inside)."""

    def __init__(self, url: str, *, prefix: str, timeout_s: float) -> None:
        self._url = url
        self.address = redis_address(url)
        self.prefix = prefix
        self._timeout_s = timeout_s
        self._client: Redis | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        try:
            self._client = Redis.from_url(
                self._url,
                socket_connect_timeout=self._timeout_s,
                socket_timeout=self._timeout_s,
                retry=redis_no_retry(),  # the client retries the request, not us
                max_connections=256,
            )
        except ValueError as exc:
            raise ConfigError(f"invalid gateway Redis URL ({self.address}): {exc}") from None
        await self.call(self.client.ping())

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> Redis:
        """The started client (raises :class:`TransientError` before start)."""
        if self._client is None:
            raise TransientError("the gateway's Redis is not connected")
        return self._client

    def key(self, *parts: str) -> str:
        """``{prefix}:{part}:{part}…``."""
        return ":".join((self.prefix, *parts))

    async def readiness(self) -> tuple[bool, str]:
        """Whether Redis answers a PING now."""
        try:
            await self.call(self.client.ping())
        except (TransientError, ServiceRefused) as exc:
            return False, str(exc)
        return True, self.address

    async def call(self, call: Awaitable[T]) -> T:
        """Await one Redis call, its failure classified."""
        return await redis_call(
            call,
            service=f"gateway Redis at {self.address}",
            refused="the gateway",
            component="gateway-redis",
        )
