"""The control plane against the real Tansu broker: the control topic, the status topic,
cancels (remembered, mid-batch), expiry, tenant quotas and a 1,000-event flood."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamproc.batching import ShapeKey
from streamproc.bus.kafka_sink import KafkaSink
from streamproc.bus.kafka_source import KafkaSource
from streamproc.cache.null import NullCache
from streamproc.control.plane import build_control_plane
from streamproc.events import utcnow
from streamproc.generation.base import GeneratedBatch, GenerationRequest, StepControl
from streamproc.generation.wan import WanGenerator
from streamproc.metrics import Metrics
from streamproc.processor import Outcome, Processor, RunSummary
from streamproc.settings import Settings
from streamproc.storage.local import LocalObjectStore
from tests.conftest import MakeSettings
from tests.helpers import GatedGenerator, event, eventually, mp4s, wait_for
from tests.kafka_broker import Topics, answers, committed_to_end, create_topics, produce, read_all

pytestmark = pytest.mark.kafka


@pytest.fixture
async def control_topics(kafka_bootstrap: str, topics: Topics) -> Topics:
    """The test's topics plus its status and control topics."""
    await create_topics(kafka_bootstrap, {topics.status: 3, topics.control: 2})
    return topics


@asynccontextmanager
async def worker(settings: Settings, generator: Any) -> AsyncIterator[Processor]:
    """A processor with the real Kafka source, sink, status producer and control reader."""
    metrics = Metrics()
    source = KafkaSource(settings.kafka, client_id=settings.worker_id)
    sink = KafkaSink(settings.kafka, client_id=settings.worker_id)
    await generator.start()
    async with sink, source, build_control_plane(settings, metrics) as control:
        processor = Processor(
            settings,
            source=source,
            sink=sink,
            store=LocalObjectStore(Path(settings.storage.local_dir)),
            generator=generator,
            cache=NullCache(),
            metrics=metrics,
            control=control,
        )
        task = asyncio.create_task(processor.run())
        try:
            yield processor
        finally:
            processor.request_stop()
            summary: RunSummary = await asyncio.wait_for(task, 60)
            processor.summary = summary
    await generator.stop()


def settings_for(
    make_settings: MakeSettings, bootstrap: str, topics: Topics, **sections: Any
) -> Settings:
    kafka = topics.settings(bootstrap, **sections.pop("kafka", {}))
    return make_settings(
        transport="kafka",
        kafka=kafka,
        cache={"backend": "none"},
        metrics={"enabled": False},
        **sections,
    )


