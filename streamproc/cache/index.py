"""FAISS inner-product index of one cache scope: exact while small, IVF when large.

Vectors are unit length, so inner product is cosine similarity. Labels are entry ids
(:func:`~streamproc.cache.base.entry_id`), so replacing an entry is remove + add and deletion
is ``remove_ids`` on either kind.

Which kind, measured on this project's two-core machine (``bench/cache_index.py``, figures
in ``docs/benchmarks.md``): one flat search costs about 0.06 ms at 1k vectors, 0.7 ms at 10k
and 11 ms at 100k; IVF (``nlist = 4·√n`` capped at ``n/39``, ``nprobe = nlist/16``) stays
near 1 ms at 100k and finds the same nearest neighbour for every near-duplicate query, and
unlike HNSW it can delete. So a scope switches to IVF at ``ivf_from`` vectors (default
10,000), retrains when it has doubled and goes back to flat when it has shrunk to a
quarter. IVF training takes seconds at 100k, so it runs on a thread from a snapshot while
the old index keeps answering; changes made meanwhile are replayed before the swap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from streamproc.cache.base import Vector

#: Default size at which a scope's index becomes IVF.
IVF_FROM = 10_000


@dataclass(frozen=True)
class Snapshot:
    """The vectors of a scope at one moment, to build a new index from off the loop."""

    ids: npt.NDArray[np.int64]
    vectors: npt.NDArray[np.float32]


def build_index(dimension: int, snapshot: Snapshot, *, ivf_from: int) -> Any:
    """A FAISS index holding ``snapshot``: IVF from ``ivf_from`` vectors, flat below.

    Blocking (training k-means takes seconds at 100k vectors): run it on a thread.
    """
    count = len(snapshot.ids)
    index: Any
    if count < ivf_from:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
    else:
        # 4·√n lists, but at least 39 training points each (FAISS warns below that).
        nlist = max(16, min(int(4 * math.sqrt(count)), count // 39))
        index = faiss.IndexIVFFlat(
            faiss.IndexFlatIP(dimension), dimension, nlist, faiss.METRIC_INNER_PRODUCT
        )
        # 40 points per centroid is plenty for k-means; more only costs time.
        sample = np.random.default_rng(0).permutation(count)[: 40 * nlist]
        index.train(snapshot.vectors[sample])
        index.nprobe = max(8, nlist // 16)
    if count:
        index.add_with_ids(snapshot.vectors, snapshot.ids)
    return index


def _is_ivf(index: Any) -> bool:
    return isinstance(index, faiss.IndexIVF)


class ScopeIndex:
    """The vectors of one scope (implements :class:`~streamproc.cache.base.VectorIndex`)."""

    def __init__(self, dimension: int, *, ivf_from: int = IVF_FROM) -> None:
        self.dimension = dimension
        self._ivf_from = ivf_from
        self._vectors: dict[int, Vector] = {}
        self._index: Any = build_index(
            dimension,
            Snapshot(np.empty(0, np.int64), np.empty((0, dimension), np.float32)),
            ivf_from=ivf_from,
        )
        self._trained_size = 0
        # Changes made while a rebuild runs: (entry id, vector or None for removal).
        self._journal: list[tuple[int, Vector | None]] | None = None

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._vectors

    @property
    def kind(self) -> str:
        """'flat' or 'ivf'."""
        return "ivf" if _is_ivf(self._index) else "flat"

    def add(self, entry_id: int, vector: Vector) -> None:
        """Add or replace the vector of ``entry_id``."""
        if entry_id in self._vectors:
            self._index.remove_ids(np.array([entry_id], dtype=np.int64))
        self._vectors[entry_id] = vector
        self._index.add_with_ids(vector.reshape(1, -1), np.array([entry_id], dtype=np.int64))
        if self._journal is not None:
            self._journal.append((entry_id, vector))

    def remove(self, entry_ids: Sequence[int]) -> None:
        """Forget ``entry_ids`` (absent ones are ignored)."""
        present = [i for i in entry_ids if self._vectors.pop(i, None) is not None]
        if not present:
            return
        self._index.remove_ids(np.array(present, dtype=np.int64))
        if self._journal is not None:
            self._journal.extend((i, None) for i in present)

    def search(self, vector: Vector, k: int) -> list[tuple[int, float]]:
        """Up to ``k`` (entry id, cosine) pairs, best first."""
        if not self._vectors:
            return []
        # One query is too small to share between threads; OpenMP's spinning threads cost
        # milliseconds per search on a busy two-core machine. Per calling thread, cheap.
        faiss.omp_set_num_threads(1)
        scores, labels = self._index.search(vector.reshape(1, -1), min(k, len(self._vectors)))
        return [
            (int(label), float(score))
            for label, score in zip(labels[0], scores[0], strict=True)
            if label >= 0
        ]

    # -- rebuilding ------------------------------------------------------------------------

    def rebuild_due(self) -> bool:
        """Whether the index kind or its training no longer fits the size."""
        if self._journal is not None:
            return False
        size = len(self._vectors)
        if not _is_ivf(self._index):
            return size >= self._ivf_from
        return size >= 2 * self._trained_size or size < self._trained_size // 4

    def snapshot(self) -> Snapshot:
        """The current vectors; changes from now on are journaled until :meth:`install`."""
        self._journal = []
        ids = np.fromiter(self._vectors.keys(), dtype=np.int64, count=len(self._vectors))
        if ids.size:
            vectors = np.stack(list(self._vectors.values())).astype(np.float32, copy=False)
        else:
            vectors = np.empty((0, self.dimension), np.float32)
        return Snapshot(ids, vectors)

    def install(self, index: Any, snapshot: Snapshot) -> None:
        """Swap in ``index`` (built from ``snapshot``) after replaying the journal."""
        journal, self._journal = self._journal or [], None
        for entry_id, vector in journal:
            index.remove_ids(np.array([entry_id], dtype=np.int64))
            if vector is not None:
                index.add_with_ids(vector.reshape(1, -1), np.array([entry_id], dtype=np.int64))
        self._index = index
        self._trained_size = len(snapshot.ids) if _is_ivf(index) else 0

    def abandon_rebuild(self) -> None:
        """Stop journaling: the rebuild failed or was cancelled."""
        self._journal = None

    def build(self, snapshot: Snapshot) -> Any:
        """Build the index that fits ``snapshot`` (blocking; see :func:`build_index`)."""
        return build_index(self.dimension, snapshot, ivf_from=self._ivf_from)
