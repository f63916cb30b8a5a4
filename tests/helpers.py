"""Test helpers: a generator spy around the real pipeline, JSONL helpers, the real MiniLM."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from streamproc.batching import ShapeKey
from streamproc.bus.base import Record
from streamproc.bus.local import JsonlSource
from streamproc.cache.embedder import BatchingEmbedder, SentenceTransformerEncoder
from streamproc.cache.semantic import SemanticCache
from streamproc.errors import GenerationError
from streamproc.events import (
    CacheOutcome,
    DeadLetter,
    DeadLetterReason,
    GenerationParameters,
    Origin,
    Timings,
    VideoResult,
    b64,
    utcnow,
)
from streamproc.generation.base import GeneratedBatch, GenerationRequest, Generator, StepControl

SMALL = {"width": 64, "height": 32, "num_frames": 5, "num_inference_steps": 2}


def event(event_id: str, prompt: str = "a red fox in the snow", **fields: Any) -> dict[str, Any]:
    """A valid prompt event dict of a small, fast shape."""
    return {"event_id": event_id, "prompt": prompt, **SMALL, **fields}


def write_jsonl(path: Path, lines: Iterable[dict[str, Any] | str | bytes]) -> Path:
    with open(path, "wb") as f:
        for line in lines:
            if isinstance(line, dict):
                line = json.dumps(line)
            if isinstance(line, str):
                line = line.encode()
            f.write(line + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class SpyGenerator:
    """Wraps a real generator: records every call, can fail or slow down chosen events."""

    def __init__(
        self,
        inner: Generator,
        *,
        fail: Callable[[GenerationRequest], bool] = lambda r: False,
        delay_s: float | Callable[[Sequence[GenerationRequest]], float] = 0.0,
    ) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []
        self.shapes: list[ShapeKey] = []
        self._fail = fail
        self._delay = delay_s
        self.release = threading.Event()
        self.release.set()

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def scheduler_name(self) -> str:
        return self.inner.scheduler_name

    @property
    def max_concurrent_batches(self) -> int:
        return self.inner.max_concurrent_batches

    def max_batch_size(self, shape: ShapeKey) -> int | None:
        return self.inner.max_batch_size(shape)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def generate(
        self,
        shape: ShapeKey,
        requests: Sequence[GenerationRequest],
        control: StepControl | None = None,
    ) -> GeneratedBatch:
        self.calls.append([r.event_id for r in requests])
        self.shapes.append(shape)
        delay = self._delay(requests) if callable(self._delay) else self._delay
        if delay:
            await asyncio.sleep(delay)
        # A threading.Event so tests can hold the "GPU" from any thread; waited in short
        # slices so a cancelled generation never leaves a thread blocked behind it.
        while not await asyncio.to_thread(self.release.wait, 0.05):
            pass
        if any(self._fail(r) for r in requests):
            raise GenerationError("injected failure")
        return await self.inner.generate(shape, requests, control)

    @property
    def generated_ids(self) -> list[str]:
        return [i for call in self.calls for i in call]


class GatedGenerator(SpyGenerator):
    """The tiny pipeline, pausing on its GPU thread after step ``gate_step`` of the first
    batch until ``gate`` is set: a cancel can be sent while a batch is mid-denoising."""

    def __init__(self, inner: Any, gate_step: int = 2) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.reached = threading.Event()
        self.gate_step = gate_step
        self.controls: list[StepControl] = []

    async def generate(
        self,
        shape: ShapeKey,
        requests: Sequence[GenerationRequest],
        control: StepControl | None = None,
    ) -> GeneratedBatch:
        if control is not None and not self.controls:
            step = control.step

            def gated(done: int, total: int) -> None:
                if done == self.gate_step:
                    self.reached.set()
                    self.gate.wait(30)
                step(done, total)

            control.step = gated  # type: ignore[method-assign]
        if control is not None:
            self.controls.append(control)
        return await super().generate(shape, requests, control)


def mp4s(settings: Any) -> int:
    return len(list(Path(settings.storage.local_dir).rglob("*.mp4")))


class Patience:
    """A deadline that moves while progress is seen.

    Waiting on a busy, shared machine, a fixed deadline fails a test whose work is merely
    slow. This one fails only after ``stall_s`` seconds in which the ``progress`` value did
    not change, or after ``ceiling_s`` in all (a bound for work that changes forever without
    ever getting there). Without a progress value it is a plain ``stall_s`` deadline.
    """

    def __init__(self, stall_s: float, ceiling_s: float | None = None) -> None:
        self.stall_s = stall_s
        self.ceiling_s = ceiling_s if ceiling_s is not None else max(8 * stall_s, 240.0)
        self._start = self._seen_at = time.monotonic()
        self._last: object = _UNSEEN

    def expired(self, progress: object = None) -> str | None:
        """Why the wait is over (None while it is not); ``progress`` is the latest value."""
        now = time.monotonic()
        if progress is not None and progress != self._last:
            self._last, self._seen_at = progress, now
        if now - self._seen_at > self.stall_s:
            if self._last is _UNSEEN:
                return f"not reached within {self.stall_s:.0f} s"
            return f"no progress for {self.stall_s:.0f} s (last: {self._last!r})"
        if now - self._start > self.ceiling_s:
            return f"not reached within the ceiling of {self.ceiling_s:.0f} s"
        return None


_UNSEEN = object()


async def wait_for(
    predicate: Callable[[], bool],
    seconds: float = 20.0,
    *,
    progress: Callable[[], object] | None = None,
) -> None:
    """Poll ``predicate`` until true; fail after ``seconds`` (without a change of
    ``progress()``, when given: see :class:`Patience`)."""
    patience = Patience(seconds)
    while not predicate():
        why = patience.expired(progress() if progress is not None else None)
        if why is not None:
            raise AssertionError(f"condition not reached: {why}")
        await asyncio.sleep(0.01)


async def eventually(
    check: Callable[[], Awaitable[bool]],
    seconds: float = 45.0,
    *,
    alive: Callable[[], None] = lambda: None,
    context: Callable[[], str] = lambda: "",
    progress: Callable[[], Awaitable[object]] | None = None,
    ceiling_s: float | None = None,
) -> None:
    """Poll an async condition until it holds; fail after ``seconds`` (without a change of
    ``await progress()``, when given, and at the latest after ``ceiling_s``: see
    :class:`Patience`). ``alive`` may raise earlier (e.g. when a process under test died),
    ``context`` adds to the failure."""
    patience = Patience(seconds, ceiling_s)
    while not await check():
        alive()
        why = patience.expired(await progress() if progress is not None else None)
        if why is not None:
            raise AssertionError(f"condition not reached: {why}\n{context()}")
        await asyncio.sleep(0.2)


def sample_result(event_id: str) -> VideoResult:
    """A well-formed ok result (for sink tests)."""
    now = utcnow()
    return VideoResult(
        result_id=VideoResult.result_id_for(event_id),
        event_id=event_id,
        status="ok",
        video_url="file:///v.mp4",
        object_key="videos/m/ab/abc.mp4",
        cache=CacheOutcome.MISS,
        model_id="m",
        parameters=GenerationParameters(
            width=64,
            height=32,
            num_frames=5,
            num_inference_steps=2,
            guidance_scale=5.0,
            seed=1,
            scheduler="unipc",
            fps=16,
        ),
        timings=Timings(received_at=now, completed_at=now),
        worker_id="w",
    )


def sample_dead_letter() -> DeadLetter:
    """A well-formed dead letter (for sink tests)."""
    return DeadLetter(
        reason=DeadLetterReason.MALFORMED,
        detail="bad",
        error_class="JSONDecodeError",
        original=b64(b"bad"),
        origin=Origin(topic="t", partition=0, offset=0),
        worker_id="w",
        failed_at=utcnow(),
    )


@functools.cache
def minilm() -> SentenceTransformerEncoder:
    """The real all-MiniLM-L6-v2 encoder, loaded once per test process (it is stateless)."""
    return SentenceTransformerEncoder()


def semantic_cache(**options: Any) -> SemanticCache:
    """A fresh in-process semantic cache over the real MiniLM."""
    return SemanticCache(BatchingEmbedder(minilm()), **options)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own on a free loopback port, to stop and restart at will
    (never the machine's Redis on 6379). No persistence unless ``durable`` (an append-only
    file written before every reply, so a restart finds every acknowledged write): otherwise
    a restart starts empty."""

    def __init__(
        self, directory: Path, *, durable: bool = False, password: str | None = None
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is not installed (.ci/run installs it)")
        self._binary = binary
        self._dir = directory
        self.port = free_port()
        self.password = password
        self._durable = durable
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self._durable else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self._dir),
                *(["--requirepass", self.password] if self.password else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not self.answers():
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise AssertionError("redis-server did not start")
            time.sleep(0.05)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                if self.password:
                    conn.sendall(f"AUTH {self.password}\r\n".encode())
                    if not conn.recv(16).startswith(b"+OK"):
                        return False
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=20)
        self._proc = None


class GatedSource(JsonlSource):
    """The real JSONL source, handing out each record only once the test releases it."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self._released = 0
        self._more = asyncio.Event()

    def release(self, count: int) -> None:
        self._released += count
        self._more.set()

    async def records(self) -> AsyncIterator[Record]:
        handed = 0
        async for record in super().records():
            while handed >= self._released:
                self._more.clear()
                await self._more.wait()
            handed += 1
            yield record


async def _relay(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay_s: float
) -> None:
    try:
        while data := await reader.read(65536):
            await asyncio.sleep(delay_s)
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def slow_redis(delay_s: float, port: int = 6379) -> AsyncIterator[str]:
    """A relay to the local Redis that holds every answer ``delay_s``: the URL of a Redis on a
    busy host. Requests pass at once."""
    relays: list[asyncio.Task[None]] = []

    async def accept(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        redis_r, redis_w = await asyncio.open_connection("127.0.0.1", port)
        relays.append(asyncio.create_task(_relay(client_r, redis_w, 0.0)))
        relays.append(asyncio.create_task(_relay(redis_r, client_w, delay_s)))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    finally:
        server.close()
        for relay in relays:
            relay.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
