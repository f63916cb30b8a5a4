"""The ledger pins alone, over the real SQLite ledger: first claim wins, replays keep their own
keys, an unreadable entry is replaced, no ledger holds nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamproc.bus.local import JsonlSink
from streamproc.ledger.base import LedgerEntry
from streamproc.ledger.sqlite import SqliteLedger
from streamproc.retry import RetryPolicy
from streamproc.stages.ledger import Pins
from tests.helpers import sample_result
from tests.unit.stages.conftest import flight_of

RETRIES = RetryPolicy(0.001, 0.01)


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[SqliteLedger]:
    async with SqliteLedger(tmp_path / "ledger.sqlite3", ttl_s=3600) as opened:
        yield opened


def sink(tmp_path: Path) -> JsonlSink:
    return JsonlSink(str(tmp_path / "results.jsonl"), str(tmp_path / "dead.jsonl"))


async def test_the_first_claim_wins_and_is_what_a_redelivery_finds(
    ledger: SqliteLedger, tmp_path: Path
) -> None:
    pins = Pins(ledger, sink(tmp_path), retries=RETRIES)
    first, second = flight_of(b"a", 0), flight_of(b"a", 1)
    first.key = second.key = pins.key("event:e1")
    body = sample_result("e1").model_dump_json()
    held = await pins.claim(first, "result", body)
    assert held is not None and held.body == body and first.claimed == body
    other = await pins.claim(second, "result", sample_result("e2").model_dump_json())
    assert other is not None and other.body == body and second.claimed is None
    earlier = await pins.earlier(flight_of(b"a", 2), "event:e1")
    assert earlier is not None and earlier.body == body


async def test_a_replay_pins_under_its_own_keys(ledger: SqliteLedger, tmp_path: Path) -> None:
    live = Pins(ledger, sink(tmp_path), retries=RETRIES)
    replay = Pins(ledger, sink(tmp_path), retries=RETRIES, replay_id="r1")
    assert replay.key("event:e1") == "replay:r1:event:e1" and live.key("event:e1") == "event:e1"
    flight = flight_of(b"a")
    flight.key = replay.key("event:e1")
    await replay.claim(flight, "result", sample_result("e1").model_dump_json())
    assert await live.earlier(flight_of(b"a"), "event:e1") is None


async def test_an_unreadable_entry_is_replaced_by_the_new_answer(
    ledger: SqliteLedger, tmp_path: Path
) -> None:
    pins = Pins(ledger, sink(tmp_path), retries=RETRIES)
    await ledger.claim(LedgerEntry("event:e1", "", "result", "{not json", "elsewhere", time.time()))
    flight = flight_of(b"a")
    assert await pins.earlier(flight, "event:e1") is None and flight.replace
    flight.key = "event:e1"
    body = sample_result("e1").model_dump_json()
    held = await pins.claim(flight, "result", body)
    assert held is not None and held.body == body


async def test_without_a_ledger_nothing_is_held_or_claimed(tmp_path: Path) -> None:
    pins = Pins(None, sink(tmp_path), retries=RETRIES, skip_answered=True)
    flight = flight_of(b"a")
    assert await pins.earlier(flight, "event:e1") is None
    assert await pins.claim(flight, "result", "{}") is None
    assert not await pins.answered_in_output(flight)
