"""The redelivery tests' common ground (delivery invariant 5): a stream of repeated prompts,
:class:`Stream` (a scenario's events and worker processes), and what is read back: every copy
of each event's result on the results topic (with its redelivery header and when it was
sent), the ledger's entries, and from the workers' JSON logs which events were generated,
when, and whose publish was retried."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from streamproc.bus.kafka import REDELIVERY_HEADER
from tests.helpers import Patience, event
from tests.integration.conftest import PROMPT_PARTITIONS
from tests.integration.workers import Worker, worker_progress
from tests.kafka_broker import (
    Topics,
    answers,
    committed,
    committed_to_end,
    headers_of,
    produce,
    read_all,
)

Event = dict[str, Any]

# About half a second per batch of four on the tiny pipeline (an idle CPU): a wave's work
# takes long enough to be caught in the middle.
SLOW_SHAPE = {"width": 128, "height": 128, "num_frames": 17, "num_inference_steps": 6}
# Commits every second: a kill right after an answer leaves it uncommitted (redelivered).
SLOW_COMMITS = {"STREAMPROC_COMMIT_INTERVAL_MS": "1000"}

#: Each prompt with the explicit seed of each of its events (None: the event gives none).
SCRIPT: dict[str, list[int | None]] = {
    "a lighthouse in fog at dawn": [11, 22, 11, None, 22, None],
    "a red fox crossing a snowy field": [None, None, None, 7],
    "a paper boat drifting down a gutter": [3, 3, 3],
    "a hummingbird hovering at a feeder": [None, 4, None, 6, None],
    "a tram passing through a night market": [None, 9, None, 10, 9],
    "an astronaut planting a flag on a dune": [None, 50, 51],
    "waves breaking over a stone pier": [None, 60, None, 61],
    "a cat asleep on a sunny windowsill": [42, None, None, 43, 42, None],
    "a hot air balloon over a canyon": [None, 12, None, 13, 12],
    "a chef flipping pancakes in a diner": [None, 8, 8],
    "fireworks above a frozen lake": [None, None, 30, None, 31, None],
    "a robot watering tomato plants": [1, 2, 1, None],
    "a snail climbing a glass wall": [None, None, None, None, None, 5],
}

#: What a redelivered copy must repeat exactly (the issue's list; the tests compare every
#: field but ``redelivery`` and name these in their failures).
PINNED = ("result_id", "video_url", "object_key", "cache", "matched_event_id", "parameters")


def repeated_events(
    tag: str, waves: Sequence[int] = (12,) * 5, fresh: Sequence[int] = (5, 5, 5, 5, 0)
) -> list[Event]:
    """One event per entry of :data:`SCRIPT` (60), ids ``<tag>-NN``, shuffled so each prompt's
    repeats spread over the stream, in waves of the sizes given where each needs at least
    its ``fresh`` count of videos no earlier event needed: such a wave's answers take more
    than one batch's time, so it can be caught halfway even where the cache answers the rest."""
    assert sum(waves) == sum(len(seeds) for seeds in SCRIPT.values()) and len(fresh) == len(waves)
    made = [
        event("", prompt, **SLOW_SHAPE, **({} if seed is None else {"seed": seed}))
        for prompt, seeds in SCRIPT.items()
        for seed in seeds
    ]
    ends = list(itertools.accumulate(waves))
    for attempt in itertools.count():
        events = list(made)
        random.Random(f"{tag}:{attempt}").shuffle(events)
        new = new_videos(events)
        got = [sum(new[a:b]) for a, b in zip([0, *ends], ends, strict=False)]
        if all(n >= want for n, want in zip(got, fresh, strict=True)):
            return [{**e, "event_id": f"{tag}-{n:02d}"} for n, e in enumerate(events)]
    raise AssertionError("unreachable")


def new_videos(events: Sequence[Event]) -> list[bool]:
    """Whether each event needs a video no earlier one needed: with a cache, an explicit seed
    is served only by a video of that seed, an event without one by any video of its prompt."""
    videos: dict[str, set[int | None]] = {}
    out = []
    for e in events:
        made = videos.setdefault(e["prompt"], set())
        seed = e.get("seed")
        new = not made if seed is None else seed not in made
        if new:
            made.add(seed)
        out.append(new)
    return out


