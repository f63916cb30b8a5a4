"""The wiring: source → validate → cache → batcher → generator → store → cache → sink → commit.

Delivery invariants (see ``docs/delivery.md``):

1. **Store, then publish, then commit.** A result is published only after its video is
   durable in the store, and an offset is committed only after the result (or dead letter) of
   that event and of every earlier event of its partition is acknowledged by the sink
   (:class:`~streamproc.bus.offsets.OffsetTracker`).
2. **Exactly one outcome per record, by construction.** :meth:`Processor._handle` is the one
   choke point: whatever a record's handling raises — any exception type, in any stage — the
   record ends as a dead letter (a specific reason where one fits, else ``internal_error``
   naming the exception) and its offset finishes, unless its answer was already durable.
   Dead letters are built so their own serialisation cannot fail and their size fits the sink.
   Only three things leave a record without an outcome, and each leaves it *uncommitted*, so
   it is delivered again: the process dies; the worker stops before the record finished
   (abandoned: grace exhausted, forced stop, partition revoked); a service refuses the worker
   for good (:class:`~streamproc.errors.ServiceRefused`: the worker *faults*, see below).
   The run summary always adds up: ``received = results + dead letters + abandoned``.
3. **Idempotent outputs.** Re-processing an event gives the same result id, seed and object
   key, so a retry overwrites rather than duplicates.
4. **Bad input never stops a partition.** It becomes a dead letter and its offset is committed.
5. **Transient faults are retried, permanent ones never.** A
   :class:`~streamproc.errors.TransientError` is retried with backoff while the record stays
   unfinished. A :class:`~streamproc.errors.RecordRejected` dead-letters its record. A
   :class:`~streamproc.errors.ServiceRefused` *faults* the worker: readiness fails naming the
   cause, input is paused, records that met it are abandoned (uncommitted) and the worker stops
   after ``faults.exit_after_s`` with a non-zero exit status.
6. **Supervised tasks.** The input, GPU, batch and commit tasks are watched: one that crashes
   is logged once with its traceback, readiness fails, what can still finish is drained, and
   the run ends with :attr:`RunSummary.crashed` set (a non-zero exit status).

One task per record carries it through every stage; GPU work happens in one loop that takes
ready batches from the :class:`~streamproc.batching.MicroBatcher` and resolves each event's
future, so storing and publishing of one batch overlaps with generating the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar

import structlog

from streamproc.batching import MicroBatcher, ShapeKey
from streamproc.bus.base import Partition, Record, Sink, Source
from streamproc.bus.offsets import OffsetTracker
from streamproc.cache.base import Cache, CacheEntry, CacheHit, CacheScope, scope_of
from streamproc.cache.coalesce import InFlight, Lead
from streamproc.errors import (
    DeadlineExceeded,
    GenerationError,
    InvalidEventError,
    PermanentError,
    RecordRejected,
    ServiceRefused,
    StreamprocError,
    TransientError,
)
from streamproc.events import (
    CacheMode,
    CacheOutcome,
    DeadLetter,
    DeadLetterReason,
    GenerationParameters,
    Origin,
    PromptEvent,
    Timings,
    VideoResult,
    b64,
    canonical_prompt,
    dead_letter_for,
    decode_prompt,
    event_id_of,
    safe_text,
    utcnow,
)
from streamproc.generation.base import Frames, GenerationRequest, Generator
from streamproc.generation.encode import EncoderPool
from streamproc.ledger.base import AnswerKind, LedgerEntry, ResultLedger, event_key, record_key
from streamproc.metrics import Metrics
from streamproc.retry import RetryPolicy
from streamproc.settings import Settings
from streamproc.storage.base import ObjectStore, object_key

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Outcome(StrEnum):
    """How one record ended: the first three publish a result, the last two a dead letter."""

    HIT_EXACT = "hit-exact"
    HIT_SEMANTIC = "hit-semantic"
    GENERATED = "generated"
    DEAD_LETTERED = "dead-lettered"
    FAILED = "failed"  # a dead letter too: generation failed (or its deadline passed)
    #: A local re-run met an event whose answer its output already holds: nothing published.
    ALREADY_ANSWERED = "already-answered"


RESULT_OUTCOMES = frozenset({Outcome.HIT_EXACT, Outcome.HIT_SEMANTIC, Outcome.GENERATED})


class ExitStatus:
    """Exit statuses of a worker run (``streamproc run``; documented in docs/operations.md)."""

    OK = 0  #: input ended or stop requested, and every record received has its outcome
    ERROR = 1  #: could not start (settings, a service refusing or unreachable at start)
    ABANDONED = 3  #: stopped with records unfinished (uncommitted: delivered again)
    FAULTED = 4  #: a service refused the worker for good while running
    CRASHED = 5  #: a supervised task crashed (a bug); what could finish was drained
    INTERRUPTED = 130  #: interrupted before the worker started


class ProcessorObserver(Protocol):
    """Watches records flow (progress display, metrics)."""

    def record_received(self) -> None:
        """A record was admitted."""

    def record_finished(self, outcome: Outcome, seconds: float) -> None:
        """A record's outcome is durable; ``seconds`` since it was admitted."""


@dataclass
class RunSummary:
    """Counts of a run, by outcome."""

    received: int = 0
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    batches: int = 0
    videos: int = 0
    abandoned: int = 0
    #: Total seconds per stage: text_encode, denoise, vae_decode (per batch, summed over
    #: batches), mp4_encode and store (per video, summed).
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: The permanent fault that stopped the worker, if one did.
    faulted: str | None = None
    #: The supervised task that crashed, and why, if one did.
    crashed: str | None = None

    @property
    def finished(self) -> int:
        """Records whose outcome is durable."""
        return sum(self.outcomes.values())

    @property
    def results(self) -> int:
        """Records answered with a result."""
        return sum(n for o, n in self.outcomes.items() if o in RESULT_OUTCOMES)

    @property
    def dead_letters(self) -> int:
        """Records answered with a dead letter."""
        return self.finished - self.results - self.already_answered

    @property
    def already_answered(self) -> int:
        """Records a local re-run found answered in its output already."""
        return self.outcomes[Outcome.ALREADY_ANSWERED]

    @property
    def exit_status(self) -> int:
        """The process exit status this run calls for (:class:`ExitStatus`)."""
        if self.crashed is not None:
            return ExitStatus.CRASHED
        if self.faulted is not None:
            return ExitStatus.FAULTED
        if self.abandoned:
            return ExitStatus.ABANDONED
        return ExitStatus.OK


