"""Constructor arguments of the two random-weight Wan2.2 VAEs, as plain data.

Kept apart from the pipeline builders so that a script that needs only the VAE (the decode
benchmark on a bare GPU host) can build it from ``torch`` and ``diffusers`` alone.
"""

from __future__ import annotations

from typing import Any

#: The released Wan2.2-TI2V-5B VAE: z_dim 48, base 160 (decoder 256), patch 2, spatial 16,
#: temporal 4. Latents are normalised by the pipeline, so mean 0 / std 1 here.
FULL_VAE: dict[str, Any] = {
    "base_dim": 160,
    "decoder_base_dim": 256,
    "z_dim": 48,
    "in_channels": 12,
    "out_channels": 12,
    "is_residual": True,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    "latents_mean": [0.0] * 48,
    "latents_std": [1.0] * 48,
}

#: The same architecture with every stage one residual block of 4 channels (CPU in seconds).
TINY_VAE: dict[str, Any] = {
    "base_dim": 4,
    "z_dim": 48,
    "in_channels": 12,
    "out_channels": 12,
    "is_residual": True,
    "patch_size": 2,
    "latents_mean": [0.0] * 48,
    "latents_std": [1.0] * 48,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    "temperal_downsample": [False, True, True],
}
