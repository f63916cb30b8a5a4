"""The publish stage alone, over the real JSONL sink and SQLite ledger: answers are pinned
before they go out, what the ledger holds is what is published, and sends are retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamproc.bus.local import JsonlSink
from streamproc.errors import InvalidEventError, RecordRejected, TransportError
from streamproc.events import DeadLetter, DeadLetterReason, VideoResult, utcnow
from streamproc.generation.encode import EncoderPool
from streamproc.ledger.base import event_key
from streamproc.ledger.sqlite import SqliteLedger
from streamproc.metrics import Metrics
from streamproc.outcome import Outcome
from streamproc.retry import RetryPolicy
from streamproc.settings import Settings
from streamproc.stages.base import Admitted, Generated, Stored
from streamproc.stages.ledger import Pins
from streamproc.stages.publish import Publish
from streamproc.stages.store import Keep
from streamproc.storage.local import LocalObjectStore
from tests.helpers import read_jsonl
from tests.unit.stages.conftest import Request, flight_of


class TroubledSink(JsonlSink):
    """The real JSONL sink; fails the first ``outages`` publishes, and refuses dead letters
    that still carry an original when ``refuse_originals``."""

    def __init__(self, results: str, dead: str, *, outages: int = 0) -> None:
        super().__init__(results, dead)
        self.outages = outages
        self.refuse_originals = False

    async def publish(self, result: VideoResult, key: bytes | None, **kw: Any) -> None:
        if self.outages:
            self.outages -= 1
            raise TransportError("broker away")
        await super().publish(result, key, **kw)

    async def dead_letter(self, letter: DeadLetter, key: bytes | None, **kw: Any) -> None:
        if self.refuse_originals and letter.original:
            raise RecordRejected("message too large", component="sink")
        await super().dead_letter(letter, key, **kw)


class Rig:
    def __init__(self, settings: Settings, tmp: Path, outages: int) -> None:
        self.results, self.dead = tmp / "results.jsonl", tmp / "dead.jsonl"
        self.sink = TroubledSink(str(self.results), str(self.dead), outages=outages)
        self.ledger = SqliteLedger(tmp / "ledger.sqlite3", ttl_s=3600)
        self.metrics = Metrics()
        retries = RetryPolicy(0.001, 0.01, metrics=self.metrics)
        keep = Keep(
            LocalObjectStore(tmp / "store"),
            EncoderPool(settings.encoding),
            model_id="tiny-wan",
            retries=retries,
            clock=lambda name, s: None,
        )
        self.pins = Pins(self.ledger, self.sink, retries=retries)
        self.publish = Publish(
            settings,
            self.sink,
            keep,
            pins=self.pins,
            model_id="tiny-wan",
            retries=retries,
            metrics=self.metrics,
            clock=lambda name, s: None,
        )

    def flight(self, request: Admitted, offset: int = 0) -> Any:
        flight = flight_of(json.dumps({"event_id": request.event.event_id}).encode(), offset)
        flight.key = event_key(request.event.event_id)
        flight.payload_hash = request.event.payload_hash()
        return flight


@pytest.fixture
async def rig_of(settings: Settings, tmp_path: Path) -> AsyncIterator[Any]:
    rigs: list[Rig] = []

    async def make(outages: int = 0) -> Rig:
        rig = Rig(settings, tmp_path, outages)
        await rig.sink.start()
        await rig.ledger.start()
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        await rig.sink.stop()
        await rig.ledger.stop()


def stored_for(request: Admitted) -> Stored:
    made = Generated(np.zeros((1, 2, 2, 3), np.uint8), 2, utcnow(), utcnow(), "b7")
    return Stored("videos/k.mp4", "file:///k.mp4", made, utcnow())


def lines(path: Path) -> Sequence[dict[str, Any]]:
    return read_jsonl(path)


async def test_a_generated_answer_is_pinned_then_published(rig_of: Any, admitted: Request) -> None:
    rig = await rig_of(outages=2)
    request = admitted("e1")
    flight = rig.flight(request)
    assert await rig.publish.generated(flight, request, stored_for(request)) is Outcome.GENERATED
    [result] = lines(rig.results)
    assert result["event_id"] == "e1" and result["batch_size"] == 2
    assert result["object_key"] == "videos/k.mp4" and result["timings"]["batched_at"]
    held = await rig.ledger.get(event_key("e1"))
    assert held is not None and json.loads(held.body) == result and held.published
    assert rig.publish.published[(flight.record.partition, 0)] is Outcome.GENERATED
    assert rig.metrics.retries.labels("publish")._value.get() == 2


async def test_a_redelivered_event_is_answered_from_the_ledger_marked_as_a_copy(
    rig_of: Any, admitted: Request
) -> None:
    rig = await rig_of()
    request = admitted("e1")
    await rig.publish.generated(rig.flight(request), request, stored_for(request))
    again = rig.flight(request, offset=5)
    held = await rig.pins.earlier(again, event_key("e1"))
    assert held is not None
    outcome = await rig.publish.answer_again(
        again, held, event_key("e1"), request.event.payload_hash()
    )
    first, copy = lines(rig.results)
    assert outcome is Outcome.GENERATED and copy["redelivery"] is True
    assert {**copy, "redelivery": first["redelivery"]} == first


async def test_the_same_event_id_for_another_request_is_a_conflict(
    rig_of: Any, admitted: Request
) -> None:
    rig = await rig_of()
    request = admitted("e1", "a fox")
    await rig.publish.generated(rig.flight(request), request, stored_for(request))
    other = admitted("e1", "a cat")
    held = await rig.pins.earlier(rig.flight(other, 1), event_key("e1"))
    assert held is not None
    with pytest.raises(InvalidEventError) as caught:
        await rig.publish.answer_again(
            rig.flight(other, 1), held, event_key("e1"), other.event.payload_hash()
        )
    assert caught.value.reason == DeadLetterReason.EVENT_ID_CONFLICT


async def test_a_dead_letter_after_a_pinned_result_publishes_the_result(
    rig_of: Any, admitted: Request
) -> None:
    rig = await rig_of()
    request = admitted("e1")
    await rig.publish.generated(rig.flight(request), request, stored_for(request))
    twin = rig.flight(request, offset=1)  # a duplicate record whose generation failed
    await rig.publish.dead_letter(twin, DeadLetterReason.GENERATION_FAILED, "nan", "X", "e1")
    assert lines(rig.dead) == []
    assert [r["event_id"] for r in lines(rig.results)] == ["e1", "e1"]


async def test_a_dead_letter_the_sink_refuses_goes_out_without_its_original(
    rig_of: Any,
) -> None:
    rig = await rig_of()
    rig.sink.refuse_originals = True
    flight = flight_of(b"{broken" * 100, offset=3)
    outcome = await rig.publish.dead_letter(
        flight, DeadLetterReason.MALFORMED, "bad json", "JSONDecodeError", None
    )
    [letter] = lines(rig.dead)
    assert outcome is Outcome.DEAD_LETTERED
    assert letter["original"] == "" and letter["original_truncated"] is True
    assert letter["original_size"] == 700 and letter["origin"]["offset"] == 3
