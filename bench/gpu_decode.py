"""VAE decode strategies on one GPU: seconds per clip, TFLOP/s, memory and error vs diffusers.

Builds the full-size Wan2.2-TI2V-5B VAE with random weights (or the tiny one with ``--tiny``)
and decodes the same random latents with each *variant* (a decode strategy of
``streamproc.generation.decode`` plus a memory layout), after warm-up calls (compilation,
cuDNN autotuning). Per variant it reports seconds per clip (median of ``--repeats``), the
FLOPs of one decode (``torch.utils.flop_counter``; compiled variants reuse the eager count
of the same computation), TFLOP/s and their fraction of a measured bf16 matmul rate, peak
memory above the resident weights, and the frames' error against the ``diffusers`` variant
(max abs, relative L2, PSNR, max grey-level difference after the uint8 conversion).

    python bench/gpu_decode.py                                  # 832x480x17 on the GPU
    python bench/gpu_decode.py --frames 17,121 --out decode.json
    python bench/gpu_decode.py --tiny --device cpu --out smoke.json   # CPU smoke, < 1 min

Imports only torch, diffusers and the decode modules, so it runs on a host without the rest
of streamproc's dependencies. The tiny decoder has random weights here: its error column
says how different its frames are, not how good they are.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamproc.generation.decode import (
    DecodeOptions,
    VideoDecoder,
    build_decoder,
    set_conv3d_memory_format,
)
from streamproc.generation.vae_configs import FULL_VAE, TINY_VAE

#: name -> (decode options, channels-last VAE). Contiguous variants first: switching the
#: layout of the weights makes compiled graphs recompile.
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "diffusers": ({"strategy": "diffusers"}, False),
    "chunked": ({"strategy": "chunked"}, False),
    "diffusers-cl": ({"strategy": "diffusers"}, True),
    "chunked-cl": ({"strategy": "chunked"}, True),
    "chunked2-cl": ({"strategy": "chunked", "chunk_frames": 2}, True),
    "compiled-nofuse-cl": ({"strategy": "compiled", "fuse_activations": False}, True),
    "compiled-cl": ({"strategy": "compiled"}, True),
    "compiled-cg-cl": ({"strategy": "compiled", "cuda_graphs": True}, True),
    "compiled-autotune-cl": ({"strategy": "compiled", "autotune": True}, True),
    "tiny": ({"strategy": "tiny"}, False),
}
DEFAULT_VARIANTS = "diffusers,chunked,diffusers-cl,chunked-cl,compiled-cl,compiled-cg-cl,tiny"
#: With --tiny: one of each strategy, for a smoke run.
TINY_VARIANTS = "diffusers,chunked,compiled-cl,tiny"
REFERENCE = "diffusers"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device) -> float | None:
    """Measured bf16 matmul rate (8192³), the ceiling the decode's rate is compared with."""
    if device.type != "cuda":
        return None
    from torch.utils.benchmark import Timer

    n = 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    # Timer synchronises CUDA around its runs and repeats them for a second at least.
    seconds = Timer("a @ b", globals={"a": a, "b": b}).blocked_autorange(min_run_time=1.0).median
    return 2 * n**3 / seconds / 1e12


