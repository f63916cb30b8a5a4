"""What one video costs, by shape: seconds, MFU and decode share over frames and resolution.

For each clip shape of a grid (frames x resolution x sampling) this builds the worker's own
generator on one resident pipeline (the full-size Wan2.2-TI2V-5B architecture with random
weights, or the tiny one with ``--tiny``), warms it up for that shape alone (compilation
included when the variant compiles) and times lone videos through the processor's runner:
text encoding, denoising and VAE decode, each measured (``--repeats`` runs after the warm-up,
median). Per shape it reports seconds per video, the transformer's TFLOP/s and their fraction
of a measured fp16 matmul rate (MFU), the decode's share of the video's time and the peak GPU
memory. MP4 encoding runs on the CPU and is left out (``bench/encode_rate.py`` measures it).

    python bench/gpu_cost_curve.py                                   # the default grid, GPU
    python bench/gpu_cost_curve.py --frames 17,121 --sizes 832x480 --sampling 16/5.0
    python bench/gpu_cost_curve.py --tiny --frames 9 --sizes 256x256 --out smoke.json  # CPU

The default grid is issue 16's: frames 17, 49, 121 x 832x480, 1280x704 x (16 steps, guidance
5) and (4 steps, guidance 1). A shape that runs out of memory is reported as such and the
grid goes on. One video at a time: this is a lone event's cost, not sustained throughput
(``bench/gpu_throughput.py`` measures that for one shape).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_throughput import (
    VARIANTS,
    _shape_key,
    _tokens,
    matmul_tflops,
    release,
    transformer_flops,
    variant_settings,
)

from streamproc.generation.base import GenerationRequest
from streamproc.generation.wan import WanGenerator, load_pipeline
from streamproc.logs import configure_logging
from streamproc.settings import load_settings

TEXT_TOKENS = 512


def grid(frames: str, sizes: str, sampling: str) -> list[dict[str, Any]]:
    """The shapes to measure, smallest first (a late out-of-memory costs the least)."""
    shapes = []
    for size in sizes.split(","):
        width, height = (int(x) for x in size.lower().split("x"))
        for f in frames.split(","):
            for spec in sampling.split(","):
                steps, guidance = spec.split("/")
                shapes.append(
                    {
                        "width": width,
                        "height": height,
                        "num_frames": int(f),
                        "num_inference_steps": int(steps),
                        "guidance_scale": float(guidance),
                    }
                )
    return sorted(shapes, key=lambda s: (_tokens(s), s["num_inference_steps"]))


async def measure(
    loaded: tuple[Any, str],
    variant: str,
    shape: dict[str, Any],
    base: dict[str, Any],
    repeats: int,
    peak_rate: float | None,
) -> dict[str, Any]:
    pipe, model_id = loaded
    device = pipe.transformer.device
    label = (
        f"{shape['width']}x{shape['height']}x{shape['num_frames']}/"
        f"{shape['num_inference_steps']}/{shape['guidance_scale']:g}"
    )
    with tempfile.TemporaryDirectory(prefix="cost-") as tmp:
        settings = variant_settings(variant, shape, base, Path(tmp), 20.0)
        settings = settings.model_copy(
            update={"batch": settings.batch.model_copy(update={"max_batch_size": 1})}
        )
        generator = WanGenerator(
            settings.generation, loaded=loaded, max_batch_size=1, batch=settings.batch
        )
        started = time.perf_counter()
        await generator.start()
        warmup_s = time.perf_counter() - started
        try:
            runner = generator._require_runner()
            key = _shape_key(shape, model_id)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            runs: list[dict[str, float]] = []
            for i in range(repeats):
                stages: dict[str, float] = {}
                request = GenerationRequest(f"cost-{i}", f"cost curve prompt {i}", None, i)
                t0 = time.perf_counter()
                runner.frames_for(runner.latents_for(key, [request], stages), stages)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                stages["total"] = time.perf_counter() - t0
                runs.append(stages)
        finally:
            await generator.stop()
    median = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in runs[0]}
    forwards = shape["num_inference_steps"] * (2 if shape["guidance_scale"] > 1 else 1)
    flops = forwards * transformer_flops(pipe.transformer.config, _tokens(shape), TEXT_TOKENS)
    denoise = median.get("denoise", 0.0)
    decode = median.get("vae_decode", 0.0)
    rate = flops / denoise / 1e12 if denoise else None
    return {
        "shape": label,
        "tokens": _tokens(shape),
        "transformer_forwards": forwards,
        "warmup_s": round(warmup_s, 1),
        "s_per_video": round(median["total"], 3),
        "stage_s": {k: round(v, 4) for k, v in sorted(median.items()) if k != "total"},
        "denoise_tflops_per_s": round(rate, 1) if rate else None,
        "mfu": round(rate / peak_rate, 3) if rate and peak_rate else None,
        "decode_share": round(decode / median["total"], 3) if median["total"] else None,
        "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device.type == "cuda"
        else None,
        "repeats": repeats,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| shape (WxHxF/steps/guidance) | tokens | s/video | denoise s | decode s "
        "| MFU | decode share | peak GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['shape']} | {r.get('tokens', '')} | {r['error']} ||||||")
            continue
        s = r["stage_s"]
        lines.append(
            f"| {r['shape']} | {r['tokens']} | {r['s_per_video']} | {s.get('denoise', '')} "
            f"| {s.get('vae_decode', '')} | {r['mfu']} | {r['decode_share']} | {r['peak_gpu_gib']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (a smoke run)")
    parser.add_argument("--frames", default="17,49,121", help="comma-separated frame counts")
    parser.add_argument("--sizes", default="832x480,1280x704", help="comma-separated WxH")
    parser.add_argument(
        "--sampling",
        default="16/5.0,4/1.0",
        help="comma-separated steps/guidance pairs (guidance 1 runs one pass per step)",
    )
    parser.add_argument(
        "--variant",
        default="eager-best",
        help="generation settings from bench/gpu_throughput.py's VARIANTS (a compiled one "
        "compiles once per shape: budget its warm-up) [default: eager-best]",
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed videos per shape")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args()
    if args.variant not in VARIANTS:
        sys.exit(f"unknown variant {args.variant!r}; known: {', '.join(VARIANTS)}")
    if args.repeats < 1:
        sys.exit("--repeats must be at least 1")

    configure_logging(load_settings(log={"level": "warning"}).log)
    base = {
        "model": "tiny" if args.tiny else "random-5b",
        "device": "cpu" if args.tiny else "cuda",
        "dtype": args.dtype,
    }
    started = time.perf_counter()
    loaded = load_pipeline(load_settings(generation=base).generation)
    device = loaded[0].transformer.device
    peak = matmul_tflops(device)
    report: dict[str, Any] = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": str(loaded[0].transformer.dtype),
        "variant": args.variant,
        "build_s": round(time.perf_counter() - started, 1),
        "matmul_tflops": peak,
        "shapes": [],
    }
    print(json.dumps({k: v for k, v in report.items() if k != "shapes"}), flush=True)
    for shape in grid(args.frames, args.sizes, args.sampling):
        try:
            row = asyncio.run(measure(loaded, args.variant, shape, base, args.repeats, peak))
        except torch.OutOfMemoryError as exc:
            row = {"shape": str(shape), "tokens": _tokens(shape), "error": f"out of memory: {exc}"}
            torch.cuda.empty_cache()
        report["shapes"].append(row)
        print(json.dumps(row), flush=True)
    release(loaded)
    print(table(report["shapes"]))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
