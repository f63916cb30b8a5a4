"""The event contract: what comes in, what goes out, what is set aside.

Three pydantic models cross the process boundary and nothing else does:

* :class:`PromptEvent` — one request for a video, read from the prompts topic or a JSONL line;
* :class:`VideoResult` — the answer, published to the results topic;
* :class:`DeadLetter` — an input that could not be answered, with its original bytes.

Their JSON Schemas live in ``schemas/`` (written by ``streamproc schemas``); a test keeps them
identical to these models. Limits fixed by the contract (sizes multiple of 32, frames of the form
4k+1, …) are schema constraints; limits an operator configures (largest size, longest prompt, …)
arrive as :class:`EventLimits` in the validation context and are checked by :func:`decode_prompt`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
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

#: Namespace for result ids, so a re-processed event gets the same result id.
_RESULT_NAMESPACE = uuid.UUID("5c0f6a0e-3a53-4d4c-8c38-2f6f1f0e9b11")

EventId = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
_EVENT_ID = re.compile(r"[\x21-\x7e]+")


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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class PromptEvent(_Frozen):
    """A request for one video. Unknown fields are refused: free-form data goes in ``attributes``."""

    schema_version: Literal[1] = Field(1, description="Version of this contract.")
    event_id: EventId = Field(description="Unique id chosen by the producer; results carry it.")
    prompt: str = Field(min_length=1, max_length=PROMPT_MAX_CHARS, description="What to show.")
    negative_prompt: str | None = Field(
        None, max_length=PROMPT_MAX_CHARS, description="What to avoid (classifier-free guidance)."
    )
    width: int = Field(832, ge=SIDE_MIN, le=SIDE_MAX, multiple_of=SIDE_MULTIPLE)
    height: int = Field(480, ge=SIDE_MIN, le=SIDE_MAX, multiple_of=SIDE_MULTIPLE)
    num_frames: int = Field(17, ge=1, le=FRAMES_MAX, description="Frames, of the form 4k+1.")
    num_inference_steps: int = Field(16, ge=1, le=STEPS_MAX)
    guidance_scale: float = Field(
        5.0, ge=0.0, le=GUIDANCE_MAX, description="Classifier-free guidance; <=1 turns it off."
    )
    seed: int | None = Field(
        None, ge=0, le=SEED_MAX, description="Noise seed; derived from event_id when absent."
    )
    priority: int = Field(0, ge=0, le=9, description="Higher runs first within a batch window.")
    tenant: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    model: str | None = Field(
        None, max_length=300, description="Model id; must equal the worker's model when set."
    )
    created_at: AwareDatetime | None = Field(None, description="When the producer made it.")
    deadline: AwareDatetime | None = Field(
        None, description="Finish by this time or be dead-lettered as deadline_exceeded."
    )
    attributes: dict[str, JsonValue] = Field(
        default_factory=dict,
        max_length=64,
        description="Free-form data passed through to the result. Key 'cache' may be "
        "'reuse', 'refresh' or 'bypass'; key 'quality' names a request class ('standard', "
        "or one of the worker's generation.step_cache_classes, e.g. 'draft').",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_has_text(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise PydanticCustomError("empty_prompt", "prompt is blank")
        limits = _limits(info)
        if limits is not None and len(value) > limits.max_prompt_chars:
            raise PydanticCustomError(
                "oversize_prompt",
                "prompt has {length} characters, the limit is {limit}",
                {"length": len(value), "limit": limits.max_prompt_chars},
            )
        return value

    @field_validator("num_frames")
    @classmethod
    def _frames_4k_plus_1(cls, value: int) -> int:
        if (value - 1) % 4 != 0:
            raise PydanticCustomError(
                "frames_form", "num_frames must be of the form 4k+1, got {value}", {"value": value}
            )
        return value

    @field_validator("attributes")
    @classmethod
    def _known_attributes(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        mode = value.get("cache")
        if mode is not None and mode not in {m.value for m in CacheMode}:
            raise PydanticCustomError(
                "cache_mode", "attribute 'cache' must be reuse, refresh or bypass"
            )
        quality = value.get("quality")
        if quality is not None and (not isinstance(quality, str) or not quality.strip()):
            raise PydanticCustomError(
                "quality_class", "attribute 'quality' must be a non-empty request class name"
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
        if self.model is not None and limits.model_id is not None and self.model != limits.model_id:
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
    status: Literal["ok", "failed"]
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
    error: str | None = Field(None, description="Why it failed, when status is failed.")
    replayed: bool = Field(
        False, description="Made by `streamproc replay` (a backfill), not by live traffic."
    )
    replay_id: str | None = Field(None, description="Which replay made it, when replayed.")

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


def decode_prompt(raw: bytes, limits: EventLimits | None = None) -> PromptEvent:
    """Parse and validate one record value.

    Raises :class:`InvalidEventError` whose ``reason`` is a :class:`DeadLetterReason` value:
    ``malformed`` (not UTF-8 JSON object), ``oversize_prompt``, ``unsupported_parameter``
    (valid by contract but beyond this worker's limits) or ``schema_violation``.
    """
    try:
        data: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidEventError(
            DeadLetterReason.MALFORMED, f"not UTF-8 JSON: {exc}", type(exc).__name__
        ) from None
    if not isinstance(data, dict):
        raise InvalidEventError(
            DeadLetterReason.MALFORMED,
            f"expected a JSON object, got {type(data).__name__}",
            "TypeError",
        )
    try:
        return PromptEvent.model_validate(data, context={"limits": limits})
    except ValidationError as exc:
        raise InvalidEventError(_reason_for(exc), _describe(exc), type(exc).__name__) from None


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
        where = ".".join(str(p) for p in error["loc"]) or "event"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def event_id_of(raw: bytes) -> str | None:
    """Best-effort ``event_id`` of bytes that failed validation (for the dead letter)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(data, dict):
        value = data.get("event_id")
        if isinstance(value, str) and 0 < len(value) <= 200:
            return value
    return None


SCHEMA_MODELS: dict[str, tuple[type[BaseModel], Literal["validation", "serialization"]]] = {
    "prompt-event": (PromptEvent, "validation"),
    "video-result": (VideoResult, "serialization"),
    "dead-letter": (DeadLetter, "serialization"),
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
