"""The supervisor: wires the stages and watches them, one task per record.

A record walks down the stages in :mod:`streamproc.stages` — admit (decode, validate), cache
(lookup, coalescing, insert), generate (batcher, GPU loop, split-and-retry), store (encode,
object store), publish (ledger, sink) — and its offset is committed by the commit stage once
it and every earlier record of its partition are finished. Each stage owns its failure
policy; this module owns what spans them (see ``docs/delivery.md``):

1. **Exactly one outcome per record, by construction.** :meth:`Processor._handle` is the one
   choke point: whatever a record's handling raises — any exception type, in any stage — the
   record ends as a dead letter (a specific reason where one fits, else ``internal_error``
   naming the exception; :func:`~streamproc.stages.admit.classify`) and its offset finishes,
   unless its answer was already durable. Only three things leave a record without an
   outcome, and each leaves it *uncommitted*, so it is delivered again: the process dies; the
   worker stops before the record finished (abandoned: grace exhausted, forced stop,
   partition revoked); a service refuses the worker for good
   (:class:`~streamproc.errors.ServiceRefused`: the worker *faults*). The run summary always
   adds up: ``received = results + dead letters + abandoned``.
2. **Store, then publish, then commit** — the order of the stages; the commit stage never
   passes an unfinished record.
3. **Faults.** A :class:`~streamproc.errors.ServiceRefused` from any stage fails readiness
   naming the cause, pauses input, leaves the records that met it uncommitted and stops the
   worker after ``faults.exit_after_s`` with a non-zero exit status.
4. **Supervised tasks.** The input, GPU, batch and commit tasks are watched: one that crashes
   is logged once with its traceback, readiness fails, what can still finish is drained, and
   the run ends with :attr:`RunSummary.crashed` set (a non-zero exit status).
5. **Control plane** (docs/control.md). At admission, after the ledger (a redelivered event
   answers what the ledger holds, a 'cancelled' result included), an event may end as
   cancelled (a 'cancelled' result, nothing stored), expired or over its tenant's quota
   (dead letters); a cancel reaches it again while queued, generating and before it is
   stored. Status events are emitted at each step and never wait: they are not outcomes.
6. **Back-pressure and shutdown.** ``batch.max_in_flight`` unfinished records pause the
   source; a stop drains within ``shutdown_grace_s``; revoked partitions settle within the
   source's grace and commit before they go.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from typing import Any

import structlog

from streamproc.bus.base import Partition, Record, Sink, Source
from streamproc.cache.base import Cache
from streamproc.control.plane import ControlPlane
from streamproc.errors import (
    EventCancelled,
    InvalidEventError,
    PermanentError,
    ServiceRefused,
    TransientError,
)
from streamproc.events import (
    DeadLetterReason,
    StatusState,
    VideoResult,
    safe_text,
    utcnow,
)
from streamproc.generation.base import Generator, Supervised
from streamproc.generation.encode import EncoderPool
from streamproc.ledger.base import ResultLedger, event_key, record_key
from streamproc.metrics import Metrics
from streamproc.outcome import (
    RESULT_OUTCOMES,
    ExitStatus,
    Outcome,
    ProcessorObserver,
    RunSummary,
)
from streamproc.retry import RetryPolicy
from streamproc.settings import Settings
from streamproc.stages.admit import Admit, classify, event_id_or_none
from streamproc.stages.base import Abandoned, Admitted, Flight, Held, Trace
from streamproc.stages.cache import Lookup
from streamproc.stages.commit import Commit
from streamproc.stages.generate import Generate
from streamproc.stages.ledger import Pins
from streamproc.stages.publish import Publish
from streamproc.stages.route import Route
from streamproc.stages.store import Keep
from streamproc.storage.base import ObjectStore

__all__ = [
    "RESULT_OUTCOMES",
    "ExitStatus",
    "Outcome",
    "Processor",
    "ProcessorObserver",
    "RunSummary",
]

log = structlog.get_logger(__name__)


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
        control: ControlPlane | None = None,
    ) -> None:
        """``replay_id`` marks every result as made by that replay (``streamproc replay``).

        ``control`` is the control plane (lanes, cancels, quotas, expiry, status events); the
        default has no status output and no control input.

        ``ledger`` pins each event's first answer (a redelivery re-publishes it); with
        ``reprocess`` events are answered anew and the ledger's answers replaced; with
        ``skip_answered`` (local re-runs) an event whose answer this sink already holds is
        finished without publishing it again.
        """
        self._settings = settings
        self._metrics = metrics if metrics is not None else Metrics()
        self.source = source
        self._observers = list(observers)
        self.summary = RunSummary()
        self._generator = generator
        model_id = generator.model_id
        retries = RetryPolicy.for_steps(settings.storage, self._metrics)
        self._admission = Admit(settings, model_id=model_id, scheduler=generator.scheduler_name)
        self._lookup = Lookup(
            cache,
            metrics=self._metrics,
            clock=self._add_stage,
            # No cache, no reuse: identical requests in flight are not shared either.
            coalesce=settings.cache.backend != "none",
            near_duplicates=settings.cache.coalesce_near_duplicates,
        )
        self.control = (
            control
            if control is not None
            else ControlPlane(settings, metrics=self._metrics, replay=replay_id is not None)
        )
        self._generate = Generate(
            settings,
            generator,
            summary=self.summary,
            metrics=self._metrics,
            clock=self._add_stage,
            control=self.control,
        )
        self._keep = Keep(
            store,
            encoder if encoder is not None else EncoderPool(settings.encoding),
            model_id=model_id,
            retries=retries,
            clock=self._add_stage,
        )
        self._pins = Pins(
            ledger,
            sink,
            retries=retries,
            replay_id=replay_id,
            reprocess=reprocess,
            skip_answered=skip_answered,
        )
        self._publish = Publish(
            settings,
            sink,
            self._keep,
            pins=self._pins,
            model_id=model_id,
            retries=retries,
            metrics=self._metrics,
            clock=self._add_stage,
            replay_id=replay_id,
        )
        self._route = Route(settings.routing, sink, retries, clock=self._add_stage)
        self._commit = Commit(
            source,
            interval_s=settings.commit_interval_ms / 1000.0,
            metrics=self._metrics,
            fault=self._fault,
        )
        self.tracker = self._commit.tracker
        self._tasks: dict[asyncio.Task[None], Flight] = {}
        # Admitted events not yet in the batcher nor finished (e.g. embedding for the cache).
        self._unbatched: set[asyncio.Task[None]] = set()
        self._all_batched = asyncio.Event()
        self._all_batched.set()
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._stopped_at = 0.0
        self._paused = False
        self._fault_timer: asyncio.TimerHandle | None = None
        self._metrics.batcher_queue_depth.set_function(lambda: len(self._generate.batcher))
        self._metrics.events_in_flight.set_function(lambda: len(self._tasks))

    def _add_stage(self, name: str, seconds: float) -> None:
        """Every stage's clock: seconds into the run summary and the stage histogram."""
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
        if not self._keep.encoder.healthy:
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
        await self._keep.encoder.start()
        consume = asyncio.create_task(self._consume(), name="streamproc-consume")
        gpu = self._supervise(self._gpu_loop(), "gpu loop")
        committer = self._supervise(self._commit.loop(), "commit loop")
        # A generator with parts of its own (context-parallel ranks): their death stops us.
        watcher = (
            self._supervise(self._generator.watch(), "generator")
            if isinstance(self._generator, Supervised)
            else None
        )
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
            for task in (committer, watcher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self._final_commit()
            await self._keep.encoder.stop()
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
        if name in ("gpu loop", "generator"):
            # Nothing will run the queued jobs: their events end unfinished (uncommitted).
            self._generate.abandon(lambda _job: True)
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
        self._generate.batcher.flush()
        pending = set(self._tasks)
        if pending:
            await self._settle(pending)
            late = {t for t in pending if not t.done()}
            if late:
                log.warning("shutdown_abandoned", events=len(late))
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        self._generate.batcher.close()
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
        flight = Flight(record)
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
        self._publish.published.pop((flight.record.partition, flight.record.offset), None)
        self._unbatched.discard(task)
        if not self._unbatched:
            self._all_batched.set()
        if flight.quota_held:
            flight.quota_held = False
            self.control.release(flight.tenant)
        if flight.outcome is None:
            self.summary.abandoned += 1
            self.summary.handed_over += flight.handed_over
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

    async def _handle(self, flight: Flight) -> None:
        """Carry one record to exactly one durable outcome: the choke point of invariant 2.

        Any exception from any stage becomes a dead letter, unless the answer was already
        durable (then it is logged and the record is finished as answered). Cancellation,
        :class:`_Abandoned` and :class:`ServiceRefused` (the worker faults) leave the record
        unfinished instead: it is uncommitted and delivered again — unless its answer was
        already durable when the work was taken away, then it is finished as answered.
        """
        record = flight.record
        started = time.monotonic()
        trace = Trace(
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
            flight.outcome = self._publish.published.get((record.partition, record.offset), outcome)
        except (Abandoned, Held):
            self._finish_if_answered(flight, trace, started)
            return
        except asyncio.CancelledError:
            self._finish_if_answered(flight, trace, started)
            raise
        except ServiceRefused as exc:
            self._fault(exc)
            return
        except Exception as exc:
            failure = exc
        finally:
            self._reached_batcher()
        if failure is not None:
            answered = self._publish.published.get((record.partition, record.offset))
            if answered is not None:
                log.error("event_failed_after_answer", exc_info=failure)
                flight.outcome = answered
            else:
                flight.outcome = await self._dead_letter_failure(flight, failure)
        if flight.outcome is not None:
            self._final_status(flight, flight.outcome)
            self._finish(record, flight.outcome, trace, started)

    def _finish_if_answered(self, flight: Flight, trace: Trace, started: float) -> None:
        """A record whose work is taken away after its answer became durable (a forced stop
        while the bookkeeping after the publish still ran) is finished as what was published,
        not abandoned: its result or dead letter is out, so counting it abandoned would make
        the summary disagree with the output and deliver it again for nothing."""
        record = flight.record
        answered = self._publish.published.get((record.partition, record.offset))
        if answered is not None and flight.outcome is None:
            flight.outcome = answered
            self._final_status(flight, answered)
            self._finish(record, answered, trace, started)

    def _final_status(self, flight: Flight, outcome: Outcome) -> None:
        """The event's last status event: answered, dead_lettered or cancelled."""
        event_id = flight.event_id or event_id_or_none(flight.record.value)
        if event_id is None or outcome in (Outcome.ALREADY_ANSWERED, Outcome.FORWARDED):
            return  # answered before, or the large-clip lane's worker reports it
        common = {"tenant": flight.tenant, "lane": flight.lane}
        if outcome is Outcome.CANCELLED:
            self.control.emit(
                event_id,
                StatusState.CANCELLED,
                result_id=VideoResult.result_id_for(event_id),
                **common,
            )
        elif flight.letter_reason is not None:
            self.control.emit(
                event_id,
                StatusState.DEAD_LETTERED,
                dead_letter_reason=flight.letter_reason,
                **common,
            )
        else:
            self.control.emit(
                event_id,
                StatusState.ANSWERED,
                result_id=VideoResult.result_id_for(event_id),
                video_url=flight.video_url,
                **common,
            )

    def _finish(self, record: Record, outcome: Outcome, trace: Trace, started: float) -> None:
        self.tracker.finish(record.partition, record.offset)
        self._publish.published.pop((record.partition, record.offset), None)
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

    async def _dead_letter_failure(self, flight: Flight, exc: Exception) -> Outcome | None:
        """The dead letter of a record whose handling raised ``exc``; None when even that
        cannot be made durable (the record then stays unfinished and the worker stops)."""
        record = flight.record
        if await self._pins.answered_in_output(flight):
            return Outcome.ALREADY_ANSWERED
        reason, detail, error_class = classify(exc)
        if reason is DeadLetterReason.INTERNAL_ERROR:
            log.error("event_crashed", exc_info=exc)
        else:
            log.warning("event_rejected", reason=reason.value, detail=safe_text(detail, 300))
        self._metrics.dead_letters.labels(reason.value).inc()
        flight.letter_reason = reason.value
        try:
            outcome = await self._publish.dead_letter(
                flight, reason, detail, error_class, event_id_or_none(record.value)
            )
        except (asyncio.CancelledError, Abandoned):
            raise
        except ServiceRefused as exc2:
            self._fault(exc2)
            return None
        except Exception as exc2:
            # A dead letter is built so that this cannot happen; if it does, stop loudly.
            self._crashed("dead letters", exc2)
            return None
        return outcome

    def _reached_batcher(self) -> None:
        """The current event is in the batcher or finished: a flush no longer splits it off."""
        task = asyncio.current_task()
        if task is not None:
            self._unbatched.discard(task)
        if not self._unbatched:
            self._all_batched.set()

    async def _process(self, flight: Flight, trace: Trace) -> Outcome:
        """Walk one record down the stages; returns its outcome once its answer is durable."""
        record = flight.record
        received = utcnow()
        flight.key = self._pins.key(record_key(record))
        # Raises InvalidEventError for anything unusable; _handle dead-letters it.
        event = self._admission.decode(record, trace)
        key = self._pins.key(event_key(event.event_id))
        payload_hash = event.payload_hash()
        held = await self._pins.earlier(flight, key)
        if held is not None:
            return await self._publish.answer_again(flight, held, key, payload_hash)
        flight.key, flight.payload_hash = key, payload_hash
        request = self._admission.request(event, received)
        control = self.control
        event_time = control.event_time(event, record, trace.admitted)
        flight.event_id, flight.tenant, flight.lane = event.event_id, event.tenant, None
        try:
            control.admit(event, event_time)  # raises: cancelled, expired, over quota
            flight.quota_held = True
            flight.lane = control.lane(event)
            control.emit(
                event.event_id,
                StatusState.ACCEPTED,
                tenant=event.tenant,
                lane=flight.lane,
                received_at=received,
                created_at=event.created_at,
            )
            outcome = await self._answer(flight, request, event_time)
        except EventCancelled as cancel:
            outcome = await self._publish.cancelled(flight, request, cancel.reason)
        # What went out decides: the ledger may have held an earlier answer of another kind.
        return self._publish.published.get((record.partition, record.offset), outcome)

    async def _answer(self, flight: Flight, request: Admitted, event_time: float) -> Outcome:
        """An admitted event's answer: from the cache, or generated, stored and published.
        Raises :class:`EventCancelled` when a cancel reaches it before its video is stored."""
        hit = await self._lookup.hit(request)
        if hit is not None:
            return await self._publish.hit(flight, request, hit)
        record = flight.record
        if self._route.elsewhere(request.shape):  # the large-clip lane's workers answer it
            return await self._route.forward(record, request.shape)
        event = request.event
        async with self._lookup.leading(request) as made:
            generated = await self._generate.generate(
                request, record.partition, self._reached_batcher, event_time=event_time
            )
            # Made but not stored: a cancel that came during the batch still holds.
            self.control.check_cancelled(event, event_time, "generated")
            stored = await self._keep.keep(request, generated)
            self.control.emit(
                event.event_id,
                StatusState.STORED,
                tenant=event.tenant,
                lane=flight.lane,
                result_id=VideoResult.result_id_for(event.event_id),
                video_url=stored.url,
            )
            entry = await self._lookup.remember(request, stored)
            outcome = await self._publish.generated(flight, request, stored)
            made.append(entry)
        return outcome

    # -- the GPU loop, commits and rebalances -----------------------------------------------

    async def _gpu_loop(self) -> None:
        """The generate stage's GPU loop (supervised: a crash abandons every queued job and
        stops the worker); each batch runs in a supervised task of its own."""
        await self._generate.loop(self._supervise)

    async def _final_commit(self) -> None:
        """The last commit of a run; a failure is logged (the events are delivered again)."""
        try:
            await self._commit.last()
        except Exception as exc:
            self._crashed("final commit", exc)

    async def partitions_revoked(
        self, partitions: Sequence[Partition], *, grace_s: float | None = None
    ) -> None:
        """Stop new work for ``partitions``, let started work finish within ``grace_s``
        (default: the shutdown grace), commit what is finished, and forget them. Queued and
        late events are abandoned, uncommitted: the partition's next owner processes them
        again."""
        revoked = set(partitions)
        for flight in self._tasks.values():
            if flight.record.partition in revoked:
                # If it ends without an outcome it is handed over, not lost: it stays
                # uncommitted and the partition's next owner answers it.
                flight.handed_over = True
        self._generate.abandon(lambda job: job.partition in revoked, running=False)
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
        await self._commit.revoked(revoked)
        log.info("partitions_revoked", partitions=[str(p) for p in partitions])

    async def partitions_assigned(self, partitions: Sequence[Partition]) -> None:
        """New partitions start from their committed offsets; nothing to prepare here."""
        log.info("partitions_assigned", partitions=[str(p) for p in partitions])
