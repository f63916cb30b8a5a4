"""`streamproc replay` in this process against the real Tansu broker: exact ranges by offset
and by time, the live group left alone, the three cache modes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndTimestamp

from streamproc.bus.kafka_replay import KafkaReplaySource, ReplayRequest
from streamproc.cache.base import CacheEntry, CacheHit, CacheScope
from streamproc.cache.semantic import SemanticCache
from streamproc.replay.bounds import Bound, NowBound, OffsetBound, TimeBound
from streamproc.replay.run import ReplayProgress, ReplaySummary, run_replay
from streamproc.settings import Settings
from streamproc.storage.local import LocalObjectStore
from tests.conftest import MakeSettings
from tests.helpers import SpyGenerator, event, eventually, semantic_cache
from tests.integration.conftest import PROMPT_PARTITIONS
from tests.integration.test_kafka_transport import KafkaWorker, kafka_settings, spy
from tests.kafka_broker import Topics, committed, committed_to_end, headers_of, read_all

pytestmark = pytest.mark.kafka


async def produce_at(
    bootstrap: str, topic: str, records: Sequence[tuple[int, str, int]]
) -> dict[str, tuple[int, int, int]]:
    """Send events ``(partition, event_id, timestamp_ms)``; event id → (partition, offset, ts)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        out = {}
        for partition, event_id, ts in records:
            payload = json.dumps(event(event_id, f"scene {event_id}")).encode()
            meta = await producer.send_and_wait(
                topic, payload, key=event_id.encode(), partition=partition, timestamp_ms=ts
            )
            out[event_id] = (meta.partition, meta.offset, ts)
        return out
    finally:
        await producer.stop()


async def fill(bootstrap: str, topics: Topics, count: int, base_ms: int) -> dict[str, Any]:
    """``count`` events round-robin over the partitions, one second apart from ``base_ms``."""
    return await produce_at(
        bootstrap,
        topics.prompts,
        [(i % PROMPT_PARTITIONS, f"ev-{i:02d}", base_ms + i * 1000) for i in range(count)],
    )


async def replay(
    settings: Settings,
    tiny: Any,
    start: Bound,
    end: Bound,
    *,
    cache: Any = None,
    generator: SpyGenerator | None = None,
    partitions: tuple[int, ...] | None = None,
    checkpoint: Path | None = None,
    bars: bool = False,
    replay_id: str = "r-test",
) -> tuple[ReplaySummary, SpyGenerator]:
    generator = generator or spy(settings, tiny)
    source = KafkaReplaySource(
        settings.kafka,
        client_id="replayer",
        request=ReplayRequest(
            topic=settings.kafka.prompts_topic,
            start=start,
            end=end,
            replay_id=replay_id,
            partitions=partitions,
            checkpoint_path=checkpoint,
        ),
    )
    summary = await run_replay(
        settings,
        source,
        store=LocalObjectStore(Path(settings.storage.local_dir)),
        cache=cache if cache is not None else semantic_cache(),
        generator=generator,
        progress=ReplayProgress(source, tty=True) if bars else None,
        handle_signals=False,
    )
    return summary, generator


async def result_records(bootstrap: str, topics: Topics) -> list[Any]:
    return await read_all(bootstrap, topics.results)


def ids_of(records: list[Any]) -> list[str]:
    return sorted(json.loads(r.value)["event_id"] for r in records)


