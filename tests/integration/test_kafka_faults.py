"""Kafka faults classified where they enter, against the real Tansu broker: a record too
large is rejected alone and at once; a prompts topic deleted while running refuses the
service; a refused poll ends the input with ``ServiceRefused``, transient ones do not. (A results topic deleted while running cannot be shown on Tansu: it acknowledges a
publish to the deleted topic; ``tests/unit/bus/test_kafka_sink.py`` covers that path.)"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    KafkaConnectionError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
)

from streamproc.bus.base import Partition
from streamproc.bus.kafka_sink import KafkaSink
from streamproc.bus.kafka_source import KafkaSource
from streamproc.errors import RecordRejected, ServiceRefused
from streamproc.events import b64
from streamproc.settings import load_settings
from tests.helpers import sample_dead_letter, sample_result
from tests.kafka_broker import Topics, produce, read_all

pytestmark = pytest.mark.kafka

LIMIT = 64 * 1024


async def delete_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def sink_for(bootstrap: str, topics: Topics, **kafka: object) -> KafkaSink:
    settings = load_settings(
        kafka=topics.settings(bootstrap, **kafka),
        dead_letters={"max_original_bytes": 16 * 1024},  # leaves room under LIMIT
    )
    return KafkaSink(settings.kafka, client_id="faults-test")


@pytest.mark.parametrize("answer", ["result", "dead_letter"])
async def test_a_record_over_max_request_size_is_rejected_at_once_and_nothing_is_sent(
    kafka_bootstrap: str, topics: Topics, answer: str
) -> None:
    sink = sink_for(kafka_bootstrap, topics, max_request_size=LIMIT, publish_timeout_ms=30_000)
    huge = sample_result("big").model_copy(update={"video_url": "x" * (LIMIT + 1)})
    letter = sample_dead_letter().model_copy(update={"original": b64(os.urandom(LIMIT))})
    topic = topics.results if answer == "result" else topics.dead_letters
    async with sink:
        started = time.monotonic()
        with pytest.raises(RecordRejected) as caught:
            await (
                sink.publish(huge, b"big")
                if answer == "result"
                else sink.dead_letter(letter, b"big")
            )
        took = time.monotonic() - started
        await sink.publish(sample_result("small"), b"small")  # the sink goes on
    error = caught.value
    assert error.component == "sink"
    assert str(error).startswith(f"kafka publish to {topic} refused the record as too large: ")
    assert "max_request_size" in str(error)
    assert took < 1.0  # aiokafka refuses it before any request: no retry, no timeout
    assert [r.key for r in await read_all(kafka_bootstrap, topics.results)] == [b"small"]
    assert await read_all(kafka_bootstrap, topics.dead_letters) == []


async def test_a_prompts_topic_deleted_while_running_refuses_the_commit_naming_it(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await produce(kafka_bootstrap, topics.prompts, [(0, None, b"one", [])])
    settings = load_settings(kafka=topics.settings(kafka_bootstrap, commit_timeout_ms=1000))
    async with KafkaSource(settings.kafka, client_id="faults-test") as source:
        records = source.records()
        record = await asyncio.wait_for(anext(records), 30)
        await source.commit({record.partition: record.offset + 1})
        await delete_topic(kafka_bootstrap, topics.prompts)
        with pytest.raises(ServiceRefused) as caught:
            await source.commit({Partition(topics.prompts, 0): record.offset + 1})
        assert await source.readiness() == (
            False,
            f"kafka topic(s) {topics.prompts} do not exist",
        )
        await records.aclose()
    assert caught.value.component == "source"
    assert str(caught.value) == (
        f"kafka topic {topics.prompts} does not exist on brokers {kafka_bootstrap} "
        "(create it with: streamproc topics create)"
    )


class _RefusingPolls:
    """Wraps the real consumer's ``getmany``: raises ``errors`` one per poll, then polls.

    Tansu cannot refuse a poll (it has no ACLs, and returns records larger than the fetch
    size whole), so the error aiokafka raises on a broker that does is injected into the real
    consumer; everything else is the real source against the real broker."""

    def __init__(self, getmany: Any, errors: list[BaseException]) -> None:
        self._getmany = getmany
        self._errors = errors

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._errors:
            raise self._errors.pop(0)
        return await self._getmany(*args, **kwargs)


async def test_a_refused_poll_ends_the_input_with_service_refused(
    kafka_bootstrap: str, topics: Topics
) -> None:
    settings = load_settings(kafka=topics.settings(kafka_bootstrap))
    async with KafkaSource(settings.kafka, client_id="faults-test") as source:
        consumer = source._consumer
        consumer.getmany = _RefusingPolls(
            consumer.getmany, [TopicAuthorizationFailedError({topics.prompts})]
        )
        with pytest.raises(ServiceRefused) as caught:
            await asyncio.wait_for(anext(source.records()), 30)
        ready, detail = await source.readiness()
    assert caught.value.component == "source"
    assert str(caught.value).startswith(f"kafka poll refused by brokers {kafka_bootstrap}: ")
    assert "TopicAuthorizationFailedError" in str(caught.value)
    assert not ready and detail == str(caught.value)[:200]


async def test_transient_poll_failures_are_polled_through(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await produce(kafka_bootstrap, topics.prompts, [(0, None, b"one", [])])
    settings = load_settings(kafka=topics.settings(kafka_bootstrap))
    async with KafkaSource(settings.kafka, client_id="faults-test") as source:
        consumer = source._consumer
        outages: list[BaseException] = [KafkaConnectionError("reset"), RequestTimedOutError()]
        consumer.getmany = _RefusingPolls(consumer.getmany, outages)
        records = source.records()
        record = await asyncio.wait_for(anext(records), 30)
        await records.aclose()
    assert record.value == b"one" and outages == []
