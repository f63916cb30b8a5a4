"""The Kafka transport against the real Tansu broker, with the processor in this process."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from streamproc.bus.base import Partition, PartitionListener
from streamproc.bus.kafka_sink import KafkaSink
from streamproc.bus.kafka_source import KafkaSource
from streamproc.generation.base import GenerationRequest
from streamproc.generation.wan import WanGenerator, load_pipeline
from streamproc.processor import Outcome, Processor, RunSummary
from streamproc.settings import Settings
from streamproc.storage.local import LocalObjectStore
from tests.conftest import MakeSettings
from tests.helpers import SpyGenerator, event, eventually, semantic_cache
from tests.integration.conftest import PROMPT_PARTITIONS
from tests.kafka_broker import (
    Topics,
    answers,
    committed,
    committed_to_end,
    headers_of,
    produce,
    read_all,
)

pytestmark = pytest.mark.kafka


class RecordingListener:
    """Passes rebalance callbacks on to the processor and remembers them."""

    def __init__(self, inner: PartitionListener) -> None:
        self.inner = inner
        self.calls: list[tuple[str, list[Partition]]] = []

    async def partitions_revoked(
        self, partitions: Sequence[Partition], *, grace_s: float | None = None
    ) -> None:
        self.calls.append(("revoked", list(partitions)))
        await self.inner.partitions_revoked(partitions, grace_s=grace_s)

    async def partitions_assigned(self, partitions: Sequence[Partition]) -> None:
        self.calls.append(("assigned", list(partitions)))
        await self.inner.partitions_assigned(partitions)


class RecordingKafkaSource(KafkaSource):
    """The real Kafka source, remembering rebalance callbacks."""

    listener: RecordingListener

    def set_listener(self, listener: PartitionListener) -> None:
        self.listener = RecordingListener(listener)
        super().set_listener(self.listener)


class HeldStore(LocalObjectStore):
    """The real local store; puts of chosen events wait until :attr:`gate` opens."""

    def __init__(self, root: Path, held: set[str]) -> None:
        super().__init__(root)
        self.held = held
        self.gate = asyncio.Event()
        self.waiting: set[str] = set()

    async def put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> str:
        event_id = metadata.get("event_id", "")
        if event_id in self.held:
            self.waiting.add(event_id)
            await self.gate.wait()
        return await super().put(key, data, metadata)


class KafkaWorker:
    """A processor over the real Kafka source and sink, running in this event loop."""

    def __init__(
        self,
        settings: Settings,
        generator: SpyGenerator,
        *,
        store: LocalObjectStore | None = None,
    ) -> None:
        self.settings = settings
        self.generator = generator
        self.source = RecordingKafkaSource(settings.kafka, client_id=settings.worker_id)
        self.sink = KafkaSink(settings.kafka, client_id=settings.worker_id)
        self.processor = Processor(
            settings,
            source=self.source,
            sink=self.sink,
            store=store or LocalObjectStore(Path(settings.storage.local_dir)),
            generator=generator,
            cache=semantic_cache(),
        )
        self._task: asyncio.Task[RunSummary] | None = None

    async def __aenter__(self) -> KafkaWorker:
        await self.generator.start()
        await self.sink.start()
        await self.source.start()
        self._task = asyncio.create_task(self.processor.run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None and not self._task.done():
            self.processor.request_stop(force=exc is not None)
            await asyncio.wait_for(asyncio.shield(self._task), 60)
        await self.source.stop()
        await self.sink.stop()
        await self.generator.stop()

    async def stop(self) -> RunSummary:
        """Graceful stop: drain, commit, leave; the run's summary."""
        assert self._task is not None
        self.processor.request_stop()
        summary = await asyncio.wait_for(self._task, 60)
        await self.source.stop()
        return summary


async def answered_ids(bootstrap: str, topics: Topics) -> set[str]:
    """The event ids on the results topic now."""
    return {a["event_id"] for a in await answers(bootstrap, topics.results)}


def kafka_settings(
    make_settings: MakeSettings, bootstrap: str, topics: Topics, **sections: Any
) -> Settings:
    kafka = topics.settings(bootstrap, **sections.pop("kafka", {}))
    return make_settings(transport="kafka", kafka=kafka, **sections)


