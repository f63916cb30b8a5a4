"""Publish: pin each answer in the result ledger, then send what the ledger holds to the sink.

Failure policy: ledger calls (:class:`~streamproc.stages.ledger.Pins`) and sends are retried by the worker's retry policy while the
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
from streamproc.errors import InvalidEventError, RecordRejected
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
from streamproc.ledger.base import LedgerEntry
from streamproc.metrics import Metrics
from streamproc.outcome import OUTCOME_OF_CACHE, Outcome, letter_outcome, result_outcome
from streamproc.retry import RetryPolicy
from streamproc.settings import Settings
from streamproc.stages.base import Admitted, Flight, StageClock, Stored
from streamproc.stages.ledger import Pins
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
        pins: Pins,
        model_id: str,
        retries: RetryPolicy,
        metrics: Metrics,
        clock: StageClock,
        replay_id: str | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._keep = keep
        self._pins = pins
        self._model_id = model_id
        self._retries = retries
        self._metrics = metrics
        self._clock = clock
        self._replay_id = replay_id
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

    async def cancelled(self, flight: Flight, request: Admitted, reason: str | None) -> Outcome:
        """Answer ``request`` as withdrawn by a control event: a result with status
        'cancelled', no video (nothing was stored), pinned in the ledger like any answer so a
        redelivery answers 'cancelled' again."""
        event = request.event
        result = VideoResult.model_validate(
            {
                "result_id": VideoResult.result_id_for(event.event_id),
                "event_id": event.event_id,
                "status": "cancelled",
                "cache": CacheOutcome.MISS,
                "model_id": self._model_id,
                "parameters": request.params,
                "timings": Timings(received_at=request.received, completed_at=utcnow()),
                "worker_id": self._settings.worker_id,
                "tenant": event.tenant,
                "attributes": event.attributes,
                "error": safe_text(f"cancelled: {reason}" if reason else "cancelled", 600),
                "replayed": self._replay_id is not None,
                "replay_id": self._replay_id,
            }
        )
        await self._publish(flight, result)
        log.info("event_cancelled", reason=reason)
        return Outcome.CANCELLED

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
        held = await self._pins.claim(flight, "result", body)
        if held is not None and held.body != body:
            if _another_request(held, flight):
                # Two records with this event_id and different requests were in flight
                # together and the other's answer was pinned first: the id is its. This
                # record's answer is a conflict, pinned under the record itself.
                self._pins.as_record(flight)
                raise _conflict(held)
            if held.kind == "dead_letter":  # e.g. a duplicate record whose generation failed
                log.info("event_answered_before", kind=held.kind)
                await self._send_letter(flight.record, DeadLetter.model_validate_json(held.body))
                await self._pins.mark_published(flight)
                return
            result = await self._recorded_result(held)
            log.info("event_answered_before", result_id=result.result_id)
        await self._send_result(flight.record, result)
        flight.video_url = result.video_url
        await self._pins.mark_published(flight)

    async def _send_result(self, record: Record, result: VideoResult) -> None:
        started = time.perf_counter()
        await self._retries.call(
            lambda: self._sink.publish(result, record.key, input_headers=record.headers), "publish"
        )
        self.published[(record.partition, record.offset)] = result_outcome(
            result.cache, result.status
        )
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
        self._pins.record_key(flight)
        body = letter.model_dump_json()
        # Our own pinned answer could not be published (too large, unserialisable): the
        # dead letter replaces it. Another worker's answer stands.
        held = await self._pins.claim(
            flight, "dead_letter", body, replace=flight.claimed is not None
        )
        if held is not None and held.body != body and _another_request(held, flight):
            # The event id is another request's (see _publish): this letter is the record's.
            self._pins.as_record(flight)
            held = await self._pins.claim(flight, "dead_letter", body)
        if held is not None and held.body != body:
            if held.kind == "result":  # answered before by a worker that got further
                await self._send_result(record, await self._recorded_result(held))
                await self._pins.mark_published(flight)
                return letter_outcome(reason)
            letter = DeadLetter.model_validate_json(held.body)
        await self._send_letter(record, letter)
        await self._pins.mark_published(flight)
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

    # -- answers held in the ledger ---------------------------------------------------

    async def answer_again(
        self, flight: Flight, held: LedgerEntry, key: str, payload_hash: str
    ) -> Outcome:
        """Answer a redelivered event from the ledger: no cache lookup, no generation."""
        if held.payload_hash and held.payload_hash != payload_hash:
            # Not the event that was answered: its id is taken (the record key pins this).
            raise _conflict(held)
        flight.key, flight.payload_hash = key, payload_hash
        record = flight.record
        if self._pins.in_output(held):
            log.info("event_already_answered")
            return Outcome.ALREADY_ANSWERED
        if held.kind == "result":
            result = await self._recorded_result(held)
            await self._send_result(record, result)
            outcome = result_outcome(result.cache, result.status)
        else:
            letter = DeadLetter.model_validate_json(held.body)
            await self._send_letter(record, letter)
            outcome = letter_outcome(letter.reason)
        await self._pins.mark_published(flight)
        self._metrics.redeliveries.inc()
        log.info("event_redelivered", kind=held.kind)
        return outcome

    async def _recorded_result(self, held: LedgerEntry) -> VideoResult:
        """The result held in the ledger as a redelivered copy: every field as first
        published, marked ``redelivery``, with a fresh URL where the store's expire."""
        result = VideoResult.model_validate_json(held.body)
        update: dict[str, Any] = {"redelivery": True}
        if result.object_key is not None and self._keep.urls_expire:
            update["video_url"] = await self._keep.url_for(result.object_key)
        return result.model_copy(update=update)


def _another_request(held: LedgerEntry, flight: Flight) -> bool:
    """Whether ``held`` answers another request than ``flight``'s under the same event id."""
    return bool(held.payload_hash and flight.payload_hash) and (
        held.payload_hash != flight.payload_hash
    )


def _conflict(held: LedgerEntry) -> InvalidEventError:
    return InvalidEventError(
        DeadLetterReason.EVENT_ID_CONFLICT,
        f"event_id was answered before for a different request (ledger entry of "
        f"{_iso(held.recorded_at)}, payload sha256 {held.payload_hash[:16]}…); "
        "use a new event_id for a new request",
        "EventIdConflict",
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
