"""Model profiles: few-step samplers on the tiny pipeline, event defaults, cache separation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
from diffusers import FlowMatchLCMScheduler

from streamproc.batching import ShapeKey
from streamproc.cache.base import scope_of
from streamproc.errors import ConfigError, InvalidEventError
from streamproc.events import DeadLetterReason, GenerationParameters, decode_prompt
from streamproc.generation.base import GenerationRequest
from streamproc.generation.profiles import BUILTIN_PROFILES, ModelProfile, load_profile
from streamproc.generation.runner import RunnerOptions, StagedRunner
from streamproc.generation.tiny import TINY_MODEL_ID
from streamproc.generation.wan import WanGenerator, load_pipeline, model_id_for
from streamproc.settings import GenerationSettings, load_settings
from streamproc.storage.base import object_key

FASTWAN = BUILTIN_PROFILES["fastwan2.2-ti2v-5b-dmd3"]
WAN = BUILTIN_PROFILES["wan2.2-ti2v-5b"]
REQUESTS = [
    GenerationRequest("e0", "a red fox in the snow", None, 21),
    GenerationRequest("e1", "a paper boat on a lake", None, 22),
]


def shape(model_id: str, steps: int, guidance: float = 1.0) -> ShapeKey:
    return ShapeKey(model_id, 64, 32, 9, steps, guidance)


@pytest.fixture(scope="module")
def lcm_pipeline() -> tuple[Any, str]:
    """A tiny pipeline of this module's own: tests here replace its scheduler."""
    return load_pipeline(GenerationSettings(device="cpu", profile=FASTWAN.name))


class TransformerCalls:
    """Counts transformer forwards and records the batch and timestep each one saw."""

    def __init__(self, transformer: Any) -> None:
        self.batches: list[int] = []
        self.timesteps: list[list[float]] = []
        self._handle = transformer.register_forward_pre_hook(self._seen, with_kwargs=True)

    def _seen(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        self.batches.append(int(kwargs["hidden_states"].shape[0]))
        self.timesteps.append(kwargs["timestep"].flatten().tolist())

    def __enter__(self) -> TransformerCalls:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


def pipeline_latents(pipe: Any, request: GenerationRequest, key: ShapeKey) -> torch.Tensor:
    """diffusers' own call. Its LCM steps draw from the global generator: put that in the state
    the event's generator has after the initial noise, which is where the runner draws from."""
    torch.manual_seed(request.seed)
    torch.randn(1, 48, (key.num_frames - 1) // 4 + 1, key.height // 16, key.width // 16)
    out: torch.Tensor = pipe(
        prompt=request.prompt,
        height=key.height,
        width=key.width,
        num_frames=key.num_frames,
        num_inference_steps=key.num_inference_steps,
        guidance_scale=key.guidance_scale,
        generator=torch.Generator().manual_seed(request.seed),
        output_type="latent",
    ).frames
    return out


def runner_latents(
    pipe: Any, profile: ModelProfile, key: ShapeKey, requests: list[GenerationRequest]
) -> torch.Tensor:
    runner = StagedRunner(pipe, RunnerOptions(profile=profile))
    return runner.latents_for(key, requests, {})


def test_renoising_sampler_matches_the_diffusers_pipeline(lcm_pipeline: tuple[Any, str]) -> None:
    pipe, model_id = lcm_pipeline
    profile = ModelProfile(name="lcm4", sampler="lcm", shift=5.0, steps=4, guidance=1.0)
    pipe.scheduler = profile.make_scheduler(pipe.scheduler.config)
    key = shape(model_id, 4)
    reference = pipeline_latents(pipe, REQUESTS[0], key)
    ours = runner_latents(pipe, profile, key, REQUESTS[:1])
    assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-4)


class _FixedTimestepsLCM(FlowMatchLCMScheduler):
    """diffusers' LCM scheduler pinned to FastWan's timesteps (WanPipeline passes only a step
    count to ``set_timesteps``)."""

    def set_timesteps(self, num_inference_steps: Any = None, device: Any = None, **kw: Any) -> None:
        super().set_timesteps(timesteps=[1000.0, 757.0, 522.0], device=device)


def test_explicit_timesteps_match_the_diffusers_pipeline(lcm_pipeline: tuple[Any, str]) -> None:
    pipe, model_id = lcm_pipeline
    pipe.scheduler = _FixedTimestepsLCM(shift=1.0)
    key = shape(model_id, 3)
    reference = pipeline_latents(pipe, REQUESTS[1], key)
    ours = runner_latents(pipe, FASTWAN, key, REQUESTS[1:])
    assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-4)


