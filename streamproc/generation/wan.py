"""The resident ``diffusers.WanPipeline``, run on its own thread.

The pipeline is loaded once in :meth:`WanGenerator.start`, optimised as configured, warmed up
for the configured shapes and kept on the device. Text encoding and denoising run on one
dedicated thread (the "GPU thread"), so the event loop keeps polling, heartbeating and
publishing while the model works and the transformer is never entered twice at once. With
``overlap_decode`` the VAE decode runs on a second thread with its own CUDA stream, so one
batch decodes while the next denoises.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import structlog
import torch
from diffusers import WanPipeline

from streamproc.batching import ShapeKey
from streamproc.errors import ConfigError, GenerationError
from streamproc.generation.base import (
    BatchCancelled,
    GeneratedBatch,
    GenerationRequest,
    StepControl,
)
from streamproc.generation.batchsize import (
    StoredThroughput,
    ThroughputProfile,
    rate,
    shape_label,
)
from streamproc.generation.compile_cache import CacheState, CompileCache, device_name, fingerprint
from streamproc.generation.decode import build_decoder, model_id_suffix, options_from_settings
from streamproc.generation.fullsize import FULL_MODEL, FULL_MODEL_ID, build_full_random_pipeline
from streamproc.generation.memory import Measurement, MemoryBudget, latent_tokens
from streamproc.generation.optimize import (
    FP8_GEMM_BACKENDS,
    apply_optimizations,
    set_conv3d_memory_format,
)
from streamproc.generation.profiles import ModelProfile
from streamproc.generation.runner import RunnerOptions, StagedRunner
from streamproc.generation.stepcache import StepCaches
from streamproc.generation.tiny import TINY_MODEL_ID, build_tiny_pipeline
from streamproc.settings import TINY_MODEL, BatchSettings, GenerationSettings, parse_shape_spec

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


def resolve_dtype(name: str, device: torch.device, *, fp8: bool = False) -> torch.dtype:
    """``auto`` → float16 on CUDA (the product's default; bfloat16 under fp8, which
    quantises from bf16), float32 on the CPU."""
    if name == "auto":
        if device.type != "cuda":
            return torch.float32
        return torch.bfloat16 if fp8 else torch.float16
    return _DTYPES[name]


def resolve_vae_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` → bfloat16 on CUDA (as fast as fp16, no overflow), float32 on the CPU."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[name]


def weights_id_for(settings: GenerationSettings) -> str:
    """The id of the weights ``settings`` load (without loading them)."""
    # A decoder whose frames differ from the VAE's is part of the model (and so of the cache
    # scope and the object key).
    suffix = model_id_suffix(settings)
    if settings.model == FULL_MODEL:
        return f"{FULL_MODEL_ID}@seed{settings.tiny_seed}{suffix}"
    if settings.model == TINY_MODEL:
        return f"{TINY_MODEL_ID}@seed{settings.tiny_seed}{suffix}"
    return settings.model + suffix


def model_id_for(settings: GenerationSettings) -> str:
    """The model id a worker serving ``settings`` reports (without loading anything): the
    weights, and the sampler of the model profile unless it is the default."""
    return settings.model_profile.model_id(weights_id_for(settings))


def load_pipeline(settings: GenerationSettings) -> tuple[WanPipeline, str]:
    """Load the configured pipeline onto its device; returns it and its model id."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device, fp8=settings.fp8)
    if settings.model == FULL_MODEL:
        if device.type != "cuda":
            raise ConfigError(f"model {FULL_MODEL!r} (full size, random weights) needs a GPU")
        pipe = build_full_random_pipeline(device, dtype, settings.tiny_seed)
    elif settings.model == TINY_MODEL:
        pipe = build_tiny_pipeline(settings.tiny_seed)
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
    vae_dtype = resolve_vae_dtype(settings.vae_dtype, device)
    if pipe.vae.dtype != vae_dtype:
        pipe.vae.to(dtype=vae_dtype)
    pipe.scheduler = settings.model_profile.make_scheduler(pipe.scheduler.config)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, model_id_for(settings)


