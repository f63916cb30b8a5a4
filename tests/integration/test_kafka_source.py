"""The Kafka source on its own, against the real Tansu broker: pausing keeps every fetched
record in order, commits go only to partitions this member holds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from streamproc.bus.base import Partition, Record
from streamproc.bus.kafka_source import KafkaSource
from streamproc.settings import load_settings
from tests.kafka_broker import Topics, committed, produce

pytestmark = pytest.mark.kafka


async def next_record(records: AsyncIterator[Record], seconds: float = 30) -> Record:
    return await asyncio.wait_for(anext(records), seconds)


def source_for(bootstrap: str, topics: Topics, **kafka: object) -> KafkaSource:
    settings = load_settings(kafka=topics.settings(bootstrap, **kafka))
    return KafkaSource(settings.kafka, client_id="source-test")


async def test_pause_hands_out_nothing_yet_keeps_every_fetched_record_in_order(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await produce(
        kafka_bootstrap, topics.prompts, [(0, None, f"r{i}".encode(), []) for i in range(40)]
    )
    source = source_for(kafka_bootstrap, topics, max_poll_records=8)
    async with source:
        records = source.records()
        got = [await next_record(records) for _ in range(5)]
        source.pause()
        waiting = asyncio.create_task(next_record(records))
        await asyncio.sleep(1.5)  # the poller keeps polling meanwhile
        assert not waiting.done()
        # Paused are the partitions, not the polls.
        assert (
            source.paused_partitions
            == source.assignment
            == [Partition(topics.prompts, p) for p in range(3)]
        )
        source.resume()
        got.append(await waiting)
        got += [await next_record(records) for _ in range(34)]
        await records.aclose()
    assert [(r.partition.partition, r.offset, r.value) for r in got] == [
        (0, i, f"r{i}".encode()) for i in range(40)
    ]


async def test_commits_go_only_to_partitions_this_member_holds(
    kafka_bootstrap: str, topics: Topics
) -> None:
    await produce(kafka_bootstrap, topics.prompts, [(1, None, b"x", [])])
    source = source_for(kafka_bootstrap, topics)
    async with source:
        records = source.records()
        record = await next_record(records)
        await source.commit({record.partition: record.offset + 1, Partition("someone-elses", 0): 5})
        with contextlib.suppress(StopAsyncIteration):
            await records.aclose()
    assert await committed(kafka_bootstrap, topics.group, topics.prompts, 3) == {
        0: -1,
        1: 1,
        2: -1,
    }
