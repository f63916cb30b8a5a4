"""Frames to H.264 MP4 bytes (PyAV: libx264 on the CPU, or NVENC on an NVIDIA card), and the
pool of processes that encodes them."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
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
from multiprocessing import shared_memory
from typing import TYPE_CHECKING, Any, cast

import av
import numpy as np
import structlog

from streamproc.errors import ConfigError, RecordRejected
from streamproc.generation.base import Frames
from streamproc.resource import AsyncResource

if TYPE_CHECKING:
    from av.video.stream import VideoStream

    from streamproc.settings import EncodingSettings

log = structlog.get_logger(__name__)


def to_uint8(video: np.ndarray) -> Frames:
    """Float frames in [0, 1] to uint8, rounding to nearest."""
    return np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)


#: The hardware H.264 encoder of NVIDIA cards, as FFmpeg names it.
NVENC = "h264_nvenc"
#: x264 presets → the NVENC presets of similar speed (p1 fastest … p7 slowest).
_NVENC_PRESETS = {
    "ultrafast": "p1",
    "superfast": "p2",
    "veryfast": "p3",
    "faster": "p4",
    "fast": "p5",
    "medium": "p6",
    "slow": "p7",
}


def encode_mp4(
    frames: Frames,
    fps: int,
    *,
    crf: int = 18,
    preset: str = "veryfast",
    threads: int = 1,
    codec: str = "libx264",
) -> bytes:
    """Encode ``(F, H, W, 3)`` uint8 frames as an MP4 (yuv420p, every frame kept).

    Deterministic for the same frames, settings and thread count (``threads=0`` lets x264
    choose from the CPU count, so bytes may differ between machines, never the picture).
    ``codec`` ``h264_nvenc`` encodes on the GPU: constant quality ``crf`` (NVENC's ``cq``) and
    the NVENC preset of about the x264 preset's speed.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (F, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    n, height, width, _ = frames.shape
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = cast("VideoStream", container.add_stream(codec, rate=Fraction(fps, 1)))
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        if codec == NVENC:
            stream.options = {"rc": "vbr", "cq": str(crf), "preset": _NVENC_PRESETS[preset]}
        else:
            stream.options = {"crf": str(crf), "preset": preset, "threads": str(threads)}
            stream.codec_context.thread_count = threads
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


#: Where POSIX shared memory lives (a tmpfs; 64 MiB by default in a Docker container).
SHM_DIR = "/dev/shm"


def shm_room(path: str = SHM_DIR) -> int:
    """Bytes free in the shared-memory file system (0 where there is none)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def encode_shared(name: str, shape: tuple[int, ...], fps: int, **options: Any) -> bytes:
    """In an encoder process: :func:`encode_mp4` of the uint8 frames the parent left in the
    shared-memory block ``name`` (the parent owns and unlinks it)."""
    # Python 3.13+: the parent alone tracks the block (earlier versions register it again
    # here, in the same tracker process, which the parent's unlink then clears).
    track: dict[str, Any] = {"track": False} if sys.version_info >= (3, 13) else {}
    block = shared_memory.SharedMemory(name=name, **track)
    try:
        frames: Frames = np.ndarray(shape, dtype=np.uint8, buffer=block.buf)
        try:
            return encode_mp4(frames, fps, **options)
        finally:
            del frames  # no view may outlive the mapping
    finally:
        block.close()


def nvenc_unavailable() -> str | None:
    """Why NVENC cannot encode here (None: it can): the PyAV build lacks the encoder, there
    is no NVIDIA driver, or the card refused to open a session. Encodes two tiny frames."""
    try:
        av.codec.Codec(NVENC, "w")
    except Exception:  # outcome: a start-time probe; the reason refuses or falls back, no record
        return f"this PyAV/FFmpeg build has no {NVENC} encoder"
    if ctypes.util.find_library("cuda") is None and not _loadable("libcuda.so.1"):
        return "no NVIDIA driver here (libcuda.so.1 not found)"
    try:
        encode_mp4(np.zeros((2, 64, 64, 3), np.uint8), 16, codec=NVENC)
    except (
        Exception
    ) as exc:  # outcome: start-time probe (FFmpeg says little more than "cannot open")
        return f"the {NVENC} encoder did not open: {exc}"
    return None


def _loadable(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_workers(cores: int | None = None) -> int:
    """Encoder processes for ``encoding.workers = "auto"``: every usable core but two (the
    event loop and the thread that launches GPU kernels), at least two, at most 32."""
    cores = usable_cores() if cores is None else cores
    return max(2, min(32, cores - 2))


async def choose_codec(requested: str) -> str:
    """The codec to encode with for ``encoding.codec``: ``libx264`` as asked; ``h264_nvenc``
    when it works here, else ConfigError saying why; ``auto``: NVENC where it works, x264
    otherwise (logged either way)."""
    if requested == "libx264":
        return requested
    reason = await asyncio.to_thread(nvenc_unavailable)
    if reason is None:
        log.info("encoder_codec", codec=NVENC, requested=requested)
        return NVENC
    if requested == NVENC:
        raise ConfigError(
            f"encoding.codec={NVENC} is not available here: {reason} "
            "(use libx264, or auto to fall back to it)"
        )
    log.info("encoder_codec", codec="libx264", requested=requested, nvenc_unavailable=reason)
    return "libx264"


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
        self._share_lock = asyncio.Lock()
        self._shm_warned = False
        self.rebuilds = 0
        self.workers = auto_workers() if settings.workers == "auto" else settings.workers
        #: The codec in use, decided at start (``encoding.codec`` may be 'auto').
        self.codec: str | None = None

    @property
    def key_material(self) -> dict[str, object]:
        """The encoder settings that change the picture, for the object key: preset and crf,
        and the codec when it is not libx264 (keys made before the codec setting hold)."""
        material: dict[str, object] = {"preset": self._settings.preset, "crf": self._settings.crf}
        if self.codec not in (None, "libx264"):
            material["codec"] = self.codec
        return material

    @property
    def healthy(self) -> bool:
        """False while the pool is missing or being replaced."""
        return self._pool is not None

    async def start(self) -> None:
        """Choose the codec and start every worker now, so the first video does not wait for
        a process spawn. Raises ConfigError when ``h264_nvenc`` was asked for and cannot run."""
        if self.codec is None:
            self.codec = await choose_codec(self._settings.codec)
        if self._pool is None:
            self._pool = await self._new_pool()
            log.info("encoder_pool_started", workers=self.workers, codec=self.codec)

    async def stop(self) -> None:
        """Shut the workers down (queued encodes are cancelled); idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def encode(self, frames: Frames, fps: int) -> bytes:
        """The MP4 of ``frames``; raises RecordRejected when it keeps killing the encoder."""
        s = self._settings
        if self.codec is None:  # encode() before start(): decide now
            self.codec = await choose_codec(s.codec)
        options: dict[str, Any] = {
            "crf": s.crf,
            "preset": s.preset,
            "threads": s.threads,
            "codec": self.codec,
        }
        block = await self._share(frames)
        try:
            if block is None:
                job = functools.partial(encode_mp4, frames, fps, **options)
            else:
                job = functools.partial(encode_shared, block.name, frames.shape, fps, **options)
            loop = asyncio.get_running_loop()
            for attempt in range(1, self._attempts + 1):
                pool = self._pool or await self._replace(None)
                try:
                    return await loop.run_in_executor(pool, job)
                except BrokenExecutor as exc:
                    log.warning("encoder_pool_broken", attempt=attempt, error=repr(exc)[:200])
                    await self._replace(pool)
        finally:
            if block is not None:
                block.close()
                block.unlink()
        raise RecordRejected(
            f"the MP4 encoder process died {self._attempts} times encoding this video",
            component="encoder",
        )

    async def _share(self, frames: Frames) -> shared_memory.SharedMemory | None:
        """The frames copied into a new shared-memory block for an encoder process, or None
        to send them pickled (threads need neither; a too small /dev/shm gets the pickle).

        Pickling a 121-frame 832x480 clip (145 MB) to a child holds the GIL for about 0.2 s
        in all, in bursts of up to 0.1 s, which the thread launching GPU kernels waits out;
        a copy into shared memory runs without the GIL and the child maps it. The room check
        and the copy are serialised, so concurrent videos never overfill the file system (a
        write beyond a full tmpfs would kill the process with SIGBUS)."""
        if self._settings.executor == "thread" or not self._settings.shared_memory:
            return None
        async with self._share_lock:
            if shm_room() < frames.nbytes + _SHM_HEADROOM:
                if not self._shm_warned:
                    self._shm_warned = True
                    log.warning(
                        "encoder_shared_memory_small",
                        path=SHM_DIR,
                        free_bytes=shm_room(),
                        video_bytes=frames.nbytes,
                        action="frames are pickled to the encoder processes instead",
                    )
                return None
            copy = asyncio.ensure_future(asyncio.to_thread(_copy_to_shared, frames))
            try:
                return await asyncio.shield(copy)
            except asyncio.CancelledError:
                copy.add_done_callback(_release_copy)  # the block the thread still makes
                raise
            except OSError as exc:  # no block could be made: the pickle still works
                log.warning("encoder_shared_memory_failed", error=repr(exc)[:200])
                return None

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
            return ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="streamproc-enc")
        loop = asyncio.get_running_loop()
        # Blocked around the spawns, the children start with SIGINT/SIGTERM blocked (the mask
        # survives fork and exec), so no signal reaches them before their initializer ignores
        # it; the parent receives any that arrived once they are unblocked.
        with terminal_signals_blocked():
            pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=_SpawnContext(),
                initializer=init_child,
                initargs=(os.getpid(),),
            )
            # Each submission spawns one worker while none is idle.
            waits = [loop.run_in_executor(pool, _ready) for _ in range(self.workers)]
        await asyncio.gather(*waits)
        return pool


