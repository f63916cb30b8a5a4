"""How records and runs end: :class:`Outcome` per record, :class:`RunSummary` per run, and
the exit statuses a worker's process ends with (docs/operations.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from streamproc.events import CacheOutcome, DeadLetterReason


class Outcome(StrEnum):
    """How one record ended: hits, generated and cancelled publish a result; dead-lettered and
    failed a dead letter."""

    HIT_EXACT = "hit-exact"
    HIT_SEMANTIC = "hit-semantic"
    GENERATED = "generated"
    DEAD_LETTERED = "dead-lettered"
    FAILED = "failed"  # a dead letter too: generation failed (or its deadline passed)
    #: A local re-run met an event whose answer its output already holds: nothing published.
    ALREADY_ANSWERED = "already-answered"
    #: Withdrawn by a control event: a result with status 'cancelled', nothing stored.
    CANCELLED = "cancelled"
    #: A clip above routing.large_above_tokens, handed durably to the context-parallel lane
    #: (routing.large_topic), whose workers answer it.
    FORWARDED = "forwarded"


RESULT_OUTCOMES = frozenset(
    {Outcome.HIT_EXACT, Outcome.HIT_SEMANTIC, Outcome.GENERATED, Outcome.CANCELLED}
)


class ExitStatus:
    """Exit statuses of a worker run (``streamproc run``; documented in docs/operations.md)."""

    OK = 0  #: input ended or stop requested, and every record received has its outcome
    ERROR = 1  #: could not start (settings, a service refusing or unreachable at start)
    ABANDONED = 3  #: stopped with records unfinished (uncommitted: delivered again); records
    #: handed over in a rebalance do not count: their partition's next owner answers them
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
    #: Of the abandoned, those whose partition was revoked in a rebalance: the partition's
    #: next owner (maybe this worker again) answers them, so they do not fail the run.
    handed_over: int = 0
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
        return self.finished - self.results - self.already_answered - self.forwarded

    @property
    def forwarded(self) -> int:
        """Records handed to the context-parallel lane (answered there)."""
        return self.outcomes[Outcome.FORWARDED]

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
        if self.abandoned > self.handed_over:
            return ExitStatus.ABANDONED
        return ExitStatus.OK


#: The outcome of a published result, by its cache field.
OUTCOME_OF_CACHE = {
    CacheOutcome.MISS: Outcome.GENERATED,
    CacheOutcome.HIT_EXACT: Outcome.HIT_EXACT,
    CacheOutcome.HIT_SEMANTIC: Outcome.HIT_SEMANTIC,
}


def result_outcome(cache: CacheOutcome, status: str) -> Outcome:
    """The outcome of a published result, by its ``cache`` and ``status`` fields."""
    return Outcome.CANCELLED if status == "cancelled" else OUTCOME_OF_CACHE[cache]


#: Dead-letter reasons that count as a failed generation (:attr:`Outcome.FAILED`).
GENERATION_REASONS = frozenset(
    {DeadLetterReason.GENERATION_FAILED, DeadLetterReason.DEADLINE_EXCEEDED}
)


def letter_outcome(reason: DeadLetterReason) -> Outcome:
    """The outcome of a record answered by a dead letter of ``reason``."""
    return Outcome.FAILED if reason in GENERATION_REASONS else Outcome.DEAD_LETTERED