@dataclass(eq=False)
class _Job:
    """A cache miss waiting for the GPU."""

    request: GenerationRequest
    partition: Partition
    deadline: float | None
    future: asyncio.Future[_Generated]
    attempts: int = 0
    submitted: float = 0.0  # monotonic time it joined the batcher


@dataclass(frozen=True)
class _Generated:
    frames: Frames
    batch_size: int
    batched_at: datetime
    generated_at: datetime
    batch_id: str


@dataclass
class _Trace:
    """When a record's event began: its own timestamp where it has one (wall clock)."""

    admitted: float
    origin: float | None = None


@dataclass
class _Flight:
    """One admitted record: its ledger key, and whether its outcome is durable yet."""

    record: Record
    outcome: Outcome | None = None
    #: Where its answer is pinned in the result ledger: the event id once the record decoded
    #: as a valid event, else the record's origin and content.
    key: str = ""
    payload_hash: str = ""
    #: The answer this handling pinned in the ledger (to tell it from another worker's).
    claimed: str | None = None
    #: The ledger held an answer for this key that cannot be read: the new one replaces it.
    replace: bool = False


class _Abandoned(Exception):
    """The job was taken away (partition revoked, GPU loop gone) before it ran."""


class _Held(Exception):
    """The record met a permanent fault of a service: it stays unfinished (uncommitted)."""


