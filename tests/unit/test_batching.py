"""Micro-batching: grouping by shape, window, max size, priority, deadlines, flush."""

from __future__ import annotations

import asyncio
import time

import pytest

from streamproc.batching import MicroBatcher, ShapeKey

A = ShapeKey("m", 64, 32, 5, 2, 5.0)
B = ShapeKey("m", 32, 32, 5, 2, 5.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def batcher(clock: Clock, **kwargs: object) -> MicroBatcher[str]:
    options: dict[str, object] = {"window_s": 0.5, "max_batch_size": 3, "clock": clock}
    options.update(kwargs)
    return MicroBatcher(**options)  # type: ignore[arg-type]


async def test_nothing_is_ready_before_the_window_ends() -> None:
    clock = Clock()
    b = batcher(clock)
    await b.submit("a1", A)
    assert b.poll() is None
    clock.now += 0.49
    assert b.poll() is None
    clock.now += 0.02
    batch = b.poll()
    assert batch is not None and batch.items == ["a1"]


async def test_a_full_group_is_ready_at_once() -> None:
    clock = Clock()
    b = batcher(clock)
    for i in range(4):
        await b.submit(f"a{i}", A)
    batch = b.poll()
    assert batch is not None and batch.items == ["a0", "a1", "a2"]
    assert b.poll() is None  # the fourth waits for its window
    assert len(b) == 1


async def test_shapes_never_mix() -> None:
    clock = Clock()
    b = batcher(clock)
    for i in range(2):
        await b.submit(f"a{i}", A)
        await b.submit(f"b{i}", B)
    clock.now += 1
    batches = [b.poll(), b.poll()]
    assert b.poll() is None
    assert sorted((x.shape, tuple(x.items)) for x in batches if x) == sorted(
        [(A, ("a0", "a1")), (B, ("b0", "b1"))]
    )


async def test_higher_priority_goes_first_within_and_across_groups() -> None:
    clock = Clock()
    b = batcher(clock, max_batch_size=2)
    await b.submit("low", A, priority=0)
    await b.submit("low2", A, priority=0)
    await b.submit("high", A, priority=9)
    await b.submit("other", B, priority=5)
    clock.now += 1
    first, second, third = b.poll(), b.poll(), b.poll()
    assert first is not None and first.items == ["high", "low"]
    assert second is not None and second.items == ["other"]
    assert third is not None and third.items == ["low2"]


async def test_oldest_group_goes_first_at_equal_priority() -> None:
    clock = Clock()
    b = batcher(clock)
    await b.submit("b-old", B)
    clock.now += 0.1
    await b.submit("a-new", A)
    clock.now += 1
    first = b.poll()
    assert first is not None and first.shape == B


async def test_near_deadline_closes_the_window_early() -> None:
    clock = Clock()
    b = batcher(clock, window_s=10.0, deadline_slack_s=1.0)
    await b.submit("relaxed", A)
    await b.submit("urgent", A, deadline=clock.now + 3.0)
    clock.now += 1.9
    assert b.poll() is None
    clock.now += 0.2  # 0.9 s before the deadline: within the slack
    batch = b.poll()
    assert batch is not None and batch.items == ["urgent", "relaxed"]


async def test_earlier_deadline_is_taken_first_at_equal_priority() -> None:
    clock = Clock()
    b = batcher(clock, max_batch_size=1)
    await b.submit("late", A, deadline=clock.now + 50)
    await b.submit("soon", A, deadline=clock.now + 5)
    clock.now += 1
    batch = b.poll()
    assert batch is not None and batch.items == ["soon"]


async def test_max_size_can_depend_on_the_shape() -> None:
    clock = Clock()
    b = batcher(clock, max_batch_size=lambda s: 1 if s == A else 3)
    await b.submit("a0", A)
    await b.submit("b0", B)
    batch = b.poll()
    assert batch is not None and batch.items == ["a0"]


async def test_close_flushes_everything_then_signals_the_end() -> None:
    b: MicroBatcher[str] = MicroBatcher(window_s=60.0, max_batch_size=8)
    await b.submit("a0", A)
    await b.submit("b0", B)
    b.close()
    got = [await b.next_batch(), await b.next_batch(), await b.next_batch()]
    assert got[2] is None
    assert sorted(x.items[0] for x in got[:2] if x) == ["a0", "b0"]


async def test_next_batch_waits_for_the_window_in_real_time() -> None:
    b: MicroBatcher[str] = MicroBatcher(window_s=0.2, max_batch_size=8)
    started = time.monotonic()
    await b.submit("a0", A)
    batch = await asyncio.wait_for(b.next_batch(), 5)
    assert batch is not None and batch.items == ["a0"]
    assert 0.15 <= time.monotonic() - started < 2.0


async def test_next_batch_wakes_when_a_group_fills() -> None:
    b: MicroBatcher[str] = MicroBatcher(window_s=60.0, max_batch_size=2)
    waiter = asyncio.create_task(b.next_batch())
    await b.submit("a0", A)
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await b.submit("a1", A)
    batch = await asyncio.wait_for(waiter, 5)
    assert batch is not None and batch.items == ["a0", "a1"]


async def test_submit_waits_while_the_batcher_is_full() -> None:
    clock = Clock()
    b = batcher(clock, capacity=2)
    await b.submit("a0", A)
    await b.submit("a1", A)
    blocked = asyncio.create_task(b.submit("a2", A))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    clock.now += 1
    assert b.poll() is not None
    await asyncio.wait_for(blocked, 5)
    assert len(b) == 1


async def test_remove_takes_out_matching_items() -> None:
    clock = Clock()
    b = batcher(clock)
    for name in ("p0-a", "p1-a", "p0-b"):
        await b.submit(name, A)
    removed = b.remove(lambda item: item.startswith("p0"))
    assert sorted(removed) == ["p0-a", "p0-b"]
    assert len(b) == 1


@pytest.mark.parametrize("size", [0, -3])
async def test_max_size_is_at_least_one(size: int) -> None:
    b: MicroBatcher[str] = MicroBatcher(window_s=1, max_batch_size=lambda s: size)
    assert b.max_size(A) == 1
