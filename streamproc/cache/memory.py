"""In-process exact-match cache (the embedded default)."""

from __future__ import annotations

from collections import OrderedDict

from streamproc.cache.base import CacheEntry, CacheHit, CacheScope, exact_key
from streamproc.events import CacheOutcome


class MemoryCache:
    """Exact match on normalised prompt + scope, least recently used entries evicted."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._max = max_entries

    async def lookup(self, prompt: str, scope: CacheScope) -> CacheHit | None:
        key = exact_key(prompt, scope)
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return CacheHit(entry=entry, outcome=CacheOutcome.HIT_EXACT, similarity=1.0)

    async def insert(self, prompt: str, scope: CacheScope, entry: CacheEntry) -> None:
        key = exact_key(prompt, scope)
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
