"""cache.backend = "none": nothing is remembered and no model is loaded."""

from __future__ import annotations

from streamproc.app import build_cache
from streamproc.cache.base import CacheEntry, CacheScope
from streamproc.cache.null import NullCache
from streamproc.settings import load_settings

SCOPE = CacheScope("m", 64, 32, 5, 2, 5.0)


async def test_null_cache_never_hits_what_it_was_given() -> None:
    cache = build_cache(load_settings(cache={"backend": "none"}))
    assert isinstance(cache, NullCache)
    await cache.start()
    entry = CacheEntry(object_key="k", video_url="u", event_id="e", prompt="a fox", created_at=0)
    await cache.insert("a fox", SCOPE, entry)
    assert await cache.lookup("a fox", SCOPE) is None
    assert await cache.closest("a fox", SCOPE, ["a fox"]) is None
    await cache.stop()
