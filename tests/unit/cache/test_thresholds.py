"""Hit decisions at the edges, with fixed vectors so every cosine is exact.

The only place a stand-in encoder is used: MiniLM cannot produce a cosine of exactly 0.75.
Stored prompts get the first basis vector; a request gets ``(t, sqrt(1 - t²), 0, ...)``, so
its cosine to the stored prompt is ``t`` (as float32, as FAISS computes it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from streamproc.cache.base import CacheEntry, CacheScope, match_text
from streamproc.cache.embedder import BatchingEmbedder
from streamproc.cache.guard import HitPolicy
from streamproc.cache.semantic import SemanticCache
from streamproc.events import CacheOutcome

SCOPE = CacheScope("m", 64, 32, 5, 2, 5.0)
DIM = 8


def at(cosine: float, axis: int = 0) -> npt.NDArray[np.float32]:
    """A unit vector at ``cosine`` to basis vector ``axis``."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[axis] = cosine
    vector[7] = math.sqrt(max(0.0, 1.0 - cosine * cosine))
    return vector


class FixedEncoder:
    """Deterministic vectors looked up by normalised text."""

    name = "fixed"
    dimension = DIM

    def __init__(self, table: Mapping[str, npt.NDArray[np.float32]]) -> None:
        self._table = {match_text(text): vector for text, vector in table.items()}

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return np.stack([self._table[text] for text in texts])


def cache_with(table: Mapping[str, npt.NDArray[np.float32]], **options: object) -> SemanticCache:
    return SemanticCache(BatchingEmbedder(FixedEncoder(table)), **options)  # type: ignore[arg-type]


def entry(name: str) -> CacheEntry:
    return CacheEntry(f"k-{name}", f"file:///{name}", name, name, 0.0)


STORED = "a quiet harbour with fishing boats"
REQUEST = "fishing boats in a quiet harbour"


@pytest.mark.parametrize(
    ("cosine", "hit"),
    [(1.0, True), (0.9, True), (0.75, True), (0.7499, False), (0.5, False)],
)
async def test_default_threshold_is_inclusive_at_075(cosine: float, hit: bool) -> None:
    cache = cache_with({STORED: at(1.0), REQUEST: at(cosine)})
    await cache.insert(STORED, SCOPE, entry("stored"))
    found = await cache.lookup(REQUEST, SCOPE)
    assert (found is not None) is hit
    if found is not None:
        assert found.outcome is CacheOutcome.HIT_SEMANTIC
        assert found.similarity == pytest.approx(cosine, abs=1e-4)


@pytest.mark.parametrize(("cosine", "hit"), [(0.875, True), (0.8749, False), (0.86, False)])
async def test_configured_threshold_moves_the_edge(cosine: float, hit: bool) -> None:
    cache = cache_with(
        {STORED: at(1.0), REQUEST: at(cosine)}, policy=HitPolicy(similarity_threshold=0.875)
    )
    await cache.insert(STORED, SCOPE, entry("stored"))
    assert (await cache.lookup(REQUEST, SCOPE) is not None) is hit


async def test_the_guard_vetoes_even_an_identical_vector() -> None:
    table = {"two horses running in a field": at(1.0), "three horses running in a field": at(1.0)}
    guarded = cache_with(table)
    await guarded.insert("two horses running in a field", SCOPE, entry("two"))
    assert await guarded.lookup("three horses running in a field", SCOPE) is None
    assert guarded.stats.guard_rejections == 1
    unguarded = cache_with(table, policy=HitPolicy(use_guard=False))
    await unguarded.insert("two horses running in a field", SCOPE, entry("two"))
    assert await unguarded.lookup("three horses running in a field", SCOPE) is not None


async def test_a_rejected_nearest_candidate_does_not_hide_an_accepted_one() -> None:
    table = {
        "three horses running in a field": at(0.99),
        "a pair of horses running through a field": at(0.9),
        "two horses running in a field": at(1.0),
    }
    cache = cache_with(table)
    await cache.insert("three horses running in a field", SCOPE, entry("three"))
    await cache.insert("a pair of horses running through a field", SCOPE, entry("pair"))
    hit = await cache.lookup("two horses running in a field", SCOPE)
    assert hit is not None and hit.entry.event_id == "pair"
    assert hit.similarity == pytest.approx(0.9, abs=1e-4)
    only_nearest = cache_with(table, candidates=1)
    await only_nearest.insert("three horses running in a field", SCOPE, entry("three"))
    await only_nearest.insert("a pair of horses running through a field", SCOPE, entry("pair"))
    assert await only_nearest.lookup("two horses running in a field", SCOPE) is None


async def test_the_closest_of_several_entries_answers() -> None:
    table = {"fog over hills": at(0.95), "fog over the hills": at(0.9), "hills in fog": at(1.0)}
    cache = cache_with(table, policy=HitPolicy(use_guard=False))
    await cache.insert("fog over the hills", SCOPE, entry("far"))
    await cache.insert("fog over hills", SCOPE, entry("near"))
    hit = await cache.lookup("hills in fog", SCOPE)
    assert hit is not None and hit.entry.event_id == "near"


@pytest.mark.parametrize(
    ("cosine", "request_text", "hit"),
    [
        (0.72, "aerial footage above a snow-covered forest", True),  # shares its words
        (
            0.72,
            "aerial footage above a snow-covered forest near old Lapland villages",
            False,
        ),  # half
        (0.69, "aerial footage above a snow-covered forest", False),  # below the band
    ],
)
async def test_lower_band_needs_the_guard_and_word_overlap(
    cosine: float, request_text: str, hit: bool
) -> None:
    stored = "a drone shot over a snowy forest"
    cache = cache_with(
        {stored: at(1.0), request_text: at(cosine)},
        policy=HitPolicy(verified_threshold=0.70, min_overlap=0.65),
    )
    await cache.insert(stored, SCOPE, entry("drone"))
    assert (await cache.lookup(request_text, SCOPE) is not None) is hit


async def test_exact_repeat_needs_no_embedding() -> None:
    cache = cache_with({STORED: at(1.0)})
    await cache.insert(STORED, SCOPE, entry("stored"))
    # "A video of ..." and the capitals normalise away: the text was never given a vector.
    hit = await cache.lookup("A video of A QUIET HARBOUR with fishing boats!", SCOPE)
    assert hit is not None and hit.outcome is CacheOutcome.HIT_EXACT and hit.similarity == 1.0
