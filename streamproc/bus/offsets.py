"""Which offsets may be committed, when events finish out of order.

Invariant (the delivery contract): for every partition, the committable position ``c`` is such
that every tracked offset ``< c`` is finished, and ``c`` never exceeds the lowest unfinished
offset. Micro-batches complete out of order, so finishing offset 7 before offset 5 must not
let a commit pass 5: after a crash, 5 (and, harmlessly, 6 and 7) is delivered again.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from streamproc.bus.base import Partition


@dataclass
class _PartitionState:
    pending: set[int] = field(default_factory=set)
    # Min-heap of pending offsets, lazily cleaned of finished ones.
    heap: list[int] = field(default_factory=list)
    next_offset: int | None = None  # one past the highest tracked offset


class OffsetTracker:
    """Per-partition contiguous watermark over tracked and finished offsets."""

    def __init__(self) -> None:
        self._parts: dict[Partition, _PartitionState] = {}
        self._committed: dict[Partition, int] = {}

    def track(self, partition: Partition, offset: int) -> None:
        """Note that ``offset`` was handed out and is not finished yet."""
        state = self._parts.setdefault(partition, _PartitionState())
        if offset in state.pending:
            return
        state.pending.add(offset)
        heapq.heappush(state.heap, offset)
        if state.next_offset is None or offset + 1 > state.next_offset:
            state.next_offset = offset + 1

    def finish(self, partition: Partition, offset: int) -> None:
        """Note that ``offset`` is finished (its outcome is durable)."""
        state = self._parts.get(partition)
        if state is not None:
            state.pending.discard(offset)

    def unfinished(self, partition: Partition | None = None) -> int:
        """How many tracked offsets are not finished (in one partition, or in all)."""
        if partition is not None:
            state = self._parts.get(partition)
            return len(state.pending) if state else 0
        return sum(len(s.pending) for s in self._parts.values())

    def position(self, partition: Partition) -> int | None:
        """The highest committable position of ``partition``, or None if nothing was tracked."""
        state = self._parts.get(partition)
        if state is None or state.next_offset is None:
            return None
        while state.heap and state.heap[0] not in state.pending:
            heapq.heappop(state.heap)
        return state.heap[0] if state.heap else state.next_offset

    def committable(self) -> dict[Partition, int]:
        """Positions that moved past what :meth:`mark_committed` last recorded."""
        out: dict[Partition, int] = {}
        for partition in self._parts:
            pos = self.position(partition)
            if pos is not None and pos > self._committed.get(partition, -1):
                out[partition] = pos
        return out

    def mark_committed(self, positions: Mapping[Partition, int]) -> None:
        """Record that ``positions`` were committed by the source."""
        for partition, pos in positions.items():
            if pos > self._committed.get(partition, -1):
                self._committed[partition] = pos

    def committed(self, partition: Partition) -> int | None:
        """The last position recorded by :meth:`mark_committed`."""
        return self._committed.get(partition)

    def forget(self, partitions: Iterable[Partition]) -> None:
        """Drop all state of ``partitions`` (they were revoked; another worker owns them)."""
        for partition in partitions:
            self._parts.pop(partition, None)
            self._committed.pop(partition, None)
