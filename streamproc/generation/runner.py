"""Staged execution of a ``WanPipeline``: text encode → noise → denoise → decode.

Same arithmetic as ``WanPipeline.__call__`` (tests compare the two on the tiny model), split
into stages so that each can be tuned and timed on its own:

* classifier-free guidance can run cond and uncond as **one batched transformer call**
  (``batched_cfg``) instead of two;
* the VAE decodes **one video at a time** in its own dtype (bf16 on CUDA by default), which
  never runs out of memory the way the pipeline's batched fp32 decode does, with the strategy
  of :mod:`streamproc.generation.decode`;
* frames become uint8 on the device, so only bytes cross to the host;
* every stage reports its seconds (CUDA is synchronised at stage boundaries).

A runner keeps no per-call state (each call gets a fresh scheduler), so the denoising of one
batch and the decoding of another may run on different threads.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from streamproc.batching import ShapeKey
from streamproc.generation.base import Frames, GenerationRequest, StepControl
from streamproc.generation.decode import DecodeOptions, VideoDecoder, build_decoder
from streamproc.generation.profiles import ModelProfile
from streamproc.generation.textgraph import GraphedTextEncoder


@dataclass(frozen=True)
class RunnerOptions:
    """How the stages run."""

    batched_cfg: bool = True
    vae_dtype: torch.dtype = torch.float32
    max_sequence_length: int = 512
    text_cache_size: int = 256
    vae_channels_last: bool = False
    uniform_timestep: bool = True
    #: On CUDA, replay the text encoder as CUDA graphs (textgraph.GraphedTextEncoder).
    text_encoder_graphs: bool = False
    #: How to sample (scheduler, shift, explicit timesteps); None: a fresh copy of the
    #: pipeline's own scheduler.
    profile: ModelProfile | None = None


@dataclass
class Encoded:
    """Text embeddings of one batch (``uncond`` is None without guidance)."""

    cond: torch.Tensor
    uncond: torch.Tensor | None


class StagedRunner:
    """Runs a loaded ``WanPipeline`` stage by stage."""

    def __init__(
        self, pipe: Any, options: RunnerOptions, decoder: VideoDecoder | None = None
    ) -> None:
        """``decoder`` turns latents into videos (default: diffusers' VAE decode)."""
        self.pipe = pipe
        self.options = options
        self.decoder = decoder or build_decoder(
            pipe.vae,
            DecodeOptions(dtype=options.vae_dtype, channels_last=options.vae_channels_last),
        )
        # Only the denoising thread encodes text, so this needs no lock.
        self._text_cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.text_encoder = (
            GraphedTextEncoder(pipe.text_encoder, max_tokens=options.max_sequence_length)
            if options.text_encoder_graphs
            else None
        )

    @property
    def device(self) -> torch.device:
        """Where the denoiser runs."""
        device: torch.device = self.pipe.transformer.device
        return device

    def _sync(self) -> None:
        # Only this thread's stream: a device-wide sync would also wait for the decode of the
        # previous batch running on another stream, and serialise the overlap.
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def _timed(self, stages: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        out = fn()
        self._sync()
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - started
        return out

    def prepare_text_graphs(self, texts: int, tokens: int) -> int:
        """Record the text encoder's CUDA graphs for calls of up to ``texts`` texts and
        ``tokens`` tokens now (warm-up) rather than on first use; how many were recorded."""
        if self.text_encoder is None:
            return 0
        return self.text_encoder.prepare(texts, tokens)

    # -- stages ----------------------------------------------------------------------------

    def encode(self, requests: Sequence[GenerationRequest], guidance: float) -> Encoded:
        """UMT5 embeddings of the prompts (and negative prompts when guidance is on).

        Equal to ``WanPipeline.encode_prompt``: each text's embedding is its real tokens
        followed by zeros up to ``max_sequence_length``. Two differences in cost only: the
        encoder runs on the longest text of the call instead of always 512 tokens (padding is
        masked out, so real tokens come out the same), and recent texts are remembered (the
        negative prompt is usually the same empty string for every event).
        """
        cfg = guidance > 1.0
        texts = [r.prompt for r in requests]
        if cfg:
            texts += [r.negative_prompt or "" for r in requests]
        rows = self._embed(texts)
        width = self.options.max_sequence_length
        padded = torch.stack(
            [torch.cat([row, row.new_zeros(width - row.shape[0], row.shape[1])]) for row in rows]
        )
        padded = padded.to(self.pipe.transformer.dtype)
        n = len(requests)
        return Encoded(padded[:n], padded[n:] if cfg else None)

    def _embed(self, texts: list[str]) -> list[torch.Tensor]:
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            tokens = self.pipe.tokenizer(
                [prompt_clean(t) for t in missing],
                padding="longest",
                max_length=self.options.max_sequence_length,
                truncation=True,
                add_special_tokens=True,
                return_attention_mask=True,
                return_tensors="pt",
            )
            encoder = self.pipe.text_encoder
            mask = tokens.attention_mask.to(encoder.device)
            if self.text_encoder is not None:
                hidden = self.text_encoder(tokens.input_ids, mask)
            else:
                hidden = encoder(tokens.input_ids.to(encoder.device), mask).last_hidden_state
            for text, row, length in zip(missing, hidden, mask.sum(dim=1).tolist(), strict=True):
                self._text_cache[text] = row[:length].to(self.device)
        out = []
        for text in texts:
            self._text_cache.move_to_end(text)
            out.append(self._text_cache[text])
        while len(self._text_cache) > self.options.text_cache_size:
            self._text_cache.popitem(last=False)
        return out

    @staticmethod
    def generators(requests: Sequence[GenerationRequest]) -> list[torch.Generator]:
        """One CPU generator per event, seeded with its seed: the initial noise and, for a
        renoising sampler, every later draw come from it, so a video depends on its seed
        alone, never on its batch."""
        return [torch.Generator(device="cpu").manual_seed(r.seed) for r in requests]

    def noise(
        self,
        shape: ShapeKey,
        requests: Sequence[GenerationRequest],
        generators: list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """Initial latents, drawn from each event's generator (fresh ones unless given)."""
        generators = generators if generators is not None else self.generators(requests)
        latents: torch.Tensor = self.pipe.prepare_latents(
            len(requests),
            self.pipe.transformer.config.in_channels,
            shape.height,
            shape.width,
            shape.num_frames,
            torch.float32,
            self.device,
            generators,
        )
        return latents

    def scheduler_for(self, steps: int) -> Any:
        """A fresh scheduler set up for ``steps`` steps (the profile's, or the pipeline's)."""
        pipe = self.pipe
        profile = self.options.profile
        if profile is not None:
            scheduler = profile.make_scheduler(pipe.scheduler.config)
            profile.set_timesteps(scheduler, steps, self.device)
            return scheduler
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        scheduler.set_timesteps(steps, device=self.device)
        scheduler.set_begin_index(0)
        return scheduler

    def denoise(
        self,
        latents: torch.Tensor,
        text: Encoded,
        shape: ShapeKey,
        generators: list[torch.Generator] | None = None,
        control: StepControl | None = None,
    ) -> torch.Tensor:
        """The sampling loop (flow matching, ``expand_timesteps`` as in Wan2.2-TI2V-5B).

        A renoising sampler (``lcm``) predicts the clean latent at each step and noises it to
        the next sigma with fresh noise drawn from ``generators`` (one per video, continuing
        where the initial noise left off); without guidance each step is exactly one
        transformer pass.
        """
        pipe = self.pipe
        transformer = pipe.transformer
        scheduler = self.scheduler_for(shape.num_inference_steps)
        profile = self.options.profile
        step_kwargs: dict[str, Any] = {}
        if profile is not None and profile.stochastic:
            if generators is None or len(generators) != latents.shape[0]:
                raise ValueError("a renoising sampler needs one generator per video")
            step_kwargs["generator"] = generators
        guidance = shape.guidance_scale
        cfg = text.uncond is not None
        batch = latents.shape[0]
        _, p_h, p_w = transformer.config.patch_size
        tokens = latents.shape[2] * (latents.shape[3] // p_h) * (latents.shape[4] // p_w)
        per_token = self.pipe.config.expand_timesteps and not self.options.uniform_timestep

        def timesteps(t: torch.Tensor, n: int) -> torch.Tensor:
            # Wan2.2 TI2V gives every latent token its own timestep (so an image-conditioned
            # first frame can differ). For text-to-video they are all equal: one timestep per
            # video gives the same values while skipping the per-token time embedding
            # (B x tokens x 6 x dim) that every block would otherwise read.
            if per_token:
                return t.float().expand(n, tokens).contiguous()
            return t.float().expand(n).contiguous()

        dtype = transformer.dtype
        joint = self.options.batched_cfg and cfg
        embeds = torch.cat([text.cond, text.uncond]) if joint and text.uncond is not None else None
        for step, t in enumerate(scheduler.timesteps):
            x = latents.to(dtype)
            context = {
                "step_index": step,
                "sigma": float(scheduler.sigmas[step]),
                "num_inference_steps": len(scheduler.timesteps),
            }
            if joint:
                timestep = timesteps(t, 2 * batch)
                with transformer.cache_context("cfg", **context):
                    both = transformer(
                        hidden_states=torch.cat([x, x]),
                        timestep=timestep,
                        encoder_hidden_states=embeds,
                        return_dict=False,
                    )[0]
                cond_out, uncond_out = both.chunk(2)
                noise = uncond_out + guidance * (cond_out - uncond_out)
            else:
                timestep = timesteps(t, batch)
                with transformer.cache_context("cond", **context):
                    noise = transformer(
                        hidden_states=x,
                        timestep=timestep,
                        encoder_hidden_states=text.cond,
                        return_dict=False,
                    )[0]
                if cfg:
                    with transformer.cache_context("uncond", **context):
                        uncond_out = transformer(
                            hidden_states=x,
                            timestep=timestep,
                            encoder_hidden_states=text.uncond,
                            return_dict=False,
                        )[0]
                    noise = uncond_out + guidance * (noise - uncond_out)
            latents = scheduler.step(noise, t, latents, return_dict=False, **step_kwargs)[0]
            if control is not None:
                # A step boundary: report progress; stop when every video was cancelled.
                control.step(step + 1, len(scheduler.timesteps))
        return latents

    def decode(self, latents: torch.Tensor, control: StepControl | None = None) -> list[Frames]:
        """Decode each video on its own (``self.decoder``), straight to uint8 frames; a row
        ``control`` cancelled is not decoded (an empty array stands in)."""
        videos: list[Frames] = []
        for i in range(latents.shape[0]):
            if control is not None and control.skip(i):
                videos.append(np.zeros((0, 0, 0, 3), dtype=np.uint8))
                continue
            video = self.decoder(latents[i : i + 1])  # (1, 3, F, H, W) in [-1, 1]
            frames = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            videos.append(frames.permute(1, 2, 3, 0).contiguous().cpu().numpy())
        return videos

    # -- whole calls -----------------------------------------------------------------------

    @torch.inference_mode()
    def latents_for(
        self,
        shape: ShapeKey,
        requests: Sequence[GenerationRequest],
        stages: dict[str, float],
        control: StepControl | None = None,
    ) -> torch.Tensor:
        """Text encode, noise and denoise: the denoiser's part of a call."""
        text = self._timed(
            stages, "text_encode", lambda: self.encode(requests, shape.guidance_scale)
        )
        generators = self.generators(requests)
        latents = self.noise(shape, requests, generators)
        out: torch.Tensor = self._timed(
            stages, "denoise", lambda: self.denoise(latents, text, shape, generators, control)
        )
        return out

    @torch.inference_mode()
    def frames_for(
        self, latents: torch.Tensor, stages: dict[str, float], control: StepControl | None = None
    ) -> list[Frames]:
        """The decoder's part of a call."""
        videos: list[Frames] = self._timed(
            stages, "vae_decode", lambda: self.decode(latents, control)
        )
        return videos
