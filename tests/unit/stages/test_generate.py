"""The generate stage alone, over the real tiny pipeline: batches, split-and-retry, deadlines,
abandoned jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any

import pytest

from streamproc.bus.base import Partition
from streamproc.errors import DeadlineExceeded, GenerationError
from streamproc.events import utcnow
from streamproc.generation.wan import WanGenerator
from streamproc.metrics import Metrics
from streamproc.outcome import RunSummary
from streamproc.settings import Settings
from streamproc.stages.base import Abandoned, Generated
from streamproc.stages.generate import Generate
from tests.conftest import MakeSettings
from tests.helpers import SpyGenerator
from tests.unit.stages.conftest import PARTITION, Request

OTHER = Partition("prompts", 1)


class Rig:
    def __init__(self, settings: Settings, spy: SpyGenerator) -> None:
        self.spy = spy
        self.summary = RunSummary()
        self.clocked: dict[str, float] = {}
        self.stage = Generate(
            settings,
            spy,
            summary=self.summary,
            metrics=Metrics(),
            clock=lambda name, s: self.clocked.__setitem__(name, s),
        )
        self.batched = 0

    def supervise(self, work: Awaitable[None], name: str) -> asyncio.Task[None]:
        async def run() -> None:
            await work

        return asyncio.create_task(run(), name=name)

    async def generate(self, request: Any, partition: Partition = PARTITION) -> Generated:
        def batched() -> None:
            self.batched += 1

        return await self.stage.generate(request, partition, batched)


async def rig_for(settings: Settings, tiny: tuple[Any, str], **spy: Any) -> AsyncIterator[Rig]:
    rig = Rig(settings, SpyGenerator(WanGenerator(settings.generation, loaded=tiny), **spy))
    await rig.spy.start()
    loop = asyncio.create_task(rig.stage.loop(rig.supervise))
    try:
        yield rig
    finally:
        rig.stage.batcher.close()
        await asyncio.wait_for(loop, 30)
        await rig.spy.stop()


@pytest.fixture
async def rig(make_settings: MakeSettings, tiny_pipeline: Any) -> AsyncIterator[Rig]:
    async for r in rig_for(make_settings(batch={"window_ms": 200}), tiny_pipeline):
        yield r


async def test_requests_of_one_shape_run_as_one_batch(rig: Rig, admitted: Request) -> None:
    first, second = await asyncio.gather(
        rig.generate(admitted("a", "a fox")), rig.generate(admitted("b", "a cat"))
    )
    assert rig.spy.calls == [["a", "b"]]
    assert first.batch_size == second.batch_size == 2
    assert first.batch_id == second.batch_id == "b1"
    assert first.frames.shape[0] == admitted("a").params.num_frames
    assert rig.summary.batches == 1 and rig.summary.videos == 2
    assert rig.batched == 2
    assert "denoise" in rig.clocked


async def test_a_failing_prompt_is_split_off_and_retried_alone(
    make_settings: MakeSettings, tiny_pipeline: Any, admitted: Request
) -> None:
    settings = make_settings(batch={"window_ms": 200}, generation={"retries": 2})
    async for rig in rig_for(settings, tiny_pipeline, fail=lambda r: r.event_id == "bad"):
        good, bad = await asyncio.gather(
            rig.generate(admitted("good", "a fox")),
            rig.generate(admitted("bad", "a cat")),
            return_exceptions=True,
        )
        assert isinstance(good, Generated) and good.batch_size == 1
        assert isinstance(bad, GenerationError)
        # The batch, then each alone; the bad one twice more (generation.retries = 2).
        assert rig.spy.calls == [["good", "bad"], ["good"], ["bad"], ["bad"], ["bad"]]


async def test_an_event_past_its_deadline_is_never_generated(rig: Rig, admitted: Request) -> None:
    late = admitted("late", deadline=(utcnow() + timedelta(milliseconds=1)).isoformat())
    await asyncio.sleep(0.01)
    with pytest.raises(DeadlineExceeded):
        await rig.generate(late)
    assert rig.spy.calls == []


async def test_queued_jobs_of_revoked_partitions_are_abandoned(rig: Rig, admitted: Request) -> None:
    rig.spy.release.clear()  # hold the "GPU" so nothing leaves the batcher's queue early
    revoked = asyncio.create_task(rig.generate(admitted("r", "a fox"), OTHER))
    await asyncio.sleep(0.05)
    rig.stage.abandon(lambda job: job.partition == OTHER, running=False)
    with pytest.raises(Abandoned):
        await revoked
    rig.spy.release.set()
    kept = await rig.generate(admitted("k", "a cat"))
    assert kept.batch_size == 1 and rig.spy.generated_ids == ["k"]


async def test_abandoning_everything_ends_running_jobs_too(rig: Rig, admitted: Request) -> None:
    rig.spy.release.clear()
    running = asyncio.create_task(rig.generate(admitted("x")))
    await asyncio.sleep(0.4)  # past the window: the batch is at the held "GPU"
    assert rig.spy.calls == [["x"]]
    rig.stage.abandon(lambda job: True)
    with pytest.raises(Abandoned):
        await running
    rig.spy.release.set()
