"""The metrics registry and the readiness checks, without a server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from streamproc.bus.base import Partition
from streamproc.health import Readiness, readiness_of
from streamproc.metrics import OUTCOMES, Metrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


async def test_each_instance_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.events_received.inc(3)
    assert samples(await two.render())[("streamproc_events_received_total", ())] == 0
    assert samples(await one.render())[("streamproc_events_received_total", ())] == 3


async def test_every_outcome_is_exported_at_zero_before_any_event() -> None:
    got = samples(await Metrics().render())
    for outcome in OUTCOMES:
        assert got[("streamproc_events_finished_total", (("outcome", outcome),))] == 0


async def test_partitions_given_away_disappear_from_per_partition_gauges() -> None:
    metrics = Metrics()
    a, b = Partition("p", 0), Partition("p", 1)
    metrics.set_partition(metrics.consumer_lag, {a: 5, b: 7})
    metrics.set_partition(metrics.consumer_lag, {b: 2})
    lag = {k: v for k, v in samples(await metrics.render()).items() if k[0].endswith("lag_records")}
    assert lag == {("streamproc_consumer_lag_records", (("partition", "1"), ("topic", "p"))): 2}


async def test_the_hit_ratio_counts_exact_and_semantic_hits() -> None:
    metrics = Metrics()
    metrics.cache_lookup("miss", None)
    metrics.cache_lookup("hit-exact", 1.0)
    metrics.cache_lookup("hit-semantic", 0.9)
    metrics.cache_lookup("miss", None)
    got = samples(await metrics.render())
    assert got[("streamproc_cache_hit_ratio", ())] == 0.5
    assert got[("streamproc_cache_similarity_count", ())] == 2


async def test_a_failing_refresher_does_not_break_the_scrape() -> None:
    metrics = Metrics()

    async def broken() -> None:
        raise RuntimeError("broker gone")

    remove = metrics.add_refresher(broken)
    assert b"streamproc_events_received_total" in await metrics.render()
    remove()


async def test_readiness_names_failed_raising_and_silent_checks() -> None:
    readiness = Readiness()
    set_model = readiness.add_flag("model", "loading")

    async def raises() -> tuple[bool, str]:
        raise ConnectionError("refused")

    async def ok() -> tuple[bool, str]:
        return True, "fine"

    readiness.add("store", raises)
    readiness.add("broker", ok)
    results = {r.name: r for r in await readiness.run()}
    assert not results["model"].ok and results["model"].detail == "loading"
    assert not results["store"].ok and "refused" in results["store"].detail
    assert results["broker"].ok
    set_model(True)
    assert {r.name for r in await readiness.run() if not r.ok} == {"store"}


async def test_a_passing_flag_reports_the_detail_it_was_set_with() -> None:
    readiness = Readiness()
    set_model = readiness.add_flag("model", "loading")
    set_model(True, "warmed up; compile cache warm (key abc)")
    [result] = await readiness.run()
    assert result.ok and result.detail == "warmed up; compile cache warm (key abc)"


async def test_a_hanging_check_fails_within_the_timeout() -> None:
    readiness = Readiness(timeout_s=0.05)

    async def hangs() -> tuple[bool, str]:
        await asyncio.Event().wait()
        return True, ""

    readiness.add("broker", hangs)
    [result] = await readiness.run()
    assert not result.ok and "no answer" in result.detail


def test_the_operations_guide_lists_every_metric() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for info in Metrics().catalogue():
        assert f"`{info.series_names[0].removesuffix('_bucket')}" in guide, info.name


async def test_components_that_talk_to_a_service_bring_their_own_check() -> None:
    class Remote:
        async def readiness(self) -> tuple[bool, str]:
            return False, "refused"

    assert await readiness_of(Remote(), "embedded")() == (False, "refused")
    assert await readiness_of(object(), "embedded store")() == (True, "embedded store")
