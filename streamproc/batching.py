"""Micro-batching of cache misses into pipeline calls.

One diffusers call generates one shape (size, frames, steps, guidance, model), so misses are
grouped by :class:`ShapeKey`. A group becomes a batch when it holds ``max_batch_size`` events,
when its oldest event has waited ``window``, when an event's deadline is within
``deadline_slack`` or when the batcher is closing (flush).

Which ready group goes first, and which of its events fill the batch, is decided by one order
(docs/control.md):

1. **Lanes.** An event's lane is its priority (0-9); a higher lane is served first.
2. **Weighted fair queuing across tenants inside a lane** (start-time fair queuing): an event
   gets the tag ``S = max(V, F_tenant)`` where ``V`` is the lane's virtual time (the tag of
   the last event taken) and ``F_tenant`` the tenant's previous tag plus ``1 / weight``.
   Events are taken in tag order, so a tenant with a backlog of 1,000 does not delay a
   newcomer, whose tag is ``V``: it goes into the next batch of its shape.
3. **Within one tenant** (same lane and shape), earlier deadline first, then arrival.
4. **Starvation bound.** When the event at the head of a lane has been there for
   ``starvation_s`` while higher lanes were served, its group goes next and it is taken first.

Invariants: every submitted item is handed out exactly once (by a batch or :meth:`remove`);
:meth:`poll` never waits; the queue holds at most ``capacity`` items.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@dataclass(eq=False)
class _Slot(Generic[T]):
    arrived: float
    deadline: float | None
    seq: int
    lane: int
    tenant: str | None
    item: T

    def edf_key(self) -> tuple[float, int]:
        return (self.deadline if self.deadline is not None else math.inf, self.seq)


@dataclass(frozen=True)
class Batch(Generic[T]):
    """Items of one shape to generate in one call."""

    shape: ShapeKey
    items: list[T]


class _Tenant(Generic[T]):
    """One tenant's events of one lane and shape: items in deadline order, tags ascending."""

    def __init__(self) -> None:
        self.items: list[tuple[tuple[float, int], _Slot[T]]] = []
        self.tags: list[tuple[float, int]] = []

    def head_tag(self) -> tuple[float, int]:
        return self.tags[0]

    def pop(self) -> tuple[_Slot[T], tuple[float, int]]:
        _, slot = heapq.heappop(self.items)
        return slot, heapq.heappop(self.tags)


class _Group(Generic[T]):
    """The queued events of one shape, by (lane, tenant)."""

    def __init__(self) -> None:
        self.subs: dict[tuple[int, str | None], _Tenant[T]] = {}
        self.count = 0

    def slots(self) -> Iterator[_Slot[T]]:
        for sub in self.subs.values():
            for _, slot in sub.items:
                yield slot

    def oldest(self) -> float:
        return min(s.arrived for s in self.slots())

    def earliest_deadline(self) -> float | None:
        deadlines = [s.deadline for s in self.slots() if s.deadline is not None]
        return min(deadlines) if deadlines else None

    def best(self) -> tuple[int, float, int, tuple[int, str | None]]:
        """(-lane, tag, tag seq, sub key) of the event this group would hand out first."""
        return min(
            (-lane, *sub.head_tag(), (lane, tenant)) for (lane, tenant), sub in self.subs.items()
        )


