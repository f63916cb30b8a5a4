"""Decode strategies: the chunked and compiled VAE decodes give diffusers' frames; the tiny
decoder's shapes, causality and weights; how settings pick them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan
from pydantic import ValidationError

from streamproc.batching import ShapeKey
from streamproc.generation.base import GenerationRequest
from streamproc.generation.decode import (
    COMPILED_REGIONS,
    FUSED_NORM_ACTIVATIONS,
    DecodeOptions,
    allow_multi_frame_first_chunk,
    build_decoder,
)
from streamproc.generation.vae_configs import TINY_VAE
from streamproc.generation.wan import WanGenerator, model_id_for
from streamproc.settings import GenerationSettings

#: float32 through the tiny VAE: different time-axis lengths change summation order only.
FP32_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def vae() -> Any:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return AutoencoderKLWan(**TINY_VAE).eval()


def latents(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    """Normalised latents for ``frames`` video frames (1 + 4k) of 32x64 pixels."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 48, 1 + (frames - 1) // 4, 2, 4, generator=generator)


_references: dict[tuple[int, int, int], torch.Tensor] = {}


def reference(vae: Any, batch: int, frames: int) -> torch.Tensor:
    """diffusers' decode of ``latents(batch, frames)`` (computed once: it is the slow one)."""
    key = (id(vae), batch, frames)
    if key not in _references:
        _references[key] = decode(vae, latents(batch, frames), strategy="diffusers")
    return _references[key]


def decode(vae: Any, z: torch.Tensor, **options: Any) -> torch.Tensor:
    with torch.inference_mode():
        return build_decoder(vae, DecodeOptions(**options))(z)


def assert_informative(video: torch.Tensor) -> None:
    # Equality would be empty if random weights saturated every value at the clamp.
    assert (video.abs() < 0.99).float().mean() > 0.5
    assert video.std() > 0.1


@pytest.mark.parametrize(
    ("frames", "batch", "chunk"),
    [
        (17, 1, 0),
        (17, 2, 0),
        (49, 1, 0),
        (49, 2, 0),
        (17, 1, 2),
        (49, 1, 4),
        (9, 2, 1),
        (5, 2, 0),
        (1, 1, 0),
    ],
)
def test_chunked_decode_gives_diffusers_frames(
    vae: Any, frames: int, batch: int, chunk: int
) -> None:
    expected = reference(vae, batch, frames)
    chunked = decode(vae, latents(batch, frames), strategy="chunked", chunk_frames=chunk)
    assert expected.shape == (batch, 3, frames, 32, 64)
    assert chunked.shape == expected.shape
    assert_informative(expected)
    assert (chunked - expected).abs().max() <= FP32_TOLERANCE


def test_chunked_decode_in_bfloat16_is_within_bf16_tolerance(vae: Any) -> None:
    half = AutoencoderKLWan(**TINY_VAE).eval()
    half.load_state_dict(vae.state_dict())
    torch.nn.Module.to(half, dtype=torch.bfloat16)
    z = latents(1, 17)
    expected = decode(half, z, strategy="diffusers", dtype=torch.bfloat16).float()
    chunked = decode(half, z, strategy="chunked", dtype=torch.bfloat16).float()
    # Rounding to bf16 moves the frames (so the test can tell); a longer time axis per
    # convolution moves them no more than two grey levels.
    assert (expected - reference(vae, 1, 17)).abs().max() > 0
    assert (chunked - expected).abs().max() <= 2 / 127.5


def test_first_chunk_wrapper_leaves_diffusers_decode_unchanged() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = AutoencoderKLWan(**TINY_VAE).eval()
    z = latents(2, 17)
    with torch.inference_mode():
        before = vae.decode(z, return_dict=False)[0]
        allow_multi_frame_first_chunk(vae.decoder)
        allow_multi_frame_first_chunk(vae.decoder)  # idempotent
        after = vae.decode(z, return_dict=False)[0]
    assert torch.equal(before, after)


def test_chunked_decode_leaves_no_state_on_the_vae(vae: Any) -> None:
    z = latents(1, 17)
    first = decode(vae, z, strategy="chunked")
    decode(vae, latents(1, 17, seed=7), strategy="chunked", chunk_frames=2)
    assert torch.equal(decode(vae, z, strategy="chunked"), first)


