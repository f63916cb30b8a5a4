"""The resident ``diffusers.WanPipeline``, run on its own thread.

The pipeline is loaded once in :meth:`WanGenerator.start` and kept on the device. Every call
runs on a single dedicated thread, so the event loop keeps polling, heartbeating and publishing
while the model works, and the pipeline (whose scheduler holds per-call state) is never used by
two calls at once.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
import torch
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler, WanPipeline

from streamproc.batching import ShapeKey
from streamproc.errors import ConfigError, GenerationError
from streamproc.generation.base import GeneratedBatch, GenerationRequest
from streamproc.generation.encode import to_uint8
from streamproc.generation.tiny import TINY_MODEL_ID, build_tiny_pipeline
from streamproc.settings import TINY_MODEL, GenerationSettings

log = structlog.get_logger(__name__)

_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def resolve_device(name: str) -> torch.device:
    """``auto`` → the first CUDA device if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"generation.device={name!r} but no CUDA device is available")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` → float16 on CUDA (the product's default), float32 on the CPU."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _DTYPES[name]


def make_scheduler(name: str, base_config: Any, flow_shift: float) -> Any:
    """The flow-matching sampler ``name`` ('unipc' or 'dpm++'), from a pipeline's config."""
    overrides = {
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": True,
        "flow_shift": flow_shift,
    }
    if name == "unipc":
        return UniPCMultistepScheduler.from_config(base_config, **overrides)
    if name == "dpm++":
        return DPMSolverMultistepScheduler.from_config(
            base_config, algorithm_type="dpmsolver++", solver_order=2, **overrides
        )
    raise ConfigError(f"unknown scheduler {name!r} (use 'unipc' or 'dpm++')")


def load_pipeline(settings: GenerationSettings) -> tuple[WanPipeline, str]:
    """Load the configured pipeline onto its device; returns it and its model id."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    if settings.model == TINY_MODEL:
        pipe = build_tiny_pipeline(settings.tiny_seed)
        model_id = f"{TINY_MODEL_ID}@seed{settings.tiny_seed}"
        if dtype != torch.float32:
            # Round-trip through from_pretrained so half precision is applied exactly as for
            # real weights (modules diffusers keeps in fp32 stay in fp32).
            with tempfile.TemporaryDirectory(prefix="streamproc-tiny-") as tmp:
                pipe.save_pretrained(tmp)
                pipe = WanPipeline.from_pretrained(tmp, dtype=dtype)
    else:
        try:
            # Loading with dtype= (not .to) keeps modules diffusers marks fp32-only in fp32.
            pipe = WanPipeline.from_pretrained(settings.model, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load model {settings.model!r}: {exc}") from None
        model_id = settings.model
    if pipe.vae.dtype != torch.float32:
        # The VAE decodes in float32, as the reference pipeline does.
        pipe.vae.to(dtype=torch.float32)
    pipe.scheduler = make_scheduler(settings.scheduler, pipe.scheduler.config, settings.flow_shift)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, model_id


class WanGenerator:
    """A resident WanPipeline behind the :class:`~streamproc.generation.base.Generator` seam."""

    def __init__(
        self, settings: GenerationSettings, *, loaded: tuple[WanPipeline, str] | None = None
    ) -> None:
        """``loaded`` is an already loaded ``(pipeline, model_id)`` to use instead of loading."""
        self._settings = settings
        self._executor: ThreadPoolExecutor | None = None
        self._loaded = loaded
        self._pipe: WanPipeline | None = None
        self._model_id = loaded[1] if loaded else settings.model
        self.device = resolve_device(settings.device)

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def scheduler_name(self) -> str:
        return self._settings.scheduler

    @property
    def pipeline(self) -> WanPipeline:
        """The loaded pipeline (after :meth:`start`)."""
        if self._pipe is None:
            raise GenerationError("generator not started")
        return self._pipe

    async def start(self) -> None:
        if self._pipe is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamproc-gpu")
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        if self._loaded is not None:
            self._pipe, self._model_id = self._loaded
        else:
            self._pipe, self._model_id = await loop.run_in_executor(
                self._executor, load_pipeline, self._settings
            )
        log.info(
            "model_loaded",
            model_id=self._model_id,
            device=str(self.device),
            seconds=round(time.perf_counter() - started, 3),
        )

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._pipe = None

    async def generate(
        self, shape: ShapeKey, requests: Sequence[GenerationRequest]
    ) -> GeneratedBatch:
        if self._executor is None or self._pipe is None:
            raise GenerationError("generator not started")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._generate_sync, shape, requests)

    def _generate_sync(
        self, shape: ShapeKey, requests: Sequence[GenerationRequest]
    ) -> GeneratedBatch:
        pipe = self.pipeline
        started = time.perf_counter()
        # One CPU generator per event: the initial noise of a video depends on its seed alone,
        # not on its neighbours in the batch nor on the device.
        generators = [torch.Generator(device="cpu").manual_seed(r.seed) for r in requests]
        try:
            with torch.inference_mode():
                output = pipe(
                    prompt=[r.prompt for r in requests],
                    negative_prompt=[r.negative_prompt or "" for r in requests],
                    height=shape.height,
                    width=shape.width,
                    num_frames=shape.num_frames,
                    num_inference_steps=shape.num_inference_steps,
                    guidance_scale=shape.guidance_scale,
                    generator=generators,
                    output_type="np",
                    max_sequence_length=self._settings.max_sequence_length,
                )
        except (RuntimeError, ValueError) as exc:
            raise GenerationError(f"{type(exc).__name__}: {exc}") from exc
        videos = [to_uint8(v) for v in output.frames]
        return GeneratedBatch(
            videos=videos, stage_seconds={"pipeline": time.perf_counter() - started}
        )
