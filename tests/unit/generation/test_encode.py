"""MP4 encoding."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest

from streamproc.generation.encode import encode_mp4, to_uint8


def frames(n: int = 9, h: int = 32, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def test_mp4_has_the_frame_count_size_and_rate() -> None:
    data = encode_mp4(frames(), fps=16)
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(video=0))
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (64, 32)
        assert stream.average_rate == 16
    assert len(decoded) == 9


def test_encoding_is_deterministic() -> None:
    assert encode_mp4(frames(), fps=16) == encode_mp4(frames(), fps=16)


def test_single_frame_video_encodes() -> None:
    data = encode_mp4(frames(n=1), fps=8)
    with av.open(io.BytesIO(data)) as container:
        assert len(list(container.decode(video=0))) == 1


def test_wrong_frame_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        encode_mp4(frames().astype(np.float32), fps=16)


def test_to_uint8_rounds_and_clips() -> None:
    out = to_uint8(np.array([-0.5, 0.0, 0.5, 1.0, 1.5]))
    assert out.tolist() == [0, 0, 128, 255, 255]
