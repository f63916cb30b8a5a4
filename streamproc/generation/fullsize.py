"""The full-size Wan2.2-TI2V-5B architecture with random weights, for GPU benchmarks.

Same classes and sizes as the released model — transformer of 30 blocks, 24 heads of 128,
FFN 14336, 48 latent channels; the Wan2.2 VAE (z_dim 48, base 160, decoder base 256, patch 2,
spatial 16, temporal 4); a UMT5-XXL-sized text encoder (d_model 4096, 24 layers, 64 heads,
vocabulary 256384) — built from config on the device, no download. Random weights cost the
same FLOPs as real ones; their videos are noise. Select it with ``--model random-5b``.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKLWan,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from transformers import UMT5Config, UMT5EncoderModel

from streamproc.generation.tiny import byte_tokenizer
from streamproc.generation.vae_configs import FULL_VAE

FULL_MODEL = "random-5b"
FULL_MODEL_ID = "streamproc/wan2.2-ti2v-5b-random"


def cast_keeping_fp32(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast ``model`` to ``dtype`` but keep the modules its class marks fp32-only in fp32
    (what ``from_pretrained(dtype=...)`` does for real weights)."""
    torch.nn.Module.to(model, dtype=dtype)  # the plain cast, without diffusers' warning
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    if dtype != torch.float32 and keep:
        for name, module in model.named_modules():
            if any(part in keep for part in name.split(".")):
                torch.nn.Module.to(module, dtype=torch.float32)
    return model


def build_full_random_pipeline(device: torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """Build the full-size architecture directly on ``device`` (weights in ``dtype``,
    fp32-only modules in fp32, VAE in float32 until the caller casts it)."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=24,
            attention_head_dim=128,
            in_channels=48,
            out_channels=48,
            text_dim=4096,
            freq_dim=256,
            ffn_dim=14336,
            num_layers=30,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            rope_max_seq_len=1024,
        ).eval()
        cast_keeping_fp32(transformer, dtype)
        text_encoder = UMT5EncoderModel(
            UMT5Config(
                vocab_size=256384,
                d_model=4096,
                d_kv=64,
                d_ff=10240,
                num_layers=24,
                num_heads=64,
                relative_attention_num_buckets=32,
                relative_attention_max_distance=128,
                feed_forward_proj="gated-gelu",
                tie_word_embeddings=False,
            )
        ).eval()
        cast_keeping_fp32(text_encoder, dtype)
        vae = AutoencoderKLWan(**FULL_VAE).eval()
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
    )
    return WanPipeline(
        tokenizer=byte_tokenizer(),
        text_encoder=text_encoder,
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        expand_timesteps=True,
    )
