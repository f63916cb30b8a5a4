"""The latest status event of each event id, followed live from the status topic.

Every replica reads the whole status topic (no consumer group, every partition), starting
``lookback_s`` before it started, and keeps the latest :class:`~streamproc.events.StatusEvent`
of each event id (at most ``max_entries``, the least recently updated forgotten first).
Waiters (the server-sent event streams) are woken on every new status of their id.

Status events are best effort (docs/control.md): this view is a cache, never the truth of an
outcome. The API answers final states from the result ledger; a status missed here only
makes progress less precise. When the topic is missing or the brokers do not answer, the
reader retries with backoff and :meth:`readiness` says so, but the gateway stays up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from streamproc.bus.kafka import client_options
from streamproc.events import FINAL_STATES, StatusEvent
from streamproc.resource import AsyncResource
from streamproc.settings import KafkaSettings

log = structlog.get_logger(__name__)


class StatusView(AsyncResource):
    """Latest status per event id, kept current by one background reader task."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        client_id: str,
        lookback_s: float,
        max_entries: int = 100_000,
        on_final: Callable[[], None] = lambda: None,
    ) -> None:
        self._settings = settings
        self.topic = settings.status_topic
        self._client_id = client_id
        self._lookback_s = lookback_s
        self._max = max_entries
        self._on_final = on_final
        self._latest: OrderedDict[str, StatusEvent] = OrderedDict()
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._reading = False
        self._problem = "not started"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gateway-status-reader")

    @property
    def task(self) -> asyncio.Task[None]:
        """The reader task (started); it ends only by an unexpected error or by stop."""
        if self._task is None:
            raise RuntimeError("the status view is not started")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():  # a finished one was seen by the supervisor
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def latest(self, event_id: str) -> StatusEvent | None:
        """The newest status seen for ``event_id``."""
        return self._latest.get(event_id)

    async def wait(self, event_id: str, timeout_s: float) -> None:
        """Return when a new status of ``event_id`` arrives, or after ``timeout_s``."""
        woken = asyncio.Event()
        waiters = self._waiters.setdefault(event_id, set())
        waiters.add(woken)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout_s)
        finally:
            waiters.discard(woken)
            if not waiters:
                self._waiters.pop(event_id, None)

    def note(self, status: StatusEvent) -> None:
        """Keep ``status`` as the latest of its event (unless an older one) and wake waiters."""
        held = self._latest.get(status.event_id)
        if held is not None and held.at > status.at:
            return  # a late copy of an earlier state
        self._latest[status.event_id] = status
        self._latest.move_to_end(status.event_id)
        while len(self._latest) > self._max:
            self._latest.popitem(last=False)
        for woken in self._waiters.get(status.event_id, ()):
            woken.set()
        if status.state in FINAL_STATES:
            self._on_final()

    async def readiness(self) -> tuple[bool, str]:
        """Whether the status topic is being read (informational: best effort)."""
        return (True, self.topic) if self._reading else (False, self._problem)

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, TimeoutError, RuntimeError) as exc:
                self._reading = False
                self._problem = f"status topic {self.topic}: {exc!r}"
                log.warning("gateway_status_reader_retry", topic=self.topic, error=repr(exc))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(self._settings, self._client_id),
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await consumer.start()
        try:
            partitions = await _partitions(consumer, self.topic)
            consumer.assign(partitions)
            since_ms = int((time.time() - self._lookback_s) * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
            for tp in partitions:
                at = found.get(tp)
                if at is not None:
                    consumer.seek(tp, at.offset)
                else:
                    await consumer.seek_to_end(tp)
            self._reading = True
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                for records in batches.values():
                    for record in records:
                        self._take(record.value)
        finally:
            self._reading = False
            await consumer.stop()

    def _take(self, value: bytes | None) -> None:
        if not value:
            return
        try:
            status = StatusEvent.model_validate_json(value)
        except ValidationError:
            return  # not ours to judge: the status topic is best effort
        self.note(status)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer.topics()  # refresh metadata once
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise RuntimeError(f"kafka topic {topic} does not exist (yet)")
    return [TopicPartition(topic, p) for p in sorted(parts)]
