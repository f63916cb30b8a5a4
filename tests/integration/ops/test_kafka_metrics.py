"""Consumer lag, high watermark and commit watermark per partition, scraped from a worker
on the real Tansu broker; the broker readiness check."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from streamproc.bus.kafka_sink import KafkaSink
from streamproc.bus.kafka_source import KafkaSource
from streamproc.generation.wan import WanGenerator
from streamproc.health import OpsServer, Readiness
from streamproc.metrics import Metrics
from streamproc.processor import Processor
from streamproc.storage.local import LocalObjectStore
from tests.conftest import MakeSettings
from tests.helpers import SpyGenerator, event, eventually, semantic_cache, wait_for
from tests.integration.conftest import PROMPT_PARTITIONS
from tests.integration.ops.scrape import ready, scrape_until, series, total, value
from tests.kafka_broker import Topics, committed_to_end, produce

pytestmark = pytest.mark.kafka

PER_PARTITION = 4


async def test_lag_and_commit_watermark_per_partition_follow_the_work(
    make_settings: MakeSettings, kafka_bootstrap: str, topics: Topics, tiny_pipeline: Any
) -> None:
    settings = make_settings(
        transport="kafka",
        # One record per poll and two in flight: most of the topic stays behind the position.
        kafka=topics.settings(kafka_bootstrap, max_poll_records=1),
        batch={"max_in_flight": 2, "max_batch_size": 2},
    )
    await produce(
        kafka_bootstrap,
        topics.prompts,
        [
            (i % PROMPT_PARTITIONS, None, json.dumps(event(f"e{i}", f"scene {i}")).encode(), [])
            for i in range(PER_PARTITION * PROMPT_PARTITIONS)
        ],
    )
    metrics = Metrics()
    source = KafkaSource(settings.kafka, client_id="w", metrics=metrics)
    sink = KafkaSink(settings.kafka, client_id="w")
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    spy.release.clear()  # hold the "GPU" until the lag has been seen
    processor = Processor(
        settings,
        source=source,
        sink=sink,
        store=LocalObjectStore(Path(settings.storage.local_dir)),
        generator=spy,
        cache=semantic_cache(),
        metrics=metrics,
    )
    readiness = Readiness()
    readiness.add("broker", source.readiness)
    async with OpsServer(metrics, readiness, host="127.0.0.1", port=0) as server:
        assert server.port is not None
        port = server.port
        status, body = await ready(port)
        assert status == 503 and body["failed"] == ["broker"]  # not started yet
        async with sink, source:
            run = asyncio.create_task(processor.run())
            try:
                status, body = await ready(port)
                assert status == 200, body
                await wait_for(lambda: spy.calls != [], seconds=60)
                during = await scrape_until(
                    port,
                    lambda s: (
                        len(series(s, "streamproc_consumer_lag_records")) == PROMPT_PARTITIONS
                    ),
                )
                assert total(during, "streamproc_consumer_lag_records") > 0
                assert total(during, "streamproc_committed_offset") == 0

                spy.release.set()
                await eventually(lambda: committed_to_end(kafka_bootstrap, topics), seconds=120)
                after = await scrape_until(
                    port,
                    lambda s: (
                        total(s, "streamproc_committed_offset") == PER_PARTITION * PROMPT_PARTITIONS
                    ),
                )
            finally:
                spy.release.set()
                processor.request_stop()
                await asyncio.wait_for(run, 60)

    for partition in range(PROMPT_PARTITIONS):
        labels = {"topic": topics.prompts, "partition": str(partition)}
        assert value(after, "streamproc_consumer_lag_records", **labels) == 0
        assert value(after, "streamproc_partition_high_watermark", **labels) == PER_PARTITION
        assert value(after, "streamproc_committed_offset", **labels) == PER_PARTITION