#: Shared memory left free for everything else on the host.
_SHM_HEADROOM = 16 * 2**20


def _release_copy(copy: asyncio.Future[shared_memory.SharedMemory]) -> None:
    if not copy.cancelled() and copy.exception() is None:
        block = copy.result()
        block.close()
        block.unlink()


def _copy_to_shared(frames: Frames) -> shared_memory.SharedMemory:
    block = shared_memory.SharedMemory(create=True, size=max(1, frames.nbytes))
    try:
        np.copyto(np.ndarray(frames.shape, dtype=np.uint8, buffer=block.buf), frames)
    except BaseException:  # outcome: the block is removed and the error raised to encode()
        block.close()
        block.unlink()
        raise
    return block


class _SpawnProcess(multiprocessing.context.SpawnProcess):
    """An encoder process; ``terminate`` kills, because the process ignores SIGTERM by design
    (a broken pool terminates its remaining workers and would otherwise wait forever)."""

    def terminate(self) -> None:
        self.kill()


class _SpawnContext(multiprocessing.context.SpawnContext):
    Process = _SpawnProcess


@contextlib.contextmanager
def terminal_signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked in the main thread while children are spawned: they start
    with them blocked until :func:`init_child` ignores them (the mask survives fork and exec)."""
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


def init_child(parent_pid: int) -> None:
    """Runs first in every child process (encoders, context-parallel ranks): never act on
    terminal signals, die with the parent (spawn children from the main thread: the parent-
    death signal follows the spawning thread)."""
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
