"""The sink's decision after a publish that failed in a way that may mean a deleted topic.

A stand-in producer is used here because no real broker at hand can play the part: Tansu
acknowledges a publish to a deleted topic, and aiokafka's metadata requests recreate topics on
any broker that auto-creates them. What the stand-in raises is what aiokafka raises on a
broker that does not: ``UnknownTopicOrPartitionError`` or a timeout.
"""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, UnknownTopicOrPartitionError

from streamproc.bus.kafka_sink import KafkaSink
from streamproc.errors import ServiceRefused, TransportError
from streamproc.settings import KafkaSettings
from tests.helpers import sample_result


class _Cluster:
    def __init__(self, topics: set[str]) -> None:
        self._topics = topics

    def topics(self) -> set[str]:
        return self._topics


class _Client:
    def __init__(self, topics: set[str] | None) -> None:
        self._topics = topics

    async def fetch_all_metadata(self) -> _Cluster:
        if self._topics is None:
            raise KafkaConnectionError("no broker answers")
        return _Cluster(self._topics)


class _FailingProducer:
    """Fails every send with ``error``; the cluster lists ``topics`` (None: no answer)."""

    def __init__(self, error: BaseException, topics: set[str] | None) -> None:
        self._error = error
        self.client = _Client(topics)

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> None:
        raise self._error


def sink_with(producer: _FailingProducer) -> KafkaSink:
    settings = KafkaSettings(
        results_topic="results", dead_letter_topic="dead", request_timeout_ms=5000
    )
    sink = KafkaSink(settings, client_id="w")
    sink._producer = producer  # started, as far as the sink can tell
    return sink


@pytest.mark.parametrize(
    "error", [UnknownTopicOrPartitionError(), KafkaTimeoutError(), TimeoutError()]
)
async def test_a_results_topic_the_cluster_no_longer_has_refuses_the_service(
    error: BaseException,
) -> None:
    sink = sink_with(_FailingProducer(error, topics={"prompts", "dead"}))
    with pytest.raises(ServiceRefused) as caught:
        await sink.publish(sample_result("e1"), b"e1")
    assert caught.value.component == "sink"
    assert str(caught.value) == (
        "kafka topic results does not exist on brokers localhost:9092 (create it with: "
        "streamproc topics create)"
    )


async def test_a_topic_that_still_exists_keeps_the_failure_transient() -> None:
    sink = sink_with(_FailingProducer(UnknownTopicOrPartitionError(), topics={"results"}))
    with pytest.raises(TransportError, match="UnknownTopicOrPartitionError"):
        await sink.publish(sample_result("e1"), b"e1")


async def test_a_cluster_that_does_not_answer_keeps_the_failure_transient() -> None:
    sink = sink_with(_FailingProducer(TimeoutError(), topics=None))
    with pytest.raises(TransportError, match="timed out"):
        await sink.publish(sample_result("e1"), b"e1")
