"""The processor: every record ends durable, commits never pass unfinished work."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streamproc.app import run_worker
from streamproc.bus.base import Partition
from streamproc.bus.local import JsonlSink, JsonlSource
from streamproc.errors import StorageError
from streamproc.events import utcnow
from streamproc.generation.wan import WanGenerator
from streamproc.processor import ExitStatus, Outcome, Processor, RunSummary
from streamproc.settings import Settings
from streamproc.storage.local import LocalObjectStore
from tests.conftest import MakeSettings
from tests.helpers import (
    SpyGenerator,
    event,
    read_jsonl,
    semantic_cache,
    wait_for,
    write_jsonl,
)


class RecordingSource(JsonlSource):
    """The real JSONL source, remembering every commit and pause."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.commits: list[dict[Partition, int]] = []
        self.pauses = 0

    async def commit(self, positions: Mapping[Partition, int]) -> None:
        self.commits.append(dict(positions))
        await super().commit(positions)

    def pause(self) -> None:
        self.pauses += 1
        super().pause()

    def position(self) -> int | None:
        return self.committed.get(self.partition)


class FlakyStore(LocalObjectStore):
    """The real local store, failing every put for chosen events until released."""

    def __init__(self, root: Path, failing: set[str]) -> None:
        super().__init__(root)
        self.failing = failing
        self.failures = 0

    async def put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> str:
        if metadata.get("event_id") in self.failing:
            self.failures += 1
            raise StorageError("injected outage")
        return await super().put(key, data, metadata)


class Harness:
    def __init__(self, settings: Settings, tmp_path: Path, tiny: tuple[Any, str]) -> None:
        self.settings = settings
        self.tmp = tmp_path
        self.spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny))
        self.cache = semantic_cache()

    def source(self, lines: list[Any]) -> RecordingSource:
        return RecordingSource(write_jsonl(self.tmp / "in.jsonl", lines))

    async def run(self, lines: list[Any], **kwargs: Any) -> Any:
        source = kwargs.pop("source", None) or self.source(lines)
        self.source_used = source
        return await run_worker(
            self.settings,
            source=source,
            generator=kwargs.pop("generator", self.spy),
            cache=kwargs.pop("cache", self.cache),
            handle_signals=False,
            **kwargs,
        )

    def processor(self, source: RecordingSource, **kwargs: Any) -> Processor:
        """A processor over real components, for tests that steer it directly."""
        self.sink = JsonlSink(self.settings.local.results, self.settings.local.dead_letters)
        return Processor(
            self.settings,
            source=source,
            sink=self.sink,
            store=LocalObjectStore(Path(self.settings.storage.local_dir)),
            generator=self.spy,
            cache=self.cache,
            **kwargs,
        )

    @property
    def results(self) -> list[dict[str, Any]]:
        return read_jsonl(Path(self.settings.local.results))

    @property
    def dead(self) -> list[dict[str, Any]]:
        return read_jsonl(Path(self.settings.local.dead_letters))


@pytest.fixture
def harness(make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any) -> Harness:
    return Harness(make_settings(), tmp_path, tiny_pipeline)


async def test_every_record_ends_as_a_result_or_a_dead_letter(harness: Harness) -> None:
    lines = [event(f"e{i}", f"prompt number {i}") for i in range(6)]
    lines.insert(2, "{broken json")
    lines.insert(4, event("bad", width=33))
    summary = await harness.run(lines)
    assert summary.received == 8
    assert sorted(r["event_id"] for r in harness.results) == [f"e{i}" for i in range(6)]
    assert [(d["reason"], d["origin"]["offset"]) for d in harness.dead] == [
        ("malformed", 2),
        ("schema_violation", 4),
    ]
    assert harness.source_used.position() == 8  # committed past everything, bad lines included
    assert all(
        r["status"] == "ok" and r["video_url"].startswith("file://") for r in harness.results
    )


async def test_exact_repeat_is_answered_from_cache_without_generating(harness: Harness) -> None:
    await harness.run([event("first", "a lighthouse in a storm")])
    await harness.run([event("again", "A lighthouse in a storm.")])
    assert harness.spy.generated_ids == ["first"]
    again = harness.results[-1]
    assert again["cache"] == "hit-exact"
    assert again["matched_event_id"] == "first"
    assert again["video_url"] == harness.results[0]["video_url"]


