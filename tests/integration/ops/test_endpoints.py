"""The operations endpoints of an embedded run: every metric moves as events flow, /readyz
turns true only after warm-up, /healthz answers throughout."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from streamproc.app import run_worker
from streamproc.errors import StorageError
from streamproc.generation.wan import WanGenerator
from streamproc.metrics import OUTCOMES, STAGES
from streamproc.settings import Settings
from streamproc.storage.local import LocalObjectStore
from tests.conftest import MakeSettings
from tests.helpers import (
    GatedSource,
    SpyGenerator,
    event,
    free_port,
    read_jsonl,
    semantic_cache,
    wait_for,
    write_jsonl,
)
from tests.integration.ops.scrape import Samples, get, ready, scrape, scrape_until, series, value

LIGHTHOUSE = "a lighthouse on a cliff during a thunderstorm"
PARAPHRASE = "during a thunderstorm, a lighthouse on a cliff"


class WarmingGenerator(SpyGenerator):
    """The spy around the tiny pipeline; ``start`` (load and warm-up) waits for the test."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.warmed = asyncio.Event()

    async def start(self) -> None:
        await self.warmed.wait()
        await super().start()


class OnceFailingStore(LocalObjectStore):
    """The real local store; its first put fails (a transient outage the processor retries)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.failed = False

    async def put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> str:
        if not self.failed:
            self.failed = True
            raise StorageError("injected outage")
        return await super().put(key, data, metadata)


def ops_settings(make_settings: MakeSettings) -> Settings:
    return make_settings(metrics={"port": free_port(), "host": "127.0.0.1"})


async def test_every_metric_moves_as_events_flow_and_readyz_follows_the_warm_up(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = ops_settings(make_settings)
    port = settings.metrics.port
    lines: list[Any] = [
        event("gen", LIGHTHOUSE),  # generated (held on the "GPU" while we look)
        event("other", "a bowl of ramen on a wooden table", num_frames=9),  # queued meanwhile
        event("exact", LIGHTHOUSE),  # hit-exact
        event("semantic", PARAPHRASE),  # hit-semantic
        "{broken json",  # dead-lettered
        event("poison", "a poisoned prompt about a tower"),  # failed
        event("last", "a kite over a beach"),  # released last: keeps the run alive
    ]
    source = GatedSource(write_jsonl(tmp_path / "in.jsonl", lines))
    spy = WarmingGenerator(
        WanGenerator(settings.generation, loaded=tiny_pipeline),
        fail=lambda r: r.event_id == "poison",
    )
    store = OnceFailingStore(Path(settings.storage.local_dir))
    run = asyncio.create_task(
        run_worker(
            settings,
            source=source,
            store=store,
            generator=spy,
            cache=semantic_cache(),
            handle_signals=False,
        )
    )
    try:
        # Before warm-up: alive, not ready, nothing counted.
        await _until_serving(port, run)
        assert (await get(port, "/healthz"))[0] == 200
        status, body = await ready(port)
        assert status == 503 and body["failed"] == ["model"]
        before = await scrape(port)
        assert value(before, "streamproc_events_received_total") == 0
        assert value(before, "streamproc_model_loaded") == 0

        spy.warmed.set()
        await _until(lambda: _ready(port))
        status, body = await ready(port)
        assert status == 200 and body["ready"] is True
        assert set(body["checks"]) == {"model", "store", "broker", "cache", "worker"}

        # During: one batch held on the GPU, a second shape waits in the batcher.
        spy.release.clear()
        source.release(2)
        await wait_for(lambda: spy.calls != [], seconds=30)
        during = await scrape_until(port, lambda s: value(s, "streamproc_batcher_queue_depth") >= 1)
        assert value(during, "streamproc_events_received_total") == 2
        assert value(during, "streamproc_events_in_flight") == 2
        spy.release.set()
        await wait_for(lambda: "gen" in _answered(settings), seconds=60)

        source.release(4)
        done = {"gen", "other", "exact", "semantic"}  # the poison ends as a dead letter only
        await wait_for(lambda: done <= _answered(settings), seconds=120)
        await wait_for(lambda: len(read_jsonl(Path(settings.local.dead_letters))) >= 2)
        after = await scrape_until(
            port,
            lambda s: value(s, "streamproc_committed_offset", topic="in.jsonl", partition="0") == 6,
        )
    finally:
        source.release(1)
        await asyncio.wait_for(run, 120)

    assert value(after, "streamproc_events_received_total") == 6
    for outcome in OUTCOMES:
        if outcome in ("already-answered", "cancelled"):
            # Only a re-run of the same input has the first; the second needs a control event
            # (counted in tests/unit/control/test_processor_control.py).
            continue
        assert value(after, "streamproc_events_finished_total", outcome=outcome) >= 1, outcome
        assert value(after, "streamproc_end_to_end_latency_seconds_count", outcome=outcome) >= 1, (
            outcome
        )
    for stage in STAGES:
        assert value(after, "streamproc_stage_duration_seconds_count", stage=stage) > value(
            before, "streamproc_stage_duration_seconds_count", stage=stage
        ), stage
    assert value(after, "streamproc_batch_size_count") >= 2
    assert value(after, "streamproc_batch_size_sum") >= 2
    assert value(after, "streamproc_batches_total") >= 2
    assert value(after, "streamproc_batcher_wait_seconds_count") >= 3
    assert value(after, "streamproc_batcher_queue_depth") == 0
    assert value(after, "streamproc_videos_generated_total") == 2  # gen, other
    assert value(after, "streamproc_cache_lookups_total", result="hit-exact") >= 1
    assert value(after, "streamproc_cache_lookups_total", result="hit-semantic") == 1
    assert value(after, "streamproc_cache_lookups_total", result="miss") >= 3
    assert 0 < value(after, "streamproc_cache_hit_ratio") < 1
    assert value(after, "streamproc_cache_similarity_count") >= 2
    assert value(after, "streamproc_retries_total", operation="store_put") >= 1
    assert value(after, "streamproc_commits_total", result="ok") >= 1
    assert value(after, "streamproc_model_loaded") == 1
    assert value(after, "streamproc_ready") == 1
    _assert_gpu_metrics(after)


def _assert_gpu_metrics(samples: Samples) -> None:
    """GPU gauges exist exactly when the model runs on CUDA (documented in operations.md)."""
    gpu = [
        "streamproc_gpu_memory_used_bytes",
        "streamproc_gpu_memory_peak_bytes",
    ]
    if torch.cuda.is_available():  # pragma: no cover - the CI machine has no GPU
        assert all(series(samples, name) for name in gpu)
    else:
        assert not any(series(samples, name) for name in [*gpu, "streamproc_gpu_utilization_ratio"])


async def test_the_endpoints_go_away_with_the_worker(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = ops_settings(make_settings)
    port = settings.metrics.port
    source = GatedSource(write_jsonl(tmp_path / "in.jsonl", [event("only")]))
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    run = asyncio.create_task(
        run_worker(
            settings, source=source, generator=spy, cache=semantic_cache(), handle_signals=False
        )
    )
    try:
        await _until(lambda: _ready(port))
        assert (await get(port, "/healthz"))[0] == 200
    finally:
        source.release(1)
        await asyncio.wait_for(run, 120)
    assert (await get(port, "/healthz"))[0] == 0
    assert (await get(port, "/metrics"))[0] == 0


def _answered(settings: Settings) -> set[str]:
    return {r["event_id"] for r in read_jsonl(Path(settings.local.results))}


async def _ready(port: int) -> bool:
    return (await ready(port))[0] == 200


async def _until(check: Any, seconds: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def _until_serving(port: int, run: asyncio.Task[Any]) -> None:
    async def serving() -> bool:
        if run.done():
            run.result()  # re-raise a failed start
        return (await get(port, "/healthz"))[0] == 200

    await _until(serving)
