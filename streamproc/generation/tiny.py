"""The default model: the Wan2.2-TI2V-5B architecture, tiny and with random weights.

Every component is the real diffusers/transformers class (UMT5 encoder,
``WanTransformer3DModel``, ``AutoencoderKLWan`` with z_dim 48, patch 2 and spatial factor 16,
a UniPC flow-matching scheduler, ``expand_timesteps=True``), only far smaller, so the whole
product runs on a CPU in seconds and produces noise videos. Weights come from a seed: the same
seed gives the same model on every machine. Nothing is downloaded; the tokenizer is a
byte-level one built here, so any UTF-8 prompt tokenizes.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKLWan,
    UniPCMultistepScheduler,
    WanPipeline,
    WanTransformer3DModel,
)
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

from streamproc.generation.vae_configs import TINY_VAE

TINY_MODEL_ID = "streamproc/tiny-wan2.2-ti2v-5b-random"

_SPECIALS = ("<pad>", "</s>", "<unk>")


def byte_tokenizer(model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """A 259-token byte-level tokenizer (pad, eos, unk, then the 256 bytes)."""
    vocab = {token: i for i, token in enumerate(_SPECIALS)}
    for symbol in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )


def build_tiny_pipeline(seed: int = 0) -> WanPipeline:
    """Build the tiny random-weight pipeline (float32, CPU); deterministic in ``seed``."""
    tokenizer = byte_tokenizer()
    # Only the CPU generator is forked and seeded: the model is built on the CPU.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text_encoder = UMT5EncoderModel(
            UMT5Config(
                vocab_size=len(tokenizer),
                d_model=32,
                d_kv=8,
                d_ff=64,
                num_layers=2,
                num_heads=4,
                relative_attention_num_buckets=8,
                feed_forward_proj="gated-gelu",
            )
        ).eval()
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=12,
            in_channels=48,
            out_channels=48,
            text_dim=32,
            freq_dim=32,
            ffn_dim=32,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32,
        ).eval()
        vae = AutoencoderKLWan(**TINY_VAE).eval()
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
    )
    return WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        expand_timesteps=True,
    )
