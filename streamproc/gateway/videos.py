"""The gateway's record of each video id it was asked for, shared by every replica.

One Redis key per video, ``{prefix}:video:{event_id}``, holding JSON: the request's payload
hash, when it was first submitted, and ``state``:

* ``pending`` — reserved by a replica that is producing the record now (or that died while
  producing it: the broker may or may not have the record);
* ``accepted`` — the broker acknowledged the record (acks=all) and a 202 was answered.

Idempotency, per ``Idempotency-Key`` (the video id): :meth:`VideoBook.reserve` answers
``new`` (produce), ``retry`` (the same body, not known to be accepted: produce again — the
ledger makes a second record of the same event answer the same, so no second video is made),
``accepted`` (the same body, already in the topic: answer 202 without producing) or
``conflict`` (another body under the same key: 409). A failed produce releases the
reservation so the client's retry starts afresh. Keys expire after
``gateway.idempotency_ttl_s``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from streamproc.gateway.redis import GatewayRedis

Reservation = Literal["new", "retry", "accepted", "conflict"]


@dataclass(frozen=True)
class VideoRecord:
    """What the gateway knows of a video id."""

    event_id: str
    payload_hash: str
    state: Literal["pending", "accepted"]
    submitted_at: str

    def encode(self) -> str:
        return json.dumps(
            {"hash": self.payload_hash, "state": self.state, "submitted_at": self.submitted_at}
        )

    @classmethod
    def decode(cls, event_id: str, raw: bytes | str) -> VideoRecord:
        data = json.loads(raw)
        return cls(event_id, data["hash"], data["state"], data["submitted_at"])


class VideoBook:
    """Reserve, accept, release and read video ids in Redis."""

    def __init__(self, redis: GatewayRedis, *, ttl_s: float) -> None:
        self._redis = redis
        self._ttl_ms = max(1, int(ttl_s * 1000))

    def _key(self, event_id: str) -> str:
        return self._redis.key("video", event_id)

    async def reserve(
        self, event_id: str, payload_hash: str, submitted_at: datetime
    ) -> tuple[Reservation, VideoRecord]:
        """Reserve ``event_id`` for a request with ``payload_hash`` (see the module doc)."""
        client = self._redis.client
        mine = VideoRecord(event_id, payload_hash, "pending", submitted_at.isoformat())
        won = await self._redis.call(
            client.set(self._key(event_id), mine.encode(), nx=True, px=self._ttl_ms)
        )
        if won:
            return "new", mine
        held = await self.get(event_id)
        if held is None:  # expired in between: take it
            await self._redis.call(client.set(self._key(event_id), mine.encode(), px=self._ttl_ms))
            return "new", mine
        if held.payload_hash != payload_hash:
            return "conflict", held
        return ("accepted" if held.state == "accepted" else "retry"), held

    async def accept(self, record: VideoRecord) -> None:
        """Note that the broker acknowledged the record of ``record.event_id``."""
        done = VideoRecord(record.event_id, record.payload_hash, "accepted", record.submitted_at)
        await self._redis.call(
            self._redis.client.set(self._key(record.event_id), done.encode(), px=self._ttl_ms)
        )

    async def release(self, record: VideoRecord) -> None:
        """Forget a reservation whose record did not reach the broker."""
        await self._redis.call(self._redis.client.delete(self._key(record.event_id)))

    async def get(self, event_id: str) -> VideoRecord | None:
        """The record of ``event_id``, if it was submitted and has not expired."""
        raw = await self._redis.call(self._redis.client.get(self._key(event_id)))
        if raw is None:
            return None
        try:
            return VideoRecord.decode(event_id, raw)
        except (ValueError, KeyError, TypeError):
            return None  # a damaged record: as if never submitted
