"""The cancel registry, tenant quotas, step control on the tiny pipeline, the status buffer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from streamproc.batching import ShapeKey
from streamproc.control.cancels import CancelRegistry
from streamproc.control.quotas import TenantQuotas
from streamproc.control.readers import JsonlControlReader
from streamproc.control.status import StatusPublisher
from streamproc.errors import EventRefused
from streamproc.events import ControlEvent, StatusEvent, StatusState, utcnow
from streamproc.generation.base import BatchCancelled, GenerationRequest, StepControl
from streamproc.generation.wan import WanGenerator
from streamproc.metrics import Metrics
from streamproc.settings import GenerationSettings, TenantSettings
from tests.helpers import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cancel(**fields: Any) -> ControlEvent:
    return ControlEvent.model_validate({"action": "cancel", **fields})


def test_a_cancel_is_remembered_for_its_memory_then_forgotten() -> None:
    clock = Clock()
    registry = CancelRegistry(memory_s=60, max_entries=10, clock=clock)
    registry.apply(cancel(event_id="e1", reason="why"))
    found = registry.match("e1", None, clock.now)
    assert found is not None and found.reason == "why"
    clock.now += 61
    assert registry.match("e1", None, clock.now) is None


def test_the_oldest_cancels_go_first_beyond_the_bound() -> None:
    registry = CancelRegistry(memory_s=3600, max_entries=3, clock=Clock())
    for i in range(5):
        registry.apply(cancel(event_id=f"e{i}"))
    assert [registry.match(f"e{i}", None, 0) is not None for i in range(5)] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_a_tenant_cancel_covers_events_made_up_to_its_issue_time() -> None:
    clock = Clock()
    registry = CancelRegistry(memory_s=3600, max_entries=10, clock=clock)
    registry.apply(cancel(tenant="acme"), record_time=500.0)
    assert registry.match("x", "acme", 499.0) is not None
    assert registry.match("x", "acme", 501.0) is None
    assert registry.match("x", "other", 499.0) is None
    assert registry.match("x", None, 499.0) is None


def test_listeners_hear_every_cancel_even_when_one_fails() -> None:
    registry = CancelRegistry(memory_s=60, max_entries=10)
    heard: list[str | None] = []

    def broken(_c: Any) -> None:
        raise RuntimeError("bug")

    registry.subscribe(broken)
    registry.subscribe(lambda c: heard.append(c.event_id))
    registry.apply(cancel(event_id="e1"))
    assert heard == ["e1"]


def test_quotas_refuse_beyond_in_flight_and_free_a_slot_on_release() -> None:
    quotas = TenantQuotas(TenantSettings(max_in_flight=2))
    quotas.acquire("a")
    quotas.acquire("a")
    with pytest.raises(EventRefused, match="in_flight"):
        quotas.acquire("a")
    quotas.acquire("b")
    quotas.release("a")
    quotas.acquire("a")
    assert quotas.in_flight("a") == 2


def test_the_rate_limit_refills_over_a_minute() -> None:
    clock = Clock()
    quotas = TenantQuotas(TenantSettings(events_per_minute=2), clock=clock)
    for _ in range(2):
        quotas.acquire(None)
        quotas.release(None)
    with pytest.raises(EventRefused, match="rate"):
        quotas.acquire(None)
    clock.now += 30  # one token back
    quotas.acquire(None)
    with pytest.raises(EventRefused):
        quotas.acquire(None)


@pytest.fixture
def tiny_generator(tiny_pipeline: Any) -> WanGenerator:
    return WanGenerator(GenerationSettings(device="cpu"), loaded=tiny_pipeline)


async def test_the_other_videos_of_a_batch_are_byte_identical_when_one_is_cancelled(
    tiny_generator: WanGenerator,
) -> None:
    await tiny_generator.start()
    shape = ShapeKey(tiny_generator.model_id, 64, 32, 5, 6, 5.0)
    requests = [GenerationRequest(f"e{i}", f"prompt {i}", None, 10 + i) for i in range(3)]
    plain = await tiny_generator.generate(shape, requests)
    control = StepControl(3)
    control.cancel(1)  # as a cancel would, before the first step boundary
    cut = await tiny_generator.generate(shape, requests, control)
    for row in (0, 2):
        assert cut.videos[row].tobytes() == plain.videos[row].tobytes()
    assert cut.videos[1].size == 0  # not decoded
    assert np.any(plain.videos[1])


async def test_a_batch_whose_rows_are_all_cancelled_stops_at_the_next_step(
    tiny_generator: WanGenerator,
) -> None:
    await tiny_generator.start()
    shape = ShapeKey(tiny_generator.model_id, 64, 32, 5, 20, 5.0)
    requests = [GenerationRequest(f"e{i}", f"prompt {i}", None, i) for i in range(2)]

    def on_step(done: int, _total: int) -> None:
        if done == 3:
            control.cancel(0)
            control.cancel(1)

    control = StepControl(2, on_step=on_step)
    with pytest.raises(BatchCancelled):
        await tiny_generator.generate(shape, requests, control)
    assert control.steps_done == 4  # the boundary after the cancel


class FailingSink:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.got: list[StatusEvent] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def __aenter__(self) -> FailingSink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def send(self, events: list[StatusEvent]) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.got.extend(events)


def status(event_id: str) -> StatusEvent:
    return StatusEvent(event_id=event_id, state=StatusState.ACCEPTED, at=utcnow(), worker_id="w")


async def test_a_full_buffer_drops_and_counts_instead_of_waiting() -> None:
    metrics = Metrics()
    sink = FailingSink(fail=False)
    publisher = StatusPublisher(sink, buffer_size=2, metrics=metrics)
    for i in range(5):  # before the sender runs: only two fit
        publisher.emit(status(f"e{i}"))
    assert publisher.dropped == 3
    await publisher.start()
    await wait_for(lambda: len(sink.got) == 2)
    await publisher.stop()
    assert metrics.status_dropped._value.get() == 3


async def test_a_failing_status_sink_is_counted_and_the_sender_goes_on() -> None:
    sink = FailingSink(fail=True)
    publisher = StatusPublisher(sink, buffer_size=10, metrics=Metrics())
    await publisher.start()
    publisher.emit(status("e1"))
    await wait_for(lambda: publisher.dropped == 1)
    sink.fail = False
    publisher.emit(status("e2"))
    await wait_for(lambda: [e.event_id for e in sink.got] == ["e2"])
    await publisher.stop()


def append_text(path: Any, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


async def test_the_control_file_is_followed_and_bad_lines_are_skipped(tmp_path: Any) -> None:
    path = tmp_path / "control.jsonl"
    path.write_text('{"action": "cancel", "event_id": "e1"}\nnot json\n{"action": "can')
    registry = CancelRegistry(memory_s=60, max_entries=10)
    metrics = Metrics()
    reader = JsonlControlReader(str(path), registry, metrics, poll_s=0.01)
    await reader.start()
    assert registry.match("e1", None, 0) is not None
    append_text(path, 'cel", "event_id": "e2"}\n')  # the unfinished line is completed later
    await wait_for(lambda: registry.match("e2", None, 0) is not None)
    await reader.stop()
    assert metrics.control_events.labels("invalid")._value.get() == 1
