"""GPU throughput of the processor itself, against plain diffusers, in one run.

Builds the model once (the full-size Wan2.2-TI2V-5B architecture with random weights on a
GPU, or the tiny one with ``--tiny``), measures the naive baseline (plain ``WanPipeline``, one
prompt per call), then feeds prompt events through the real processor — embedded JSONL
transport, in-memory cache, local store, MP4 encoding included — once per *variant* (a set of
generation settings, from plain to fully optimised), and prints seconds per video, videos/s,
p50/p95 event latency, peak GPU memory, denoise MFU and per-stage seconds per video.

    python bench/gpu_throughput.py                      # full size, on the GPU
    python bench/gpu_throughput.py --tiny               # CPU-sized smoke run
    python bench/gpu_throughput.py --variants plain,optimised --events 32 --out result.json
    python bench/gpu_throughput.py --profile fastwan2.2-ti2v-5b-dmd3 --batch-policy throughput

Variants run in the order given; compilation cannot be undone, so compiled variants go last.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from streamproc.app import run_worker
from streamproc.batching import ShapeKey
from streamproc.bus.local import JsonlSource
from streamproc.cache.null import NullCache
from streamproc.events import PromptEvent
from streamproc.generation.base import GenerationRequest
from streamproc.generation.encode import encode_mp4, to_uint8
from streamproc.generation.runner import RunnerOptions, StagedRunner
from streamproc.generation.wan import WanGenerator, load_pipeline
from streamproc.logs import configure_logging
from streamproc.samples import example_prompt
from streamproc.settings import Settings, load_settings
from streamproc.storage.local import LocalObjectStore

#: name -> generation/batch settings. "plain" is the processor with every switch off.
#: The request class the step-cache variants send (attributes.quality).
DRAFT = "draft"

VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {
        "batched_cfg": False,
        "vae_dtype": "float32",
        "overlap_decode": False,
        "attention_backend": "native",
        "batch": 1,
    },
    "cfg": {
        "batched_cfg": True,
        "vae_dtype": "float32",
        "overlap_decode": False,
        "attention_backend": "native",
        "batch": 1,
    },
    "cfg-bf16vae": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": False,
        "attention_backend": "native",
        "batch": 1,
    },
    "cfg-bf16vae-b4": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": False,
        "attention_backend": "native",
        "batch": 4,
    },
    "eager-best": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": True,
        "attention_backend": "_native_cudnn",
        "batch": 4,
    },
    "eager-best-nooverlap": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": False,
        "attention_backend": "_native_cudnn",
        "batch": 4,
    },
    "compiled": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": True,
        "attention_backend": "_native_flash",
        "compile": True,
        "batch": 4,
    },
    "compiled-nooverlap": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": False,
        "attention_backend": "_native_flash",
        "compile": True,
        "batch": 4,
    },
    "compiled-b8-nooverlap": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": False,
        "attention_backend": "_native_flash",
        "compile": True,
        "batch": 8,
    },
    "compiled-vaecl": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": False,
        "attention_backend": "_native_flash",
        "compile": True,
        "vae_channels_last": True,
        "batch": 4,
    },
    "compiled-cudnn": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": False,
        "attention_backend": "_native_cudnn",
        "compile": True,
        "vae_channels_last": True,
        "batch": 4,
    },
    "compiled-fp8-b2": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": False,
        "attention_backend": "_native_cudnn",
        "compile": True,
        "fp8": True,
        "vae_channels_last": True,
        "batch": 2,
    },
    "compiled-fp8": {
        "batched_cfg": True,
        "vae_dtype": "bfloat16",
        "overlap_decode": False,
        "attention_backend": "_native_cudnn",
        "compile": True,
        "fp8": True,
        "vae_channels_last": True,
        "batch": 4,
    },
}

VARIANTS["compiled-fp8-dyn"] = {**VARIANTS["compiled-fp8"], "compile_dynamic_batch": True}
# What "compiled-fp8-dyn" ran before fp8 stopped torchao from switching on kernel tuning
# (the 2026-12-01 H200 figures): the same, with torchao's coordinate-descent tuning.
VARIANTS["compiled-fp8-dyn-tuned"] = {**VARIANTS["compiled-fp8-dyn"], "fp8_kernel_tuning": True}
VARIANTS["compiled-cudnn-dyn"] = {**VARIANTS["compiled-cudnn"], "compile_dynamic_batch": True}
# Decode strategies (issue 16; bench/gpu_decode.py times them alone): the same frames from
# whole-clip causal passes, compiled and replayed as a CUDA graph, or the tiny decoder.
VARIANTS["compiled-cudnn-chunked"] = {**VARIANTS["compiled-cudnn"], "decode": "chunked"}
VARIANTS["compiled-cudnn-cdecode"] = {
    **VARIANTS["compiled-cudnn"],
    "decode": "compiled",
    "decode_cuda_graphs": True,
}
# The same compiled regions launched op by op: measured faster than their CUDA graph replay
# once each norm is fused with its activation (docs/benchmarks.md, eighth GPU session).
VARIANTS["compiled-cudnn-rdecode"] = {**VARIANTS["compiled-cudnn"], "decode": "compiled"}
VARIANTS["compiled-cudnn-rdecode-overlap"] = {
    **VARIANTS["compiled-cudnn-rdecode"],
    "overlap_decode": True,
}
VARIANTS["compiled-cudnn-tiny"] = {**VARIANTS["compiled-cudnn"], "decode": "tiny"}
# The decode of one batch on its own thread and CUDA stream while the next batch denoises.
VARIANTS["compiled-cudnn-cdecode-overlap"] = {
    **VARIANTS["compiled-cudnn-cdecode"],
    "overlap_decode": True,
}
# The text encoder launched op by op (as before CUDA graphs were the default).
VARIANTS["compiled-cudnn-tiny-eagertext"] = {
    **VARIANTS["compiled-cudnn-tiny"],
    "text_encoder_cuda_graphs": False,
}
# The interpreter's thread switch interval at 0.5 ms instead of 5 (diagnostic: does the GPU
# thread wait for the GIL held by the event loop?).
VARIANTS["compiled-cudnn-tiny-switch"] = {
    **VARIANTS["compiled-cudnn-tiny"],
    "switch_interval_ms": 0.5,
}
# The control plane's cost on the GPU (issue 18): status events off, and one per step.
VARIANTS["compiled-cudnn-cdecode-nostatus"] = {
    **VARIANTS["compiled-cudnn-cdecode"],
    "status": {"enabled": False},
    "control": {"enabled": False},
}
VARIANTS["compiled-cudnn-cdecode-everystep"] = {
    **VARIANTS["compiled-cudnn-cdecode"],
    "status": {"enabled": True, "step_interval_s": 0.0},
}

# Opt-in request class: events carry attributes.quality = "draft", served with diffusers'
# FirstBlockCache at the threshold in the name (random weights: speed only, not quality).
for _threshold in (0.05, 0.1, 0.2, 0.5, 1.0):
    VARIANTS[f"compiled-cudnn-fbc{_threshold:g}"] = {
        **VARIANTS["compiled-cudnn"],
        "step_cache": {"kind": "first-block", "threshold": _threshold},
    }


def transformer_flops(config: Any, tokens: int, text_tokens: int) -> float:
    """Matmul FLOPs of one transformer forward for one video (2 per multiply-add)."""
    d = config.num_attention_heads * config.attention_head_dim
    per_layer = (
        2 * tokens * d * d * 4  # self-attention q, k, v, o
        + 2 * 2 * tokens * tokens * d  # scores and weighted sum
        + 2 * tokens * d * d * 2  # cross-attention q, o
        + 2 * text_tokens * d * d * 2  # cross-attention k, v over the text
        + 2 * 2 * tokens * text_tokens * d  # cross-attention scores and sum
        + 2 * tokens * d * config.ffn_dim * 2  # feed-forward
    )
    return float(per_layer * config.num_layers)


def matmul_tflops(device: torch.device) -> float | None:
    """Measured fp16 matmul rate (8192³), the ceiling MFU is reported against."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 20 * 2 * 8192**3 / (time.perf_counter() - started) / 1e12


