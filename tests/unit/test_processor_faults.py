"""The processor with faults injected: every record ends as exactly one outcome or stays
uncommitted on purpose, supervised tasks that crash stop the worker loudly, permanent faults
are never retried as outages."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from streamproc.app import run_worker
from streamproc.batching import ShapeKey
from streamproc.bus.base import Partition
from streamproc.bus.local import JsonlSink
from streamproc.cache.null import NullCache
from streamproc.errors import GeneratorLost, RecordRejected, ServiceRefused
from streamproc.events import DeadLetter, VideoResult
from streamproc.generation.base import GeneratedBatch, GenerationRequest
from streamproc.generation.encode import EncoderPool
from streamproc.generation.wan import WanGenerator
from streamproc.health import Readiness
from streamproc.metrics import Metrics
from streamproc.processor import ExitStatus, Outcome, Processor, RunSummary
from streamproc.settings import Settings
from streamproc.storage.local import LocalObjectStore
from tests.conftest import MakeSettings
from tests.helpers import SpyGenerator, event, read_jsonl, wait_for, write_jsonl
from tests.unit.test_processor import RecordingSource


class Rig:
    """A processor over the real JSONL transport, local store and tiny pipeline, with
    components that tests replace to inject faults."""

    def __init__(self, settings: Settings, tmp_path: Path, tiny: tuple[Any, str]) -> None:
        self.settings = settings
        self.tmp = tmp_path
        self.generator: Any = SpyGenerator(WanGenerator(settings.generation, loaded=tiny))
        self.store: Any = LocalObjectStore(Path(settings.storage.local_dir))
        self.sink: Any = JsonlSink(settings.local.results, settings.local.dead_letters)
        self.metrics = Metrics()

    async def run(self, lines: list[Any], **kwargs: Any) -> RunSummary:
        self.source = kwargs.pop("source", None) or RecordingSource(
            write_jsonl(self.tmp / "in.jsonl", lines)
        )
        return await run_worker(
            self.settings,
            source=self.source,
            sink=self.sink,
            store=self.store,
            generator=self.generator,
            cache=NullCache(),
            handle_signals=False,
            metrics=self.metrics,
            **kwargs,
        )

    @property
    def results(self) -> list[dict[str, Any]]:
        return read_jsonl(Path(self.settings.local.results))

    @property
    def dead(self) -> list[dict[str, Any]]:
        return read_jsonl(Path(self.settings.local.dead_letters))


@pytest.fixture
def rig(make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any) -> Rig:
    return Rig(make_settings(), tmp_path, tiny_pipeline)


def adds_up(summary: RunSummary, rig: Rig) -> None:
    """The summary is true: received = results + dead letters + abandoned, as written."""
    assert summary.results == len(rig.results)
    assert summary.dead_letters == len(rig.dead)
    assert summary.received == summary.results + summary.dead_letters + summary.abandoned


# -- the choke point ---------------------------------------------------------------------


class ExplodingGenerator(SpyGenerator):
    """Raises an exception no layer expects (not a GenerationError) for chosen events."""

    def __init__(self, inner: Any, boom: set[str], exc: BaseException) -> None:
        super().__init__(inner)
        self.boom = boom
        self.exc = exc

    async def generate(
        self, shape: ShapeKey, requests: Sequence[GenerationRequest], control: Any = None
    ) -> GeneratedBatch:
        if any(r.event_id in self.boom for r in requests):
            raise self.exc
        return await super().generate(shape, requests)


class WrongCountGenerator(SpyGenerator):
    """A generator bug: returns one video too few."""

    async def generate(
        self, shape: ShapeKey, requests: Sequence[GenerationRequest], control: Any = None
    ) -> GeneratedBatch:
        batch = await super().generate(shape, requests)
        return GeneratedBatch(batch.videos[:-1], batch.stage_seconds)


async def test_an_unexpected_exception_in_a_stage_becomes_an_internal_error_dead_letter(
    rig: Rig,
) -> None:
    rig.store = BrokenUrlStore(Path(rig.settings.storage.local_dir))
    summary = await rig.run([event("a", "one"), event("b", "two")])
    assert {d["event_id"] for d in rig.dead} == {"a", "b"}
    for letter in rig.dead:
        assert letter["reason"] == "internal_error"
        assert letter["error_class"] == "KeyError"
        assert "KeyError" in letter["detail"]
    assert rig.results == []
    assert rig.source.position() == 2  # both offsets finished and committed
    adds_up(summary, rig)
    assert summary.exit_status == ExitStatus.OK


class BrokenUrlStore(LocalObjectStore):
    """A store whose put raises something no retry policy knows."""

    async def put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> str:
        raise KeyError("bucket-map")


async def test_a_generator_bug_dead_letters_its_events_and_spares_none_of_the_offsets(
    rig: Rig,
) -> None:
    rig.generator = WrongCountGenerator(rig.generator.inner)
    summary = await rig.run([event(f"e{i}", f"prompt {i}") for i in range(3)])
    assert len(rig.dead) == 3
    assert {d["reason"] for d in rig.dead} == {"generation_failed"}
    assert "returned" in rig.dead[0]["detail"]
    assert rig.source.position() == 3
    adds_up(summary, rig)


async def test_recursion_error_from_a_stage_is_an_outcome_not_a_hang(rig: Rig) -> None:
    rig.generator = ExplodingGenerator(
        rig.generator.inner, {"deep"}, RecursionError("maximum recursion depth exceeded")
    )
    summary = await rig.run([event("deep", "one"), event("fine", "two")])
    [letter] = rig.dead
    assert letter["event_id"] == "deep" and letter["reason"] == "generation_failed"
    assert [r["event_id"] for r in rig.results] == ["fine"]
    adds_up(summary, rig)


class UnserialisableSink(JsonlSink):
    """The real JSONL sink behind a check that results with a marker attribute fail to
    serialise (as a lone surrogate would)."""

    async def publish(
        self,
        result: VideoResult,
        key: bytes | None,
        *,
        input_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        if result.attributes.get("poison"):
            "\ud800".encode()  # UnicodeEncodeError, as the JSON encoding would raise
        await super().publish(result, key, input_headers=input_headers)


async def test_a_result_that_cannot_be_serialised_dead_letters_its_event(rig: Rig) -> None:
    rig.sink = UnserialisableSink(rig.settings.local.results, rig.settings.local.dead_letters)
    summary = await rig.run([event("p", "one", attributes={"poison": 1}), event("q", "two")])
    [letter] = rig.dead
    assert letter["event_id"] == "p"
    assert letter["reason"] == "internal_error"
    assert letter["error_class"] == "UnicodeEncodeError"
    assert [r["event_id"] for r in rig.results] == ["q"]
    adds_up(summary, rig)


class SizeLimitedSink(JsonlSink):
    """The real JSONL sink refusing records above ``limit`` bytes, as a broker does."""

    def __init__(self, results: str, dead: str, limit: int) -> None:
        super().__init__(results, dead)
        self.limit = limit
        self.refused: list[int] = []

    def _check(self, body: str) -> None:
        if len(body.encode()) > self.limit:
            self.refused.append(len(body.encode()))
            raise RecordRejected(f"record of {len(body)} bytes is too large", component="sink")

    async def publish(
        self,
        result: VideoResult,
        key: bytes | None,
        *,
        input_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self._check(result.model_dump_json())
        await super().publish(result, key, input_headers=input_headers)

    async def dead_letter(
        self,
        letter: DeadLetter,
        key: bytes | None,
        *,
        input_headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        self._check(letter.model_dump_json())
        await super().dead_letter(letter, key, input_headers=input_headers)


async def test_a_result_too_large_for_the_sink_dead_letters_its_event_once(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    rig = Rig(make_settings(dead_letters={"max_original_bytes": 4096}), tmp_path, tiny_pipeline)
    rig.sink = SizeLimitedSink(rig.settings.local.results, rig.settings.local.dead_letters, 10_000)
    big = event("big", "one", attributes={"blob": "x" * 12_000})
    summary = await rig.run([big, event("small", "two")])
    [letter] = rig.dead
    assert letter["event_id"] == "big" and letter["reason"] == "result_too_large"
    assert [r["event_id"] for r in rig.results] == ["small"]
    assert len(rig.sink.refused) == 1  # refused once, never retried as an outage
    adds_up(summary, rig)


async def test_a_dead_letter_still_too_large_goes_out_without_its_original(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(dead_letters={"max_original_bytes": 4096})
    rig = Rig(settings, tmp_path, tiny_pipeline)
    rig.sink = SizeLimitedSink(settings.local.results, settings.local.dead_letters, 3000)
    raw = b"{" + b"x" * 20_000  # malformed
    summary = await rig.run([raw.decode()])
    [letter] = rig.dead
    assert letter["reason"] == "malformed"
    assert letter["original"] == "" and letter["original_truncated"] is True
    assert letter["original_size"] == len(raw)
    assert letter["original_sha256"] == hashlib.sha256(raw).hexdigest()
    adds_up(summary, rig)


async def test_a_long_original_is_capped_with_its_size_and_hash(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(dead_letters={"max_original_bytes": 2048})
    rig = Rig(settings, tmp_path, tiny_pipeline)
    raw = b'{"event_id": "long", "prompt": ' + b"9" * 10_000 + b"}"
    await rig.run([raw.decode()])
    [letter] = rig.dead
    kept = DeadLetter.model_validate(letter).original_bytes()
    assert kept == raw[:2048]
    assert letter["original_truncated"] is True
    assert letter["original_size"] == len(raw)
    assert letter["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert letter["original_url"] is None


async def test_a_capped_original_can_be_kept_whole_in_the_store(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(dead_letters={"max_original_bytes": 2048, "store_originals": True})
    rig = Rig(settings, tmp_path, tiny_pipeline)
    raw = b"not json " * 1000
    await rig.run([raw.decode()])
    [letter] = rig.dead
    assert letter["original_truncated"] is True
    url = letter["original_url"]
    assert url is not None and url.startswith("file://")
    kept = await asyncio.to_thread(Path(url.removeprefix("file://")).read_bytes)
    assert kept == raw


# -- permanent faults ----------------------------------------------------------------------


class RefusingStore(LocalObjectStore):
    """A store that, like S3 with revoked credentials, refuses every write for good."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts = 0

    async def put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> str:
        self.puts += 1
        raise ServiceRefused("access denied to bucket 'videos' at http://s3", component="store")


