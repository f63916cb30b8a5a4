"""Webhooks: a video's final state POSTed to the URL given at submit, signed, retried.

Durable in Redis, so that no replica's death loses one:

* at submit, :meth:`Webhooks.register` writes the hook (``{prefix}:hook:{event_id}``: URL,
  tenant, attempts) and puts the event id in the *watch* sorted set, scored by when to look;
* every replica runs one loop over the watch set: an id that is due is *leased*
  (``SET NX`` with a lease longer than one delivery), its answer read from the result ledger
  (not there yet: look again after ``webhook_poll_s``), and POSTed; success removes it, a
  failure re-scores it after a doubling delay, the last allowed failure gives it up (logged
  and counted). A replica that dies mid-delivery leaves the id in the set: once the lease
  expires another replica delivers it;
* a final status event seen by the status reader only makes the loop look at once
  (:meth:`Webhooks.wake`): status events are best effort, the ledger is the truth.

Delivery is at least once (a receiver de-duplicates on ``Streamproc-Event-Id``). Each POST
carries ``Streamproc-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` with
the tenant's ``webhook_secret``. Deliveries run concurrently (at most :data:`CONCURRENCY`),
never on a request's path and never in the status reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import aiohttp
import structlog
from pydantic import SecretStr

from streamproc.errors import ServiceRefused, TransientError
from streamproc.gateway.redis import GatewayRedis
from streamproc.gateway.state import VideoLinks, VideoView, view_of
from streamproc.gateway.videos import VideoBook
from streamproc.ledger.base import event_key
from streamproc.ledger.redis import RedisLedger
from streamproc.resource import AsyncResource

log = structlog.get_logger(__name__)

SIGNATURE_HEADER = "Streamproc-Signature"
EVENT_ID_HEADER = "Streamproc-Event-Id"
#: Deliveries in flight per replica.
CONCURRENCY = 16
#: Longest wait between two attempts.
MAX_DELAY_S = 300.0


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Streamproc-Signature`` value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class Webhooks(AsyncResource):
    """Registers hooks at submit and delivers them from one supervised loop per replica."""

    def __init__(
        self,
        redis: GatewayRedis,
        ledger: RedisLedger,
        videos: VideoBook,
        secrets: dict[str, SecretStr],
        *,
        poll_s: float,
        max_attempts: int,
        timeout_s: float,
        ttl_s: float,
        links: Callable[[str], VideoLinks],
        on_outcome: Callable[[str, str], None] = lambda tenant, outcome: None,
    ) -> None:
        self._redis = redis
        self._ledger = ledger
        self._videos = videos
        self._secrets = secrets
        self._poll_s = poll_s
        self._max_attempts = max_attempts
        self._timeout_s = timeout_s
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._lease_ms = int((timeout_s + 5) * 1000)
        self._links = links
        self._on_outcome = on_outcome
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._deliveries: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    def enabled_for(self, tenant: str) -> bool:
        """Whether ``tenant`` has a webhook secret (webhooks are refused otherwise)."""
        return tenant in self._secrets

    @property
    def task(self) -> asyncio.Task[None]:
        """The delivery loop (started); it ends only by an unexpected error or by stop."""
        if self._task is None:
            raise RuntimeError("webhooks are not started")
        return self._task

    async def start(self) -> None:
        if self._task is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))
            self._task = asyncio.create_task(self._run(), name="gateway-webhooks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for delivery in list(self._deliveries):  # their ids stay due: another replica sends
            delivery.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def register(self, event_id: str, tenant: str, url: str) -> None:
        """Remember ``url`` for ``event_id`` (called before its record is produced)."""
        hook = json.dumps({"url": url, "tenant": tenant})
        client = self._redis.client
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(self._redis.key("hook", event_id), hook, px=self._ttl_ms)
            pipe.zadd(self._watch, {event_id: time.time() + self._poll_s})
            await self._redis.call(pipe.execute())

    async def unregister(self, event_id: str) -> None:
        """Forget the hook of a submission that was not produced."""
        await self._finish(event_id, self._redis.key("hook", event_id))

    def wake(self) -> None:
        """Look at the due hooks now (an event just ended); never blocks."""
        self._wake.set()

    @property
    def _watch(self) -> str:
        return self._redis.key("hooks-due")

    async def _run(self) -> None:
        while True:
            try:
                await self._sweep()
            except (TransientError, ServiceRefused) as exc:
                log.warning("webhook_sweep_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            self._wake.clear()

    async def _sweep(self) -> None:
        client = self._redis.client
        due = await self._redis.call(
            client.zrangebyscore(self._watch, "-inf", time.time(), start=0, num=100)
        )
        for raw in due:
            event_id = raw.decode() if isinstance(raw, bytes) else str(raw)
            lease = self._redis.key("hook-lease", event_id)
            won = await self._redis.call(client.set(lease, b"1", nx=True, px=self._lease_ms))
            if not won:
                continue  # another replica has it
            await self._slots.acquire()
            delivery = asyncio.create_task(self._deliver(event_id, lease))
            self._deliveries.add(delivery)
            delivery.add_done_callback(self._deliveries.discard)

    async def _deliver(self, event_id: str, lease: str) -> None:
        try:
            await self._attempt(event_id)
        except (TransientError, ServiceRefused) as exc:
            log.warning("webhook_attempt_deferred", event_id=event_id, error=str(exc))
        finally:
            self._slots.release()
            with contextlib.suppress(TransientError, ServiceRefused):
                await self._redis.call(self._redis.client.delete(lease))

    async def _attempt(self, event_id: str) -> None:
        client = self._redis.client
        hook_key = self._redis.key("hook", event_id)
        raw = await self._redis.call(client.get(hook_key))
        if raw is None:  # expired or delivered
            await self._redis.call(client.zrem(self._watch, event_id))
            return
        hook = json.loads(raw)
        entry = await self._ledger.get(event_key(event_id))
        record = await self._videos.get(event_id)
        if entry is None or record is None:  # not answered yet
            await self._redis.call(client.zadd(self._watch, {event_id: time.time() + self._poll_s}))
            return
        video_id = event_id.partition(":")[2]
        view = view_of(video_id, record, entry, None, self._links(video_id))
        attempts = int(hook.get("attempts", 0)) + 1
        delivered, detail = await self._post(hook["url"], hook["tenant"], event_id, view)
        if delivered:
            await self._finish(event_id, hook_key)
            self._on_outcome(hook["tenant"], "delivered")
            log.info("webhook_delivered", event_id=event_id, attempts=attempts)
            return
        if attempts >= self._max_attempts:
            await self._finish(event_id, hook_key)
            self._on_outcome(hook["tenant"], "given_up")
            log.error("webhook_given_up", event_id=event_id, attempts=attempts, error=detail)
            return
        delay = min(self._poll_s * 2 ** (attempts - 1), MAX_DELAY_S)
        hook["attempts"] = attempts
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(hook_key, json.dumps(hook), px=self._ttl_ms)
            pipe.zadd(self._watch, {event_id: time.time() + delay})
            await self._redis.call(pipe.execute())
        self._on_outcome(hook["tenant"], "retried")
        log.warning(
            "webhook_retry", event_id=event_id, attempts=attempts, delay_s=delay, error=detail
        )

    async def _finish(self, event_id: str, hook_key: str) -> None:
        async with self._redis.client.pipeline(transaction=True) as pipe:
            pipe.delete(hook_key)
            pipe.zrem(self._watch, event_id)
            await self._redis.call(pipe.execute())

    async def _post(
        self, url: str, tenant: str, event_id: str, view: VideoView
    ) -> tuple[bool, str]:
        secret = self._secrets.get(tenant)
        if secret is None or self._http is None:
            return False, "webhooks are not enabled for this tenant any more"
        body = view.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: event_id,
            SIGNATURE_HEADER: signature(secret.get_secret_value(), int(time.time()), body),
        }
        try:
            async with self._http.post(url, data=body, headers=headers) as answer:
                await answer.read()
                if 200 <= answer.status < 300:
                    return True, ""
                return False, f"HTTP {answer.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
