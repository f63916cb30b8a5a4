"""The result ledger as the publish stage uses it: answers are pinned under the event's id
(or a bad record's origin and content) before they are published, and read back when the
event comes again.

Failure policy: ledger calls are retried by the worker's retry policy while the record stays
unfinished; an entry that cannot be read (another version, damage) is logged and replaced by
this handling's answer; marking an answer published is best effort (the answer is durable
already: a failure only costs a duplicate line on a local re-run).
"""

from __future__ import annotations

import time

import structlog

from streamproc.bus.base import Sink
from streamproc.errors import StreamprocError
from streamproc.events import DeadLetter, VideoResult, safe_text
from streamproc.ledger.base import AnswerKind, LedgerEntry, ResultLedger, record_key
from streamproc.retry import RetryPolicy
from streamproc.stages.base import Flight

log = structlog.get_logger(__name__)


class Pins:
    """Claims and look-ups in the result ledger (none: every call answers "nothing held")."""

    def __init__(
        self,
        ledger: ResultLedger | None,
        sink: Sink,
        *,
        retries: RetryPolicy,
        replay_id: str | None = None,
        reprocess: bool = False,
        skip_answered: bool = False,
    ) -> None:
        """``replay_id``: pin under the replay's own keys; ``reprocess``: answer anew and
        replace what is held; ``skip_answered``: an answer already in this sink's output
        finishes its record without publishing it again (local re-runs)."""
        self._ledger = ledger
        self._sink = sink
        self._retries = retries
        self._replay_id = replay_id
        self._reprocess = reprocess
        self._skip_answered = skip_answered

    def key(self, key: str) -> str:
        """Where an answer is pinned; a replay pins its own answers: it never reads nor
        overwrites the live ones."""
        return f"replay:{self._replay_id}:{key}" if self._replay_id else key

    def as_record(self, flight: Flight) -> None:
        """Pin ``flight``'s answer under its record (origin and content) from now on, not
        under its event id: for a record whose event id another request holds."""
        flight.key = self.key(record_key(flight.record))

    def record_key(self, flight: Flight) -> str:
        """The key of ``flight``'s record as a record (not as an event), set on it if unset."""
        if not flight.key:
            flight.key = self.key(record_key(flight.record))
        return flight.key

    async def earlier(self, flight: Flight, key: str) -> LedgerEntry | None:
        """The earlier answer pinned under ``key``, when an event is to be answered from the
        ledger (there is one, and this run does not reprocess); else None."""
        if self._ledger is None or self._reprocess:
            return None
        return await self._held(flight, key)

    def in_output(self, held: LedgerEntry) -> bool:
        """Whether a local re-run finds ``held`` in its output already."""
        return self._skip_answered and held.published and held.sink == self._sink.destination

    async def answered_in_output(self, flight: Flight) -> bool:
        """Whether a local re-run finds this record's answer in its output already."""
        if self._ledger is None or not self._skip_answered or self._reprocess:
            return False
        held = await self._held(flight, self.record_key(flight))
        return held is not None and self.in_output(held)

    async def claim(
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

    async def mark_published(self, flight: Flight) -> None:
        """Note in the ledger that the answer is out; best effort."""
        if self._ledger is None:
            return
        try:
            await self._ledger.mark_published(flight.key)
        except StreamprocError as exc:
            log.warning("ledger_mark_failed", error=safe_text(str(exc), 300))

    async def _held(self, flight: Flight, key: str) -> LedgerEntry | None:
        """The readable answer the ledger holds under ``key``; an unreadable one is logged and
        will be replaced by this handling's answer."""
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