async def test_duplicates_in_one_window_generate_once(harness: Harness) -> None:
    lines = [event(f"d{i}", "a paper boat on a pond") for i in range(3)]
    summary = await harness.run(lines)
    assert harness.spy.generated_ids == ["d0"]
    by_id = {r["event_id"]: r for r in harness.results}
    assert {by_id[i]["cache"] for i in ("d1", "d2")} == {"hit-exact"}
    assert by_id["d1"]["matched_event_id"] == "d0"
    assert summary.outcomes[Outcome.GENERATED] == 1
    assert summary.outcomes[Outcome.HIT_EXACT] == 2


async def test_near_duplicates_in_one_window_generate_once(harness: Harness) -> None:
    lines = [
        event("n0", "a kitten rolling on green grass"),
        event("n1", "a kitten rolls around on green grass"),
        event("n2", "a kitten rolling on green grass at night"),  # a different scene
    ]
    summary = await harness.run(lines)
    assert sorted(harness.spy.generated_ids) == ["n0", "n2"]
    by_id = {r["event_id"]: r for r in harness.results}
    follower = by_id["n1"]
    assert follower["cache"] == "hit-semantic" and follower["matched_event_id"] == "n0"
    assert follower["similarity"] >= 0.85
    assert follower["video_url"] == by_id["n0"]["video_url"]
    assert follower["result_id"] != by_id["n0"]["result_id"]
    assert summary.outcomes[Outcome.HIT_SEMANTIC] == 1


async def test_paraphrase_of_an_earlier_prompt_is_answered_without_generating(
    harness: Harness,
) -> None:
    await harness.run([event("first", "a golden retriever catching a frisbee in the park")])
    await harness.run(
        [
            event("para", "in the park, a golden retriever catches a frisbee"),
            event("other", "a golden retriever catching a frisbee on the beach"),
        ]
    )
    assert sorted(harness.spy.generated_ids) == ["first", "other"]
    para = next(r for r in harness.results if r["event_id"] == "para")
    assert para["cache"] == "hit-semantic" and para["matched_event_id"] == "first"
    assert 0.85 <= para["similarity"] < 1.0


async def test_bypass_and_refresh_attributes_skip_the_cache_read(harness: Harness) -> None:
    await harness.run([event("seed", "a snow leopard")])
    await harness.run(
        [
            event("bypass", "a snow leopard", attributes={"cache": "bypass"}),
            event("refresh", "a snow leopard", attributes={"cache": "refresh"}),
        ]
    )
    assert sorted(harness.spy.generated_ids) == ["bypass", "refresh", "seed"]
    hit = await harness.cache.lookup("a snow leopard", _scope_of(harness))
    assert hit is not None and hit.entry.event_id == "refresh"  # refresh replaced the entry


def _scope_of(harness: Harness) -> Any:
    from streamproc.cache.base import CacheScope

    return CacheScope(harness.spy.model_id, 64, 32, 5, 2, 5.0)


async def test_results_keep_the_same_ids_and_keys_when_reprocessed(harness: Harness) -> None:
    line = event("e1", "a hummingbird", attributes={"cache": "bypass", "campaign": "c7"})
    await harness.run([line])
    await harness.run([line])
    first, second = harness.results
    for field in ("result_id", "object_key", "video_url", "event_id"):
        assert first[field] == second[field]
    assert first["attributes"]["campaign"] == "c7"
    assert first["timings"]["stored_at"] >= first["timings"]["generated_at"]


