"""Same event, same answer: the result ledger pins each event's first answer, seeds decide
which cached videos may answer, and a local re-run finishes only what is left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from streamproc.cache.base import CacheHit, CacheScope
from streamproc.cache.semantic import SemanticCache
from streamproc.generation.base import GenerationRequest
from streamproc.processor import Outcome
from tests.conftest import MakeSettings
from tests.helpers import SpyGenerator, event, semantic_cache
from tests.unit.test_processor import Harness


class CountingCache(SemanticCache):
    """The real semantic cache, counting lookups."""

    lookups = 0

    async def lookup(
        self, prompt: str, scope: CacheScope, *, seed: int | None = None
    ) -> CacheHit | None:
        CountingCache.lookups += 1
        return await super().lookup(prompt, scope, seed=seed)


@pytest.fixture
def harness(make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any) -> Harness:
    return Harness(make_settings(), tmp_path, tiny_pipeline)


def harness_with(make_settings: MakeSettings, tmp_path: Path, tiny: Any, **over: Any) -> Harness:
    return Harness(make_settings(**over), tmp_path, tiny)


async def test_a_redelivered_event_gets_its_first_answer_without_lookup_or_generation(
    harness: Harness,
) -> None:
    line = event("e1", "a hummingbird at a feeder", seed=7, attributes={"campaign": "c1"})
    await harness.run([line])
    cache = semantic_cache()
    before = CountingCache.lookups
    cache.__class__ = CountingCache
    summary = await harness.run([line], cache=cache)
    first, copy = harness.results
    assert harness.spy.generated_ids == ["e1"]  # not generated again
    assert CountingCache.lookups == before  # not even looked up
    assert copy["redelivery"] is True and first["redelivery"] is False
    for field in ("result_id", "object_key", "video_url", "cache", "parameters", "timings"):
        assert copy[field] == first[field], field
    assert summary.outcomes[Outcome.GENERATED] == 1  # the copy counts as what it copies


async def test_a_cache_hit_copy_stays_a_hit_on_the_same_video(harness: Harness) -> None:
    await harness.run([event("lead", "a red kite over a hill")])
    hit_line = event("follower", "A red kite over a hill.")
    await harness.run([hit_line])
    # The cache now forgets everything; a redelivery must still give the same answer.
    await harness.run([hit_line], cache=semantic_cache())
    first, copy = [r for r in harness.results if r["event_id"] == "follower"]
    assert first["cache"] == copy["cache"] == "hit-exact"
    assert copy["video_url"] == first["video_url"]
    assert copy["matched_event_id"] == "lead"
    assert harness.spy.generated_ids == ["lead"]


async def test_a_dead_letter_is_pinned_too(harness: Harness) -> None:
    await harness.run(["{broken json"])
    await harness.run(["{broken json"])
    first, copy = harness.dead
    assert copy == first  # the very same letter, failed_at included


async def test_a_duplicate_record_whose_twin_failed_first_publishes_the_pinned_letter(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    """Two records of one event in flight together: the first one's generation fails and its
    dead letter is pinned; the second, generated meanwhile, publishes that letter too (no
    crash, and counted as the failed generation it publishes)."""
    settings = {"generation": {"device": "cpu", "retries": 0}}
    harness = harness_with(make_settings, tmp_path, tiny_pipeline, **settings)
    calls: list[str] = []

    def first_call_fails(request: GenerationRequest) -> bool:
        calls.append(request.event_id)
        return len(calls) == 1

    harness.spy = SpyGenerator(harness.spy.inner, fail=first_call_fails)
    line = event("twice", "a paper lantern on a river")
    with capture_logs() as logs:
        summary = await harness.run([line, line])
    assert harness.spy.generated_ids == ["twice", "twice"]  # the second did generate
    assert harness.results == []
    first, second = harness.dead
    assert second == first and first["reason"] == "generation_failed"
    assert summary.outcomes[Outcome.FAILED] == 2
    assert [e for e in logs if e["log_level"] == "error"] == []


async def test_the_same_event_id_with_another_request_is_a_conflict(harness: Harness) -> None:
    await harness.run([event("dup", "a cat on a sofa")])
    await harness.run([event("dup", "a dog on a sofa")])
    [result] = harness.results
    assert result["event_id"] == "dup"
    [letter] = harness.dead
    assert letter["reason"] == "event_id_conflict" and letter["event_id"] == "dup"
    assert "different request" in letter["detail"]
    assert harness.spy.generated_ids == ["dup"]


async def test_two_requests_under_one_event_id_in_flight_together_are_a_conflict(
    harness: Harness,
) -> None:
    """Both records pass the ledger look-up before either is answered: the one whose answer
    is pinned first keeps the id, the other is a conflict, never given that answer."""
    summary = await harness.run([event("dup", "a cat on a sofa"), event("dup", "a dog on a sofa")])
    [result] = harness.results
    [letter] = harness.dead
    assert result["redelivery"] is False
    assert letter["reason"] == "event_id_conflict" and letter["event_id"] == "dup"
    assert summary.outcomes[Outcome.GENERATED] == 1
    assert sum(summary.outcomes.values()) == 2
    # a redelivery of either record gets the same answer again
    await harness.run([event("dup", "a cat on a sofa"), event("dup", "a dog on a sofa")])
    assert len(harness.results) == 2 and len(harness.dead) == 2
    assert harness.results[1]["object_key"] == result["object_key"]
    assert harness.dead[1]["reason"] == "event_id_conflict"


async def race_two_requests_under_one_id(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any, *, failing_first: bool
) -> Harness:
    """ "dup"/cat and "dup"/dog in flight together, the dog's generation failing; the cat's
    answer pinned first, or the dog's dead letter."""
    settings = {"generation": {"device": "cpu", "retries": 0}, "batch": {"max_batch_size": 1}}
    harness = harness_with(make_settings, tmp_path, tiny_pipeline, **settings)

    def delay(requests: Any) -> float:
        dog = requests[0].prompt.startswith("a dog")
        return 0.0 if dog == failing_first else 0.5

    harness.spy = SpyGenerator(
        harness.spy.inner, delay_s=delay, fail=lambda r: r.prompt.startswith("a dog")
    )
    await harness.run([event("dup", "a cat on a sofa"), event("dup", "a dog on a sofa")])
    return harness


