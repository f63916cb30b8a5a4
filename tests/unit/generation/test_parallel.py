"""Context-parallel generation on the CPU: two real ranks over gloo, the tiny model."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from streamproc.batching import ShapeKey
from streamproc.errors import ConfigError, GeneratorLost
from streamproc.generation.base import GenerationRequest, Supervised
from streamproc.generation.parallel import ContextParallelGenerator, check_parallel
from streamproc.generation.wan import WanGenerator
from streamproc.settings import GenerationSettings

REQUESTS = [
    GenerationRequest("a", "a red fox crossing a frozen lake", None, 11),
    GenerationRequest("b", "a lighthouse in a storm", "blurry", 12),
]


def shape_of(model_id: str) -> ShapeKey:
    # 5 latent frames of 12x20 / patch 2: 300 tokens, split 150 + 150; guidance on, so cond
    # and uncond run as one batch of four through the split attention.
    return ShapeKey(model_id, 320, 192, 17, 3, 5.0)


@pytest.fixture
async def two_ranks() -> AsyncIterator[ContextParallelGenerator]:
    generator = ContextParallelGenerator(GenerationSettings(device="cpu", gpus_per_worker=2))
    await generator.start()
    try:
        yield generator
    finally:
        await generator.stop()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[1].split()[0] == "Z"


async def test_two_cpu_ranks_make_the_frames_of_one(
    two_ranks: ContextParallelGenerator,
) -> None:
    one = WanGenerator(GenerationSettings(device="cpu"))
    await one.start()
    try:
        alone = await one.generate(shape_of(one.model_id), REQUESTS)
    finally:
        await one.stop()
    assert two_ranks.model_id == one.model_id  # the split changes no answer: same cache scope
    split = await two_ranks.generate(shape_of(two_ranks.model_id), REQUESTS)
    assert len(split.videos) == len(alone.videos) == 2
    for a, b in zip(alone.videos, split.videos, strict=True):
        assert a.shape == b.shape
        # fp32 on both sides: the attention is the same sums in another order.
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert not np.array_equal(split.videos[0], split.videos[1])  # the seeds still matter


async def test_a_killed_rank_loses_the_generator_at_once_and_nothing_is_left_running(
    two_ranks: ContextParallelGenerator,
) -> None:
    assert isinstance(two_ranks, Supervised)
    (pid,) = two_ranks.rank_pids
    watching = asyncio.create_task(two_ranks.watch())
    await asyncio.sleep(0.3)
    assert not watching.done()  # a whole group: watch() waits
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(GeneratorLost, match=r"rank 1 of 2 \(pid \d+\) was killed by SIGKILL"):
        await asyncio.wait_for(watching, 10)
    with pytest.raises(GeneratorLost, match="rank 1 of 2"):
        await asyncio.wait_for(two_ranks.generate(shape_of(two_ranks.model_id), REQUESTS), 10)
    started = time.monotonic()
    await two_ranks.stop()
    assert time.monotonic() - started < 5 and gone(pid)


async def test_a_rank_dying_during_a_call_fails_that_call_instead_of_hanging(
    two_ranks: ContextParallelGenerator,
) -> None:
    (pid,) = two_ranks.rank_pids
    call = asyncio.create_task(two_ranks.generate(shape_of(two_ranks.model_id), REQUESTS))
    await asyncio.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(GeneratorLost, match="rank 1 of 2"):
        await asyncio.wait_for(call, 15)


async def test_ranks_that_never_form_a_group_fail_the_start_with_one_line() -> None:
    generator = ContextParallelGenerator(
        GenerationSettings(device="cpu", gpus_per_worker=2, rank_timeout_s=2)
    )
    generator._spawn = lambda: None  # type: ignore[method-assign]  # no rank 1 ever joins
    with pytest.raises(GeneratorLost, match=r"the 2 ranks did not form a group within 2 s"):
        await asyncio.wait_for(generator.start(), 60)


def test_ring_attention_needs_cuda_and_a_backend_with_log_sum_exp() -> None:
    with pytest.raises(ConfigError, match="ring"):
        check_parallel(GenerationSettings(device="cpu", gpus_per_worker=2, context_parallel="ring"))


def test_ulysses_needs_heads_that_divide_by_the_ranks() -> None:
    with pytest.raises(ConfigError, match="24 heads do not divide"):
        check_parallel(GenerationSettings(device="cpu", gpus_per_worker=5), transformer_heads=24)
    check_parallel(GenerationSettings(device="cpu", gpus_per_worker=4), transformer_heads=24)


def test_one_device_name_is_refused_for_several_ranks() -> None:
    with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES"):
        GenerationSettings(device="cuda:1", gpus_per_worker=2)
