"""Every cache behaviour, against both stores (in process and Redis), with the real MiniLM."""

from __future__ import annotations

import asyncio
import time

import pytest

from streamproc.cache.base import CacheEntry, CacheScope
from streamproc.cache.guard import HitPolicy
from streamproc.events import CacheOutcome
from tests.integration.cache.conftest import MakeCache

SCOPE = CacheScope("m", 64, 32, 5, 2, 5.0)


def entry(event_id: str, prompt: str = "") -> CacheEntry:
    return CacheEntry(f"k-{event_id}", f"file:///{event_id}.mp4", event_id, prompt, time.time())


async def test_exact_repeat_hits_whatever_the_case_punctuation_and_framing(
    make_cache: MakeCache,
) -> None:
    cache = await make_cache()
    await cache.insert("A red fox crossing a frozen lake at dawn.", SCOPE, entry("fox"))
    hit = await cache.lookup("a video of a RED fox crossing a frozen lake at dawn", SCOPE)
    assert hit is not None
    assert (hit.outcome, hit.similarity, hit.entry.event_id) == (
        CacheOutcome.HIT_EXACT,
        1.0,
        "fox",
    )


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        (
            "a golden retriever catching a frisbee in the park",
            "in the park, a golden retriever catches a frisbee",
        ),
        ("a woman reading a book in a cafe", "in a cafe, a woman reads a book"),
        ("a kitten rolling on green grass", "a kitten rolls around on green grass"),
    ],
)
async def test_paraphrase_above_the_threshold_is_a_semantic_hit(
    make_cache: MakeCache, stored: str, asked: str
) -> None:
    cache = await make_cache()
    await cache.insert(stored, SCOPE, entry("first", stored))
    hit = await cache.lookup(asked, SCOPE)
    assert hit is not None and hit.outcome is CacheOutcome.HIT_SEMANTIC
    assert hit.entry.event_id == "first" and hit.entry.video_url == "file:///first.mp4"
    assert hit.similarity is not None and 0.85 <= hit.similarity < 1.0


async def test_unrelated_prompt_misses(make_cache: MakeCache) -> None:
    cache = await make_cache()
    await cache.insert("a red fox crossing a frozen lake at dawn", SCOPE, entry("fox"))
    assert await cache.lookup("a bowl of ramen on a wooden table", SCOPE) is None
    assert cache.stats.misses == 1


@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        ("a kitten rolling on green grass", "a kitten rolling on green grass at night"),
        ("a stack of pancakes with strawberries", "a stack of pancakes without strawberries"),
    ],
)
async def test_close_prompt_with_a_changed_detail_misses(
    make_cache: MakeCache, stored: str, asked: str
) -> None:
    guarded = await make_cache()
    await guarded.insert(stored, SCOPE, entry("first", stored))
    assert await guarded.lookup(asked, SCOPE) is None
    assert guarded.stats.guard_rejections == 1
    # The cosine alone would have served the wrong video: the guard is what refused it.
    unguarded = await make_cache(policy=HitPolicy(use_guard=False))
    await unguarded.insert(stored, SCOPE, entry("first", stored))
    assert await unguarded.lookup(asked, SCOPE) is not None


@pytest.mark.parametrize(
    "other",
    [
        CacheScope("m", 128, 32, 5, 2, 5.0),
        CacheScope("m", 64, 64, 5, 2, 5.0),
        CacheScope("m", 64, 32, 9, 2, 5.0),
        CacheScope("m", 64, 32, 5, 4, 5.0),
        CacheScope("m", 64, 32, 5, 2, 6.0),
        CacheScope("other-model", 64, 32, 5, 2, 5.0),
        CacheScope("m", 64, 32, 5, 2, 5.0, negative_prompt="blurry"),
        CacheScope("m", 64, 32, 5, 2, 5.0, tenant="acme"),
    ],
    ids=["width", "height", "frames", "steps", "guidance", "model", "negative", "tenant"],
)
async def test_another_scope_never_matches(make_cache: MakeCache, other: CacheScope) -> None:
    cache = await make_cache()
    await cache.insert("a red fox in the snow", SCOPE, entry("fox"))
    assert await cache.lookup("a red fox in the snow", other) is None
    assert await cache.lookup("a red fox in snow", other) is None
    assert await cache.lookup("a red fox in the snow", SCOPE) is not None


async def test_inserting_the_same_prompt_again_replaces_the_entry(make_cache: MakeCache) -> None:
    cache = await make_cache()
    await cache.insert("a snow leopard", SCOPE, entry("old"))
    await cache.insert("A snow leopard!", SCOPE, entry("new"))
    hit = await cache.lookup("a snow leopard", SCOPE)
    assert hit is not None and hit.entry.event_id == "new"
    assert len(cache.store) == 1


async def test_expired_entry_is_never_returned(make_cache: MakeCache) -> None:
    cache = await make_cache(ttl_s=0.5)
    await cache.insert("a kitten rolling on green grass", SCOPE, entry("kitten"))
    assert await cache.lookup("a kitten rolling on green grass", SCOPE) is not None
    await asyncio.sleep(0.6)
    assert await cache.lookup("a kitten rolls around on green grass", SCOPE) is None
    assert await cache.lookup("a kitten rolling on green grass", SCOPE) is None
    assert len(cache.store) == 0


@pytest.mark.parametrize("refresh", [True, False])
async def test_a_hit_refreshes_the_ttl_when_configured(
    make_cache: MakeCache, refresh: bool
) -> None:
    cache = await make_cache(ttl_s=1.0, refresh_ttl_on_hit=refresh)
    await cache.insert("a lighthouse in a storm", SCOPE, entry("lighthouse"))
    started = time.monotonic()
    alive = True
    while alive and time.monotonic() - started < 1.5:
        await asyncio.sleep(0.25)
        alive = await cache.lookup("a lighthouse in a storm", SCOPE) is not None
    assert alive is refresh  # refreshed, it outlived its first TTL; plain, it expired


async def test_closest_picks_a_prompt_being_generated_by_the_same_rules(
    make_cache: MakeCache,
) -> None:
    cache = await make_cache()
    others = [
        "a bowl of ramen on a wooden table",
        "a kitten rolling on green grass at night",
        "a kitten rolling on green grass",
    ]
    asked = "a kitten rolls around on green grass"
    # Only prompts that were looked up (as every miss is before it leads) are compared:
    # coalescing never adds encoding work.
    assert await cache.closest(asked, SCOPE, others) is None
    for text in [*others, asked, "a kitten asleep in a basket"]:
        assert await cache.lookup(text, SCOPE) is None
    found = await cache.closest(asked, SCOPE, others)
    assert found is not None and found[0] == 2 and found[1] >= 0.85
    assert await cache.closest("a kitten asleep in a basket", SCOPE, others[:2]) is None
