"""The generator seam: turns one batch of same-shape requests into frames.

Implementations keep their model resident between calls and never run it on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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


class BatchCancelled(Exception):
    """Raised at a step boundary when every video of the batch was cancelled: the call stops."""


class StepControl:
    """Between the event loop and the GPU thread for one batch: which rows are cancelled, and
    progress reports at denoising step boundaries.

    Invariants: a cancelled row keeps riding in the batch until the call ends (removing it
    would change the batch, and so the other rows' arithmetic); it is not decoded. When every
    row is cancelled, :meth:`step` raises :class:`BatchCancelled` at the next step boundary.
    ``on_step(k, n)`` is called on the GPU thread after step k of n, at most once per
    ``interval_s`` besides the first and the last step; it must not block (hand over to the
    event loop with ``call_soon_threadsafe``) and an error in it is swallowed.
    """

    def __init__(
        self,
        size: int,
        *,
        on_step: Callable[[int, int], None] | None = None,
        interval_s: float = 0.0,
    ) -> None:
        self.size = size
        self.cancelled: set[int] = set()
        self._on_step = on_step
        self._interval = interval_s
        self._last = -float("inf")
        #: Steps finished so far (read by tests and progress).
        self.steps_done = 0
        #: Whether a fully cancelled batch may stop before its last step. A context-parallel
        #: generator turns it off: every rank must run the same steps (a rank that stopped
        #: alone would leave the others waiting in a collective); its decode is still skipped.
        self.can_stop = True

    def cancel(self, row: int) -> None:
        """Withdraw row ``row``: it is not decoded; the call stops once all rows are."""
        self.cancelled.add(row)

    @property
    def all_cancelled(self) -> bool:
        """Every row of the batch is cancelled."""
        return len(self.cancelled) >= self.size

    def step(self, done: int, total: int) -> None:
        """Called by the sampler after each step (GPU thread)."""
        self.steps_done = done
        if self.can_stop and self.all_cancelled and done < total:
            raise BatchCancelled
        if self._on_step is None:
            return
        now = time.monotonic()
        if done in (1, total) or now - self._last >= self._interval:
            self._last = now
            try:
                self._on_step(done, total)
            except Exception:  # outcome: none needed; progress is best effort, the batch goes on
                self._on_step = None

    def skip(self, row: int) -> bool:
        """Whether row ``row`` needs no output (cancelled)."""
        return row in self.cancelled


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
        self,
        shape: ShapeKey,
        requests: Sequence[GenerationRequest],
        control: StepControl | None = None,
    ) -> GeneratedBatch:
        """Generate one video per request, all of ``shape``.

        Each video depends only on its own request (per-event seeds), not on the rest of the
        batch. Raises :class:`~streamproc.errors.GenerationError` when the call fails and
        :class:`BatchCancelled` when ``control`` cancelled every row; a row ``control``
        cancelled may come back as an empty array. A generator without step boundaries may
        ignore ``control``.
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
