"""Same event, same answer (delivery invariant 5) with worker processes against the real Tansu
broker: workers SIGKILLed and restarted, the broker frozen, partitions moved between two
workers sharing a Redis ledger. Every copy of an event's result repeats its first answer, and
no event whose result was out is generated again."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import event
from tests.integration.answers import (
    SCRIPT,
    SLOW_COMMITS,
    SLOW_SHAPE,
    Stream,
    ledger_answers,
    logged_at,
    redis_flags,
    repeated_events,
    sqlite_ledger_answers,
    throttled,
    unpinned,
)
from tests.integration.conftest import PROMPT_PARTITIONS
from tests.integration.workers import wait_while_running
from tests.kafka_broker import TansuBroker, Topics, create_topics

# Worker processes load the model several times per test; every wait ends on a lack of
# progress, so the ceiling is far above the need.
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(1800)]

BROKER_PAUSE_S = 20.0


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker of this test alone, to freeze without touching the session's."""
    broker = TansuBroker(tmp_path / "tansu.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def fresh_topics(bootstrap: str) -> Topics:
    topics = Topics.random()
    await create_topics(
        bootstrap, {topics.prompts: PROMPT_PARTITIONS, topics.results: 3, topics.dead_letters: 1}
    )
    return topics


@pytest.mark.parametrize("cache_backend", ["redis", "none"])
async def test_kills_and_a_broker_pause_never_change_an_answer(
    own_broker: TansuBroker, tmp_path: Path, redis_url: str, redis_prefix: str, cache_backend: str
) -> None:
    """Sixty events of thirteen prompts repeated three to six times (some with explicit seeds,
    one prompt with two) through one worker at a time, SIGKILLed in three waves while answers
    are out but not committed, with the broker frozen for 20 s under another: every event is
    answered, all copies of its result are its first answer (marked ``redelivery`` after the
    first), the group commits to the end, and no event is generated once its result was out.
    With the cache and ledger in Redis, and without a cache (the ledger in SQLite)."""
    topics = await fresh_topics(own_broker.bootstrap)
    if cache_backend == "redis":
        args, env = redis_flags(redis_url, redis_prefix)
    else:
        args, env = ["--cache-backend", "none"], {}
    stream = Stream(own_broker.bootstrap, topics, tmp_path, args=args, **env, **SLOW_COMMITS)
    events = repeated_events("kp")
    first, second, third, fourth, last = (events[i : i + 12] for i in range(0, 60, 12))
    try:
        worker = stream.start("w1")
        await stream.send(first)
        await stream.freeze_mid(worker, first, uncommitted=True)
        worker.kill()

        worker = stream.start("w2")
        await stream.send(second)
        await stream.freeze_mid(worker, second)
        own_broker.pause()
        worker.proc.send_signal(signal.SIGCONT)
        try:
            await asyncio.sleep(BROKER_PAUSE_S)  # the length of the outage, not a deadline
        finally:
            own_broker.resume()
        assert worker.proc.poll() is None, worker.tail()
        await stream.send(third)
        await stream.freeze_mid(worker, third, uncommitted=True)
        worker.kill()

        worker = stream.start("w3")
        await stream.send(fourth)
        await stream.freeze_mid(worker, fourth, uncommitted=True)
        worker.kill()

        worker = stream.start("w4")
        await stream.send(last)
        await wait_while_running(stream.finished, 150, worker)
        assert worker.stop() == 0, worker.tail()
    finally:
        stream.kill_all()

    by_event = await stream.check_same_answers()
    assert any(len(copies) > 1 for copies in by_event.values()), "nothing was redelivered"
    if cache_backend == "redis":  # what was published is what the ledger pinned
        held = ledger_answers(redis_url, f"{redis_prefix}:ledger")
    else:
        held = sqlite_ledger_answers(tmp_path / "store" / "ledger.sqlite3")
    assert unpinned(by_event, held) == []


async def test_two_workers_sharing_a_redis_ledger_answer_alike_across_rebalances(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """Two workers of one group with their cache and ledger in one Redis: a second worker
    joins while the first has events in flight (the partitions move), then the first is
    SIGKILLed with answers out but not committed, so the second answers them again. Every
    copy of an event's result, whichever worker published it, is the first answer, marked
    ``redelivery``; nothing is generated once its result was out."""
    args, env = redis_flags(redis_url, redis_prefix)
    stream = Stream(kafka_bootstrap, topics, tmp_path, args=args, **env, **SLOW_COMMITS)
    events = repeated_events("rb", waves=(30, 30), fresh=(0, 5))
    first, third = events[:30], events[30:]
    # Seeds no video has yet: every one is generated, so the first worker is busy with them
    # when the second joins.
    second = [
        event(f"rb-s{n:02d}", prompt, **SLOW_SHAPE, seed=1000 + n)
        for n, prompt in enumerate([*SCRIPT, *SCRIPT][:24])
    ]
    try:
        one = stream.start("w1")
        await stream.send(first)

        async def one_answering() -> bool:
            return bool(await stream.answered())

        await wait_while_running(one_answering, 90, one)
        await stream.send(second)
        # Slowed down while the second starts, the first still has the wave in flight
        # when the second joins and the partitions move.
        async with throttled(one):
            two = stream.start("w2")

            async def two_joining() -> bool:
                return any(e["event"] == "kafka_consumer_started" for e in two.logs())

            await wait_while_running(two_joining, 90, two)

        async def split() -> bool:
            a, b = one.assignment(), two.assignment()
            return bool(a) and bool(b) and sorted(a + b) == list(range(PROMPT_PARTITIONS))

        await wait_while_running(split, 120, one, two)
        await stream.send(third)
        await stream.freeze_mid(one, third, uncommitted=True, partitions=one.assignment())
        one.kill()
        await wait_while_running(stream.finished, 150, two)
        assert two.stop() == 0, two.tail()
    finally:
        stream.kill_all()

    by_event = await stream.check_same_answers()
    assert unpinned(by_event, ledger_answers(redis_url, f"{redis_prefix}:ledger")) == []
    # The partitions moved with events in flight: the first worker finished some inside the
    # rebalance (between giving its partitions up and getting its new ones), or abandoned them.
    logs = one.logs()
    revoked = min(logged_at(e) for e in logs if e["event"] == "kafka_partitions_revoked")
    assigned = min(
        logged_at(e)
        for e in logs
        if e["event"] == "kafka_partitions_assigned" and logged_at(e) > revoked
    )
    inside = {"event_generated", "event_answered_from_cache", "revoked_events_abandoned"}
    assert any(revoked < logged_at(e) < assigned for e in logs if e["event"] in inside)
    # Answers one worker made, the other published again.
    made_by = {e: copies[0].body["worker_id"] for e, copies in by_event.items()}
    crossed = {e for e in stream.redelivered_by("w2") if made_by[e] == "w1"}
    crossed |= {e for e in stream.redelivered_by("w1") if made_by[e] == "w2"}
    assert crossed