def redis_flags(redis_url: str, prefix: str) -> tuple[list[str], dict[str, str]]:
    """`run` flags and environment of a worker whose cache and ledger live in Redis under
    ``prefix`` (``<prefix>:cache``, ``<prefix>:ledger``)."""
    return ["--cache-backend", "redis", "--redis-url", redis_url], {
        "STREAMPROC_CACHE__KEY_PREFIX": f"{prefix}:cache",
        "STREAMPROC_LEDGER__KEY_PREFIX": f"{prefix}:ledger",
    }


def ledger_answers(redis_url: str, ledger_prefix: str) -> dict[str, dict[str, Any]]:
    """The entries a Redis ledger holds per event id: ``body`` (the answer first claimed,
    parsed) and ``recorded_at`` (when it was claimed)."""
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        held = {}
        for key in client.scan_iter(match=f"{ledger_prefix}:answer:event:*"):
            raw = client.get(key)
            if raw is not None:
                entry = json.loads(raw)
                held[key.decode().rsplit(":", 1)[1]] = {
                    "body": json.loads(entry["body"]),
                    "recorded_at": datetime.fromtimestamp(entry["recorded_at"], UTC),
                }
        return held
    finally:
        client.close()


def sqlite_ledger_answers(path: Path) -> dict[str, dict[str, Any]]:
    """:func:`ledger_answers` of a SQLite ledger file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT key, body, recorded_at FROM answers WHERE key LIKE 'event:%'"
        ).fetchall()
    return {
        key.split(":", 1)[1]: {
            "body": json.loads(body),
            "recorded_at": datetime.fromtimestamp(recorded_at, UTC),
        }
        for key, body, recorded_at in rows
    }


def unpinned(
    by_event: Mapping[str, Sequence[Copy]], held: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Events whose published answer is not the one the ledger holds (every field but
    ``redelivery``: a worker killed between its claim and its publish leaves the answer to
    whoever meets the event next, so even the first copy out may be marked a redelivery)."""
    out = []
    for event_id, copies in by_event.items():
        first = {k: v for k, v in copies[0].body.items() if k != "redelivery"}
        entry = held.get(event_id)
        pinned = {k: v for k, v in entry["body"].items() if k != "redelivery"} if entry else None
        if first != pinned:
            out.append(event_id)
    return sorted(out + [e for e in held if e not in by_event])


@dataclass(frozen=True)
class Copy:
    """One result record of an event."""

    body: dict[str, Any]
    #: Whether the record carries the ``streamproc-redelivery: 1`` header.
    redelivery_header: bool
    #: The record's timestamp: when the worker handed it to its producer.
    sent_at: datetime
    partition: int
    offset: int


async def copies_by_event(bootstrap: str, topic: str) -> dict[str, list[Copy]]:
    """Every result on ``topic`` per event id, in the order they were published (an event's
    copies share its key, hence one partition)."""
    out: dict[str, list[Copy]] = {}
    for record in await read_all(bootstrap, topic):
        body = json.loads(record.value)
        copy = Copy(
            body=body,
            redelivery_header=headers_of(record).get(REDELIVERY_HEADER) == b"1",
            sent_at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
            partition=record.partition,
            offset=record.offset,
        )
        out.setdefault(body["event_id"], []).append(copy)
    for copies in out.values():
        partitions = {c.partition for c in copies}
        assert len(partitions) == 1, f"copies of one event on partitions {partitions}"
        copies.sort(key=lambda c: c.offset)
    return out


def copy_mismatches(
    by_event: Mapping[str, Sequence[Copy]], publish_retried: Iterable[str] = ()
) -> list[str]:
    """Why copies of an event are not the same answer: a later copy differing from the first
    in any field but ``redelivery`` (the pinned fields named), a later copy not marked
    ``redelivery`` (allowed only for an exact duplicate of an event whose publish the worker
    retried: the producer may have delivered both attempts), or a redelivery header that
    disagrees with the body. Empty when all is well."""
    retried = set(publish_retried)
    problems: list[str] = []
    for event_id, copies in by_event.items():
        first = copies[0].body
        for n, copy in enumerate(copies):
            if copy.redelivery_header != copy.body["redelivery"]:
                problems.append(f"{event_id} copy {n}: header and body disagree on redelivery")
            if n == 0:
                continue
            changed = sorted(
                k
                for k in first.keys() | copy.body.keys()
                if k != "redelivery" and first.get(k) != copy.body.get(k)
            )
            if changed:
                pinned = [k for k in changed if k in PINNED]
                problems.append(f"{event_id} copy {n} differs in {changed} (pinned: {pinned})")
            if not copy.body["redelivery"] and not (event_id in retried and copy.body == first):
                problems.append(f"{event_id} copy {n} is not marked redelivery")
    return problems


