"""Latency-aware batch sizes: the choice on given measurements, and at warm-up."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from streamproc.app import run_worker
from streamproc.batching import ShapeKey
from streamproc.bus.local import JsonlSource
from streamproc.generation.batchsize import (
    StoredThroughput,
    ThroughputProfile,
    choose_batch_size,
    shape_label,
)
from streamproc.generation.wan import WanGenerator
from streamproc.metrics import Metrics
from streamproc.settings import BatchSettings, GenerationSettings
from tests.conftest import MakeSettings
from tests.helpers import read_jsonl, write_jsonl


def key(frames: int = 17, steps: int = 4, guidance: float = 1.0) -> ShapeKey:
    return ShapeKey("m", 832, 480, frames, steps, guidance)


# -- the choice --------------------------------------------------------------------------


def test_short_clips_batch_while_each_size_gains_enough() -> None:
    # videos/s: 1.0, 1.33, 1.5, 1.6: every step up gains more than 5 %.
    assert choose_batch_size({1: 1.0, 2: 1.5, 3: 2.0, 4: 2.5}, 0.05) == 4


def test_long_clips_run_alone_when_batching_gains_little() -> None:
    # The 121-frame case: four videos take four times as long, +2 % at best.
    assert choose_batch_size({1: 13.0, 2: 25.5, 3: 38.0, 4: 50.5}, 0.05) == 1


def test_growth_stops_where_the_gain_falls_below_the_threshold() -> None:
    # videos/s: 1.0, 1.25, 1.29: size 3 gains 3 % over size 2.
    assert choose_batch_size({1: 1.0, 2: 1.6, 3: 2.33}, 0.05) == 2


def test_a_larger_size_is_compared_with_the_size_chosen_so_far() -> None:
    # videos/s: 1.0, 1.25, 1.2 (noise), 1.33: size 4 beats the chosen 2 by 6.7 %.
    assert choose_batch_size({1: 1.0, 2: 1.6, 3: 2.5, 4: 3.0}, 0.05) == 4
    assert choose_batch_size({1: 1.0, 2: 1.6, 3: 2.5, 4: 3.0}, 0.10) == 2


def test_the_smallest_measured_size_is_the_floor() -> None:
    assert choose_batch_size({2: 1.0, 4: 2.0}, 0.05) == 2
    with pytest.raises(ValueError, match="no measurements"):
        choose_batch_size({}, 0.05)


def test_measurements_are_kept_per_frame_size_and_guidance_not_steps() -> None:
    profile = ThroughputProfile(min_gain=0.05)
    profile.record(key(frames=17), {1: 1.0, 2: 1.5}, "measured")
    profile.record(key(frames=121), {1: 13.0, 2: 26.0}, "measured")
    assert profile.max_batch(key(frames=17, steps=16)) == 2
    assert profile.max_batch(key(frames=121)) == 1
    assert profile.max_batch(key(frames=17, guidance=5.0)) is None  # not measured: no opinion
    assert shape_label(key(frames=17, guidance=5.0)) == "832x480x17/cfg"


def test_a_chosen_size_is_logged_with_the_rates_behind_it() -> None:
    with capture_logs() as logs:
        ThroughputProfile(min_gain=0.05).record(key(), {1: 1.0, 2: 1.5}, "measured")
    (event,) = [e for e in logs if e["event"] == "batch_size_chosen"]
    assert event["batch_size"] == 2
    assert event["shape"] == "832x480x17/nocfg"
    assert event["videos_per_s"] == {"1": 1.0, "2": 1.3333}


# -- the stored file ---------------------------------------------------------------------


def test_stored_measurements_are_found_only_for_the_same_model_and_device(tmp_path: Path) -> None:
    stored = StoredThroughput(tmp_path / "tp.json")
    stored.save("m", "NVIDIA H200 sm90", "832x480x17/nocfg", {1: 0.5, 2: 0.8})
    stored.save("m", "NVIDIA H200 sm90", "832x480x121/nocfg", {1: 13.0})
    assert stored.load("m", "NVIDIA H200 sm90", "832x480x17/nocfg") == {1: 0.5, 2: 0.8}
    assert stored.load("m", "NVIDIA H100 sm90", "832x480x17/nocfg") is None
    assert stored.load("other", "NVIDIA H200 sm90", "832x480x17/nocfg") is None
    stored.save("m", "NVIDIA H200 sm90", "832x480x17/nocfg", {1: 0.4})  # replaces, not adds
    assert stored.load("m", "NVIDIA H200 sm90", "832x480x17/nocfg") == {1: 0.4}
    assert len(json.loads((tmp_path / "tp.json").read_text())["entries"]) == 2


def test_a_stored_file_of_another_version_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "tp.json"
    path.write_text(json.dumps({"version": 99, "entries": []}))
    assert StoredThroughput(path).load("m", "cpu", "64x32x9/nocfg") is None


# -- at warm-up, on the tiny pipeline ------------------------------------------------------


def tiny_settings(tmp_path: Path) -> tuple[GenerationSettings, BatchSettings]:
    generation = GenerationSettings(
        device="cpu", profile="fastwan2.2-ti2v-5b-dmd3", warmup_shapes=["64x32x9"]
    )
    batch = BatchSettings(
        max_batch_size=3,
        size_policy="throughput",
        min_batch_gain=0.05,
        throughput_file=tmp_path / "throughput.json",
    )
    return generation, batch


@contextlib.contextmanager
def forwards(pipe: Any) -> Iterator[list[int]]:
    """Counts transformer forwards while open (the shared pipeline is left as it was)."""
    calls: list[int] = []
    handle = pipe.transformer.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


async def test_warm_up_measures_chooses_exports_and_stores_batch_sizes(
    tiny_pipeline: tuple[Any, str], tmp_path: Path
) -> None:
    generation, batch = tiny_settings(tmp_path)
    gen = WanGenerator(generation, loaded=tiny_pipeline, max_batch_size=3, batch=batch)
    with capture_logs() as logs:
        await gen.start()
    await gen.stop()
    label = "64x32x9/nocfg"
    assert gen.throughput is not None
    measured = gen.throughput.seconds[label]
    assert sorted(measured) == [1, 2, 3]
    chosen = choose_batch_size(measured, 0.05)
    assert gen.chosen_batch_sizes == {label: chosen}
    shape = ShapeKey(gen.model_id, 64, 32, 9, 3, 1.0)
    assert gen.max_batch_size(shape) == chosen
    assert gen.max_batch_size(ShapeKey(gen.model_id, 128, 64, 9, 3, 1.0)) is None
    (event,) = [e for e in logs if e["event"] == "batch_size_chosen"]
    assert (event["shape"], event["batch_size"], event["origin"]) == (label, chosen, "measured")

    metrics = Metrics()
    metrics.batch_sizes(gen.chosen_batch_sizes, gen.batch_throughput)
    text = (await metrics.render()).decode()
    assert f'streamproc_batch_size_chosen{{shape="{label}"}} {float(chosen)}' in text
    assert f'streamproc_batch_throughput_videos_per_second{{batch_size="3",shape="{label}"}}' in (
        text
    )

    stored = StoredThroughput(batch.throughput_file or Path())
    assert stored.load(gen.model_id, "cpu", label) == pytest.approx(measured, abs=1e-6)


async def test_a_stored_measurement_skips_the_timed_calls(
    tiny_pipeline: tuple[Any, str], tmp_path: Path
) -> None:
    generation, batch = tiny_settings(tmp_path)
    pipe = tiny_pipeline[0]
    first = WanGenerator(generation, loaded=tiny_pipeline, max_batch_size=3, batch=batch)
    with forwards(pipe) as measuring:
        await first.start()
    await first.stop()
    second = WanGenerator(generation, loaded=tiny_pipeline, max_batch_size=3, batch=batch)
    with capture_logs() as logs, forwards(pipe) as stored:
        await second.start()
    await second.stop()
    # Warm-up alone: one call of 3 steps; the first start also timed sizes 1, 2 and 3.
    assert len(stored) == 3
    assert len(measuring) == 3 + 3 * 3
    assert second.chosen_batch_sizes == first.chosen_batch_sizes
    (event,) = [e for e in logs if e["event"] == "batch_size_chosen"]
    assert event["origin"] == "stored"


async def test_the_largest_policy_measures_nothing(tiny_pipeline: tuple[Any, str]) -> None:
    generation = GenerationSettings(device="cpu", warmup_shapes=["64x32x9/2"])
    gen = WanGenerator(generation, loaded=tiny_pipeline, max_batch_size=3)
    await gen.start()
    await gen.stop()
    assert gen.chosen_batch_sizes == {}
    assert gen.max_batch_size(ShapeKey(gen.model_id, 64, 32, 9, 2, 5.0)) is None


async def test_a_worker_serves_a_few_step_profile_and_exports_its_batch_sizes(
    tiny_pipeline: tuple[Any, str], make_settings: MakeSettings, tmp_path: Path
) -> None:
    # The whole worker: profile defaults on events, the sampler in results, chosen sizes
    # exported by the app.
    settings = make_settings(
        generation={"profile": "fastwan2.2-ti2v-5b-dmd3", "warmup_shapes": ["64x32x9"]},
        batch={"max_batch_size": 2, "size_policy": "throughput"},
        cache={"backend": "none"},
    )
    generator = WanGenerator(
        settings.generation, loaded=tiny_pipeline, max_batch_size=2, batch=settings.batch
    )
    lines = [
        {"event_id": f"e{i}", "prompt": "a red fox", "width": 64, "height": 32, "num_frames": 9}
        for i in range(3)
    ]
    metrics = Metrics()
    summary = await run_worker(
        settings,
        source=JsonlSource(str(write_jsonl(tmp_path / "in.jsonl", lines))),
        generator=generator,
        metrics=metrics,
        handle_signals=False,
    )
    assert summary.exit_status == 0
    results = read_jsonl(Path(settings.local.results))
    assert len(results) == 3
    for result in results:
        params = result["parameters"]
        assert (params["num_inference_steps"], params["guidance_scale"]) == (3, 1.0)
        assert params["scheduler"] == "lcm:shift=1:t=1000,757,522"
        assert result["model_id"].endswith("#lcm:shift=1:t=1000,757,522")
        assert result["batch_size"] <= generator.chosen_batch_sizes["64x32x9/nocfg"]
    text = (await metrics.render()).decode()
    chosen = generator.chosen_batch_sizes["64x32x9/nocfg"]
    assert f'streamproc_batch_size_chosen{{shape="64x32x9/nocfg"}} {float(chosen)}' in text
