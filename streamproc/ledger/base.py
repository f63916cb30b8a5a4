"""The ledger seam: what was answered for each event, first writer wins.

Why: delivery is at least once, and the answer to an event depends on state that differs
between deliveries (the cache, what else is in flight, another worker after a rebalance).
The ledger pins the first answer: before an answer is published it is *claimed* under the
event's key; a later claim of the same key gets the earlier answer back, and that is what is
published. A redelivered event is looked up first and answered from the ledger without any
cache lookup or generation.

Keys: an event's ``event_id``; for a record that is not a valid event (no usable id), the
record's origin and content (:func:`record_key`), so its dead letter is pinned too.

States: an entry is claimed (the answer is fixed) and then marked published once the sink
acknowledged it. A worker that dies between the two leaves a claimed entry; whoever meets
the event next publishes that same answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, Protocol

from streamproc.bus.base import Record

AnswerKind = Literal["result", "dead_letter"]


@dataclass(frozen=True)
class LedgerEntry:
    """One recorded answer.

    ``body`` is the answer's JSON exactly as first claimed (a ``VideoResult`` or a
    ``DeadLetter``); ``payload_hash`` is :meth:`PromptEvent.payload_hash` (empty for records
    that were not valid events); ``sink`` names where it was published (the results file or
    topic), so a local re-run can tell an answer already in its output from one that is not.
    """

    key: str
    payload_hash: str
    kind: AnswerKind
    body: str
    sink: str
    recorded_at: float
    published: bool = False


class ResultLedger(Protocol):
    """Durable answers by key. Errors: :class:`~streamproc.errors.TransientError` when the
    backing service is unreachable (the caller retries; the record waits),
    :class:`~streamproc.errors.ServiceRefused` when it refuses the worker."""

    @property
    def shared(self) -> bool:
        """Whether every worker sees the same ledger (Redis) or only this one (SQLite)."""
        ...

    async def start(self) -> None:
        """Open the store (and drop entries older than the TTL)."""
        ...

    async def stop(self) -> None:
        """Close the store; idempotent."""
        ...

    async def get(self, key: str) -> LedgerEntry | None:
        """The entry under ``key``, if one was claimed and has not expired."""
        ...

    async def claim(self, entry: LedgerEntry, *, replace: bool = False) -> LedgerEntry:
        """Record ``entry`` unless ``key`` holds one already; returns the entry that holds
        the key now (``entry`` itself, or the earlier one). ``replace`` overwrites (a
        deliberate reprocessing)."""
        ...

    async def mark_published(self, key: str) -> None:
        """Note that the answer under ``key`` was acknowledged by the sink."""
        ...


def record_key(record: Record) -> str:
    """The ledger key of a record that is not a valid event: where it came from and what
    it held (a redelivery of the same record has the same key)."""
    digest = hashlib.sha256(record.value).hexdigest()[:32]
    p = record.partition
    return f"record:{p.topic}:{p.partition}:{record.offset}:{digest}"


def event_key(event_id: str) -> str:
    """The ledger key of a valid event."""
    return f"event:{event_id}"