def test_the_transformer_sees_the_profile_timesteps(tiny_pipeline: tuple[Any, str]) -> None:
    pipe, model_id = tiny_pipeline
    with TransformerCalls(pipe.transformer) as calls:
        runner_latents(pipe, FASTWAN, shape(model_id, 3), REQUESTS)
    assert [sorted(set(t)) for t in calls.timesteps] == [[1000.0], [757.0], [522.0]]


def test_guidance_one_runs_exactly_one_transformer_pass_per_step(
    tiny_pipeline: tuple[Any, str],
) -> None:
    pipe, model_id = tiny_pipeline
    with TransformerCalls(pipe.transformer) as calls:
        runner_latents(pipe, FASTWAN, shape(model_id, 3, guidance=1.0), REQUESTS)
    # Three steps, one call each, the two videos and no unconditional copies.
    assert calls.batches == [2, 2, 2]


def test_guidance_above_one_runs_the_unconditional_pass(tiny_pipeline: tuple[Any, str]) -> None:
    pipe, model_id = tiny_pipeline
    with TransformerCalls(pipe.transformer) as calls:
        runner_latents(pipe, WAN, shape(model_id, 2, guidance=5.0), REQUESTS)
    assert calls.batches == [4, 4]  # cond and uncond batched: what the count above rules out


def test_a_renoised_video_depends_on_its_seed_not_its_batch(
    tiny_pipeline: tuple[Any, str],
) -> None:
    pipe, model_id = tiny_pipeline
    key = shape(model_id, 3)
    batch = runner_latents(pipe, FASTWAN, key, REQUESTS)
    alone = runner_latents(pipe, FASTWAN, key, REQUESTS[1:])
    assert torch.allclose(batch[1:], alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(batch[0], batch[1], atol=1e-2)


def test_a_renoising_runner_needs_the_event_generators(tiny_pipeline: tuple[Any, str]) -> None:
    pipe, model_id = tiny_pipeline
    runner = StagedRunner(pipe, RunnerOptions(profile=FASTWAN))
    key = shape(model_id, 3)
    text = runner.encode(REQUESTS, 1.0)
    with pytest.raises(ValueError, match="one generator per video"):
        runner.denoise(runner.noise(key, REQUESTS), text, key)


async def test_generator_reports_the_profile_in_model_id_and_scheduler(
    tiny_pipeline: tuple[Any, str],
) -> None:
    gen = WanGenerator(GenerationSettings(device="cpu", profile=FASTWAN.name), loaded=tiny_pipeline)
    assert gen.model_id == f"{tiny_pipeline[1]}#lcm:shift=1:t=1000,757,522"
    assert gen.scheduler_name == "lcm:shift=1:t=1000,757,522"
    await gen.start()
    try:
        out = await gen.generate(shape(gen.model_id, 3), REQUESTS[:1])
    finally:
        await gen.stop()
    assert out.videos[0].shape == (9, 32, 64, 3)


def test_default_profile_keeps_the_model_id_and_scheduler_name() -> None:
    settings = GenerationSettings(device="cpu")
    assert model_id_for(settings) == f"{TINY_MODEL_ID}@seed0"
    assert settings.model_profile.sampler_label() == "unipc"
    assert GenerationSettings(scheduler="dpm++").model_profile.sampler_label() == "dpm++"


# -- events get the profile's defaults ---------------------------------------------------


def limits_for(profile: str) -> Any:
    settings = load_settings(generation={"profile": profile, "model": "FastVideo/FastWan"})
    return settings.event_limits(model_id_for(settings.generation))


def test_an_event_without_steps_or_guidance_gets_the_profile_defaults() -> None:
    event = decode_prompt(b'{"event_id": "a", "prompt": "a fox"}', limits_for(FASTWAN.name))
    assert (event.num_inference_steps, event.guidance_scale) == (3, 1.0)
    standard = decode_prompt(b'{"event_id": "a", "prompt": "a fox"}', limits_for(WAN.name))
    assert (standard.num_inference_steps, standard.guidance_scale) == (16, 5.0)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [("num_inference_steps", 16, "exactly 3 steps"), ("guidance_scale", 5.0, "without")],
)
def test_a_distilled_profile_refuses_other_steps_or_guidance(
    field: str, value: float, says: str
) -> None:
    raw = f'{{"event_id": "a", "prompt": "a fox", "{field}": {value}}}'.encode()
    with pytest.raises(InvalidEventError) as caught:
        decode_prompt(raw, limits_for(FASTWAN.name))
    assert caught.value.reason == DeadLetterReason.UNSUPPORTED_PARAMETER
    assert says in caught.value.detail