async def test_a_failed_request_never_publishes_another_requests_answer_under_its_id(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    """Whichever answer is pinned first owns the event id: the cat's result here, so the dog,
    failing later, gets its own dead letter (not the cat's result)."""
    harness = await race_two_requests_under_one_id(
        make_settings, tmp_path, tiny_pipeline, failing_first=False
    )
    [result] = harness.results
    [letter] = harness.dead
    assert result["redelivery"] is False
    assert letter["reason"] == "generation_failed" and letter["event_id"] == "dup"


async def test_a_result_never_goes_out_under_an_id_another_requests_failure_holds(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    """The dog's dead letter pinned first owns the id: the cat, generated later, is the
    conflict (not a copy of the dog's letter, and no result under the dog's id)."""
    harness = await race_two_requests_under_one_id(
        make_settings, tmp_path, tiny_pipeline, failing_first=True
    )
    assert harness.results == []
    assert sorted(letter["reason"] for letter in harness.dead) == [
        "event_id_conflict",
        "generation_failed",
    ]


async def test_a_producer_retry_with_new_timestamps_is_the_same_event(harness: Harness) -> None:
    await harness.run([event("e", "a tram at night", created_at="2026-12-01T00:00:00Z")])
    await harness.run([event("e", "a tram at night", created_at="2026-12-01T00:05:00Z")])
    first, copy = harness.results
    assert copy["redelivery"] is True and copy["object_key"] == first["object_key"]
    assert harness.dead == []


async def test_a_local_rerun_publishes_nothing_already_in_its_output(harness: Harness) -> None:
    lines = [event(f"e{i}", f"prompt {i}") for i in range(3)] + ["{bad"]
    await harness.run(lines)
    summary = await harness.run(lines, skip_answered=True)
    assert len(harness.results) == 3 and len(harness.dead) == 1
    assert summary.already_answered == 4
    assert summary.received == summary.already_answered
    assert len(harness.spy.generated_ids) == 3
    assert harness.source_used.position() == 4  # committed all the same


async def test_a_local_rerun_finishes_what_an_interrupted_run_left(harness: Harness) -> None:
    done = [event("a", "prompt a"), event("b", "prompt b")]
    await harness.run(done)
    summary = await harness.run([*done, event("c", "prompt c")], skip_answered=True)
    assert sorted(r["event_id"] for r in harness.results) == ["a", "b", "c"]
    assert summary.already_answered == 2 and summary.outcomes[Outcome.GENERATED] == 1
    assert harness.spy.generated_ids.count("a") == 1


async def test_reprocess_answers_anew_and_pins_the_new_answer(harness: Harness) -> None:
    line = event("e", "a heron", attributes={"cache": "bypass"})
    await harness.run([line])
    await harness.run([line], reprocess=True)
    await harness.run([line])
    first, anew, copy = harness.results
    assert anew["redelivery"] is False and copy["redelivery"] is True
    assert copy["timings"] == anew["timings"] != first["timings"]
    assert harness.spy.generated_ids == ["e", "e"]


async def test_without_a_ledger_a_redelivery_is_answered_anew(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    harness = harness_with(make_settings, tmp_path, tiny_pipeline, ledger={"backend": "none"})
    line = event("e", "a heron", attributes={"cache": "bypass"})
    await harness.run([line])
    await harness.run([line])
    assert harness.spy.generated_ids == ["e", "e"]
    assert not any(r["redelivery"] for r in harness.results)


# -- seeds -----------------------------------------------------------------------------------


async def test_an_explicit_seed_is_answered_only_by_a_video_of_that_seed(
    harness: Harness,
) -> None:
    await harness.run([event("s1", "a lighthouse in fog", seed=1)])
    await harness.run([event("s999", "a lighthouse in fog", seed=999)])
    await harness.run([event("again1", "a lighthouse in fog", seed=999)])
    by_id = {r["event_id"]: r for r in harness.results}
    assert harness.spy.generated_ids == ["s1", "s999"]  # seed 999 was not served seed 1
    assert by_id["s999"]["cache"] == "miss" and by_id["s999"]["parameters"]["seed"] == 999
    assert by_id["again1"]["cache"] == "hit-exact"
    assert by_id["again1"]["matched_event_id"] == "s999"
    assert by_id["again1"]["parameters"]["seed"] == 999


async def test_a_hit_reports_the_parameters_of_the_video_it_serves(harness: Harness) -> None:
    await harness.run([event("maker", "a windmill at dusk")])
    await harness.run([event("taker", "a windmill at dusk")])  # no seed: any video will do
    maker, taker = harness.results
    assert taker["cache"] == "hit-exact"
    assert taker["parameters"] == maker["parameters"]  # the maker's seed, not a derived one
    assert taker["object_key"] == maker["object_key"]


async def test_in_flight_requests_share_a_video_only_when_the_seed_allows(
    harness: Harness,
) -> None:
    lines = [
        event("lead", "a paper lantern", seed=5),
        event("same-seed", "a paper lantern", seed=5),
        event("other-seed", "a paper lantern", seed=6),
        event("any-seed", "a paper lantern"),
    ]
    await harness.run(lines)
    by_id = {r["event_id"]: r for r in harness.results}
    assert sorted(harness.spy.generated_ids) == ["lead", "other-seed"]
    assert by_id["same-seed"]["matched_event_id"] == "lead"
    assert by_id["other-seed"]["cache"] == "miss"
    assert by_id["any-seed"]["cache"] == "hit-exact"
    assert by_id["any-seed"]["parameters"]["seed"] in (5, 6)


async def test_without_a_cache_identical_requests_are_not_coalesced(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    from streamproc.cache.null import NullCache

    harness = harness_with(make_settings, tmp_path, tiny_pipeline, cache={"backend": "none"})
    lines = [event(f"d{i}", "a paper boat on a pond") for i in range(3)]
    await harness.run(lines, cache=NullCache())
    assert sorted(harness.spy.generated_ids) == ["d0", "d1", "d2"]
    assert {r["cache"] for r in harness.results} == {"miss"}


async def test_an_unreadable_ledger_entry_is_replaced_by_a_new_answer(harness: Harness) -> None:
    import sqlite3

    line = event("e", "a harbour crane")
    await harness.run([line])
    path = Path(harness.settings.storage.local_dir) / "ledger.sqlite3"
    with sqlite3.connect(path) as db:  # another version's (or a damaged) entry
        db.execute("UPDATE answers SET body = '{\"not\": \"a result\"}' WHERE key = 'event:e'")
    summary = await harness.run([line])
    _, anew = harness.results
    assert anew["redelivery"] is False and anew["event_id"] == "e"
    assert summary.outcomes[Outcome.HIT_EXACT] == 1  # answered anew (from the cache)
    await harness.run([line])
    assert harness.results[-1]["redelivery"] is True  # the new answer is pinned now
    assert harness.results[-1]["cache"] == "hit-exact"
