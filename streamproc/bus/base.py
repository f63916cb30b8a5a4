"""The transport seam: where prompt records come from and where answers go.

A :class:`Source` yields :class:`Record` s and later receives commits of the positions up to
which every record is finished. A :class:`Sink` makes results and dead letters durable. The
processor never commits a position before the sink has acknowledged everything below it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streamproc.errors import ConfigError
from streamproc.events import DeadLetter, VideoResult
from streamproc.resource import Resource


@dataclass(frozen=True, order=True)
class Partition:
    """A topic partition (the local transport uses the file name and partition 0)."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


@dataclass(frozen=True)
class Record:
    """One raw input record, exactly as read."""

    value: bytes
    partition: Partition
    offset: int
    key: bytes | None = None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default=())
    #: Set by a source that had to cut an over-long record: ``value`` holds its first
    #: ``cut_at`` bytes only (the record dead-letters as ``malformed``). None: read whole.
    cut_at: int | None = None


class PartitionListener(Protocol):
    """Told by a source when partitions come and go (consumer-group rebalances)."""

    async def partitions_revoked(
        self, partitions: Sequence[Partition], *, grace_s: float | None = None
    ) -> None:
        """Called before ``partitions`` are taken away; returns once their work is settled.

        ``grace_s`` bounds how long unfinished events may run before they are abandoned (the
        group waits for this call); None leaves it to the listener.
        """

    async def partitions_assigned(self, partitions: Sequence[Partition]) -> None:
        """Called after ``partitions`` were given to this worker."""


class Source(Resource, Protocol):
    """Yields prompt records; takes commits of finished positions.

    Implementations subclass it (with :class:`~streamproc.resource.AsyncResource`) to inherit
    the no-op defaults below; :meth:`records` and :meth:`commit` they must write."""

    def records(self) -> AsyncIterator[Record]:
        """Yield records until the input ends or :meth:`close_input` is called.

        While paused, yields nothing but keeps the connection alive (a consumer keeps polling
        so its group membership survives long GPU work).
        """
        ...

    async def commit(self, positions: Mapping[Partition, int]) -> None:
        """Record that every offset below ``positions[p]`` of partition ``p`` is finished.

        Raising :class:`~streamproc.errors.TransportError` means nothing was committed; the
        processor tries again with the same or later positions.
        """
        ...

    def finished(self, record: Record) -> None:
        """Called as soon as ``record``'s outcome is durable (its result or dead letter was
        acknowledged by the sink), before any :meth:`commit` covering it. Sources that keep
        their own progress (a replay's checkpoint) record it here; must not block."""
        return None

    def pause(self) -> None:
        """Stop handing out records (back-pressure); the source keeps its session alive."""
        return None

    def resume(self) -> None:
        """Hand out records again after :meth:`pause`."""
        return None

    def close_input(self) -> None:
        """Stop reading new input; :meth:`records` ends soon after (graceful shutdown)."""
        return None

    def set_listener(self, listener: PartitionListener) -> None:
        """Register the processor for rebalance callbacks (sources without groups ignore it)."""
        return None

    @property
    def input_size(self) -> int | None:
        """How many records the input holds, when known up front (for progress bars)."""
        return None


class Sink(Resource, Protocol):
    """Makes results and dead letters durable.

    Implementations subclass it (with :class:`~streamproc.resource.AsyncResource`);
    :meth:`publish` and :meth:`dead_letter` they must write."""

    @property
    def destination(self) -> str:
        """Where results go, as the result ledger records it (a file path, a topic)."""
        return type(self).__name__

    async def publish(
        self,
        result: VideoResult,
        key: bytes | None,
        *,
        input_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Publish ``result``; returns only once it is durable (acked by the broker).

        ``key`` and ``input_headers`` are those of the input record (a transport passes trace
        context on). Raising :class:`~streamproc.errors.TransportError` means it may not be
        durable; the processor retries (results are idempotent on ``event_id``).
        """
        ...

    async def dead_letter(
        self,
        letter: DeadLetter,
        key: bytes | None,
        *,
        input_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Publish ``letter`` to the dead letters; returns once durable, like :meth:`publish`."""
        ...

    async def forward(self, record: Record, topic: str) -> None:
        """Hand ``record`` as it arrived (key, value, headers) to ``topic``, where other
        workers answer it; returns once durable, like :meth:`publish`. Transports that
        cannot forward raise ConfigError (settings refuse routing without Kafka)."""
        raise ConfigError(f"{type(self).__name__} cannot forward records to {topic!r}")