class Processor:
    """Runs the flow until the input ends or :meth:`request_stop` is called."""

    def __init__(
        self,
        settings: Settings,
        *,
        source: Source,
        sink: Sink,
        store: ObjectStore,
        generator: Generator,
        cache: Cache,
        observers: Sequence[ProcessorObserver] = (),
        replay_id: str | None = None,
        metrics: Metrics | None = None,
        encoder: EncoderPool | None = None,
        ledger: ResultLedger | None = None,
        reprocess: bool = False,
        skip_answered: bool = False,
    ) -> None:
        """``replay_id`` marks every result as made by that replay (``streamproc replay``).

        ``ledger`` pins each event's first answer (a redelivery re-publishes it); with
        ``reprocess`` events are answered anew and the ledger's answers replaced; with
        ``skip_answered`` (local re-runs) an event whose answer this sink already holds is
        finished without publishing it again.
        """
        self._settings = settings
        self._replay_id = replay_id
        self._metrics = metrics if metrics is not None else Metrics()
        self.source = source
        self._sink = sink
        self._store = store
        self._generator = generator
        self._cache = cache
        self._observers = list(observers)
        self.tracker = OffsetTracker()
        self.summary = RunSummary()
        self._batcher: MicroBatcher[_Job] = MicroBatcher(
            window_s=settings.batch.window_ms / 1000.0,
            max_batch_size=self._max_batch_size,
            capacity=max(settings.batch.max_in_flight, 1),
            deadline_slack_s=settings.batch.deadline_slack_ms / 1000.0,
        )
        self._tasks: dict[asyncio.Task[None], _Flight] = {}
        # Admitted events not yet in the batcher nor finished (e.g. embedding for the cache).
        self._unbatched: set[asyncio.Task[None]] = set()
        self._all_batched = asyncio.Event()
        self._all_batched.set()
        self._inflight = InFlight(cache, near=settings.cache.coalesce_near_duplicates)
        # Jobs handed to the batcher whose future is not resolved yet (queued or generating).
        self._jobs: set[_Job] = set()
        # Records whose answer (result or dead letter) the sink acknowledged.
        self._published: dict[tuple[Partition, int], Outcome] = {}
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._stopped_at = 0.0
        self._paused = False
        self._encoder = encoder if encoder is not None else EncoderPool(settings.encoding)
        self._ledger = ledger
        self._reprocess = reprocess
        self._skip_answered = skip_answered
        # No cache, no reuse: identical requests in flight are not shared either.
        self._coalesce = settings.cache.backend != "none"
        self._store_urls_expire = bool(getattr(store, "urls_expire", False))
        self._fault_timer: asyncio.TimerHandle | None = None
        self._retries = RetryPolicy.for_steps(settings.storage, self._metrics)
        self._metrics.batcher_queue_depth.set_function(lambda: len(self._batcher))
        self._metrics.events_in_flight.set_function(lambda: len(self._tasks))

    def _max_batch_size(self, shape: ShapeKey) -> int:
        # The configured ceiling, lowered where the GPU memory budget says a shape is large.
        fits = self._generator.max_batch_size(shape)
        ceiling = self._settings.batch.max_batch_size
        return ceiling if fits is None else max(1, min(ceiling, fits))

    def _add_stage(self, name: str, seconds: float) -> None:
        self.summary.stage_seconds[name] = self.summary.stage_seconds.get(name, 0.0) + seconds
        self._metrics.stage(name, seconds)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def healthy(self) -> tuple[bool, str]:
        """Readiness of the processor itself: False once a service refused it for good or a
        supervised task crashed (the worker is stopping), or while the encoder is replaced."""
        if self.summary.crashed is not None:
            return False, f"crashed: {self.summary.crashed}"
        if self.summary.faulted is not None:
            return False, f"faulted: {self.summary.faulted}"
        if not self._encoder.healthy:
            return False, "the MP4 encoder pool is being replaced"
        return True, "ok"

    def request_stop(self, *, force: bool = False) -> None:
        """Stop reading input, finish in-flight work, commit, return from :meth:`run`.

        With ``force`` in-flight work is abandoned at once (it stays uncommitted).
        """
        if not self._stop.is_set():
            self._stopped_at = time.monotonic()
        self._stop.set()
        if force:
            self._force.set()

    async def run(self) -> RunSummary:
        """Process records until the input ends or a stop is requested; then drain.

        Raises what the source raised (after the drain) when the input failed; a crash of any
        other supervised task ends the run with :attr:`RunSummary.crashed` set.
        """
        self.source.set_listener(self)
        await self._encoder.start()
        consume = asyncio.create_task(self._consume(), name="streamproc-consume")
        gpu = self._supervise(self._gpu_loop(), "gpu loop")
        committer = self._supervise(self._commit_loop(), "commit loop")
        stop_wait = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({consume, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not consume.done():
                log.info("stop_requested", in_flight=len(self._tasks))
                self.source.close_input()
                consume.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consume  # re-raises a source failure after the drain below
        except ServiceRefused as exc:
            self._fault(exc)
            raise
        except (TransientError, PermanentError, InvalidEventError):
            raise  # the source's own one-line failure
        except Exception as exc:
            self._crashed("input", exc)
        finally:
            stop_wait.cancel()
            await self._drain(gpu)
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self._final_commit()
            await self._encoder.stop()
            if self._fault_timer is not None:
                self._fault_timer.cancel()
        return self.summary

    def _supervise(self, work: Awaitable[None], name: str) -> asyncio.Task[None]:
        """Run ``work`` as a watched task: if it crashes, the worker says so and stops."""

        async def watched() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._crashed(name, exc)

        return asyncio.create_task(watched(), name=f"streamproc-{name.replace(' ', '-')}")

    def _crashed(self, name: str, exc: BaseException) -> None:
        """A supervised task died: log it once, fail readiness, stop with what can finish."""
        if self.summary.crashed is None:
            self.summary.crashed = f"{name}: {type(exc).__name__}: {safe_text(str(exc), 300)}"
            log.error("task_crashed", task=name, exc_info=exc)
            self._metrics.task_crashes.labels(name).inc()
        if name == "gpu loop":
            # Nothing will run the queued jobs: their events end unfinished (uncommitted).
            self._abandon_jobs(lambda _job: True)
        self.request_stop()

    def _fault(self, exc: PermanentError) -> None:
        """A service refused the worker for good: pause input, fail readiness, and stop after
        ``faults.exit_after_s`` (non-zero exit) so an orchestrator restarts the worker."""
        if self.summary.faulted is not None:
            return
        self.summary.faulted = f"{exc.component}: {safe_text(str(exc), 500)}"
        wait_s = self._settings.faults.exit_after_s
        log.error("worker_faulted", component=exc.component, error=str(exc), exit_after_s=wait_s)
        self._metrics.faults.labels(exc.component).inc()
        if not self._paused:
            self._paused = True
            self.source.pause()
        self._fault_timer = asyncio.get_running_loop().call_later(wait_s, self.request_stop)

    def _abandon_jobs(self, which: Callable[[_Job], bool]) -> None:
        for job in self._batcher.remove(which):
            self._jobs.discard(job)
        for job in [j for j in self._jobs if which(j)]:
            self._jobs.discard(job)
            if not job.future.done():
                job.future.set_exception(_Abandoned())

    async def _drain(self, gpu: asyncio.Task[None]) -> None:
        """Finish admitted work, then stop the GPU loop.

        Events still looking up the cache join the batcher before the flush, so it does not
        split batches they would have joined; the batcher stays open until every event is
        done (a follower whose leader failed submits late). When the input simply ended this
        waits as long as the work takes; after a stop request, for ``shutdown_grace_s`` from
        the request (nothing with a forced stop). Work still unfinished then is abandoned,
        uncommitted (and counted as abandoned when its task ends).
        """
        batched = asyncio.create_task(self._all_batched.wait())
        await self._settle({batched})
        batched.cancel()
        self._batcher.flush()
        pending = set(self._tasks)
        if pending:
            await self._settle(pending)
            late = {t for t in pending if not t.done()}
            if late:
                log.warning("shutdown_abandoned", events=len(late))
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        self._batcher.close()
        if not gpu.done():
            try:
                await asyncio.wait_for(gpu, timeout=max(self._settings.shutdown_grace_s, 0.1))
            except TimeoutError:
                log.warning("shutdown_gpu_abandoned")

    async def _settle(self, tasks: set[asyncio.Task[Any]]) -> None:
        """Wait for ``tasks``: without limit while no stop is requested, then until the grace
        period after the stop request ends or a forced stop."""
        remaining = {t for t in tasks if not t.done()}
        if remaining and not self._stop.is_set():
            stop_wait = asyncio.create_task(self._stop.wait())
            while remaining and not self._stop.is_set():
                await asyncio.wait({*remaining, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                remaining = {t for t in remaining if not t.done()}
            stop_wait.cancel()
        if remaining:
            left = self._stopped_at + self._settings.shutdown_grace_s - time.monotonic()
            await self._wait_or_force(remaining, max(left, 0.0))

    async def _wait_or_force(self, tasks: set[asyncio.Task[Any]], seconds: float) -> None:
        """Wait until ``tasks`` are done, ``seconds`` passed or a forced stop was requested."""
        deadline = time.monotonic() + seconds
        forced = asyncio.create_task(self._force.wait())
        try:
            remaining = {t for t in tasks if not t.done()}
            while remaining and not forced.done():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await asyncio.wait(
                    {*remaining, forced}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                remaining = {t for t in remaining if not t.done()}
        finally:
            forced.cancel()

    # -- consuming -----------------------------------------------------------------------

    async def _consume(self) -> None:
        async for record in self.source.records():
            self._admit(record)

    def _admit(self, record: Record) -> None:
        self.tracker.track(record.partition, record.offset)
        self.summary.received += 1
        self._metrics.events_received.inc()
        for observer in self._observers:
            observer.record_received()
        flight = _Flight(record)
        task = asyncio.create_task(self._handle(flight))
        self._tasks[task] = flight
        self._unbatched.add(task)
        self._all_batched.clear()
        task.add_done_callback(self._task_done)
        if not self._paused and len(self._tasks) >= self._settings.batch.max_in_flight:
            self._paused = True
            self.source.pause()
            log.debug("source_paused", in_flight=len(self._tasks))

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Every record task ends here: one without a durable outcome was abandoned (it stays
        uncommitted and is delivered again), whatever ended it, even before it started."""
        flight = self._tasks.pop(task)
        self._published.pop((flight.record.partition, flight.record.offset), None)
        self._unbatched.discard(task)
        if not self._unbatched:
            self._all_batched.set()
        if flight.outcome is None:
            self.summary.abandoned += 1
            self._metrics.events_abandoned.inc()
        self._maybe_resume()

    def _maybe_resume(self) -> None:
        if (
            self._paused
            and self.summary.faulted is None
            and len(self._tasks) <= self._settings.batch.max_in_flight * 3 // 4
        ):
            self._paused = False
            self.source.resume()
            log.debug("source_resumed", in_flight=len(self._tasks))

    async def _handle(self, flight: _Flight) -> None:
        """Carry one record to exactly one durable outcome: the choke point of invariant 2.

        Any exception from any stage becomes a dead letter, unless the answer was already
        durable (then it is logged and the record is finished as answered). Cancellation,
        :class:`_Abandoned` and :class:`ServiceRefused` (the worker faults) leave the record
        unfinished instead: it is uncommitted and delivered again.
        """
        record = flight.record
        started = time.monotonic()
        trace = _Trace(
            admitted=time.time(),
            origin=record.timestamp_ms / 1000.0 if record.timestamp_ms else None,
        )
        structlog.contextvars.bind_contextvars(
            topic=record.partition.topic,
            partition=record.partition.partition,
            offset=record.offset,
        )
        failure: Exception | None = None
        try:
            outcome = await self._process(flight, trace)
            # What was published decides (another worker's earlier answer may have won).
            flight.outcome = self._published.get((record.partition, record.offset), outcome)
        except (_Abandoned, _Held):
            return
        except ServiceRefused as exc:
            self._fault(exc)
            return
        except Exception as exc:
            failure = exc
        finally:
            self._reached_batcher()
        if failure is not None:
            answered = self._published.get((record.partition, record.offset))
            if answered is not None:
                log.error("event_failed_after_answer", exc_info=failure)
                flight.outcome = answered
            else:
                flight.outcome = await self._dead_letter_failure(flight, failure)
        if flight.outcome is not None:
            self._finish(record, flight.outcome, trace, started)

    def _finish(self, record: Record, outcome: Outcome, trace: _Trace, started: float) -> None:
        self.tracker.finish(record.partition, record.offset)
        self._published.pop((record.partition, record.offset), None)
        self.summary.outcomes[outcome] += 1
        try:
            self.source.finished(record)
            self._metrics.events_finished.labels(outcome.value).inc()
            since = trace.origin if trace.origin is not None else trace.admitted
            self._metrics.end_to_end_latency.labels(outcome.value).observe(
                max(0.0, time.time() - since)
            )
            seconds = time.monotonic() - started
            for observer in self._observers:
                observer.record_finished(outcome, seconds)
        except Exception:  # bookkeeping only: the outcome is durable and counted already
            log.exception("finish_bookkeeping_failed")

    async def _dead_letter_failure(self, flight: _Flight, exc: Exception) -> Outcome | None:
        """The dead letter of a record whose handling raised ``exc``; None when even that
        cannot be made durable (the record then stays unfinished and the worker stops)."""
        record = flight.record
        if await self._answered_in_output(flight):
            return Outcome.ALREADY_ANSWERED
        reason, detail, error_class = _classify(exc)
        if reason is DeadLetterReason.INTERNAL_ERROR:
            log.error("event_crashed", exc_info=exc)
        else:
            log.warning("event_rejected", reason=reason.value, detail=safe_text(detail, 300))
        self._metrics.dead_letters.labels(reason.value).inc()
        try:
            await self._dead_letter(flight, reason, detail, error_class, _event_id(record.value))
        except (asyncio.CancelledError, _Abandoned):
            raise
        except ServiceRefused as exc2:
            self._fault(exc2)
            return None
        except Exception as exc2:
            # A dead letter is built so that this cannot happen; if it does, stop loudly.
            self._crashed("dead letters", exc2)
            return None
        return Outcome.FAILED if reason in _GENERATION_REASONS else Outcome.DEAD_LETTERED

    def _reached_batcher(self) -> None:
        """The current event is in the batcher or finished: a flush no longer splits it off."""
        task = asyncio.current_task()
        if task is not None:
            self._unbatched.discard(task)
        if not self._unbatched:
            self._all_batched.set()

    async def _process(self, flight: _Flight, trace: _Trace) -> Outcome:
        record = flight.record
        received = utcnow()
        flight.key = self._ledger_key(record_key(record))
        if record.cut_at is not None:
            raise InvalidEventError(
                DeadLetterReason.MALFORMED,
                f"record longer than {record.cut_at} bytes (cut by the source)",
                "RecordTooLarge",
            )
        # Raises InvalidEventError for anything unusable; _handle dead-letters it.
        event = decode_prompt(record.value, self._settings.event_limits(self._model_id))
        structlog.contextvars.bind_contextvars(event_id=event.event_id)
        if event.created_at is not None:
            trace.origin = event.created_at.timestamp()
        key = self._ledger_key(event_key(event.event_id))
        payload_hash = event.payload_hash()
        if self._ledger is not None and not self._reprocess:
            held = await self._held(flight, key)
            if held is not None:
                return await self._answer_again(flight, held, key, payload_hash)
        flight.key, flight.payload_hash = key, payload_hash
        outcome = await self._answer(flight, event, received)
        # What went out decides: the ledger may have held an earlier answer of another kind.
        return self._published.get((record.partition, record.offset), outcome)

    @property
    def _model_id(self) -> str:
        return self._generator.model_id

    # -- answering one event -------------------------------------------------------------

    async def _answer(self, flight: _Flight, event: PromptEvent, received: datetime) -> Outcome:
        prompt = canonical_prompt(event.prompt)
        negative = canonical_prompt(event.negative_prompt) if event.negative_prompt else None
        params = GenerationParameters(
            width=event.width,
            height=event.height,
            num_frames=event.num_frames,
            num_inference_steps=event.num_inference_steps,
            guidance_scale=event.guidance_scale,
            seed=event.effective_seed(),
            negative_prompt=negative,
            scheduler=self._generator.scheduler_name,
            fps=self._settings.generation.fps,
            # The request class was validated at decode.
            step_cache=self._settings.generation.step_cache_for(event.quality),
        )
        scope = scope_of(event, self._model_id, params.step_cache)
        mode = event.cache_mode or self._settings.cache.mode
        lead: Lead | None = None
        if mode is CacheMode.REUSE:
            started = time.perf_counter()
            hit = await self._lookup(prompt, scope, event.seed)
            self._add_stage("cache_lookup", time.perf_counter() - started)
            if hit is None and self._coalesce:
                # The same or a near-duplicate request is being generated: share its video.
                hit = await self._inflight.follow(prompt, scope, seed=event.seed)
            self._metrics.cache_lookup(
                "miss" if hit is None else hit.outcome.value,
                hit.similarity if hit is not None else None,
            )
            if hit is not None:
                await self._publish_hit(flight, event, params, hit, received)
                return (
                    Outcome.HIT_SEMANTIC
                    if hit.outcome is CacheOutcome.HIT_SEMANTIC
                    else Outcome.HIT_EXACT
                )
            if self._coalesce:
                lead = self._inflight.lead(prompt, scope, seed=params.seed)
        made: CacheEntry | None = None
        try:
            made = await self._generate(flight, event, prompt, params, scope, mode, received)
        finally:
            if lead is not None:
                lead.finish(made)
        return Outcome.GENERATED

    async def _lookup(self, prompt: str, scope: CacheScope, seed: int | None) -> CacheHit | None:
        try:
            hit = await self._cache.lookup(prompt, scope, seed=seed)
        except Exception as exc:  # a cache fault costs a generation, never the event
            log.warning("cache_lookup_failed", error=repr(exc))
            return None
        if hit is not None and not hit.entry.serves(seed):
            log.debug("cache_entry_unusable", matched_event_id=hit.entry.event_id)
            return None  # an entry that cannot say how its video was made
        return hit

    async def _publish_hit(
        self,
        flight: _Flight,
        event: PromptEvent,
        params: GenerationParameters,
        hit: CacheHit,
        received: datetime,
    ) -> None:
        url = await self._retry(lambda: self._store.url_for(hit.entry.object_key), "store_url")
        result = self._result(
            event,
            # The served video's parameters (its seed may not be the one this event derives).
            hit.entry.parameters or params,
            received,
            status="ok",
            url=url,
            key=hit.entry.object_key,
            cache=hit.outcome,
            similarity=hit.similarity,
            matched=hit.entry.event_id,
        )
        await self._publish(flight, result)
        log.info(
            "event_answered_from_cache",
            cache=hit.outcome.value,
            matched_event_id=hit.entry.event_id,
            similarity=hit.similarity,
        )

    async def _generate(
        self,
        flight: _Flight,
        event: PromptEvent,
        prompt: str,
        params: GenerationParameters,
        scope: CacheScope,
        mode: CacheMode,
        received: datetime,
    ) -> CacheEntry:
        """Generate, store, remember and publish; returns the new cache entry.

        A failed generation raises :class:`GenerationError` (the event dead-letters)."""
        loop = asyncio.get_running_loop()
        job = _Job(
            request=GenerationRequest(event.event_id, prompt, params.negative_prompt, params.seed),
            partition=flight.record.partition,
            deadline=_monotonic_deadline(event.deadline),
            future=loop.create_future(),
        )
        job.submitted = time.monotonic()
        shape = ShapeKey(
            self._model_id,
            event.width,
            event.height,
            event.num_frames,
            event.num_inference_steps,
            event.guidance_scale,
            params.step_cache,
        )
        self._jobs.add(job)
        await self._batcher.submit(job, shape, priority=event.priority, deadline=job.deadline)
        self._reached_batcher()
        try:
            generated = await job.future
        finally:
            self._jobs.discard(job)
        structlog.contextvars.bind_contextvars(batch_id=generated.batch_id)
        started = time.perf_counter()
        data = await self._encoder.encode(generated.frames, params.fps)
        self._add_stage("mp4_encode", time.perf_counter() - started)
        enc = self._settings.encoding
        key = object_key(
            self._model_id, prompt, params, encoding={"preset": enc.preset, "crf": enc.crf}
        )
        metadata = {
            "event_id": event.event_id,
            "model_id": self._model_id,
            "parameters": params.model_dump_json(),
        }
        started = time.perf_counter()
        url = await self._retry(lambda: self._store.put(key, data, metadata), "store_put")
        self._add_stage("store", time.perf_counter() - started)
        stored_at = utcnow()
        entry = CacheEntry(
            object_key=key,
            video_url=url,
            event_id=event.event_id,
            prompt=prompt,
            created_at=time.time(),
            parameters=params,
        )
        if mode is not CacheMode.BYPASS:
            try:
                await self._cache.insert(prompt, scope, entry)
            except Exception as exc:
                log.warning("cache_insert_failed", error=repr(exc))
        result = self._result(
            event,
            params,
            received,
            status="ok",
            url=url,
            key=key,
            cache=CacheOutcome.MISS,
            batch_size=generated.batch_size,
            batched_at=generated.batched_at,
            generated_at=generated.generated_at,
            stored_at=stored_at,
        )
        await self._publish(flight, result)
        log.info("event_generated", object_key=key, batch_size=generated.batch_size)
        return entry

    def _result(
        self,
        event: PromptEvent,
        params: GenerationParameters,
        received: datetime,
        *,
        status: str,
        url: str | None,
        key: str | None,
        cache: CacheOutcome,
        similarity: float | None = None,
        matched: str | None = None,
        batch_size: int | None = None,
        batched_at: datetime | None = None,
        generated_at: datetime | None = None,
        stored_at: datetime | None = None,
        error: str | None = None,
    ) -> VideoResult:
        return VideoResult.model_validate(
            {
                "result_id": VideoResult.result_id_for(event.event_id),
                "event_id": event.event_id,
                "status": status,
                "video_url": url,
                "object_key": key,
                "cache": cache,
                "similarity": similarity,
                "matched_event_id": matched,
                "model_id": self._model_id,
                "parameters": params,
                "timings": Timings(
                    received_at=received,
                    batched_at=batched_at,
                    generated_at=generated_at,
                    stored_at=stored_at,
                    completed_at=utcnow(),
                ),
                "batch_size": batch_size,
                "worker_id": self._settings.worker_id,
                "tenant": event.tenant,
                "attributes": event.attributes,
                "error": error,
                "replayed": self._replay_id is not None,
                "replay_id": self._replay_id,
            }
        )

    async def _publish(self, flight: _Flight, result: VideoResult) -> None:
        """Pin ``result`` in the ledger, then publish what the ledger holds (``result``, or
        an earlier answer to the same event: a result or a dead letter) until the sink acks."""
        body = result.model_dump_json()
        held = await self._claim(flight, "result", body)
        if held is not None and held.body != body:
            if held.kind == "dead_letter":  # e.g. a duplicate record whose generation failed
                log.info("event_answered_before", kind=held.kind)
                await self._send_letter(flight.record, DeadLetter.model_validate_json(held.body))
                await self._mark_published(flight)
                return
            result = await self._recorded_result(held)
            log.info("event_answered_before", result_id=result.result_id)
        await self._send_result(flight.record, result)
        await self._mark_published(flight)

    async def _send_result(self, record: Record, result: VideoResult) -> None:
        started = time.perf_counter()
        await self._retry(
            lambda: self._sink.publish(result, record.key, input_headers=record.headers), "publish"
        )
        self._published[(record.partition, record.offset)] = _OUTCOME_OF_CACHE[result.cache]
        self._add_stage("publish", time.perf_counter() - started)

    async def _dead_letter(
        self,
        flight: _Flight,
        reason: DeadLetterReason,
        detail: str,
        error_class: str,
        event_id: str | None,
    ) -> None:
        """Pin the dead letter of ``flight``'s record in the ledger and publish it (or an
        earlier answer held there) until the sink acks.

        The original is capped at ``dead_letters.max_original_bytes`` (optionally stored whole
        under ``dead-letters/``); should the sink still refuse the letter as too large, it goes
        out once more without any of the original (its size and SHA-256 stay).
        """
        record = flight.record
        limit = self._settings.dead_letters.max_original_bytes
        url = None
        if len(record.value) > limit and self._settings.dead_letters.store_originals:
            url = await self._store_original(record.value)
        letter = dead_letter_for(
            record.value,
            Origin(
                topic=record.partition.topic,
                partition=record.partition.partition,
                offset=record.offset,
                key=b64(record.key[:limit]) if record.key is not None else None,
            ),
            reason=reason,
            detail=detail,
            error_class=error_class,
            event_id=event_id,
            worker_id=self._settings.worker_id,
            max_original_bytes=limit,
            original_url=url,
        )
        if not flight.key:
            flight.key = self._ledger_key(record_key(record))
        body = letter.model_dump_json()
        # Our own pinned answer could not be published (too large, unserialisable): the
        # dead letter replaces it. Another worker's answer stands.
        held = await self._claim(flight, "dead_letter", body, replace=flight.claimed is not None)
        if held is not None and held.body != body:
            if held.kind == "result":  # answered before by a worker that got further
                await self._send_result(record, await self._recorded_result(held))
                await self._mark_published(flight)
                return
            letter = DeadLetter.model_validate_json(held.body)
        await self._send_letter(record, letter)
        await self._mark_published(flight)

    async def _send_letter(self, record: Record, letter: DeadLetter) -> None:
        try:
            await self._send_dead_letter(record, letter)
        except RecordRejected as exc:
            log.warning("dead_letter_too_large", error=safe_text(str(exc), 300))
            bare = letter.model_copy(update={"original": "", "original_truncated": True})
            await self._send_dead_letter(record, bare)
        self._published[(record.partition, record.offset)] = (
            Outcome.FAILED if letter.reason in _GENERATION_REASONS else Outcome.DEAD_LETTERED
        )

    # -- the result ledger ---------------------------------------------------------------

    async def _answered_in_output(self, flight: _Flight) -> bool:
        """Whether a local re-run finds this record's answer in its output already."""
        if self._ledger is None or not self._skip_answered or self._reprocess:
            return False
        if not flight.key:
            flight.key = self._ledger_key(record_key(flight.record))
        held = await self._held(flight, flight.key)
        return held is not None and held.published and held.sink == self._sink.destination

    def _ledger_key(self, key: str) -> str:
        # A replay pins its own answers: it never reads nor overwrites the live ones.
        return f"replay:{self._replay_id}:{key}" if self._replay_id else key

    async def _held(self, flight: _Flight, key: str) -> LedgerEntry | None:
        """The readable answer the ledger holds under ``key``; an unreadable one (written by
        another version, damaged) is logged and will be replaced by this handling's answer."""
        ledger = self._ledger
        assert ledger is not None
        held = await self._retry(lambda: ledger.get(key), "ledger")
        if held is None:
            return None
        model: type[VideoResult] | type[DeadLetter] = (
            VideoResult if held.kind == "result" else DeadLetter
        )
        try:
            model.model_validate_json(held.body)
        except ValueError as exc:
            log.warning("ledger_entry_unreadable", key=key, error=safe_text(str(exc), 300))
            flight.replace = True
            return None
        return held

    async def _claim(
        self, flight: _Flight, kind: AnswerKind, body: str, *, replace: bool = False
    ) -> LedgerEntry | None:
        """Pin ``body`` as the answer of ``flight``'s record; returns what the ledger holds
        now (``body``, or an earlier answer), or None without a ledger."""
        ledger = self._ledger
        if ledger is None:
            return None
        replace = replace or self._reprocess or flight.replace
        entry = LedgerEntry(
            key=flight.key,
            payload_hash=flight.payload_hash,
            kind=kind,
            body=body,
            sink=self._sink.destination,
            recorded_at=time.time(),
        )
        held = await self._retry(lambda: ledger.claim(entry, replace=replace), "ledger")
        flight.claimed = held.body if held.body == body else None
        return held

    async def _mark_published(self, flight: _Flight) -> None:
        """Note in the ledger that the answer is out; best effort (the answer is durable
        already: failing here only costs a duplicate line on a local re-run)."""
        if self._ledger is None:
            return
        try:
            await self._ledger.mark_published(flight.key)
        except StreamprocError as exc:
            log.warning("ledger_mark_failed", error=safe_text(str(exc), 300))

    async def _recorded_result(self, held: LedgerEntry) -> VideoResult:
        """The result held in the ledger as a redelivered copy: every field as first
        published, marked ``redelivery``, with a fresh URL where the store's expire."""
        result = VideoResult.model_validate_json(held.body)
        update: dict[str, Any] = {"redelivery": True}
        if result.object_key is not None and self._store_urls_expire:
            key = result.object_key
            update["video_url"] = await self._retry(lambda: self._store.url_for(key), "store_url")
        return result.model_copy(update=update)

    async def _answer_again(
        self, flight: _Flight, held: LedgerEntry, key: str, payload_hash: str
    ) -> Outcome:
        """Answer a redelivered event from the ledger: no cache lookup, no generation."""
        if held.payload_hash and held.payload_hash != payload_hash:
            # Not the event that was answered: its id is taken (the record key pins this).
            raise InvalidEventError(
                DeadLetterReason.EVENT_ID_CONFLICT,
                f"event_id was answered before for a different request (ledger entry of "
                f"{_iso(held.recorded_at)}, payload sha256 {held.payload_hash[:16]}…); "
                "use a new event_id for a new request",
                "EventIdConflict",
            )
        flight.key, flight.payload_hash = key, payload_hash
        record = flight.record
        if self._skip_answered and held.published and held.sink == self._sink.destination:
            log.info("event_already_answered")
            return Outcome.ALREADY_ANSWERED
        if held.kind == "result":
            result = await self._recorded_result(held)
            await self._send_result(record, result)
            outcome = _OUTCOME_OF_CACHE[result.cache]
        else:
            letter = DeadLetter.model_validate_json(held.body)
            await self._send_letter(record, letter)
            outcome = (
                Outcome.FAILED if letter.reason in _GENERATION_REASONS else Outcome.DEAD_LETTERED
            )
        await self._mark_published(flight)
        self._metrics.redeliveries.inc()
        log.info("event_redelivered", kind=held.kind)
        return outcome

    async def _send_dead_letter(self, record: Record, letter: DeadLetter) -> None:
        await self._retry(
            lambda: self._sink.dead_letter(letter, record.key, input_headers=record.headers),
            "dead_letter",
        )

    async def _store_original(self, value: bytes) -> str | None:
        """Keep a whole over-long original in the object store; its URL, or None when the
        store refuses it (the dead letter then carries the capped original only)."""
        key = f"dead-letters/{hashlib.sha256(value).hexdigest()}.bin"
        try:
            return await self._retry(
                lambda: self._store.put(key, value, {"content": "dead-letter-original"}),
                "store_original",
            )
        except PermanentError as exc:
            log.warning("dead_letter_original_not_stored", error=safe_text(str(exc), 300))
            return None

    async def _retry(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``op`` under the worker's retry policy (:meth:`RetryPolicy.for_steps`): a
        :class:`TransientError` backs off and retries until cancelled (shutdown grace,
        partition revoked), the event staying unfinished; anything else propagates (the record
        dead-letters, or the worker faults)."""
        return await self._retries.call(op, what)

    # -- the GPU loop --------------------------------------------------------------------

    async def _gpu_loop(self) -> None:
        """Hand ready batches to the generator, at most ``max_concurrent_batches`` at a time
        (two when decoding overlaps: one batch decodes while the next denoises).

        Supervised (a crash abandons every queued job and stops the worker); each batch runs
        in a supervised task of its own."""
        slots = asyncio.Semaphore(max(1, self._generator.max_concurrent_batches))
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                batch = await self._batcher.next_batch()
                if batch is None:
                    slots.release()
                    break
                now = time.monotonic()
                live: list[_Job] = []
                for job in batch.items:
                    if job.future.done():
                        continue  # its event was abandoned
                    self._metrics.batcher_wait.observe(max(0.0, now - job.submitted))
                    if job.deadline is not None and now > job.deadline:
                        job.future.set_exception(
                            DeadlineExceeded("deadline passed before generation")
                        )
                    else:
                        live.append(job)
                if not live:
                    slots.release()
                    continue
                self.summary.batches += 1
                self._metrics.batches.inc()
                batch_id = f"b{self.summary.batches}"
                task = self._supervise(self._run_batch(batch.shape, live, batch_id), "batch runner")
                running.add(task)
                task.add_done_callback(running.discard)
                task.add_done_callback(lambda _: slots.release())
            if running:
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()

    async def _run_batch(self, shape: ShapeKey, jobs: list[_Job], batch_id: str) -> None:
        """Generate ``jobs``; a failed batch is split and each event retried on its own, so
        one poisonous prompt cannot fail its neighbours. Every job's future is resolved when
        this returns, whatever happened (cancelled: its events are abandoned)."""
        structlog.contextvars.bind_contextvars(batch_id=batch_id)  # this task's own context
        try:
            await self._generate_batch(shape, jobs, batch_id)
        except BaseException as exc:
            error: BaseException = _Abandoned() if isinstance(exc, asyncio.CancelledError) else exc
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
            raise

    async def _generate_batch(self, shape: ShapeKey, jobs: list[_Job], batch_id: str) -> None:
        batched_at = utcnow()
        log.debug("batch_started", shape=str(shape), size=len(jobs))
        try:
            output = await self._generator.generate(shape, [j.request for j in jobs])
            if len(output.videos) != len(jobs):
                raise GenerationError(
                    f"the generator returned {len(output.videos)} videos for {len(jobs)} prompts"
                )
        except Exception as exc:
            log.warning("batch_failed", shape=str(shape), size=len(jobs), error=repr(exc)[:300])
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
            return
        generated_at = utcnow()
        self.summary.videos += len(jobs)
        self._metrics.videos_generated.inc(len(jobs))
        self._metrics.batch_size.observe(len(jobs))
        for stage, seconds in output.stage_seconds.items():
            self._add_stage(stage, seconds)
        for job, frames in zip(jobs, output.videos, strict=True):
            if not job.future.done():
                job.future.set_result(
                    _Generated(frames, len(jobs), batched_at, generated_at, batch_id)
                )

    # -- commits and rebalances ----------------------------------------------------------

    async def _commit_loop(self) -> None:
        """Commit finished positions every ``commit_interval_ms`` (supervised)."""
        interval = self._settings.commit_interval_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            try:
                await self._commit_now()
            except ServiceRefused as exc:
                self._fault(exc)

    async def _final_commit(self) -> None:
        """The last commit of a run; a failure is logged (the events are delivered again)."""
        try:
            await self._commit_now()
        except PermanentError as exc:
            log.error("final_commit_refused", error=safe_text(str(exc), 300))
        except Exception as exc:
            self._crashed("final commit", exc)

    async def _commit_now(self, only: Sequence[Partition] | None = None) -> None:
        positions = self.tracker.committable()
        if only is not None:
            positions = {p: o for p, o in positions.items() if p in only}
        if not positions:
            return
        try:
            await self.source.commit(positions)
        except TransientError as exc:
            self._metrics.commits.labels("failed").inc()
            log.warning("commit_failed", error=str(exc)[:300])
            return
        self.tracker.mark_committed(positions)
        self._metrics.commits.labels("ok").inc()
        for partition, position in positions.items():
            self._metrics.committed_offset.labels(partition.topic, str(partition.partition)).set(
                position
            )
        log.debug("committed", positions={str(p): o for p, o in positions.items()})

    async def partitions_revoked(
        self, partitions: Sequence[Partition], *, grace_s: float | None = None
    ) -> None:
        """Stop new work for ``partitions``, let started work finish within ``grace_s``
        (default: the shutdown grace), commit what is finished, and forget them. Queued and
        late events are abandoned, uncommitted: the partition's next owner processes them
        again."""
        revoked = set(partitions)
        for job in self._batcher.remove(lambda j: j.partition in revoked):
            self._jobs.discard(job)
            if not job.future.done():
                job.future.set_exception(_Abandoned())
        tasks = [t for t, f in self._tasks.items() if f.record.partition in revoked]
        if tasks:
            grace = self._settings.shutdown_grace_s if grace_s is None else grace_s
            await self._wait_or_force(set(tasks), grace)
            late = [t for t in tasks if not t.done()]
            for task in late:
                task.cancel()
            # Settle them before the commit, so none finishes after its partition is gone.
            await asyncio.gather(*late, return_exceptions=True)
            if late:
                log.warning("revoked_events_abandoned", events=len(late))
        try:
            await self._commit_now(only=list(revoked))
        except PermanentError as exc:
            log.error("revoke_commit_refused", error=safe_text(str(exc), 300))
        self.tracker.forget(revoked)
        for partition in revoked:
            with contextlib.suppress(KeyError):
                self._metrics.committed_offset.remove(partition.topic, str(partition.partition))
        log.info("partitions_revoked", partitions=[str(p) for p in partitions])

    async def partitions_assigned(self, partitions: Sequence[Partition]) -> None:
        """New partitions start from their committed offsets; nothing to prepare here."""
        log.info("partitions_assigned", partitions=[str(p) for p in partitions])


_OUTCOME_OF_CACHE = {
    CacheOutcome.MISS: Outcome.GENERATED,
    CacheOutcome.HIT_EXACT: Outcome.HIT_EXACT,
    CacheOutcome.HIT_SEMANTIC: Outcome.HIT_SEMANTIC,
}
_GENERATION_REASONS = frozenset(
    {DeadLetterReason.GENERATION_FAILED, DeadLetterReason.DEADLINE_EXCEEDED}
)


def _classify(exc: BaseException) -> tuple[DeadLetterReason, str, str]:
    """The dead letter's reason, detail and error class for a record whose handling raised
    ``exc``: a specific reason where one fits, else ``internal_error`` naming the exception."""
    name = type(exc).__name__
    if isinstance(exc, InvalidEventError):
        return DeadLetterReason(exc.reason), exc.detail, exc.error_class
    if isinstance(exc, DeadlineExceeded):
        return DeadLetterReason.DEADLINE_EXCEEDED, str(exc), name
    if isinstance(exc, GenerationError):
        return DeadLetterReason.GENERATION_FAILED, str(exc), type(exc.__cause__ or exc).__name__
    if isinstance(exc, RecordRejected):
        if exc.component == "sink":
            return DeadLetterReason.RESULT_TOO_LARGE, str(exc), name
        if exc.component == "encoder":
            return DeadLetterReason.GENERATION_FAILED, str(exc), name
    text = str(exc)
    return DeadLetterReason.INTERNAL_ERROR, f"{name}: {text}" if text else name, name


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _event_id(value: bytes) -> str | None:
    """The event id for a dead letter, best effort: bytes the decoder refused can break the
    look-up as well (an integer of thousands of digits raises ValueError, nesting deeper than
    the recursion limit RecursionError), and that must not cost the record its dead letter."""
    try:
        return event_id_of(value)
    except (ValueError, RecursionError):
        return None


def _monotonic_deadline(deadline: datetime | None) -> float | None:
    if deadline is None:
        return None
    return time.monotonic() + (deadline - utcnow()).total_seconds()
