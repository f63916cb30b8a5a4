"""The text encoder's CUDA-graph wrapper: padding that changes no real token's embedding, and
the eager path wherever graphs cannot run (the recording itself is exercised on the GPU by
bench/gpu_throughput.py, whose numerics compare against eager runs)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from streamproc.generation.base import GenerationRequest
from streamproc.generation.runner import RunnerOptions, StagedRunner
from streamproc.generation.textgraph import (
    GraphedTextEncoder,
    fill_padded,
    padded_size,
    prepared_sizes,
    rows_bucket,
)


@pytest.mark.parametrize(
    ("n", "step", "limit", "expected"),
    [
        (1, 64, 512, 64),
        (64, 64, 512, 64),
        (65, 64, 512, 128),
        (500, 64, 512, 512),
        (30, 64, 20, 30),
    ],
)
def test_token_padding_rounds_up_within_the_limit(
    n: int, step: int, limit: int, expected: int
) -> None:
    assert padded_size(n, step, limit) == expected


def test_rows_round_up_to_a_power_of_two() -> None:
    assert [rows_bucket(n) for n in (1, 2, 3, 4, 5, 8, 9)] == [1, 2, 4, 4, 8, 8, 16]


def _tokens(pipe: Any, texts: list[str]) -> Any:
    return pipe.tokenizer(texts, padding="longest", return_attention_mask=True, return_tensors="pt")


def test_padding_rows_and_tokens_leaves_every_real_embedding_as_it_was(
    tiny_pipeline: tuple[Any, str],
) -> None:
    """The claim the graphs rest on: masked padding is invisible to the real tokens."""
    pipe, _ = tiny_pipeline
    encoder = pipe.text_encoder
    tok = _tokens(pipe, ["a fox in snow", "a lighthouse at dusk, waves breaking on rocks"])
    n, length = tok.input_ids.shape
    with torch.inference_mode():
        plain = encoder(tok.input_ids, tok.attention_mask).last_hidden_state
        ids = torch.full((4, length + 37), 7, dtype=torch.long)  # junk the fill must clear
        mask = torch.ones_like(ids)
        fill_padded(ids, mask, tok.input_ids, tok.attention_mask)
        padded = encoder(ids, mask).last_hidden_state
    assert mask[n:, 0].tolist() == [1, 1] and mask[n:, 1:].sum() == 0
    assert ids[:, length:].sum() == 0
    for row in range(n):
        real = int(tok.attention_mask[row].sum())
        torch.testing.assert_close(padded[row, :real], plain[row, :real], rtol=1e-5, atol=1e-5)


def test_off_cuda_the_wrapper_runs_the_encoder_as_it_is(tiny_pipeline: tuple[Any, str]) -> None:
    pipe, _ = tiny_pipeline
    graphed = GraphedTextEncoder(pipe.text_encoder, max_tokens=512)
    assert not graphed.enabled
    tok = _tokens(pipe, ["a red kite over a beach"])
    with torch.inference_mode():
        out = graphed(tok.input_ids, tok.attention_mask)
        ref = pipe.text_encoder(tok.input_ids, tok.attention_mask).last_hidden_state
    assert torch.equal(out, ref)
    assert graphed.recorded == []


def test_a_runner_with_graphs_asked_for_encodes_as_without_them_on_the_cpu(
    tiny_pipeline: tuple[Any, str],
) -> None:
    pipe, _ = tiny_pipeline
    requests = [GenerationRequest("e1", "a fox in snow", None, 1)]
    with_graphs = StagedRunner(pipe, RunnerOptions(text_encoder_graphs=True))
    without = StagedRunner(pipe, RunnerOptions())
    assert with_graphs.text_encoder is not None and without.text_encoder is None
    with torch.inference_mode():
        a = with_graphs.encode(requests, 5.0)
        b = without.encode(requests, 5.0)
    assert torch.equal(a.cond, b.cond)
    assert a.uncond is not None and b.uncond is not None
    assert torch.equal(a.uncond, b.uncond)


def test_the_prepared_sizes_serve_every_call_up_to_the_limits() -> None:
    sizes = prepared_sizes(8, 128, 32)
    assert sizes == [(r, t) for r in (1, 2, 4, 8) for t in (32, 64, 96, 128)]
    # Every call of up to 8 texts and 128 tokens lands on a prepared graph.
    for n in range(1, 9):
        for length in range(1, 129):
            assert (rows_bucket(n), padded_size(length, 32, 512)) in sizes
    assert prepared_sizes(3, 40, 32) == [(r, t) for r in (1, 2, 4) for t in (32, 64)]
    # a token limit that is no multiple of the step: the calls pad to the limit itself
    capped = prepared_sizes(2, 100, 32, limit=100)
    assert capped == [(r, t) for r in (1, 2) for t in (32, 64, 96, 100)]
    for length in range(1, 101):
        assert (1, padded_size(length, 32, 100)) in capped


class _Recorder(GraphedTextEncoder):
    """Records keys instead of CUDA graphs (none can be captured on this machine), failing
    at ``fail_at`` as a library that synchronises inside the forward would."""

    def __init__(self, encoder: Any, fail_at: tuple[int, int] | None = None) -> None:
        super().__init__(encoder, max_tokens=96, max_rows=4)
        self.enabled = True
        self.fail_at = fail_at
        self.asked: list[tuple[int, int]] = []

    def _record(self, key: tuple[int, int]) -> Any:
        self.asked.append(key)
        if key == self.fail_at:
            self.enabled = False
            self._graphs.clear()
            return None
        self._graphs[key] = (None, None, None, None)
        return self._graphs[key]


def test_prepare_records_each_missing_size_within_the_wrappers_limits(
    tiny_pipeline: tuple[Any, str],
) -> None:
    pipe, _ = tiny_pipeline
    graphed = _Recorder(pipe.text_encoder)
    graphed._graphs[(1, 32)] = (None, None, None, None)  # recorded by an earlier call
    assert graphed.prepare(8, 128) == 8  # rows capped at 4, tokens at 96; (1, 32) kept
    assert (1, 32) not in graphed.asked
    assert graphed.recorded == [(r, t) for r in (1, 2, 4) for t in (32, 64, 96)]
    assert graphed.prepare(8, 128) == 0  # nothing left to record


def test_prepare_stops_at_the_first_failed_recording(tiny_pipeline: tuple[Any, str]) -> None:
    pipe, _ = tiny_pipeline
    graphed = _Recorder(pipe.text_encoder, fail_at=(1, 64))
    assert graphed.prepare(4, 96) == 1  # (1, 32), then the failure: eager from then on
    assert graphed.asked == [(1, 32), (1, 64)]
    assert not graphed.enabled and graphed.recorded == []


def test_a_runner_without_graphs_prepares_nothing(tiny_pipeline: tuple[Any, str]) -> None:
    pipe, _ = tiny_pipeline
    assert StagedRunner(pipe, RunnerOptions()).prepare_text_graphs(8, 128) == 0
    on_cpu = StagedRunner(pipe, RunnerOptions(text_encoder_graphs=True))
    assert on_cpu.prepare_text_graphs(8, 128) == 0  # off CUDA the encoder runs eagerly
