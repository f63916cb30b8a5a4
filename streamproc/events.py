"""The event contract: what comes in, what goes out, what is set aside.

Five pydantic models cross the process boundary and nothing else does:

* :class:`PromptEvent` — one request for a video, read from the prompts topic or a JSONL line;
* :class:`VideoResult` — the answer, published to the results topic;
* :class:`DeadLetter` — an input that could not be answered, with its original bytes;
* :class:`StatusEvent` — where an event is (best effort, the status topic; docs/control.md);
* :class:`ControlEvent` — a request about events already sent (``cancel``; the control topic).

Their JSON Schemas live in ``schemas/`` (written by ``streamproc schemas``); a test keeps them
identical to these models. Limits fixed by the contract (sizes multiple of 32, frames of the form
4k+1, …) are schema constraints; limits an operator configures (largest size, longest prompt, …)
arrive as :class:`EventLimits` in the validation context and are checked by :func:`decode_prompt`.

:func:`decode_prompt` is the only way bytes become an event: for any input it returns an event
that serialises or raises :class:`~streamproc.errors.InvalidEventError`, and it also refuses
what JSON lets through but the schema cannot see (duplicate keys, lone surrogates, NaN,
nesting deeper than :data:`MAX_DEPTH`); ``docs/events.md`` lists those rules.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from itertools import accumulate
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from streamproc.errors import InvalidEventError

SCHEMA_VERSION = 1

#: Hard limits of the contract; an operator may configure tighter ones (:class:`EventLimits`).
PROMPT_MAX_CHARS = 4000
SIDE_MIN = 32
SIDE_MAX = 2048
SIDE_MULTIPLE = 32
FRAMES_MAX = 257
STEPS_MAX = 200
GUIDANCE_MAX = 30.0
SEED_MAX = 2**63 - 1
#: Deepest nesting of objects and arrays in a record; the event object itself is level 1.
MAX_DEPTH = 32
#: Range of an integer inside ``attributes`` (64-bit signed, so every consumer can hold it).
ATTRIBUTE_INT_MIN = -(2**63)
ATTRIBUTE_INT_MAX = 2**63 - 1

#: Python's whitespace (``str.isspace``) spelled out, so that the schema's pattern means the
#: same in every regex dialect (ECMA-262, Python, Rust) and in :meth:`str.strip`.
_WHITESPACE = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: Matches text that is not blank: at least one character that is not whitespace.
NON_BLANK = f"[^{_WHITESPACE}]"
_NON_BLANK = re.compile(NON_BLANK)

#: Namespace for result ids, so a re-processed event gets the same result id.
_RESULT_NAMESPACE = uuid.UUID("5c0f6a0e-3a53-4d4c-8c38-2f6f1f0e9b11")

EventId = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$", strict=True)
]
_EVENT_ID = re.compile(r"[\x21-\x7e]+")

#: RFC 3339 date-time with a zone; pydantic then checks the calendar and clock ranges.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _rfc3339_text(value: object) -> object:
    # pydantic alone would also take numbers (Unix time) and looser strings ("2026-12-01
    # 10:00Z"), which the schema's format date-time refuses.
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value
    raise PydanticCustomError(
        "datetime_format", "must be an RFC 3339 date-time with a zone, e.g. 2026-12-01T10:00:00Z"
    )


#: A timestamp with a zone, written in JSON as an RFC 3339 string.
ZonedDateTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)]


class DeadLetterReason(StrEnum):
    """Why an input ended in the dead letters instead of a video."""

    MALFORMED = "malformed"
    SCHEMA_VIOLATION = "schema_violation"
    OVERSIZE_PROMPT = "oversize_prompt"
    UNSUPPORTED_PARAMETER = "unsupported_parameter"
    GENERATION_FAILED = "generation_failed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    #: The video was made but its result is larger than the sink accepts.
    RESULT_TOO_LARGE = "result_too_large"
    #: Anything else that went wrong while handling the record (a bug or an unforeseen input);
    #: ``error_class`` and ``detail`` name the exception.
    INTERNAL_ERROR = "internal_error"
    #: The event id was answered before for a different request (the result ledger holds
    #: that answer); ``detail`` names the earlier result.
    EVENT_ID_CONFLICT = "event_id_conflict"
    #: Older than ``control.max_event_age_s`` (from ``created_at``, else the record's
    #: timestamp) at admission or before generation: nobody waits for the answer any more.
    EXPIRED = "expired"
    #: Its tenant was over a limit (``tenants.max_in_flight`` or ``tenants.events_per_minute``);
    #: ``detail`` names the limit. The producer may send it again later.
    QUOTA_EXCEEDED = "quota_exceeded"


class CacheOutcome(StrEnum):
    """How a result was answered."""

    HIT_EXACT = "hit-exact"
    HIT_SEMANTIC = "hit-semantic"
    MISS = "miss"


class CacheMode(StrEnum):
    """Per-event or global cache behaviour (event attribute ``cache``, setting ``cache.mode``)."""

    REUSE = "reuse"  # read and write the cache
    REFRESH = "refresh"  # never read, always generate and replace the entry
    BYPASS = "bypass"  # neither read nor write


_CACHE_MODES = frozenset(m.value for m in CacheMode)

#: The request class that computes every denoising step (also: no 'quality' attribute).
STANDARD_QUALITY = "standard"


@dataclass(frozen=True)
class EventLimits:
    """Operator-configured limits, tighter than (or equal to) the contract's hard limits."""

    max_prompt_chars: int = 2000
    max_width: int = 1280
    max_height: int = 1280
    max_frames: int = 121
    max_steps: int = 50
    model_id: str | None = None
    #: Request classes this worker serves besides 'standard' (None: not checked).
    quality_classes: frozenset[str] | None = None
    #: The model profile's defaults for an event that names no steps / no guidance
    #: (None: the contract's defaults, 16 and 5.0).
    default_steps: int | None = None
    default_guidance: float | None = None
    #: The only step count the profile samples (explicit timesteps); None: any.
    fixed_steps: int | None = None
    #: The profile samples without classifier-free guidance: guidance above 1 is refused.
    no_guidance: bool = False
    #: The profile's name, for the messages of refused events.
    profile: str | None = None

    def serves_model(self, model: str) -> bool:
        """Whether an event naming ``model`` may run here: the served id, or the weights part
        of it (before a ``#sampler`` suffix)."""
        if self.model_id is None:
            return True
        return model in (self.model_id, self.model_id.partition("#")[0])


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class PromptEvent(_Frozen):
    """A request for one video. Unknown fields are refused: free-form data goes in ``attributes``."""

    schema_version: Literal[1] = Field(1, description="Version of this contract.")
    event_id: EventId = Field(description="Unique id chosen by the producer; results carry it.")
    prompt: str = Field(
        max_length=PROMPT_MAX_CHARS,
        pattern=NON_BLANK,
        strict=True,
        description="What to show; not blank. A worker may allow fewer characters "
        "(limits.max_prompt_chars).",
    )
    negative_prompt: str | None = Field(
        None,
        max_length=PROMPT_MAX_CHARS,
        strict=True,
        description="What to avoid (classifier-free guidance); same length limits as prompt.",
    )
    width: int = Field(
        832,
        ge=SIDE_MIN,
        le=SIDE_MAX,
        multiple_of=SIDE_MULTIPLE,
        strict=True,
        description="Pixels; a worker may allow less (limits.max_width).",
    )
    height: int = Field(
        480,
        ge=SIDE_MIN,
        le=SIDE_MAX,
        multiple_of=SIDE_MULTIPLE,
        strict=True,
        description="Pixels; a worker may allow less (limits.max_height).",
    )
    num_frames: int = Field(
        17,
        ge=1,
        le=FRAMES_MAX,
        strict=True,
        description="Frames, of the form 4k+1 (1, 5, 9, ...); a worker may allow fewer "
        "(limits.max_frames).",
    )
    num_inference_steps: int = Field(
        16,
        ge=1,
        le=STEPS_MAX,
        strict=True,
        description="Denoising steps; a worker may allow fewer (limits.max_steps).",
    )
    guidance_scale: float = Field(
        5.0,
        ge=0.0,
        le=GUIDANCE_MAX,
        strict=True,
        allow_inf_nan=False,
        description="Classifier-free guidance; <=1 turns it off.",
    )
    seed: int | None = Field(
        None,
        ge=0,
        le=SEED_MAX,
        strict=True,
        description="Noise seed; derived from event_id when absent.",
    )
    priority: int = Field(
        0, ge=0, le=9, strict=True, description="Higher runs first within a batch window."
    )
    tenant: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$", strict=True)
    model: str | None = Field(
        None,
        max_length=300,
        strict=True,
        description="Model id; must equal the worker's model when set.",
    )
    created_at: ZonedDateTime | None = Field(
        None, description="When the producer made it (RFC 3339, with a zone)."
    )
    deadline: ZonedDateTime | None = Field(
        None,
        description="Finish by this time (RFC 3339, with a zone) or be dead-lettered as "
        "deadline_exceeded.",
    )
    attributes: dict[str, JsonValue] = Field(
        default_factory=dict,
        max_length=64,
        description="Free-form data passed through to the result. Key 'cache' may be "
        "'reuse', 'refresh' or 'bypass'; key 'quality' names a request class ('standard', "
        "or one of the worker's generation.step_cache_classes, e.g. 'draft'). Integers must "
        f"fit in 64 bits; the whole record nests at most {MAX_DEPTH} levels deep.",
        json_schema_extra={
            "properties": {
                "cache": {"enum": [*(m.value for m in CacheMode), None]},
                "quality": {"anyOf": [{"type": "string", "pattern": NON_BLANK}, {"type": "null"}]},
            }
        },
    )

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        # An event that names no steps or guidance gets the served model profile's (a
        # few-step distilled model is sampled at its own step count, without guidance).
        limits = _limits(info)
        if limits is None or not isinstance(data, dict):
            return data
        defaults: dict[str, int | float | None] = {
            "num_inference_steps": limits.default_steps,
            "guidance_scale": limits.default_guidance,
        }
        missing = {k: v for k, v in defaults.items() if v is not None and k not in data}
        return {**data, **missing} if missing else data

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_is_an_integer(cls, value: object) -> object:
        # A literal alone would take true and 1.0 (both equal 1 in Python).
        if type(value) is not int:
            raise PydanticCustomError("int_type", "must be an integer")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt_within_limit(cls, value: str, info: ValidationInfo) -> str:
        limits = _limits(info)
        if limits is not None and len(value) > limits.max_prompt_chars:
            raise PydanticCustomError(
                "oversize_prompt",
                "has {length} characters, the limit is {limit}",
                {"length": len(value), "limit": limits.max_prompt_chars},
            )
        return value

    @field_validator("num_frames")
    @classmethod
    def _frames_4k_plus_1(cls, value: int) -> int:
        if (value - 1) % 4 != 0:
            raise PydanticCustomError(
                "frames_form",
                "must be of the form 4k+1 (1, 5, 9, ...), got {value}",
                {"value": value},
            )
        return value

    @field_validator("attributes")
    @classmethod
    def _known_attributes(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        mode = value.get("cache")
        if mode is not None and (not isinstance(mode, str) or mode not in _CACHE_MODES):
            raise PydanticCustomError("cache_mode", "'cache' must be reuse, refresh or bypass")
        quality = value.get("quality")
        if quality is not None and (not isinstance(quality, str) or not _NON_BLANK.search(quality)):
            raise PydanticCustomError(
                "quality_class", "'quality' must name a request class (a non-blank string)"
            )
        return value

    @model_validator(mode="after")
    def _within_configured_limits(self, info: ValidationInfo) -> PromptEvent:
        limits = _limits(info)
        if limits is None:
            return self
        if self.negative_prompt is not None and len(self.negative_prompt) > limits.max_prompt_chars:
            raise PydanticCustomError(
                "oversize_prompt",
                "negative_prompt has {length} characters, the limit is {limit}",
                {"length": len(self.negative_prompt), "limit": limits.max_prompt_chars},
            )
        checks = (
            ("width", self.width, limits.max_width),
            ("height", self.height, limits.max_height),
            ("num_frames", self.num_frames, limits.max_frames),
            ("num_inference_steps", self.num_inference_steps, limits.max_steps),
        )
        for name, value, limit in checks:
            if value > limit:
                raise PydanticCustomError(
                    "unsupported_parameter",
                    "{name}={value} is above this worker's limit {limit}",
                    {"name": name, "value": value, "limit": limit},
                )
        offered = limits.quality_classes
        quality = self.quality
        if offered is not None and quality is not None and quality not in offered:
            raise PydanticCustomError(
                "unsupported_parameter",
                "quality '{quality}' is not offered here (classes: {offered})",
                {"quality": quality, "offered": ", ".join(sorted({STANDARD_QUALITY, *offered}))},
            )
        profile = limits.profile or "this worker's"
        if limits.fixed_steps is not None and self.num_inference_steps != limits.fixed_steps:
            raise PydanticCustomError(
                "unsupported_parameter",
                "num_inference_steps={value}: model profile '{profile}' samples exactly "
                "{steps} steps (leave it out)",
                {
                    "value": self.num_inference_steps,
                    "profile": profile,
                    "steps": limits.fixed_steps,
                },
            )
        if limits.no_guidance and self.guidance_scale > 1.0:
            raise PydanticCustomError(
                "unsupported_parameter",
                "guidance_scale={value}: model profile '{profile}' samples without "
                "classifier-free guidance (use 1 or leave it out)",
                {"value": self.guidance_scale, "profile": profile},
            )
        if self.model is not None and not limits.serves_model(self.model):
            raise PydanticCustomError(
                "unsupported_parameter",
                "model '{model}' is not served here (this worker runs '{served}')",
                {"model": self.model, "served": limits.model_id},
            )
        return self

    @property
    def cache_mode(self) -> CacheMode | None:
        """The per-event cache mode from ``attributes['cache']``, if set."""
        mode = self.attributes.get("cache")
        return CacheMode(mode) if isinstance(mode, str) else None

    @property
    def quality(self) -> str | None:
        """The request class from ``attributes['quality']``; None for 'standard' or unset."""
        value = self.attributes.get("quality")
        if not isinstance(value, str) or value == STANDARD_QUALITY:
            return None
        return value

    def payload_hash(self) -> str:
        """SHA-256 of what decides this event's answer: every field but ``created_at``,
        ``deadline`` and ``priority`` (a producer's retry may restamp those)."""
        fields = self.model_dump(mode="json", exclude={"created_at", "deadline", "priority"})
        body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()

    def effective_seed(self) -> int:
        """The seed used for noise: the given one, or a stable hash of ``event_id``.

        Deriving it from the id keeps a retried event's video (and object key) identical.
        """
        if self.seed is not None:
            return self.seed
        return int.from_bytes(uuid.uuid5(_RESULT_NAMESPACE, self.event_id).bytes[:8], "big") >> 1


def _limits(info: ValidationInfo) -> EventLimits | None:
    context = info.context
    if isinstance(context, dict):
        limits = context.get("limits")
        if isinstance(limits, EventLimits):
            return limits
    return None


def canonical_prompt(text: str) -> str:
    """The prompt as the model sees it: NFKC, whitespace collapsed, trimmed.

    Deliberately minimal, since it is also part of the video's content address; looser
    matching (case, filler words) is the cache's job.
    """
    return " ".join(unicodedata.normalize("NFKC", text).split())


class GenerationParameters(_Frozen):
    """The parameters a video was (or would be) made with."""

    width: int
    height: int
    num_frames: int
    num_inference_steps: int
    guidance_scale: float
    seed: int
    negative_prompt: str | None = None
    scheduler: str
    fps: int
    step_cache: str | None = Field(
        None,
        description="Step-cache hook of the event's request class (e.g. 'first-block:0.1'); "
        "null: every denoising step fully computed.",
    )


class Timings(_Frozen):
    """When the event passed each stage (UTC); stages it skipped stay null."""

    received_at: datetime
    batched_at: datetime | None = None
    generated_at: datetime | None = None
    stored_at: datetime | None = None
    completed_at: datetime


class VideoResult(_Frozen):
    """The answer to one prompt event, keyed like it on the results topic."""

    schema_version: Literal[1] = 1
    result_id: str = Field(description="Stable id: the same event always yields the same id.")
    event_id: str
    status: Literal["ok", "failed", "cancelled"] = Field(
        description="'ok': video_url is set; 'failed': error says why; 'cancelled': withdrawn "
        "by a control event before it was stored (nothing stored; error gives the reason)."
    )
    video_url: str | None = Field(None, description="Where the MP4 is; null when failed.")
    object_key: str | None = Field(None, description="Content address of the MP4.")
    cache: CacheOutcome
    similarity: float | None = Field(None, description="Cosine similarity of a semantic hit.")
    matched_event_id: str | None = Field(
        None, description="Event whose video was reused (cache hit or in-window coalescing)."
    )
    model_id: str
    parameters: GenerationParameters
    timings: Timings
    batch_size: int | None = Field(None, description="Size of the GPU batch that made it.")
    worker_id: str
    tenant: str | None = None
    attributes: dict[str, JsonValue] = Field(default_factory=dict)
    error: str | None = Field(
        None, description="Why it failed (status failed), or the cancel's reason (cancelled)."
    )
    replayed: bool = Field(
        False, description="Made by `streamproc replay` (a backfill), not by live traffic."
    )
    replay_id: str | None = Field(None, description="Which replay made it, when replayed.")
    redelivery: bool = Field(
        False,
        description="A copy of an earlier answer to this event, re-published from the result "
        "ledger (the event was delivered again); every other field is as first published.",
    )

    @staticmethod
    def result_id_for(event_id: str) -> str:
        """The deterministic result id of an event."""
        return str(uuid.uuid5(_RESULT_NAMESPACE, f"result:{event_id}"))


class Origin(_Frozen):
    """Where an input record came from."""

    topic: str
    partition: int
    offset: int
    key: str | None = Field(None, description="Record key, base64.")


class DeadLetter(_Frozen):
    """An input that could not be answered, kept with its original bytes for replay.

    Build one with :func:`dead_letter_for`, which makes its serialisation unable to fail.
    """

    schema_version: Literal[1] = 1
    reason: DeadLetterReason
    detail: str
    error_class: str
    event_id: str | None = Field(None, description="Set when the bytes carried a readable id.")
    original: str = Field(
        description="The original record value, base64 (its first original_size bytes, or "
        "fewer when original_truncated)."
    )
    original_size: int | None = Field(None, description="Size of the whole original, bytes.")
    original_sha256: str | None = Field(None, description="SHA-256 of the whole original, hex.")
    original_truncated: bool = Field(
        False, description="The original was longer than dead_letters.max_original_bytes."
    )
    original_url: str | None = Field(
        None, description="Where the whole original is kept, when it was cut and stored."
    )
    origin: Origin
    worker_id: str
    failed_at: datetime

    def original_bytes(self) -> bytes:
        """Decode :attr:`original` back to the bytes kept (all that were read unless
        :attr:`original_truncated`)."""
        return base64.b64decode(self.original)


class StatusState(StrEnum):
    """Where an event is in its life; the last three are final (one of them ends every event)."""

    ACCEPTED = "accepted"  # decoded, admitted to this worker (not a duplicate, not expired)
    QUEUED = "queued"  # waiting in its lane for a GPU batch
    GENERATING = "generating"  # in a running batch (step k of N)
    STORED = "stored"  # the video is in the object store
    ANSWERED = "answered"  # its result is durable on the results topic (or file)
    DEAD_LETTERED = "dead_lettered"  # its dead letter is durable
    CANCELLED = "cancelled"  # its 'cancelled' result is durable


#: The states that end an event (after one of them the worker sends no more for it).
FINAL_STATES = frozenset({StatusState.ANSWERED, StatusState.DEAD_LETTERED, StatusState.CANCELLED})

TenantName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$", strict=True)]


class StatusEvent(_Frozen):
    """Where one prompt event is, published best effort to the status topic (key: event_id).

    Not part of the delivery contract: a status event may be dropped (the worker counts it) or
    repeated (a redelivered event walks its states again); results and dead letters are the
    outcome. Fields that do not apply to the state are null.
    """

    schema_version: Literal[1] = Field(1, description="Version of this contract.")
    event_id: str = Field(description="The prompt event's id (also the record key).")
    state: StatusState
    at: datetime = Field(description="When the event entered this state (UTC).")
    worker_id: str = Field(description="The worker that sent it.")
    tenant: str | None = Field(None, description="The prompt event's tenant.")
    lane: int | None = Field(
        None, description="The priority lane it waits or ran in (0-9, higher served first)."
    )
    received_at: datetime | None = Field(None, description="When this worker read the record.")
    created_at: datetime | None = Field(None, description="The prompt event's created_at.")
    queue_position: int | None = Field(
        None,
        ge=1,
        description="queued: events ahead of it in this worker's queue, plus one (1: next).",
    )
    estimated_start_at: datetime | None = Field(
        None, description="queued: when its batch is expected to start (a rough estimate)."
    )
    step: int | None = Field(None, ge=0, description="generating: denoising steps done.")
    total_steps: int | None = Field(None, ge=1, description="generating: steps in all.")
    batch_size: int | None = Field(None, ge=1, description="generating: videos in its batch.")
    result_id: str | None = Field(
        None, description="stored, answered, cancelled: the result's id (VideoResult.result_id)."
    )
    video_url: str | None = Field(None, description="stored, answered: where the MP4 is.")
    dead_letter_reason: DeadLetterReason | None = Field(
        None, description="dead_lettered: the dead letter's reason."
    )
    detail: str | None = Field(
        None, description="dead_lettered: the dead letter's detail; cancelled: the reason."
    )


class ControlAction(StrEnum):
    """What a control event asks for."""

    CANCEL = "cancel"


class ControlEvent(_Frozen):
    """An operator's or client's request about events already sent (the control topic).

    ``cancel`` names exactly one of ``event_id`` (one event) or ``tenant`` (every event of the
    tenant created or received up to ``issued_at``: a bulk withdrawal).
    """

    schema_version: Literal[1] = Field(1, description="Version of this contract.")
    action: ControlAction = Field(description="'cancel'.")
    event_id: EventId | None = Field(None, description="The one event to cancel.")
    tenant: TenantName | None = Field(
        None, description="Cancel every event of this tenant up to issued_at."
    )
    reason: str | None = Field(
        None,
        max_length=500,
        strict=True,
        description="Why; copied into the cancelled result's error and the status event.",
    )
    issued_at: ZonedDateTime | None = Field(
        None,
        description="When it was issued (RFC 3339, with a zone); default: the record's "
        "timestamp. A tenant cancel covers events created (or else received) up to then.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["event_id"], "properties": {"event_id": {"type": "string"}}},
                {"required": ["tenant"], "properties": {"tenant": {"type": "string"}}},
            ]
        }
    )

    @model_validator(mode="after")
    def _one_target(self) -> ControlEvent:
        if (self.event_id is None) == (self.tenant is None):
            raise PydanticCustomError(
                "cancel_target", "a cancel names exactly one of event_id or tenant"
            )
        return self


