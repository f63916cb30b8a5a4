"""A submission's body → the prompt event the workers will decode, or a precise refusal.

The body holds the event contract's fields except ``event_id`` and ``tenant``: the gateway
sets those (the id from the ``Idempotency-Key`` header, the tenant from the API key). The
record produced is the client's JSON with the two fields spliced in front, and it is checked
with the workers' own decoder (:func:`~streamproc.events.decode_prompt`) and limits before
anything is produced — so a record the gateway accepts is never dead-lettered by a worker for
a contract reason, and the bytes the worker reads are exactly the bytes checked here.

Invariant: :func:`parse_submission` either returns ``(event, record)`` with
``decode_prompt(record, limits) == event``, or raises :class:`RequestError`.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from streamproc.errors import InvalidEventError
from streamproc.events import DeadLetterReason, EventLimits, PromptEvent, decode_prompt

#: Fields the gateway sets; a body naming one is refused (422 reserved_field).
RESERVED_FIELDS = ("event_id", "tenant")
#: What an ``Idempotency-Key`` (and so a video id) may be.
VIDEO_ID_PATTERN = r"^[A-Za-z0-9._~-]{1,128}$"
_VIDEO_ID = re.compile(VIDEO_ID_PATTERN)
_UTF8_BOM = b"\xef\xbb\xbf"


class RequestError(Exception):
    """A request refused before anything reached Kafka: HTTP ``status``, machine ``code``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def video_id_from(idempotency_key: str | None) -> str:
    """The video id of a submission: its ``Idempotency-Key``, or a new random id."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    if not _VIDEO_ID.fullmatch(idempotency_key):
        raise RequestError(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -",
        )
    return idempotency_key


def event_id_for(tenant: str, video_id: str) -> str:
    """The ``event_id`` of a tenant's video: ``tenant:video_id``.

    A tenant name has no ``:``, so two tenants never share an event id, and one tenant's
    lookups can never reach another tenant's videos.
    """
    return f"{tenant}:{video_id}"


def parse_submission(
    body: bytes, *, tenant: str, video_id: str, limits: EventLimits, now: datetime | None = None
) -> tuple[PromptEvent, bytes]:
    """The event and the record bytes of a submission, or :class:`RequestError`."""
    text = _object_text(body)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        _refuse(body, limits)  # the workers' decoder names the precise problem
        raise RequestError(400, "malformed", "the body must be a JSON object")
    for name in RESERVED_FIELDS:
        if name in data:
            raise RequestError(
                422,
                "reserved_field",
                f"{name}: set by the gateway (the id from the Idempotency-Key header, the "
                "tenant from the API key); leave it out",
            )
    head: dict[str, str] = {"event_id": event_id_for(tenant, video_id), "tenant": tenant}
    if "created_at" not in data:
        head["created_at"] = (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    inner = text.strip()[1:]  # after the object's '{'
    prefix = json.dumps(head, separators=(",", ":"))[:-1]
    record = (prefix + inner if inner.lstrip().startswith("}") else prefix + "," + inner).encode()
    try:
        event = decode_prompt(record, limits)
    except InvalidEventError as exc:
        raise _contract_error(exc) from None
    return event, record


def _object_text(body: bytes) -> str:
    raw = body.removeprefix(_UTF8_BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            decode_prompt(body)
        except InvalidEventError as exc:
            raise _contract_error(exc) from None
        raise RequestError(400, "malformed", "the body is not UTF-8") from None


def _refuse(body: bytes, limits: EventLimits) -> None:
    try:
        decode_prompt(body, limits)
    except InvalidEventError as exc:
        raise _contract_error(exc) from None


def _contract_error(exc: InvalidEventError) -> RequestError:
    if exc.reason == DeadLetterReason.MALFORMED:
        return RequestError(400, "malformed", exc.detail)
    return RequestError(422, str(exc.reason), exc.detail)


def request_model() -> type[BaseModel]:
    """The body of ``POST /v1/videos`` for the OpenAPI document: the prompt event's fields
    without the ones the gateway sets."""
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in PromptEvent.model_fields.items()
        if name not in RESERVED_FIELDS
    }
    return create_model(
        "VideoRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__="A request for one video: the prompt event's fields but event_id and tenant.",
        **fields,
    )
