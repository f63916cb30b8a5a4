"""The ``--from`` / ``--to`` bounds of a replay, parsed without touching a broker.

A bound is one of:

* an **offset** (``1200``): applies to every replayed partition; both ends are inclusive, so
  ``--from 100 --to 199`` replays offsets 100 to 199 of each partition;
* a **time** (ISO-8601 with a time zone, ``2026-11-25T14:00:00Z``,
  ``2026-11-25T15:00+01:00``): records whose own timestamp lies in ``[from, to]`` (inclusive);
* a **duration ago** (``90s``, ``30m``, ``2h``, ``1d``, ``1h30m``): the time that long before
  the replay started;
* ``now`` (``--to`` only): the end of each partition when the replay started; records
  written after that are not replayed.

:func:`parse_bound` raises :class:`ValueError` with a readable message; the CLI turns it into
a usage error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


@dataclass(frozen=True)
class OffsetBound:
    """An offset of every replayed partition (inclusive)."""

    offset: int

    def __str__(self) -> str:
        return str(self.offset)


@dataclass(frozen=True)
class TimeBound:
    """A point in time, as milliseconds since the epoch (inclusive)."""

    ms: int

    def __str__(self) -> str:
        return datetime.fromtimestamp(self.ms / 1000, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class NowBound:
    """The end of each partition when the replay started."""

    def __str__(self) -> str:
        return "now"


Bound = OffsetBound | TimeBound | NowBound


def parse_duration(text: str) -> timedelta | None:
    """``'1h30m'`` → 90 minutes; None when ``text`` is not a duration."""
    text = text.strip().lower()
    if not text or _DURATION.sub("", text):
        return None
    seconds = sum(int(n) * _UNIT_S[unit] for n, unit in _DURATION.findall(text))
    return timedelta(seconds=seconds)


def parse_bound(text: str, *, now: datetime, allow_now: bool) -> Bound:
    """Parse one bound; ``now`` (timezone-aware) resolves durations; ``allow_now`` admits
    the word ``now``."""
    raw = text.strip()
    if not raw:
        raise ValueError("empty bound")
    if raw.lower() == "now":
        if not allow_now:
            raise ValueError("'now' can only end a range (use it with --to)")
        return NowBound()
    if raw.lstrip("-").isdigit():
        offset = int(raw)
        if offset < 0:
            raise ValueError(f"offset {offset} is negative")
        return OffsetBound(offset)
    ago = parse_duration(raw)
    if ago is not None:
        return TimeBound(_ms(now - ago))
    try:
        when = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{raw!r} is not an offset, an ISO-8601 time with a zone, a duration such as "
            "2h / 30m / 1d, or 'now'"
        ) from None
    if when.tzinfo is None:
        raise ValueError(f"time {raw!r} has no time zone (add Z or +HH:MM)")
    return TimeBound(_ms(when))


def check_order(start: Bound, end: Bound) -> None:
    """Refuse a range that ends before it starts (where the bounds alone tell)."""
    if isinstance(start, OffsetBound) and isinstance(end, OffsetBound):
        if start.offset > end.offset:
            raise ValueError(f"--from offset {start} is after --to offset {end}")
    elif isinstance(start, TimeBound) and isinstance(end, TimeBound) and start.ms > end.ms:
        raise ValueError(f"--from time {start} is after --to time {end}")


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def parse_partitions(text: str) -> tuple[int, ...]:
    """``'0,2,5-7'`` → (0, 2, 5, 6, 7), sorted and without repeats."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"{text!r} is not a list of partitions such as 0,2,5-7")
        first, last = int(low), int(high) if dash else int(low)
        if first > last:
            raise ValueError(f"partition range {part!r} runs backwards")
        out.update(range(first, last + 1))
    return tuple(sorted(out))