def build_vae(tiny: bool, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Any:
    """The random-weight Wan2.2 VAE, built on ``device`` and cast to ``dtype``."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), device:
        torch.manual_seed(seed)
        vae = AutoencoderKLWan(**(TINY_VAE if tiny else FULL_VAE)).eval()
    torch.nn.Module.to(vae, dtype=dtype)  # the VAE keeps no module in fp32
    return vae


def latent_shape(vae: Any, batch: int, width: int, height: int, frames: int) -> tuple[int, ...]:
    """The latent shape of a clip, from the VAE's scale factors."""
    spatial = vae.config.scale_factor_spatial
    temporal = vae.config.scale_factor_temporal
    if width % spatial or height % spatial or (frames - 1) % temporal:
        raise SystemExit(
            f"{width}x{height}x{frames}: sizes must be multiples of {spatial}, "
            f"frames 1 + a multiple of {temporal}"
        )
    return (
        batch,
        vae.config.z_dim,
        1 + (frames - 1) // temporal,
        height // spatial,
        width // spatial,
    )


def count_flops(fn: Callable[[], Any]) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return float(counter.get_total_flops())


def errors(out: torch.Tensor, ref: torch.Tensor) -> dict[str, float | None]:
    """How far ``out`` is from ``ref`` (videos in [-1, 1])."""
    a, b = out.float(), ref.float()
    diff = a - b
    mse01 = float((diff / 2).pow(2).mean())  # in the [0, 1] range of the frames

    def grey(v: torch.Tensor) -> torch.Tensor:
        return ((v.clamp(-1, 1) + 1) * 127.5).round()

    return {
        "max_abs": float(diff.abs().max()),
        "relative_l2": float(diff.norm() / b.norm().clamp_min(1e-12)),
        "psnr_db": None if mse01 == 0 else 10 * math.log10(1 / mse01),  # None: identical
        "max_grey_levels": float((grey(a) - grey(b)).abs().max()),
    }


def run_variant(
    name: str,
    vae: Any,
    z: torch.Tensor,
    args: argparse.Namespace,
    dtype: torch.dtype,
    flops_cache: dict[str, float],
) -> tuple[dict[str, Any], torch.Tensor | None]:
    options_kw, channels_last = VARIANTS[name]
    device = z.device
    options = DecodeOptions(dtype=dtype, channels_last=channels_last, **options_kw)
    options = replace(options, compile_backend=args.compile_backend)
    if options.strategy in ("chunked", "compiled") and args.chunk_frames is not None:
        options = replace(options, chunk_frames=args.chunk_frames)
    result: dict[str, Any] = {
        "variant": name,
        "options": {k: str(v) for k, v in vars(options).items()},
    }
    if options.cuda_graphs and device.type != "cuda":
        return result | {"skipped": "CUDA graphs need CUDA"}, None
    set_conv3d_memory_format(vae, channels_last)
    decoder: VideoDecoder = build_decoder(vae, options)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    sync(device)
    resident = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in range(args.warmup):
            out = decoder(z)
        sync(device)
        result["warmup_s"] = round(time.perf_counter() - started, 3)
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            out = decoder(z)
            sync(device)
            times.append(time.perf_counter() - started)
        out = out.float()
    if device.type == "cuda":
        result["peak_gib_above_weights"] = round(
            (torch.cuda.max_memory_allocated(device) - resident) / 2**30, 2
        )
    seconds = statistics.median(times)
    clips = z.shape[0]
    result |= {"s_per_clip": round(seconds / clips, 4), "runs_s": [round(t, 4) for t in times]}
    # The FLOPs of the computation, counted eagerly once per kind: the compiled variant runs
    # chunked's arithmetic, channels-last changes the layout only.
    kind = {"diffusers": "diffusers", "tiny": "tiny"}.get(options.strategy, "chunked")
    if kind not in flops_cache:
        eager = build_decoder(vae, replace(options, strategy=kind, cuda_graphs=False))
        with torch.inference_mode():
            flops_cache[kind] = count_flops(lambda: eager(z))
    flops = flops_cache[kind]
    result["tflop_per_clip"] = float(f"{flops / clips / 1e12:.4g}")
    result["tflops_per_s"] = float(f"{flops / seconds / 1e12:.4g}")
    if args.matmul_tflops:
        result["fraction_of_matmul"] = round(result["tflops_per_s"] / args.matmul_tflops, 3)
    if getattr(decoder, "label", None):
        result["label"] = decoder.label
    fallback = getattr(decoder, "fallback", None)
    if fallback:
        result["fallback"] = fallback  # compiled frames refused: these ran eagerly
    return result, out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny VAE (CPU smoke run)")
    parser.add_argument("--width", type=int, default=None, help="832 (64 with --tiny)")
    parser.add_argument("--height", type=int, default=None, help="480 (32 with --tiny)")
    parser.add_argument("--frames", default="17", help="comma-separated, e.g. 17,121")
    parser.add_argument("--batch", type=int, default=1, help="clips per decode call")
    parser.add_argument("--dtype", default=None, help="bfloat16 on CUDA, float32 on the CPU")
    parser.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated of: {', '.join(VARIANTS)} (default {DEFAULT_VARIANTS}; "
        f"with --tiny {TINY_VARIANTS})",
    )
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=None,
        help="latent frames per pass of chunked/compiled (default: the variant's)",
    )
    parser.add_argument(
        "--compile-backend",
        default=None,
        help="inductor on CUDA; 'eager' on the CPU (graph capture only: inductor's CPU code "
        "generation takes minutes)",
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (5; 1 with --tiny)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dtype = (
        getattr(torch, args.dtype)
        if args.dtype
        else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    width = args.width or (64 if args.tiny else 832)
    height = args.height or (32 if args.tiny else 480)
    args.repeats = args.repeats or (1 if args.tiny else 5)
    if args.tiny:
        args.warmup = min(args.warmup, 1)
    args.compile_backend = args.compile_backend or (
        "inductor" if device.type == "cuda" else "eager"
    )
    variants = args.variants or (TINY_VARIANTS if args.tiny else DEFAULT_VARIANTS)
    names = [n.strip() for n in variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if REFERENCE in names:  # the reference goes first: every error is measured against it
        names.remove(REFERENCE)
    names.insert(0, REFERENCE)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the worker does
        torch._dynamo.config.cache_size_limit = 64  # variants x shapes

    args.matmul_tflops = matmul_tflops(device)
    vae = build_vae(args.tiny, device, dtype)
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "diffusers": __import__("diffusers").__version__,
        "vae": "tiny" if args.tiny else "wan2.2-ti2v-5b (random weights)",
        "dtype": str(dtype),
        "matmul_tflops_bf16": None if args.matmul_tflops is None else round(args.matmul_tflops, 1),
        "compile_backend": args.compile_backend,
        "cudnn_benchmark": device.type == "cuda",
        "shapes": [],
    }
    for frames in [int(f) for f in args.frames.split(",")]:
        shape = latent_shape(vae, args.batch, width, height, frames)
        z = torch.randn(shape, generator=torch.Generator().manual_seed(frames)).to(device)
        entry: dict[str, Any] = {
            "size": f"{width}x{height}x{frames}",
            "batch": args.batch,
            "latents": list(shape),
            "variants": [],
        }
        flops_cache: dict[str, float] = {}
        reference: torch.Tensor | None = None
        for name in names:
            try:
                result, out = run_variant(name, vae, z, args, dtype, flops_cache)
            except torch.OutOfMemoryError as exc:
                result, out = {"variant": name, "failed": f"out of memory: {exc}"[:300]}, None
                torch.cuda.empty_cache()
            if out is not None:
                if reference is None:
                    reference = out
                result["error_vs_diffusers"] = errors(out, reference)
                if VARIANTS[name][0]["strategy"] == "tiny":
                    result["note"] = "different model with random weights: error is not quality"
            entry["variants"].append(result)
            print(json.dumps(result), flush=True)
            del out
        report["shapes"].append(entry)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