def test_an_event_naming_the_checkpoint_runs_under_any_of_its_profiles() -> None:
    raw = b'{"event_id": "a", "prompt": "a fox", "model": "FastVideo/FastWan"}'
    assert decode_prompt(raw, limits_for(FASTWAN.name)).model == "FastVideo/FastWan"
    other = b'{"event_id": "a", "prompt": "a fox", "model": "Wan-AI/Other"}'
    with pytest.raises(InvalidEventError):
        decode_prompt(other, limits_for(FASTWAN.name))


# -- two profiles never share a cache entry or an object key ------------------------------


def served(profile: str, **overrides: Any) -> tuple[str, str]:
    settings = GenerationSettings(model="org/weights", profile=profile, **overrides)
    return model_id_for(settings), settings.model_profile.sampler_label()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((WAN.name, {}), (FASTWAN.name, {})),
        ((FASTWAN.name, {}), ("wan2.2-ti2v-5b-turbo", {})),
        ((WAN.name, {}), (WAN.name, {"scheduler": "dpm++"})),
        ((WAN.name, {}), (WAN.name, {"flow_shift": 8.0})),
    ],
)
def test_profiles_with_different_samplers_never_share_scope_or_key(
    a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]]
) -> None:
    event = decode_prompt(
        b'{"event_id": "a", "prompt": "a fox", "num_inference_steps": 4, "guidance_scale": 1.0}'
    )
    keys = []
    for profile, overrides in (a, b):
        model_id, label = served(profile, **overrides)
        params = GenerationParameters(
            width=event.width,
            height=event.height,
            num_frames=event.num_frames,
            num_inference_steps=4,
            guidance_scale=1.0,
            seed=event.effective_seed(),
            scheduler=label,
            fps=16,
        )
        keys.append((scope_of(event, model_id, None).key(), object_key(model_id, "a fox", params)))
    assert keys[0][0] != keys[1][0]
    assert keys[0][1] != keys[1][1]


def test_the_same_profile_keeps_its_scope_and_key() -> None:
    assert served(FASTWAN.name) == served(FASTWAN.name)
    model_id, _ = served(WAN.name)
    assert model_id == "org/weights"  # the default sampler adds nothing: existing keys hold


# -- profile files and settings -----------------------------------------------------------


def test_a_profile_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\nsampler = "lcm"\nshift = 1.0\ntimesteps = [1000, 600, 300]\n'
        "steps = 3\nguidance = 1.0\nguidance_fixed = true\n"
    )
    profile = load_profile(str(path))
    assert profile.timesteps == (1000, 600, 300)
    assert GenerationSettings(profile=str(path)).model_profile == profile


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('name = "x"\nsampler = "unipc"\ntimesteps = [1000, 500]\nsteps = 2\n', "euler"),
        ('name = "x"\nsampler = "lcm"\ntimesteps = [500, 1000]\nsteps = 2\n', "descending"),
        ('name = "x"\nsampler = "lcm"\ntimesteps = [1000, 500]\nsteps = 4\n', "steps must"),
        ('name = "x"\nguidance = 5.0\nguidance_fixed = true\n', "without guidance"),
        ('name = "x"\nsampler = "ddim"\n', "sampler"),
    ],
)
def test_a_bad_profile_file_is_refused_with_the_reason(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=says):
        load_profile(str(path))


def test_an_unknown_profile_name_is_refused_naming_the_built_in_ones() -> None:
    with pytest.raises(ConfigError, match=re.escape(FASTWAN.name)):
        load_settings(generation={"profile": "nope"})


def test_a_sampler_override_that_breaks_the_profile_is_refused() -> None:
    # FastWan's explicit timesteps need a renoising or Euler sampler.
    with pytest.raises(ConfigError, match="euler"):
        load_settings(generation={"profile": FASTWAN.name, "scheduler": "unipc"})
