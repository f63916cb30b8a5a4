"""Step-cache hooks per request class: attached for one call only, and they do skip work."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pydantic
import pytest

from streamproc.errors import ConfigError, GenerationError
from streamproc.generation.stepcache import StepCaches
from streamproc.generation.wan import WanGenerator
from streamproc.settings import GenerationSettings, StepCacheSpec
from tests.unit.generation.test_switches import REQUESTS, max_diff, shape_of

#: A threshold no residual change reaches: every step after the first reuses the cache.
ALWAYS = StepCacheSpec(kind="first-block", threshold=1e6)
#: A threshold nothing is below: every step computes every block.
NEVER = StepCacheSpec(kind="first-block", threshold=1e-12)
#: MagCache with flat ratios and a generous error budget: skips after the first step.
MAG = StepCacheSpec(
    kind="mag", threshold=10.0, max_skip_steps=2, retention_ratio=0.0, mag_ratios=[1.0, 1.0, 1.0]
)


@contextmanager
def counting_block_work(generator: WanGenerator) -> Iterator[dict[str, int]]:
    """Counts feed-forward calls inside the transformer blocks (skipped blocks make none)."""
    seen = {"ffn": 0}
    handles = [
        block.ffn.register_forward_hook(lambda *_: seen.__setitem__("ffn", seen["ffn"] + 1))
        for block in generator.pipeline.transformer.blocks
    ]
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture
async def generator(tiny_pipeline: tuple[Any, str]) -> Any:
    settings = GenerationSettings(
        device="cpu", step_cache_classes={"draft": ALWAYS, "careful": NEVER, "mag": MAG}
    )
    gen = WanGenerator(settings, loaded=tiny_pipeline)
    await gen.start()
    yield gen
    await gen.stop()


async def test_a_draft_batch_skips_blocks_and_a_standard_batch_computes_all(
    generator: WanGenerator,
) -> None:
    standard = shape_of(generator.model_id)
    draft = dataclasses.replace(standard, step_cache=ALWAYS.label())
    with counting_block_work(generator) as seen:
        before = await generator.generate(standard, REQUESTS)
    full = seen["ffn"]
    with counting_block_work(generator) as seen:
        drafted = await generator.generate(draft, REQUESTS)
    blocks = len(generator.pipeline.transformer.blocks)
    steps = standard.num_inference_steps
    assert full == blocks * steps  # cond + uncond in one call per step
    # Only the first step runs every block; later steps run the first block alone.
    assert seen["ffn"] == blocks + (steps - 1)
    assert all(v.shape == (9, 32, 64, 3) for v in drafted.videos)
    assert max_diff(before.videos, drafted.videos) > 0
    # The hook left with its batch: the next standard batch equals the first one.
    with counting_block_work(generator) as seen:
        after = await generator.generate(standard, REQUESTS)
    assert seen["ffn"] == full
    assert max_diff(before.videos, after.videos) == 0


async def test_a_hook_that_never_fires_keeps_the_frames(generator: WanGenerator) -> None:
    standard = shape_of(generator.model_id)
    careful = dataclasses.replace(standard, step_cache=NEVER.label())
    plain = await generator.generate(standard, REQUESTS)
    hooked = await generator.generate(careful, REQUESTS)
    assert max_diff(plain.videos, hooked.videos) == 0


async def test_a_mag_cache_class_skips_blocks(generator: WanGenerator) -> None:
    shape = dataclasses.replace(shape_of(generator.model_id), step_cache=MAG.label())
    with counting_block_work(generator) as seen:
        result = await generator.generate(shape, REQUESTS)
    blocks = len(generator.pipeline.transformer.blocks)
    assert 0 < seen["ffn"] < blocks * shape.num_inference_steps
    assert all(v.shape == (9, 32, 64, 3) for v in result.videos)


async def test_an_unknown_step_cache_fails_the_batch_clearly(generator: WanGenerator) -> None:
    shape = dataclasses.replace(shape_of(generator.model_id), step_cache="first-block:0.42")
    with pytest.raises(GenerationError, match=r"'first-block:0\.42' is not configured"):
        await generator.generate(shape, REQUESTS[:1])


def test_labels_name_kind_and_thresholds(tiny_pipeline: tuple[Any, str]) -> None:
    assert StepCacheSpec(kind="first-block", threshold=0.1).label() == "first-block:0.1"
    mag = StepCacheSpec(kind="mag", threshold=0.06, mag_ratios=[1.0, 0.99, 0.98])
    assert mag.label() == "mag:0.06/3/0.2"
    caches = StepCaches({"a": mag, "b": NEVER})
    transformer = tiny_pipeline[0].transformer
    for label in (mag.label(), NEVER.label()):
        with caches.attached(transformer, label, 3):
            assert transformer.is_cache_enabled
        assert not transformer.is_cache_enabled


def test_mag_cache_needs_calibrated_ratios() -> None:
    with pytest.raises(pydantic.ValidationError, match="needs mag_ratios"):
        StepCacheSpec(kind="mag", threshold=0.06)


@pytest.mark.parametrize("name", ["standard", " "])
def test_reserved_or_blank_class_names_are_refused(name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="cannot name a step-cache class"):
        GenerationSettings(step_cache_classes={name: NEVER})


def test_a_mag_cache_diffusers_refuses_is_a_config_error() -> None:
    bad = StepCacheSpec.model_construct(
        kind="mag", threshold=0.06, max_skip_steps=3, retention_ratio=0.2, mag_ratios=None
    )
    with pytest.raises(ConfigError, match=r"step cache 'mag:0\.06/3/0\.2'"):
        StepCaches({"draft": bad})