def decode_control(raw: bytes) -> ControlEvent:
    """Parse one control record; raises :class:`InvalidEventError` (reason ``malformed`` or
    ``schema_violation``) with a readable detail, and nothing else."""
    try:
        data, _ = _parse(raw)
        return ControlEvent.model_validate(data)
    except InvalidEventError:
        raise
    except ValidationError as exc:
        raise InvalidEventError(
            DeadLetterReason.SCHEMA_VIOLATION, safe_text(_describe(exc)), "ValidationError"
        ) from None
    except Exception as exc:  # no record may escape as a traceback
        raise _unexpected(DeadLetterReason.MALFORMED, exc) from None


#: Longest ``detail`` of a dead letter, in characters.
DETAIL_MAX_CHARS = 2000


def safe_text(text: str, limit: int = DETAIL_MAX_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with anything UTF-8 cannot encode (lone
    surrogates) written as backslash escapes, so it always serialises."""
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def safe_event_id(value: object) -> str | None:
    """``value`` when it is a well-formed event id (1 to 200 printable ASCII), else None."""
    if isinstance(value, str) and 0 < len(value) <= 200 and _EVENT_ID.fullmatch(value):
        return value
    return None


def dead_letter_for(
    value: bytes,
    origin: Origin,
    *,
    reason: DeadLetterReason,
    detail: str,
    error_class: str,
    event_id: str | None,
    worker_id: str,
    max_original_bytes: int,
    original_url: str | None = None,
) -> DeadLetter:
    """A dead letter whose JSON cannot fail to serialise and whose size is bounded.

    Text from the record or an exception is escaped (:func:`safe_text`), an unreadable
    ``event_id`` is dropped, and the original is cut to ``max_original_bytes`` with its full
    size and SHA-256 recorded.
    """
    kept = value[:max_original_bytes]
    origin = origin.model_copy(update={"topic": safe_text(origin.topic, 300)})
    return DeadLetter(
        reason=reason,
        detail=safe_text(detail),
        error_class=safe_text(error_class, 200),
        event_id=safe_event_id(event_id),
        original=b64(kept),
        original_size=len(value),
        original_sha256=hashlib.sha256(value).hexdigest(),
        original_truncated=len(kept) < len(value),
        original_url=original_url,
        origin=origin,
        worker_id=safe_text(worker_id, 200),
        failed_at=utcnow(),
    )


def b64(data: bytes) -> str:
    """Base64 text of ``data`` (the encoding used for original bytes and keys)."""
    return base64.b64encode(data).decode("ascii")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


_REASON_BY_ERROR_TYPE = {
    "oversize_prompt": DeadLetterReason.OVERSIZE_PROMPT,
    "unsupported_parameter": DeadLetterReason.UNSUPPORTED_PARAMETER,
}

_UTF8_BOM = b"\xef\xbb\xbf"
#: Longest integer literal that is converted: 19 digits hold every field's range and any
#: 64-bit integer. Longer ones stand in as :data:`_HUGE_INT`, out of every range, so a record
#: never builds a giant int (nor meets Python's limit on the digits of one).
_MAX_INT_DIGITS = 19
_HUGE_INT = 2**64
#: A JSON string; one cut short (or ending in a lone backslash) runs to the end, so the
#: pattern never backtracks.
_JSON_STRING = r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)'
_JSON_STRING_TEXT = re.compile(_JSON_STRING, re.DOTALL)
_JSON_STRING_BYTES = re.compile(_JSON_STRING.encode(), re.DOTALL)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_SURROGATE = re.compile("[\ud800-\udfff]")
#: 19 digits in a row: maybe an integer beyond 64 bits or one too long to convert (see
#: _MAX_INT_DIGITS), or a float beyond range; digits inside strings match too.
_LONG_DIGITS = re.compile(f"[0-9]{{{_MAX_INT_DIGITS}}}")
#: Other text that may hide a value :func:`_first_problem` refuses: a surrogate escape, an
#: exponent of three digits (besides NaN and Infinity, found with ``in``). Each is searched on
#: its own: one pattern of alternatives scans several times slower.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_BIG_EXPONENT = re.compile(r"[eE][-+]?[0-9]{3}")
_JSON_TYPE_NAMES = {list: "an array", str: "a string", int: "a number", float: "a number"}
#: How a pydantic error type reads in a dead letter's detail (others keep pydantic's words).
_TYPE_MESSAGES = {
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "dict_type": "must be an object",
    "missing": "is required",
    "extra_forbidden": "unknown field (free-form data belongs in attributes)",
}
_PATTERN_MESSAGES = {
    "event_id": "must be printable ASCII without spaces",
    "prompt": "must not be blank",
    "tenant": "must be 1 to 64 letters, digits, '.', '_' or '-'",
}


class _DuplicateKeys(dict[str, Any]):
    """A JSON object that named a key twice (kept until the check that reports it)."""

    duplicate: str


def decode_prompt(raw: bytes, limits: EventLimits | None = None) -> PromptEvent:
    """Parse and validate one record value, whatever its bytes, in time linear in their size.

    Raises :class:`InvalidEventError` and nothing else; its ``reason`` is a
    :class:`DeadLetterReason` value: ``malformed`` (not UTF-8, not JSON, not an object, nested
    deeper than :data:`MAX_DEPTH`), ``oversize_prompt``, ``unsupported_parameter`` (valid by
    contract but beyond this worker's limits) or ``schema_violation``. Its ``detail`` is safe to
    serialise. An event it returns always serialises to UTF-8 JSON.
    """
    try:
        data, suspect = _parse(raw)
    except InvalidEventError:
        raise
    except Exception as exc:  # belt and braces: no input may escape as a traceback
        raise _unexpected(DeadLetterReason.MALFORMED, exc) from None
    try:
        return _validate(data, limits, check_values=suspect)
    except InvalidEventError:
        raise
    except Exception as exc:  # belt and braces, as above
        raise _unexpected(DeadLetterReason.SCHEMA_VIOLATION, exc) from None


def _parse(raw: bytes) -> tuple[dict[str, Any], bool]:
    """The record's JSON object, and whether it may hold what :func:`_first_problem` finds."""
    bom = len(_UTF8_BOM) if raw.startswith(_UTF8_BOM) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = exc.start + bom
        what = (
            f"truncated sequence at position {at}"
            if exc.end >= len(exc.object) and exc.reason == "unexpected end of data"
            else f"invalid byte 0x{raw[at]:02x} at position {at}"
        )
        raise InvalidEventError(
            DeadLetterReason.MALFORMED, f"not UTF-8: {what}", "UnicodeDecodeError"
        ) from None
    if _too_deep(text):
        raise InvalidEventError(
            DeadLetterReason.MALFORMED, f"nesting deeper than {MAX_DEPTH} levels", "NestingTooDeep"
        )
    duplicates: list[_DuplicateKeys] = []

    def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        duplicates.append(marked := _duplicate_keys(pairs))
        return marked

    long_digits = _LONG_DIGITS.search(text) is not None
    try:
        data = json.loads(
            text, object_pairs_hook=json_object, parse_int=_json_int if long_digits else None
        )
    except json.JSONDecodeError as exc:
        raise InvalidEventError(
            DeadLetterReason.MALFORMED,
            safe_text(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"),
            "JSONDecodeError",
        ) from None
    if not isinstance(data, dict):
        got = "true or false" if isinstance(data, bool) else "null"
        got = _JSON_TYPE_NAMES.get(type(data), got)
        raise InvalidEventError(
            DeadLetterReason.MALFORMED, f"expected a JSON object, got {got}", "TypeError"
        )
    return data, bool(duplicates) or long_digits or _may_hide_refused_values(text)


def _may_hide_refused_values(text: str) -> bool:
    # Records without any of these (the usual case) skip the walk over every value.
    return (
        "NaN" in text
        or "Infinity" in text
        or _SURROGATE_ESCAPE.search(text) is not None
        or _BIG_EXPONENT.search(text) is not None
    )


def _too_deep(text: str) -> bool:
    # Few brackets cannot nest deep: most records skip the scan.
    if text.count("{") + text.count("[") <= MAX_DEPTH:
        return False
    # Brackets outside strings, in order (the text came from UTF-8, so it encodes back).
    brackets = _JSON_STRING_TEXT.sub("", text).encode().translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets))) > MAX_DEPTH


