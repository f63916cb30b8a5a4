"""Context-parallel generation on the CPU: two real ranks over gloo, the tiny model."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from streamproc.batching import ShapeKey
from streamproc.errors import ConfigError, GenerationError, GeneratorLost
from streamproc.generation.base import BatchCancelled, GenerationRequest, StepControl, Supervised
from streamproc.generation.parallel import ContextParallelGenerator, check_parallel
from streamproc.generation.wan import WanGenerator
from streamproc.settings import GenerationSettings

ROOT = Path(__file__).resolve().parents[3]

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


NO_GROUP = """
import asyncio
from streamproc.generation.parallel import ContextParallelGenerator
from streamproc.settings import GenerationSettings

async def main() -> None:
    generator = ContextParallelGenerator(
        GenerationSettings(device="cpu", gpus_per_worker=2, rank_timeout_s=2)
    )
    generator._spawn = lambda: None  # no rank 1 ever joins
    try:
        await generator.start()
    except Exception as exc:
        print(type(exc).__name__, exc)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_ranks_that_never_form_a_group_fail_the_start_with_one_line(tmp_path: Path) -> None:
    # In a process of its own: a failed rendezvous leaves torch.distributed's process-wide
    # state behind (a worker whose start failed exits anyway).
    script = tmp_path / "no_group.py"
    script.write_text(NO_GROUP)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert "GeneratorLost the 2 ranks did not form a group within 2 s" in done.stdout, done.stderr


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


async def test_a_clip_whose_tokens_do_not_split_fails_alone_and_the_group_goes_on(
    two_ranks: ContextParallelGenerator,
) -> None:
    # 96x32x1: one latent frame of 1 x 3 patches, 3 tokens for 2 ranks.
    odd = ShapeKey(two_ranks.model_id, 96, 32, 1, 2, 5.0)
    with pytest.raises(GenerationError, match="3 latent tokens, which do not split evenly"):
        await two_ranks.generate(odd, REQUESTS[:1])
    even = await two_ranks.generate(shape_of(two_ranks.model_id), REQUESTS[:1])
    assert len(even.videos) == 1


async def test_a_fully_cancelled_batch_runs_every_step_on_every_rank_and_is_not_decoded(
    two_ranks: ContextParallelGenerator,
) -> None:
    """One GPU stops a fully cancelled batch at the next step; over ranks that would leave the
    others waiting in a collective. So the ranks finish the steps together, nothing is
    decoded, and the group serves the next batch."""
    shape = shape_of(two_ranks.model_id)
    progress: list[int] = []
    control = StepControl(2, on_step=lambda done, total: progress.append(done))
    control.cancel(0)
    control.cancel(1)
    with pytest.raises(BatchCancelled):
        await asyncio.wait_for(two_ranks.generate(shape, REQUESTS, control), 120)
    assert control.steps_done == shape.num_inference_steps
    assert progress[-1] == shape.num_inference_steps
    after = await asyncio.wait_for(two_ranks.generate(shape, REQUESTS[:1]), 120)
    assert len(after.videos) == 1
