"""The control plane as the processor sees it: one object built from the settings.

It answers the questions the data flow asks at its checkpoints — which lane, is this event
cancelled, expired, over its tenant's quota — and sends status events. Every method the data
path calls is synchronous and cannot block: status emission only queues
(:class:`~streamproc.control.status.StatusPublisher`), cancels are looked up in memory.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from streamproc.bus.base import Record
from streamproc.control.cancels import CancelRegistry
from streamproc.control.quotas import TenantQuotas
from streamproc.control.status import JsonlStatusSink, StatusPublisher, StatusSink
from streamproc.errors import EventCancelled, EventRefused
from streamproc.events import DeadLetterReason, PromptEvent, StatusEvent, StatusState
from streamproc.metrics import Metrics
from streamproc.resource import AsyncResource, Resource
from streamproc.settings import Settings


class ControlPlane(AsyncResource):
    """Lanes, cancels, expiry, tenant quotas and status events for one worker.

    ``status_sink`` None: no status events; ``reader`` None: no control input (cancels can
    still be applied to :attr:`cancels` directly).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        status_sink: StatusSink | None = None,
        reader: Resource | None = None,
        replay: bool = False,
        cancels: CancelRegistry | None = None,
    ) -> None:
        self._settings = settings
        self._metrics = metrics if metrics is not None else Metrics()
        self.cancels = (
            cancels
            if cancels is not None
            else CancelRegistry(
                memory_s=settings.control.cancel_memory_s,
                max_entries=settings.control.cancel_memory_max,
            )
        )
        self.quotas = TenantQuotas(settings.tenants)
        self.status: StatusPublisher | None = (
            StatusPublisher(
                status_sink, buffer_size=settings.status.buffer_size, metrics=self._metrics
            )
            if status_sink is not None
            else None
        )
        self._reader = reader
        self._replay = replay
        self._stack: AsyncExitStack | None = None
        self._worker = settings.worker_id

    @property
    def metrics(self) -> Metrics:
        """The metrics this plane counts into."""
        return self._metrics

    async def start(self) -> None:
        if self._stack is not None:
            return
        stack = AsyncExitStack()
        try:
            if self.status is not None:
                await stack.enter_async_context(self.status)
            if self._reader is not None:
                await stack.enter_async_context(self._reader)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # -- lanes, time, checkpoints -----------------------------------------------------------

    def lane(self, event: PromptEvent) -> int:
        """The priority lane of ``event``: its priority, or ``lanes.replay_priority`` in a
        replay."""
        replay_lane = self._settings.lanes.replay_priority
        if self._replay and replay_lane >= 0:
            return replay_lane
        return event.priority

    def weight(self, tenant: str | None) -> float:
        """``tenant``'s share of a lane."""
        return self._settings.tenants.weight(tenant)

    @staticmethod
    def event_time(event: PromptEvent, record: Record, received: float) -> float:
        """When the event was made (Unix time): ``created_at``, else the record's timestamp,
        else when this worker read it."""
        if event.created_at is not None:
            return event.created_at.timestamp()
        if record.timestamp_ms:
            return record.timestamp_ms / 1000.0
        return received

    def check_cancelled(self, event: PromptEvent, event_time: float, stage: str) -> None:
        """Raise :class:`EventCancelled` when a remembered cancel covers ``event``."""
        cancel = self.cancels.match(event.event_id, event.tenant, event_time)
        if cancel is not None:
            self._metrics.cancellations.labels(stage).inc()
            raise EventCancelled(cancel.reason, stage)

    def check_expired(self, event_time: float, stage: str, now: float | None = None) -> None:
        """Raise :class:`EventRefused` (``expired``) when the event is older than
        ``control.max_event_age_s``."""
        limit = self._settings.control.max_event_age_s
        if not limit:
            return
        age = (now if now is not None else time.time()) - event_time
        if age > limit:
            self._metrics.expirations.labels(stage).inc()
            raise EventRefused(
                DeadLetterReason.EXPIRED,
                f"the event is {age:.1f} s old at {stage}, older than control.max_event_age_s "
                f"({limit:g} s)",
            )

    def admit(self, event: PromptEvent, event_time: float) -> None:
        """The admission checkpoint, in order: cancelled, expired, over quota. On return the
        event holds one in-flight slot of its tenant (give it back with :meth:`release`)."""
        self.check_cancelled(event, event_time, "admission")
        self.check_expired(event_time, "admission")
        try:
            self.quotas.acquire(event.tenant)
        except EventRefused as exc:
            self._metrics.quota_rejections.labels(exc.detail.partition(":")[0]).inc()
            raise

    def release(self, tenant: str | None) -> None:
        """An event that passed :meth:`admit` finished (whatever its outcome)."""
        self.quotas.release(tenant)

    # -- status ----------------------------------------------------------------------------

    def emit(self, event_id: str, state: StatusState, **fields: Any) -> None:
        """Queue a status event (never blocks, never raises; dropped when off or full)."""
        status = self.status
        if status is None:
            return
        try:
            status.emit(
                StatusEvent(
                    event_id=event_id,
                    state=state,
                    at=datetime.now(UTC),
                    worker_id=self._worker,
                    **fields,
                )
            )
        except Exception:  # a status event that cannot be built is a dropped one
            self._metrics.status_dropped.inc()


def build_control_plane(
    settings: Settings, metrics: Metrics, *, replay: bool = False
) -> ControlPlane:
    """The control plane the settings ask for: status to the topic or file, cancels from the
    control topic or file."""
    cancels = CancelRegistry(
        memory_s=settings.control.cancel_memory_s,
        max_entries=settings.control.cancel_memory_max,
    )
    sink: StatusSink | None = None
    reader: Resource | None = None
    if settings.transport == "kafka":
        from streamproc.control.readers import KafkaControlReader, KafkaStatusSink

        if settings.status.enabled:
            sink = KafkaStatusSink(settings.kafka, client_id=settings.worker_id)
        if settings.control.enabled:
            reader = KafkaControlReader(
                settings.kafka,
                cancels,
                metrics,
                client_id=settings.worker_id,
                memory_s=settings.control.cancel_memory_s,
            )
    else:
        from streamproc.control.readers import JsonlControlReader

        status_path = settings.local_status_path
        if settings.status.enabled and status_path is not None:
            sink = JsonlStatusSink(status_path)
        if settings.control.enabled and settings.local.control is not None:
            reader = JsonlControlReader(settings.local.control, cancels, metrics)
    return ControlPlane(
        settings, metrics=metrics, status_sink=sink, reader=reader, replay=replay, cancels=cancels
    )
