"""In-window coalescing: a miss that a request being generated could answer waits for it.

The cache only knows videos that exist. When "a red fox in the snow" and "a red fox in
snow" arrive in the same window, both miss; without coalescing both would be generated.
:class:`InFlight` remembers the misses being generated (the *leaders*) per scope. A new miss
first asks :meth:`InFlight.follow`: if a leader's prompt is the same after normalisation
(``hit-exact``) or close enough by the cache's own rules (:meth:`Cache.closest`,
``hit-semantic``), it waits for that leader's video and shares it; every event still gets
its own result, with ``matched_event_id`` naming the leader. A leader that fails releases
its followers, which then try again (one of them becomes the next leader).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from streamproc.cache.base import Cache, CacheEntry, CacheHit, CacheScope, match_text
from streamproc.events import CacheOutcome

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class Lead:
    """A miss being generated; :meth:`finish` hands its entry (or None) to its followers."""

    prompt: str
    text: str
    scope_key: str
    owner: InFlight
    #: The seed the leader's video is made with.
    seed: int | None = None
    future: asyncio.Future[CacheEntry | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def finish(self, entry: CacheEntry | None) -> None:
        """The generation ended: share ``entry`` (None: it failed); idempotent."""
        self.owner._forget(self)
        if not self.future.done():
            self.future.set_result(entry)


class InFlight:
    """The misses being generated right now, by scope.

    With ``near`` False only prompts equal after normalisation coalesce (no embedding).
    """

    def __init__(self, cache: Cache, *, near: bool = True) -> None:
        self._cache = cache
        self._near = near
        self._leads: dict[str, list[Lead]] = {}
        self._added = 0  # counts new leads, to notice one that arrived while we looked

    def __len__(self) -> int:
        return sum(len(leads) for leads in self._leads.values())

    async def follow(
        self, prompt: str, scope: CacheScope, *, seed: int | None = None
    ) -> CacheHit | None:
        """Wait for a leader that may answer ``prompt`` and share its video; None when there
        is none. With ``seed`` only a leader making a video of that seed may. Call
        :meth:`lead` right after a None, with no await in between."""
        text = match_text(prompt)
        scope_key = scope.key()
        while True:
            leads = [
                lead for lead in self._leads.get(scope_key, ()) if seed is None or lead.seed == seed
            ]
            if not leads:
                return None
            added = self._added
            found = await self._match(prompt, text, scope, leads)
            if found is None:
                if added == self._added:
                    return None
                continue  # a new leader arrived while we compared: compare again
            lead, outcome, similarity = found
            entry = await asyncio.shield(lead.future)
            if entry is not None:
                return CacheHit(entry=entry, outcome=outcome, similarity=similarity)
            # The leader failed; look again (another leader, or lead ourselves).

    def lead(self, prompt: str, scope: CacheScope, *, seed: int | None = None) -> Lead:
        """Register a miss about to be generated with ``seed``; the caller must
        :meth:`Lead.finish` it."""
        lead = Lead(
            prompt=prompt, text=match_text(prompt), scope_key=scope.key(), owner=self, seed=seed
        )
        self._leads.setdefault(lead.scope_key, []).append(lead)
        self._added += 1
        return lead

    def _forget(self, lead: Lead) -> None:
        leads = self._leads.get(lead.scope_key)
        if leads is not None and lead in leads:
            leads.remove(lead)
            if not leads:
                del self._leads[lead.scope_key]

    async def _match(
        self, prompt: str, text: str, scope: CacheScope, leads: list[Lead]
    ) -> tuple[Lead, CacheOutcome, float] | None:
        for lead in leads:
            if lead.text == text:
                return lead, CacheOutcome.HIT_EXACT, 1.0
        if not self._near:
            return None
        try:
            closest = await self._cache.closest(prompt, scope, [lead.prompt for lead in leads])
        except Exception as exc:  # a cache fault costs a generation, never the event
            log.warning("cache_coalesce_failed", error=repr(exc)[:300])
            return None
        if closest is None:
            return None
        index, similarity = closest
        return leads[index], CacheOutcome.HIT_SEMANTIC, similarity
