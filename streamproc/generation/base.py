"""The generator seam: turns one batch of same-shape requests into frames.

Implementations keep their model resident between calls and never run it on the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from streamproc.batching import ShapeKey

Frames = npt.NDArray[np.uint8]
"""One video: ``(frames, height, width, 3)`` RGB, uint8."""


@dataclass(frozen=True)
class GenerationRequest:
    """One video to make (the prompt already canonical, the seed already chosen)."""

    event_id: str
    prompt: str
    negative_prompt: str | None
    seed: int


@dataclass(frozen=True)
class GeneratedBatch:
    """Frames for each request, in request order, and where the time went."""

    videos: list[Frames]
    stage_seconds: dict[str, float] = field(default_factory=dict)


class Generator(Protocol):
    """A resident video model."""

    @property
    def model_id(self) -> str:
        """Identifies the weights (part of every object key and cache scope)."""
        ...

    @property
    def scheduler_name(self) -> str:
        """The sampler in use (part of every object key)."""
        ...

    @property
    def max_concurrent_batches(self) -> int:
        """How many :meth:`generate` calls may be in flight (2 when decoding overlaps)."""
        ...

    def max_batch_size(self, shape: ShapeKey) -> int | None:
        """The largest batch of ``shape`` that fits in memory, or None when unknown."""
        ...

    async def start(self) -> None:
        """Load the model (and warm it up); returns when it is ready to generate."""
        ...

    async def stop(self) -> None:
        """Release the model; idempotent."""
        ...

    async def generate(
        self, shape: ShapeKey, requests: Sequence[GenerationRequest]
    ) -> GeneratedBatch:
        """Generate one video per request, all of ``shape``.

        Each video depends only on its own request (per-event seeds), not on the rest of the
        batch. Raises :class:`~streamproc.errors.GenerationError` when the call fails.
        """
        ...


@runtime_checkable
class ReportsStartup(Protocol):
    """A generator that can say how its start went (e.g. whether compiled graphs came from a
    persistent cache); the readiness probe's ``model`` check shows it."""

    @property
    def startup_detail(self) -> str:
        """One line, read once the generator has started."""
        ...


@runtime_checkable
class Supervised(Protocol):
    """A generator with parts that can die on their own (the ranks of a context-parallel
    worker); the processor watches them as one of its supervised tasks."""

    async def watch(self) -> None:
        """Returns never while the generator is whole; raises
        :class:`~streamproc.errors.GeneratorLost` saying what died."""
        ...


@runtime_checkable
class ReportsBatchSizes(Protocol):
    """A generator whose batch sizes were chosen from measured throughput at warm-up."""

    @property
    def chosen_batch_sizes(self) -> dict[str, int]:
        """Batch size per shape label (``832x480x17/cfg``); empty when no policy chose."""
        ...

    @property
    def batch_throughput(self) -> dict[str, dict[int, float]]:
        """Videos per second by batch size, per shape label, behind the choice."""
        ...
