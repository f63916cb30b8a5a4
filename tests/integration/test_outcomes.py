"""Every record ends as exactly one outcome, whatever its bytes: a seeded corpus of adversarial
records through `streamproc run` (JSONL files and the real Tansu broker), poison records on one
partition, and a dead letter whose original is too large to keep whole."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from tests.corpus import Case, adversarial_corpus, outcomes_by_record
from tests.helpers import event, read_jsonl
from tests.integration.conftest import PROMPT_PARTITIONS
from tests.integration.workers import (
    Worker,
    run_to_end,
    streamproc_command,
    streamproc_env,
    summary_of,
    wait_while_running,
)
from tests.kafka_broker import Topics, answers, committed, produce, read_all

#: Lines longer than this are cut by the JSONL source (and dead-lettered); the 100k-deep
#: records stay below it, so they reach the decoder.
MAX_RECORD_BYTES = 256 * 1024
#: Dead letters keep this much of an original (the rest: size and SHA-256 only).
MAX_ORIGINAL_BYTES = 4096
CORPUS_SIZE = 1000


def corpus(*, line_safe: bool) -> list[Case]:
    cases = adversarial_corpus(CORPUS_SIZE, line_safe=line_safe, max_record_bytes=MAX_RECORD_BYTES)
    assert len(cases) >= CORPUS_SIZE
    return cases


def check_letters_quote_their_records(
    cases: list[Case],
    positions: dict[tuple[int, int], int],
    letters: list[dict[str, Any]],
    *,
    cut_at: int | None = None,
) -> None:
    """A dead letter carries the start of the very record its origin names (so matching by
    origin is right), and the size and SHA-256 of what it was given (``cut_at``: records
    longer than this were cut by the source before)."""
    for letter in letters:
        record = cases[positions[(letter["origin"]["partition"], letter["origin"]["offset"])]]
        kept = base64.b64decode(letter["original"])
        assert record.value.startswith(kept), (record.kind, letter["origin"])
        assert len(kept) <= MAX_ORIGINAL_BYTES
        if cut_at is None or len(record.value) <= cut_at:
            assert letter["original_size"] == len(record.value)
            assert letter["original_sha256"] == hashlib.sha256(record.value).hexdigest()
        assert letter["original_truncated"] == (letter["original_size"] > MAX_ORIGINAL_BYTES)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a ceiling only: the run fails sooner when it stops progressing
def test_every_record_of_an_adversarial_file_ends_as_exactly_one_outcome(tmp_path: Path) -> None:
    """A JSONL file of 1,000 adversarial records through `streamproc run`: each line gets
    exactly one result or dead letter (no line none, none two), nothing answers a line that
    is not there, the summary adds up with nothing abandoned, and the exit status is 0."""
    cases = corpus(line_safe=True)
    source = tmp_path / "corpus.jsonl"
    source.write_bytes(b"".join(case.value + b"\n" for case in cases))
    results, letters = tmp_path / "results.jsonl", tmp_path / "dead-letters.jsonl"
    proc = run_to_end(
        streamproc_command(
            "run",
            "-i",
            str(source),
            "--results",
            str(results),
            "--dead-letters",
            str(letters),
            "--store-dir",
            str(tmp_path / "store"),
            "--cache-backend",
            "none",
            "--max-batch-size",
            "8",
            "--log-format",
            "json",
            "--no-progress",
        ),
        cwd=tmp_path,
        env=streamproc_env(
            STREAMPROC_LOCAL__MAX_RECORD_BYTES=str(MAX_RECORD_BYTES),
            STREAMPROC_DEAD_LETTERS__MAX_ORIGINAL_BYTES=str(MAX_ORIGINAL_BYTES),
        ),
    )
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, err[-3000:]
    answered, dead = read_jsonl(results), read_jsonl(letters)
    positions = {(0, line): line for line in range(len(cases))}  # offset = line number
    matched = outcomes_by_record(cases, positions, answered, dead)
    assert matched.problems(len(cases)) == []
    check_letters_quote_their_records(cases, positions, dead, cut_at=MAX_RECORD_BYTES)
    assert {r["status"] for r in answered} <= {"ok"}
    summary = summary_of(err)
    assert summary.received == len(cases)
    assert (summary.results, summary.dead_letters) == (len(answered), len(dead))
    assert summary.abandoned == 0 and summary.adds_up


async def produce_fast(
    bootstrap: str, topic: str, records: list[tuple[int, bytes | None, bytes | None]]
) -> list[tuple[int, int]]:
    """Send ``(partition, key, value)`` records (in order per partition) without waiting for
    each acknowledgement; their (partition, offset)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        sent = [await producer.send(topic, v, key=k, partition=p) for p, k, v in records]
        metas = await asyncio.gather(*sent)
        return [(meta.partition, meta.offset) for meta in metas]
    finally:
        await producer.stop()


