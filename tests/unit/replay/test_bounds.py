"""Parsing --from/--to, --partitions and --rate."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.replay.bounds import (
    NowBound,
    OffsetBound,
    TimeBound,
    check_order,
    parse_bound,
    parse_duration,
    parse_partitions,
)
from streamproc.replay.rate import parse_rate

NOW = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_a_number_is_an_offset(offset: int) -> None:
    assert parse_bound(str(offset), now=NOW, allow_now=False) == OffsetBound(offset)


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([timezone(timedelta(hours=h)) for h in (-8, 0, 1, 5, 13)]),
    )
)
def test_an_iso_time_with_a_zone_is_a_time(when: datetime) -> None:
    bound = parse_bound(when.isoformat(), now=NOW, allow_now=False)
    assert bound == TimeBound(ms(when))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T14:00:00Z", datetime(2026, 11, 25, 14, tzinfo=UTC)),
        ("2026-11-25T15:00:00+01:00", datetime(2026, 11, 25, 14, tzinfo=UTC)),
        ("2026-11-25t14:00z", datetime(2026, 11, 25, 14, tzinfo=UTC)),
        ("2026-11-25T14:00:00.250Z", datetime(2026, 11, 25, 14, 0, 0, 250_000, tzinfo=UTC)),
    ],
)
def test_iso_times_in_any_zone(text: str, expected: datetime) -> None:
    assert parse_bound(text, now=NOW, allow_now=False) == TimeBound(ms(expected))


@given(
    st.integers(min_value=0, max_value=400),
    st.sampled_from([("s", 1), ("m", 60), ("h", 3600), ("d", 86400), ("w", 604800)]),
)
def test_a_duration_is_that_long_before_now(n: int, unit: tuple[str, int]) -> None:
    bound = parse_bound(f"{n}{unit[0]}", now=NOW, allow_now=True)
    assert bound == TimeBound(ms(NOW - timedelta(seconds=n * unit[1])))


def test_durations_combine() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("2 days") is None
    assert parse_duration("") is None


def test_now_only_ends_a_range() -> None:
    assert parse_bound("now", now=NOW, allow_now=True) == NowBound()
    assert parse_bound("NOW", now=NOW, allow_now=True) == NowBound()
    with pytest.raises(ValueError, match="'now' can only end a range"):
        parse_bound("now", now=NOW, allow_now=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-5", "is negative"),
        ("", "empty bound"),
        ("yesterday", "is not an offset, an ISO-8601 time"),
        ("2026-11-25T14:00:00", "has no time zone"),
        ("2026-13-45T00:00:00Z", "is not an offset"),
        ("5x", "is not an offset"),
    ],
)
def test_bad_bounds_say_why(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_bound(text, now=NOW, allow_now=True)


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_bound(text, now=NOW, allow_now=True)


def test_a_range_must_not_end_before_it_starts() -> None:
    check_order(OffsetBound(5), OffsetBound(5))
    check_order(TimeBound(1), TimeBound(2))
    check_order(OffsetBound(9), TimeBound(0))  # mixed: only the broker can tell
    check_order(TimeBound(9), NowBound())
    with pytest.raises(ValueError, match="offset 6 is after --to offset 5"):
        check_order(OffsetBound(6), OffsetBound(5))
    with pytest.raises(ValueError, match="is after --to time"):
        check_order(TimeBound(2), TimeBound(1))


@given(st.sets(st.integers(min_value=0, max_value=500), min_size=1))
def test_partition_lists_round_trip(partitions: set[int]) -> None:
    assert parse_partitions(",".join(str(p) for p in partitions)) == tuple(sorted(partitions))


def test_partition_ranges() -> None:
    assert parse_partitions("0,2,5-7, 3") == (0, 2, 3, 5, 6, 7)
    assert parse_partitions("4-4") == (4,)
    for bad in ("", "a", "1-", "-1", "3-1", "1,,2"):
        with pytest.raises(ValueError, match="partition"):
            parse_partitions(bad)


@pytest.mark.parametrize(
    ("text", "per_s"),
    [("20", 20.0), ("20/s", 20.0), ("1200/m", 20.0), ("0.5/s", 0.5), ("3600/h", 1.0)],
)
def test_rates(text: str, per_s: float) -> None:
    assert parse_rate(text) == pytest.approx(per_s)


@pytest.mark.parametrize("text", ["0", "-1/s", "fast", "10/y", "inf", "nan", ""])
def test_bad_rates(text: str) -> None:
    with pytest.raises(ValueError, match="positive number of events"):
        parse_rate(text)
