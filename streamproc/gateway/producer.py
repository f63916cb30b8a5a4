"""Produces accepted submissions to the prompts topic, acks=all.

:meth:`PromptProducer.send` returns only once every in-sync replica has the record (or
raises): the gateway answers 202 after it, never before. Records are keyed by ``event_id`` (a
retry lands in the same partition) and carry ``event_id``, ``tenant``, ``trace_id`` and
``content-type`` headers. Errors are classified by :func:`streamproc.bus.kafka.kafka_error`:
a :class:`~streamproc.errors.TransportError` (outage, timeout) is answered 503, a
:class:`~streamproc.errors.RecordRejected` (too large) 413 and a
:class:`~streamproc.errors.ServiceRefused` (ACLs, missing topic) 503 with the readiness probe
failing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from streamproc.bus.kafka import (
    CONTENT_TYPE_HEADER,
    EVENT_ID_HEADER,
    TRACE_ID_HEADER,
    client_options,
    kafka_error,
    require_topics,
    start_client,
)
from streamproc.bus.kafka_clients import ProducerClient
from streamproc.errors import TransportError
from streamproc.resource import AsyncResource
from streamproc.settings import KafkaSettings

TENANT_HEADER = "tenant"


@dataclass(frozen=True)
class Placed:
    """Where the broker put a record."""

    topic: str
    partition: int
    offset: int


class PromptProducer(AsyncResource):
    """One aiokafka producer for the gateway process."""

    def __init__(
        self, settings: KafkaSettings, *, client_id: str, timeout_s: float, linger_ms: int = 0
    ) -> None:
        self._settings = settings
        self.topic = settings.prompts_topics[0]
        self._client_id = client_id
        self._timeout_s = timeout_s
        self._linger_ms = linger_ms
        self._producer: ProducerClient | None = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        s = self._settings
        producer = AIOKafkaProducer(
            **client_options(s, self._client_id),
            acks="all",
            enable_idempotence=s.enable_idempotence,
            linger_ms=self._linger_ms,
            compression_type=None if s.compression_type == "none" else s.compression_type,
            max_request_size=s.max_request_size,
        )
        await start_client(
            producer, "producer", s, component="gateway", idempotent=s.enable_idempotence
        )
        self._producer = producer
        try:
            cluster = await asyncio.wait_for(producer.client.fetch_all_metadata(), self._timeout_s)
            require_topics(cluster.topics(), [self.topic], s.bootstrap_servers)
        except BaseException:
            # outcome: re-raised after the producer is stopped; the gateway does not start.
            await self.stop()
            raise

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send(
        self, key: str, value: bytes, *, tenant: str, trace_id: str, topic: str | None = None
    ) -> Placed:
        """Produce one record to ``topic`` (default: the prompts topic) and wait for
        acks=all; at most ``timeout_s``."""
        topic = topic or self.topic
        if self._producer is None:
            raise TransportError("the gateway's Kafka producer is not started")
        headers = [
            (EVENT_ID_HEADER, key.encode()),
            (TENANT_HEADER, tenant.encode()),
            (TRACE_ID_HEADER, trace_id.encode()),
            (CONTENT_TYPE_HEADER, b"application/json"),
        ]
        try:
            meta = await asyncio.wait_for(
                self._producer.send_and_wait(topic, value, key=key.encode(), headers=headers),
                self._timeout_s,
            )
        except (KafkaError, OSError, TimeoutError) as exc:
            raise kafka_error(
                f"send to {topic}",
                exc,
                component="gateway",
                brokers=self._settings.bootstrap_servers,
                topic=topic,
            ) from None
        return Placed(topic, meta.partition, meta.offset)  # type: ignore[attr-defined]

    async def readiness(self) -> tuple[bool, str]:
        """Whether the brokers answer a metadata request now (and have the topic)."""
        if self._producer is None:
            return False, "producer not started"
        try:
            cluster = await asyncio.wait_for(self._producer.client.fetch_all_metadata(), 2.0)
        except (KafkaError, OSError, TimeoutError) as exc:
            return False, f"kafka brokers {self._settings.bootstrap_servers}: {exc!r}"
        if self.topic not in cluster.topics():
            return False, f"kafka topic {self.topic} does not exist"
        return True, self._settings.bootstrap_servers