async def test_failing_event_is_dead_lettered_after_retries_and_spares_its_batch(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(generation={"retries": 2}, batch={"window_ms": 200})
    harness = Harness(settings, tmp_path, tiny_pipeline)
    harness.spy = SpyGenerator(harness.spy.inner, fail=lambda r: r.event_id == "poison")
    lines = [event("ok1", "one"), event("poison", "two"), event("ok2", "three")]
    await harness.run(lines)
    assert harness.spy.calls[0] == ["ok1", "poison", "ok2"]  # one batch first
    assert harness.spy.generated_ids.count("poison") == 1 + 1 + 2  # batch, alone, 2 retries
    # Exactly one outcome each: results for the good ones, only a dead letter for the poison.
    statuses = {r["event_id"]: r["status"] for r in harness.results}
    assert statuses == {"ok1": "ok", "ok2": "ok"}
    [letter] = harness.dead
    assert letter["reason"] == "generation_failed" and letter["event_id"] == "poison"
    assert harness.source_used.position() == 3


async def test_store_outage_holds_the_commit_and_the_result_until_stored(
    harness: Harness,
) -> None:
    store = FlakyStore(Path(harness.settings.storage.local_dir), failing={"e1"})
    lines = [event("e0", "zero"), event("e1", "one"), event("e2", "two")]
    source = harness.source(lines)
    task = asyncio.create_task(harness.run(lines, source=source, store=store))
    await wait_for(lambda: store.failures >= 3)
    await wait_for(lambda: len(harness.results) == 2)
    await asyncio.sleep(0.1)  # several commit intervals pass
    assert sorted(r["event_id"] for r in harness.results) == ["e0", "e2"]
    assert source.position() == 1  # e2 is done, but e1 (offset 1) is not
    store.failing.clear()
    await asyncio.wait_for(task, 30)
    assert sorted(r["event_id"] for r in harness.results) == ["e0", "e1", "e2"]
    assert source.position() == 3


async def test_later_batch_finishing_first_never_moves_the_commit_past_the_earlier(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    # A wide window: a0 and a1 embed for their cache lookups before they reach the batcher.
    settings = make_settings(batch={"window_ms": 500, "max_batch_size": 2})
    harness = Harness(settings, tmp_path, tiny_pipeline)
    slow = harness.spy
    slow.release.clear()  # hold the first batch on the "GPU"
    # Two shapes: offsets 0-1 are one batch, offsets 2-3 (cache hits of earlier prompts) skip it.
    await harness.run([event("warm", "b"), event("warm2", "c")], generator=SpyGenerator(slow.inner))
    lines = [event("a0", "a"), event("a1", "a2"), event("b0", "b"), event("c0", "c")]
    source = harness.source(lines)
    task = asyncio.create_task(harness.run(lines, source=source))
    await wait_for(lambda: {"b0", "c0"} <= {r["event_id"] for r in harness.results})
    await asyncio.sleep(0.1)
    assert source.position() is None or source.position() == 0
    held_commits = list(source.commits)
    slow.release.set()
    await asyncio.wait_for(task, 30)
    assert source.position() == 4
    # While offsets 0-1 were on the GPU, no commit went past 0 although 2-3 were finished.
    assert all(c[source.partition] == 0 for c in held_commits)


async def test_stop_drains_in_flight_work_and_commits_it(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(batch={"window_ms": 20, "max_batch_size": 2, "max_in_flight": 4})
    harness = Harness(settings, tmp_path, tiny_pipeline)
    harness.spy = SpyGenerator(harness.spy.inner, delay_s=0.3)
    source = harness.source([event(f"e{i}", f"prompt {i}") for i in range(40)])
    processor = harness.processor(source)
    await harness.spy.start()
    async with harness.sink, source:
        task = asyncio.create_task(processor.run())
        await wait_for(lambda: bool(harness.spy.calls))
        processor.request_stop()
        summary = await asyncio.wait_for(task, 30)
    assert 0 < summary.received < 40
    assert summary.finished == summary.received and summary.abandoned == 0
    assert len(harness.results) == summary.received
    assert source.position() == summary.received


async def test_forced_stop_abandons_work_without_committing_it(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(batch={"window_ms": 10, "max_batch_size": 1})
    harness = Harness(settings, tmp_path, tiny_pipeline)
    harness.spy.release.clear()  # the GPU never finishes
    source = harness.source([event("e0", "zero"), event("e1", "one")])
    processor = harness.processor(source)
    await harness.spy.start()
    async with harness.sink, source:
        task = asyncio.create_task(processor.run())
        await wait_for(lambda: bool(harness.spy.calls))
        processor.request_stop(force=True)
        harness.spy.release.set()
        summary = await asyncio.wait_for(task, 30)
    assert summary.abandoned == 2
    assert harness.results == []
    assert source.position() in (None, 0)


async def test_full_in_flight_pauses_the_source(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(batch={"window_ms": 10, "max_batch_size": 2, "max_in_flight": 3})
    harness = Harness(settings, tmp_path, tiny_pipeline)
    peak = 0
    harness.spy = SpyGenerator(harness.spy.inner, delay_s=0.05)

    class Peak:
        def __init__(self) -> None:
            self.open = 0

        def record_received(self) -> None:
            nonlocal peak
            self.open += 1
            peak = max(peak, self.open)

        def record_finished(self, outcome: Outcome, seconds: float) -> None:
            self.open -= 1

    lines = [event(f"e{i}", f"prompt {i}") for i in range(12)]
    summary = await harness.run(lines, observers=[Peak()])
    assert summary.finished == 12
    assert harness.source_used.pauses >= 1
    assert peak <= 3


async def test_expired_deadline_is_dead_lettered_without_generating(harness: Harness) -> None:
    past = (utcnow() - timedelta(seconds=5)).isoformat()
    await harness.run([event("late", "too late", deadline=past), event("fine", "in time")])
    assert harness.spy.generated_ids == ["fine"]
    [letter] = harness.dead
    assert letter["reason"] == "deadline_exceeded" and letter["event_id"] == "late"
    assert {r["event_id"]: r["status"] for r in harness.results} == {"fine": "ok"}


async def test_two_shapes_are_generated_in_separate_calls(harness: Harness) -> None:
    lines = [event("s1", "one"), event("l1", "two", width=96), event("s2", "three")]
    await harness.run(lines)
    assert sorted(sorted(c) for c in harness.spy.calls) == [["l1"], ["s1", "s2"]]
    widths = {s.width for s in harness.spy.shapes}
    assert widths == {64, 96}


async def test_end_of_input_finishes_all_work_however_long_it_takes(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    # The grace period is for stop requests; a file that simply ends is processed fully.
    settings = make_settings(shutdown_grace_s=0.2, batch={"window_ms": 10, "max_batch_size": 1})
    harness = Harness(settings, tmp_path, tiny_pipeline)
    harness.spy = SpyGenerator(harness.spy.inner, delay_s=0.3)
    summary = await harness.run([event(f"e{i}", f"prompt {i}") for i in range(4)])
    assert summary.abandoned == 0
    assert len(harness.results) == 4


async def test_videos_are_encoded_in_worker_processes_by_default(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(encoding={"executor": "process", "workers": 1})
    harness = Harness(settings, tmp_path, tiny_pipeline)
    summary = await harness.run([event("p0", "a kite"), event("p1", "a drum")])
    assert summary.outcomes[Outcome.GENERATED] == 2
    assert all(r["status"] == "ok" for r in harness.results)
    assert summary.stage_seconds["mp4_encode"] > 0


async def test_a_request_class_is_generated_with_its_step_cache_and_kept_apart(
    harness: Harness,
) -> None:
    lines = [
        event("std", "a lighthouse in a storm"),
        event("draft", "a lighthouse in a storm", attributes={"quality": "draft"}),
        event("std2", "a lighthouse in a storm", attributes={"quality": "standard"}),
    ]
    await harness.run(lines)
    by_id = {r["event_id"]: r for r in harness.results}
    label = harness.settings.generation.step_cache_classes["draft"].label()
    assert by_id["draft"]["parameters"]["step_cache"] == label
    assert by_id["std"]["parameters"]["step_cache"] is None
    # A draft is its own video: never batched with, cached for or stored as a standard one.
    assert by_id["draft"]["object_key"] != by_id["std"]["object_key"]
    assert by_id["std2"]["object_key"] == by_id["std"]["object_key"]
    assert by_id["draft"]["cache"] == "miss"
    assert {s.step_cache for s in harness.spy.shapes} == {None, label}
    assert all(len(set(call) & {"std", "draft"}) < 2 for call in harness.spy.calls)


async def test_an_unknown_request_class_is_dead_lettered_with_the_offered_ones(
    harness: Harness,
) -> None:
    await harness.run([event("q", attributes={"quality": "cinema"}), event("ok")])
    assert [r["event_id"] for r in harness.results] == ["ok"]
    [dead] = harness.dead
    assert dead["reason"] == "unsupported_parameter"
    assert "quality 'cinema' is not offered here (classes: draft, standard)" in dead["detail"]


class FinishWatchingSource(RecordingSource):
    """Notes, at each ``finished`` call, whether the record's answer is already written."""

    def __init__(self, path: Path, settings: Settings, ids: list[str]) -> None:
        super().__init__(path)
        self.settings = settings
        self.ids = ids
        self.seen: list[tuple[int, bool]] = []

    def finished(self, record: Any) -> None:
        results = read_jsonl(Path(self.settings.local.results))
        dead = read_jsonl(Path(self.settings.local.dead_letters))
        written = record.offset in {d["origin"]["offset"] for d in dead} or self.ids[
            record.offset
        ] in {r["event_id"] for r in results}
        self.seen.append((record.offset, written))


async def test_a_source_hears_of_each_finished_record_only_after_its_answer_is_written(
    harness: Harness,
) -> None:
    lines = [event(f"e{i}", f"prompt number {i}") for i in range(4)]
    lines.insert(2, event("bad", width=33))
    path = write_jsonl(harness.tmp / "in.jsonl", lines)
    source = FinishWatchingSource(path, harness.settings, [e["event_id"] for e in lines])
    await harness.run(lines, source=source)
    assert sorted(source.seen) == [(0, True), (1, True), (2, True), (3, True), (4, True)]


async def test_results_of_a_replay_are_marked_and_otherwise_identical(harness: Harness) -> None:
    await harness.run([event("e1", "a kite over the dunes")])
    await harness.run(
        [event("e1", "a kite over the dunes")], replay_id="r-7", cache=semantic_cache()
    )
    live, replayed = harness.results
    assert (live["replayed"], live["replay_id"]) == (False, None)
    assert (replayed["replayed"], replayed["replay_id"]) == (True, "r-7")
    for same in ("event_id", "result_id", "object_key", "video_url", "parameters"):
        assert live[same] == replayed[same]


async def test_records_handed_over_in_a_rebalance_do_not_fail_the_run(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    """Records abandoned because their partition was revoked stay uncommitted for the next
    owner: counted as abandoned (the summary adds up) and as handed over, but the run's exit
    status stays 0 — unlike records abandoned at a stop."""
    settings = make_settings(batch={"window_ms": 10, "max_batch_size": 1})
    harness = Harness(settings, tmp_path, tiny_pipeline)
    harness.spy.release.clear()  # the GPU holds the first batch until released
    source = harness.source([event(f"e{i}", f"prompt {i}") for i in range(3)])
    processor = harness.processor(source)
    await harness.spy.start()
    async with harness.sink, source:
        task = asyncio.create_task(processor.run())
        await wait_for(lambda: bool(harness.spy.calls))
        await processor.partitions_revoked([source.partition], grace_s=0.05)
        harness.spy.release.set()
        summary = await asyncio.wait_for(task, 30)
    assert summary.abandoned == summary.handed_over == 3
    assert summary.received == summary.finished + summary.abandoned
    assert summary.exit_status == ExitStatus.OK
    assert source.position() in (None, 0)  # nothing committed: all delivered again
    # Abandoned at a stop (not handed over) still fails the run.
    assert RunSummary(abandoned=2, handed_over=1).exit_status == ExitStatus.ABANDONED


class _StuckMarkLedger:
    """A real SQLite ledger whose "answer is out" note never completes."""

    def __init__(self, path: Path) -> None:
        from streamproc.ledger.sqlite import SqliteLedger

        self.inner = SqliteLedger(path, ttl_s=3600)
        self.marking = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def mark_published(self, key: str) -> None:
        self.marking.set()
        await asyncio.Event().wait()


async def test_a_forced_stop_after_the_result_is_out_counts_it_as_a_result(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    """Ctrl-C twice while the bookkeeping after a durable publish still runs: the record is
    finished as answered, not abandoned, so the summary agrees with the lines written and the
    offset may be committed (its answer is out)."""
    settings = make_settings(batch={"window_ms": 10, "max_batch_size": 1})
    harness = Harness(settings, tmp_path, tiny_pipeline)
    ledger = _StuckMarkLedger(tmp_path / "ledger.sqlite")
    source = harness.source([event("e0", "zero")])
    processor = harness.processor(source, ledger=ledger)
    await harness.spy.start()
    await ledger.inner.start()
    try:
        async with harness.sink, source:
            task = asyncio.create_task(processor.run())
            await asyncio.wait_for(ledger.marking.wait(), 60)
            processor.request_stop(force=True)
            summary = await asyncio.wait_for(task, 30)
    finally:
        await ledger.inner.stop()
    assert len(harness.results) == 1
    assert (summary.results, summary.abandoned) == (1, 0)
    assert summary.received == summary.results + summary.dead_letters + summary.abandoned