class MicroBatcher(Generic[T]):
    """Collects items per shape and hands out batches; bounded, so submitters wait when full."""

    def __init__(
        self,
        *,
        window_s: float,
        max_batch_size: int | Callable[[ShapeKey], int],
        capacity: int = 1024,
        deadline_slack_s: float = 1.0,
        starvation_s: float = math.inf,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window_s
        self._max = max_batch_size
        self._capacity = capacity
        self._slack = deadline_slack_s
        self._starvation = starvation_s
        self._clock = clock
        self._groups: dict[ShapeKey, _Group[T]] = {}
        self._count = 0
        self._seq = itertools.count()
        self._changed = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._closed = False
        self._flushing = False
        # Weighted fair queuing, per lane: virtual time, each tenant's next start tag.
        self._virtual: dict[int, float] = {}
        self._finish: dict[int, dict[str | None, float]] = {}
        self._lane_count: dict[int, int] = {}
        # The head of each lane: (seq of its event, since when it is the head).
        self._heads: dict[int, tuple[int, float]] = {}

    def __len__(self) -> int:
        return self._count

    def max_size(self, shape: ShapeKey) -> int:
        """The largest batch allowed for ``shape``."""
        size = self._max(shape) if callable(self._max) else self._max
        return max(1, size)

    async def submit(
        self,
        item: T,
        shape: ShapeKey,
        *,
        priority: int = 0,
        deadline: float | None = None,
        tenant: str | None = None,
        weight: float = 1.0,
    ) -> int:
        """Queue ``item`` in lane ``priority`` for ``tenant`` (whose share of the lane is
        ``weight``); waits while the batcher holds ``capacity`` items. Returns its queue
        position when it joined: 1 + the events that would be handed out before it.

        ``deadline`` is on the batcher's clock (``time.monotonic`` by default).
        """
        while self._count >= self._capacity:
            self._space.clear()
            await self._space.wait()
        lane = priority
        finish = self._finish.setdefault(lane, {})
        start = max(self._virtual.get(lane, 0.0), finish.get(tenant, 0.0))
        finish[tenant] = start + 1.0 / weight
        seq = next(self._seq)
        slot = _Slot(self._clock(), deadline, seq, lane, tenant, item)
        position = 1 + self._ahead(lane, (start, seq))
        group = self._groups.setdefault(shape, _Group())
        sub = group.subs.setdefault((lane, tenant), _Tenant())
        heapq.heappush(sub.items, (slot.edf_key(), slot))
        heapq.heappush(sub.tags, (start, seq))
        group.count += 1
        self._lane_count[lane] = self._lane_count.get(lane, 0) + 1
        self._count += 1
        self._changed.set()
        return position

    def _ahead(self, lane: int, tag: tuple[float, int]) -> int:
        """Events queued now that go before one of ``lane`` tagged ``tag``."""
        ahead = sum(n for other, n in self._lane_count.items() if other > lane)
        for group in self._groups.values():
            for (sub_lane, _), sub in group.subs.items():
                if sub_lane == lane:
                    ahead += sum(1 for t in sub.tags if t < tag)
        return ahead

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
        if self._closed or self._flushing or group.count >= self.max_size(shape):
            return -math.inf
        ready = group.oldest() + self._window
        deadline = group.earliest_deadline()
        if deadline is not None:
            ready = min(ready, deadline - self._slack)
        return ready

    def _take(self, shape: ShapeKey, first: tuple[int, str | None] | None = None) -> Batch[T]:
        """A batch of ``shape``: the event of sub ``first`` (a starving lane head) first, then
        the group's events in lane, tag order."""
        group = self._groups[shape]
        size = min(self.max_size(shape), group.count)
        items: list[T] = []
        for _ in range(size):
            key = first if first is not None else group.best()[3]
            first = None
            sub = group.subs[key]
            slot, (tag, _) = sub.pop()
            if not sub.items:
                del group.subs[key]
            self._served(slot.lane, tag)
            items.append(slot.item)
        group.count -= size
        if not group.subs:
            del self._groups[shape]
        self._count -= size
        self._space.set()
        return Batch(shape=shape, items=items)

    def _served(self, lane: int, tag: float) -> None:
        self._virtual[lane] = max(self._virtual.get(lane, 0.0), tag)
        left = self._lane_count[lane] - 1
        if left:
            self._lane_count[lane] = left
            return
        # An idle lane starts afresh: nobody carries credit or debt into the next backlog.
        del self._lane_count[lane]
        self._finish.pop(lane, None)
        self._virtual.pop(lane, None)
        self._heads.pop(lane, None)

    def _starving(self, now: float) -> tuple[ShapeKey, tuple[int, str | None]] | None:
        """The group and sub of the longest-waiting lane head past ``starvation_s``, if any
        (the top lane never starves: it is being served)."""
        if len(self._lane_count) < 2 or math.isinf(self._starvation):
            return None
        heads: dict[int, tuple[tuple[float, int], ShapeKey, tuple[int, str | None]]] = {}
        for shape, group in self._groups.items():
            for (lane, tenant), sub in group.subs.items():
                tag = sub.head_tag()
                if lane not in heads or tag < heads[lane][0]:
                    heads[lane] = (tag, shape, (lane, tenant))
        top = max(heads)
        worst: tuple[float, ShapeKey, tuple[int, str | None]] | None = None
        for lane, (tag, shape, key) in heads.items():
            seq, since = self._heads.get(lane, (-1, now))
            if seq != tag[1]:
                seq, since = tag[1], now
                self._heads[lane] = (seq, since)
            starved = lane != top and now - since >= self._starvation
            if starved and (worst is None or since < worst[0]):
                worst = (since, shape, key)
        return (worst[1], worst[2]) if worst is not None else None

    def poll(self) -> Batch[T] | None:
        """A ready batch if there is one now, without waiting."""
        now = self._clock()
        starving = self._starving(now)
        if starving is not None:
            self._heads.pop(starving[1][0], None)
            return self._take(*starving)
        best: tuple[int, float, int] | None = None
        best_shape: ShapeKey | None = None
        for shape, group in self._groups.items():
            if self._ready_at(shape, group) <= now:
                rank = group.best()[:3]
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
                if len(self._lane_count) > 1 and not math.isinf(self._starvation):
                    wait = min(wait, self._starvation)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)

    def remove(self, predicate: Callable[[T], bool]) -> list[T]:
        """Take out every queued item matching ``predicate`` (e.g. of a revoked partition)."""
        removed: list[T] = []
        for shape in list(self._groups):
            group = self._groups[shape]
            for key in list(group.subs):
                sub = group.subs[key]
                gone = [s for _, s in sub.items if predicate(s.item)]
                if not gone:
                    continue
                removed.extend(s.item for s in gone)
                # The tenant keeps its earliest tags; its next event starts after the last kept.
                kept_tags = sorted(sub.tags)[: len(sub.items) - len(gone)]
                sub.items = [(k, s) for k, s in sub.items if not predicate(s.item)]
                heapq.heapify(sub.items)
                sub.tags = kept_tags
                group.count -= len(gone)
                lane, tenant = key
                for _ in gone:
                    self._served(lane, -math.inf)
                finish = self._finish.get(lane)
                if finish is not None:
                    if kept_tags:
                        finish[tenant] = min(finish.get(tenant, 0.0), kept_tags[-1][0] + 1e-9)
                    else:
                        finish.pop(tenant, None)
                if not sub.items:
                    del group.subs[key]
            if not group.subs:
                del self._groups[shape]
        self._count -= len(removed)
        if removed:
            self._space.set()
            self._changed.set()
        return removed