def _duplicate_keys(pairs: list[tuple[str, Any]]) -> _DuplicateKeys:
    seen: set[str] = set()
    marked = _DuplicateKeys(pairs)
    for key, _ in pairs:
        if key in seen:
            marked.duplicate = key
            break
        seen.add(key)
    return marked


def _json_int(literal: str) -> int:
    if len(literal) - literal.startswith("-") > _MAX_INT_DIGITS:
        return -_HUGE_INT if literal.startswith("-") else _HUGE_INT
    return int(literal)


def _validate(
    data: dict[str, Any], limits: EventLimits | None, *, check_values: bool
) -> PromptEvent:
    problem = _first_problem(data, (), in_attributes=False) if check_values else None
    if problem is not None:
        path, message = problem
        raise InvalidEventError(
            DeadLetterReason.SCHEMA_VIOLATION,
            safe_text(f"{_dotted(path)}: {message}"),
            "ValidationError",
        )
    try:
        return PromptEvent.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise InvalidEventError(
            _reason_for(exc), safe_text(_describe(exc)), type(exc).__name__
        ) from None


def _first_problem(
    value: Any, path: tuple[str | int, ...], *, in_attributes: bool
) -> tuple[tuple[str | int, ...], str] | None:
    """What the JSON parser let through that no event may carry: a key named twice, text UTF-8
    cannot encode, NaN or infinity, an integer of ``attributes`` beyond 64 bits."""
    if isinstance(value, str):
        return None if _encodable(value) else (path, "text is not valid Unicode (lone surrogate)")
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, "must be a finite number")
    if isinstance(value, int) and not isinstance(value, bool):
        if in_attributes and not ATTRIBUTE_INT_MIN <= value <= ATTRIBUTE_INT_MAX:
            return path, f"must be an integer between {ATTRIBUTE_INT_MIN} and {ATTRIBUTE_INT_MAX}"
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_problem(item, (*path, index), in_attributes=in_attributes)
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        if isinstance(value, _DuplicateKeys):
            return (*path, value.duplicate), "duplicate key"
        for key, item in value.items():
            if not _encodable(key):
                return (*path, key), "text is not valid Unicode (lone surrogate)"
            inside = in_attributes or (not path and key == "attributes")
            found = _first_problem(item, (*path, key), in_attributes=inside)
            if found is not None:
                return found
    return None


