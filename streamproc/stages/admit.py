"""Admit: decode and validate a record into the request it makes; name any failure's reason.

Failure policy: a record that is not a usable event raises
:class:`~streamproc.errors.InvalidEventError` (it dead-letters, its offset is committed), and
:func:`classify` is the one mapping from *any* exception met while handling a record to the
reason its dead letter gives — a specific one where it fits, else ``internal_error`` naming
the exception.
"""

from __future__ import annotations

import time
from datetime import datetime

import structlog

from streamproc.batching import ShapeKey
from streamproc.bus.base import Record
from streamproc.cache.base import scope_of
from streamproc.errors import (
    DeadlineExceeded,
    EventRefused,
    GenerationError,
    InvalidEventError,
    RecordRejected,
)
from streamproc.events import (
    DeadLetterReason,
    GenerationParameters,
    PromptEvent,
    canonical_prompt,
    decode_prompt,
    event_id_of,
    utcnow,
)
from streamproc.settings import Settings
from streamproc.stages.base import Admitted, Trace


class Admit:
    """Turns a record's bytes into an :class:`Admitted` request for one model."""

    def __init__(self, settings: Settings, *, model_id: str, scheduler: str) -> None:
        self._settings = settings
        self._model_id = model_id
        self._scheduler = scheduler

    def decode(self, record: Record, trace: Trace) -> PromptEvent:
        """The record's event; raises :class:`InvalidEventError` for anything unusable (a
        record the source had to cut, bad bytes, a schema violation, an unsupported value)."""
        if record.cut_at is not None:
            raise InvalidEventError(
                DeadLetterReason.MALFORMED,
                f"record longer than {record.cut_at} bytes (cut by the source)",
                "RecordTooLarge",
            )
        event = decode_prompt(record.value, self._settings.event_limits(self._model_id))
        structlog.contextvars.bind_contextvars(event_id=event.event_id)
        if event.created_at is not None:
            trace.origin = event.created_at.timestamp()
        return event

    def request(self, event: PromptEvent, received: datetime) -> Admitted:
        """What ``event`` asks the model for: canonical prompts, every generation parameter
        (the seed derived where absent), its cache scope, batch shape and cache mode."""
        generation = self._settings.generation
        negative = canonical_prompt(event.negative_prompt) if event.negative_prompt else None
        params = GenerationParameters(
            width=event.width,
            height=event.height,
            num_frames=event.num_frames,
            num_inference_steps=event.num_inference_steps,
            guidance_scale=event.guidance_scale,
            seed=event.effective_seed(),
            negative_prompt=negative,
            scheduler=self._scheduler,
            fps=generation.fps,
            # The request class was validated at decode.
            step_cache=generation.step_cache_for(event.quality),
        )
        shape = ShapeKey(
            self._model_id,
            event.width,
            event.height,
            event.num_frames,
            event.num_inference_steps,
            event.guidance_scale,
            params.step_cache,
        )
        return Admitted(
            event=event,
            prompt=canonical_prompt(event.prompt),
            params=params,
            scope=scope_of(event, self._model_id, params.step_cache),
            shape=shape,
            mode=event.cache_mode or self._settings.cache.mode,
            received=received,
        )


def classify(exc: BaseException) -> tuple[DeadLetterReason, str, str]:
    """The dead letter's reason, detail and error class for a record whose handling raised
    ``exc``: a specific reason where one fits, else ``internal_error`` naming the exception."""
    name = type(exc).__name__
    if isinstance(exc, InvalidEventError):
        return DeadLetterReason(exc.reason), exc.detail, exc.error_class
    if isinstance(exc, EventRefused):
        return DeadLetterReason(exc.reason), exc.detail, name
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


def event_id_or_none(value: bytes) -> str | None:
    """The event id for a dead letter, best effort: bytes the decoder refused can break the
    look-up as well (an integer of thousands of digits raises ValueError, nesting deeper than
    the recursion limit RecursionError), and that must not cost the record its dead letter."""
    try:
        return event_id_of(value)
    except (ValueError, RecursionError):
        return None


def monotonic_deadline(deadline: datetime | None) -> float | None:
    """An event's deadline on this process's monotonic clock."""
    if deadline is None:
        return None
    return time.monotonic() + (deadline - utcnow()).total_seconds()
