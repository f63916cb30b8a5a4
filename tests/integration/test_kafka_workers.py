"""Worker processes (`streamproc run --transport kafka`) against the real Tansu broker:
a crash loses nothing, and partitions move between the members of one group."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from tests.helpers import SMALL, Patience, event
from tests.integration.conftest import PROMPT_PARTITIONS
from tests.integration.workers import Worker, wait_while_running, worker_progress
from tests.kafka_broker import Topics, answers, committed, committed_to_end, produce

# Each test starts worker processes that load the model: their waits end on a lack of
# progress, not on the clock, so the per-test ceiling is far above their need.
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

# A shape that keeps the tiny pipeline busy for about a second per batch of four.
SLOW_SHAPE = {"width": 64, "height": 64, "num_frames": 9, "num_inference_steps": 4}


async def results_by_event(bootstrap: str, topics: Topics) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for answer in await answers(bootstrap, topics.results):
        out.setdefault(answer["event_id"], []).append(answer)
    return out


def send(
    ids: list[str], start: int = 0, shape: dict[str, int] = SMALL
) -> list[tuple[int | None, bytes, bytes, list[Any]]]:
    """Records of events with distinct prompts, spread over the partitions by index."""
    return [
        (
            i % PROMPT_PARTITIONS,
            event_id.encode(),
            json.dumps({**event(event_id, f"scene {event_id}"), **shape}).encode(),
            [],
        )
        for i, event_id in enumerate(ids, start)
    ]


def stored(url: str) -> bool:
    """Whether the video behind a file:// URL exists."""
    return Path(url2pathname(urlparse(url).path)).is_file()


async def test_worker_killed_mid_batch_then_restarted_loses_nothing_and_redoes_work_identically(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    ids = [f"kill-{i:02d}" for i in range(30)]
    origins = dict(
        zip(
            ids,
            await produce(kafka_bootstrap, topics.prompts, send(ids, shape=SLOW_SHAPE)),
            strict=True,
        )
    )
    # Commits every second: at any moment the last second's answers are not committed yet.
    first = Worker("w1", kafka_bootstrap, topics, tmp_path, STREAMPROC_COMMIT_INTERVAL_MS="1000")
    try:

        async def answering() -> bool:
            return bool(await results_by_event(kafka_bootstrap, topics))

        # However long the model takes to load on a busy machine: as long as it progresses.
        await wait_while_running(answering, 90, first)
        redo: set[str] = set()
        at_kill: dict[int, int] = {}
        patience = Patience(90)
        while not redo:
            assert first.proc.poll() is None, first.tail()
            stalled = patience.expired(await worker_progress(first)())
            assert stalled is None, f"{stalled}\n{first.tail()}"
            # Freeze the worker, so what is published and what is committed hold still.
            first.proc.send_signal(signal.SIGSTOP)
            at_kill = await committed(kafka_bootstrap, topics.group, topics.prompts, 3)
            answered = await results_by_event(kafka_bootstrap, topics)
            # Only a kill in the middle of the work proves anything; each look is taken while
            # the worker stands still, so it can fail only when the worker finishes unseen.
            assert len(answered) < len(ids), "the worker finished before it could be caught"
            uncommitted = {e for e in answered if origins[e][1] >= at_kill[origins[e][0]]}
            if uncommitted and max(at_kill.values()) > 0:
                first.proc.kill()  # SIGKILL while frozen in the middle of its work
                first.proc.wait(timeout=30)
                redo = uncommitted
            else:
                first.proc.send_signal(signal.SIGCONT)
                await asyncio.sleep(0.3)
        before = await results_by_event(kafka_bootstrap, topics)

        second = Worker("w2", kafka_bootstrap, topics, tmp_path)
        try:

            async def all_done() -> bool:
                answered = await results_by_event(kafka_bootstrap, topics)
                return len(answered) == len(ids) and await committed_to_end(kafka_bootstrap, topics)

            await wait_while_running(all_done, 150, second)
            assert second.stop() == 0, second.tail()
        finally:
            second.kill()
    finally:
        first.kill()

    after = await results_by_event(kafka_bootstrap, topics)
    assert sorted(after) == ids  # nothing lost
    for event_id, given in after.items():
        assert {a["status"] for a in given} == {"ok"}
        for field in ("event_id", "result_id", "object_key", "video_url"):
            assert len({a[field] for a in given}) == 1, (event_id, field, given)
        assert stored(given[0]["video_url"])
    # Processed by the second worker: made there, or re-published from the result ledger (a
    # redelivered copy keeps the first worker's answer, worker_id included).
    redone = {
        e
        for e, given in after.items()
        if any(a["worker_id"] == "w2" or a["redelivery"] for a in given)
    }
    assert redo <= redone  # published but uncommitted at the kill: processed again
    assert all(len(after[e]) == 2 for e in redo if e in before)
    for event_id in redone:  # the restart resumed from the committed offsets
        partition, offset = origins[event_id]
        assert offset >= at_kill[partition], (event_id, at_kill)


async def test_two_workers_split_the_partitions_and_a_stopped_ones_move_to_the_other(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    first = Worker("w1", kafka_bootstrap, topics, tmp_path)
    second = Worker("w2", kafka_bootstrap, topics, tmp_path)
    try:

        async def split() -> bool:
            a, b = first.assignment(), second.assignment()
            return bool(a) and bool(b) and sorted(a + b) == list(range(PROMPT_PARTITIONS))

        await wait_while_running(split, 120, first, second)
        ids = [f"two-{i:02d}" for i in range(24)]
        await produce(kafka_bootstrap, topics.prompts, send(ids))

        async def both_worked() -> bool:
            workers = {
                a["worker_id"]
                for given in (await results_by_event(kafka_bootstrap, topics)).values()
                for a in given
            }
            return workers == {"w1", "w2"}

        await wait_while_running(both_worked, 90, first, second)
        held_by_first = first.assignment()
        assert first.stop() == 0, first.tail()  # drains, commits, leaves the group

        async def taken_over() -> bool:
            return second.assignment() == list(range(PROMPT_PARTITIONS))

        await wait_while_running(taken_over, 60, second)
        more = [f"two-{i:02d}" for i in range(24, 36)]
        await produce(kafka_bootstrap, topics.prompts, send(more, 24))

        async def all_done() -> bool:
            answered = await results_by_event(kafka_bootstrap, topics)
            return len(answered) == len(ids) + len(more) and await committed_to_end(
                kafka_bootstrap, topics
            )

        await wait_while_running(all_done, 120, second)
        assert second.stop() == 0, second.tail()
    finally:
        first.kill()
        second.kill()

    after = await results_by_event(kafka_bootstrap, topics)
    assert sorted(after) == ids + more
    for i, event_id in enumerate(more, 24):
        if i % PROMPT_PARTITIONS in held_by_first:  # the first worker's partitions moved on
            assert {a["worker_id"] for a in after[event_id]} == {"w2"}
    stopped = [e for e in first.logs() if e["event"] == "worker_stopped"]
    assert stopped and stopped[0]["abandoned"] == 0
