"""Redis as the shared store of the semantic cache (implements ``SharedStore``).

Layout, under one namespace (key prefix + a tag of the embedding model, so workers with
different models never mix vectors):

* ``{ns}:entry:{id}`` — hash: scope, prompt, video (URL, object key, event id,
  prompt, created_at) and the float32 vector; the key expires with the entry (PEXPIREAT).
* ``{ns}:expiry`` — sorted set: entry id → expiry (epoch seconds); lists the live entries
  for warming and carries refreshed expiries.
* ``{ns}:changes`` — stream of ``put`` (the whole entry) and ``touch`` (new expiry) records,
  capped at ``stream_max_len``; every worker follows it to see the others' insertions.

A worker warms its :class:`~streamproc.cache.memory.MemoryStore` from the sorted set and the
hashes, then follows the stream from the id it read before warming (a change seen twice is
applied twice, harmlessly). Writes are queued and pipelined by a writer task, so a lookup or
insert never waits for Redis. When Redis is unreachable the worker logs it once, counts it,
keeps answering from its own store and keeps the queued writes (up to ``max_pending``, the
oldest dropped and counted beyond); a supervisor reconnects with backoff, warms again and the
writer flushes. Keyspace notifications are not needed: expiry is known from the data itself.

At start the worker must reach Redis unless ``degrade_at_start``: :meth:`RedisStore.start`
(and :func:`check_reachable`, which the app calls before the model loads) PINGs once and
raises a one-line error naming the Redis (:func:`~streamproc.urls.redis_address`, never the
password): :class:`~streamproc.errors.TransientError` when it does not answer (refused,
timed out, unknown host), :class:`~streamproc.errors.ServiceRefused` when it refuses this
worker (credentials, ACL, database). Writes still queued when the store stops are reported
in one warning with their count.

Timeouts use ``asyncio.timeout``: on Python 3.11 ``asyncio.wait_for`` can swallow a
cancellation that races with completion, and a background task that ignores its cancel
would hold up shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    InvalidResponse,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamproc.cache.base import CacheEntry, StoredEntry
from streamproc.cache.tasks import cancel_and_wait
from streamproc.errors import ConfigError, ServiceRefused, StreamprocError, TransientError
from streamproc.events import GenerationParameters
from streamproc.metrics import Metrics
from streamproc.retry import RetryPolicy, redis_no_retry
from streamproc.settings import (
    REDIS_MAX_PENDING,
    REDIS_START_TIMEOUT_MS,
    REDIS_STREAM_MAX_LEN,
    REDIS_TIMEOUT_MS,
)
from streamproc.urls import redis_address

if TYPE_CHECKING:
    from streamproc.cache.memory import MemoryStore

log = structlog.get_logger(__name__)

_WRITE_BATCH = 256
_WARM_BATCH = 500
# Connect, authenticate, select the db, PING: each bounded by the socket timeouts; the whole
# (name resolution included, which no socket timeout bounds) by this many of them.
_CHECK_STEPS = 4
_DEGRADE_HINT = "or set cache.degrade_at_start=true to run without it until it answers"


@dataclass
class RedisStats:
    """What the shared store did (logged when it stops)."""

    outages: int = 0
    reconnects: int = 0
    warmed: int = 0
    applied: int = 0
    writes: int = 0
    write_failures: int = 0
    dropped_writes: int = 0
    rejected_writes: int = 0


def namespace_for(prefix: str, model: str, dimension: int) -> str:
    """The key namespace of a cache: ``prefix`` plus a tag of the embedding model."""
    tag = hashlib.sha256(f"{model}:{dimension}".encode()).hexdigest()[:10]
    return f"{prefix}:{tag}"


def encode_entry(stored: StoredEntry) -> dict[Any, Any]:
    """The hash / stream fields of an entry."""
    entry = stored.entry
    return {
        "id": f"{stored.entry_id:016x}",
        "scope": stored.scope_key,
        "request": stored.prompt,
        "object_key": entry.object_key,
        "video_url": entry.video_url,
        "event_id": entry.event_id,
        "prompt": entry.prompt,
        "created_at": repr(entry.created_at),
        "expires_at": repr(stored.expires_at),
        "vector": stored.vector.astype("<f4").tobytes(),
        "parameters": entry.parameters.model_dump_json() if entry.parameters else "",
    }


def decode_entry(fields: Mapping[bytes, bytes]) -> StoredEntry:
    """The entry of ``encode_entry``'s fields (raises KeyError/ValueError on garbage)."""

    def text(name: str) -> str:
        return fields[name.encode()].decode("utf-8")

    return StoredEntry(
        entry_id=int(text("id"), 16),
        scope_key=text("scope"),
        prompt=text("request"),
        entry=CacheEntry(
            object_key=text("object_key"),
            video_url=text("video_url"),
            event_id=text("event_id"),
            prompt=text("prompt"),
            created_at=float(text("created_at")),
            parameters=(
                GenerationParameters.model_validate_json(fields[b"parameters"])
                if fields.get(b"parameters")
                else None
            ),
        ),
        vector=np.frombuffer(fields[b"vector"], dtype="<f4").astype(np.float32),
        expires_at=float(text("expires_at")),
    )