def test_compiled_decode_runs_on_cpu_and_gives_diffusers_frames(vae: Any) -> None:
    # Passes of two latent frames: the first chunk holds the clip's first frame and one more,
    # the last is shorter, caches cross passes inside the one compiled graph.
    options = DecodeOptions(
        strategy="compiled", chunk_frames=2, cuda_graphs=True, compile_backend="eager"
    )
    decoder = build_decoder(vae, options)
    assert not decoder.cuda_graphs  # type: ignore[attr-defined]  # CUDA graphs need CUDA
    z = latents(1, 9)
    with torch.inference_mode():
        out = decoder(z)
        again = decoder(z)
    assert (out - reference(vae, 1, 9)).abs().max() <= FP32_TOLERANCE
    assert torch.equal(out, again)


def test_compiled_decode_compiles_regions_only_during_its_calls(vae: Any) -> None:
    decoder = build_decoder(vae, DecodeOptions(strategy="compiled", compile_backend="eager"))
    kinds = {type(m).__name__ for m in vae.decoder.modules()}
    assert set(COMPILED_REGIONS) <= kinds  # diffusers still names the modules compiled
    regions = [m for m in vae.decoder.modules() if type(m).__name__ in COMPILED_REGIONS]
    forwards = [m.forward for m in regions]
    seen: list[bool] = []
    original = regions[0].forward

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(True)
        return original(*args, **kwargs)

    with torch.inference_mode():
        decoder(latents(1, 5))
    # Afterwards the VAE is as diffusers left it: another decoder of it runs eagerly.
    assert [m.forward for m in regions] == forwards
    regions[0].forward = spy  # type: ignore[method-assign]
    try:
        decode(vae, latents(1, 5), strategy="chunked")
    finally:
        regions[0].forward = original  # type: ignore[method-assign]
    assert seen


def test_fused_norm_activation_regions_give_the_same_frames_and_leave_the_vae_as_it_was(
    vae: Any,
) -> None:
    owners = [m for m in vae.decoder.modules() if type(m).__name__ in FUSED_NORM_ACTIVATIONS]
    assert {type(m).__name__ for m in owners} == set(FUSED_NORM_ACTIVATIONS)
    activations = [m.nonlinearity for m in owners]
    assert all(isinstance(a, torch.nn.SiLU) for a in activations)
    seen: list[type] = []
    original = type(owners[0]).forward

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(type(self.nonlinearity))
        return original(self, *args, **kwargs)

    z = latents(1, 9)
    expected = reference(vae, 1, 9)
    for fuse in (True, False):
        seen.clear()
        decoder = build_decoder(
            vae,
            DecodeOptions(strategy="compiled", compile_backend="eager", fuse_activations=fuse),
        )
        owners[0].forward = spy.__get__(owners[0])  # type: ignore[method-assign]
        try:
            with torch.inference_mode():
                out = decoder(z)
        finally:
            del owners[0].forward
        assert (out - expected).abs().max() <= FP32_TOLERANCE
        assert decoder.fallback is None  # type: ignore[attr-defined]
        # Fused: the activation runs inside the norm's region, the module's own is an identity
        # (twice: the compiled pass and the eager check, which sees diffusers' SiLU).
        compiled_sees = torch.nn.Identity if fuse else torch.nn.SiLU
        assert seen[0] is compiled_sees and seen[-1] is torch.nn.SiLU
        assert [m.nonlinearity for m in owners] == activations


