"""One GPU against K GPUs per worker (context parallelism, issue 19), in one run, one JSON report.

For each shape, first a one-device generator (``WanGenerator``), then a K-rank one
(``ContextParallelGenerator``: ranks 1..K-1 spawned on cuda:1..K-1, the sequence split with
Ulysses or ring attention), each loaded, warmed up for the shape and measured for:

* **lone-event latency**: one event alone, ``--repeats`` times (median, with the stage split:
  text encode, denoise, VAE decode — decode runs on rank 0 only);
* **sustained seconds per video**: ``--videos`` events in batches of ``--batch``, back to back;
* **numerics**: the K-rank frames of the lone events against the one-device frames of the same
  seeds (max and mean absolute difference in grey levels).

The issue's goal is lone-event latency at 1280x704x121 <= 0.55x the one-GPU figure.

    python bench/context_parallel.py --gpus 2 --model random-5b \\
        --shape 1280x704x121 --shape 832x480x121 --steps 16 --guidance 5 \\
        --attention-backend _native_cudnn --out bench/results/context_parallel_h200x2.json
    python bench/context_parallel.py --tiny --gpus 2 --shape 320x192x17 --steps 4  # CPU, gloo

With ``--tiny`` both runs share the CPU: the figures show the mechanics and the numerics,
not a speed-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from streamproc.batching import ShapeKey  # noqa: E402
from streamproc.generation.base import Frames, GenerationRequest  # noqa: E402
from streamproc.generation.memory import latent_tokens  # noqa: E402
from streamproc.generation.parallel import ContextParallelGenerator  # noqa: E402
from streamproc.generation.wan import WanGenerator  # noqa: E402
from streamproc.settings import BatchSettings, GenerationSettings, parse_shape_spec  # noqa: E402


def requests(n: int, start: int = 0) -> list[GenerationRequest]:
    return [
        GenerationRequest(f"bench-{i}", f"scene {i}: a harbour at dusk, boats", None, 1000 + i)
        for i in range(start, start + n)
    ]


async def measure(
    settings: GenerationSettings, spec: str, args: argparse.Namespace
) -> tuple[dict[str, Any], list[Frames]]:
    """Start a generator for ``settings``, warm it up for ``spec``, time it; its report and the
    frames of its lone events."""
    width, height, frames, _, _ = parse_shape_spec(spec, args.steps, args.guidance)
    k = settings.gpus_per_worker
    batch = BatchSettings(max_batch_size=args.batch)
    generator: WanGenerator = (
        ContextParallelGenerator(settings, max_batch_size=args.batch, batch=batch)
        if k > 1
        else WanGenerator(settings, max_batch_size=args.batch, batch=batch)
    )
    started = time.perf_counter()
    await generator.start()
    ready_s = time.perf_counter() - started
    shape = ShapeKey(generator.model_id, width, height, frames, args.steps, args.guidance)
    try:
        lone, stages, videos = [], [], []
        for i in range(args.repeats):
            t = time.perf_counter()
            out = await generator.generate(shape, requests(1, start=i))
            lone.append(time.perf_counter() - t)
            stages.append(out.stage_seconds)
            videos += out.videos
        t = time.perf_counter()
        done = 0
        while done < args.videos:
            n = min(args.batch, args.videos - done)
            await generator.generate(shape, requests(n, start=100 + done))
            done += n
        sustained = (time.perf_counter() - t) / args.videos
    finally:
        await generator.stop()
    report = {
        "gpus": k,
        "ready_s": round(ready_s, 2),
        "lone_s": [round(s, 3) for s in lone],
        "lone_median_s": round(statistics.median(lone), 3),
        "lone_stages_median_s": {
            name: round(statistics.median(s.get(name, 0.0) for s in stages), 3)
            for name in sorted({n for s in stages for n in s})
        },
        "sustained_s_per_video": round(sustained, 3),
        "sustained_s_per_video_per_gpu": round(sustained * k, 3),
    }
    return report, videos


def compare(one: list[Frames], many: list[Frames]) -> dict[str, Any]:
    diffs = [
        np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(one, many, strict=True)
    ]
    return {
        "max_abs_grey_levels": int(max(d.max() for d in diffs)),
        "mean_abs_grey_levels": round(float(np.mean([d.mean() for d in diffs])), 4),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "tiny" if args.tiny else args.model,
        "device": "cpu" if args.tiny else "cuda",
        "compile": args.compile,
        "attention_backend": args.attention_backend,
        "context_parallel": args.context_parallel,
    }
    shapes = []
    for spec in args.shape:
        warm = [f"{spec}/1/{args.guidance}"]
        one_settings = GenerationSettings(**base, warmup_shapes=warm)
        many_settings = GenerationSettings(**base, warmup_shapes=warm, gpus_per_worker=args.gpus)
        one, one_videos = await measure(one_settings, spec, args)
        many, many_videos = await measure(many_settings, spec, args)
        width, height, frames, _, _ = parse_shape_spec(spec, args.steps, args.guidance)
        tokens = latent_tokens(ShapeKey("m", width, height, frames, args.steps, args.guidance))
        ratio = many["lone_median_s"] / one["lone_median_s"]
        shapes.append(
            {
                "shape": spec,
                "tokens": tokens,
                "one": one,
                "many": many,
                "lone_latency_ratio": round(ratio, 3),
                "lone_goal_0_55_met": ratio <= 0.55,
                "sustained_speedup": round(
                    one["sustained_s_per_video"] / many["sustained_s_per_video"], 3
                ),
                "scaling_efficiency": round(
                    one["sustained_s_per_video"] / (args.gpus * many["sustained_s_per_video"]), 3
                ),
                "numerics": compare(one_videos, many_videos),
            }
        )
    return {
        "bench": "context_parallel",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "card": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "gpus": args.gpus,
        "steps": args.steps,
        "guidance": args.guidance,
        "batch": args.batch,
        "settings": base,
        "note": (
            "tiny model, CPU ranks over gloo sharing the machine's cores: the numerics and the "
            "mechanics hold, the timings are not a GPU speed-up and not a measurement of one"
            if args.tiny
            else "measured"
        ),
        "shapes": shapes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=2, help="ranks of the parallel worker (K)")
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (gloo)")
    parser.add_argument("--model", default="random-5b", help="generation.model on CUDA")
    parser.add_argument("--shape", action="append", help="WIDTHxHEIGHTxFRAMES (repeatable)")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3, help="lone events per generator")
    parser.add_argument("--videos", type=int, default=4, help="videos of the sustained run")
    parser.add_argument("--batch", type=int, default=1, help="videos per call, sustained run")
    parser.add_argument("--compile", action="store_true", help="generation.compile")
    parser.add_argument("--attention-backend", default=None, help="generation.attention_backend")
    parser.add_argument("--context-parallel", choices=("ulysses", "ring"), default="ulysses")
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args()
    args.shape = args.shape or ["1280x704x121", "832x480x121"]
    report = asyncio.run(run(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
