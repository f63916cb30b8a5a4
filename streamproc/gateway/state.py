"""What a client sees of a video: one :class:`VideoView` from the ledger, status events and
the gateway's own record.

Precedence, most certain first:

1. the result ledger (durable, shared with the workers): ``done`` with the video URL,
   ``cancelled``, or ``failed`` with the dead letter's reason;
2. the latest status event: ``queued`` (with queue position and estimated start),
   ``generating`` (with progress), or a final state the ledger does not show yet;
3. the gateway's record of the submission: ``queued`` (the broker has the record, no worker
   has said more yet).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from streamproc.events import StatusEvent, StatusState
from streamproc.gateway.videos import VideoRecord
from streamproc.ledger.base import LedgerEntry

State = Literal["queued", "generating", "done", "failed", "cancelled"]
FINAL: frozenset[str] = frozenset({"done", "failed", "cancelled"})


class VideoError(BaseModel):
    """Why a video was not made."""

    code: str = Field(
        description="The dead letter's reason (e.g. unsupported_parameter), or 'cancelled'."
    )
    message: str = Field(description="A readable explanation.")


class VideoLinks(BaseModel):
    """Where to go next."""

    self: str
    events: str = Field(description="Server-sent events of this video's states.")
    content: str = Field(description="The MP4 (a redirect to the store), once done.")


class VideoView(BaseModel):
    """A video request as a client sees it."""

    id: str = Field(description="The video id (the Idempotency-Key, or one the gateway chose).")
    object: Literal["video"] = "video"
    event_id: str = Field(description="The prompt event's id on the prompts topic.")
    status: State
    progress: int = Field(ge=0, le=100, description="Percent of denoising steps done.")
    created_at: str | None = Field(None, description="When it was submitted (RFC 3339).")
    queue_position: int | None = None
    estimated_start_at: datetime | None = None
    video_url: str | None = None
    result_id: str | None = None
    cache: str | None = Field(None, description="hit-exact, hit-semantic or miss, once done.")
    error: VideoError | None = None
    links: VideoLinks


def view_of(
    video_id: str,
    record: VideoRecord,
    entry: LedgerEntry | None,
    status: StatusEvent | None,
    links: VideoLinks,
) -> VideoView:
    """The client's view of one video (see the module doc for the precedence)."""
    base: dict[str, Any] = {
        "id": video_id,
        "event_id": record.event_id,
        "created_at": record.submitted_at,
        "links": links,
    }
    if entry is not None:
        return VideoView(**base, **_from_ledger(entry))
    if status is not None:
        return VideoView(**base, **_from_status(status))
    return VideoView(**base, status="queued", progress=0)


def _from_ledger(entry: LedgerEntry) -> dict[str, Any]:
    body = json.loads(entry.body)
    if entry.kind == "dead_letter":
        return {
            "status": "failed",
            "progress": 0,
            "error": VideoError(code=str(body.get("reason")), message=str(body.get("detail"))),
        }
    outcome = body.get("status")
    common = {"result_id": body.get("result_id"), "cache": body.get("cache")}
    if outcome == "ok":
        return {**common, "status": "done", "progress": 100, "video_url": body.get("video_url")}
    if outcome == "cancelled":
        message = body.get("error") or "cancelled"
        return {
            **common,
            "status": "cancelled",
            "progress": 0,
            "error": VideoError(code="cancelled", message=str(message)),
        }
    return {
        **common,
        "status": "failed",
        "progress": 0,
        "error": VideoError(code="generation_failed", message=str(body.get("error"))),
    }


def _from_status(status: StatusEvent) -> dict[str, Any]:
    state = status.state
    if state in (StatusState.ACCEPTED, StatusState.QUEUED):
        return {
            "status": "queued",
            "progress": 0,
            "queue_position": status.queue_position,
            "estimated_start_at": status.estimated_start_at,
        }
    if state == StatusState.GENERATING:
        total = status.total_steps or 1
        done = min(status.step or 0, total)
        return {"status": "generating", "progress": int(100 * done / total)}
    if state == StatusState.STORED:
        return {"status": "generating", "progress": 100}
    if state == StatusState.ANSWERED:
        return {
            "status": "done",
            "progress": 100,
            "video_url": status.video_url,
            "result_id": status.result_id,
        }
    if state == StatusState.CANCELLED:
        return {
            "status": "cancelled",
            "progress": 0,
            "error": VideoError(code="cancelled", message=status.detail or "cancelled"),
        }
    reason = status.dead_letter_reason
    return {
        "status": "failed",
        "progress": 0,
        "error": VideoError(code=str(reason) if reason else "failed", message=status.detail or ""),
    }