def _encodable(text: str) -> bool:
    return text.isascii() or _SURROGATE.search(text) is None


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path) or "event"


def _unexpected(reason: DeadLetterReason, exc: Exception) -> InvalidEventError:
    name = safe_text(type(exc).__name__, 200)
    try:
        message = str(exc)
    except Exception:  # an exception that cannot even describe itself
        message = "(no message)"
    return InvalidEventError(reason, safe_text(f"{name}: {message}"), name)


def _reason_for(exc: ValidationError) -> DeadLetterReason:
    for error in exc.errors():
        reason = _REASON_BY_ERROR_TYPE.get(error["type"])
        if reason is not None:
            return reason
        if error["type"] == "string_too_long" and error["loc"][:1] in (
            ("prompt",),
            ("negative_prompt",),
        ):
            return DeadLetterReason.OVERSIZE_PROMPT
    return DeadLetterReason.SCHEMA_VIOLATION


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"]
        field = str(loc[0]) if len(loc) == 1 else ""
        kind = error["type"]
        message = _TYPE_MESSAGES.get(kind, error["msg"])
        if kind in {"greater_than_equal", "less_than_equal"} and field in _RANGES:
            message = _RANGES[field]
        elif kind == "string_pattern_mismatch" and field in _PATTERN_MESSAGES:
            message = _PATTERN_MESSAGES[field]
        elif kind == "multiple_of":
            message = f"must be a multiple of {error.get('ctx', {}).get('multiple_of')}"
        elif kind == "literal_error":
            message = f"must be {error.get('ctx', {}).get('expected')}"
        parts.append(f"{_dotted(loc)}: {message}")
    return "; ".join(parts)


