"""MP4 encoder rate per core: how many encoder processes keep up with the GPU.

Encodes the same clip over and over with ``encode_mp4`` (what the worker's encoder pool runs),
first in this process (seconds per video at x264 ``threads=1`` and ``threads=0``), then with
1, 2, ... worker processes at ``threads=1`` (videos per second, and per process), and finally
with NVENC (``h264_nvenc``) when the card and the PyAV build have it — otherwise the report
says why not. Runs anywhere, CPU only included.

    python bench/encode_rate.py                              # 832x480x17, noise frames
    python bench/encode_rate.py --content smooth --shape 1280x704x121 --out rate.json

``noise`` frames are what random weights make (the worst case for x264: nothing to predict);
``smooth`` frames (moving gradients with a little grain) are closer to real video.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from streamproc.generation.encode import NVENC, encode_mp4, nvenc_unavailable, usable_cores


def clip(width: int, height: int, frames: int, content: str, seed: int = 0) -> np.ndarray:
    """``(F, H, W, 3)`` uint8 frames of the chosen kind."""
    rng = np.random.default_rng(seed)
    if content == "noise":
        return rng.integers(0, 256, size=(frames, height, width, 3), dtype=np.uint8)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((frames, height, width, 3), np.uint8)
    for f in range(frames):
        phase = f * 0.15
        for c in range(3):
            wave = np.sin(x / (40 + 10 * c) + phase) + np.cos(y / (30 + 7 * c) - phase)
            grain = rng.normal(0.0, 4.0, size=(height, width))
            out[f, :, :, c] = np.clip(128 + 60 * wave + grain, 0, 255).astype(np.uint8)
    return out


def _encode(frames: np.ndarray, preset: str, threads: int, codec: str = "libx264") -> int:
    return len(encode_mp4(frames, 16, preset=preset, threads=threads, codec=codec))


def in_process(frames: np.ndarray, preset: str, threads: int, repeats: int) -> dict[str, Any]:
    """Seconds per video encoded here, one after another (a lone event's encode time)."""
    _encode(frames, preset, threads)  # first call: codec set-up
    times = []
    size = 0
    for _ in range(repeats):
        started = time.perf_counter()
        size = _encode(frames, preset, threads)
        times.append(time.perf_counter() - started)
    return {
        "threads": threads,
        "s_per_video": round(statistics.median(times), 4),
        "kib": size // 1024,
    }


def with_processes(frames: np.ndarray, preset: str, processes: int, videos: int) -> dict[str, Any]:
    """Videos per second with ``processes`` encoder processes at x264 ``threads=1``."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
        # Start every process and let each encode once before timing.
        list(pool.map(_encode, [frames] * processes, [preset] * processes, [1] * processes))
        started = time.perf_counter()
        list(pool.map(_encode, [frames] * videos, [preset] * videos, [1] * videos))
        elapsed = time.perf_counter() - started
    rate = videos / elapsed
    return {
        "processes": processes,
        "videos_per_s": round(rate, 3),
        "videos_per_s_per_process": round(rate / processes, 3),
        "s_per_video_sustained": round(elapsed / videos, 4),
    }


def nvenc(frames: np.ndarray, preset: str, repeats: int) -> dict[str, Any]:
    """NVENC's seconds per video, or why it is not available here."""
    reason = nvenc_unavailable()
    if reason is not None:
        return {"available": False, "reason": reason}
    _encode(frames, preset, 0, NVENC)
    times = []
    size = 0
    for _ in range(repeats):
        started = time.perf_counter()
        size = _encode(frames, preset, 0, NVENC)
        times.append(time.perf_counter() - started)
    return {
        "available": True,
        "s_per_video": round(statistics.median(times), 4),
        "kib": size // 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="832x480x17", help="WIDTHxHEIGHTxFRAMES")
    parser.add_argument("--content", choices=("noise", "smooth"), default="noise")
    parser.add_argument("--preset", default="veryfast", help="x264 preset (encoding.preset)")
    parser.add_argument("--repeats", type=int, default=5, help="encodes per in-process figure")
    parser.add_argument(
        "--processes",
        default=None,
        help="comma-separated process counts [default: 1, 2, 4, ... up to the usable cores]",
    )
    parser.add_argument("--videos", type=int, default=0, help="videos per count [4 x processes]")
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    args = parser.parse_args()

    try:
        width, height, count = (int(p) for p in args.shape.lower().split("x"))
    except ValueError:
        sys.exit(f"--shape {args.shape!r} is not WIDTHxHEIGHTxFRAMES")
    cores = usable_cores()
    if args.processes:
        counts = [int(p) for p in args.processes.split(",")]
    else:
        counts = sorted({min(2**i, cores) for i in range(8) if 2**i <= 2 * cores} | {cores})
    frames = clip(width, height, count, args.content)
    report: dict[str, Any] = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "shape": args.shape,
        "content": args.content,
        "preset": args.preset,
        "usable_cores": cores,
        "in_process": [in_process(frames, args.preset, t, args.repeats) for t in (1, 0)],
    }
    print(json.dumps(report), flush=True)
    report["processes"] = []
    for n in counts:
        result = with_processes(frames, args.preset, n, args.videos or 4 * n)
        report["processes"].append(result)
        print(json.dumps(result), flush=True)
    report["nvenc"] = nvenc(frames, args.preset, args.repeats)
    print(json.dumps({"nvenc": report["nvenc"]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