@torch._dynamo.register_backend(name="streamproc_test_off_by_one")  # type: ignore[misc]
def _off_by_one(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
    """A miscompiling backend: every floating-point output of a graph is off by one."""

    def shift(t: torch.Tensor) -> torch.Tensor:
        return t + 1.0 if t.is_floating_point() else t

    def run(*args: Any) -> Any:
        out = gm(*args)
        return type(out)(shift(t) for t in out) if isinstance(out, (tuple, list)) else shift(out)

    return run


def test_compiled_frames_that_disagree_with_the_eager_decode_are_never_returned(
    vae: Any, caplog: pytest.LogCaptureFixture
) -> None:
    decoder = build_decoder(
        vae, DecodeOptions(strategy="compiled", compile_backend="streamproc_test_off_by_one")
    )
    expected = reference(vae, 1, 9)
    with torch.inference_mode():
        first = decoder(latents(1, 9))
        again = decoder(latents(1, 9))
    assert (first - expected).abs().max() <= FP32_TOLERANCE
    assert (again - expected).abs().max() <= FP32_TOLERANCE
    reason = decoder.fallback  # type: ignore[attr-defined]
    assert reason is not None and "from the eager decode" in reason
    assert "decode_compiled_mismatch" in caplog.text


@torch._dynamo.register_backend(name="streamproc_test_broken")  # type: ignore[misc]
def _broken(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
    """A compiler that fails on every graph, as inductor can on a toolchain it does not know."""
    raise RuntimeError("no C compiler for this graph")


def test_a_compiler_that_fails_costs_speed_not_the_batch(
    vae: Any, caplog: pytest.LogCaptureFixture
) -> None:
    decoder = build_decoder(
        vae, DecodeOptions(strategy="compiled", compile_backend="streamproc_test_broken")
    )
    with torch.inference_mode():
        first = decoder(latents(1, 9))
        again = decoder(latents(1, 9))
    expected = reference(vae, 1, 9)
    assert (first - expected).abs().max() <= FP32_TOLERANCE
    assert (again - expected).abs().max() <= FP32_TOLERANCE
    reason = decoder.fallback  # type: ignore[attr-defined]
    assert reason is not None and "no C compiler" in reason and "decoding eagerly" in reason
    assert "decode_compiled_failed" in caplog.text
    # The VAE is left as diffusers made it, for the eager decodes that follow.
    assert all(
        "forward" not in vars(m) or vars(m)["forward"] == m.forward for m in vae.decoder.modules()
    )
    assert all(
        isinstance(m.nonlinearity, torch.nn.SiLU)
        for m in vae.decoder.modules()
        if hasattr(m, "nonlinearity")
    )


def test_compiled_decode_checks_each_shape_once(vae: Any) -> None:
    decoder = build_decoder(vae, DecodeOptions(strategy="compiled", compile_backend="eager"))
    with torch.inference_mode():
        decoder(latents(1, 5))
        decoder(latents(1, 5, seed=3))
        decoder(latents(2, 5))
    assert decoder.checked == {  # type: ignore[attr-defined]
        (1, 48, 2, 2, 4),
        (2, 48, 2, 2, 4),
    }
    assert decoder.fallback is None  # type: ignore[attr-defined]


def test_unknown_strategy_is_refused(vae: Any) -> None:
    with pytest.raises(ValueError, match="unknown decode strategy"):
        build_decoder(vae, DecodeOptions(strategy="fast"))


def test_full_vae_strategies_keep_the_model_id() -> None:
    base = model_id_for(GenerationSettings())
    for strategy in ("diffusers", "chunked", "compiled"):
        assert model_id_for(GenerationSettings(decode=strategy)) == base


def test_tiny_decoder_is_part_of_the_model_id(tmp_path: Path) -> None:
    base = model_id_for(GenerationSettings())
    assert model_id_for(GenerationSettings(decode="tiny")) == f"{base}+taehv:random@seed0"
    weights = tmp_path / "taew2_2.pth"
    weights.write_bytes(b"one")
    one = model_id_for(GenerationSettings(decode="tiny", tiny_decoder_path=weights))
    weights.write_bytes(b"two")
    two = model_id_for(GenerationSettings(decode="tiny", tiny_decoder_path=weights))
    assert one.startswith(f"{base}+taehv:taew2_2@")
    assert one != two


def test_cuda_graphs_need_the_compiled_decode() -> None:
    with pytest.raises(ValidationError, match="decode_cuda_graphs"):
        GenerationSettings(decode="chunked", decode_cuda_graphs=True)
    assert GenerationSettings(decode="compiled", decode_cuda_graphs=True).decode_cuda_graphs


def test_missing_tiny_decoder_weights_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no tiny decoder weights"):
        GenerationSettings(decode="tiny", tiny_decoder_path=tmp_path / "absent.pth")


# -- through the generator ---------------------------------------------------------------


def requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(f"e{i}", f"a lighthouse, take {i}", None, 50 + i) for i in range(n)]


async def generate(settings: GenerationSettings, n: int = 2) -> tuple[str, list[np.ndarray]]:
    generator = WanGenerator(settings)
    await generator.start()
    try:
        shape = ShapeKey(generator.model_id, 64, 32, 9, 2, 1.0)
        out = await generator.generate(shape, requests(n))
    finally:
        await generator.stop()
    return generator.model_id, out.videos


async def test_generator_with_chunked_decode_gives_the_same_videos() -> None:
    _, reference = await generate(GenerationSettings(device="cpu"))
    _, chunked = await generate(GenerationSettings(device="cpu", decode="chunked"))
    for a, b in zip(reference, chunked, strict=True):
        assert a.shape == b.shape == (9, 32, 64, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


async def test_generator_with_tiny_decoder_makes_videos_under_its_own_model_id() -> None:
    model_id, videos = await generate(GenerationSettings(device="cpu", decode="tiny"))
    assert model_id.endswith("+taehv:random@seed0")
    assert [v.shape for v in videos] == [(9, 32, 64, 3)] * 2
    assert all(v.dtype == np.uint8 for v in videos)
    assert len(np.unique(videos[0])) > 4  # not a constant image
    assert not np.array_equal(videos[0], videos[1])
