"""The cache stage alone, over the real semantic cache: lookups, coalescing, inserts, and a
cache that fails never costing the event."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from streamproc.cache.base import CacheEntry, CacheHit, CacheScope
from streamproc.cache.embedder import BatchingEmbedder
from streamproc.cache.semantic import SemanticCache
from streamproc.events import CacheOutcome, utcnow
from streamproc.metrics import Metrics
from streamproc.stages.base import Admitted, Generated, Stored
from streamproc.stages.cache import Lookup
from tests.helpers import minilm, semantic_cache
from tests.unit.stages.conftest import Request


class BrokenCache(SemanticCache):
    """The real cache whose lookups and inserts raise, as a cache outage would."""

    async def lookup(self, *args: Any, **kwargs: Any) -> CacheHit | None:
        raise ConnectionError("cache down")

    async def insert(self, prompt: str, scope: CacheScope, entry: CacheEntry) -> None:
        raise ConnectionError("cache down")


def lookup_over(cache: Any) -> tuple[Lookup, dict[str, float]]:
    clocked: dict[str, float] = {}
    stage = Lookup(
        cache,
        metrics=Metrics(),
        clock=lambda name, s: clocked.__setitem__(name, s),
        coalesce=True,
        near_duplicates=True,
    )
    return stage, clocked


def stored(request: Admitted) -> Stored:
    frames = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    made = Generated(frames, 1, utcnow(), utcnow(), "b1")
    return Stored(f"videos/{request.event.event_id}.mp4", "file:///v.mp4", made, utcnow())


async def test_a_remembered_video_answers_an_exact_repeat(admitted: Request) -> None:
    stage, clocked = lookup_over(semantic_cache())
    first = admitted("first", "a lighthouse in a storm")
    assert await stage.hit(first) is None
    entry = await stage.remember(first, stored(first))
    hit = await stage.hit(admitted("again", "A lighthouse in a storm."))
    assert hit is not None and hit.outcome is CacheOutcome.HIT_EXACT
    assert hit.entry.object_key == entry.object_key == "videos/first.mp4"
    assert "cache_lookup" in clocked


async def test_a_failing_cache_is_a_miss_and_an_insert_failure_is_forgotten(
    admitted: Request,
) -> None:
    stage, _ = lookup_over(BrokenCache(BatchingEmbedder(minilm())))
    request = admitted("e", "a fox")
    assert await stage.hit(request) is None
    entry = await stage.remember(request, stored(request))
    assert entry.event_id == "e" and entry.parameters == request.params


async def test_refresh_and_bypass_never_read_and_bypass_never_writes(admitted: Request) -> None:
    stage, _ = lookup_over(semantic_cache())
    original = admitted("a", "a red kite", attributes={"cache": "reuse"})
    await stage.remember(original, stored(original))
    assert await stage.hit(admitted("r", "a red kite", attributes={"cache": "refresh"})) is None
    bypass = admitted("b", "a blue kite", attributes={"cache": "bypass"})
    assert await stage.hit(bypass) is None
    await stage.remember(bypass, stored(bypass))
    assert await stage.hit(admitted("again", "a blue kite")) is None


async def test_a_repeat_arriving_while_the_first_generates_shares_its_video(
    admitted: Request,
) -> None:
    stage, _ = lookup_over(semantic_cache())
    leader = admitted("leader", "a tiger at dusk")
    async with stage.leading(leader) as made:
        follower = asyncio.create_task(stage.hit(admitted("follower", "a tiger at dusk")))
        await asyncio.sleep(0.1)
        assert not follower.done()  # waits for the leader's video
        made.append(await stage.remember(leader, stored(leader)))
    hit = await asyncio.wait_for(follower, 10)
    assert hit is not None and hit.entry.event_id == "leader"


async def test_a_leader_that_made_nothing_lets_its_followers_generate(
    admitted: Request,
) -> None:
    stage, _ = lookup_over(semantic_cache())
    leader = admitted("leader", "a tiger at dawn")
    async with stage.leading(leader):
        follower = asyncio.create_task(stage.hit(admitted("follower", "a tiger at dawn")))
        await asyncio.sleep(0.1)
    assert await asyncio.wait_for(follower, 10) is None
