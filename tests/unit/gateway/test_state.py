"""A video's view: the ledger outranks status events, which outrank the gateway's record."""

from __future__ import annotations

from datetime import UTC, datetime

from streamproc.events import DeadLetterReason, StatusEvent, StatusState
from streamproc.gateway.state import VideoLinks, view_of
from streamproc.gateway.videos import VideoRecord
from streamproc.ledger.base import LedgerEntry
from tests.helpers import sample_dead_letter, sample_result

RECORD = VideoRecord("acme:v", "h", "accepted", "2026-12-01T00:00:00+00:00")
LINKS = VideoLinks(self="s", events="e", content="c")


def status(state: StatusState, **fields: object) -> StatusEvent:
    return StatusEvent(
        event_id="acme:v", state=state, at=datetime.now(UTC), worker_id="w", **fields
    )  # type: ignore[arg-type]


def entry(kind: str, body: str) -> LedgerEntry:
    return LedgerEntry("event:acme:v", "h", kind, body, "r", 0.0)  # type: ignore[arg-type]


def test_without_news_a_submitted_video_is_queued() -> None:
    view = view_of("v", RECORD, None, None, LINKS)
    assert view.status == "queued" and view.progress == 0 and view.event_id == "acme:v"


def test_status_events_give_queue_position_and_progress() -> None:
    queued = view_of("v", RECORD, None, status(StatusState.QUEUED, queue_position=2), LINKS)
    assert queued.status == "queued" and queued.queue_position == 2
    busy = view_of("v", RECORD, None, status(StatusState.GENERATING, step=3, total_steps=4), LINKS)
    assert busy.status == "generating" and busy.progress == 75
    failed = view_of(
        "v",
        RECORD,
        None,
        status(
            StatusState.DEAD_LETTERED,
            dead_letter_reason=DeadLetterReason.QUOTA_EXCEEDED,
            detail="over 10/min",
        ),
        LINKS,
    )
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "quota_exceeded"


def test_the_ledger_outranks_status_events() -> None:
    result = sample_result("acme:v")
    done = view_of(
        "v",
        RECORD,
        entry("result", result.model_dump_json()),
        status(StatusState.GENERATING, step=1, total_steps=4),
        LINKS,
    )
    assert done.status == "done" and done.video_url == result.video_url
    assert done.progress == 100 and done.cache == "miss"
    dead = view_of(
        "v", RECORD, entry("dead_letter", sample_dead_letter().model_dump_json()), None, LINKS
    )
    assert dead.status == "failed" and dead.error is not None and dead.error.code == "malformed"
    cancelled = result.model_copy(
        update={"status": "cancelled", "video_url": None, "error": "by the client"}
    )
    view = view_of("v", RECORD, entry("result", cancelled.model_dump_json()), None, LINKS)
    assert view.status == "cancelled" and view.error is not None
    assert view.error.message == "by the client"
