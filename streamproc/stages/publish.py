"""Publish: pin each answer in the result ledger, then send what the ledger holds to the sink.

Failure policy: ledger calls and sends are retried by the worker's retry policy while the
record stays unfinished (a transient fault never loses an answer, at worst a send is
repeated — downstream de-duplicates on ``event_id``). A result the sink refuses as too large
raises :class:`~streamproc.errors.RecordRejected` (the record dead-letters
``result_too_large``); a dead letter the sink refuses as too large goes out once more without
its original. Marking an answer published is best effort. A redelivered event is answered
from the ledger (:meth:`Publish.answer_again`), never looked up or generated again.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import structlog

from streamproc.bus.base import Partition, Record, Sink
from streamproc.cache.base import CacheHit
from streamproc.errors import InvalidEventError, RecordRejected, StreamprocError
from streamproc.events import (
    CacheOutcome,
    DeadLetter,
    DeadLetterReason,
    GenerationParameters,
    Origin,
    Timings,
    VideoResult,
    b64,
    dead_letter_for,
    safe_text,
    utcnow,
)
from streamproc.ledger.base import AnswerKind, LedgerEntry, ResultLedger, record_key
from streamproc.metrics import Metrics
from streamproc.outcome import OUTCOME_OF_CACHE, Outcome, letter_outcome
from streamproc.retry import RetryPolicy
from streamproc.settings import Settings
from streamproc.stages.base import Admitted, Flight, StageClock, Stored
from streamproc.stages.store import Keep

log = structlog.get_logger(__name__)


class Publish:
    """The publish stage: results, dead letters and the result ledger."""

    def __init__(
        self,
        settings: Settings,
        sink: Sink,
        keep: Keep,
        *,
        ledger: ResultLedger | None,
        model_id: str,
        retries: RetryPolicy,
        metrics: Metrics,
        clock: StageClock,
        replay_id: str | None = None,
        reprocess: bool = False,
        skip_answered: bool = False,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._keep = keep
        self._ledger = ledger
        self._model_id = model_id
        self._retries = retries
        self._metrics = metrics
        self._clock = clock
        self._replay_id = replay_id
        self._reprocess = reprocess
        self._skip_answered = skip_answered
        #: Records whose answer (result or dead letter) the sink acknowledged, and how.
        self.published: dict[tuple[Partition, int], Outcome] = {}

    # -- results -------------------------------------------------------------------------

    async def hit(self, flight: Flight, request: Admitted, hit: CacheHit) -> Outcome:
        """Answer ``request`` with the cached video of ``hit``."""
        url = await self._keep.url_for(hit.entry.object_key)
        # The served video's parameters (its seed may not be the one this event derives).
        result = self._result(
            request,
            hit.entry.parameters or request.params,
            url=url,
            key=hit.entry.object_key,
            cache=hit.outcome,
            similarity=hit.similarity,
            matched_event_id=hit.entry.event_id,
        )
        await self._publish(flight, result)
        log.info(
            "event_answered_from_cache",
            cache=hit.outcome.value,
            matched_event_id=hit.entry.event_id,
            similarity=hit.similarity,
        )
        return OUTCOME_OF_CACHE[hit.outcome]

    async def generated(self, flight: Flight, request: Admitted, stored: Stored) -> Outcome:
        """Answer ``request`` with its newly generated and stored video."""
        made = stored.generated
        result = self._result(
            request,
            request.params,
            url=stored.url,
            key=stored.key,
            cache=CacheOutcome.MISS,
            batch_size=made.batch_size,
            timings={
                "batched_at": made.batched_at,
                "generated_at": made.generated_at,
                "stored_at": stored.stored_at,
            },
        )
        await self._publish(flight, result)
        log.info("event_generated", object_key=stored.key, batch_size=made.batch_size)
        return Outcome.GENERATED

    def _result(
        self,
        request: Admitted,
        params: GenerationParameters,
        *,
        url: str,
        key: str,
        cache: CacheOutcome,
        similarity: float | None = None,
        matched_event_id: str | None = None,
        batch_size: int | None = None,
        timings: dict[str, Any] | None = None,
    ) -> VideoResult:
        event = request.event
        return VideoResult.model_validate(
            {
                "result_id": VideoResult.result_id_for(event.event_id),
                "event_id": event.event_id,
                "status": "ok",
                "video_url": url,
                "object_key": key,
                "cache": cache,
                "similarity": similarity,
                "matched_event_id": matched_event_id,
                "model_id": self._model_id,
                "parameters": params,
                "timings": Timings(
                    received_at=request.received, completed_at=utcnow(), **(timings or {})
                ),
                "batch_size": batch_size,
                "worker_id": self._settings.worker_id,
                "tenant": event.tenant,
                "attributes": event.attributes,
                "error": None,
                "replayed": self._replay_id is not None,
                "replay_id": self._replay_id,
            }
        )

    async def _publish(self, flight: Flight, result: VideoResult) -> None:
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
        await self._retries.call(
            lambda: self._sink.publish(result, record.key, input_headers=record.headers), "publish"
        )
        self.published[(record.partition, record.offset)] = OUTCOME_OF_CACHE[result.cache]
        self._clock("publish", time.perf_counter() - started)

    # -- dead letters --------------------------------------------------------------------

    async def dead_letter(
        self,
        flight: Flight,
        reason: DeadLetterReason,
        detail: str,
        error_class: str,
        event_id: str | None,
    ) -> Outcome:
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
            url = await self._keep.keep_original(record.value)
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
            flight.key = self.ledger_key(record_key(record))
        body = letter.model_dump_json()
        # Our own pinned answer could not be published (too large, unserialisable): the
        # dead letter replaces it. Another worker's answer stands.
        held = await self._claim(flight, "dead_letter", body, replace=flight.claimed is not None)
        if held is not None and held.body != body:
            if held.kind == "result":  # answered before by a worker that got further
                await self._send_result(record, await self._recorded_result(held))
                await self._mark_published(flight)
                return letter_outcome(reason)
            letter = DeadLetter.model_validate_json(held.body)
        await self._send_letter(record, letter)
        await self._mark_published(flight)
        return letter_outcome(reason)

    async def _send_letter(self, record: Record, letter: DeadLetter) -> None:
        try:
            await self._send_dead_letter(record, letter)
        except RecordRejected as exc:
            log.warning("dead_letter_too_large", error=safe_text(str(exc), 300))
            bare = letter.model_copy(update={"original": "", "original_truncated": True})
            await self._send_dead_letter(record, bare)
        self.published[(record.partition, record.offset)] = letter_outcome(letter.reason)

    async def _send_dead_letter(self, record: Record, letter: DeadLetter) -> None:
        await self._retries.call(
            lambda: self._sink.dead_letter(letter, record.key, input_headers=record.headers),
            "dead_letter",
        )

    # -- the result ledger ---------------------------------------------------------------

    def ledger_key(self, key: str) -> str:
        """Where an answer is pinned; a replay pins its own answers: it never reads nor
        overwrites the live ones."""
        return f"replay:{self._replay_id}:{key}" if self._replay_id else key

    async def earlier(self, flight: Flight, key: str) -> LedgerEntry | None:
        """The earlier answer pinned under ``key``, when an event is to be answered from the
        ledger (a ledger, and not reprocessing); else None."""
        if self._ledger is None or self._reprocess:
            return None
        return await self._held(flight, key)

    async def answer_again(
        self, flight: Flight, held: LedgerEntry, key: str, payload_hash: str
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
            outcome = OUTCOME_OF_CACHE[result.cache]
        else:
            letter = DeadLetter.model_validate_json(held.body)
            await self._send_letter(record, letter)
            outcome = letter_outcome(letter.reason)
        await self._mark_published(flight)
        self._metrics.redeliveries.inc()
        log.info("event_redelivered", kind=held.kind)
        return outcome

    async def answered_in_output(self, flight: Flight) -> bool:
        """Whether a local re-run finds this record's answer in its output already."""
        if self._ledger is None or not self._skip_answered or self._reprocess:
            return False
        if not flight.key:
            flight.key = self.ledger_key(record_key(flight.record))
        held = await self._held(flight, flight.key)
        return held is not None and held.published and held.sink == self._sink.destination

    async def _held(self, flight: Flight, key: str) -> LedgerEntry | None:
        """The readable answer the ledger holds under ``key``; an unreadable one (written by
        another version, damaged) is logged and will be replaced by this handling's answer."""
        ledger = self._ledger
        assert ledger is not None
        held = await self._retries.call(lambda: ledger.get(key), "ledger")
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
        self, flight: Flight, kind: AnswerKind, body: str, *, replace: bool = False
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
        held = await self._retries.call(lambda: ledger.claim(entry, replace=replace), "ledger")
        flight.claimed = held.body if held.body == body else None
        return held

    async def _mark_published(self, flight: Flight) -> None:
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
        if result.object_key is not None and self._keep.urls_expire:
            update["video_url"] = await self._keep.url_for(result.object_key)
        return result.model_copy(update=update)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
