"""Micro-batching of cache misses into pipeline calls.

One diffusers call generates one shape (size, frames, steps, guidance, model), so misses are
grouped by :class:`ShapeKey`. A group becomes a batch when it holds ``max_batch_size`` events,
when its oldest event has waited ``window``, when an event's deadline is within
``deadline_slack`` or when the batcher is closing (flush). Among ready groups the one with the
highest priority goes first, then the oldest; within a group higher priority, then earlier
deadline, then arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, order=True)
class ShapeKey:
    """What one pipeline call must share."""

    model_id: str
    width: int
    height: int
    num_frames: int
    num_inference_steps: int
    guidance_scale: float
    #: Step-cache hook of the request class (label, e.g. 'first-block:0.1'); None: every step.
    step_cache: str | None = None

    def __str__(self) -> str:
        text = (
            f"{self.width}x{self.height}x{self.num_frames}f/{self.num_inference_steps}s"
            f"/g{self.guidance_scale:g}"
        )
        return f"{text}/{self.step_cache}" if self.step_cache else text


@dataclass(order=True)
class _Slot(Generic[T]):
    sort_key: tuple[int, float, int]
    arrived: float = field(compare=False)
    deadline: float | None = field(compare=False)
    item: T = field(compare=False)


@dataclass(frozen=True)
class Batch(Generic[T]):
    """Items of one shape to generate in one call."""

    shape: ShapeKey
    items: list[T]


class _Group(Generic[T]):
    def __init__(self) -> None:
        self.heap: list[_Slot[T]] = []

    def oldest(self) -> float:
        return min(s.arrived for s in self.heap)

    def earliest_deadline(self) -> float | None:
        deadlines = [s.deadline for s in self.heap if s.deadline is not None]
        return min(deadlines) if deadlines else None

    def top_priority(self) -> int:
        return -self.heap[0].sort_key[0]


class MicroBatcher(Generic[T]):
    """Collects items per shape and hands out batches; bounded, so submitters wait when full."""

    def __init__(
        self,
        *,
        window_s: float,
        max_batch_size: int | Callable[[ShapeKey], int],
        capacity: int = 1024,
        deadline_slack_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window_s
        self._max = max_batch_size
        self._capacity = capacity
        self._slack = deadline_slack_s
        self._clock = clock
        self._groups: dict[ShapeKey, _Group[T]] = {}
        self._count = 0
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closed = False
        self._flushing = False

    def __len__(self) -> int:
        return self._count

    def max_size(self, shape: ShapeKey) -> int:
        """The largest batch allowed for ``shape``."""
        size = self._max(shape) if callable(self._max) else self._max
        return max(1, size)

    async def submit(
        self, item: T, shape: ShapeKey, *, priority: int = 0, deadline: float | None = None
    ) -> None:
        """Queue ``item``; waits while the batcher holds ``capacity`` items.

        ``deadline`` is on the batcher's clock (``time.monotonic`` by default).
        """
        while self._count >= self._capacity:
            self._space.clear()
            await self._space.wait()
        slot = _Slot(
            sort_key=(-priority, deadline if deadline is not None else math.inf, next(self._seq)),
            arrived=self._clock(),
            deadline=deadline,
            item=item,
        )
        heapq.heappush(self._groups.setdefault(shape, _Group()).heap, slot)
        self._count += 1
        self._changed.set()

    def flush(self) -> None:
        """From now on every item is ready at once (no window); :meth:`next_batch` still waits
        for items submitted later (events that were looking up the cache)."""
        self._flushing = True
        self._changed.set()

    def close(self) -> None:
        """Flush: every queued item becomes ready now; :meth:`next_batch` returns None at the end."""
        self._closed = True
        self._changed.set()

    def _ready_at(self, shape: ShapeKey, group: _Group[T]) -> float:
        if self._closed or self._flushing or len(group.heap) >= self.max_size(shape):
            return -math.inf
        ready = group.oldest() + self._window
        deadline = group.earliest_deadline()
        if deadline is not None:
            ready = min(ready, deadline - self._slack)
        return ready

    def _take(self, shape: ShapeKey) -> Batch[T]:
        group = self._groups[shape]
        size = min(self.max_size(shape), len(group.heap))
        items = [heapq.heappop(group.heap).item for _ in range(size)]
        if not group.heap:
            del self._groups[shape]
        self._count -= size
        self._space.set()
        return Batch(shape=shape, items=items)

    def poll(self) -> Batch[T] | None:
        """A ready batch if there is one now, without waiting."""
        now = self._clock()
        best: tuple[int, float] | None = None
        best_shape: ShapeKey | None = None
        for shape, group in self._groups.items():
            if self._ready_at(shape, group) <= now:
                rank = (-group.top_priority(), group.oldest())
                if best is None or rank < best:
                    best, best_shape = rank, shape
        return self._take(best_shape) if best_shape is not None else None

    async def next_batch(self) -> Batch[T] | None:
        """Wait for the next ready batch; None once closed and empty."""
        while True:
            batch = self.poll()
            if batch is not None:
                return batch
            if self._closed and not self._groups:
                return None
            self._changed.clear()
            wait = None
            if self._groups:
                now = self._clock()
                wait = max(0.0, min(self._ready_at(s, g) for s, g in self._groups.items()) - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)

    def remove(self, predicate: Callable[[T], bool]) -> list[T]:
        """Take out every queued item matching ``predicate`` (e.g. of a revoked partition)."""
        removed: list[T] = []
        for shape in list(self._groups):
            group = self._groups[shape]
            keep = [s for s in group.heap if not predicate(s.item)]
            removed.extend(s.item for s in group.heap if predicate(s.item))
            if keep:
                heapq.heapify(keep)
                group.heap = keep
            else:
                del self._groups[shape]
        self._count -= len(removed)
        if removed:
            self._space.set()
            self._changed.set()
        return removed
