"""Mixed fleets against the real Tansu broker: a one-GPU worker forwards clips above
``routing.large_above_tokens`` to the large-clip lane, and a worker reading that lane answers
them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamproc.bus.kafka import FORWARDED_HEADER
from streamproc.errors import ConfigError
from streamproc.processor import Outcome
from tests.conftest import MakeSettings
from tests.helpers import event, eventually
from tests.integration.test_kafka_transport import KafkaWorker, answered_ids, kafka_settings, spy
from tests.kafka_broker import (
    Topics,
    committed_to_end,
    create_topics,
    headers_of,
    produce,
    read_all,
)

pytestmark = pytest.mark.kafka

# 64x32x5 is 2 x 1 x 2 = 4 latent tokens; 128x64x5 is 2 x 2 x 4 = 16.
LIMIT = 8


async def test_clips_above_the_threshold_are_forwarded_durably_and_answered_by_the_lane(
    make_settings: MakeSettings, kafka_bootstrap: str, topics: Topics, tiny_pipeline: Any
) -> None:
    large_topic = f"{topics.prompts}-large"
    await create_topics(kafka_bootstrap, {large_topic: 1})
    small = json.dumps(event("small-1", "a tram at dawn")).encode()
    large = json.dumps(event("large-1", "a harbour at night", width=128, height=64)).encode()
    await produce(
        kafka_bootstrap,
        topics.prompts,
        [(0, b"user-7", small, []), (1, b"user-8", large, [("traceparent", b"00-abc-01")])],
    )
    settings = kafka_settings(
        make_settings,
        kafka_bootstrap,
        topics,
        routing={"large_above_tokens": LIMIT, "large_topic": large_topic},
    )
    generator = spy(settings, tiny_pipeline)
    async with KafkaWorker(settings, generator) as worker:
        await eventually(lambda: committed_to_end(kafka_bootstrap, topics))
        summary = await worker.stop()
    assert summary.outcomes[Outcome.FORWARDED] == 1 and summary.forwarded == 1
    assert summary.results == 1 and summary.dead_letters == 0  # the books add up
    assert await answered_ids(kafka_bootstrap, topics) == {"small-1"}
    assert generator.calls == [["small-1"]]  # the large clip never reached this GPU
    (forwarded,) = await read_all(kafka_bootstrap, large_topic)
    assert (forwarded.key, forwarded.value) == (b"user-8", large)  # as it arrived
    headers = headers_of(forwarded)
    assert headers["traceparent"] == b"00-abc-01"
    assert headers[FORWARDED_HEADER] == f"{topics.prompts}/1/0".encode()

    # A worker of the large-clip lane: reads the lane as its prompts topic, runs every clip.
    lane = kafka_settings(
        make_settings,
        kafka_bootstrap,
        topics,
        kafka={"prompts_topic": large_topic, "group_id": f"{topics.group}-large"},
    )
    async with KafkaWorker(lane, spy(lane, tiny_pipeline)) as lane_worker:
        await eventually(
            lambda: _answered(kafka_bootstrap, topics, {"small-1", "large-1"}), seconds=60
        )
        lane_summary = await lane_worker.stop()
    assert lane_summary.outcomes[Outcome.GENERATED] == 1 and lane_summary.forwarded == 0


async def _answered(bootstrap: str, topics: Topics, expected: set[str]) -> bool:
    return await answered_ids(bootstrap, topics) == expected


def test_routing_needs_kafka_and_a_one_gpu_worker(make_settings: MakeSettings) -> None:
    with pytest.raises(ConfigError, match="forwards to Kafka"):
        make_settings(routing={"large_above_tokens": 100})
    with pytest.raises(ConfigError, match="one-GPU workers"):
        make_settings(
            transport="kafka",
            routing={"large_above_tokens": 100},
            generation={"gpus_per_worker": 2, "device": "cpu"},
        )