def kafka_worker(name: str, bootstrap: str, topics: Topics, tmp_path: Path, **env: str) -> Worker:
    """A worker process without a cache (no embedding model: it starts faster)."""
    return Worker(name, bootstrap, topics, tmp_path, STREAMPROC_CACHE__BACKEND="none", **env)


def ends_of(sent: list[tuple[int, int]]) -> dict[int, int]:
    """The end of every prompts partition after the records ``sent`` (their producer acks).

    Not the broker's ListOffsets: Tansu answers it with one past the *first* offset of a
    partition's last batch, short of the end when several records went in one batch."""
    ends = dict.fromkeys(range(PROMPT_PARTITIONS), 0)
    for partition, offset in sent:
        ends[partition] = max(ends[partition], offset + 1)
    return ends


def all_answered(bootstrap: str, topics: Topics, count: int, ends: dict[int, int]) -> Any:
    """A check: ``count`` answers published and the group's committed offsets at ``ends``."""

    async def check() -> bool:
        published = len(await read_all(bootstrap, topics.results)) + len(
            await read_all(bootstrap, topics.dead_letters)
        )
        done = await committed(bootstrap, topics.group, topics.prompts, PROMPT_PARTITIONS)
        # An empty partition needs no commit (-1: the group has none there).
        return published >= count and all(
            done[p] == end or (end == 0 and done[p] == -1) for p, end in ends.items()
        )

    return check


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_every_record_of_an_adversarial_topic_ends_as_exactly_one_outcome(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """1,000 adversarial records spread over three partitions (tombstones and empty values
    too) through a worker process: each gets exactly one result or dead letter, the group's
    committed offsets reach the end of every partition, and on SIGTERM the worker exits 0
    with a summary that adds up and abandons nothing."""
    cases = corpus(line_safe=False)
    values = [None if case.value == b"" and i % 2 else case.value for i, case in enumerate(cases)]
    sent = await produce_fast(
        kafka_bootstrap,
        topics.prompts,
        # A tombstone needs a key; every third record has none.
        [
            (i % PROMPT_PARTITIONS, None if i % 3 == 0 and v is not None else b"k%d" % i, v)
            for i, v in enumerate(values)
        ],
    )
    positions = {where: i for i, where in enumerate(sent)}
    worker = kafka_worker(
        "fuzz",
        kafka_bootstrap,
        topics,
        tmp_path,
        STREAMPROC_DEAD_LETTERS__MAX_ORIGINAL_BYTES=str(MAX_ORIGINAL_BYTES),
    )
    try:
        done = all_answered(kafka_bootstrap, topics, len(cases), ends_of(sent))
        await wait_while_running(done, 90, worker)
        assert worker.stop() == 0, worker.tail()
    finally:
        worker.kill()
    results = await answers(kafka_bootstrap, topics.results)
    letters = await answers(kafka_bootstrap, topics.dead_letters)
    matched = outcomes_by_record(cases, positions, results, letters)
    assert matched.problems(len(cases)) == []
    check_letters_quote_their_records(cases, positions, letters)
    assert {r["status"] for r in results} <= {"ok"}
    summary = summary_of(worker.text())
    assert summary.received == len(cases)
    assert (summary.results, summary.dead_letters) == (len(results), len(letters))
    assert summary.abandoned == 0 and summary.adds_up


def _good(event_id: str) -> bytes:
    return json.dumps(event(event_id, f"a lighthouse, take {event_id}")).encode()


#: Records that broke a worker before (a crash, a hang or a record left behind), each
#: otherwise a small valid event.
POISON = {
    "huge integer": (
        b'{"event_id": "poison-int", "prompt": "x", "width": 64, "height": 32, '
        b'"num_frames": 5, "num_inference_steps": 2, "seed": ' + b"7" * 5000 + b"}"
    ),
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "lone surrogate in attributes": json.dumps(
        {**event("poison-surrogate", "a harbour at dusk"), "attributes": {"k\ud800": "v\udfff"}}
    ).encode(),
    "lone surrogate in the event id": json.dumps(event("poison-\ud800", "a fox")).encode(),
}


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_poison_records_on_one_partition_are_dead_lettered_and_never_redelivered(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """Crash-inducing records between good ones on one partition end as dead letters, the
    good ones as results, and the group's offset reaches the end; a worker started afterwards
    in the same group receives none of them again (it answers only what comes after)."""
    records: list[bytes] = [_good("good-0")]
    for i, poison in enumerate(POISON.values(), 1):
        records += [poison, _good(f"good-{i}")]
    sent = await produce(kafka_bootstrap, topics.prompts, [(1, None, r, []) for r in records])
    poisoned = {
        offset for (_, offset), r in zip(sent, records, strict=True) if r in POISON.values()
    }
    ends = ends_of(sent)
    first = kafka_worker("first", kafka_bootstrap, topics, tmp_path)
    try:
        await wait_while_running(
            all_answered(kafka_bootstrap, topics, len(records), ends), 90, first
        )
        assert first.stop() == 0, first.tail()
    finally:
        first.kill()
    results = await answers(kafka_bootstrap, topics.results)
    letters = await answers(kafka_bootstrap, topics.dead_letters)
    assert sorted(r["event_id"] for r in results) == [f"good-{i}" for i in range(len(POISON) + 1)]
    assert {r["status"] for r in results} == {"ok"}
    assert sorted(d["origin"]["offset"] for d in letters) == sorted(poisoned)
    assert {d["origin"]["partition"] for d in letters} == {1}
    assert summary_of(first.text()).adds_up

    # Restarted: the poison is behind the committed offset; only the next record is new.
    after = await produce(kafka_bootstrap, topics.prompts, [(1, None, _good("after"), [])])
    second = kafka_worker("second", kafka_bootstrap, topics, tmp_path)
    try:
        total = len(records) + 1
        await wait_while_running(
            all_answered(kafka_bootstrap, topics, total, ends_of(sent + after)), 90, second
        )
        assert second.stop() == 0, second.tail()
    finally:
        second.kill()
    assert await answers(kafka_bootstrap, topics.dead_letters) == letters
    again = await answers(kafka_bootstrap, topics.results)
    assert sorted(r["event_id"] for r in again) == sorted(
        [r["event_id"] for r in results] + ["after"]
    )
    summary = summary_of(second.text())
    assert (summary.received, summary.results, summary.dead_letters) == (1, 1, 0)


@pytest.mark.kafka
@pytest.mark.slow
async def test_a_dead_letter_too_large_to_keep_whole_is_published_truncated(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    """A malformed record larger than ``dead_letters.max_original_bytes`` is dead-lettered
    with the first that many bytes, flagged truncated, with the whole record's size and
    SHA-256, and its offset is committed."""
    keep = 2048
    noise = random.Random(7)
    value = b"not json: " + bytes(noise.randrange(33, 127) for _ in range(10_000))
    sent = await produce(kafka_bootstrap, topics.prompts, [(2, b"big", value, [])])
    worker = kafka_worker(
        "keeper",
        kafka_bootstrap,
        topics,
        tmp_path,
        STREAMPROC_DEAD_LETTERS__MAX_ORIGINAL_BYTES=str(keep),
    )
    try:
        await wait_while_running(
            all_answered(kafka_bootstrap, topics, 1, ends_of(sent)), 90, worker
        )
    finally:
        worker.kill()
    [letter] = await answers(kafka_bootstrap, topics.dead_letters)
    assert letter["reason"] == "malformed"
    assert (letter["origin"]["partition"], letter["origin"]["offset"]) == sent[0]
    assert letter["original_truncated"] is True
    assert letter["original_size"] == len(value)
    assert letter["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert base64.b64decode(letter["original"]) == value[:keep]
