"""A cache that remembers nothing (``cache.backend = "none"``).

For workers that must not reuse videos at all, and for GPU benchmarks where loading an
embedding model would only add noise. Identical requests in flight are still coalesced by
the processor (exact matches need no embedding).
"""

from __future__ import annotations

from collections.abc import Sequence

from streamproc.cache.base import CacheEntry, CacheHit, CacheScope


class NullCache:
    """Every lookup misses; inserts are dropped."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def lookup(
        self, prompt: str, scope: CacheScope, *, seed: int | None = None
    ) -> CacheHit | None:
        return None

    async def insert(self, prompt: str, scope: CacheScope, entry: CacheEntry) -> None:
        return None

    async def closest(
        self, prompt: str, scope: CacheScope, others: Sequence[str]
    ) -> tuple[int, float] | None:
        return None  # no near-duplicates without a model; exact ones are matched upstream
