"""A Redis outage in the middle of a run: no event lost or stalled, sharing resumes after."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from streamproc.app import run_worker
from streamproc.cache.base import CacheScope
from streamproc.cache.redis_store import RedisStore
from streamproc.generation.wan import WanGenerator
from tests.conftest import MakeSettings
from tests.helpers import (
    GatedSource,
    RedisServer,
    SpyGenerator,
    event,
    read_jsonl,
    semantic_cache,
    wait_for,
    write_jsonl,
)

FOX = "a red fox crossing a frozen lake at dawn"
LIGHTHOUSE = "a lighthouse on a cliff during a thunderstorm"
RAMEN = "a bowl of ramen on a wooden table"


async def test_redis_stopped_and_restarted_mid_run_loses_nothing_and_hits_resume(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    lines = [
        event("e1", FOX),
        event("e2", FOX),  # during the outage: a repeat
        event("e3", LIGHTHOUSE),  # during the outage: new
        event("e4", "during a thunderstorm, a lighthouse on a cliff"),  # after: a paraphrase
        event("e5", RAMEN),  # after: new
    ]
    source = GatedSource(write_jsonl(tmp_path / "in.jsonl", lines))
    settings = make_settings()
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))

    def store() -> RedisStore:
        return RedisStore(
            server.url, namespace="outage", op_timeout_s=0.25, block_s=0.2, reconnect_max_s=0.3
        )

    worker_store, other_store = store(), store()
    worker = semantic_cache(shared=worker_store)
    other = semantic_cache(shared=other_store)  # another worker sharing the Redis
    scope = CacheScope(spy.model_id, 64, 32, 5, 2, 5.0)
    await other.start()

    def results() -> dict[str, dict[str, Any]]:
        return {r["event_id"]: r for r in read_jsonl(Path(settings.local.results))}

    run = asyncio.create_task(
        run_worker(settings, source=source, generator=spy, cache=worker, handle_signals=False)
    )
    try:
        source.release(1)
        await wait_for(lambda: "e1" in results(), seconds=60)
        await wait_for(lambda: len(other.store) == 1)  # shared while Redis is up

        server.stop()
        await wait_for(lambda: not worker_store.available and not other_store.available)
        source.release(2)
        await wait_for(lambda: {"e2", "e3"} <= results().keys(), seconds=60)

        server.start()  # empty: it kept nothing
        await wait_for(lambda: worker_store.available and other_store.available, seconds=30)
        # What the worker generated during the outage was queued and is shared now.
        await wait_for(lambda: len(other.store) == 2, seconds=10)
        hit = await other.lookup(LIGHTHOUSE, scope)
        assert hit is not None and hit.entry.event_id == "e3"

        source.release(2)
        summary = await asyncio.wait_for(run, 60)
        await wait_for(lambda: len(other.store) == 3)  # and new entries flow again
        assert (await other.lookup(RAMEN, scope)) is not None
    finally:
        if not run.done():
            run.cancel()
        await other.stop()
        server.stop()

    outcome = {i: (r["status"], r["cache"], r["matched_event_id"]) for i, r in results().items()}
    assert outcome == {
        "e1": ("ok", "miss", None),
        "e2": ("ok", "hit-exact", "e1"),
        "e3": ("ok", "miss", None),
        "e4": ("ok", "hit-semantic", "e3"),
        "e5": ("ok", "miss", None),
    }
    assert summary.finished == summary.received == 5 and summary.abandoned == 0
    assert read_jsonl(Path(settings.local.dead_letters)) == []
    assert source.committed[source.partition] == 5
    assert sorted(spy.generated_ids) == ["e1", "e3", "e5"]
    assert worker_store.stats.outages == 1 and worker_store.stats.reconnects == 1
