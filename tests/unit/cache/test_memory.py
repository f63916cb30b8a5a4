"""The in-process store: ids, per-scope indexes, expiry, LRU bound."""

from __future__ import annotations

import numpy as np
import pytest

from streamproc.cache.base import (
    CacheEntry,
    CacheScope,
    StoredEntry,
    Vector,
    entry_id,
    exact_key,
    match_text,
)
from streamproc.cache.memory import MemoryStore

SCOPE = CacheScope("m", 64, 32, 5, 2, 5.0)
DIM = 8


def unit(*values: float) -> Vector:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def stored(
    name: str, vector: Vector, *, expires_at: float = 100.0, scope: CacheScope = SCOPE
) -> StoredEntry:
    return StoredEntry(
        entry_id=entry_id(name, scope),
        scope_key=scope.key(),
        prompt=name,
        entry=CacheEntry(f"k-{name}", f"file:///{name}", name, name, 0.0),
        vector=vector,
        expires_at=expires_at,
    )


def test_entry_is_found_by_id_and_by_vector() -> None:
    store = MemoryStore(DIM)
    fox = stored("fox", unit(1, 0))
    store.put(fox)
    store.put(stored("owl", unit(0, 1)))
    assert store.get(fox.entry_id, now=0) == fox
    [(nearest, score), _] = store.nearest(SCOPE.key(), unit(1, 0.1), k=2, now=0)
    assert nearest == fox and score == pytest.approx(float(unit(1, 0.1) @ unit(1, 0)))


def test_nearest_only_searches_its_own_scope() -> None:
    store = MemoryStore(DIM)
    other = CacheScope("m", 128, 32, 5, 2, 5.0)
    store.put(stored("fox", unit(1, 0), scope=other))
    assert store.nearest(SCOPE.key(), unit(1, 0), k=4, now=0) == []
    assert len(store.nearest(other.key(), unit(1, 0), k=4, now=0)) == 1


def test_expired_entry_is_never_returned_and_leaves_the_index() -> None:
    store = MemoryStore(DIM)
    fox = stored("fox", unit(1, 0), expires_at=10)
    store.put(fox)
    assert store.nearest(SCOPE.key(), unit(1, 0), k=1, now=10) == []
    assert fox.entry_id not in store
    store.put(fox)
    assert store.get(fox.entry_id, now=11) is None
    assert store.index_of(SCOPE.key()) is None


def test_expired_lists_due_entries_once_and_touch_postpones() -> None:
    store = MemoryStore(DIM)
    early, late = stored("a", unit(1), expires_at=5), stored("b", unit(0, 1), expires_at=50)
    store.put(early)
    store.put(late)
    assert store.touch(early.entry_id, 20)
    assert store.expired(now=10) == []
    assert store.expired(now=30) == [early.entry_id]
    assert early.entry_id in store  # listing is not removing: the caller decides
    assert not store.touch(12345, 99)


def test_least_recently_used_entry_is_evicted_from_store_and_index() -> None:
    store = MemoryStore(DIM, max_entries=2)
    one, two, three = stored("1", unit(1)), stored("2", unit(0, 1)), stored("3", unit(0, 0, 1))
    store.put(one)
    store.put(two)
    assert store.get(one.entry_id, now=0) is not None  # "1" is now the most recent
    store.put(three)
    assert two.entry_id not in store and len(store) == 2
    index = store.index_of(SCOPE.key())
    assert index is not None and two.entry_id not in index and len(index) == 2


def test_putting_an_entry_again_replaces_it() -> None:
    store = MemoryStore(DIM)
    store.put(stored("fox", unit(1, 0)))
    newer = stored("fox", unit(0, 1))
    store.put(newer)
    index = store.index_of(SCOPE.key())
    assert len(store) == 1 and index is not None and len(index) == 1
    assert store.nearest(SCOPE.key(), unit(0, 1), k=1, now=0)[0][1] == pytest.approx(1.0)


def test_vector_of_another_dimension_is_refused() -> None:
    with pytest.raises(ValueError, match="dimension"):
        MemoryStore(4).put(stored("fox", unit(1)))


def test_exact_key_ignores_case_spacing_punctuation_and_framing() -> None:
    assert match_text("  A Red   Fox!! ") == match_text("a red fox") == "a red fox"
    assert exact_key("A video of a red fox.", SCOPE) == exact_key("a red fox", SCOPE)
    assert entry_id("A red fox.", SCOPE) == entry_id("a red fox", SCOPE)
    assert exact_key("a red fox", SCOPE) != exact_key("a red fox", CacheScope("m", 1, 1, 1, 1, 1))
