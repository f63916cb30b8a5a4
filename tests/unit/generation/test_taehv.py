"""The TAEHV-family tiny decoder: shapes for Wan2.2 latents, causality, published layout,
weights that round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from streamproc.generation.decode import DecodeOptions, build_decoder
from streamproc.generation.taehv import TinyVideoDecoder, load_tiny_decoder
from streamproc.generation.vae_configs import TINY_VAE


def latents(batch: int, latent_frames: int, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 48, latent_frames, 3, 5, generator=generator)


def run(decoder: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        out: torch.Tensor = decoder(z)
    return out


@pytest.mark.parametrize(("latent_frames", "frames"), [(1, 1), (2, 5), (5, 17), (13, 49)])
def test_wan22_latents_become_frames_like_the_vae(latent_frames: int, frames: int) -> None:
    out = run(load_tiny_decoder(None), latents(2, latent_frames))
    # 16x spatial (8x upsampling, then 2x2 pixel patches), 4x temporal less the first 3.
    assert out.shape == (2, 3, frames, 48, 80)
    assert out.min() >= 0 and out.max() <= 1


def test_frames_depend_only_on_earlier_latents() -> None:
    decoder = load_tiny_decoder(None)
    z = latents(1, 5)
    changed = z.clone()
    changed[:, :, 4] += 1.0
    a, b = run(decoder, z), run(decoder, changed)
    # Latent frame 4 decodes to frames 13..16; frames 0..12 come from latents 0..3 only.
    assert torch.equal(a[:, :, :13], b[:, :, :13])
    assert not torch.equal(a[:, :, 13:], b[:, :, 13:])


def test_videos_of_a_batch_do_not_mix() -> None:
    decoder = load_tiny_decoder(None)
    z = latents(2, 3)
    together = run(decoder, z)
    assert torch.allclose(together[1:], run(decoder, z[1:]), atol=1e-5)


def test_random_weights_follow_the_seed() -> None:
    z = latents(1, 2)
    assert torch.equal(
        run(load_tiny_decoder(None, seed=1), z), run(load_tiny_decoder(None, seed=1), z)
    )
    assert not torch.equal(
        run(load_tiny_decoder(None, seed=1), z), run(load_tiny_decoder(None, seed=2), z)
    )


def test_parameter_names_follow_the_published_layout() -> None:
    keys = set(TinyVideoDecoder().state_dict())
    assert {
        "decoder.1.weight",
        "decoder.3.conv.0.weight",
        "decoder.3.conv.4.bias",
        "decoder.7.conv.weight",
        "decoder.8.weight",
        "decoder.13.conv.weight",
        "decoder.19.conv.weight",
        "decoder.20.weight",
        "decoder.22.weight",
        "decoder.22.bias",
    } <= keys
    assert "decoder.8.bias" not in keys  # stage projections have no bias
    assert TinyVideoDecoder().state_dict()["decoder.1.weight"].shape == (256, 48, 3, 3)
    assert TinyVideoDecoder().state_dict()["decoder.22.weight"].shape == (12, 64, 3, 3)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_saved_weights_load_back(tmp_path: Path, suffix: str) -> None:
    source = load_tiny_decoder(None, seed=5)
    state = {f"decoder.{k.split('.', 1)[1]}": v for k, v in source.state_dict().items()}
    path = tmp_path / f"taew2_2{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = load_tiny_decoder(path)
    z = latents(1, 3)
    assert torch.equal(run(loaded, z), run(source, z))
    assert not torch.equal(run(loaded, z), run(load_tiny_decoder(None, seed=6), z))


def test_published_checkpoint_with_encoder_and_wider_first_time_layer_loads(
    tmp_path: Path,
) -> None:
    source = load_tiny_decoder(None, seed=5)
    state = dict(source.state_dict())
    # Published files also hold the encoder, and may carry two frames' rows in the first
    # time layer; the decoder keeps the last frame's rows.
    state["encoder.0.weight"] = torch.zeros(64, 12, 3, 3)
    last = state["decoder.7.conv.weight"]
    state["decoder.7.conv.weight"] = torch.cat([torch.full_like(last, 9.0), last])
    path = tmp_path / "taew2_2.pth"
    torch.save(state, path)
    loaded = load_tiny_decoder(path)
    assert torch.equal(loaded.state_dict()["decoder.7.conv.weight"], last)
    z = latents(1, 2)
    assert torch.equal(run(loaded, z), run(source, z))


def test_incomplete_checkpoint_is_refused(tmp_path: Path) -> None:
    state = dict(TinyVideoDecoder().state_dict())
    del state["decoder.22.bias"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(RuntimeError, match=r"decoder\.22\.bias"):
        load_tiny_decoder(path)


def test_tiny_strategy_gives_vae_range_frames() -> None:
    from diffusers import AutoencoderKLWan

    vae = AutoencoderKLWan(**TINY_VAE).eval()
    decoder = build_decoder(vae, DecodeOptions(strategy="tiny", tiny_seed=4))
    z = latents(1, 5)
    with torch.inference_mode():
        video = decoder(z)
    direct = run(load_tiny_decoder(None, seed=4), z)
    assert video.shape == (1, 3, 17, 48, 80)
    assert torch.allclose(video, direct * 2 - 1)
    assert decoder.label == "taehv:random@seed4"
