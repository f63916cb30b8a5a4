"""Commit: move each partition's committed position up to its lowest unfinished offset.

Failure policy: a transient commit failure is logged and counted, and the same or a later
position is committed at the next interval (nothing is lost: the events are redelivered at
worst); a source that refuses commits for good (:class:`~streamproc.errors.ServiceRefused`)
faults the worker. A commit never passes an unfinished record
(:class:`~streamproc.bus.offsets.OffsetTracker`), and positions of partitions this worker no
longer holds are forgotten, never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection

import structlog

from streamproc.bus.base import Partition, Source
from streamproc.bus.offsets import OffsetTracker
from streamproc.errors import PermanentError, ServiceRefused, TransientError
from streamproc.events import safe_text
from streamproc.metrics import Metrics

log = structlog.get_logger(__name__)


class Commit:
    """The commit stage: the per-partition watermark and the source's commits."""

    def __init__(
        self,
        source: Source,
        *,
        interval_s: float,
        metrics: Metrics,
        fault: Callable[[PermanentError], None],
    ) -> None:
        """``fault`` is called when the source refuses commits for good."""
        self._source = source
        self._interval_s = interval_s
        self._metrics = metrics
        self._fault = fault
        self.tracker = OffsetTracker()

    async def loop(self) -> None:
        """Commit finished positions every interval (a supervised task)."""
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.now()
            except ServiceRefused as exc:
                self._fault(exc)

    async def last(self) -> None:
        """The last commit of a run; a refusal is logged (the events are delivered again)."""
        try:
            await self.now()
        except PermanentError as exc:
            log.error("final_commit_refused", error=safe_text(str(exc), 300))

    async def revoked(self, partitions: Collection[Partition]) -> None:
        """Commit what is finished of ``partitions`` (their last chance: the member still
        holds them), then forget them."""
        try:
            await self.now(only=partitions)
        except PermanentError as exc:
            log.error("revoke_commit_refused", error=safe_text(str(exc), 300))
        self.tracker.forget(set(partitions))
        for partition in partitions:
            with contextlib.suppress(KeyError):
                self._metrics.committed_offset.remove(partition.topic, str(partition.partition))

    async def now(self, only: Collection[Partition] | None = None) -> None:
        """Commit the watermark of every partition (or of ``only`` those) once."""
        positions = self.tracker.committable()
        if only is not None:
            positions = {p: o for p, o in positions.items() if p in only}
        if not positions:
            return
        try:
            await self._source.commit(positions)
        except TransientError as exc:
            self._metrics.commits.labels("failed").inc()
            log.warning("commit_failed", error=str(exc)[:300])
            return
        self.tracker.mark_committed(positions)
        self._metrics.commits.labels("ok").inc()
        for partition, position in positions.items():
            self._metrics.committed_offset.labels(partition.topic, str(partition.partition)).set(
                position
            )
        log.debug("committed", positions={str(p): o for p, o in positions.items()})
