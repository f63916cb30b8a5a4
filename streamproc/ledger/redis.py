"""The shared ledger: answers in Redis, seen by every worker of the group.

One key per answer, written with ``SET … NX`` (first writer wins) and a TTL; a second key
marks it published. Redis answering slowly or not at all is a :class:`TransientError` (the
record waits and the call is retried); a refusal (credentials, ACL) is
:class:`ServiceRefused`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable
from typing import TypeVar

import structlog
from redis.asyncio import Redis

from streamproc.errors import ConfigError, TransientError
from streamproc.ledger.base import LedgerEntry
from streamproc.resource import AsyncResource
from streamproc.retry import redis_call, redis_no_retry
from streamproc.urls import redis_address

log = structlog.get_logger(__name__)
T = TypeVar("T")


class RedisLedger(AsyncResource):
    """Answers under ``{prefix}:answer:{key}``, kept ``ttl_s`` seconds."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        ttl_s: float,
        timeout_s: float = 2.0,
        start_timeout_s: float = 5.0,
    ) -> None:
        self._url = url
        self._start_timeout_s = max(start_timeout_s, timeout_s)
        self._address = redis_address(url)
        self._prefix = prefix
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._timeout_s = timeout_s
        self._client: Redis | None = None

    @property
    def shared(self) -> bool:
        return True

    @property
    def address(self) -> str:
        """``redis://host:port/db`` of the ledger, never the password."""
        return self._address

    async def start(self) -> None:
        """PING within ``start_timeout_s`` (a busy host may answer its first call slower
        than a command's ``timeout_s``, and nothing waits on it but the start)."""
        if self._client is not None:
            return
        first = self._connect(self._start_timeout_s)
        try:
            await self._call(first.ping())
        finally:
            await first.aclose()
        self._client = self._connect(self._timeout_s)

    def _connect(self, timeout_s: float) -> Redis:
        try:
            return Redis.from_url(
                self._url,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                retry=redis_no_retry(),  # the processor stages retry ledger calls
            )
        except ValueError as exc:
            raise ConfigError(f"invalid ledger Redis URL ({self._address}): {exc}") from None

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def get(self, key: str) -> LedgerEntry | None:
        client = self._require()
        body, published = await self._call(client.mget(self._answer(key), self._published(key)))
        if body is None:
            return None
        return _decode(body, published=published is not None)

    async def claim(self, entry: LedgerEntry, *, replace: bool = False) -> LedgerEntry:
        client = self._require()
        body = _encode(entry)
        if replace:
            await self._call(client.set(self._answer(entry.key), body, px=self._ttl_ms))
            await self._call(client.delete(self._published(entry.key)))
            return entry
        won = await self._call(client.set(self._answer(entry.key), body, px=self._ttl_ms, nx=True))
        if won:
            return entry
        held = await self.get(entry.key)
        return held if held is not None else entry  # expired in between: ours stands

    async def mark_published(self, key: str) -> None:
        client = self._require()
        await self._call(client.set(self._published(key), b"1", px=self._ttl_ms))

    def _answer(self, key: str) -> str:
        return f"{self._prefix}:answer:{key}"

    def _published(self, key: str) -> str:
        return f"{self._prefix}:published:{key}"

    def _require(self) -> Redis:
        if self._client is None:
            raise TransientError("the result ledger is not started")
        return self._client

    async def _call(self, call: Awaitable[T]) -> T:
        return await redis_call(
            call,
            service=f"the result ledger at {self._address}",
            refused="this worker",
            component="ledger",
        )


def _encode(entry: LedgerEntry) -> str:
    return json.dumps(
        {
            "key": entry.key,
            "payload_hash": entry.payload_hash,
            "kind": entry.kind,
            "body": entry.body,
            "sink": entry.sink,
            "recorded_at": entry.recorded_at,
        },
        separators=(",", ":"),
    )


def _decode(raw: bytes | str, *, published: bool) -> LedgerEntry:
    data = json.loads(raw)
    return LedgerEntry(
        key=data["key"],
        payload_hash=data["payload_hash"],
        kind="result" if data["kind"] == "result" else "dead_letter",
        body=data["body"],
        sink=data["sink"],
        recorded_at=float(data.get("recorded_at", time.time())),
        published=published,
    )
