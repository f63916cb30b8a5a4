"""Generate: hand misses to the micro-batcher, run ready batches on the generator, split and
retry failed ones.

Failure policy: a failed batch (the generator raised, or returned the wrong number of videos)
is split and each event retried alone, ``generation.retries`` more times, so one poisonous
prompt cannot fail its neighbours; then the event fails with
:class:`~streamproc.errors.GenerationError` (it dead-letters). An event whose deadline passed
before its batch ran fails with :class:`~streamproc.errors.DeadlineExceeded`. Jobs taken away
(partition revoked, a cancelled batch, a dead GPU loop, a lost generator —
:class:`~streamproc.errors.GeneratorLost`, e.g. a dead context-parallel rank) end with
:class:`~streamproc.stages.base.Abandoned`: their records stay uncommitted; a lost generator
also crashes the batch runner, which stops the worker. The GPU loop
itself is supervised by the processor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from streamproc.batching import MicroBatcher, ShapeKey
from streamproc.bus.base import Partition
from streamproc.errors import DeadlineExceeded, GenerationError, GeneratorLost
from streamproc.events import utcnow
from streamproc.generation.base import GenerationRequest, Generator
from streamproc.metrics import Metrics
from streamproc.outcome import RunSummary
from streamproc.settings import Settings
from streamproc.stages.admit import monotonic_deadline
from streamproc.stages.base import Abandoned, Admitted, Generated, StageClock

log = structlog.get_logger(__name__)

#: Runs a coroutine as a supervised task named ``name`` (a crash stops the worker).
Supervise = Callable[[Awaitable[None], str], "asyncio.Task[None]"]


@dataclass(eq=False)
class Job:
    """A cache miss waiting for the GPU."""

    request: GenerationRequest
    partition: Partition
    deadline: float | None
    future: asyncio.Future[Generated]
    attempts: int = 0
    submitted: float = 0.0  # monotonic time it joined the batcher


class Generate:
    """The generate stage: the batcher, the GPU loop and the batch runners."""

    def __init__(
        self,
        settings: Settings,
        generator: Generator,
        *,
        summary: RunSummary,
        metrics: Metrics,
        clock: StageClock,
    ) -> None:
        self._settings = settings
        self._generator = generator
        self._summary = summary
        self._metrics = metrics
        self._clock = clock
        self.batcher: MicroBatcher[Job] = MicroBatcher(
            window_s=settings.batch.window_ms / 1000.0,
            max_batch_size=self._max_batch_size,
            capacity=max(settings.batch.max_in_flight, 1),
            deadline_slack_s=settings.batch.deadline_slack_ms / 1000.0,
        )
        # Jobs handed to the batcher whose future is not resolved yet (queued or generating).
        self._jobs: set[Job] = set()

    def _max_batch_size(self, shape: ShapeKey) -> int:
        # The configured ceiling, lowered where the GPU memory budget says a shape is large.
        fits = self._generator.max_batch_size(shape)
        ceiling = self._settings.batch.max_batch_size
        return ceiling if fits is None else max(1, min(ceiling, fits))

    async def generate(
        self, request: Admitted, partition: Partition, batched: Callable[[], None]
    ) -> Generated:
        """``request``'s video frames, once its batch ran; ``batched`` is called as soon as
        the job is in the batcher (a flush no longer splits it off)."""
        event = request.event
        job = Job(
            request=GenerationRequest(
                event.event_id, request.prompt, request.params.negative_prompt, request.params.seed
            ),
            partition=partition,
            deadline=monotonic_deadline(event.deadline),
            future=asyncio.get_running_loop().create_future(),
        )
        job.submitted = time.monotonic()
        self._jobs.add(job)
        await self.batcher.submit(
            job, request.shape, priority=event.priority, deadline=job.deadline
        )
        batched()
        try:
            generated = await job.future
        finally:
            self._jobs.discard(job)
        structlog.contextvars.bind_contextvars(batch_id=generated.batch_id)
        return generated

    def abandon(self, which: Callable[[Job], bool], *, running: bool = True) -> None:
        """End the jobs ``which`` selects as :class:`Abandoned`: the queued ones, and with
        ``running`` those already handed to the generator too."""
        chosen = self.batcher.remove(which)
        if running:
            chosen += [j for j in self._jobs if which(j)]
        for job in chosen:
            self._jobs.discard(job)
            if not job.future.done():
                job.future.set_exception(Abandoned())

    async def loop(self, supervise: Supervise) -> None:
        """Hand ready batches to the generator, at most ``max_concurrent_batches`` at a time
        (two when decoding overlaps: one batch decodes while the next denoises), each in a
        task of its own run through ``supervise``."""
        slots = asyncio.Semaphore(max(1, self._generator.max_concurrent_batches))
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                batch = await self.batcher.next_batch()
                if batch is None:
                    slots.release()
                    break
                live = self._live(batch.items)
                if not live:
                    slots.release()
                    continue
                self._summary.batches += 1
                self._metrics.batches.inc()
                batch_id = f"b{self._summary.batches}"
                task = supervise(self._run_batch(batch.shape, live, batch_id), "batch runner")
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _: slots.release())
            if running:
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()

    def _live(self, jobs: list[Job]) -> list[Job]:
        """The jobs of a ready batch still worth running; a missed deadline fails its job."""
        now = time.monotonic()
        live: list[Job] = []
        for job in jobs:
            if job.future.done():
                continue  # its event was abandoned
            self._metrics.batcher_wait.observe(max(0.0, now - job.submitted))
            if job.deadline is not None and now > job.deadline:
                job.future.set_exception(DeadlineExceeded("deadline passed before generation"))
            else:
                live.append(job)
        return live

    async def _run_batch(self, shape: ShapeKey, jobs: list[Job], batch_id: str) -> None:
        """Generate ``jobs``. Every job's future is resolved when this returns, whatever
        happened (cancelled: its events are abandoned)."""
        structlog.contextvars.bind_contextvars(batch_id=batch_id)  # this task's own context
        try:
            await self._generate_batch(shape, jobs, batch_id)
        except BaseException as exc:
            # Cancelled, or a lost generator (no fault of these records): they stay unfinished.
            lost = isinstance(exc, asyncio.CancelledError | GeneratorLost)
            error: BaseException = Abandoned() if lost else exc
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            raise

    async def _generate_batch(self, shape: ShapeKey, jobs: list[Job], batch_id: str) -> None:
        batched_at = utcnow()
        log.debug("batch_started", shape=str(shape), size=len(jobs))
        try:
            output = await self._generator.generate(shape, [j.request for j in jobs])
            if len(output.videos) != len(jobs):
                raise GenerationError(
                    f"the generator returned {len(output.videos)} videos for {len(jobs)} prompts"
                )
        except GeneratorLost:
            raise  # the worker stops; splitting and retrying cannot help
        except Exception as exc:
            log.warning("batch_failed", shape=str(shape), size=len(jobs), error=repr(exc)[:300])
            await self._split_and_retry(shape, jobs, batch_id, exc)
            return
        generated_at = utcnow()
        self._summary.videos += len(jobs)
        self._metrics.videos_generated.inc(len(jobs))
        self._metrics.batch_size.observe(len(jobs))
        for stage, seconds in output.stage_seconds.items():
            self._clock(stage, seconds)
        for job, frames in zip(jobs, output.videos, strict=True):
            if not job.future.done():
                job.future.set_result(
                    Generated(frames, len(jobs), batched_at, generated_at, batch_id)
                )

    async def _split_and_retry(
        self, shape: ShapeKey, jobs: list[Job], batch_id: str, exc: Exception
    ) -> None:
        if len(jobs) > 1:
            for job in jobs:
                await self._generate_batch(shape, [job], batch_id)
            return
        job = jobs[0]
        job.attempts += 1
        if job.attempts <= self._settings.generation.retries:
            await self._generate_batch(shape, [job], batch_id)
        elif not job.future.done():
            error = exc if isinstance(exc, GenerationError) else GenerationError(repr(exc))
            if error is not exc:
                error.__cause__ = exc
            job.future.set_exception(error)