def log_entries(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of a worker's output (other lines skipped)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def logged_at(entry: Mapping[str, Any]) -> datetime:
    """When a log line was written (structlog's ISO timestamp, UTC)."""
    return datetime.fromisoformat(entry["timestamp"])


@dataclass(frozen=True)
class Generation:
    """One event generated by one worker process."""

    event_id: str
    worker: str
    #: When the batch that generated it started (logged ``batch_started``).
    started: datetime


def generations(worker: str, entries: Sequence[Mapping[str, Any]]) -> list[Generation]:
    """Every event one worker process generated (``event_generated``, logged once its answer
    is out), with the start of its batch; batch ids are numbered per process, so pass one
    process's log at a time. Needs debug logs (``batch_started``)."""
    started: dict[str, datetime] = {}
    for entry in entries:
        if entry["event"] == "batch_started":
            started.setdefault(entry["batch_id"], logged_at(entry))
    out = []
    for entry in entries:
        if entry["event"] == "event_generated":
            batch = entry["batch_id"]
            assert batch in started, f"{worker}: no batch_started for {batch} (debug logs?)"
            out.append(Generation(entry["event_id"], worker, started[batch]))
    return out


def generated_after_answer(
    made: Iterable[Generation], by_event: Mapping[str, Sequence[Copy]]
) -> list[str]:
    """Generations whose batch began when the event's first result was already sent."""
    late = []
    for generation in made:
        copies = by_event.get(generation.event_id)
        if not copies:
            continue
        answered = min(c.sent_at for c in copies)
        if generation.started > answered:
            late.append(
                f"{generation.event_id} generated by {generation.worker} at "
                f"{generation.started.isoformat()}, answered at {answered.isoformat()}"
            )
    return late


def publish_retries(entries: Iterable[Mapping[str, Any]]) -> set[str]:
    """Events whose result publish a worker retried (``retrying`` with ``publish``)."""
    return {
        e["event_id"]
        for e in entries
        if e["event"] == "retrying" and e.get("operation") == "publish" and "event_id" in e
    }


def counted(entries: Iterable[Mapping[str, Any]], event: str) -> Counter[str]:
    """How often each event id appears in log lines named ``event``."""
    return Counter(e["event_id"] for e in entries if e["event"] == event and "event_id" in e)


@contextlib.asynccontextmanager
async def throttled(
    worker: Worker, *, frozen_s: float = 0.4, running_s: float = 0.1
) -> AsyncIterator[None]:
    """Slow ``worker`` down for the block: frozen (SIGSTOP) most of the time, running often
    enough to keep its place in its group, so the work it holds stays in flight however long
    the block takes on a busy machine."""

    async def cycle() -> None:
        while True:
            worker.proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(frozen_s)
            worker.proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(running_s)

    task = asyncio.create_task(cycle())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGCONT)