async def test_an_offset_range_replays_exactly_the_events_inside_it_on_every_partition(
    make_settings: MakeSettings,
    kafka_bootstrap: str,
    topics: Topics,
    tiny_pipeline: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    origins = await fill(kafka_bootstrap, topics, 24, int(time.time() * 1000) - 60_000)
    settings = kafka_settings(make_settings, kafka_bootstrap, topics)

    summary, _ = await replay(settings, tiny_pipeline, OffsetBound(2), OffsetBound(5), bars=True)

    inside = sorted(e for e, (_, offset, _) in origins.items() if 2 <= offset <= 5)
    assert len(inside) == 4 * PROMPT_PARTITIONS  # both ends inclusive, on each partition
    records = await result_records(kafka_bootstrap, topics)
    assert ids_of(records) == inside
    assert summary.complete and summary.run.finished == len(inside)
    for record in records:
        answer = json.loads(record.value)
        assert answer["replayed"] is True and answer["replay_id"] == "r-test"
        assert headers_of(record)["streamproc-replay"] == b"r-test"
        assert record.key == answer["event_id"].encode()  # keyed like the live path
    bars = capsys.readouterr().err  # the bars' last frame: every partition done
    for name in ("partition 0", "partition 1", "partition 2"):
        assert f"{name} " in bars and " 4/4 " in bars
    assert " 12/12 " in bars and "ev/s" in bars


async def test_a_time_range_replays_exactly_the_events_whose_timestamps_lie_inside_it(
    make_settings: MakeSettings, kafka_bootstrap: str, topics: Topics, tiny_pipeline: Any
) -> None:
    base = int(time.time() * 1000) - 3_600_000
    origins = await fill(kafka_bootstrap, topics, 24, base)
    settings = kafka_settings(make_settings, kafka_bootstrap, topics)
    # Tansu answers offsets_for_times with offset 0: the records' own timestamps decide.
    summary, _ = await replay(
        settings, tiny_pipeline, TimeBound(base + 5_000), TimeBound(base + 16_000)
    )

    inside = sorted(e for e, (_, _, ts) in origins.items() if base + 5_000 <= ts <= base + 16_000)
    assert len(inside) == 12
    assert {origins[e][0] for e in inside} == set(range(PROMPT_PARTITIONS))
    assert ids_of(await result_records(kafka_bootstrap, topics)) == inside
    assert summary.filtered == 24 - 12 and summary.complete


async def test_a_replay_of_chosen_partitions_up_to_now_leaves_the_others_and_later_records(
    make_settings: MakeSettings, kafka_bootstrap: str, topics: Topics, tiny_pipeline: Any
) -> None:
    origins = await fill(kafka_bootstrap, topics, 12, int(time.time() * 1000) - 60_000)
    settings = kafka_settings(make_settings, kafka_bootstrap, topics)
    generator = spy(settings, tiny_pipeline, delay_s=0.5)
    running = asyncio.create_task(
        replay(
            settings,
            tiny_pipeline,
            OffsetBound(0),
            NowBound(),
            generator=generator,
            partitions=(0, 2),
        )
    )

    async def generating() -> bool:
        return bool(generator.calls)

    await eventually(generating, 60)
    # Written after the replay started, so past its 'now'.
    await produce_at(kafka_bootstrap, topics.prompts, [(0, "late", int(time.time() * 1000))])
    summary, _ = await running

    expected = sorted(e for e, (p, _, _) in origins.items() if p in (0, 2))
    assert ids_of(await result_records(kafka_bootstrap, topics)) == expected
    assert summary.complete


async def test_the_live_groups_committed_offsets_are_unchanged_by_a_replay_beside_a_live_worker(
    make_settings: MakeSettings, kafka_bootstrap: str, topics: Topics, tiny_pipeline: Any
) -> None:
    await fill(kafka_bootstrap, topics, 18, int(time.time() * 1000) - 60_000)
    settings = kafka_settings(make_settings, kafka_bootstrap, topics)
    async with KafkaWorker(settings, spy(settings, tiny_pipeline)) as live:
        await eventually(lambda: committed_to_end(kafka_bootstrap, topics), 90)
        before = await committed(kafka_bootstrap, topics.group, topics.prompts, 3)
        rebalances = list(live.source.listener.calls)

        # A range ending below the committed offsets (6): had the replay committed for the
        # group, the group's offsets would now be 3.
        summary, _ = await replay(settings, tiny_pipeline, OffsetBound(0), OffsetBound(2))

        assert before == {0: 6, 1: 6, 2: 6}
        assert summary.complete and summary.run.finished == 9
        assert await committed(kafka_bootstrap, topics.group, topics.prompts, 3) == before
        assert live.source.listener.calls == rebalances  # the group never saw the replay
        assert sorted(p.partition for p in live.source.assignment) == [0, 1, 2]
        await live.stop()
    answers = [json.loads(r.value) for r in await result_records(kafka_bootstrap, topics)]
    assert sorted(a["replayed"] for a in answers) == [False] * 18 + [True] * 9


class CountingCache:
    """The real semantic cache, counting the calls the processor makes."""

    def __init__(self, inner: SemanticCache) -> None:
        self.inner = inner
        self.lookups = 0
        self.inserts: list[str] = []

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def lookup(
        self, prompt: str, scope: CacheScope, *, seed: int | None = None
    ) -> CacheHit | None:
        self.lookups += 1
        return await self.inner.lookup(prompt, scope, seed=seed)

    async def insert(self, prompt: str, scope: CacheScope, entry: CacheEntry) -> None:
        self.inserts.append(entry.event_id)
        await self.inner.insert(prompt, scope, entry)

    async def closest(
        self, prompt: str, scope: CacheScope, others: Sequence[str]
    ) -> tuple[int, float] | None:
        self.lookups += 1
        return await self.inner.closest(prompt, scope, others)


def cached_event_ids(cache: SemanticCache) -> set[str]:
    return {stored.entry.event_id for stored in cache.store.entries()}


@pytest.mark.parametrize("mode", ["reuse", "refresh", "bypass"])
async def test_cache_modes_of_a_replay(
    mode: str,
    make_settings: MakeSettings,
    kafka_bootstrap: str,
    topics: Topics,
    tiny_pipeline: Any,
) -> None:
    await fill(kafka_bootstrap, topics, 9, int(time.time() * 1000) - 60_000)
    # Offsets 0-1 of each partition (6 events) were cached by an earlier run.
    first = kafka_settings(make_settings, kafka_bootstrap, topics)
    cache = semantic_cache()
    await replay(first, tiny_pipeline, OffsetBound(0), OffsetBound(1), cache=cache)
    before = {s.entry_id: s.entry for s in cache.store.entries()}
    assert len(before) == 6

    settings = kafka_settings(make_settings, kafka_bootstrap, topics, cache={"mode": mode})
    counting = CountingCache(cache)
    # A new replay (its own id): the answers the first one pinned in the ledger are its own.
    summary, generator = await replay(
        settings, tiny_pipeline, OffsetBound(0), NowBound(), cache=counting, replay_id="r-two"
    )

    after = {s.entry_id: s.entry for s in cache.store.entries()}
    if mode == "reuse":
        assert len(generator.generated_ids) == 3  # only the three events never cached
        assert summary.counts()["hit_exact"] == 6
        assert set(before) <= set(after) and len(after) == 9
        assert all(after[k] == before[k] for k in before)
    elif mode == "refresh":
        assert len(generator.generated_ids) == 9  # everything regenerated ...
        assert summary.counts()["hit_exact"] == 0
        assert len(counting.inserts) == 9 and len(after) == 9
        for key, old in before.items():  # ... and the cached entries replaced
            assert after[key].created_at > old.created_at
    else:
        assert len(generator.generated_ids) == 9
        assert counting.lookups == 0 and counting.inserts == []  # neither read nor written
        assert after == before


async def test_a_truthful_time_index_ends_a_time_range_early_and_exactly(
    make_settings: MakeSettings,
    kafka_bootstrap: str,
    topics: Topics,
    tiny_pipeline: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = int(time.time() * 1000) - 3_600_000
    origins = await fill(kafka_bootstrap, topics, 24, base)

    async def truthful(self: Any, timestamps: dict[Any, int]) -> dict[Any, Any]:
        # What Kafka answers (Tansu answers offset 0): the first offset at or after the time.
        out = {}
        for tp, ms in timestamps.items():
            later = [o for p, o, ts in origins.values() if p == tp.partition and ts >= ms]
            out[tp] = OffsetAndTimestamp(min(later), ms) if later else None
        return out

    monkeypatch.setattr(AIOKafkaConsumer, "offsets_for_times", truthful)
    settings = kafka_settings(make_settings, kafka_bootstrap, topics)
    checkpoint = Path(settings.storage.local_dir).parent / "cp.json"

    summary, _ = await replay(
        settings,
        tiny_pipeline,
        TimeBound(base + 5_000),
        TimeBound(base + 16_000),
        checkpoint=checkpoint,
    )

    inside = sorted(e for e, (_, _, ts) in origins.items() if base + 5_000 <= ts <= base + 16_000)
    assert ids_of(await result_records(kafka_bootstrap, topics)) == inside
    assert summary.filtered == 0  # nothing outside the bounds was even read
    ranges = json.loads(checkpoint.read_text())["partitions"]
    for p, state in ranges.items():
        mine = sorted((o, ts) for q, o, ts in origins.values() if q == int(p))
        first_inside = min(o for o, ts in mine if ts >= base + 5_000)
        first_after = min(o for o, ts in mine if ts > base + 16_000)
        # Started and ended where the time index said, before the partition's end (8).
        assert (state["start"], state["stop"], state["watermark"]) == (
            first_inside,
            first_after,
            first_after,
        )
        assert first_after < len(mine)
