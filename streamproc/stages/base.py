"""What the stages hand each other, and the two ways a record can leave them unfinished.

A record walks down the stages (``admit → cache → generate → store → publish``, then
``commit``) and never climbs back: each stage takes the value the previous one produced and
returns the next. :class:`Flight` is the one mutable thing: the supervisor creates it when a
record is admitted and the publish stage notes on it where the record's answer is pinned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from streamproc.batching import ShapeKey
from streamproc.bus.base import Record
from streamproc.cache.base import CacheScope
from streamproc.events import CacheMode, GenerationParameters, PromptEvent
from streamproc.generation.base import Frames
from streamproc.outcome import Outcome

#: Adds seconds to a stage's total (run summary and ``streamproc_stage_duration_seconds``).
StageClock = Callable[[str, float], None]


class Abandoned(Exception):
    """The record's work was taken away (partition revoked, GPU loop gone) before it ran:
    the record stays unfinished and uncommitted, and is delivered again."""


class Held(Exception):
    """The record met a permanent fault of a service: it stays unfinished (uncommitted)."""


@dataclass
class Trace:
    """When a record's event began: its own timestamp where it has one (wall clock)."""

    admitted: float
    origin: float | None = None


@dataclass
class Flight:
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
    #: Its partition was revoked while it was in flight (abandoned: handed over, not lost).
    handed_over: bool = False
    #: The decoded event's id, tenant and lane (for status events; None before decoding).
    event_id: str | None = None
    tenant: str | None = None
    lane: int | None = None
    #: It holds one in-flight slot of its tenant's quota (released when its task ends).
    quota_held: bool = False
    #: The reason of its dead letter, once it has one.
    letter_reason: str | None = None
    #: The video URL of the result published for it (what its ``answered`` status carries).
    video_url: str | None = None


@dataclass(frozen=True)
class Admitted:
    """A valid event and the request it makes, as the model will see it."""

    event: PromptEvent
    #: The canonical prompt (what the cache and the model see).
    prompt: str
    params: GenerationParameters
    scope: CacheScope
    shape: ShapeKey
    mode: CacheMode
    received: datetime


@dataclass(frozen=True)
class Generated:
    """One event's frames out of a batch."""

    frames: Frames
    batch_size: int
    batched_at: datetime
    generated_at: datetime
    batch_id: str


@dataclass(frozen=True)
class Stored:
    """One event's video, durable in the object store."""

    key: str
    url: str
    generated: Generated
    stored_at: datetime
