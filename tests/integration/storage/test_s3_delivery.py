"""The processor over S3: an outage delays results, never loses one or publishes a dead URL.

A bucket lost while running is no outage but a refusal (``ServiceRefused``, see
``test_s3.py``); how the worker faults on it is the processor's part."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
from structlog.testing import capture_logs

from streamproc.app import run_worker
from streamproc.bus.local import JsonlSink, JsonlSource
from streamproc.events import VideoResult
from streamproc.generation.wan import WanGenerator
from streamproc.settings import S3Settings
from tests.conftest import MakeSettings
from tests.helpers import SpyGenerator, event, read_jsonl, semantic_cache, wait_for, write_jsonl
from tests.integration.storage.conftest import MotoS3
from tests.integration.storage.test_s3 import fetch


class CheckingSink(JsonlSink):
    """The real JSONL sink; before each result is written, asks S3 whether its video exists."""

    def __init__(self, results: str, dead_letters: str, moto_s3: MotoS3, s3: S3Settings) -> None:
        super().__init__(results, dead_letters)
        self._moto = moto_s3
        self._s3 = s3
        self.stored_when_published: dict[str, bool] = {}

    async def publish(
        self,
        result: VideoResult,
        key: bytes | None,
        *,
        input_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        assert result.object_key is not None
        full = self._s3.key_prefix + result.object_key
        listed = await asyncio.to_thread(
            self._moto.client.list_objects_v2, Bucket=self._s3.bucket, Prefix=full
        )
        self.stored_when_published[result.event_id] = listed.get("KeyCount", 0) == 1
        await super().publish(result, key, input_headers=input_headers)


def store_failures(logs: list[dict[str, Any]], text: str) -> int:
    return sum(
        1
        for entry in logs
        if entry["event"] == "retrying"
        and entry.get("operation") == "store_put"
        and text in entry.get("error", "")
    )


def frames_of(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_an_outage_delays_results_until_the_videos_are_stored(
    make_settings: MakeSettings,
    tmp_path: Path,
    tiny_pipeline: Any,
    moto_s3: MotoS3,
    bucket: str,
) -> None:
    settings = make_settings(
        storage={
            "backend": "s3",
            "retry_initial_s": 0.05,
            "retry_max_s": 0.3,
            "s3": moto_s3.settings(bucket, prefix="outage"),
        },
        batch={"window_ms": 50, "max_batch_size": 2},
    )
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    spy.release.clear()  # the first batch stays on the "GPU" until the store is down
    prompts = [event(f"e{i}", f"a lantern number {i}") for i in range(5)]
    source = JsonlSource(
        str(write_jsonl(tmp_path / "in.jsonl", [*prompts, event("dup", "a lantern number 0")]))
    )
    sink = CheckingSink(
        settings.local.results, settings.local.dead_letters, moto_s3, settings.storage.s3
    )
    results = Path(settings.local.results)
    with capture_logs() as logs:
        # The store is built from the settings and entered by run_worker.
        task = asyncio.create_task(
            run_worker(
                settings,
                source=source,
                sink=sink,
                generator=spy,
                cache=semantic_cache(),
                handle_signals=False,
            )
        )
        try:
            await wait_for(lambda: bool(spy.calls), 60)  # events are in flight
            moto_s3.stop()
            spy.release.set()
            await wait_for(lambda: store_failures(logs, "cannot reach S3") >= 3, 60)
            assert read_jsonl(results) == []
            assert source.committed.get(source.partition, 0) == 0
            moto_s3.start()
            summary = await asyncio.wait_for(task, 120)
        finally:
            spy.release.set()
            moto_s3.start()  # for the other tests, whatever happened
    assert summary.finished == 6 and summary.abandoned == 0
    published = read_jsonl(results)
    assert sorted(r["event_id"] for r in published) == ["dup", "e0", "e1", "e2", "e3", "e4"]
    assert sink.stored_when_published == dict.fromkeys(["dup", "e0", "e1", "e2", "e3", "e4"], True)
    assert source.committed[source.partition] == 6
    for result in published:
        assert result["status"] == "ok"
        data = fetch(result["video_url"])
        assert data == moto_s3.read(bucket, f"outage/{result['object_key']}")
        assert frames_of(data) == 5
    by_id = {r["event_id"]: r for r in published}
    assert by_id["dup"]["cache"] == "hit-exact"
    assert by_id["dup"]["object_key"] == by_id["e0"]["object_key"]
