"""The semantic cache: exact key, then nearest neighbour, then the guard.

A lookup normalises the prompt (:func:`~streamproc.cache.base.match_text`) and tries, in
order:

1. the exact key (scope + normalised prompt): ``hit-exact``, similarity 1.0, no embedding;
2. the nearest neighbours of the prompt's embedding among the live entries of the same
   scope, best first: a neighbour at or above ``similarity_threshold`` (0.75) whose
   attributes the :class:`~streamproc.cache.guard.AttributeGuard` finds equal is a
   ``hit-semantic`` with its cosine as similarity (the optional lower band of
   :class:`~streamproc.cache.guard.HitPolicy` also applies);
3. otherwise a miss.

Lookups and inserts touch only this worker's :class:`~streamproc.cache.memory.MemoryStore`;
a :class:`~streamproc.cache.base.SharedStore` (Redis) fills it and spreads inserts in the
background, so a slow or absent Redis never delays an event. A lookup that cannot embed in
``lookup_timeout_s`` is a miss. Expired entries are never returned: they are dropped when
met and swept every ``sweep_interval_s``, after asking the shared store whether another
worker refreshed them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import structlog

from streamproc.cache.base import (
    CacheEntry,
    CacheHit,
    CacheScope,
    Embedder,
    SharedStore,
    StoredEntry,
    Vector,
    entry_id,
    match_text,
)
from streamproc.cache.guard import AttributeGuard, HitPolicy
from streamproc.cache.memory import MemoryStore
from streamproc.cache.tasks import cancel_and_wait
from streamproc.events import CacheOutcome
from streamproc.resource import AsyncResource

log = structlog.get_logger(__name__)


@dataclass
class CacheStats:
    """What one cache did (logged when it stops)."""

    hits_exact: int = 0
    hits_semantic: int = 0
    misses: int = 0
    guard_rejections: int = 0
    lookup_timeouts: int = 0
    embed_failures: int = 0
    inserts: int = 0
    expired: int = 0
    index_rebuilds: int = 0


class SemanticCache(AsyncResource):
    """Implements :class:`~streamproc.cache.base.Cache` with embeddings, FAISS and a guard.

    Usable without :meth:`start` (the embedded default and tests): then nothing runs in the
    background, and expired entries are still never returned. :meth:`start` warms the store
    from the shared store and starts the sweeper; :meth:`stop` is idempotent.
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        store: MemoryStore | None = None,
        shared: SharedStore | None = None,
        policy: HitPolicy | None = None,
        ttl_s: float = 3600.0,
        refresh_ttl_on_hit: bool = False,
        candidates: int = 4,
        lookup_timeout_s: float = 1.0,
        sweep_interval_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._embedder = embedder
        self.store = store if store is not None else MemoryStore(embedder.dimension)
        if self.store.dimension != embedder.dimension:
            raise ValueError("store and embedder disagree on the vector dimension")
        self._shared = shared
        self._policy = policy or HitPolicy()
        self._guard = AttributeGuard() if self._policy.use_guard else None
        self._ttl_s = ttl_s
        self._refresh = refresh_ttl_on_hit
        self._candidates = candidates
        self._timeout_s = lookup_timeout_s
        self._sweep_interval_s = sweep_interval_s
        self._clock = clock
        self._maintainer: asyncio.Task[None] | None = None
        self.stats = CacheStats()

    async def readiness(self) -> tuple[bool, str]:
        """Ready unless the shared store (Redis) is unreachable; lookups still work then."""
        if self._shared is None:
            return True, "in-process cache"
        if self._shared.available:
            return True, "shared store answers"
        return False, "shared store unreachable (answering from this worker's entries meanwhile)"

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Warm from the shared store (if any) and start sweeping.

        Raises what the shared store raises when it must answer at start and does not.
        """
        if self._shared is not None:
            await self._shared.start(self.store)
        if self._maintainer is None:
            self._maintainer = asyncio.create_task(self._maintain(), name="streamproc-cache")
        log.info("cache_started", entries=len(self.store), shared=self._shared is not None)

    async def stop(self) -> None:
        """Stop background work and release the embedder's thread; idempotent."""
        maintainer, self._maintainer = self._maintainer, None
        if maintainer is not None:
            await cancel_and_wait([maintainer])
            log.info("cache_stopped", entries=len(self.store), **asdict(self.stats))
        if self._shared is not None:
            await self._shared.stop()
        await self._embedder.stop()

    # -- the Cache seam ------------------------------------------------------------------

    async def lookup(
        self, prompt: str, scope: CacheScope, *, seed: int | None = None
    ) -> CacheHit | None:
        """Exact key, then nearest neighbours with the guard; None is a miss. With ``seed``,
        only entries made with that seed qualify."""
        text = match_text(prompt)
        wanted = entry_id(prompt, scope)
        stored = self.store.get(wanted, self._clock())
        if stored is not None and _serves(stored, seed):
            return self._hit(stored, CacheOutcome.HIT_EXACT, 1.0)
        vector = await self._embed(text)
        if vector is None:
            self.stats.misses += 1
            return None
        for stored, similarity in self.store.nearest(
            scope.key(), vector, self._candidates, self._clock()
        ):
            if not _serves(stored, seed):
                continue
            if stored.entry_id == wanted:  # inserted while this lookup was embedding
                return self._hit(stored, CacheOutcome.HIT_EXACT, 1.0)
            if self._accepts(similarity, prompt, stored.prompt):
                return self._hit(stored, CacheOutcome.HIT_SEMANTIC, similarity)
        self.stats.misses += 1
        return None

    async def insert(self, prompt: str, scope: CacheScope, entry: CacheEntry) -> None:
        """Remember ``entry`` here and share it; skipped (logged) if it cannot be embedded."""
        text = match_text(prompt)
        vector = await self._embed(text)
        if vector is None:
            return
        stored = StoredEntry(
            entry_id=entry_id(prompt, scope),
            scope_key=scope.key(),
            prompt=prompt,
            entry=entry,
            vector=vector,
            expires_at=self._clock() + self._ttl_s,
        )
        self.store.put(stored)
        self.stats.inserts += 1
        if self._shared is not None:
            self._shared.put(stored)

    async def closest(
        self, prompt: str, scope: CacheScope, others: Sequence[str]
    ) -> tuple[int, float] | None:
        """The best of ``others`` that may answer ``prompt`` (same rules as a lookup).

        Uses only vectors computed lately (by the lookups of these very prompts): under
        overload, when a lookup timed out, coalescing must not add encoding work.
        """
        wanted = self._embedder.known(match_text(prompt))
        if wanted is None or not others:
            return None
        best: tuple[int, float] | None = None
        for i, other in enumerate(others):
            vector = self._embedder.known(match_text(other))
            if vector is None:
                continue
            similarity = float(np.dot(wanted, vector))
            if (best is None or similarity > best[1]) and self._accepts(similarity, prompt, other):
                best = (i, similarity)
        return None if best is None else (best[0], _rounded(best[1]))

    # -- helpers -------------------------------------------------------------------------

    def _accepts(self, similarity: float, request: str, candidate: str) -> bool:
        if self._policy.is_hit(similarity, request, candidate, self._guard):
            return True
        floor = self._policy.similarity_threshold
        if self._policy.verified_threshold is not None:
            floor = min(floor, self._policy.verified_threshold)
        if similarity >= floor:
            self.stats.guard_rejections += 1
            log.debug("cache_candidate_rejected", similarity=round(similarity, 4))
        return False

    def _hit(self, stored: StoredEntry, outcome: CacheOutcome, similarity: float) -> CacheHit:
        if outcome is CacheOutcome.HIT_EXACT:
            self.stats.hits_exact += 1
        else:
            self.stats.hits_semantic += 1
        if self._refresh:
            expires_at = self._clock() + self._ttl_s
            self.store.touch(stored.entry_id, expires_at)
            if self._shared is not None:
                self._shared.touch(stored.entry_id, expires_at)
        return CacheHit(entry=stored.entry, outcome=outcome, similarity=_rounded(similarity))

    async def _embed(self, text: str) -> Vector | None:
        try:
            # asyncio.timeout, not wait_for: a remembered vector returns without yielding.
            async with asyncio.timeout(self._timeout_s):
                return await self._embedder.embed(text)
        except TimeoutError:
            self.stats.lookup_timeouts += 1
            log.warning("cache_embedding_timed_out", timeout_s=self._timeout_s)
        except Exception as exc:  # a broken embedder costs generations, never events
            self.stats.embed_failures += 1
            log.warning("cache_embedding_failed", error=repr(exc)[:300])
        return None

    # -- background ----------------------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                await self.sweep()
                await self.rebuild_indexes()
            except Exception as exc:  # keep sweeping; the next round retries
                log.warning("cache_maintenance_failed", error=repr(exc)[:300])

    async def sweep(self) -> int:
        """Drop expired entries from the store and its indexes; returns how many.

        An entry that looks expired here may have been refreshed by another worker whose
        touch has not arrived: the shared store is asked first.
        """
        now = self._clock()
        due = self.store.expired(now)
        alive: dict[int, float] | None = None
        if self._shared is not None:
            alive = await self._shared.expiries(due) if due else None
            await self._shared.collect_garbage(now)
        if not due:
            return 0
        gone = []
        for expiring in due:
            later = (alive or {}).get(expiring, 0.0)
            if later > now:
                self.store.touch(expiring, later)
            else:
                gone.append(expiring)
        self.store.remove(gone)
        self.stats.expired += len(gone)
        if gone:
            log.debug("cache_entries_expired", count=len(gone))
        return len(gone)

    async def rebuild_indexes(self) -> None:
        """Rebuild, on a thread, every scope index whose size outgrew its kind."""
        for index in self.store.indexes():
            if not index.rebuild_due():
                continue
            snapshot = index.snapshot()
            try:
                built = await asyncio.to_thread(index.build, snapshot)
            except BaseException:
                index.abandon_rebuild()
                raise
            index.install(built, snapshot)
            self.stats.index_rebuilds += 1
            log.info("cache_index_rebuilt", kind=index.kind, size=len(index))


def _rounded(similarity: float) -> float:
    # Float error can put a self-match a hair above 1.
    return round(min(max(similarity, -1.0), 1.0), 4)


def _serves(stored: StoredEntry, seed: int | None) -> bool:
    # Entries without parameters come from tests and older versions; the processor refuses
    # to serve them (CacheEntry.serves), so only a requested seed filters here.
    parameters = stored.entry.parameters
    return seed is None or (parameters is not None and parameters.seed == seed)
