"""Frames to H.264 MP4 bytes (PyAV, libx264)."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

from streamproc.generation.base import Frames


def to_uint8(video: np.ndarray) -> Frames:
    """Float frames in [0, 1] to uint8, rounding to nearest."""
    return np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)


def encode_mp4(frames: Frames, fps: int, *, crf: int = 18) -> bytes:
    """Encode ``(F, H, W, 3)`` uint8 frames as an MP4 (yuv420p, every frame kept).

    Deterministic for the same frames and settings, so a content address stays valid.
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
        # One thread and no scene-cut randomness: identical input gives identical bytes.
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        stream.codec_context.thread_count = 1
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
