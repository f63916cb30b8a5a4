"""The token bucket behind --rate, on a fake clock."""

from __future__ import annotations

import pytest

from streamproc.replay.rate import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_takes_are_spaced_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, clock=clock, sleep=clock.sleep)
    for _ in range(9):
        await bucket.take()
    # The first token is there at once; the other eight come at four per second.
    assert clock.now == pytest.approx(2.0)


async def test_an_idle_bucket_allows_a_burst_of_at_most_its_size() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=3, clock=clock, sleep=clock.sleep)
    await bucket.take()
    clock.now += 60  # idle for a minute
    for _ in range(3):
        await bucket.take()
    assert clock.slept == []
    await bucket.take()
    assert sum(clock.slept) == pytest.approx(0.5)


def test_a_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TokenBucket(0)