class RedisStore:
    """Shares cache entries between workers through one Redis (or a compatible server)."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        op_timeout_s: float = REDIS_TIMEOUT_MS / 1000.0,
        start_timeout_s: float = REDIS_START_TIMEOUT_MS / 1000.0,
        block_s: float = 1.0,
        stream_max_len: int = REDIS_STREAM_MAX_LEN,
        max_pending: int = REDIS_MAX_PENDING,
        reconnect_max_s: float = 5.0,
        degrade_at_start: bool = False,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else Metrics()
        self._address = redis_address(url)
        self._url = url
        self._start_timeout_s = start_timeout_s
        self._client = _client(url, op_timeout_s)
        # XREAD BLOCK holds its connection for block_s: it gets its own client.
        self._follower = _client(url, op_timeout_s, read_timeout_s=block_s + op_timeout_s)
        self._degrade_at_start = degrade_at_start
        self._entry_prefix = f"{namespace}:entry:"
        self._expiry_key = f"{namespace}:expiry"
        self._stream_key = f"{namespace}:changes"
        self._op_timeout_s = op_timeout_s
        self._block_ms = int(block_s * 1000)
        self._stream_max_len = stream_max_len
        self._max_pending = max_pending
        # One policy (streamproc.retry) for reconnects and for re-queued writes.
        self._reconnects = RetryPolicy.for_reconnect(reconnect_max_s, self._metrics)
        self._writes = replace(self._reconnects, initial_s=min(0.05, reconnect_max_s))
        self._clock = clock
        self._origin = uuid.uuid4().hex
        self._local: MemoryStore | None = None
        self._pending: OrderedDict[tuple[str, int], StoredEntry | float] = OrderedDict()
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self._tried = asyncio.Event()
        self._down_since: float | None = None
        self._last_id: bytes = b"0-0"
        self._tasks: list[asyncio.Task[None]] = []
        self.stats = RedisStats()

    @property
    def address(self) -> str:
        """Which Redis this is, for people: ``redis://host:port/db``, never the password."""
        return self._address

    @property
    def available(self) -> bool:
        """Whether Redis answered the last time it was asked."""
        return self._up.is_set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, local: MemoryStore) -> None:
        """Warm ``local`` (when Redis answers) and keep it in sync until :meth:`stop`.

        Unless ``degrade_at_start``, a Redis that does not answer now ends the start with
        :class:`TransientError` or :class:`ServiceRefused` (see the module docstring).
        """
        if self._tasks:
            return
        if not self._degrade_at_start:
            try:  # with its own, longer timeout: nothing waits on it but this start
                await check_reachable(self._url, timeout_s=self._start_timeout_s)
            except StreamprocError:
                await self._client.aclose()
                await self._follower.aclose()
                raise
        self._local = local
        self._tried.clear()
        self._tasks = [
            asyncio.create_task(self._supervise(), name="streamproc-cache-follow"),
            asyncio.create_task(self._write_loop(), name="streamproc-cache-write"),
        ]
        await self._tried.wait()  # first connection attempt done: warmed, or down for now

    async def stop(self) -> None:
        """Flush queued writes briefly, stop the tasks, close connections; idempotent."""
        tasks, self._tasks = self._tasks, []
        if not tasks:
            return
        await cancel_and_wait(tasks)  # a write cut short puts its batch back in the queue
        if self._pending and self.available:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(4 * self._op_timeout_s):
                    await self._flush()
        self._up.clear()
        self._metrics.redis_up.set(0)
        await self._client.aclose()
        await self._follower.aclose()
        if self._pending:
            # Lost with this process: other workers will not get these entries from here.
            log.warning(
                "cache_shared_store_writes_unsent", count=len(self._pending), address=self._address
            )
        log.info("cache_shared_store_stopped", pending=len(self._pending), **vars(self.stats))

    # -- the SharedStore seam ----------------------------------------------------------------

    def put(self, stored: StoredEntry) -> None:
        """Queue an entry for Redis (a newer put of the same id replaces it)."""
        self._queue(("put", stored.entry_id), stored)

    def touch(self, entry_id: int, expires_at: float) -> None:
        """Queue a later expiry for an entry."""
        self._queue(("touch", entry_id), expires_at)

    async def expiries(self, entry_ids: Sequence[int]) -> dict[int, float] | None:
        """Expiry of those of ``entry_ids`` Redis still lists; None when unreachable."""
        if not self.available or not entry_ids:
            return None if not self.available else {}
        members = [f"{i:016x}" for i in entry_ids]
        try:
            async with asyncio.timeout(self._op_timeout_s):
                scores = await self._client.zmscore(self._expiry_key, members)
        except Exception as exc:
            self._metrics.redis_errors.labels("query").inc()
            log.warning("cache_shared_store_query_failed", error=repr(exc)[:200])
            return None
        return {i: s for i, s in zip(entry_ids, scores, strict=True) if s is not None}

    async def collect_garbage(self, now: float) -> None:
        """Remove expired members of the expiry set (their hashes expired by themselves)."""
        if not self.available:
            return
        try:
            async with asyncio.timeout(self._op_timeout_s):
                await self._client.zremrangebyscore(self._expiry_key, "-inf", now)
        except Exception as exc:
            self._metrics.redis_errors.labels("gc").inc()
            log.debug("cache_shared_store_gc_failed", error=repr(exc)[:200])

    # -- writing -----------------------------------------------------------------------------

    def _queue(self, key: tuple[str, int], value: StoredEntry | float) -> None:
        self._pending[key] = value
        self._pending.move_to_end(key)
        while len(self._pending) > self._max_pending:
            self._pending.popitem(last=False)
            self.stats.dropped_writes += 1
            self._metrics.redis_dropped_writes.inc()
        self._wake.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._writes.call(self._write_once, "redis_write")

    async def _write_once(self) -> None:
        """Flush the queue once Redis is up; a failure keeps the rest queued and raises
        :class:`TransientError`, so the retry policy backs off before the next flush."""
        await self._up.wait()
        try:
            await self._flush()
        except Exception as exc:  # Redis went away mid-flush: keep the rest, retry
            self.stats.write_failures += 1
            self._metrics.redis_errors.labels("write").inc()
            self._metrics.redis_retries.labels("write").inc()
            log.debug("cache_shared_store_write_failed", error=repr(exc)[:200])
            raise TransientError(f"cache write to {self._address} failed: {exc!r}") from exc

    async def _flush(self) -> None:
        while self._pending:
            batch = [
                self._pending.popitem(last=False)
                for _ in range(min(_WRITE_BATCH, len(self._pending)))
            ]
            try:
                async with asyncio.timeout(4 * self._op_timeout_s):
                    await self._write(batch)
            except ResponseError as exc:
                # Refused by the server, not lost on the way: retrying would block the queue.
                self.stats.rejected_writes += len(batch)
                self._metrics.redis_errors.labels("rejected").inc(len(batch))
                log.warning("cache_shared_store_write_rejected", error=repr(exc)[:300])
                continue
            except BaseException:
                # Back to the front, unless something newer for the same id was queued since.
                for key, value in reversed(batch):
                    if key not in self._pending:
                        self._pending[key] = value
                        self._pending.move_to_end(key, last=False)
                raise
            self.stats.writes += len(batch)

    async def _write(self, batch: Sequence[tuple[tuple[str, int], StoredEntry | float]]) -> None:
        pipe = self._client.pipeline(transaction=False)
        for (op, entry_id), value in batch:
            member = f"{entry_id:016x}"
            key = self._entry_prefix + member
            if isinstance(value, StoredEntry):
                fields = encode_entry(value)
                pipe.hset(key, mapping=fields)
                pipe.pexpireat(key, int(value.expires_at * 1000))
                pipe.zadd(self._expiry_key, {member: value.expires_at})
                message: dict[Any, Any] = {"op": op, "origin": self._origin, **fields}
            else:
                pipe.pexpireat(key, int(value * 1000))  # GT would need Redis 7
                pipe.zadd(self._expiry_key, {member: value}, xx=True, gt=True)
                message = {
                    "op": op,
                    "origin": self._origin,
                    "id": member,
                    "expires_at": repr(value),
                }
            pipe.xadd(self._stream_key, message, maxlen=self._stream_max_len, approximate=True)
        await pipe.execute()

    # -- following -----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Connect (retried with the reconnect policy while Redis is down), warm, follow the
        change stream until it fails, and again."""
        while True:
            await self._reconnects.call(self._connect, "redis_reconnect")
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._lost(exc)

    async def _connect(self) -> None:
        try:
            await self._warm()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lost(exc)
            self._metrics.redis_retries.labels("reconnect").inc()
            raise TransientError(f"cache store {self._address} unavailable: {exc!r}") from exc
        if self._down_since is not None:
            self.stats.reconnects += 1
            log.info(
                "cache_shared_store_reconnected",
                address=self._address,
                down_s=round(self._clock() - self._down_since, 1),
                entries=len(self._local or ()),
            )
        self._down_since = None
        self._up.set()
        self._metrics.redis_up.set(1)
        self._wake.set()
        self._tried.set()

    def _lost(self, exc: BaseException) -> None:
        self._went_down(exc)
        self._metrics.redis_errors.labels("connect").inc()
        self._tried.set()

    def _went_down(self, exc: BaseException) -> None:
        self._up.clear()
        self._metrics.redis_up.set(0)
        if self._down_since is None:
            self._down_since = self._clock()
            self.stats.outages += 1
            # Once per outage; the worker goes on with its own store meanwhile.
            log.warning(
                "cache_shared_store_unavailable",
                address=self._address,
                error=_failure(exc, self._op_timeout_s),
            )

    async def _warm(self) -> None:
        assert self._local is not None
        latest: Any = await self._client.xrevrange(self._stream_key, count=1)
        last_id = latest[0][0] if latest else b"0-0"
        now = self._clock()
        live: Any = await self._client.zrangebyscore(self._expiry_key, now, "+inf", withscores=True)
        loaded = 0
        for start in range(0, len(live), _WARM_BATCH):
            chunk = live[start : start + _WARM_BATCH]
            pipe = self._client.pipeline(transaction=False)
            for member, _ in chunk:
                pipe.hgetall(self._entry_prefix + member.decode())
            # One unreadable key (wrong type) must not stop the whole warm.
            replies = await pipe.execute(raise_on_error=False)
            for (_, expires_at), fields in zip(chunk, replies, strict=True):
                if isinstance(fields, dict) and fields and self._apply_put(fields, expires_at):
                    loaded += 1
        self._last_id = last_id
        self.stats.warmed += loaded
        log.info("cache_warmed", entries=loaded, live=len(live))

    async def _follow(self) -> None:
        while True:
            response: Any = await self._follower.xread(
                {self._stream_key: self._last_id}, count=512, block=self._block_ms
            )
            for _, messages in response or ():
                for message_id, fields in messages:
                    self._last_id = message_id
                    self._apply(fields)

    def _apply(self, fields: Mapping[bytes, bytes]) -> None:
        if fields.get(b"origin", b"").decode() == self._origin:
            return  # our own change, applied locally when it was made
        try:
            if fields[b"op"] == b"put":
                if self._apply_put(fields, None):
                    self.stats.applied += 1
            elif fields[b"op"] == b"touch" and self._local is not None:
                self._local.touch(int(fields[b"id"], 16), float(fields[b"expires_at"]))
        except (KeyError, ValueError) as exc:
            log.warning("cache_change_unreadable", error=repr(exc)[:200])

    def _apply_put(self, fields: Mapping[bytes, bytes], expires_at: float | None) -> bool:
        assert self._local is not None
        try:
            stored = decode_entry(fields)
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            log.warning("cache_entry_unreadable", error=repr(exc)[:200])
            return False
        if expires_at is not None:
            stored = replace(stored, expires_at=expires_at)
        if stored.expires_at <= self._clock() or stored.vector.shape != (self._local.dimension,):
            return False
        self._local.put(stored)
        return True


async def check_reachable(url: str, *, timeout_s: float) -> None:
    """PING the Redis at ``url`` once, with ``timeout_s`` per step; raise a one-line
    :class:`TransientError` (no answer) or :class:`ServiceRefused` (refused this worker)
    naming it, never its password. Cheap: meant to run before anything slow starts."""
    client = _client(url, timeout_s)
    try:
        await _check(client, redis_address(url), timeout_s)
    finally:
        await client.aclose()


def _client(url: str, timeout_s: float, *, read_timeout_s: float | None = None) -> Redis:
    try:
        return Redis.from_url(
            url,
            socket_connect_timeout=timeout_s,
            socket_timeout=read_timeout_s or timeout_s,
            retry=redis_no_retry(),
        )
    except ValueError as exc:  # redis-py names the part it rejects, never its value
        raise ConfigError(f"invalid cache.redis_url ({redis_address(url)}): {exc}") from None


async def _check(client: Redis, address: str, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(_CHECK_STEPS * timeout_s):
            await client.ping()
    except (RedisError, OSError, TimeoutError) as exc:
        reason = _failure(exc, timeout_s)
        if isinstance(exc, AuthenticationError | AuthorizationError | ResponseError):
            raise ServiceRefused(
                f"the shared cache at {address} refused this worker ({reason}); fix the "
                f"credentials or database in cache.redis_url, {_DEGRADE_HINT}",
                component="cache",
            ) from exc
        raise TransientError(
            f"cannot reach the shared cache at {address} ({reason}); start it, fix "
            f"cache.redis_url, {_DEGRADE_HINT}"
        ) from exc


def _failure(exc: BaseException, timeout_s: float) -> str:
    """A few words on why Redis did not answer (redis-py's own messages say little)."""
    if isinstance(exc, AuthenticationError | AuthorizationError):
        return f"authentication failed: {exc}"[:200]
    if isinstance(exc, ResponseError):
        return f"error reply: {exc}"[:200]
    if isinstance(exc, BusyLoadingError):
        return "still loading its data set"
    if isinstance(exc, InvalidResponse):
        return "the server did not answer as Redis does"
    if isinstance(exc, TimeoutError | RedisTimeoutError):
        return f"timed out after {timeout_s * 1000:g} ms" if timeout_s else "timed out"
    cause: BaseException | None = exc
    while cause is not None:  # redis-py wraps the OSError without naming it
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "unknown host"
        if isinstance(cause, FileNotFoundError):
            return "no such socket"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed: {cause.reason or cause}"[:200]
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    return str(exc)[:200] or type(exc).__name__