def value(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


async def status_of(bootstrap: str, topics: Topics) -> list[tuple[bytes | None, dict[str, Any]]]:
    return [(r.key, json.loads(r.value)) for r in await read_all(bootstrap, topics.status)]


async def test_cancels_expiry_and_quotas_over_the_control_and_status_topics(
    make_settings: MakeSettings,
    kafka_bootstrap: str,
    control_topics: Topics,
    tiny_pipeline: Any,
) -> None:
    topics = control_topics
    settings = settings_for(
        make_settings,
        kafka_bootstrap,
        topics,
        batch={"window_ms": 400},
        control={"max_event_age_s": 3600},
        tenants={"quotas": {"capped": {"max_in_flight": 1}}},
    )
    # Sent before its event: remembered by the worker that reads it at start.
    await produce(
        kafka_bootstrap,
        topics.control,
        [(0, None, value({"action": "cancel", "event_id": "early"}), [])],
    )
    gated = GatedGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    shape = {"num_inference_steps": 6}
    batch = [(0, None, value(event(f"e{i}", f"prompt {i}", **shape)), []) for i in range(3)]
    await produce(kafka_bootstrap, topics.prompts, batch)
    async with worker(settings, gated) as processor:
        await asyncio.to_thread(gated.reached.wait, 60)  # e0-e2 are mid-denoising
        old = (utcnow() - timedelta(hours=2)).isoformat()
        later = [
            (1, None, value(event("early", "x")), []),
            (1, None, value(event("old", "y", created_at=old)), []),
            (2, None, value(event("c0", "z", tenant="capped")), []),
            (2, None, value(event("c1", "w", tenant="capped")), []),
        ]
        await produce(kafka_bootstrap, topics.prompts, later)
        await produce(
            kafka_bootstrap,
            topics.control,
            [(1, None, value({"action": "cancel", "event_id": "e1", "reason": "user left"}), [])],
        )

        async def e1_cancelled() -> bool:
            return any(
                r["event_id"] == "e1" for r in await answers(kafka_bootstrap, topics.results)
            )

        await eventually(e1_cancelled, seconds=60)  # while the batch is still held
        gated.gate.set()

        async def all_answered() -> bool:
            results = await answers(kafka_bootstrap, topics.results)
            letters = await answers(kafka_bootstrap, topics.dead_letters)
            return len(results) + len(letters) >= 7

        await eventually(all_answered, seconds=90)
        await eventually(lambda: committed_to_end(kafka_bootstrap, topics))
    results = {r["event_id"]: r for r in await answers(kafka_bootstrap, topics.results)}
    letters = {
        d["event_id"]: d["reason"] for d in await answers(kafka_bootstrap, topics.dead_letters)
    }
    assert {k: r["status"] for k, r in results.items()} == {
        "e0": "ok",
        "e1": "cancelled",
        "e2": "ok",
        "early": "cancelled",
        "c0": "ok",
    }
    assert results["e1"]["error"] == "cancelled: user left"
    assert letters == {"old": "expired", "c1": "quota_exceeded"}
    assert gated.calls[0] == ["e0", "e1", "e2"] and gated.controls[0].cancelled == {1}
    assert processor.summary.outcomes[Outcome.CANCELLED] == 2
    assert mp4s(settings) == 3  # e0, e2, c0
    status = await status_of(kafka_bootstrap, topics)
    assert all(key == s["event_id"].encode() for key, s in status)
    e1 = [s["state"] for _, s in status if s["event_id"] == "e1"]
    assert e1[:3] == ["accepted", "queued", "generating"] and e1[-1] == "cancelled"
    assert "stored" not in e1
    e0 = [s["state"] for _, s in status if s["event_id"] == "e0"]
    assert e0[-2:] == ["stored", "answered"]


class QuickGenerator:
    """A generator seam answering at once with one black frame per video: the flood test
    measures the scheduler (the real batcher and generate stage), not the model."""

    model_id = "quick"
    scheduler_name = "none"
    max_concurrent_batches = 1

    def __init__(self) -> None:
        self.calls: list[tuple[float, list[str]]] = []

    def max_batch_size(self, shape: ShapeKey) -> int | None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def generate(
        self,
        shape: ShapeKey,
        requests: Sequence[GenerationRequest],
        control: StepControl | None = None,
    ) -> GeneratedBatch:
        self.calls.append((time.time(), [r.event_id for r in requests]))
        await asyncio.sleep(0.01)  # a batch takes a while: the queue builds up
        frame = np.zeros((1, shape.height, shape.width, 3), dtype=np.uint8)
        return GeneratedBatch(videos=[frame for _ in requests])


async def test_a_tenant_flooding_1000_events_delays_another_tenant_by_at_most_a_batch(
    make_settings: MakeSettings,
    kafka_bootstrap: str,
    control_topics: Topics,
) -> None:
    topics = control_topics
    settings = settings_for(
        make_settings,
        kafka_bootstrap,
        topics,
        batch={"window_ms": 20, "max_batch_size": 4, "max_in_flight": 1200},
        kafka={"max_poll_records": 500},
    )
    flood = [
        (0, None, value(event(f"f{i:04d}", f"flood {i}", tenant="flood")), []) for i in range(1000)
    ]
    await produce(kafka_bootstrap, topics.prompts, flood)
    generator = QuickGenerator()
    async with worker(settings, generator):
        await wait_for(lambda: len(generator.calls) >= 5, 60)  # the flood is being served
        await produce(
            kafka_bootstrap,
            topics.prompts,
            [(1, None, value(event("single", "s", tenant="quiet")), [])],
        )

        async def all_answered() -> bool:
            return len(await read_all(kafka_bootstrap, topics.results)) >= 1001

        await eventually(all_answered, seconds=240)
    status = [s for _, s in await status_of(kafka_bootstrap, topics)]
    queued = next(s for s in status if s["event_id"] == "single" and s["state"] == "queued")
    assert queued["queue_position"] <= 4  # told: the next batch
    joined = _epoch(queued["at"])
    after = [ids for started, ids in generator.calls if started >= joined]
    # The next batch takes it (or the one after, if a batch was being formed as it joined).
    assert any("single" in ids for ids in after[:2]), after[:3]
    flood_before = sum(len(ids) for _, ids in generator.calls[: _index(generator.calls, "single")])
    assert flood_before < 900  # it did not wait for the flood to drain


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _index(calls: list[tuple[float, list[str]]], event_id: str) -> int:
    return next(i for i, (_, ids) in enumerate(calls) if event_id in ids)


async def test_a_higher_priority_event_overtakes_a_queue_of_its_own_tenant(
    make_settings: MakeSettings,
    kafka_bootstrap: str,
    control_topics: Topics,
) -> None:
    topics = control_topics
    settings = settings_for(
        make_settings,
        kafka_bootstrap,
        topics,
        batch={"window_ms": 20, "max_batch_size": 2, "max_in_flight": 500},
    )
    backlog = [
        (0, None, value(event(f"low{i:03d}", f"low {i}", tenant="t")), []) for i in range(200)
    ]
    await produce(kafka_bootstrap, topics.prompts, backlog)
    generator = QuickGenerator()
    async with worker(settings, generator):
        await wait_for(lambda: len(generator.calls) >= 5, 60)
        urgent = event("urgent", "u", tenant="t", priority=7)
        await produce(kafka_bootstrap, topics.prompts, [(1, None, value(urgent), [])])

        async def all_answered() -> bool:
            return len(await read_all(kafka_bootstrap, topics.results)) >= 201

        await eventually(all_answered, seconds=120)
    low_before = sum(len(ids) for _, ids in generator.calls[: _index(generator.calls, "urgent")])
    assert low_before < 150  # same tenant, so only its lane put it ahead of the backlog
    status = [s for _, s in await status_of(kafka_bootstrap, topics)]
    queued = next(s for s in status if s["event_id"] == "urgent" and s["state"] == "queued")
    assert queued["lane"] == 7 and queued["queue_position"] == 1
