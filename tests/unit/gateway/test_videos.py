"""The video book in Redis: one reservation per id, retries told apart from reuse."""

from __future__ import annotations

from datetime import UTC, datetime

from streamproc.gateway.redis import GatewayRedis
from streamproc.gateway.videos import VideoBook


async def test_reservations_tell_new_retried_accepted_and_conflicting_requests_apart(
    gw_redis: GatewayRedis,
) -> None:
    book = VideoBook(gw_redis, ttl_s=60)
    now = datetime.now(UTC)
    kind, held = await book.reserve("acme:v1", "h1", now)
    assert kind == "new" and held.state == "pending"
    assert (await book.reserve("acme:v1", "h1", now))[0] == "retry"
    assert (await book.reserve("acme:v1", "h2", now))[0] == "conflict"
    await book.accept(held)
    assert (await book.reserve("acme:v1", "h1", now))[0] == "accepted"
    stored = await book.get("acme:v1")
    assert stored is not None and stored.state == "accepted" and stored.payload_hash == "h1"


async def test_a_released_reservation_is_free_again(gw_redis: GatewayRedis) -> None:
    book = VideoBook(gw_redis, ttl_s=60)
    _, held = await book.reserve("acme:v2", "h1", datetime.now(UTC))
    await book.release(held)
    assert await book.get("acme:v2") is None
    assert (await book.reserve("acme:v2", "h2", datetime.now(UTC)))[0] == "new"
