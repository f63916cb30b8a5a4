"""The in-process exact cache."""

from __future__ import annotations

import pytest

from streamproc.cache.base import CacheEntry, CacheScope, exact_key, match_text
from streamproc.cache.memory import MemoryCache
from streamproc.events import CacheOutcome

SCOPE = CacheScope("m", 64, 32, 5, 2, 5.0)


def entry(event_id: str = "e1") -> CacheEntry:
    return CacheEntry(
        object_key=f"k-{event_id}",
        video_url=f"file:///{event_id}",
        event_id=event_id,
        prompt="a fox",
        created_at=0.0,
    )


async def test_exact_repeat_hits() -> None:
    cache = MemoryCache()
    await cache.insert("A red fox.", SCOPE, entry())
    hit = await cache.lookup("a  red FOX", SCOPE)
    assert hit is not None
    assert hit.outcome is CacheOutcome.HIT_EXACT and hit.entry.event_id == "e1"


async def test_different_prompt_misses() -> None:
    cache = MemoryCache()
    await cache.insert("a red fox", SCOPE, entry())
    assert await cache.lookup("a grey fox", SCOPE) is None


@pytest.mark.parametrize(
    "other",
    [
        CacheScope("m", 128, 32, 5, 2, 5.0),
        CacheScope("m", 64, 32, 9, 2, 5.0),
        CacheScope("m", 64, 32, 5, 4, 5.0),
        CacheScope("m", 64, 32, 5, 2, 6.0),
        CacheScope("other-model", 64, 32, 5, 2, 5.0),
        CacheScope("m", 64, 32, 5, 2, 5.0, negative_prompt="blurry"),
        CacheScope("m", 64, 32, 5, 2, 5.0, tenant="acme"),
    ],
)
async def test_another_scope_never_matches(other: CacheScope) -> None:
    cache = MemoryCache()
    await cache.insert("a red fox", SCOPE, entry())
    assert await cache.lookup("a red fox", other) is None


async def test_least_recently_used_entry_is_evicted() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.insert("one", SCOPE, entry("1"))
    await cache.insert("two", SCOPE, entry("2"))
    assert await cache.lookup("one", SCOPE) is not None  # "one" is now the most recent
    await cache.insert("three", SCOPE, entry("3"))
    assert await cache.lookup("two", SCOPE) is None
    assert await cache.lookup("one", SCOPE) is not None
    assert len(cache) == 2


def test_match_text_ignores_case_spacing_and_edge_punctuation() -> None:
    assert match_text("  A Red   Fox!! ") == match_text("a red fox") == "a red fox"
    assert exact_key("A red fox.", SCOPE) == exact_key("a red fox", SCOPE)
    assert exact_key("a red fox", SCOPE) != exact_key("a red fox", CacheScope("m", 1, 1, 1, 1, 1))