def events(
    n: int, shape: dict[str, Any], tag: str, quality: str | None = None
) -> list[PromptEvent]:
    import random

    rng = random.Random(tag)
    return [
        PromptEvent(
            event_id=f"{tag}-{i:04d}",
            prompt=f"{example_prompt(rng)} #{tag}-{i}",
            seed=rng.randrange(2**31),
            attributes={"quality": quality} if quality else {},
            **shape,
        )
        for i in range(n)
    ]


def naive_baseline(pipe: Any, shape: dict[str, Any], n: int) -> dict[str, Any]:
    """Plain diffusers: one prompt per ``pipe(...)`` call, the pipeline's own defaults."""
    device = pipe.transformer.device
    vae_dtype = pipe.vae.dtype
    pipe.vae.to(dtype=torch.float32)  # what WanPipeline does out of the box
    times = []
    output: Any = None
    for i, event in enumerate(events(n + 1, shape, "naive")):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        output = pipe(
            prompt=event.prompt,
            negative_prompt="",
            height=event.height,
            width=event.width,
            num_frames=event.num_frames,
            num_inference_steps=event.num_inference_steps,
            guidance_scale=event.guidance_scale,
            output_type="np",
            generator=torch.Generator().manual_seed(event.effective_seed()),
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i > 0:  # the first call pays cuDNN autotuning and lazy initialisation
            times.append(time.perf_counter() - started)
    pipe.vae.to(dtype=vae_dtype)
    frames = output.frames[0]
    probe = {}
    video = to_uint8(frames)
    for preset in ("ultrafast", "superfast", "veryfast"):
        for threads in (1, 0):
            started = time.perf_counter()
            size = len(encode_mp4(video, 16, preset=preset, threads=threads))
            probe[f"{preset}/t{threads}"] = (round(time.perf_counter() - started, 3), size // 1024)
    # Random weights make noise; say what kind (NaNs would flatter the MP4 encoder).
    stats = {
        "mean": float(frames.mean()),
        "std": float(frames.std()),
        "nan_fraction": float((frames != frames).mean()),
    }
    return {
        "videos": len(times),
        "s_per_video": statistics.mean(times),
        "all_s": [round(t, 3) for t in times],
        "frame_stats": stats,
        "mp4_encode_s_kib": probe,
    }


def variant_settings(
    name: str,
    shape: dict[str, Any],
    base: dict[str, Any],
    out: Path,
    window_ms: float,
    compile_cache: Path | None = None,
    policy: dict[str, Any] | None = None,
) -> Settings:
    spec = dict(VARIANTS[name])
    if compile_cache is not None:
        # "{precision}" in the path: fp8 and fp16 entries in the directories that
        # bench/gpu_startup.py fills (its --cache-root), so a start-up run warms this one.
        precision = "fp8" if spec.get("fp8") else "fp16"
        spec["compile_cache_dir"] = str(compile_cache).replace("{precision}", precision)
    batch = spec.pop("batch")
    spec.pop("switch_interval_ms", None)  # the bench's, not a setting
    # Status events and control (on by default, as in a worker) are their own sections.
    status = spec.pop("status", {})
    control = spec.pop("control", {})
    # Only the variant's own request class is configured (and warmed up).
    step_cache = spec.pop("step_cache", None)
    spec["step_cache_classes"] = {DRAFT: step_cache} if step_cache else {}
    if base["device"] == "cpu":  # cuDNN/flash attention and fp8 exist only on the GPU
        spec["attention_backend"] = "native"
        spec["fp8"] = False
    spec.setdefault("compile", False)
    warmup = (
        f"{shape['width']}x{shape['height']}x{shape['num_frames']}/"
        f"{shape['num_inference_steps']}/{shape['guidance_scale']}"
    )
    return load_settings(
        worker_id=f"bench-{name}",
        generation={**base, **spec, "warmup_shapes": [warmup]},
        batch={
            "max_batch_size": batch,
            "window_ms": window_ms,
            "max_in_flight": 256,
            **(policy or {}),
        },
        local={"results": str(out / "results.jsonl"), "dead_letters": str(out / "dead.jsonl")},
        storage={"local_dir": str(out / "store")},
        log={"level": "warning"},
        status=status,
        control=control,
    )


async def run_variant(
    name: str,
    loaded: tuple[Any, str],
    shape: dict[str, Any],
    n: int,
    base: dict[str, Any],
    window_ms: float,
    single: list[str],
    compile_cache: Path | None = None,
    probe: list[GenerationRequest] | None = None,
    policy: dict[str, Any] | None = None,
    trace_text: bool = False,
) -> dict[str, Any]:
    pipe = loaded[0]
    switch_interval_ms = VARIANTS[name].get("switch_interval_ms")
    device = pipe.transformer.device
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out = Path(tmp)
        settings = variant_settings(name, shape, base, out, window_ms, compile_cache, policy)
        generator = WanGenerator(
            settings.generation,
            loaded=loaded,
            max_batch_size=settings.batch.max_batch_size,
            batch=settings.batch,
        )
        print(json.dumps({"starting": name}), flush=True)
        await generator.start()
        store = LocalObjectStore(out / "store")
        report: dict[str, Any] = {
            "variant": name,
            "settings": VARIANTS[name],
            "startup_s": {k: round(v, 2) for k, v in generator.startup_seconds.items()},
            "compile_cache": generator.compile_cache_state,
            "warmup_calls": generator.warmup_calls,
            "profile": generator.profile.name,
            "sampler": generator.scheduler_name,
            "batch_size_policy": settings.batch.size_policy,
            "chosen_batch_sizes": generator.chosen_batch_sizes,
            "batch_videos_per_s": {
                label: {str(n): round(r, 4) for n, r in rates.items()}
                for label, rates in generator.batch_throughput.items()
            },
        }
        print(json.dumps({"started": name, **report}), flush=True)
        try:
            # The batch size the policy chose, if it chose one (at 121 frames a batch of 4
            # costs 48 s a round).
            batch = min([int(VARIANTS[name]["batch"]), *generator.chosen_batch_sizes.values()])
            report["isolated"] = _isolated_denoise(generator, shape, loaded[1], min(4, batch))
            if probe is not None:
                report["probe"] = _outputs(generator._require_runner(), shape, loaded[1], probe)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            path = out / "in.jsonl"
            quality = DRAFT if VARIANTS[name].get("step_cache") else None
            batch_events = events(n, shape, name, quality)
            path.write_text("".join(e.model_dump_json() + "\n" for e in batch_events))
            trace = _TextTrace(generator._require_runner()) if trace_text else None
            probe_gil = _GilProbe() if trace_text else None
            previous_interval = sys.getswitchinterval()
            if switch_interval_ms is not None:
                sys.setswitchinterval(switch_interval_ms / 1000)
            started = time.perf_counter()
            try:
                summary = await _run_file(settings, path, generator, store)
            finally:
                sys.setswitchinterval(previous_interval)
                if trace is not None and probe_gil is not None:
                    report["text_trace"] = trace.close()
                    report["gil_probe"] = probe_gil.close()
            # From the first event read to the last result published: the worker's start-up
            # (encoder processes, warm-up) is not event time.
            results_all = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
            if not results_all:
                dead = out / "dead.jsonl"
                lines = dead.read_text().splitlines() if dead.exists() else []
                sys.exit(
                    f"{name}: no event got a result ({len(lines)} dead letters; first: "
                    f"{lines[0][:300] if lines else 'none'})"
                )
            wall = (
                max(datetime.fromisoformat(r["timings"]["completed_at"]) for r in results_all)
                - min(datetime.fromisoformat(r["timings"]["received_at"]) for r in results_all)
            ).total_seconds()
            report["run_s"] = round(time.perf_counter() - started, 3)
            results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
            latencies = sorted(_latency(r) for r in results)
            done = sorted(datetime.fromisoformat(r["timings"]["completed_at"]) for r in results)
            # The first batch's results land together: steady time counts from its last one.
            # A batch-size policy may have chosen a smaller batch than the variant's maximum.
            chosen = generator.chosen_batch_sizes or {}
            first_batch = min([n, int(VARIANTS[name]["batch"]), *map(int, chosen.values())])
            steady = (
                (done[-1] - done[0]).total_seconds() / (len(done) - first_batch)
                if len(done) > first_batch
                else None
            )
            videos = summary.videos
            steps = shape["num_inference_steps"]
            forwards = steps * (2 if shape["guidance_scale"] > 1 else 1)
            flops = transformer_flops(pipe.transformer.config, _tokens(shape), 512)
            denoise = summary.stage_seconds.get("denoise", 0.0)
            report.update(
                {
                    "events": n,
                    "videos": videos,
                    "ok": sum(r["status"] == "ok" for r in results),
                    "wall_s": round(wall, 3),
                    "s_per_video": round(wall / max(videos, 1), 3),
                    "steady_s_per_video": round(steady, 3) if steady else None,
                    "mp4_kib": round(
                        statistics.mean(
                            (out / "store" / r["object_key"]).stat().st_size for r in results
                        )
                        / 1024
                    ),
                    "videos_per_s": round(videos / wall, 3),
                    "latency_p50_s": round(_pct(latencies, 50), 3),
                    "latency_p95_s": round(_pct(latencies, 95), 3),
                    "batches": summary.batches,
                    "stage_s_per_video": {
                        k: round(v / max(videos, 1), 4)
                        for k, v in sorted(summary.stage_seconds.items())
                    },
                    "denoise_tflops_per_s": round(forwards * flops * videos / denoise / 1e12, 1)
                    if denoise
                    else None,
                    "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                    if device.type == "cuda"
                    else None,
                }
            )
            if single:
                report["single_event"] = {
                    preset: await _single_event(
                        settings.model_copy(
                            update={
                                "encoding": settings.encoding.model_copy(update={"preset": preset})
                            }
                        ),
                        generator,
                        store,
                        shape,
                        out,
                        tag=preset,
                    )
                    for preset in single
                }
        finally:
            await generator.stop()
        return report


async def _run_file(
    settings: Settings, path: Path, generator: WanGenerator, store: LocalObjectStore
) -> Any:
    """The events of ``path`` through the real worker (no cache, the local store)."""
    return await run_worker(
        settings,
        source=JsonlSource(str(path)),
        generator=generator,
        cache=NullCache(),
        store=store,
        handle_signals=False,
    )


def _shape_key(shape: dict[str, Any], model_id: str) -> ShapeKey:
    return ShapeKey(
        model_id,
        shape["width"],
        shape["height"],
        shape["num_frames"],
        shape["num_inference_steps"],
        shape["guidance_scale"],
    )


def _isolated_denoise(
    generator: WanGenerator, shape: dict[str, Any], model_id: str, n: int
) -> dict[str, Any]:
    """Denoise and decode of ``n`` videos (a batch size the variant warmed up) with nothing
    else running: the GPU's own pace. Each round has prompts of its own, so the text encode
    is timed for texts the runner has not seen (as in the run), not as a text-cache hit."""
    runner = generator._require_runner()
    key = _shape_key(shape, model_id)
    stages: dict[str, float] = {}
    for round_ in range(2):  # the first warms what the run would have warmed
        stages = {}
        requests = [
            GenerationRequest(f"iso-{round_}-{i}", f"isolated prompt {round_} {i}", None, i)
            for i in range(n)
        ]
        runner.frames_for(runner.latents_for(key, requests, stages), stages)
    return {"videos": n, **{k: round(v / n, 4) for k, v in stages.items()}}


class _TextTrace:
    """Where the worker's ``text_encode`` stage goes: per call, wall and this thread's CPU
    time, the tokenizer's and the encoder's (launch) share. Attached to a runner for one
    variant's run; diagnostic only."""

    def __init__(self, runner: StagedRunner) -> None:
        self.calls: list[dict[str, float]] = []
        self._runner = runner
        self._encode = runner.encode
        self._tokenizer = runner.pipe.tokenizer
        self._current: dict[str, float] = {}
        trace = self

        class _Tokenizer:
            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return trace._tokenizer(*args, **kwargs)
                finally:
                    trace._add("tokenize", time.perf_counter() - started)

            def __getattr__(self, name: str) -> Any:
                return getattr(trace._tokenizer, name)

        def encode(requests: Any, guidance: float) -> Any:
            self._current = {}
            wall, cpu = time.perf_counter(), time.thread_time()
            out = self._encode(requests, guidance)
            runner._sync()
            self._current["wall"] = time.perf_counter() - wall
            self._current["cpu"] = time.thread_time() - cpu
            self.calls.append(self._current)
            return out

        runner.encode = encode  # type: ignore[method-assign]
        runner.pipe.tokenizer = _Tokenizer()

    def _add(self, key: str, seconds: float) -> None:
        self._current[key] = self._current.get(key, 0.0) + seconds

    def close(self) -> dict[str, Any]:
        del self._runner.encode
        self._runner.pipe.tokenizer = self._tokenizer
        keys = ("wall", "cpu", "tokenize")
        return {
            "calls": len(self.calls),
            **{f"{k}_ms": [round(c.get(k, 0.0) * 1000, 1) for c in self.calls] for k in keys},
        }


class _GilProbe:
    """A thread that asks for the interpreter every millisecond and records how late it got
    it: lateness well over the sleep is another thread holding the GIL (the event loop, or
    the GPU thread between launches). Diagnostic only."""

    def __init__(self) -> None:
        import threading

        self.late: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            time.sleep(0.001)
            self.late.append(time.perf_counter() - started - 0.001)

    def close(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        late = sorted(self.late)
        return {
            "wakes": len(late),
            "late_over_5ms": sum(x > 0.005 for x in late),
            "late_over_20ms": sum(x > 0.020 for x in late),
            "late_max_ms": round(late[-1] * 1000, 1) if late else None,
            "late_total_s": round(sum(x for x in late if x > 0.002), 3),
        }


def probe_requests(n: int) -> list[GenerationRequest]:
    """Fixed prompts and seeds whose outputs are compared across precisions."""
    return [
        GenerationRequest(f"probe-{i}", f"{PROBE_PROMPT} #{i}", None, 1000 + i) for i in range(n)
    ]


PROBE_PROMPT = "a red fox running through fresh snow at dawn, cinematic"


def _outputs(
    runner: StagedRunner, shape: dict[str, Any], model_id: str, requests: list[GenerationRequest]
) -> dict[str, Any]:
    """Final latents (float32, on the host) and decoded frames of ``requests``, one batch."""
    latents = runner.latents_for(_shape_key(shape, model_id), requests, {})
    frames = runner.frames_for(latents, {})
    return {"latents": latents.float().cpu(), "frames": frames}


def reference_outputs(
    pipe: Any, shape: dict[str, Any], model_id: str, requests: list[GenerationRequest]
) -> dict[str, Any]:
    """The same requests through the loaded pipeline as it is (eager, no quantisation)."""
    options = RunnerOptions(batched_cfg=True, vae_dtype=pipe.vae.dtype)
    return _outputs(StagedRunner(pipe, options), shape, model_id, requests)


def compare_outputs(ours: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Relative L2 of the latents and PSNR of the decoded frames (uint8), per video."""
    import numpy as np

    rel_l2 = []
    psnr = []
    for i in range(reference["latents"].shape[0]):
        a, b = ours["latents"][i], reference["latents"][i]
        rel_l2.append(float((a - b).norm() / b.norm()))
        x = ours["frames"][i].astype(np.float64)
        y = reference["frames"][i].astype(np.float64)
        mse = float(((x - y) ** 2).mean())
        psnr.append(float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse))
    return {
        "videos": len(rel_l2),
        "latents_rel_l2": [round(v, 5) for v in rel_l2],
        "frames_psnr_db": [round(v, 2) for v in psnr],
        "latents_finite": bool(torch.isfinite(ours["latents"]).all()),
    }


async def _single_event(
    settings: Settings,
    generator: WanGenerator,
    store: LocalObjectStore,
    shape: dict[str, Any],
    out: Path,
    tag: str,
) -> dict[str, Any]:
    """One event arriving alone at an idle, warm worker: its end-to-end latency."""
    await asyncio.sleep(1.0)
    path = out / "single.jsonl"
    path.write_text(events(1, shape, f"single-{tag}")[0].model_dump_json() + "\n")
    results = out / "results.jsonl"
    before = len(results.read_text().splitlines())
    await generator.start()  # no-op when started; kept warm from the variant
    await _run_file(settings, path, generator, store)
    result = json.loads(results.read_text().splitlines()[before])
    t = {k: datetime.fromisoformat(v) for k, v in result["timings"].items() if v}
    return {
        "latency_s": round(_latency(result), 3),
        "status": result["status"],
        "wait_s": round((t["batched_at"] - t["received_at"]).total_seconds(), 3),
        "generate_s": round((t["generated_at"] - t["batched_at"]).total_seconds(), 3),
        "encode_store_s": round((t["stored_at"] - t["generated_at"]).total_seconds(), 3),
        "publish_s": round((t["completed_at"] - t["stored_at"]).total_seconds(), 3),
    }


def _latency(result: dict[str, Any]) -> float:
    timings = result["timings"]
    return (
        datetime.fromisoformat(timings["completed_at"])
        - datetime.fromisoformat(timings["received_at"])
    ).total_seconds()


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(pct / 100 * (len(values) - 1))))
    return values[index]


def _tokens(shape: dict[str, Any]) -> int:
    frames = (int(shape["num_frames"]) - 1) // 4 + 1
    return frames * (int(shape["height"]) // 32) * (int(shape["width"]) // 32)


def weights_of(name: str, dtype: str) -> dict[str, Any]:
    """The load settings a variant's pipeline needs: fp8 variants quantise bf16 weights."""
    return {"dtype": dtype, "fp8": bool(VARIANTS[name].get("fp8"))}


def release(loaded: tuple[Any, str] | None) -> None:
    """Drop a pipeline before the next is built (both would fit; the figures stay clean)."""
    del loaded
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU")
    parser.add_argument("--events", type=int, default=16, help="events per variant")
    parser.add_argument(
        "--final-events",
        type=int,
        default=32,
        help="events of the last variant (the sustained figure)",
    )
    parser.add_argument("--baseline-events", type=int, default=6)
    parser.add_argument(
        "--variants",
        default="plain,cfg-bf16vae-b4,compiled",
        help=f"comma-separated, from: {', '.join(VARIANTS)}",
    )
    parser.add_argument(
        "--shape",
        default=None,
        help="WxHxF[/STEPS[/GUIDANCE]]; steps and guidance default to the profile's "
        "[default: 832x480x17/16/5.0, tiny: 256x256x9/4/5.0; with --profile: 832x480x17]",
    )
    parser.add_argument(
        "--profile",
        default=None,
        help="generation.profile: a built-in model profile or a .toml/.yaml file (e.g. "
        "fastwan2.2-ti2v-5b-dmd3 for 3 steps without guidance); the naive baseline samples "
        "with the profile's scheduler at diffusers' own timestep spacing",
    )
    parser.add_argument(
        "--batch-policy",
        choices=("largest", "throughput"),
        default="largest",
        help="batch.size_policy of the variants: 'throughput' times every batch size at "
        "warm-up and keeps a larger one only where it gains --min-batch-gain",
    )
    parser.add_argument("--min-batch-gain", type=float, default=0.05, help="batch.min_batch_gain")
    parser.add_argument(
        "--throughput-file",
        type=Path,
        help="batch.throughput_file: stored batch timings (read, and written when measured)",
    )
    parser.add_argument("--window-ms", type=float, default=20.0)
    parser.add_argument(
        "--dtype",
        default="auto",
        help="weights dtype; 'auto' loads float16, and bfloat16 for fp8 variants",
    )
    parser.add_argument(
        "--single",
        default="",
        help="after the last variant, time one event arriving alone, once per "
        "listed encoder preset (e.g. veryfast,superfast)",
    )
    parser.add_argument(
        "--single-all",
        action="store_true",
        help="time the lone events (--single) after every variant, not only the last",
    )
    parser.add_argument(
        "--numerics",
        type=int,
        default=0,
        metavar="N",
        help="compare N videos (fixed prompts and seeds) of every variant with the same "
        "weights in bf16, eager and unquantised: relative L2 of the latents, PSNR of frames",
    )
    parser.add_argument(
        "--compile-cache",
        type=Path,
        help="generation.compile_cache_dir of the variants; '{precision}' in it becomes fp8 "
        "or fp16 (default: none)",
    )
    parser.add_argument(
        "--trace-text",
        action="store_true",
        help="diagnostics: time each text encode in the run (wall, CPU, tokenizer) and how "
        "late a 1 ms sleeper thread gets the GIL",
    )
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args()

    from streamproc.generation.profiles import DEFAULT_PROFILE, load_profile
    from streamproc.settings import parse_shape_spec

    profile = load_profile(args.profile or DEFAULT_PROFILE)
    default_shape = "832x480x17" if args.profile else "832x480x17/16/5.0"
    tiny_shape = "256x256x9" if args.profile else "256x256x9/4/5.0"
    spec = args.shape or (tiny_shape if args.tiny else default_shape)
    w, h, f, s, g = parse_shape_spec(spec, profile.steps, profile.guidance)
    shape = {
        "width": w,
        "height": h,
        "num_frames": f,
        "num_inference_steps": s,
        "guidance_scale": g,
    }
    base = {
        "model": "tiny" if args.tiny else "random-5b",
        "device": "cpu" if args.tiny else "cuda",
        "dtype": args.dtype,
        "profile": profile.name if args.profile in (None, profile.name) else args.profile,
    }
    policy = {
        "size_policy": args.batch_policy,
        "min_batch_gain": args.min_batch_gain,
        "throughput_file": str(args.throughput_file) if args.throughput_file else None,
    }
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variants: {unknown}")

    configure_logging(load_settings(log={"level": "warning"}).log)
    report: dict[str, Any] = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "shape": spec,
        "profile": profile.name,
        "torch": torch.__version__,
        "variants": [],
    }
    probe = probe_requests(args.numerics) if args.numerics else None
    reference: dict[str, Any] | None = None  # bf16, eager, unquantised: what variants match
    pending: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (variant report, outputs)
    loaded: tuple[Any, str] | None = None
    loaded_for: dict[str, Any] | None = None
    for i, name in enumerate(names):
        weights = weights_of(name, args.dtype)
        if weights != loaded_for:
            # Compiled and quantised pipelines cannot be undone: a new weights dtype (fp8
            # variants load bf16) builds the pipeline again, same seed, same weights.
            release(loaded)
            loaded = None
            started = time.perf_counter()
            load = load_settings(generation={**base, "fp8": weights["fp8"]}).generation
            loaded = load_pipeline(load)
            loaded_for = weights
            device = loaded[0].transformer.device
            report.setdefault("builds", []).append(
                {
                    "for": name,
                    "dtype": str(loaded[0].transformer.dtype),
                    "build_s": round(time.perf_counter() - started, 1),
                }
            )
            if "device" not in report:
                report["device"] = (
                    torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
                )
                report["matmul_tflops"] = matmul_tflops(device)
                print(json.dumps({k: v for k, v in report.items() if k != "variants"}), flush=True)
            if (
                probe is not None
                and reference is None
                and loaded[0].transformer.dtype
                in (
                    torch.bfloat16,
                    torch.float32,
                )
            ):
                reference = reference_outputs(loaded[0], shape, loaded[1], probe)
            if args.baseline_events and "naive" not in report:
                report["naive"] = naive_baseline(loaded[0], shape, args.baseline_events)
                print(json.dumps({"naive": report["naive"]}), flush=True)
        assert loaded is not None
        last = i == len(names) - 1
        n = args.final_events if last else args.events
        single = [p for p in args.single.split(",") if p] if last or args.single_all else []
        result = asyncio.run(
            run_variant(
                name,
                loaded,
                shape,
                n,
                base,
                args.window_ms,
                single=single,
                compile_cache=args.compile_cache,
                probe=probe,
                policy=policy,
                trace_text=args.trace_text,
            )
        )
        outputs = result.pop("probe", None)
        if outputs is not None:
            pending.append((result, outputs))
        if report.get("matmul_tflops") and result.get("denoise_tflops_per_s"):
            result["denoise_mfu_vs_matmul"] = round(
                result["denoise_tflops_per_s"] / report["matmul_tflops"], 3
            )
        if "naive" in report:
            result["speedup_vs_naive"] = round(
                report["naive"]["s_per_video"] / result["s_per_video"], 2
            )
        report["variants"].append(result)
        print(json.dumps(result), flush=True)
    if reference is not None:
        # Random weights: this bounds the numerics of each precision, not visual quality.
        for result, outputs in pending:
            result["vs_bf16_eager"] = compare_outputs(outputs, reference)
            print(json.dumps({"variant": result["variant"], **result["vs_bf16_eager"]}))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
