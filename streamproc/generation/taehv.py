"""A tiny video decoder of the TAEHV family, for Wan2.2 latents (opt-in: ``decode = "tiny"``).

TAEHV (madebyollin/taehv) is a small convolutional autoencoder trained to map a video model's
latents to frames at a fraction of the full VAE's cost. Its published decoder is a plain stack
of 2-D convolutions applied to every latent frame, with three kinds of temporal layer:

* a *memory block* mixes each frame with the block's input at the previous frame (zeros
  before the first), through three 3x3 convolutions and a skip;
* a *time-grow* layer multiplies the frame count by a stride with a 1x1 convolution whose
  output channels hold the new frames side by side;
* nearest-neighbour upsampling doubles the frame size.

For Wan2.2-TI2V-5B (``taew2_2``) the latents have 48 channels, frames grow 1 → 1 → 2 → 4
(the first ``4 - 1`` decoded frames are dropped, so ``T`` latent frames give ``4T - 3``
frames, as the Wan VAE does) and the last convolution emits 2x2 pixel patches. This module is
written from that description; the layer order and parameter names follow the published
layout so its state dict (``taew2_2.pth`` or the ``.safetensors`` conversion) loads as is.
The decoder reads the latents the transformer produces, *without* the VAE's mean/std
normalisation, and returns frames in [0, 1].

Random weights (the default without a weights file) decode to noise: they show the cost, never
the quality, of this decoder.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: Channels per decoder stage, widest first (as published).
WIDTHS = (256, 128, 64, 64)


def _conv3x3(c_in: int, c_out: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)


class SoftClamp(nn.Module):
    """Squashes latents smoothly into (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemoryBlock(nn.Module):
    """A residual block that also sees its input one frame earlier."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv3x3(2 * c_in, c_out),
            nn.ReLU(),
            _conv3x3(c_out, c_out),
            nn.ReLU(),
            _conv3x3(c_out, c_out),
        )
        self.skip: nn.Module = (
            nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([x, previous], dim=1)) + self.skip(x))


class TimeGrow(nn.Module):
    """Turns each frame into ``stride`` frames (a 1x1 convolution, then a reshape)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, channels, height, width = x.shape
        grown: torch.Tensor = self.conv(x)
        # Channel group k of frame t becomes frame t * stride + k.
        return grown.reshape(frames * self.stride, channels, height, width)


def _one_frame_earlier(x: torch.Tensor, videos: int) -> torch.Tensor:
    """``x`` (videos*frames, C, H, W) shifted one frame later in time, zeros first."""
    seq = x.reshape(videos, -1, *x.shape[1:])
    return F.pad(seq, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1].reshape(x.shape)


class TinyVideoDecoder(nn.Module):
    """TAEHV-family decoder: latents (B, C, T, h, w) → frames (B, 3, F, H, W) in [0, 1]."""

    def __init__(
        self,
        latent_channels: int = 48,
        patch_size: int = 2,
        time_upscale: tuple[bool, bool, bool] = (False, True, True),
    ) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.patch_size = patch_size
        self.time_scale = 2 ** sum(time_upscale)
        w = WIDTHS
        layers: list[nn.Module] = [SoftClamp(), _conv3x3(latent_channels, w[0]), nn.ReLU()]
        for stage in range(3):
            c = w[stage]
            layers += [MemoryBlock(c, c), MemoryBlock(c, c), MemoryBlock(c, c)]
            layers += [nn.Upsample(scale_factor=2), TimeGrow(c, 2 if time_upscale[stage] else 1)]
            layers.append(_conv3x3(c, w[stage + 1], bias=False))
        layers += [nn.ReLU(), _conv3x3(w[3], 3 * patch_size**2)]
        # Index positions are part of the published parameter names ("decoder.3.conv.0...").
        self.decoder = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        videos, channels, frames, height, width = latents.shape
        if channels != self.latent_channels:
            raise ValueError(f"expected {self.latent_channels} latent channels, got {channels}")
        # Every frame at once: the time dimension rides along in the batch dimension.
        x = latents.transpose(1, 2).reshape(videos * frames, channels, height, width)
        for layer in self.decoder:
            x = (
                layer(x, _one_frame_earlier(x, videos))
                if isinstance(layer, MemoryBlock)
                else layer(x)
            )
        x = F.pixel_shuffle(x, self.patch_size).clamp(0, 1)
        out = x.reshape(videos, -1, *x.shape[1:])[:, self.time_scale - 1 :]
        return out.transpose(1, 2)

    def load_published(self, state: dict[str, torch.Tensor]) -> None:
        """Load a published TAEHV state dict (encoder weights, if present, are ignored).

        A checkpoint trained with a time-growing first stage has twice the rows in that
        layer's convolution; as published, the rows of the last new frame are kept.
        """
        own = self.state_dict()
        picked: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if not key.startswith("decoder."):
                continue
            target = own.get(key)
            if (
                target is not None
                and key.endswith(".conv.weight")
                and value.ndim == 4
                and value.shape[1:] == target.shape[1:]
                and value.shape[0] > target.shape[0]
            ):
                value = value[-target.shape[0] :]
            picked[key] = value
        self.load_state_dict(picked, strict=True)


def load_tiny_decoder(path: Path | None, *, seed: int = 0) -> TinyVideoDecoder:
    """The decoder with weights from ``path`` (``.pth`` or ``.safetensors``), or random
    weights from ``seed`` when ``path`` is None."""
    if path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return TinyVideoDecoder().eval()
    decoder = TinyVideoDecoder().eval()
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    decoder.load_published(state)
    return decoder