def _range_messages() -> dict[str, str]:
    """'must be an integer between 32 and 2048' for each bounded number field."""
    out = {}
    for name, info in PromptEvent.model_fields.items():
        low = next((m.ge for m in info.metadata if isinstance(m, annotated_types.Ge)), None)
        high = next((m.le for m in info.metadata if isinstance(m, annotated_types.Le)), None)
        if low is None or high is None:
            continue
        kind = "a number" if info.annotation is float else "an integer"
        out[name] = f"must be {kind} between {_number(low)} and {_number(high)}"
    return out


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_RANGES = _range_messages()

#: How much of a record :func:`event_id_of` reads.
EVENT_ID_SCAN_BYTES = 64 * 1024
#: An ``"event_id": "..."`` pair; the value is a JSON string of at most 200 characters
#: (1200 bytes when every one is a \u escape).
_EVENT_ID_FIELD = re.compile(rb'"event_id"\s*:\s*("(?:[^"\\\x00-\x1f]|\\[^\x00-\x1f]){1,1200}")')


def event_id_of(raw: bytes) -> str | None:
    """Best-effort ``event_id`` of a record that failed validation (for its dead letter).

    Reads only the first :data:`EVENT_ID_SCAN_BYTES`, so it also finds the id in a record that
    is not valid JSON or was cut short; returns only a well-formed id of the outermost object.
    Never raises.
    """
    try:
        head = raw[:EVENT_ID_SCAN_BYTES]
        depth, scanned = 0, 0
        for match in _EVENT_ID_FIELD.finditer(head):
            depth += _bracket_balance(head[scanned : match.start()])
            scanned = match.start()
            found = _event_id_value(match.group(1)) if depth == 1 else None
            if found is not None:
                return found
        return None
    except Exception:  # best effort: a dead letter is written with or without the id
        return None


def _event_id_value(literal: bytes) -> str | None:
    try:
        return safe_event_id(json.loads(literal.decode("ascii")))
    except ValueError:  # not ASCII, or an escape JSON does not know: no well-formed id
        return None


def _bracket_balance(data: bytes) -> int:
    outside = _JSON_STRING_BYTES.sub(b"", data)
    return outside.count(b"[") + outside.count(b"{") - outside.count(b"]") - outside.count(b"}")


SCHEMA_MODELS: dict[str, tuple[type[BaseModel], Literal["validation", "serialization"]]] = {
    "prompt-event": (PromptEvent, "validation"),
    "video-result": (VideoResult, "serialization"),
    "dead-letter": (DeadLetter, "serialization"),
    "status-event": (StatusEvent, "serialization"),
    "control-event": (ControlEvent, "validation"),
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each event model, keyed by file name (``<name>.v1.schema.json``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (model, mode) in SCHEMA_MODELS.items():
        schema = model.model_json_schema(mode=mode)
        file_name = f"{name}.v{SCHEMA_VERSION}.schema.json"
        out[file_name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://streamproc.dev/schemas/{file_name}",
            **schema,
        }
    return out
