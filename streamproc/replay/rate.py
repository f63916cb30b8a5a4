"""A token bucket: ``--rate N/s`` for a replay's input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """Hands out ``rate`` tokens per second on average, at most ``burst`` at once."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0  # start nearly empty: a replay should not begin with a burst
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def wait_s(self) -> float:
        """Seconds until one token is available (0 when one is)."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) / self.rate

    async def take(self) -> None:
        """Wait for a token and take it."""
        while (wait := self.wait_s()) > 0:
            await self._sleep(wait)
        self._tokens -= 1


def parse_rate(text: str) -> float:
    """``'20'``, ``'20/s'``, ``'1200/m'``, ``'0.5/s'`` → events per second."""
    raw = text.strip().lower().replace(" ", "")
    number, _, unit = raw.partition("/")
    per = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}.get(unit)
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if per is None or not value > 0 or value == float("inf"):
        raise ValueError(f"rate {text!r} is not a positive number of events per second (e.g. 20/s)")
    return value / per
