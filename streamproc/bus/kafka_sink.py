"""The Kafka sink: results to ``results_topic``, dead letters to ``dead_letter_topic``.

Every publish waits for the broker's acknowledgement from all in-sync replicas (``acks=all``)
before it returns, so the processor commits an input offset only after its answer is durable.
The producer is idempotent by default (``enable_idempotence``): its own retries cannot write a
record twice. A failed publish raises what :func:`~streamproc.bus.kafka.kafka_error` makes of
it: :class:`TransportError` for an outage or a timeout (the processor retries it; answers are
idempotent on ``event_id`` downstream), :class:`RecordRejected` for a record larger than
``max_request_size`` or the topic accepts (refused by aiokafka before any request, or by the
broker), :class:`ServiceRefused` for refused credentials or ACLs and for a topic that no
longer exists (asked of the cluster after a failure that may mean it).

Results are keyed like the prompt record (its key, or the ``event_id`` when it had none), so
all answers about one key land in one partition in order. Headers: ``event_id``, ``trace_id``
(the input's, or one from its W3C ``traceparent``, which is passed on too, or a new one),
``content-type`` and ``schema``, plus ``streamproc-replay`` (the replay id) on results of a
replay and ``streamproc-redelivery: 1`` on results re-published from the result ledger; dead
letters add ``reason``, ``error_class`` and their origin (``origin_topic``,
``origin_partition``, ``origin_offset``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError

from streamproc.bus.base import Record, Sink
from streamproc.bus.kafka import (
    CONTENT_TYPE_HEADER,
    EVENT_ID_HEADER,
    FORWARDED_HEADER,
    REDELIVERY_HEADER,
    REPLAY_HEADER,
    SCHEMA_HEADER,
    Headers,
    absent_topic,
    client_options,
    kafka_error,
    require_topics,
    start_client,
    topic_missing_error,
    trace_headers,
)
from streamproc.bus.kafka_clients import ProducerClient
from streamproc.errors import RecordRejected, ServiceRefused, TransportError
from streamproc.events import SCHEMA_VERSION, DeadLetter, VideoResult
from streamproc.resource import AsyncResource
from streamproc.settings import KafkaSettings

log = structlog.get_logger(__name__)

_JSON = b"application/json"
_COMPONENT = "sink"
#: Longest wait for the metadata request asking whether a topic still exists.
_TOPIC_CHECK_S = 10.0
RESULT_SCHEMA = f"video-result.v{SCHEMA_VERSION}".encode()
DEAD_LETTER_SCHEMA = f"dead-letter.v{SCHEMA_VERSION}".encode()


class KafkaSink(AsyncResource, Sink):
    """Publishes answers with an acknowledged, (by default) idempotent producer."""

    def __init__(self, settings: KafkaSettings, *, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: ProducerClient | None = None

    @property
    def destination(self) -> str:
        """The results topic."""
        return f"kafka:{self._settings.results_topic}"

    async def start(self) -> None:
        """Connect and check that the results and dead-letter topics exist."""
        if self._producer is not None:
            return
        s = self._settings
        producer: ProducerClient = AIOKafkaProducer(
            **client_options(s, self._client_id),
            acks="all",
            enable_idempotence=s.enable_idempotence,
            linger_ms=s.linger_ms,
            compression_type=None if s.compression_type == "none" else s.compression_type,
            max_request_size=s.max_request_size,
        )
        await start_client(
            producer, "producer", s, component=_COMPONENT, idempotent=s.enable_idempotence
        )
        try:
            cluster = await producer.client.fetch_all_metadata()
            require_topics(
                cluster.topics(), [s.results_topic, s.dead_letter_topic], s.bootstrap_servers
            )
        except KafkaError as exc:
            await producer.stop()
            raise self._error("metadata request", exc) from None
        except BaseException:  # outcome: the client is closed and the error re-raised
            await producer.stop()
            raise
        self._producer = producer
        log.info(
            "kafka_producer_started",
            results_topic=s.results_topic,
            dead_letter_topic=s.dead_letter_topic,
            idempotent=s.enable_idempotence,
        )

    async def stop(self) -> None:
        """Flush what is queued and disconnect."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            await producer.stop()
        except KafkaError as exc:
            log.warning("kafka_producer_stop_failed", error=str(exc)[:300])

    async def publish(
        self,
        result: VideoResult,
        key: bytes | None,
        *,
        input_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        headers: Headers = [
            (EVENT_ID_HEADER, result.event_id.encode()),
            *trace_headers(input_headers),
            (CONTENT_TYPE_HEADER, _JSON),
            (SCHEMA_HEADER, RESULT_SCHEMA),
        ]
        if result.replayed:
            headers.append((REPLAY_HEADER, (result.replay_id or "").encode()))
        if result.redelivery:
            headers.append((REDELIVERY_HEADER, b"1"))
        await self._send(
            self._settings.results_topic,
            key if key is not None else result.event_id.encode(),
            result.model_dump_json().encode(),
            headers,
        )

    async def dead_letter(
        self,
        letter: DeadLetter,
        key: bytes | None,
        *,
        input_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        headers: Headers = []
        if letter.event_id is not None:
            headers.append((EVENT_ID_HEADER, letter.event_id.encode()))
        headers += [
            *trace_headers(input_headers),
            (CONTENT_TYPE_HEADER, _JSON),
            (SCHEMA_HEADER, DEAD_LETTER_SCHEMA),
            ("reason", letter.reason.value.encode()),
            ("error_class", letter.error_class.encode()),
            ("origin_topic", letter.origin.topic.encode()),
            ("origin_partition", str(letter.origin.partition).encode()),
            ("origin_offset", str(letter.origin.offset).encode()),
        ]
        if key is None and letter.event_id is not None:
            key = letter.event_id.encode()
        await self._send(
            self._settings.dead_letter_topic, key, letter.model_dump_json().encode(), headers
        )

    async def forward(self, record: Record, topic: str) -> None:
        origin = f"{record.partition.topic}/{record.partition.partition}/{record.offset}"
        headers: Headers = [
            *((k, v) for k, v in record.headers if k != FORWARDED_HEADER),
            (FORWARDED_HEADER, origin.encode()),
        ]
        await self._send(topic, record.key, record.value, headers)

    async def _send(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
        producer = self._producer
        if producer is None:
            raise TransportError("sink not started")
        try:
            await asyncio.wait_for(
                producer.send_and_wait(topic, value, key=key, headers=headers),
                timeout=self._settings.publish_timeout_ms / 1000,
            )
        except (KafkaError, TimeoutError) as exc:
            error = self._error(f"publish to {topic}", exc, topic)
            if isinstance(error, TransportError) and isinstance(
                exc, UnknownTopicOrPartitionError | KafkaTimeoutError | TimeoutError
            ):
                # Unknown, or no answer in time: is the topic gone for good?
                s = self._settings
                wait_s = min(s.request_timeout_ms / 1000, _TOPIC_CHECK_S)
                if await absent_topic(self._topics_now, [topic], wait_s):
                    raise topic_missing_error(
                        topic, component=_COMPONENT, brokers=s.bootstrap_servers
                    ) from None
            raise error from None

    async def _topics_now(self) -> set[str]:
        producer = self._producer
        if producer is None:
            raise TransportError("sink not started")
        cluster = await producer.client.fetch_all_metadata()
        return cluster.topics()

    def _error(
        self, what: str, exc: BaseException, topic: str | None = None
    ) -> TransportError | RecordRejected | ServiceRefused:
        return kafka_error(
            what, exc, component=_COMPONENT, brokers=self._settings.bootstrap_servers, topic=topic
        )
