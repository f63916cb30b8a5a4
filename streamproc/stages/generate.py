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

Control plane (docs/control.md): jobs queue in their priority lane with their tenant's weight
(:class:`~streamproc.batching.MicroBatcher`); a cancel takes a queued job out at once and
marks a generating one in its batch's :class:`~streamproc.generation.base.StepControl`, so it
ends at the next denoising step boundary while the rest of the batch runs on unchanged; either
way its future fails with :class:`~streamproc.errors.EventCancelled` straight away. An event
older than ``control.max_event_age_s`` when its batch is formed fails with
:class:`~streamproc.errors.EventRefused` (``expired``) instead of running.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from streamproc.batching import MicroBatcher, ShapeKey
from streamproc.bus.base import Partition
from streamproc.control.cancels import Cancel
from streamproc.control.plane import ControlPlane
from streamproc.errors import (
    DeadlineExceeded,
    EventCancelled,
    EventRefused,
    GenerationError,
    GeneratorLost,
)
from streamproc.events import StatusState, utcnow
from streamproc.generation.base import BatchCancelled, GenerationRequest, Generator, StepControl
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
    tenant: str | None = None
    lane: int = 0
    #: When the event was made (Unix time): what expiry and tenant cancels compare with.
    event_time: float = 0.0
    #: Its batch's step control and its row there, while its batch runs.
    control: StepControl | None = None
    row: int = 0

    @property
    def labels(self) -> tuple[str, str]:
        return str(self.lane), self.tenant or "-"


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
        control: ControlPlane | None = None,
    ) -> None:
        self._settings = settings
        self._generator = generator
        self._summary = summary
        self._metrics = metrics
        self._clock = clock
        self._control = control if control is not None else ControlPlane(settings, metrics=metrics)
        self._control.cancels.subscribe(self._cancelled)
        self.batcher: MicroBatcher[Job] = MicroBatcher(
            window_s=settings.batch.window_ms / 1000.0,
            max_batch_size=self._max_batch_size,
            capacity=max(settings.batch.max_in_flight, 1),
            deadline_slack_s=settings.batch.deadline_slack_ms / 1000.0,
            starvation_s=settings.lanes.starvation_s,
        )
        # Jobs handed to the batcher whose future is not resolved yet (queued or generating).
        self._jobs: set[Job] = set()
        # Seconds per batch, smoothed: what a queued event's estimated start is made of.
        self._batch_seconds: float | None = None

    def _max_batch_size(self, shape: ShapeKey) -> int:
        # The configured ceiling, lowered where the GPU memory budget says a shape is large.
        fits = self._generator.max_batch_size(shape)
        ceiling = self._settings.batch.max_batch_size
        return ceiling if fits is None else max(1, min(ceiling, fits))

    async def generate(
        self,
        request: Admitted,
        partition: Partition,
        batched: Callable[[], None],
        *,
        event_time: float | None = None,
    ) -> Generated:
        """``request``'s video frames, once its batch ran; ``batched`` is called as soon as
        the job is in the batcher (a flush no longer splits it off). ``event_time`` (Unix
        time; default now) is what expiry and tenant cancels compare with.

        Raises :class:`EventCancelled` when a cancel reaches it before its video is made."""
        event = request.event
        control = self._control
        when = event_time if event_time is not None else time.time()
        control.check_cancelled(event, when, "queued")  # a cancel met during the lookup
        job = Job(
            request=GenerationRequest(
                event.event_id, request.prompt, request.params.negative_prompt, request.params.seed
            ),
            partition=partition,
            deadline=monotonic_deadline(event.deadline),
            future=asyncio.get_running_loop().create_future(),
            tenant=event.tenant,
            lane=control.lane(event),
            event_time=when,
        )
        job.submitted = time.monotonic()
        self._jobs.add(job)
        position = await self.batcher.submit(
            job,
            request.shape,
            priority=job.lane,
            deadline=job.deadline,
            tenant=event.tenant,
            weight=control.weight(event.tenant),
        )
        self._metrics.queue_depth.labels(*job.labels).inc()
        control.emit(
            event.event_id,
            StatusState.QUEUED,
            tenant=event.tenant,
            lane=job.lane,
            queue_position=position,
            estimated_start_at=self._estimated_start(request, position),
        )
        batched()
        try:
            generated = await job.future
        finally:
            self._jobs.discard(job)
        structlog.contextvars.bind_contextvars(batch_id=generated.batch_id)
        return generated

    def _estimated_start(self, request: Admitted, position: int) -> datetime | None:
        """When a job at ``position`` should start: the batches ahead of it times the recent
        seconds per batch (None until a batch has run)."""
        if self._batch_seconds is None:
            return None
        size = self.batcher.max_size(request.shape)
        batches = math.ceil(position / size) - 1 + self._generator.max_concurrent_batches
        return datetime.now(UTC) + timedelta(seconds=batches * self._batch_seconds)

    def _cancelled(self, cancel: Cancel) -> None:
        """A new cancel: take its queued jobs out, stop its generating ones at the next step
        boundary (their batch runs on for the others). Both fail with EventCancelled now."""

        def covered(job: Job) -> bool:
            return cancel.covers(job.request.event_id, job.tenant, job.event_time)

        for job in self.batcher.remove(covered):
            self._metrics.queue_depth.labels(*job.labels).dec()
            self._end(job, EventCancelled(cancel.reason, "queued"))
        for job in [j for j in self._jobs if j.control is not None and covered(j)]:
            job.control.cancel(job.row)  # type: ignore[union-attr]
            self._end(job, EventCancelled(cancel.reason, "generating"))

    def _end(self, job: Job, error: EventCancelled) -> None:
        self._jobs.discard(job)
        if not job.future.done():
            self._metrics.cancellations.labels(error.stage).inc()
            job.future.set_exception(error)

    def abandon(self, which: Callable[[Job], bool], *, running: bool = True) -> None:
        """End the jobs ``which`` selects as :class:`Abandoned`: the queued ones, and with
        ``running`` those already handed to the generator too."""
        chosen = self.batcher.remove(which)
        for job in chosen:
            self._metrics.queue_depth.labels(*job.labels).dec()
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
                for job in batch.items:
                    self._metrics.queue_depth.labels(*job.labels).dec()
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
        wall = time.time()
        live: list[Job] = []
        for job in jobs:
            if job.future.done():
                continue  # its event was abandoned
            waited = max(0.0, now - job.submitted)
            self._metrics.batcher_wait.observe(waited)
            self._metrics.queue_wait.labels(*job.labels).observe(waited)
            if job.deadline is not None and now > job.deadline:
                job.future.set_exception(DeadlineExceeded("deadline passed before generation"))
                continue
            try:
                self._control.check_expired(job.event_time, "generation", wall)
            except EventRefused as exc:
                job.future.set_exception(exc)
                continue
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
        started = time.monotonic()
        log.debug("batch_started", shape=str(shape), size=len(jobs))
        jobs = [j for j in jobs if not j.future.done()]  # cancelled while a retry waited
        if not jobs:
            return
        control = self._step_control(jobs, shape)
        try:
            output = await self._generator.generate(shape, [j.request for j in jobs], control)
            if len(output.videos) != len(jobs):
                raise GenerationError(
                    f"the generator returned {len(output.videos)} videos for {len(jobs)} prompts"
                )
        except BatchCancelled:
            log.info("batch_cancelled", shape=str(shape), size=len(jobs), step=control.steps_done)
            return  # every job of it already ended as cancelled
        except GeneratorLost:
            raise  # the worker stops; splitting and retrying cannot help
        except Exception as exc:
            log.warning("batch_failed", shape=str(shape), size=len(jobs), error=repr(exc)[:300])
            await self._split_and_retry(shape, jobs, batch_id, exc)
            return
        finally:
            for job in jobs:
                job.control = None
        generated_at = utcnow()
        seconds = time.monotonic() - started
        previous = self._batch_seconds
        self._batch_seconds = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        self._summary.videos += len(jobs)
        self._metrics.videos_generated.inc(len(jobs))
        self._metrics.batch_size.observe(len(jobs))
        for stage, stage_seconds in output.stage_seconds.items():
            self._clock(stage, stage_seconds)
        for job, frames in zip(jobs, output.videos, strict=True):
            if not job.future.done():
                job.future.set_result(
                    Generated(frames, len(jobs), batched_at, generated_at, batch_id)
                )

    def _step_control(self, jobs: list[Job], shape: ShapeKey) -> StepControl:
        """The batch's step control: rows for cancels, 'generating' status at step
        boundaries (rate-limited by ``status.step_interval_s``)."""
        plane = self._control
        loop = asyncio.get_running_loop()
        total = shape.num_inference_steps
        size = len(jobs)

        def report(done: int, steps: int) -> None:
            for job in jobs:
                if not job.future.done():
                    plane.emit(
                        job.request.event_id,
                        StatusState.GENERATING,
                        tenant=job.tenant,
                        lane=job.lane,
                        step=done,
                        total_steps=steps,
                        batch_size=size,
                    )

        def on_step(done: int, steps: int) -> None:  # on the GPU thread
            loop.call_soon_threadsafe(report, done, steps)

        control = StepControl(
            size,
            on_step=on_step if plane.status is not None else None,
            interval_s=self._settings.status.step_interval_s,
        )
        for row, job in enumerate(jobs):
            job.control, job.row = control, row
        report(0, total)
        return control

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