class WanGenerator:
    """A resident WanPipeline behind the :class:`~streamproc.generation.base.Generator` seam."""

    def __init__(
        self,
        settings: GenerationSettings,
        *,
        loaded: tuple[WanPipeline, str] | None = None,
        max_batch_size: int = 4,
        batch: BatchSettings | None = None,
        on_loaded: Callable[[WanPipeline], None] | None = None,
    ) -> None:
        """``loaded`` is an already loaded ``(pipeline, model_id)`` to use instead of loading;
        ``max_batch_size`` is the largest batch warm-up prepares (compiled graphs are static
        per batch size); ``batch`` brings the batch-size policy (default: 'largest');
        ``on_loaded`` runs on the GPU thread once the pipeline is on its device, before the
        speed switches (context parallelism hooks the transformer there)."""
        self._settings = settings
        self._max_batch = max_batch_size
        self._batch = batch or BatchSettings(max_batch_size=max_batch_size)
        #: Chosen batch sizes per warm-up shape (size_policy 'throughput'), after start().
        self.throughput: ThroughputProfile | None = None
        self._loaded = loaded
        self._on_loaded = on_loaded
        self._pipe: WanPipeline | None = None
        self._runner: StagedRunner | None = None
        self._profile = settings.model_profile
        # A loaded pipeline's id names its weights; the profile decides the sampler suffix.
        self._model_id = (
            self._profile.model_id(loaded[1].partition("#")[0])
            if loaded
            else model_id_for(settings)
        )
        self.device = resolve_device(settings.device)
        self._step_caches = StepCaches(settings.step_cache_classes)
        self._gpu: Executor | None = None
        self._decoder: ThreadPoolExecutor | None = None
        self._decode_stream: Any = None
        self.budget: MemoryBudget | None = None
        self.startup_seconds: dict[str, float] = {}
        #: One entry per warm-up call: shape, batch size, seconds, graphs it compiled.
        self.warmup_calls: list[dict[str, Any]] = []
        self.compile_cache: CompileCache | None = None

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def scheduler_name(self) -> str:
        """The model profile's sampler label (``unipc``, ``lcm:shift=1:t=1000,757,522``)."""
        return self._profile.sampler_label()

    @property
    def profile(self) -> ModelProfile:
        """The model profile in force."""
        return self._profile

    @property
    def max_concurrent_batches(self) -> int:
        """Batches in flight at once: two when decoding overlaps the next denoise."""
        return 2 if self._settings.overlap_decode else 1

    def max_batch_size(self, shape: ShapeKey) -> int | None:
        """The largest batch of ``shape`` to run: what fits the memory budget, lowered to the
        size the throughput policy chose (None: no limit known)."""
        limits = [
            limit
            for limit in (
                self.budget.max_batch(shape) if self.budget is not None else None,
                self.throughput.max_batch(shape) if self.throughput is not None else None,
            )
            if limit is not None
        ]
        return min(limits) if limits else None

    @property
    def chosen_batch_sizes(self) -> dict[str, int]:
        """The batch size the throughput policy chose per warm-up shape (empty: policy off)."""
        return dict(self.throughput.chosen) if self.throughput is not None else {}

    @property
    def batch_throughput(self) -> dict[str, dict[int, float]]:
        """Videos per second by batch size, per warm-up shape, as measured or stored."""
        if self.throughput is None:
            return {}
        return {
            label: {n: rate(n, s) for n, s in seconds.items()}
            for label, seconds in self.throughput.seconds.items()
        }

    @property
    def compile_cache_state(self) -> CacheState:
        """Whether the compiled graphs came from the persistent cache at start."""
        return self.compile_cache.state if self.compile_cache is not None else "off"

    @property
    def startup_detail(self) -> str:
        """How the start went, for the readiness probe's ``model`` check."""
        if self.compile_cache is None:
            return "warmed up" + ("; compile cache off" if self._settings.compile else "")
        return f"warmed up; compile cache {self.compile_cache.state} (key {self.compile_cache.key})"

    @property
    def pipeline(self) -> WanPipeline:
        """The loaded pipeline (after :meth:`start`)."""
        if self._pipe is None:
            raise GenerationError("generator not started")
        return self._pipe

    async def start(self) -> None:
        if self._pipe is not None:
            return
        self._gpu = self._gpu_executor()
        if self._settings.overlap_decode:
            self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamproc-vae")
        loop = asyncio.get_running_loop()
        self.startup_seconds, self.warmup_calls = {}, []
        started = time.perf_counter()
        if self._loaded is not None:
            self._pipe = self._loaded[0]
        else:
            self._pipe, self._model_id = await loop.run_in_executor(
                self._gpu, load_pipeline, self._settings
            )
        if self._on_loaded is not None:
            await loop.run_in_executor(self._gpu, self._on_loaded, self.pipeline)
        self.startup_seconds["load"] = time.perf_counter() - started
        log.info(
            "model_loaded", model_id=self._model_id, load_s=round(self.startup_seconds["load"], 3)
        )
        vae_dtype = resolve_vae_dtype(self._settings.vae_dtype, self.device)
        if self.pipeline.vae.dtype != vae_dtype:
            self.pipeline.vae.to(dtype=vae_dtype)
        set_conv3d_memory_format(self.pipeline.vae, self._settings.vae_channels_last)
        started = time.perf_counter()
        applied = await loop.run_in_executor(
            self._gpu, apply_optimizations, self._pipe, self._settings, self.device
        )
        self.startup_seconds["optimize"] = time.perf_counter() - started
        pipe = self.pipeline
        self._runner = StagedRunner(
            pipe,
            RunnerOptions(
                batched_cfg=self._settings.batched_cfg,
                vae_dtype=pipe.vae.dtype,
                max_sequence_length=self._settings.max_sequence_length,
                vae_channels_last=self._settings.vae_channels_last,
                profile=self._profile,
                text_encoder_graphs=self._settings.text_encoder_cuda_graphs,
            ),
            decoder=build_decoder(pipe.vae, options_from_settings(self._settings, pipe.vae.dtype)),
        )
        if self.device.type == "cuda":
            self._decode_stream = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            total = torch.cuda.get_device_properties(self.device).total_memory
            self.budget = MemoryBudget(int(total * self._settings.memory_fraction))
        self.compile_cache = self._open_compile_cache()
        if self.compile_cache is not None:
            await loop.run_in_executor(self._gpu, self.compile_cache.load)
            self.startup_seconds["compile_cache_load"] = self.compile_cache.seconds["load"]
        started = time.perf_counter()
        await loop.run_in_executor(self._gpu, self._warm_up)
        self.startup_seconds["warmup"] = time.perf_counter() - started
        if self.compile_cache is not None and self.compile_cache.state != "warm":
            # Everything this start compiled, for the next one (a warm entry is complete:
            # every input of the graphs is part of its key).
            await loop.run_in_executor(self._gpu, self.compile_cache.save)
            self.startup_seconds["compile_cache_save"] = self.compile_cache.seconds.get("save", 0.0)
        log.info(
            "model_ready",
            model_id=self._model_id,
            device=str(self.device),
            optimizations=applied,
            compile_cache=self.compile_cache_state,
            graphs_compiled=sum(c["graphs"] for c in self.warmup_calls),
            **{f"{k}_s": round(v, 3) for k, v in self.startup_seconds.items()},
        )

    def _gpu_executor(self) -> Executor:
        """The one thread that loads the model, encodes text and denoises."""
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamproc-gpu")

    def run_latents(self, shape: ShapeKey, requests: Sequence[GenerationRequest]) -> None:
        """Denoise one call on the GPU thread and wait for it, discarding the latents (what a
        context-parallel rank other than 0 does with each call rank 0 sends it)."""
        runner = self._require_runner()
        assert self._gpu is not None
        self._gpu.submit(self._latents, runner, shape, requests, {}).result()

    def _open_compile_cache(self) -> CompileCache | None:
        """This configuration's entry of the persistent compile cache (None: not compiling,
        or no directory configured)."""
        settings = self._settings
        if not settings.compile or settings.compile_cache_dir is None:
            return None
        pipe = self.pipeline
        return CompileCache(
            settings.compile_cache_dir,
            fingerprint(
                model_id=self._model_id,
                transformer_config=pipe.transformer.config,
                dtype=str(pipe.transformer.dtype),
                fp8=settings.fp8,
                attention_backend=settings.attention_backend,
                shapes=[_graph_shape(spec, self._profile) for spec in settings.warmup_shapes],
                batch_sizes=list(range(1, self._max_batch + 1)),
                options={
                    "dynamic_batch": settings.compile_dynamic_batch,
                    "gemm_backends": FP8_GEMM_BACKENDS if settings.fp8 else "default",
                    "fp8_kernel_tuning": settings.fp8 and settings.fp8_kernel_tuning,
                    "batched_cfg": settings.batched_cfg,
                    "tf32": settings.tf32,
                    "max_sequence_length": settings.max_sequence_length,
                },
                device=device_name(self.device),
            ),
        )

    def _warm_up(self) -> None:
        """Run each configured shape at the batch sizes that trigger compilation, then measure
        memory for the budget (and, with size_policy 'throughput', the time per batch size).
        Runs on the GPU thread before any event is read."""
        profile = self._profile
        if self._batch.size_policy == "throughput":
            self.throughput = ThroughputProfile(self._batch.min_batch_gain)
        for spec in self._settings.warmup_shapes:
            width, height, frames, steps, guidance = parse_shape_spec(
                spec, profile.steps, profile.guidance
            )
            # One denoising step is enough: every step calls the transformer with the same
            # shapes, and the compiled graphs do not depend on the step count (a profile
            # with explicit timesteps samples only its own count).
            shape = ShapeKey(
                self._model_id, width, height, frames, profile.fixed_steps or 1, guidance
            )
            runner = self._require_runner()
            # Compiled graphs are specialised per batch size: prepare every size the batcher
            # may hand over. Eager needs one call (cuDNN autotuning of the VAE).
            sizes = range(1, self._max_batch + 1) if self._settings.compile else (1,)
            # Step-cache hooks wrap the compiled blocks from outside: a request class reuses
            # these graphs and needs no warm-up of its own.
            for n in sizes:
                # The decoder works one video at a time whatever the batch: once per shape.
                self._warm_call(runner, shape, n, spec, decode=n == sizes[0])
            if self.budget is not None:
                measurement = self._measure(runner, shape)
                self.budget.record(shape, measurement)
                log.info(
                    "warmup_shape",
                    shape=spec,
                    max_batch=self.budget.max_batch(shape),
                    per_video_gib=round(measurement.per_video / 2**30, 2),
                )
            if self.throughput is not None:
                full = ShapeKey(self._model_id, width, height, frames, steps, guidance)
                self._choose_batch_size(runner, full)
        self._prepare_text_graphs()

    def _prepare_text_graphs(self) -> None:
        """Record the text encoder's graphs for the calls a batch makes: up to the largest
        batch's prompts plus, with guidance, their negative prompts."""
        tokens = self._settings.text_encoder_graph_tokens
        if not tokens:
            return
        started = time.perf_counter()
        recorded = self._require_runner().prepare_text_graphs(2 * self._max_batch, tokens)
        if recorded:
            seconds = round(time.perf_counter() - started, 3)
            log.info("text_encoder_graphs_ready", graphs=recorded, seconds=seconds)

    def _choose_batch_size(self, runner: StagedRunner, shape: ShapeKey) -> None:
        """Time one whole call (denoise and decode) per batch size of ``shape`` up to what
        fits, or read the times from the stored file, and let the policy choose."""
        assert self.throughput is not None
        stored = (
            StoredThroughput(self._batch.throughput_file)
            if self._batch.throughput_file is not None
            else None
        )
        label, device = shape_label(shape), device_name(self.device)
        seconds = stored.load(self._model_id, device, label) if stored is not None else None
        if seconds is not None:
            self.throughput.record(shape, seconds, "stored")
            return
        fits = self.budget.max_batch(shape) if self.budget is not None else None
        limit = min(self._max_batch, fits) if fits is not None else self._max_batch
        seconds = {}
        for n in range(1, limit + 1):
            requests = [GenerationRequest(f"tp-{i}", "warm-up", None, i) for i in range(n)]
            started = time.perf_counter()
            latents = self._latents(runner, shape, requests, {})
            runner.frames_for(latents, {})
            seconds[n] = time.perf_counter() - started
        self.throughput.record(shape, seconds, "measured")
        if stored is not None:
            stored.save(self._model_id, device, label, seconds)

    def _warm_call(
        self, runner: StagedRunner, shape: ShapeKey, n: int, spec: str, *, decode: bool
    ) -> None:
        graphs_before = _graphs_compiled()
        started = time.perf_counter()
        requests = [GenerationRequest(f"warmup-{i}", "warm-up", None, i) for i in range(n)]
        latents = self._latents(runner, shape, requests, {})
        if decode:
            # On the thread that decodes batches: per-thread CUDA library state (handles,
            # workspaces) is set up here, not in the first real batch (measured: seconds).
            if self._decoder is not None:
                self._decoder.submit(self._decode, runner, latents[:1], {}).result()
            else:
                self._decode(runner, latents[:1], {})
        call = {
            "shape": spec,
            "batch": n,
            "seconds": round(time.perf_counter() - started, 3),
            "graphs": _graphs_compiled() - graphs_before,
        }
        self.warmup_calls.append(call)
        log.info("warmup_call", **call)

    def _measure(self, runner: StagedRunner, shape: ShapeKey) -> Measurement:
        cuda = torch.cuda
        cuda.synchronize(self.device)
        resident = cuda.memory_allocated(self.device)
        peaks = []
        latents = None
        for n in (1, 2):
            cuda.reset_peak_memory_stats(self.device)
            requests = [GenerationRequest(f"m-{i}", "warm-up", None, i) for i in range(n)]
            latents = self._latents(runner, shape, requests, {})  # every rank runs it
            peaks.append(cuda.max_memory_allocated(self.device))
        assert latents is not None
        cuda.reset_peak_memory_stats(self.device)
        runner.frames_for(latents[:1], {})
        decode_peak = cuda.max_memory_allocated(self.device)
        return Measurement(latent_tokens(shape), resident, peaks[0], peaks[1], decode_peak)

    def _require_runner(self) -> StagedRunner:
        if self._runner is None or self._gpu is None:
            raise GenerationError("generator not started")
        return self._runner

    @contextlib.contextmanager
    def _decode_context(self) -> Iterator[None]:
        if self._decode_stream is not None and self._settings.overlap_decode:
            with torch.cuda.stream(self._decode_stream):
                yield
        else:
            yield

    async def stop(self) -> None:
        for pool in (self._gpu, self._decoder):
            if pool is not None:
                pool.shutdown(wait=True)
        self._gpu = self._decoder = None
        self._pipe = self._runner = None

    async def generate(
        self,
        shape: ShapeKey,
        requests: Sequence[GenerationRequest],
        control: StepControl | None = None,
    ) -> GeneratedBatch:
        runner = self._require_runner()
        loop = asyncio.get_running_loop()
        stages: dict[str, float] = {}
        try:
            latents = await loop.run_in_executor(
                self._gpu, self._latents, runner, shape, requests, stages, control
            )
            if control is not None and control.all_cancelled:
                raise BatchCancelled  # cancelled after the last step: nothing to decode
            videos = await loop.run_in_executor(
                self._decoder or self._gpu, self._decode, runner, latents, stages, control
            )
        except (RuntimeError, ValueError) as exc:  # CUDA OOM is a RuntimeError too
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise GenerationError(f"{type(exc).__name__}: {exc}") from exc
        return GeneratedBatch(videos=videos, stage_seconds=stages)

    def _latents(
        self,
        runner: StagedRunner,
        shape: ShapeKey,
        requests: Sequence[GenerationRequest],
        stages: dict[str, float],
        control: StepControl | None = None,
    ) -> torch.Tensor:
        """Denoise on the GPU thread, with the batch's step-cache hook attached if it has one."""
        transformer = self.pipeline.transformer
        with self._step_caches.attached(transformer, shape.step_cache, shape.num_inference_steps):
            return runner.latents_for(shape, requests, stages, control)

    def _decode(
        self,
        runner: StagedRunner,
        latents: torch.Tensor,
        stages: dict[str, float],
        control: StepControl | None = None,
    ) -> list[Any]:
        with self._decode_context():
            return runner.frames_for(latents, stages, control)


def _graph_shape(spec: str, profile: ModelProfile) -> str:
    """What of a warm-up shape the compiled graphs depend on: frame size and guidance (which
    doubles the transformer's batch; the profile's when the shape names none), not the step
    count."""
    width, height, frames, _, guidance = parse_shape_spec(spec, profile.steps, profile.guidance)
    return f"{width}x{height}x{frames}/{'cfg' if guidance > 1.0 else 'nocfg'}"


def _graphs_compiled() -> int:
    """Graphs Dynamo has compiled in this process so far."""
    import torch._dynamo.utils

    counters: Counter[str] = torch._dynamo.utils.counters["stats"]
    return int(counters["unique_graphs"])
