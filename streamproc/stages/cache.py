"""Cache: answer a request from the semantic cache, share identical work in flight, and
remember new videos.

Failure policy: the cache is never required. A lookup that raises is a miss (the event is
generated), an insert that raises is logged and forgotten; neither costs the event. An entry
that cannot say how its video was made is not served.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from streamproc.cache.base import Cache, CacheEntry, CacheHit
from streamproc.cache.coalesce import InFlight
from streamproc.events import CacheMode
from streamproc.metrics import Metrics
from streamproc.stages.base import Admitted, StageClock, Stored

log = structlog.get_logger(__name__)


class Lookup:
    """The cache stage: lookup, in-flight coalescing, insert."""

    def __init__(
        self,
        cache: Cache,
        *,
        metrics: Metrics,
        clock: StageClock,
        coalesce: bool,
        near_duplicates: bool,
    ) -> None:
        """``coalesce``: identical (``near_duplicates``: and near-duplicate) requests in
        flight share one generation; off without a cache (no cache, no reuse)."""
        self._cache = cache
        self._metrics = metrics
        self._clock = clock
        self._coalesce = coalesce
        self._inflight = InFlight(cache, near=near_duplicates)

    async def hit(self, request: Admitted) -> CacheHit | None:
        """A stored (or in-flight) video that answers ``request``, or None: a miss, a
        ``refresh``/``bypass`` request, or a cache fault."""
        if request.mode is not CacheMode.REUSE:
            return None
        seed = request.event.seed
        started = time.perf_counter()
        hit = await self._lookup(request, seed)
        self._clock("cache_lookup", time.perf_counter() - started)
        if hit is None and self._coalesce:
            # The same or a near-duplicate request is being generated: share its video.
            hit = await self._inflight.follow(request.prompt, request.scope, seed=seed)
        self._metrics.cache_lookup(
            "miss" if hit is None else hit.outcome.value,
            hit.similarity if hit is not None else None,
        )
        return hit

    @asynccontextmanager
    async def leading(self, request: Admitted) -> AsyncIterator[list[CacheEntry]]:
        """While generating ``request``: identical requests arriving meanwhile follow this
        one. Append the new entry to the yielded list; followers get it (or, when nothing was
        appended, make their own)."""
        made: list[CacheEntry] = []
        if not (self._coalesce and request.mode is CacheMode.REUSE):
            yield made
            return
        lead = self._inflight.lead(request.prompt, request.scope, seed=request.params.seed)
        try:
            yield made
        finally:
            lead.finish(made[0] if made else None)

    async def remember(self, request: Admitted, stored: Stored) -> CacheEntry:
        """The cache entry of a new video, inserted unless the request bypasses the cache."""
        entry = CacheEntry(
            object_key=stored.key,
            video_url=stored.url,
            event_id=request.event.event_id,
            prompt=request.prompt,
            created_at=time.time(),
            parameters=request.params,
        )
        if request.mode is not CacheMode.BYPASS:
            try:
                await self._cache.insert(request.prompt, request.scope, entry)
            except Exception as exc:
                log.warning("cache_insert_failed", error=repr(exc))
        return entry

    async def _lookup(self, request: Admitted, seed: int | None) -> CacheHit | None:
        try:
            hit = await self._cache.lookup(request.prompt, request.scope, seed=seed)
        except Exception as exc:  # a cache fault costs a generation, never the event
            log.warning("cache_lookup_failed", error=repr(exc))
            return None
        if hit is not None and not hit.entry.serves(seed):
            log.debug("cache_entry_unusable", matched_event_id=hit.entry.event_id)
            return None  # an entry that cannot say how its video was made
        return hit
