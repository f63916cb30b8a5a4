"""Where control events come from, and where status events go, on each transport.

Kafka: every worker reads every partition of ``kafka.control_topic`` without a consumer group
(a cancel may concern any worker's events), starting ``control.cancel_memory_s`` back so a
restarted worker still knows recent cancels; status events go to ``kafka.status_topic`` keyed
by ``event_id``. Local: ``local.control`` is a JSONL file read from its start and followed
while the worker runs; status events are appended to ``local.status``.

Both are best effort beside the data path: a missing topic is logged once and the feature is
off for the run (the worker still starts: the delivery contract does not depend on them); a
bad control record is logged and counted (``streamproc_control_events_total{result=
"invalid"}``), never dead-lettered (the dead letters are for prompt records). The reader
tasks never end on an error: they log it and retry after a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streamproc.bus.kafka import client_options, start_client
from streamproc.control.cancels import CancelRegistry
from streamproc.errors import InvalidEventError
from streamproc.events import SCHEMA_VERSION, StatusEvent, decode_control
from streamproc.metrics import Metrics
from streamproc.resource import AsyncResource
from streamproc.settings import KafkaSettings

log = structlog.get_logger(__name__)

STATUS_SCHEMA = f"status-event.v{SCHEMA_VERSION}".encode()
_RETRY_S = 1.0


def apply_control(
    raw: bytes, registry: CancelRegistry, metrics: Metrics, *, record_time: float | None
) -> None:
    """Decode one control record and apply it; a bad one is logged and counted."""
    try:
        event = decode_control(raw)
    except InvalidEventError as exc:
        metrics.control_events.labels("invalid").inc()
        log.warning("control_event_invalid", reason=exc.reason, detail=exc.detail[:300])
        return
    registry.apply(event, record_time=record_time)
    metrics.control_events.labels("applied").inc()
    log.info(
        "control_event_applied",
        action=event.action.value,
        target_event_id=event.event_id,
        target_tenant=event.tenant,
    )


class JsonlControlReader(AsyncResource):
    """Follows a JSONL file of control events (``local.control``) like ``tail -f``."""

    def __init__(
        self, path: str, registry: CancelRegistry, metrics: Metrics, *, poll_s: float = 0.1
    ) -> None:
        self._path = Path(path)
        self._registry = registry
        self._metrics = metrics
        self._poll = poll_s
        self._task: asyncio.Task[None] | None = None
        self._offset = 0
        self._partial = b""

    async def start(self) -> None:
        if self._task is not None:
            return
        self.read_available()  # cancels already in the file apply before the first event
        self._task = asyncio.create_task(self._follow(), name="streamproc-control-file")

    def read_available(self) -> int:
        """Apply the complete lines written since the last call; returns how many."""
        try:
            with open(self._path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("control_file_unreadable", path=str(self._path), error=exc.strerror)
            return 0
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # an unfinished last line waits for its newline
        count = 0
        for line in lines:
            if line.strip():
                apply_control(line, self._registry, self._metrics, record_time=time.time())
                count += 1
        return count

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            self.read_available()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class KafkaControlReader(AsyncResource):
    """Reads every partition of the control topic, from ``memory_s`` ago, without a group."""

    def __init__(
        self,
        settings: KafkaSettings,
        registry: CancelRegistry,
        metrics: Metrics,
        *,
        client_id: str,
        memory_s: float,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._client_id = client_id
        self._memory = memory_s
        # aiokafka is untyped; the calls used here are start, stop, topics,
        # partitions_for_topic, assign, offsets_for_times, seek, seek_to_end and getmany.
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._consumer is not None:
            return
        s = self._settings
        consumer: Any = AIOKafkaConsumer(
            **client_options(s, f"{self._client_id}-control"),
            group_id=None,
            enable_auto_commit=False,
        )
        await start_client(consumer, "control consumer", s, component="control")
        try:
            partitions = consumer.partitions_for_topic(s.control_topic)
            if not partitions:
                await consumer.topics()  # refresh metadata once before deciding
                partitions = consumer.partitions_for_topic(s.control_topic)
            if not partitions:
                log.warning(
                    "control_topic_missing",
                    topic=s.control_topic,
                    hint="create it (streamproc topics create) to accept cancels",
                )
                await consumer.stop()
                return
            tps = [TopicPartition(s.control_topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            since_ms = int((time.time() - self._memory) * 1000)
            found = await consumer.offsets_for_times(dict.fromkeys(tps, since_ms))
            for tp in tps:
                at = found.get(tp)
                if at is None:
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, at.offset)
            # Catch up before the first prompt is admitted: remembered cancels apply to it.
            await self._poll(consumer, timeout_ms=200)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._task = asyncio.create_task(self._loop(), name="streamproc-control-topic")
        log.info("control_reader_started", topic=s.control_topic, partitions=len(tps))

    async def _poll(self, consumer: Any, *, timeout_ms: int) -> None:
        batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=500)
        for messages in batches.values():
            for message in messages:
                if message.value is None:
                    continue
                stamp = message.timestamp / 1000.0 if message.timestamp else None
                apply_control(message.value, self._registry, self._metrics, record_time=stamp)

    async def _loop(self) -> None:
        while True:
            try:
                await self._poll(self._consumer, timeout_ms=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never ends: cancels matter, outages heal
                log.warning("control_read_failed", error=repr(exc)[:300])
                await asyncio.sleep(_RETRY_S)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaError):
                await consumer.stop()


class KafkaStatusSink(AsyncResource):
    """Sends status events to the status topic, keyed by ``event_id`` (acks from the leader
    only, no idempotence: status is best effort)."""

    def __init__(self, settings: KafkaSettings, *, client_id: str, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._client_id = client_id
        self._timeout = timeout_s
        self._producer: Any = None
        self._missing = False

    async def start(self) -> None:
        if self._producer is not None:
            return
        s = self._settings
        producer: Any = AIOKafkaProducer(
            **client_options(s, f"{self._client_id}-status"),
            acks=1,
            enable_idempotence=False,
            linger_ms=20,
        )
        await start_client(producer, "status producer", s, component="status")
        try:
            cluster = await producer.client.fetch_all_metadata()
        except KafkaError:
            await producer.stop()
            raise
        if s.status_topic not in cluster.topics():
            log.warning(
                "status_topic_missing",
                topic=s.status_topic,
                hint="create it (streamproc topics create); status events are dropped",
            )
            self._missing = True
        self._producer = producer

    async def send(self, events: list[StatusEvent]) -> None:
        producer = self._producer
        if producer is None or self._missing:
            raise RuntimeError(f"status topic {self._settings.status_topic} unavailable")
        topic = self._settings.status_topic
        headers = [("content-type", b"application/json"), ("schema", STATUS_SCHEMA)]
        sent = [
            await producer.send(
                topic, e.model_dump_json().encode(), key=e.event_id.encode(), headers=headers
            )
            for e in events
        ]
        await asyncio.wait_for(asyncio.gather(*sent), self._timeout)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()
