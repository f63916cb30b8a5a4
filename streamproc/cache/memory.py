"""The in-process store: the entries one worker answers from.

In the embedded default it is the whole cache; with a shared store (Redis) every worker keeps
one as its copy of the shared entries. It holds each entry once, by id (exact matches), in a
:class:`~streamproc.cache.index.ScopeIndex` per scope (near matches), with its expiry (an
expired entry is never returned: it is dropped when met and swept in bulk) and in
least-recently-used order (the oldest go beyond ``max_entries``).

Synchronous and loop-bound: only the event loop thread touches it; index rebuilds hand a
snapshot to a thread and swap the result in here.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np

from streamproc.cache.base import StoredEntry, Vector
from streamproc.cache.index import IVF_FROM, ScopeIndex


class MemoryStore:
    """Entries by id, a vector index per scope, expiry and an LRU bound."""

    def __init__(
        self, dimension: int, *, max_entries: int = 100_000, ivf_from: int = IVF_FROM
    ) -> None:
        self.dimension = dimension
        self._max_entries = max_entries
        self._ivf_from = ivf_from
        self._entries: OrderedDict[int, StoredEntry] = OrderedDict()
        self._indexes: dict[str, ScopeIndex] = {}
        # (expires_at, id), stale items skipped on pop: touches push, nothing is updated.
        self._expiry: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def entries(self) -> list[StoredEntry]:
        """Every entry held now, least recently used first (expired ones included)."""
        return list(self._entries.values())

    def get(self, entry_id: int, now: float) -> StoredEntry | None:
        """The live entry ``entry_id`` (an expired one is dropped), marked recently used."""
        stored = self._entries.get(entry_id)
        if stored is None:
            return None
        if stored.expires_at <= now:
            self.remove([entry_id])
            return None
        self._entries.move_to_end(entry_id)
        return stored

    def nearest(
        self, scope_key: str, vector: Vector, k: int, now: float
    ) -> list[tuple[StoredEntry, float]]:
        """Up to ``k`` live entries of ``scope_key`` by cosine to ``vector``, best first."""
        index = self._indexes.get(scope_key)
        if index is None:
            return []
        found: list[tuple[StoredEntry, float]] = []
        expired: list[int] = []
        for entry_id, score in index.search(vector, k):
            stored = self._entries.get(entry_id)
            if stored is None:
                continue
            if stored.expires_at <= now:
                expired.append(entry_id)
            else:
                found.append((stored, score))
        if expired:
            self.remove(expired)
        return found

    def put(self, stored: StoredEntry) -> None:
        """Add or replace an entry; evicts the least recently used beyond the bound."""
        if stored.vector.shape != (self.dimension,):
            raise ValueError(
                f"vector of shape {stored.vector.shape} in a store of dimension {self.dimension}"
            )
        known = self._entries.get(stored.entry_id)
        self._entries[stored.entry_id] = stored
        self._entries.move_to_end(stored.entry_id)
        heapq.heappush(self._expiry, (stored.expires_at, stored.entry_id))
        if known is not None and np.array_equal(known.vector, stored.vector):
            return  # the same entry again (a warm after a reconnect): the index has it
        index = self._indexes.get(stored.scope_key)
        if index is None:
            index = self._indexes[stored.scope_key] = ScopeIndex(
                self.dimension, ivf_from=self._ivf_from
            )
        index.add(stored.entry_id, stored.vector)
        if len(self._entries) > self._max_entries:
            excess = len(self._entries) - self._max_entries
            self.remove(list(itertools.islice(self._entries, excess)))

    def touch(self, entry_id: int, expires_at: float) -> bool:
        """Move an entry's expiry later; False when the entry is not here."""
        stored = self._entries.get(entry_id)
        if stored is None:
            return False
        if expires_at > stored.expires_at:
            self._entries[entry_id] = replace(stored, expires_at=expires_at)
            heapq.heappush(self._expiry, (expires_at, entry_id))
        return True

    def remove(self, entry_ids: Sequence[int]) -> None:
        """Drop entries from the store and their indexes (absent ids are ignored)."""
        by_scope: dict[str, list[int]] = {}
        for entry_id in entry_ids:
            stored = self._entries.pop(entry_id, None)
            if stored is not None:
                by_scope.setdefault(stored.scope_key, []).append(entry_id)
        for scope_key, ids in by_scope.items():
            index = self._indexes[scope_key]
            index.remove(ids)
            if not len(index):
                del self._indexes[scope_key]
        if len(self._expiry) > 4 * len(self._entries) + 1024:
            self._expiry = [(s.expires_at, i) for i, s in self._entries.items()]
            heapq.heapify(self._expiry)

    def expired(self, now: float) -> list[int]:
        """Ids of entries whose expiry has passed (still stored: the caller decides)."""
        due: dict[int, None] = {}
        while self._expiry and self._expiry[0][0] <= now:
            _, entry_id = heapq.heappop(self._expiry)
            stored = self._entries.get(entry_id)
            if stored is not None and stored.expires_at <= now:
                due[entry_id] = None
        return list(due)

    def index_of(self, scope_key: str) -> ScopeIndex | None:
        """The index of a scope (None when it holds nothing)."""
        return self._indexes.get(scope_key)

    def indexes(self) -> Iterator[ScopeIndex]:
        """Every scope's index."""
        return iter(list(self._indexes.values()))
