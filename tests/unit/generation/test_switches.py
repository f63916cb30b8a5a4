"""Every speed switch keeps results correct on the tiny pipeline (CPU)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from streamproc.batching import ShapeKey
from streamproc.errors import ConfigError
from streamproc.generation.base import GenerationRequest
from streamproc.generation.encode import to_uint8
from streamproc.generation.memory import Measurement, MemoryBudget, latent_tokens
from streamproc.generation.runner import RunnerOptions, StagedRunner
from streamproc.generation.wan import WanGenerator, load_pipeline
from streamproc.settings import GenerationSettings

#: uint8 grey levels two equivalent computations may differ by (last-bit kernel differences).
LEVELS = 2

REQUESTS = [
    GenerationRequest("e0", "a red fox in the snow", None, 11),
    GenerationRequest("e1", "a paper boat on a lake", "blurry", 12),
    GenerationRequest("e2", "neon city street at night", None, 13),
]


def shape_of(model_id: str, guidance: float = 5.0) -> ShapeKey:
    return ShapeKey(model_id, 64, 32, 9, 3, guidance)


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> int:
    return max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b, strict=True))


def run(runner: StagedRunner, shape: ShapeKey, requests: list[GenerationRequest]) -> list[Any]:
    stages: dict[str, float] = {}
    videos = runner.frames_for(runner.latents_for(shape, requests, stages), stages)
    assert set(stages) == {"text_encode", "denoise", "vae_decode"}
    return videos


@pytest.mark.parametrize(
    ("batched_cfg", "uniform_timestep"), [(True, True), (False, True), (True, False)]
)
def test_staged_runner_matches_the_plain_pipeline(
    tiny_pipeline: tuple[Any, str], batched_cfg: bool, uniform_timestep: bool
) -> None:
    pipe, model_id = tiny_pipeline
    shape = shape_of(model_id)
    out = pipe(
        prompt=[r.prompt for r in REQUESTS],
        negative_prompt=[r.negative_prompt or "" for r in REQUESTS],
        height=shape.height,
        width=shape.width,
        num_frames=shape.num_frames,
        num_inference_steps=shape.num_inference_steps,
        guidance_scale=shape.guidance_scale,
        generator=[torch.Generator().manual_seed(r.seed) for r in REQUESTS],
        output_type="np",
    ).frames
    reference = [to_uint8(v) for v in out]
    options = RunnerOptions(batched_cfg=batched_cfg, uniform_timestep=uniform_timestep)
    staged = run(StagedRunner(pipe, options), shape, REQUESTS)
    assert max_diff(reference, staged) <= LEVELS


def test_batched_guidance_equals_two_calls(tiny_pipeline: tuple[Any, str]) -> None:
    pipe, model_id = tiny_pipeline
    joint = run(StagedRunner(pipe, RunnerOptions(batched_cfg=True)), shape_of(model_id), REQUESTS)
    split = run(StagedRunner(pipe, RunnerOptions(batched_cfg=False)), shape_of(model_id), REQUESTS)
    assert max_diff(joint, split) <= LEVELS


def test_without_guidance_no_negative_pass_is_made(tiny_pipeline: tuple[Any, str]) -> None:
    pipe, model_id = tiny_pipeline
    calls: list[int] = []
    handle = pipe.transformer.register_forward_hook(
        lambda module, args, kwargs_out: calls.append(1)
    )
    try:
        run(StagedRunner(pipe, RunnerOptions()), shape_of(model_id, guidance=1.0), REQUESTS[:1])
    finally:
        handle.remove()
    assert len(calls) == 3  # one call per step, no uncond pass


def test_bf16_vae_decode_stays_close_to_fp32(tiny_pipeline: tuple[Any, str]) -> None:
    pipe, model_id = tiny_pipeline
    fp32 = run(StagedRunner(pipe, RunnerOptions()), shape_of(model_id), REQUESTS[:1])
    bf16_pipe, _ = load_pipeline(GenerationSettings(device="cpu", vae_dtype="bfloat16"))
    assert bf16_pipe.vae.dtype == torch.bfloat16
    bf16 = run(
        StagedRunner(bf16_pipe, RunnerOptions(vae_dtype=torch.bfloat16)),
        shape_of(model_id),
        REQUESTS[:1],
    )
    diff = np.abs(fp32[0].astype(int) - bf16[0].astype(int))
    assert diff.mean() < 2.0  # bf16 keeps 8 bits of mantissa: close, not identical


async def test_overlapped_decode_gives_the_same_frames(tiny_pipeline: tuple[Any, str]) -> None:
    model_id = tiny_pipeline[1]
    outputs = []
    for overlap in (False, True):
        gen = WanGenerator(
            GenerationSettings(device="cpu", overlap_decode=overlap), loaded=tiny_pipeline
        )
        await gen.start()
        assert gen.max_concurrent_batches == (2 if overlap else 1)
        outputs.append((await gen.generate(shape_of(model_id), REQUESTS)).videos)
        await gen.stop()
    assert max_diff(outputs[0], outputs[1]) == 0


@pytest.mark.slow
async def test_compiled_generator_is_warm_before_the_first_event_and_deterministic(
    tiny_pipeline: tuple[Any, str],
) -> None:
    import torch._dynamo.utils as dynamo_utils

    settings = GenerationSettings(device="cpu", compile=True, warmup_shapes=["64x32x9/3"])
    compiled = WanGenerator(settings, max_batch_size=len(REQUESTS))
    await compiled.start()
    eager = WanGenerator(GenerationSettings(device="cpu"), loaded=tiny_pipeline)
    await eager.start()
    try:
        shape = shape_of(compiled.model_id)
        frames_before = dynamo_utils.counters["stats"]["unique_graphs"]
        batch = await compiled.generate(shape, REQUESTS)
        alone = await compiled.generate(shape, REQUESTS[1:2])
        # The default 'draft' request class runs its step-cache hook around the compiled blocks.
        draft = dataclasses.replace(shape, step_cache=settings.step_cache_classes["draft"].label())
        drafted = await compiled.generate(draft, REQUESTS)
        # The first real calls (batch of 3, then 1, then a draft batch) compiled nothing:
        # warm-up compiled every batch size up to the maximum, and the hook wraps those graphs.
        assert dynamo_utils.counters["stats"]["unique_graphs"] == frames_before
        assert len(drafted.videos) == len(REQUESTS)
        reference = await eager.generate(shape, REQUESTS)
        assert max_diff(batch.videos, reference.videos) <= LEVELS
        assert max_diff([batch.videos[1]], alone.videos) <= LEVELS
        assert compiled.startup_seconds["warmup"] > 0
    finally:
        await compiled.stop()
        await eager.stop()


def test_attention_backend_switch_keeps_frames(tiny_pipeline: tuple[Any, str]) -> None:
    reference_pipe, model_id = tiny_pipeline
    pipe, _ = load_pipeline(GenerationSettings(device="cpu"))
    from streamproc.generation.optimize import apply_attention_backend

    apply_attention_backend(pipe, "_native_math")
    a = run(StagedRunner(reference_pipe, RunnerOptions()), shape_of(model_id), REQUESTS[:1])
    b = run(StagedRunner(pipe, RunnerOptions()), shape_of(model_id), REQUESTS[:1])
    assert max_diff(a, b) <= LEVELS


def test_unknown_attention_backend_is_a_config_error() -> None:
    pipe, _ = load_pipeline(GenerationSettings(device="cpu"))
    from streamproc.generation.optimize import apply_attention_backend

    with pytest.raises(ConfigError, match="attention backend"):
        apply_attention_backend(pipe, "no-such-backend")


def test_fp8_on_a_cpu_is_refused_clearly() -> None:
    from streamproc.generation.optimize import apply_fp8

    pipe, _ = load_pipeline(GenerationSettings(device="cpu"))
    with pytest.raises(ConfigError, match="compute capability"):
        apply_fp8(pipe, torch.device("cpu"))


def test_fp8_with_dtype_auto_loads_bf16_weights_on_cuda() -> None:
    from streamproc.generation.wan import resolve_dtype

    cuda = torch.device("cuda")  # naming a device needs no GPU
    assert resolve_dtype("auto", cuda, fp8=True) == torch.bfloat16
    assert resolve_dtype("auto", cuda) == torch.float16
    assert resolve_dtype("auto", torch.device("cpu"), fp8=True) == torch.float32


def test_fp8_with_half_weights_is_refused_before_torchao_sees_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from streamproc.generation.optimize import apply_fp8

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    pipe = SimpleNamespace(transformer=SimpleNamespace(dtype=torch.float16))
    with pytest.raises(ConfigError, match="bfloat16"):
        apply_fp8(pipe, torch.device("cuda"))


@pytest.mark.parametrize("tuning", [False, True])
def test_fp8_leaves_inductors_global_config_alone_unless_tuning_is_asked_for(
    monkeypatch: pytest.MonkeyPatch, tuning: bool
) -> None:
    # torchao needs a CUDA GPU to quantise; what is checked here is only what streamproc asks
    # of it, through a stand-in module with torchao's names.
    import sys
    from types import ModuleType, SimpleNamespace

    from streamproc.generation.optimize import apply_fp8

    asked: dict[str, Any] = {}
    fake = ModuleType("torchao.quantization")
    fake.PerRow = lambda: "per-row"  # type: ignore[attr-defined]
    fake.Float8DynamicActivationFloat8WeightConfig = lambda **kw: kw  # type: ignore[attr-defined]
    fake.quantize_ = lambda model, config, filter_fn: asked.update(config)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchao.quantization", fake)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    pipe = SimpleNamespace(transformer=SimpleNamespace(dtype=torch.bfloat16))
    apply_fp8(pipe, torch.device("cuda"), kernel_tuning=tuning)
    assert asked == {"granularity": "per-row", "set_inductor_config": tuning}


def test_fp8_with_explicit_half_dtype_is_an_invalid_setting() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="fp8 needs dtype"):
        GenerationSettings(fp8=True, dtype="float16")


@pytest.mark.slow
async def test_a_restarted_compiled_generator_finds_its_graphs_in_the_cache(
    tmp_path: Path,
) -> None:
    settings = GenerationSettings(
        device="cpu", compile=True, warmup_shapes=["64x32x9/3"], compile_cache_dir=tmp_path
    )
    states = []
    for _ in range(2):  # a start, then a restart of the same configuration
        generator = WanGenerator(settings, max_batch_size=1)
        await generator.start()
        states.append((generator.compile_cache_state, generator.startup_detail))
        await generator.stop()
    assert states[0][0] == "cold" and states[1][0] == "warm"
    assert "compile cache warm" in states[1][1]
    key = states[1][1].rsplit("key ", 1)[1].rstrip(")")
    assert (tmp_path / key / "manifest.json").is_file()


def test_memory_budget_caps_batches_by_measured_growth() -> None:
    shape = ShapeKey("m", 832, 480, 17, 16, 5.0)
    gib = 2**30
    budget = MemoryBudget(budget_bytes=60 * gib)
    assert budget.max_batch(shape) is None  # nothing measured (CPU): no cap from memory
    budget.record(
        shape,
        Measurement(
            latent_tokens(shape),
            resident=22 * gib,
            peak_one=25 * gib,
            peak_two=27 * gib,
            decode_peak=26 * gib,
        ),
    )
    # base = 25 - 2 + (26 - 22) = 27 GiB; (60 - 27) / 2 = 16 videos
    assert budget.max_batch(shape) == 16
    # Steps do not matter, guidance off is another measurement (estimated).
    assert budget.max_batch(ShapeKey("m", 832, 480, 17, 40, 5.0)) == 16
    bigger = ShapeKey("m", 1280, 704, 121, 16, 5.0)
    assert 1 <= (budget.max_batch(bigger) or 0) < 16


def test_memory_budget_never_returns_less_than_one() -> None:
    shape = ShapeKey("m", 64, 32, 5, 2, 5.0)
    budget = MemoryBudget(budget_bytes=10)
    budget.record(shape, Measurement(latent_tokens(shape), 5, 50, 100, 60))
    assert budget.max_batch(shape) == 1


def test_latent_tokens_of_the_reference_shape() -> None:
    # 17 frames -> 5 latent frames; 480x832 / 16 / 2 -> 15 x 26 patches.
    assert latent_tokens(ShapeKey("m", 832, 480, 17, 16, 5.0)) == 5 * 15 * 26


def test_text_encoding_equals_the_pipelines_and_is_remembered(
    tiny_pipeline: tuple[Any, str],
) -> None:
    pipe, _ = tiny_pipeline
    runner = StagedRunner(pipe, RunnerOptions())
    with torch.inference_mode():
        ours = runner.encode(REQUESTS, guidance=5.0)
        cond, uncond = pipe.encode_prompt(
            prompt=[r.prompt for r in REQUESTS],
            negative_prompt=[r.negative_prompt or "" for r in REQUESTS],
            max_sequence_length=512,
            device=torch.device("cpu"),
        )
        assert ours.uncond is not None
        assert torch.allclose(ours.cond, cond, atol=1e-5)
        assert torch.allclose(ours.uncond, uncond, atol=1e-5)
        calls: list[int] = []
        handle = pipe.text_encoder.register_forward_hook(lambda *a: calls.append(1))
        try:
            again = runner.encode(REQUESTS, guidance=5.0)
        finally:
            handle.remove()
    assert calls == []  # every text came from the cache
    assert torch.equal(again.cond, ours.cond)


def test_optimizations_are_applied_once_per_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamproc.generation import optimize

    pipe, _ = load_pipeline(GenerationSettings(device="cpu"))
    compiled: list[int] = []
    monkeypatch.setattr(optimize, "apply_compile", lambda p, **kw: compiled.append(1))
    settings = GenerationSettings(device="cpu", compile=True, attention_backend="native")
    first = optimize.apply_optimizations(pipe, settings, torch.device("cpu"))
    second = optimize.apply_optimizations(pipe, settings, torch.device("cpu"))
    assert compiled == [1]
    assert first == second == ["attention=native", "compile"]


def test_compiled_blocks_pin_the_sdpa_kernel_outside_the_graph(
    tiny_pipeline: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pinning backend (``_native_*``) under compile: the blocks call plain SDPA (no
    ``sdpa_kernel`` inside the traced code, which AOTAutograd's cache refuses) while the
    wrapper around each compiled call limits PyTorch to that one kernel; frames unchanged."""
    from streamproc.generation import optimize

    reference_pipe, model_id = tiny_pipeline
    pipe, _ = load_pipeline(GenerationSettings(device="cpu"))
    # Compiling the tiny model on a CPU takes minutes: the wrapping is what is under test.
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: fn)
    settings = GenerationSettings(device="cpu", compile=True, attention_backend="_native_math")
    optimize.apply_optimizations(pipe, settings, torch.device("cpu"))

    seen: list[tuple[bool, bool]] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args: Any, **kwargs: Any) -> Any:
        if inside:  # the transformer's attention, not the text encoder's
            seen.append((torch._C._get_math_sdp_enabled(), torch._C._get_flash_sdp_enabled()))
        return sdpa(*args, **kwargs)

    inside: list[int] = []
    hooks = []
    for transformer in (reference_pipe.transformer, pipe.transformer):
        hooks.append(transformer.register_forward_pre_hook(lambda *a: inside.append(1)))
        hooks.append(transformer.register_forward_hook(lambda *a: inside.clear()))
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    try:
        a = run(StagedRunner(reference_pipe, RunnerOptions()), shape_of(model_id), REQUESTS[:1])
        unpinned, seen[:] = seen[:], []
        b = run(StagedRunner(pipe, RunnerOptions()), shape_of(model_id), REQUESTS[:1])
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) == len(unpinned) > 0
    assert all(math and not flash for math, flash in seen)
    assert all(flash for _, flash in unpinned)  # nothing is pinned without the wrapper
    assert max_diff(a, b) <= LEVELS


async def test_overlapped_decode_warms_up_on_the_thread_that_decodes_batches(
    tiny_pipeline: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-thread CUDA library state (handles, workspaces) is set up at warm-up: on an H200 a
    first batch decoded on a thread the warm-up never used took seconds more."""
    import threading

    threads: list[str] = []
    frames_for = StagedRunner.frames_for

    def spy(self: StagedRunner, *args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return frames_for(self, *args, **kwargs)

    monkeypatch.setattr(StagedRunner, "frames_for", spy)
    for overlap in (True, False):
        threads.clear()
        gen = WanGenerator(
            GenerationSettings(device="cpu", overlap_decode=overlap, warmup_shapes=["64x32x9/1"]),
            loaded=tiny_pipeline,
        )
        await gen.start()
        try:
            assert len(threads) == 1  # the warm-up's decode
            await gen.generate(shape_of(tiny_pipeline[1]), REQUESTS[:1])
        finally:
            await gen.stop()
        assert len(threads) == 2
        assert threads[0] == threads[1]  # warm-up and batch decode on the same thread
        assert threads[0].startswith("streamproc-vae") == overlap
