"""The text encoder replayed as CUDA graphs: the same embeddings without the launch cost.

Measured on an H200 (``random-5b``: a UMT5-XXL-sized encoder, four texts of 66 tokens), one
eager encoder call takes 38-45 ms of which the GPU is busy 23 ms; the rest is the CPU
launching about 1,580 kernels, slower still while the MP4 encoder processes share the cores.
With a 4-step model that is about a sixth of a video's time. A CUDA graph replays the
recorded launches in one call.

A graph has fixed shapes, so each call is padded: rows up to a power of two, tokens up to a
multiple of ``token_step`` (at most ``max_tokens``). Padding is masked out — a token whose
mask is 0 takes no part in any real token's attention — so every real token's embedding is
the eager call's, within the float rounding of other matmul shapes. Padded rows hold a
single unmasked pad token and are dropped.

Graphs are recorded on first use of each (rows, tokens) pair, with a mask that has padding
(so the masked attention path is the one recorded), and share one memory pool; recording
one costs about 0.15 s, so the worker records the sizes its batches will use at warm-up
(:meth:`GraphedTextEncoder.prepare`: every row bucket up to twice the batch size, tokens up
to ``generation.text_encoder_graph_tokens``) instead of during the first events; each result
is copied out before the next replay. Only one thread (the denoising one) may call it. If a
recording fails (a library that synchronises inside the forward), the wrapper logs why and
runs the encoder eagerly from then on.
"""

from __future__ import annotations

from typing import Any

import structlog
import torch

log = structlog.get_logger(__name__)


def padded_size(n: int, step: int, limit: int) -> int:
    """``n`` rounded up to a multiple of ``step``, at most ``limit`` (and at least ``n``)."""
    return max(n, min(limit, -(-n // step) * step))


def rows_bucket(n: int) -> int:
    """The smallest power of two that holds ``n`` rows."""
    return 1 << max(0, (n - 1).bit_length())


def fill_padded(
    ids: torch.Tensor, mask: torch.Tensor, input_ids: torch.Tensor, input_mask: torch.Tensor
) -> None:
    """Write a call into larger buffers: its rows and tokens first, then padding (token 0,
    masked out), and padded rows holding one unmasked pad token (never an all-masked row)."""
    n, length = input_ids.shape
    ids.zero_()
    mask.zero_()
    mask[:, 0] = 1
    ids[:n, :length].copy_(input_ids)
    mask[:n, :length].copy_(input_mask)


def prepared_sizes(
    rows: int, tokens: int, step: int, limit: int | None = None
) -> list[tuple[int, int]]:
    """The (rows, tokens) graphs that serve every call of at most ``rows`` texts and
    ``tokens`` tokens: each power of two up to ``rows``' bucket, and each padded length
    :func:`padded_size` gives up to ``tokens`` (multiples of ``step``, at most ``limit``)."""
    buckets = [1 << i for i in range(rows_bucket(rows).bit_length())]
    cap = limit if limit is not None else -(-tokens // step) * step
    lengths = sorted(
        {padded_size(min(n, tokens), step, cap) for n in range(step, tokens + step, step)}
    )
    return [(r, t) for r in buckets for t in lengths]


class GraphedTextEncoder:
    """Calls ``encoder(input_ids, attention_mask).last_hidden_state`` through CUDA graphs.

    ``__call__`` takes the tokenizer's ids and mask (any device) and returns the hidden
    states of the real rows and tokens, shaped like the input, on the encoder's device.
    """

    def __init__(
        self, encoder: Any, *, max_tokens: int, token_step: int = 32, max_rows: int = 8
    ) -> None:
        self.encoder = encoder
        self.max_tokens = max_tokens
        self.token_step = token_step
        self.max_rows = rows_bucket(max_rows)
        self.device: torch.device = next(encoder.parameters()).device
        self.enabled = self.device.type == "cuda"
        self._graphs: dict[tuple[int, int], tuple[Any, torch.Tensor, torch.Tensor, Any]] = {}
        self._pool: Any = None

    @property
    def recorded(self) -> list[tuple[int, int]]:
        """The (rows, tokens) shapes recorded so far."""
        return sorted(self._graphs)

    def prepare(self, rows: int, tokens: int) -> int:
        """Record now every graph that calls of up to ``rows`` texts and ``tokens`` tokens
        need (within the wrapper's own limits); returns how many were recorded. Nothing off
        CUDA or once recording has failed."""
        rows, tokens = min(rows, self.max_rows), min(tokens, self.max_tokens)
        recorded = 0
        for key in prepared_sizes(rows, tokens, self.token_step, self.max_tokens):
            if not self.enabled:
                break
            if key not in self._graphs and self._record(key) is not None:
                recorded += 1
        return recorded

    def eager(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden: torch.Tensor = self.encoder(
            input_ids.to(self.device), mask.to(self.device)
        ).last_hidden_state
        return hidden

    def __call__(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.eager(input_ids, mask)
        if input_ids.shape[0] > self.max_rows:
            return torch.cat(
                [
                    self(input_ids[i : i + self.max_rows], mask[i : i + self.max_rows])
                    for i in range(0, input_ids.shape[0], self.max_rows)
                ]
            )
        n, length = input_ids.shape
        key = (rows_bucket(n), padded_size(length, self.token_step, self.max_tokens))
        entry = self._graphs.get(key) or self._record(key)
        if entry is None:  # recording failed: eager from now on
            return self.eager(input_ids, mask)
        graph, ids, static_mask, out = entry
        fill_padded(ids, static_mask, input_ids, mask)
        graph.replay()
        result: torch.Tensor = out[:n, :length].clone()
        return result

    def _record(self, key: tuple[int, int]) -> tuple[Any, torch.Tensor, torch.Tensor, Any] | None:
        rows, tokens = key
        ids = torch.zeros(rows, tokens, dtype=torch.long, device=self.device)
        mask = torch.zeros(rows, tokens, dtype=torch.long, device=self.device)
        mask[:, : max(1, tokens // 2)] = 1  # padding present: the masked path is recorded
        try:
            side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up outside the graph (lazy inits, autotuning)
                    self.encoder(ids, mask)
            torch.cuda.current_stream(self.device).wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                out = self.encoder(ids, mask).last_hidden_state
        except Exception as exc:  # outcome: the encoder runs eagerly from now on, logged
            self.enabled = False
            self._graphs.clear()
            log.warning("text_encoder_graphs_off", reason=f"{type(exc).__name__}: {exc}"[:300])
            return None
        self._graphs[key] = (graph, ids, mask, out)
        log.info("text_encoder_graph_recorded", rows=rows, tokens=tokens)
        return self._graphs[key]
