"""In-window coalescing: misses wait for the same or a near-duplicate being generated."""

from __future__ import annotations

import asyncio

from streamproc.cache.base import CacheEntry, CacheScope
from streamproc.cache.coalesce import InFlight
from streamproc.events import CacheOutcome
from tests.helpers import semantic_cache

SCOPE = CacheScope("m", 64, 32, 5, 2, 5.0)
KITTEN = "a kitten rolling on green grass"
KITTEN_AGAIN = "a kitten rolling on the green grass"


def made(event_id: str) -> CacheEntry:
    return CacheEntry(f"k-{event_id}", f"file:///{event_id}.mp4", event_id, KITTEN, 0.0)


async def test_identical_prompt_waits_for_the_leader_and_shares_its_video() -> None:
    inflight = InFlight(semantic_cache(), near=False)
    lead = inflight.lead(KITTEN, SCOPE)
    follower = asyncio.create_task(inflight.follow("A kitten rolling on green grass!", SCOPE))
    await asyncio.sleep(0.05)
    assert not follower.done()  # it waits rather than generating
    lead.finish(made("leader"))
    hit = await follower
    assert hit is not None and hit.outcome is CacheOutcome.HIT_EXACT and hit.similarity == 1.0
    assert hit.entry.event_id == "leader" and len(inflight) == 0


async def test_near_duplicate_waits_only_when_the_cache_would_hit() -> None:
    cache = semantic_cache()
    inflight = InFlight(cache)
    for prompt in (KITTEN, KITTEN_AGAIN, f"{KITTEN} at night"):
        assert await cache.lookup(prompt, SCOPE) is None  # every miss looks up first
    lead = inflight.lead(KITTEN, SCOPE)
    assert await inflight.follow(f"{KITTEN} at night", SCOPE) is None  # guard: not the same
    assert await inflight.follow(KITTEN_AGAIN, CacheScope("m", 96, 32, 5, 2, 5.0)) is None
    follower = asyncio.create_task(inflight.follow(KITTEN_AGAIN, SCOPE))
    await asyncio.sleep(0.05)
    lead.finish(made("leader"))
    hit = await follower
    assert hit is not None and hit.outcome is CacheOutcome.HIT_SEMANTIC
    assert hit.similarity is not None and hit.similarity >= 0.85


async def test_followers_of_a_failed_leader_are_released_to_generate() -> None:
    inflight = InFlight(semantic_cache(), near=False)
    lead = inflight.lead(KITTEN, SCOPE)
    follower = asyncio.create_task(inflight.follow(KITTEN, SCOPE))
    await asyncio.sleep(0.05)
    lead.finish(None)
    assert await follower is None  # no video to share: it leads next
    lead.finish(made("late"))  # idempotent
    assert len(inflight) == 0