async def test_a_refused_store_faults_the_worker_instead_of_retrying(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(faults={"exit_after_s": 0.5}, batch={"max_batch_size": 2})
    rig = Rig(settings, tmp_path, tiny_pipeline)
    rig.store = RefusingStore(Path(settings.storage.local_dir))
    lines = [event(f"e{i}", f"prompt {i}") for i in range(6)]
    summary = await asyncio.wait_for(rig.run(lines), 120)
    assert summary.faulted is not None and "access denied" in summary.faulted
    assert summary.exit_status == ExitStatus.FAULTED
    assert rig.store.puts <= 6  # each event tried at most once: no retry loop
    assert rig.results == [] and rig.dead == []  # not the records' fault: no dead letters
    assert summary.abandoned == summary.received  # all stay uncommitted
    assert rig.source.position() in (None, 0)
    adds_up(summary, rig)
    assert rig.metrics.faults.labels("store")._value.get() == 1


async def test_readiness_names_the_fault_while_the_worker_waits_to_exit(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(faults={"exit_after_s": 60})
    rig = Rig(settings, tmp_path, tiny_pipeline)
    rig.store = RefusingStore(Path(settings.storage.local_dir))
    source = RecordingSource(write_jsonl(tmp_path / "in.jsonl", [event("e", "one")]))
    processor = Processor(
        settings,
        source=source,
        sink=rig.sink,
        store=rig.store,
        generator=rig.generator,
        cache=NullCache(),
    )
    readiness = Readiness()

    async def check() -> tuple[bool, str]:
        return processor.healthy

    readiness.add("worker", check)
    await rig.generator.start()
    async with source, rig.sink:
        run = asyncio.create_task(processor.run())
        await wait_for(lambda: processor.summary.faulted is not None, 60)
        [result] = await readiness.run()
        assert not result.ok and "store" in result.detail and "access denied" in result.detail
        assert source.pauses >= 1  # consumption paused
        processor.request_stop()
        summary = await asyncio.wait_for(run, 60)
    assert summary.exit_status == ExitStatus.FAULTED


class RefusingCommitSource(RecordingSource):
    async def commit(self, positions: Mapping[Partition, int]) -> None:
        raise ServiceRefused("not authorised for group 'g'", component="source")


async def test_a_refused_commit_faults_the_worker(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(faults={"exit_after_s": 0.2})
    rig = Rig(settings, tmp_path, tiny_pipeline)
    source = RefusingCommitSource(write_jsonl(tmp_path / "in.jsonl", [event("e", "one")]))
    summary = await asyncio.wait_for(rig.run([], source=source), 120)
    assert summary.faulted is not None and "group" in summary.faulted
    assert summary.exit_status == ExitStatus.FAULTED


# -- supervision ----------------------------------------------------------------------------


async def test_a_crashed_gpu_loop_stops_the_worker_without_hanging_the_drain(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0
    original = Processor._gpu_loop

    async def crashing(self: Processor) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)  # events are queued for the GPU by now
        raise RuntimeError("gpu loop bug")

    monkeypatch.setattr(Processor, "_gpu_loop", crashing)
    summary = await asyncio.wait_for(rig.run([event(f"e{i}", f"prompt {i}") for i in range(5)]), 60)
    assert original is not crashing and calls == 1
    assert summary.crashed is not None and "gpu loop" in summary.crashed
    assert summary.exit_status == ExitStatus.CRASHED
    assert summary.abandoned == 5  # nothing could finish; all stay uncommitted
    adds_up(summary, rig)
    assert rig.metrics.task_crashes.labels("gpu loop")._value.get() == 1


async def test_a_crashed_batch_runner_dead_letters_its_batch_and_stops_the_worker(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_stage(self: Processor, name: str, seconds: float) -> None:
        if name == "denoise":
            raise ValueError("metrics bug")

    monkeypatch.setattr(Processor, "_add_stage", broken_stage)
    summary = await asyncio.wait_for(rig.run([event("a", "one"), event("b", "two")]), 60)
    assert summary.crashed is not None and "batch runner" in summary.crashed
    assert {d["event_id"] for d in rig.dead} == {"a", "b"}
    assert {d["reason"] for d in rig.dead} == {"internal_error"}
    adds_up(summary, rig)


async def test_a_crashed_commit_loop_stops_the_worker(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    class BuggySource(RecordingSource):
        async def commit(self, positions: Mapping[Partition, int]) -> None:
            raise AttributeError("commit bug")

    rig = Rig(make_settings(), tmp_path, tiny_pipeline)
    rig.generator.release.clear()  # hold the "GPU" so the run lasts past the first commit
    lines = [event("a", "one")]
    source = BuggySource(write_jsonl(tmp_path / "in.jsonl", lines))
    run = asyncio.create_task(rig.run([], source=source))
    await asyncio.sleep(0.5)
    rig.generator.release.set()
    summary = await asyncio.wait_for(run, 60)
    assert summary.crashed is not None and "commit" in summary.crashed
    assert summary.exit_status == ExitStatus.CRASHED


async def test_a_crashed_input_task_stops_the_worker(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    class CrashingSource(RecordingSource):
        async def records(self) -> Any:
            async for record in super().records():
                yield record
                raise LookupError("source bug")

    rig = Rig(make_settings(), tmp_path, tiny_pipeline)
    lines = [event("a", "one"), event("b", "two")]
    source = CrashingSource(write_jsonl(tmp_path / "in.jsonl", lines))
    summary = await asyncio.wait_for(rig.run([], source=source), 60)
    assert summary.crashed is not None and "input" in summary.crashed
    assert summary.received == 1 and summary.results == 1  # what was admitted still finished
    assert summary.exit_status == ExitStatus.CRASHED


# -- the encoder pool ------------------------------------------------------------------------


async def test_a_broken_encoder_pool_is_rebuilt_and_its_events_are_not_lost(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = make_settings(encoding={"executor": "process", "workers": 2})
    rig = Rig(settings, tmp_path, tiny_pipeline)
    encoder = EncoderPool(settings.encoding)
    killed: list[int] = []

    class KillingGenerator(SpyGenerator):
        async def generate(
            self, shape: ShapeKey, requests: Sequence[GenerationRequest], control: Any = None
        ) -> GeneratedBatch:
            batch = await super().generate(shape, requests)
            if not killed:  # kill one encoder process while this batch is about to encode
                pool: Any = encoder._pool
                pid = next(iter(pool._processes))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            return batch

    rig.generator = KillingGenerator(rig.generator.inner)
    lines = [event(f"e{i}", f"prompt {i}") for i in range(6)]
    summary = await asyncio.wait_for(rig.run(lines, encoder=encoder), 180)
    assert killed
    assert encoder.rebuilds >= 1
    assert summary.outcomes[Outcome.GENERATED] == 6
    assert rig.dead == []
    adds_up(summary, rig)


async def test_a_video_that_keeps_killing_the_encoder_dead_letters_instead_of_looping(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(encoding={"executor": "process", "workers": 1})
    pool = EncoderPool(settings.encoding, attempts=2)
    import numpy as np

    from streamproc.generation import encode

    blocks: list[str] = []
    real_copy = encode._copy_to_shared

    def recorded_copy(frames: Any) -> Any:
        block = real_copy(frames)
        blocks.append(block.name)
        return block

    # Frames reach the processes through shared memory (encode_shared) or pickled
    # (encode_mp4): both die.
    monkeypatch.setattr(encode, "encode_mp4", _die)
    monkeypatch.setattr(encode, "encode_shared", _die)
    monkeypatch.setattr(encode, "_copy_to_shared", recorded_copy)
    async with pool:
        with pytest.raises(RecordRejected, match="died 2 times"):
            await pool.encode(np.zeros((1, 32, 32, 3), np.uint8), 16)
    assert pool.rebuilds == 2
    assert len(blocks) == 1  # one block for all attempts, removed after the last
    assert not _shm_exists(blocks[0])


def _shm_exists(name: str) -> bool:
    return os.path.exists(os.path.join("/dev/shm", name.lstrip("/")))


def _die(*args: Any, **kwargs: Any) -> bytes:
    os._exit(9)


class LosingGenerator(SpyGenerator):
    """A generator whose parts died (a context-parallel rank): every call raises GeneratorLost,
    and its watch() raises once the first call has."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.lost = asyncio.Event()

    async def generate(self, shape: ShapeKey, requests: Any, control: Any = None) -> GeneratedBatch:
        self.calls.append([r.event_id for r in requests])
        self.lost.set()
        raise GeneratorLost("rank 1 of 2 (pid 1) was killed by SIGKILL")

    async def watch(self) -> None:
        await self.lost.wait()
        raise GeneratorLost("rank 1 of 2 (pid 1) was killed by SIGKILL")


async def test_a_lost_generator_abandons_its_events_instead_of_dead_lettering_them(
    rig: Rig,
) -> None:
    rig.generator = LosingGenerator(rig.generator.inner)
    summary = await asyncio.wait_for(rig.run([event(f"e{i}", f"prompt {i}") for i in range(4)]), 60)
    assert summary.crashed is not None and "GeneratorLost: rank 1 of 2" in summary.crashed
    assert summary.exit_status == ExitStatus.CRASHED
    assert len(rig.generator.calls) == 1  # no split, no retry: nothing can run any more
    assert rig.dead == [] and summary.abandoned == 4  # delivered again, not failed
    adds_up(summary, rig)
