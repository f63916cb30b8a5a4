"""The result ledger's contract, against both backends: the real Redis and a SQLite file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamproc.errors import ServiceRefused, TransientError
from streamproc.ledger.base import LedgerEntry, ResultLedger, event_key, record_key
from streamproc.ledger.redis import RedisLedger
from streamproc.ledger.sqlite import SqliteLedger
from tests.helpers import free_port, slow_redis


def entry(key: str, body: str = '{"a": 1}', *, payload_hash: str = "h1") -> LedgerEntry:
    return LedgerEntry(
        key=key,
        payload_hash=payload_hash,
        kind="result",
        body=body,
        sink="file:/out/results.jsonl",
        recorded_at=time.time(),
    )


@pytest.fixture(params=["redis", "sqlite"])
async def ledger(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[ResultLedger]:
    made: ResultLedger
    if request.param == "redis":
        made = RedisLedger(redis_url, prefix=redis_prefix, ttl_s=60)
    else:
        made = SqliteLedger(tmp_path / "ledger" / "answers.sqlite3", ttl_s=60)
    await made.start()
    yield made
    await made.stop()


async def test_an_unknown_key_has_no_entry(ledger: ResultLedger) -> None:
    assert await ledger.get(event_key("never-seen")) is None


async def test_the_first_claim_wins_and_later_ones_get_it_back(ledger: ResultLedger) -> None:
    first = await ledger.claim(entry("event:e1", '{"first": true}'))
    assert first.body == '{"first": true}'
    second = await ledger.claim(entry("event:e1", '{"second": true}'))
    assert second.body == '{"first": true}'
    held = await ledger.get("event:e1")
    assert held is not None and held.body == '{"first": true}' and held.payload_hash == "h1"


async def test_concurrent_claims_agree_on_one_answer(ledger: ResultLedger) -> None:
    claims = [ledger.claim(entry("event:race", f'{{"n": {i}}}')) for i in range(8)]
    held = await asyncio.gather(*claims)
    assert len({h.body for h in held}) == 1


async def test_replace_overwrites_and_clears_the_published_mark(ledger: ResultLedger) -> None:
    await ledger.claim(entry("event:e2", '{"old": 1}'))
    await ledger.mark_published("event:e2")
    replaced = await ledger.claim(entry("event:e2", '{"new": 1}'), replace=True)
    assert replaced.body == '{"new": 1}'
    held = await ledger.get("event:e2")
    assert held is not None and held.body == '{"new": 1}' and not held.published


async def test_an_entry_is_marked_published_once_the_sink_acked(ledger: ResultLedger) -> None:
    await ledger.claim(entry("event:e3"))
    held = await ledger.get("event:e3")
    assert held is not None and not held.published
    await ledger.mark_published("event:e3")
    held = await ledger.get("event:e3")
    assert held is not None and held.published


async def test_entries_keep_kind_sink_and_hash(ledger: ResultLedger) -> None:
    now = float(int(time.time()))
    letter = LedgerEntry(
        key="record:t:0:5:abc",
        payload_hash="",
        kind="dead_letter",
        body='{"reason": "malformed"}',
        sink="kafka:results",
        recorded_at=now,
    )
    await ledger.claim(letter)
    held = await ledger.get("record:t:0:5:abc")
    assert held is not None
    assert (held.kind, held.sink, held.payload_hash, held.recorded_at) == (
        "dead_letter",
        "kafka:results",
        "",
        now,
    )


async def test_sqlite_entries_expire_after_the_ttl(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.sqlite3", ttl_s=60)
    async with ledger:
        old = LedgerEntry("event:old", "h", "result", "{}", "s", recorded_at=time.time() - 120)
        await ledger.claim(old)
        assert await ledger.get("event:old") is None  # expired: not served
    async with SqliteLedger(tmp_path / "l.sqlite3", ttl_s=60) as reopened:
        fresh = await reopened.claim(entry("event:old", '{"fresh": 1}'))
        assert fresh.body == '{"fresh": 1}'  # the start swept the expired one


async def test_sqlite_answers_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    async with SqliteLedger(path, ttl_s=60) as ledger:
        await ledger.claim(entry("event:kept", '{"kept": 1}'))
    async with SqliteLedger(path, ttl_s=60) as ledger:
        held = await ledger.get("event:kept")
        assert held is not None and held.body == '{"kept": 1}'


async def test_two_sqlite_connections_to_one_file_agree(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    async with SqliteLedger(path, ttl_s=60) as a, SqliteLedger(path, ttl_s=60) as b:
        await a.claim(entry("event:x", '{"from": "a"}'))
        held = await b.claim(entry("event:x", '{"from": "b"}'))
        assert held.body == '{"from": "a"}'


async def test_redis_entries_expire_with_their_ttl(redis_url: str, redis_prefix: str) -> None:
    async with RedisLedger(redis_url, prefix=redis_prefix, ttl_s=0.3) as ledger:
        await ledger.claim(entry("event:brief"))
        assert await ledger.get("event:brief") is not None
        await asyncio.sleep(0.6)
        assert await ledger.get("event:brief") is None


async def test_an_unreachable_redis_is_transient() -> None:
    ledger = RedisLedger(f"redis://127.0.0.1:{free_port()}/0", prefix="p", ttl_s=60)
    with pytest.raises(TransientError, match=r"redis://127\.0\.0\.1:\d+/0"):
        await ledger.start()
    await ledger.stop()


async def test_a_busy_redis_that_answers_slower_than_a_command_still_starts_the_ledger(
    redis_prefix: str,
) -> None:
    async with slow_redis(delay_s=0.3) as url:
        hasty = RedisLedger(url, prefix=redis_prefix, ttl_s=60, timeout_s=0.1, start_timeout_s=0.1)
        with pytest.raises(TransientError, match="the result ledger at"):
            await hasty.start()  # a start check within a command's budget fails here
        await hasty.stop()
        ledger = RedisLedger(url, prefix=redis_prefix, ttl_s=60, timeout_s=0.1, start_timeout_s=3)
        await ledger.start()
        with pytest.raises(TransientError, match="the result ledger at"):
            await ledger.get("event:never")  # commands keep their own, short budget
        await ledger.stop()


async def test_a_sqlite_path_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ServiceRefused, match="cannot open the result ledger"):
        await SqliteLedger(blocker / "ledger.sqlite3", ttl_s=60).start()


def test_record_keys_name_origin_and_content() -> None:
    from streamproc.bus.base import Partition, Record

    a = Record(b"abc", Partition("t", 1), 7)
    assert record_key(a) == record_key(Record(b"abc", Partition("t", 1), 7))
    assert record_key(a) != record_key(Record(b"abd", Partition("t", 1), 7))
    assert record_key(a) != record_key(Record(b"abc", Partition("t", 1), 8))
    assert event_key("e1") == "event:e1"
