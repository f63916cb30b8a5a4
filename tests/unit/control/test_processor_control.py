"""The control plane through a whole worker on the local transport: status.jsonl, a
followed control file, cancels at each stage, the ledger, expiry and tenant quotas."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streamproc.app import run_worker
from streamproc.events import utcnow
from streamproc.generation.wan import WanGenerator
from streamproc.metrics import Metrics
from streamproc.processor import Outcome
from streamproc.settings import Settings
from tests.conftest import MakeSettings
from tests.helpers import (
    GatedGenerator,
    SpyGenerator,
    event,
    mp4s,
    read_jsonl,
    wait_for,
    write_jsonl,
)


def settings_for(make_settings: MakeSettings, tmp_path: Path, **extra: Any) -> Settings:
    control = tmp_path / "control.jsonl"
    control.touch()
    local = {"control": str(control), **extra.pop("local", {})}
    return make_settings(local=local, cache={"backend": "none"}, **extra)


def statuses(tmp_path: Path) -> list[dict[str, Any]]:
    return read_jsonl(tmp_path / "status.jsonl")


def states_of(tmp_path: Path, event_id: str) -> list[str]:
    return [s["state"] for s in statuses(tmp_path) if s["event_id"] == event_id]


def forget_outputs(settings: Settings, tmp_path: Path) -> None:
    """A fresh results file and an empty control file (the ledger stays)."""
    Path(settings.local.results).unlink()
    (tmp_path / "control.jsonl").write_text("")


def append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


async def run(
    settings: Settings,
    lines: list[Any],
    tmp_path: Path,
    generator: Any,
    metrics: Metrics | None = None,
) -> Any:
    """A whole worker over ``lines`` (the JSONL source, sink, store and control file)."""
    source = write_jsonl(tmp_path / "in.jsonl", lines)
    local = settings.local.model_copy(update={"input": str(source)})
    return await run_worker(
        settings.model_copy(update={"local": local}),
        generator=generator,
        handle_signals=False,
        metrics=metrics,
    )


def count(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


async def test_status_events_walk_every_state_of_a_generated_event(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = settings_for(make_settings, tmp_path, status={"step_interval_s": 0})
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    summary = await run(
        settings, [event("e1", num_inference_steps=3, tenant="acme")], tmp_path, spy
    )
    assert summary.outcomes[Outcome.GENERATED] == 1
    assert states_of(tmp_path, "e1") == [
        "accepted",
        "queued",
        "generating",
        "generating",
        "generating",
        "generating",
        "stored",
        "answered",
    ]
    steps = [
        (s["step"], s["total_steps"]) for s in statuses(tmp_path) if s["state"] == "generating"
    ]
    assert steps == [(0, 3), (1, 3), (2, 3), (3, 3)]
    queued = next(s for s in statuses(tmp_path) if s["state"] == "queued")
    assert queued["queue_position"] == 1 and queued["tenant"] == "acme" and queued["lane"] == 0
    # The answered status points at the video its result points at.
    [result] = read_jsonl(Path(settings.local.results))
    answered = next(s for s in statuses(tmp_path) if s["state"] == "answered")
    assert answered["video_url"] == result["video_url"] is not None
    assert answered["result_id"] == result["result_id"]


async def test_a_cancel_read_before_its_event_answers_cancelled_and_again_on_redelivery(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = settings_for(make_settings, tmp_path)
    append(tmp_path / "control.jsonl", {"action": "cancel", "event_id": "e2", "reason": "gone"})
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    lines = [event("e1", "a cat"), event("e2", "a dog")]
    metrics = Metrics()
    summary = await run(settings, lines, tmp_path, spy, metrics)
    assert summary.outcomes[Outcome.CANCELLED] == 1 and summary.exit_status == 0
    assert count(metrics.cancellations, "admission") == 1
    assert count(metrics.events_finished, "cancelled") == 1
    results = {r["event_id"]: r for r in read_jsonl(Path(settings.local.results))}
    assert results["e2"]["status"] == "cancelled" and results["e2"]["video_url"] is None
    assert results["e2"]["error"] == "cancelled: gone"
    assert "e2" not in spy.generated_ids
    assert mp4s(settings) == 1  # e1's video only
    assert states_of(tmp_path, "e2") == ["cancelled"]
    # Delivered again, after the cancel is forgotten: the ledger answers 'cancelled' again.
    forget_outputs(settings, tmp_path)
    spy2 = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    await run(settings, [event("e2", "a dog")], tmp_path, spy2)
    again = read_jsonl(Path(settings.local.results))
    assert [(r["status"], r["redelivery"]) for r in again] == [("cancelled", True)]
    assert spy2.generated_ids == []


async def test_a_tenant_cancel_withdraws_its_earlier_events_only(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = settings_for(make_settings, tmp_path)
    now = utcnow()
    append(
        tmp_path / "control.jsonl",
        {"action": "cancel", "tenant": "acme", "issued_at": now.isoformat()},
    )
    old = (now - timedelta(minutes=1)).isoformat()
    new = (now + timedelta(minutes=1)).isoformat()
    lines = [
        event("old", "a cat", tenant="acme", created_at=old),
        event("new", "a dog", tenant="acme", created_at=new),
        event("other", "a cow", tenant="zeta", created_at=old),
    ]
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    await run(settings, lines, tmp_path, spy)
    status = {r["event_id"]: r["status"] for r in read_jsonl(Path(settings.local.results))}
    assert status == {"old": "cancelled", "new": "ok", "other": "ok"}


async def test_a_cancel_during_generation_ends_the_event_and_spares_its_batch(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = settings_for(make_settings, tmp_path, batch={"window_ms": 300})
    gated = GatedGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    lines = [event(f"e{i}", f"prompt {i}", num_inference_steps=6) for i in range(3)]
    metrics = Metrics()

    async def cancel_mid_batch() -> None:
        await asyncio.to_thread(gated.reached.wait, 30)
        append(tmp_path / "control.jsonl", {"action": "cancel", "event_id": "e1"})
        await wait_for(
            lambda: (
                "cancelled" in states_of(tmp_path, "e1")
                or bool(gated.controls and gated.controls[0].cancelled)
            )
        )
        gated.gate.set()

    canceller = asyncio.create_task(cancel_mid_batch())
    summary = await run(settings, lines, tmp_path, gated, metrics)
    await canceller
    assert count(metrics.cancellations, "generating") == 1
    assert gated.calls == [["e0", "e1", "e2"]]  # one batch, not split or re-run
    assert gated.controls[0].cancelled == {1}
    assert summary.outcomes[Outcome.CANCELLED] == 1 and summary.outcomes[Outcome.GENERATED] == 2
    results = {r["event_id"]: r["status"] for r in read_jsonl(Path(settings.local.results))}
    assert results == {"e0": "ok", "e1": "cancelled", "e2": "ok"}
    assert mp4s(settings) == 2


async def test_cancelling_every_event_of_a_batch_stops_it_at_the_next_step(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = settings_for(make_settings, tmp_path, batch={"window_ms": 300})
    gated = GatedGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline), gate_step=2)
    lines = [event(f"e{i}", f"prompt {i}", tenant="bulk", num_inference_steps=20) for i in range(2)]

    async def cancel_tenant() -> None:
        await asyncio.to_thread(gated.reached.wait, 30)
        append(tmp_path / "control.jsonl", {"action": "cancel", "tenant": "bulk"})
        await wait_for(lambda: bool(gated.controls and gated.controls[0].all_cancelled))
        gated.gate.set()

    canceller = asyncio.create_task(cancel_tenant())
    summary = await run(settings, lines, tmp_path, gated)
    await canceller
    assert summary.outcomes[Outcome.CANCELLED] == 2
    assert gated.controls[0].steps_done == 2  # stopped at the boundary after the gate, not 20
    assert mp4s(settings) == 0


async def test_stale_events_expire_at_admission_and_fresh_ones_run(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = settings_for(make_settings, tmp_path, control={"max_event_age_s": 60})
    old = (utcnow() - timedelta(hours=1)).isoformat()
    lines = [event("stale", "a cat", created_at=old), event("fresh", "a dog")]
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    metrics = Metrics()
    await run(settings, lines, tmp_path, spy, metrics)
    dead = read_jsonl(Path(settings.local.dead_letters))
    assert [(d["event_id"], d["reason"]) for d in dead] == [("stale", "expired")]
    assert count(metrics.expirations, "admission") == 1
    assert spy.generated_ids == ["fresh"]
    assert states_of(tmp_path, "stale")[-1] == "dead_lettered"


async def test_an_event_that_ages_in_the_queue_expires_before_generation(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = settings_for(
        make_settings, tmp_path, control={"max_event_age_s": 1.0}, batch={"max_batch_size": 1}
    )
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline), delay_s=1.5)
    lines = [event("first", "a cat"), event("second", "a dog")]
    await run(settings, lines, tmp_path, spy)
    assert spy.generated_ids == ["first"]
    dead = read_jsonl(Path(settings.local.dead_letters))
    assert [(d["event_id"], d["reason"]) for d in dead] == [("second", "expired")]
    assert "at generation" in dead[0]["detail"]


async def test_a_tenant_over_its_in_flight_limit_gets_quota_exceeded(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = settings_for(
        make_settings, tmp_path, tenants={"max_in_flight": 2}, batch={"window_ms": 200}
    )
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    lines = [event(f"a{i}", f"prompt {i}", tenant="a") for i in range(4)]
    lines.append(event("b0", "another", tenant="b"))
    metrics = Metrics()
    await run(settings, lines, tmp_path, spy, metrics)
    assert count(metrics.quota_rejections, "in_flight") == 2
    assert count(metrics.queue_depth, "0", "a") == 0  # every queued event left the queue
    assert metrics.queue_wait.labels("0", "b")._sum.get() >= 0
    dead = read_jsonl(Path(settings.local.dead_letters))
    assert sorted(d["event_id"] for d in dead) == ["a2", "a3"]
    assert {d["reason"] for d in dead} == {"quota_exceeded"}
    assert dead[0]["detail"].startswith("in_flight: tenant a")
    assert sorted(spy.generated_ids) == ["a0", "a1", "b0"]


async def test_a_tenant_over_its_rate_gets_quota_exceeded(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any
) -> None:
    settings = settings_for(
        make_settings, tmp_path, tenants={"quotas": {"a": {"events_per_minute": 2}}}
    )
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    lines = [event(f"a{i}", f"prompt {i}", tenant="a") for i in range(3)]
    await run(settings, lines, tmp_path, spy)
    dead = read_jsonl(Path(settings.local.dead_letters))
    assert [(d["event_id"], d["detail"].split(":")[0]) for d in dead] == [("a2", "rate")]


@pytest.mark.parametrize("buffer_size", [1])
async def test_a_full_status_buffer_drops_status_but_never_an_outcome(
    make_settings: MakeSettings, tmp_path: Path, tiny_pipeline: Any, buffer_size: int
) -> None:
    settings = settings_for(make_settings, tmp_path, status={"buffer_size": buffer_size})
    spy = SpyGenerator(WanGenerator(settings.generation, loaded=tiny_pipeline))
    lines = [event(f"e{i}", f"prompt {i}") for i in range(6)]
    summary = await run(settings, lines, tmp_path, spy)
    assert summary.results == 6
    assert len(statuses(tmp_path)) < 6 * 6  # some were dropped, none waited for


def test_replayed_events_run_in_the_replay_lane(make_settings: MakeSettings) -> None:
    from streamproc.control.plane import ControlPlane
    from streamproc.events import PromptEvent

    urgent = PromptEvent.model_validate({"event_id": "e", "prompt": "p", "priority": 8})
    live = ControlPlane(make_settings())
    replay = ControlPlane(make_settings(), replay=True)
    own = ControlPlane(make_settings(lanes={"replay_priority": -1}), replay=True)
    assert (live.lane(urgent), replay.lane(urgent), own.lane(urgent)) == (8, 0, 8)
