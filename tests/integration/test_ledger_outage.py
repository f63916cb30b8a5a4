"""The shared ledger's Redis stops while a worker runs (``ledger.backend = redis``): no answer
goes out without being pinned; records wait and finish once Redis is back."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.helpers import RedisServer
from tests.integration.answers import (
    SLOW_COMMITS,
    Stream,
    ledger_answers,
    repeated_events,
    unpinned,
)
from tests.integration.workers import Worker, wait_while_running
from tests.kafka_broker import Topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(1200)]

LEDGER_PREFIX = "outage-ledger"


@pytest.fixture
def ledger_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test alone that keeps what it acknowledged across a restart."""
    server = RedisServer(tmp_path / "redis", durable=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def ledger_attempts(worker: Worker) -> int:
    """The most attempts the worker made at one ledger call so far."""
    return max(
        (
            e["attempt"]
            for e in worker.logs()
            if e["event"] == "retrying" and e.get("operation") == "ledger"
        ),
        default=0,
    )


async def test_answers_wait_for_the_ledger_and_finish_once_it_is_back(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, ledger_redis: RedisServer
) -> None:
    """The ledger's Redis is stopped while a worker is halfway through a wave and started
    again (with its data) a few retries later: the worker retries the ledger with backoff
    instead of answering without it, nothing is dead-lettered, the wave finishes after Redis
    returns, and every event's published answer is the one the ledger holds. A kill after
    that redelivers answers as identical copies."""
    stream = Stream(
        kafka_bootstrap,
        topics,
        tmp_path,
        STREAMPROC_LEDGER__BACKEND="redis",
        STREAMPROC_LEDGER__REDIS_URL=ledger_redis.url,
        STREAMPROC_LEDGER__KEY_PREFIX=LEDGER_PREFIX,
        **SLOW_COMMITS,
    )
    events = repeated_events("lo", waves=(36, 24), fresh=(5, 5))
    first, second = events[:36], events[36:]
    try:
        worker = stream.start("w1")
        await stream.send(first)
        await stream.freeze_mid(worker, first)
        ledger_redis.stop()
        down_at = datetime.now(UTC)
        worker.proc.send_signal(signal.SIGCONT)

        async def waiting() -> bool:  # backoff 0.2, 0.4, … 3.2 s (halved at worst): seconds
            return ledger_attempts(worker) >= 6

        await wait_while_running(waiting, 90, worker)
        up_at = datetime.now(UTC)
        ledger_redis.start()

        async def wave_done() -> bool:
            return await stream.answered() >= {e["event_id"] for e in first}

        await wait_while_running(wave_done, 120, worker)
        await stream.send(second)
        await stream.freeze_mid(worker, second, uncommitted=True)
        worker.kill()

        worker = stream.start("w2")
        await wait_while_running(stream.finished, 150, worker)
        assert worker.stop() == 0, worker.tail()
    finally:
        stream.kill_all()

    by_event = await stream.check_same_answers()
    held = ledger_answers(ledger_redis.url, LEDGER_PREFIX)
    assert unpinned(by_event, held) == []
    # What went out while the ledger was down had been pinned before it went down.
    sent_while_down = [e for e, copies in by_event.items() if down_at < copies[0].sent_at < up_at]
    assert [e for e in sent_while_down if held[e]["recorded_at"] >= down_at] == []
    assert any(len(copies) > 1 for copies in by_event.values()), "nothing was redelivered"
    [w1, _] = stream.workers
    assert not any(e["event"] in {"worker_faulted", "event_crashed"} for e in w1.logs())
