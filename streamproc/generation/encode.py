"""Frames to H.264 MP4 bytes (PyAV, libx264), and the pool of processes that encodes them."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import io
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np
import structlog

from streamproc.errors import RecordRejected
from streamproc.generation.base import Frames
from streamproc.resource import AsyncResource

if TYPE_CHECKING:
    from streamproc.settings import EncodingSettings

log = structlog.get_logger(__name__)


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


class EncoderPool(AsyncResource):
    """Encodes MP4s off the event loop, in worker processes by default; survives their death.

    Worker processes are spawned (not forked: the parent may hold CUDA and many threads) with
    SIGINT and SIGTERM blocked and then ignored, so a Ctrl-C that a terminal sends to the whole
    process group reaches only the parent, which drains; they also die with the parent, even
    when it is SIGKILLed (Linux parent-death signal, plus a watcher thread elsewhere).

    x264 itself runs without the GIL, but the frame conversion around it does not; in worker
    processes the encoder never competes with the thread that launches GPU kernels.

    A pool whose worker died (``BrokenProcessPool``) is replaced and the encode tried again,
    up to ``attempts`` times for one video; a video that breaks the pool every time is
    :class:`~streamproc.errors.RecordRejected` (its event dead-letters) instead of looping.
    """

    def __init__(self, settings: EncodingSettings, *, attempts: int = 3) -> None:
        self._settings = settings
        self._attempts = max(1, attempts)
        self._pool: Executor | None = None
        self._lock = asyncio.Lock()
        self.rebuilds = 0

    @property
    def healthy(self) -> bool:
        """False while the pool is missing or being replaced."""
        return self._pool is not None

    async def start(self) -> None:
        """Start every worker now, so the first video does not wait for a process spawn."""
        if self._pool is None:
            self._pool = await self._new_pool()

    async def stop(self) -> None:
        """Shut the workers down (queued encodes are cancelled); idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def encode(self, frames: Frames, fps: int) -> bytes:
        """The MP4 of ``frames``; raises RecordRejected when it keeps killing the encoder."""
        s = self._settings
        job = functools.partial(
            encode_mp4, frames, fps, crf=s.crf, preset=s.preset, threads=s.threads
        )
        loop = asyncio.get_running_loop()
        for attempt in range(1, self._attempts + 1):
            pool = self._pool or await self._replace(None)
            try:
                return await loop.run_in_executor(pool, job)
            except BrokenExecutor as exc:
                log.warning("encoder_pool_broken", attempt=attempt, error=repr(exc)[:200])
                await self._replace(pool)
        raise RecordRejected(
            f"the MP4 encoder process died {self._attempts} times encoding this video",
            component="encoder",
        )

    async def _replace(self, broken: Executor | None) -> Executor:
        """A working pool: ``broken`` is shut down and a new one started, unless another
        caller already did so."""
        async with self._lock:
            if self._pool is not None and self._pool is not broken:
                return self._pool
            self._pool = None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            pool = await self._new_pool()
            self._pool = pool
            self.rebuilds += 1
            log.info("encoder_pool_replaced", rebuilds=self.rebuilds)
            return pool

    async def _new_pool(self) -> Executor:
        s = self._settings
        if s.executor == "thread":
            return ThreadPoolExecutor(max_workers=s.workers, thread_name_prefix="streamproc-enc")
        loop = asyncio.get_running_loop()
        # Blocked around the spawns, the children start with SIGINT/SIGTERM blocked (the mask
        # survives fork and exec), so no signal reaches them before their initializer ignores
        # it; the parent receives any that arrived once they are unblocked.
        with _terminal_signals_blocked():
            pool = ProcessPoolExecutor(
                max_workers=s.workers,
                mp_context=_SpawnContext(),
                initializer=_child_init,
                initargs=(os.getpid(),),
            )
            # Each submission spawns one worker while none is idle.
            waits = [loop.run_in_executor(pool, _ready) for _ in range(s.workers)]
        await asyncio.gather(*waits)
        return pool


class _SpawnProcess(multiprocessing.context.SpawnProcess):
    """An encoder process; ``terminate`` kills, because the process ignores SIGTERM by design
    (a broken pool terminates its remaining workers and would otherwise wait forever)."""

    def terminate(self) -> None:
        self.kill()


class _SpawnContext(multiprocessing.context.SpawnContext):
    Process = _SpawnProcess


@contextlib.contextmanager
def _terminal_signals_blocked() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _TERMINAL_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


_TERMINAL_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_PR_SET_PDEATHSIG = 1


def _child_init(parent_pid: int) -> None:
    """Runs first in every encoder process: never act on terminal signals, die with the
    parent."""
    for sig in _TERMINAL_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _TERMINAL_SIGNALS)  # ignored now: drop pending
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), daemon=True, name="streamproc-parent-watch"
    ).start()


def _watch_parent(parent_pid: int) -> None:
    # Where no parent-death signal exists: a re-parented process has lost its parent.
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _ready() -> bool:
    return True