class Stream:
    """One scenario's prompts topic and workers: events sent so far (where each landed),
    worker processes started with shared flags, and looks at what is answered and committed."""

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        tmp_path: Path,
        *,
        args: Sequence[str] = (),
        **env: str,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self._tmp_path = tmp_path
        self._args = list(args)
        self._env = env
        self.workers: list[Worker] = []
        self.events: list[Event] = []
        self.origins: dict[str, tuple[int, int]] = {}

    def start(self, name: str) -> Worker:
        """A worker process of this scenario's group (its log is ``<name>.log``)."""
        worker = Worker(
            name, self.bootstrap, self.topics, self._tmp_path, args=self._args, **self._env
        )
        self.workers.append(worker)
        return worker

    def kill_all(self) -> None:
        """SIGKILL every worker still running (the end of a test, passed or failed)."""
        for worker in self.workers:
            worker.kill()

    async def send(self, events: Sequence[Event]) -> None:
        """Produce ``events`` in order, spread over the partitions, keyed by event id."""
        records: list[tuple[int | None, bytes | None, bytes, list[tuple[str, bytes]]]] = [
            ((len(self.events) + i) % PROMPT_PARTITIONS, e["event_id"].encode(), body, [])
            for i, e in enumerate(events)
            for body in [json.dumps(e).encode()]
        ]
        placed = await produce(self.bootstrap, self.topics.prompts, records)
        for e, origin in zip(events, placed, strict=True):
            self.origins[e["event_id"]] = origin
        self.events.extend(events)

    async def answered(self) -> set[str]:
        """Event ids with at least one result."""
        return {a["event_id"] for a in await answers(self.bootstrap, self.topics.results)}

    async def uncommitted(self, ids: Iterable[str]) -> set[str]:
        """Those of ``ids`` the group has not committed past."""
        done = await committed(
            self.bootstrap, self.topics.group, self.topics.prompts, PROMPT_PARTITIONS
        )
        return {e for e in ids if self.origins[e][1] >= done[self.origins[e][0]]}

    async def finished(self) -> bool:
        """Every event sent has a result and the group committed every partition to its end."""
        return await self.answered() >= set(self.origins) and await committed_to_end(
            self.bootstrap, self.topics, PROMPT_PARTITIONS
        )

    async def freeze_mid(
        self,
        worker: Worker,
        wave: Sequence[Event],
        *,
        uncommitted: bool = False,
        partitions: Sequence[int] | None = None,
    ) -> None:
        """Return with ``worker`` frozen (SIGSTOP) while some but not all of ``wave`` is
        answered, and with ``uncommitted`` while some answer (on ``partitions``, default
        all) is not committed yet, so a kill now redelivers answered events. Each look is
        taken with the worker frozen: this fails only when the worker finishes the wave
        unseen, or stops progressing."""
        ids = {e["event_id"] for e in wave}
        patience = Patience(90)
        while True:
            assert worker.proc.poll() is None, f"{worker.name} exited:\n{worker.tail()}"
            stalled = patience.expired(await worker_progress(worker)())
            assert stalled is None, f"{stalled}\n{worker.tail()}"
            worker.proc.send_signal(signal.SIGSTOP)
            answered = await self.answered()
            assert not ids <= answered, f"{worker.name} answered its wave before it was caught"
            if partitions is not None:
                answered = {e for e in answered if self.origins[e][0] in partitions}
            if answered & ids and (not uncommitted or await self.uncommitted(answered)):
                return
            worker.proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(0.1)  # the worker's running time between two looks

    async def check_same_answers(self) -> dict[str, list[Copy]]:
        """What every scenario asserts once its workers are gone: each event sent has a
        result and no dead letter; copies of an event's result are its first answer, marked
        ``redelivery``; no event was generated once its result was out; an explicit seed is
        answered with a video of that seed; one video is described by one set of parameters
        wherever it is served. Returns the copies."""
        by_event = await copies_by_event(self.bootstrap, self.topics.results)
        assert sorted(by_event) == sorted(self.origins)  # nothing lost
        assert await read_all(self.bootstrap, self.topics.dead_letters) == []
        logs = {w.name: w.logs() for w in self.workers}
        retried = set().union(*(publish_retries(entries) for entries in logs.values()))
        assert copy_mismatches(by_event, retried) == []
        made = [g for name, entries in logs.items() for g in generations(name, entries)]
        assert generated_after_answer(made, by_event) == []
        for e in self.events:
            if "seed" in e:
                assert by_event[e["event_id"]][0].body["parameters"]["seed"] == e["seed"], e
        described: dict[str, set[str]] = {}
        for copies in by_event.values():
            body = copies[0].body
            described.setdefault(body["object_key"], set()).add(json.dumps(body["parameters"]))
        assert {k: v for k, v in described.items() if len(v) > 1} == {}
        return by_event

    def redelivered_by(self, name: str) -> Counter[str]:
        """Events worker ``name`` answered again from the ledger (``event_redelivered``)."""
        [worker] = [w for w in self.workers if w.name == name]
        return counted(worker.logs(), "event_redelivered")
