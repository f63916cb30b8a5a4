"""MP4 encoding."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from typing import Any

import av
import numpy as np
import pytest
from structlog.testing import capture_logs

from streamproc.errors import ConfigError
from streamproc.generation import encode
from streamproc.generation.encode import (
    EncoderPool,
    auto_workers,
    encode_mp4,
    nvenc_unavailable,
    to_uint8,
)
from streamproc.settings import EncodingSettings


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


# -- codec choice and pool size -------------------------------------------------------------


def test_nvenc_is_not_available_on_this_machine_and_says_why() -> None:
    # The CI machine has no NVIDIA card: the probe names the missing piece.
    reason = nvenc_unavailable()
    assert reason is not None
    assert "NVIDIA driver" in reason or "h264_nvenc" in reason


async def test_asking_for_nvenc_where_it_cannot_run_refuses_to_start() -> None:
    pool = EncoderPool(EncodingSettings(codec="h264_nvenc", executor="thread", workers=1))
    with pytest.raises(ConfigError, match="h264_nvenc is not available here"):
        await pool.start()
    assert not pool.healthy


async def test_auto_codec_falls_back_to_x264_and_encodes() -> None:
    pool = EncoderPool(EncodingSettings(codec="auto", executor="thread", workers=1))
    async with pool:
        assert pool.codec == "libx264"
        data = await pool.encode(frames(), 16)
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert pool.key_material == {"preset": "veryfast", "crf": 18}  # x264 keys unchanged


def test_the_object_key_material_names_a_hardware_codec() -> None:
    pool = EncoderPool(EncodingSettings())
    pool.codec = "h264_nvenc"
    assert pool.key_material == {"preset": "veryfast", "crf": 18, "codec": "h264_nvenc"}


@pytest.mark.parametrize(("cores", "workers"), [(1, 2), (2, 2), (4, 2), (16, 14), (128, 32)])
def test_auto_workers_leave_two_cores_for_the_loop_and_the_gpu_thread(
    cores: int, workers: int
) -> None:
    assert auto_workers(cores) == workers


def test_workers_auto_is_the_default_and_sizes_the_pool() -> None:
    assert EncodingSettings().workers == "auto"
    assert EncoderPool(EncodingSettings()).workers == auto_workers()
    assert EncoderPool(EncodingSettings(workers=3)).workers == 3


class _RecordedBlocks:
    """Wraps encode._copy_to_shared: the names of the shared-memory blocks it made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.names: list[str] = []
        self.made = threading.Event()
        self._real = encode._copy_to_shared
        monkeypatch.setattr(encode, "_copy_to_shared", self)

    def __call__(self, video: np.ndarray) -> Any:
        block = self._real(video)
        self.names.append(block.name)
        self.made.set()
        return block

    def left(self) -> list[str]:
        return [n for n in self.names if os.path.exists(os.path.join("/dev/shm", n.lstrip("/")))]


def _direct(video: np.ndarray, settings: EncodingSettings) -> bytes:
    return encode_mp4(video, 16, crf=settings.crf, preset=settings.preset, threads=1)


async def test_encoder_processes_read_the_frames_from_shared_memory_and_no_block_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks = _RecordedBlocks(monkeypatch)
    settings = EncodingSettings(workers=2, threads=1)
    videos = [frames(12, 48, 64, seed=s) for s in range(3)]
    async with EncoderPool(settings) as pool:
        got = await asyncio.gather(*(pool.encode(v, 16) for v in videos))
    assert got == [_direct(v, settings) for v in videos]
    assert len(blocks.names) == 3
    assert blocks.left() == []


async def test_without_room_in_dev_shm_the_frames_are_pickled_and_it_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks = _RecordedBlocks(monkeypatch)
    monkeypatch.setattr(encode, "shm_room", lambda *a: 1024)
    settings = EncodingSettings(workers=1, threads=1)
    video = frames(5, 32, 32, seed=9)
    with capture_logs() as logs:
        async with EncoderPool(settings) as pool:
            first = await pool.encode(video, 16)
            second = await pool.encode(video, 16)
    assert first == second == _direct(video, settings)
    assert blocks.names == []
    warnings = [e for e in logs if e["event"] == "encoder_shared_memory_small"]
    assert len(warnings) == 1 and warnings[0]["video_bytes"] == video.nbytes


async def test_a_cancelled_encode_removes_its_shared_memory_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks = _RecordedBlocks(monkeypatch)
    settings = EncodingSettings(workers=1, threads=1, preset="slow")
    async with EncoderPool(settings) as pool:
        task = asyncio.create_task(pool.encode(frames(60, 240, 320, seed=4), 16))
        # The frames are in shared memory, the encode under way.
        assert await asyncio.to_thread(blocks.made.wait, 30)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert blocks.left() == []
        # The pool still encodes afterwards.
        assert await pool.encode(frames(3, 32, 32), 16) == _direct(frames(3, 32, 32), settings)


async def test_the_thread_executor_encodes_without_shared_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocks = _RecordedBlocks(monkeypatch)
    settings = EncodingSettings(executor="thread", workers=1, threads=1)
    video = frames(4, 32, 32, seed=2)
    async with EncoderPool(settings) as pool:
        assert await pool.encode(video, 16) == _direct(video, settings)
    assert blocks.names == []


async def test_a_shared_memory_block_that_cannot_be_made_falls_back_to_the_pickle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(video: np.ndarray) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(encode, "_copy_to_shared", refuse)
    settings = EncodingSettings(workers=1, threads=1)
    video = frames(4, 32, 32, seed=5)
    with capture_logs() as logs:
        async with EncoderPool(settings) as pool:
            assert await pool.encode(video, 16) == _direct(video, settings)
    assert [e["event"] for e in logs if "shared_memory" in e["event"]] == [
        "encoder_shared_memory_failed"
    ]
