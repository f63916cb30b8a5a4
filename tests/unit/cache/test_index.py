"""The FAISS index of one scope: exact while small, IVF when large, deletions either way."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from streamproc.cache.index import ScopeIndex

DIM = 32


def vectors(count: int, seed: int = 0) -> npt.NDArray[np.float32]:
    rows = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def near(vector: npt.NDArray[np.float32], seed: int) -> npt.NDArray[np.float32]:
    """A vector at cosine ~0.95 to ``vector``."""
    noise = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    moved = vector + 0.3 * noise / np.linalg.norm(noise)
    return (moved / np.linalg.norm(moved)).astype(np.float32)


def filled(count: int, *, ivf_from: int = 10_000) -> tuple[ScopeIndex, npt.NDArray[np.float32]]:
    index = ScopeIndex(DIM, ivf_from=ivf_from)
    rows = vectors(count)
    for i, row in enumerate(rows):
        index.add(i, row)
    return index, rows


def rebuild(index: ScopeIndex) -> None:
    snapshot = index.snapshot()
    index.install(index.build(snapshot), snapshot)


def test_search_returns_cosines_best_first() -> None:
    index, rows = filled(50)
    found = index.search(near(rows[7], seed=1), k=3)
    assert found[0][0] == 7
    assert found[0][1] == pytest.approx(float(near(rows[7], seed=1) @ rows[7]), abs=1e-5)
    assert [score for _, score in found] == sorted((score for _, score in found), reverse=True)


def test_removed_and_replaced_vectors_are_gone() -> None:
    index, rows = filled(20)
    index.remove([7, 999])
    assert 7 not in index and len(index) == 19
    assert all(label != 7 for label, _ in index.search(rows[7], k=19))
    index.add(3, rows[11])
    assert len(index) == 19
    assert {label for label, score in index.search(rows[11], k=2) if score > 0.999} == {3, 11}


def test_empty_index_finds_nothing() -> None:
    assert ScopeIndex(DIM).search(vectors(1)[0], k=4) == []


def test_large_scope_switches_to_ivf_and_finds_the_same_neighbours() -> None:
    index, rows = filled(600, ivf_from=256)
    assert index.kind == "flat" and index.rebuild_due()
    queries = [near(rows[i], seed=i) for i in range(0, 600, 7)]
    before = [index.search(q, k=1)[0][0] for q in queries]
    rebuild(index)
    assert index.kind == "ivf" and not index.rebuild_due()
    assert [index.search(q, k=1)[0][0] for q in queries] == before
    index.remove([0])
    assert all(label != 0 for label, _ in index.search(rows[0], k=5))


def test_changes_made_during_a_rebuild_survive_the_swap() -> None:
    index, rows = filled(300, ivf_from=256)
    extra = vectors(2, seed=9)
    snapshot = index.snapshot()
    assert not index.rebuild_due()  # one rebuild at a time
    index.add(1000, extra[0])
    index.remove([5])
    index.add(6, extra[1])  # replaced while building
    index.install(index.build(snapshot), snapshot)
    assert index.kind == "ivf" and len(index) == 300
    assert index.search(extra[0], k=1)[0][0] == 1000
    assert index.search(extra[1], k=1)[0][0] == 6
    assert all(label != 5 for label, _ in index.search(rows[5], k=10))


def test_shrunken_ivf_goes_back_to_flat() -> None:
    index, _ = filled(600, ivf_from=256)
    rebuild(index)
    index.remove(list(range(500)))
    assert index.rebuild_due()
    rebuild(index)
    assert index.kind == "flat" and len(index) == 100