def spy(settings: Settings, tiny: Any, **kwargs: Any) -> SpyGenerator:
    return SpyGenerator(WanGenerator(settings.generation, loaded=tiny), **kwargs)


def value(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


async def test_500_events_end_as_exactly_500_answers_keyed_like_their_input(
    make_settings: MakeSettings, kafka_bootstrap: str, topics: Topics, tiny_pipeline: Any
) -> None:
    settings = kafka_settings(
        make_settings, kafka_bootstrap, topics, batch={"window_ms": 50, "max_batch_size": 4}
    )
    records: list[tuple[int | None, bytes | None, bytes, list[tuple[str, bytes]]]] = []
    expected_key: dict[str, bytes] = {}
    bad: dict[int, bytes] = {}
    valid = 0
    for i in range(500):
        event_id = f"ev-{i:03d}"
        key = None if i % 5 == 0 else f"user-{i % 13}".encode()
        if i % 50 == 7:
            payload = b"\xff{not json" if i % 100 == 7 else value(event(event_id, width=33))
            bad[i] = payload
        else:
            # 150 distinct prompts generate; the other events repeat one of them.
            payload = value(event(event_id, f"scene number {valid % 150}"))
            valid += 1
            expected_key[event_id] = key if key is not None else event_id.encode()
        records.append((i % PROMPT_PARTITIONS, key, payload, []))
    origins = await produce(kafka_bootstrap, topics.prompts, records)

    async with KafkaWorker(settings, spy(settings, tiny_pipeline)) as worker:

        async def all_answered() -> bool:
            results = await read_all(kafka_bootstrap, topics.results)
            letters = await read_all(kafka_bootstrap, topics.dead_letters)
            return len(results) + len(letters) >= 500

        await eventually(all_answered, seconds=120)
        await eventually(lambda: committed_to_end(kafka_bootstrap, topics))
        summary = await worker.stop()

    results = await read_all(kafka_bootstrap, topics.results)
    letters = await read_all(kafka_bootstrap, topics.dead_letters)
    assert len(results) + len(letters) == 500
    assert sorted(json.loads(r.value)["event_id"] for r in results) == sorted(expected_key)
    for record in results:
        answer = json.loads(record.value)
        assert record.key == expected_key[answer["event_id"]]
        assert headers_of(record)["event_id"] == answer["event_id"].encode()
        assert len(headers_of(record)["trace_id"]) == 32
        assert answer["status"] == "ok"
    assert summary.outcomes[Outcome.GENERATED] == 150  # real videos, one per distinct prompt
    assert summary.outcomes[Outcome.HIT_EXACT] == 340
    found = {
        (d["origin"]["partition"], d["origin"]["offset"]): base64.b64decode(d["original"])
        for d in (json.loads(r.value) for r in letters)
    }
    assert found == {origins[i]: payload for i, payload in bad.items()}


async def test_later_batch_finishing_first_never_moves_the_commit_past_the_earlier(
    make_settings: MakeSettings,
    kafka_bootstrap: str,
    topics: Topics,
    tiny_pipeline: Any,
    tmp_path: Path,
) -> None:
    settings = kafka_settings(
        make_settings, kafka_bootstrap, topics, batch={"window_ms": 300, "max_batch_size": 2}
    )
    store = HeldStore(tmp_path / "store", held={"first-0", "first-1"})
    ids = ["first-0", "first-1", "second-0", "second-1"]
    # Unrelated scenes: near-duplicates would coalesce with the held batch instead.
    scenes = [
        "a red fox in deep snow",
        "a paper boat on a still lake",
        "a neon city street at night",
        "a honeybee landing on a sunflower",
    ]
    await produce(
        kafka_bootstrap,
        topics.prompts,
        [(0, i.encode(), value(event(i, scene)), []) for i, scene in zip(ids, scenes, strict=True)],
    )
    async with KafkaWorker(settings, spy(settings, tiny_pipeline), store=store):

        async def answered() -> set[str]:
            return await answered_ids(kafka_bootstrap, topics)

        async def second_batch_done() -> bool:
            return {"second-0", "second-1"} <= await answered()

        await eventually(second_batch_done)
        assert store.waiting == {"first-0", "first-1"}  # the first batch is still unfinished
        for _ in range(5):  # many commit intervals (20 ms) pass
            done = await committed(kafka_bootstrap, topics.group, topics.prompts, 3)
            assert done[0] in (-1, 0), done
            await asyncio.sleep(0.2)
        assert await answered() == {"second-0", "second-1"}
        store.gate.set()

        async def partition_committed() -> bool:
            done = await committed(kafka_bootstrap, topics.group, topics.prompts, 3)
            return done[0] == 4

        await eventually(partition_committed)
    assert await answered() == set(ids)


async def test_generation_longer_than_the_session_timeout_keeps_the_membership(
    make_settings: MakeSettings, kafka_bootstrap: str, topics: Topics, tiny_pipeline: Any
) -> None:
    settings = kafka_settings(
        make_settings,
        kafka_bootstrap,
        topics,
        # Generation below takes 9 s: more than the session and the poll interval.
        kafka={"session_timeout_ms": 4000, "max_poll_interval_ms": 4000},
        batch={"window_ms": 10, "max_batch_size": 1, "max_in_flight": 2},
    )
    slow_first: list[float] = [9.0]

    def delay(requests: Sequence[GenerationRequest]) -> float:
        return slow_first.pop() if slow_first else 0.0

    ids = [f"slow-{i}" for i in range(5)]
    await produce(
        kafka_bootstrap,
        topics.prompts,
        [(0, None, value(event(i, f"prompt {i}")), []) for i in ids],
    )
    generator = spy(settings, tiny_pipeline, delay_s=delay)
    async with KafkaWorker(settings, generator) as worker:
        await eventually(lambda: committed_to_end(kafka_bootstrap, topics), seconds=60)
        assert not slow_first  # the slow call happened
        calls = worker.source.listener.calls
        assert [kind for kind, _ in calls] == ["assigned"], calls  # never revoked
        assert worker.source.assignment == [Partition(topics.prompts, p) for p in range(3)]
        summary = await worker.stop()
    assert summary.outcomes[Outcome.GENERATED] == 5
    assert sorted(a["event_id"] for a in await answers(kafka_bootstrap, topics.results)) == ids


async def test_bad_records_go_to_the_dead_letter_topic_and_the_partition_flows_on(
    make_settings: MakeSettings, kafka_bootstrap: str, topics: Topics, tiny_pipeline: Any
) -> None:
    settings = kafka_settings(make_settings, kafka_bootstrap, topics)
    payloads = [
        value(event("ok-0", "a calm sea")),
        b"\xff{not json",
        value(event("too-wide", width=33)),
        value(event("ok-1", "a stormy sea")),
        b"[1, 2]",
        value(event("ok-2", "a frozen sea")),
    ]
    origins = await produce(
        kafka_bootstrap,
        topics.prompts,
        [(1, f"k{i}".encode(), p, [("trace_id", b"t" * 32)]) for i, p in enumerate(payloads)],
    )
    async with KafkaWorker(settings, spy(settings, tiny_pipeline)):
        await eventually(lambda: committed_to_end(kafka_bootstrap, topics))
    assert sorted(await answered_ids(kafka_bootstrap, topics)) == ["ok-0", "ok-1", "ok-2"]
    letters = await read_all(kafka_bootstrap, topics.dead_letters)
    assert len(letters) == 3
    by_offset = {json.loads(r.value)["origin"]["offset"]: r for r in letters}
    assert sorted(by_offset) == [1, 2, 4]
    for offset, reason in [(1, "malformed"), (2, "schema_violation"), (4, "malformed")]:
        record = by_offset[offset]
        letter = json.loads(record.value)
        assert letter["reason"] == reason
        assert letter["origin"] == {
            "topic": topics.prompts,
            "partition": 1,
            "offset": offset,
            "key": base64.b64encode(f"k{offset}".encode()).decode(),
        }
        assert base64.b64decode(letter["original"]) == payloads[offset]
        headers = headers_of(record)
        assert headers["reason"] == reason.encode()
        assert headers["origin_topic"] == topics.prompts.encode()
        assert (int(headers["origin_partition"]), int(headers["origin_offset"])) == origins[offset]
        assert headers["trace_id"] == b"t" * 32
        assert record.key == f"k{offset}".encode()
    assert by_offset[2].key == b"k2" and headers_of(by_offset[2])["event_id"] == b"too-wide"


async def test_results_pass_the_trace_context_on(
    make_settings: MakeSettings, kafka_bootstrap: str, topics: Topics, tiny_pipeline: Any
) -> None:
    settings = kafka_settings(make_settings, kafka_bootstrap, topics)
    parent = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    inputs = {
        "with-parent": [("traceparent", parent)],
        "with-id": [("trace_id", b"my-trace")],
        "without": [],
    }
    await produce(
        kafka_bootstrap,
        topics.prompts,
        [(2, None, value(event(i, "a lantern")), h) for i, h in inputs.items()],
    )
    async with KafkaWorker(settings, spy(settings, tiny_pipeline)):
        await eventually(lambda: committed_to_end(kafka_bootstrap, topics))
    results = {
        json.loads(r.value)["event_id"]: r for r in await read_all(kafka_bootstrap, topics.results)
    }
    with_parent = headers_of(results["with-parent"])
    assert with_parent["traceparent"] == parent
    assert with_parent["trace_id"] == b"4bf92f3577b34da6a3ce929d0e0e4736"
    assert headers_of(results["with-id"])["trace_id"] == b"my-trace"
    generated = headers_of(results["without"])["trace_id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert results["without"].key == b"without"  # no input key: keyed by event_id
    schema = headers_of(results["without"])["schema"]
    assert schema == b"video-result.v1"


async def test_revocation_finishes_and_commits_in_flight_work_before_the_partitions_move(
    make_settings: MakeSettings, kafka_bootstrap: str, topics: Topics, tiny_pipeline: Any
) -> None:
    settings = kafka_settings(
        make_settings,
        kafka_bootstrap,
        topics,
        batch={"window_ms": 10, "max_batch_size": 1},
    )
    ids = [f"move-{i}" for i in range(6)]
    origins = dict(
        zip(
            ids,
            await produce(
                kafka_bootstrap,
                topics.prompts,
                [(i % 3, None, value(event(e, f"prompt {e}")), []) for i, e in enumerate(ids)],
            ),
            strict=True,
        )
    )
    held = spy(settings, tiny_pipeline)
    held.release.clear()  # the first event sits on the "GPU"; the rest queue behind it
    async with KafkaWorker(settings, held) as first:
        await wait_for_call(held)
        [[on_gpu]] = held.calls
        other = kafka_settings(make_settings, kafka_bootstrap, topics, worker_id="second")
        # Its own pipeline: one pipeline object must never run two calls at once.
        fresh = spy(other, load_pipeline(other.generation))
        async with KafkaWorker(other, fresh) as second:

            async def revoking() -> bool:
                return any(kind == "revoked" for kind, _ in first.source.listener.calls)

            await eventually(revoking)
            held.release.set()  # finishes within revoke_grace_ms, inside the rebalance

            async def all_answered() -> bool:
                return await answered_ids(kafka_bootstrap, topics) == set(ids)

            await eventually(all_answered)
            await eventually(lambda: committed_to_end(kafka_bootstrap, topics))
            assert first.source.assignment and second.source.assignment  # the group split
    results = await answers(kafka_bootstrap, topics.results)
    # Finished and committed inside the rebalance: whoever owns its partition now did not
    # receive it again.
    assert [r["worker_id"] for r in results if r["event_id"] == on_gpu] == ["test-worker"]
    assert (held.generated_ids + fresh.generated_ids).count(on_gpu) == 1
    # The events queued behind it were abandoned at the revocation (counted, uncommitted)
    # and answered once each; the first worker's summary adds up.
    summary = first.processor.summary
    assert summary.received == summary.finished + summary.abandoned
    assert sorted(r["event_id"] for r in results) == ids
    assert origins[on_gpu][0] in range(3)


async def wait_for_call(generator: SpyGenerator) -> None:
    async def called() -> bool:
        return bool(generator.calls)

    await eventually(called)
