"""Which FAISS index a cache scope should use, by size: search time and recall.

Usage:
    python bench/cache_index.py [--sizes 1000,10000,30000,100000]

Vectors: 384-d unit vectors clustered like sentence embeddings (points around n/50
centres). Queries: stored vectors moved to cosine ~0.9, i.e. near-duplicate prompts, the
only neighbours the cache cares about. For each size: one flat (exact) search, the IVF
index the cache builds (``streamproc.cache.index.build_index``: build time, search time,
recall@1 against flat), and HNSW (M=32, efSearch=64) for comparison. One thread, one query
per search, as a lookup does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streamproc.cache.index import Snapshot, build_index  # noqa: E402

DIM = 384


def unit(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms: npt.NDArray[np.float32] = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / norms).astype(np.float32)


def per_query_ms(index: object, queries: npt.NDArray[np.float32]) -> float:
    began = time.perf_counter()
    for query in queries:
        index.search(query.reshape(1, -1), 4)  # type: ignore[attr-defined]
    return (time.perf_counter() - began) / len(queries) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,30000,100000")
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"{'vectors':>8} {'flat ms':>8} | {'IVF build s':>11} {'ms':>6} {'recall':>6} "
          f"| {'HNSW build s':>12} {'ms':>6} {'recall':>6}")  # fmt: skip
    for size in (int(s) for s in args.sizes.split(",")):
        centres = rng.standard_normal((max(size // 50, 10), DIM)).astype(np.float32)
        stored = unit(centres[rng.integers(0, len(centres), size)]
                      + 0.8 * rng.standard_normal((size, DIM)).astype(np.float32))  # fmt: skip
        picked = rng.integers(0, size, args.queries)
        noise = unit(rng.standard_normal((args.queries, DIM)).astype(np.float32))
        queries = unit(stored[picked] + 0.5 * noise)
        flat = faiss.IndexFlatIP(DIM)
        flat.add(stored)
        _, truth = flat.search(queries, 1)
        flat_ms = per_query_ms(flat, queries)
        began = time.perf_counter()
        ivf = build_index(DIM, Snapshot(np.arange(size, dtype=np.int64), stored), ivf_from=1)
        ivf_build = time.perf_counter() - began
        _, found = ivf.search(queries, 1)
        ivf_recall = float((found[:, 0] == truth[:, 0]).mean())
        hnsw = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = 64
        began = time.perf_counter()
        hnsw.add(stored)
        hnsw_build = time.perf_counter() - began
        _, found = hnsw.search(queries, 1)
        hnsw_recall = float((found[:, 0] == truth[:, 0]).mean())
        print(f"{size:>8} {flat_ms:>8.3f} | {ivf_build:>11.2f} {per_query_ms(ivf, queries):>6.3f} "
              f"{ivf_recall:>6.3f} | {hnsw_build:>12.2f} {per_query_ms(hnsw, queries):>6.3f} "
              f"{hnsw_recall:>6.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
