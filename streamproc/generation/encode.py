"""Frames to H.264 MP4 bytes (PyAV, libx264)."""

from __future__ import annotations

import io
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np

from streamproc.generation.base import Frames

if TYPE_CHECKING:
    from streamproc.settings import EncodingSettings


def to_uint8(video: np.ndarray) -> Frames:
    """Float frames in [0, 1] to uint8, rounding to nearest."""
    return np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)


def encode_mp4(
    frames: Frames, fps: int, *, crf: int = 18, preset: str = "veryfast", threads: int = 1
) -> bytes:
    """Encode ``(F, H, W, 3)`` uint8 frames as an MP4 (yuv420p, every frame kept).

    Deterministic for the same frames, settings and thread count (``threads=0`` lets x264
    choose from the CPU count, so bytes may differ between machines, never the picture).
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (F, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    n, height, width, _ = frames.shape
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset, "threads": str(threads)}
        stream.codec_context.thread_count = threads
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def make_encode_pool(settings: EncodingSettings) -> Executor:
    """The pool that encodes MP4s: separate processes by default.

    x264 itself runs without the GIL, but the frame conversion around it does not; in worker
    processes the encoder never competes with the thread that launches GPU kernels.
    Processes are spawned (not forked): the parent may hold CUDA and many threads.
    """
    if settings.executor == "process":
        return ProcessPoolExecutor(
            max_workers=settings.workers, mp_context=multiprocessing.get_context("spawn")
        )
    return ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="streamproc-enc")


def _ready() -> bool:
    return True


async def warm_pool(pool: Executor, workers: int) -> None:
    """Start the pool's workers now, so the first video does not wait for a process spawn."""
    import asyncio

    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(pool, _ready) for _ in range(workers)))
