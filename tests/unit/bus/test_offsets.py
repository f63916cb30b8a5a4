"""The commit watermark never passes an unfinished offset."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamproc.bus.base import Partition
from streamproc.bus.offsets import OffsetTracker

P0 = Partition("prompts", 0)
P1 = Partition("prompts", 1)


def test_nothing_tracked_means_nothing_to_commit() -> None:
    tracker = OffsetTracker()
    assert tracker.position(P0) is None
    assert tracker.committable() == {}


def test_position_stops_at_the_first_unfinished_offset() -> None:
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.track(P0, offset)
    tracker.finish(P0, 0)
    tracker.finish(P0, 1)
    tracker.finish(P0, 3)  # finishes before 2: out of order
    assert tracker.position(P0) == 2
    tracker.finish(P0, 2)
    assert tracker.position(P0) == 4
    tracker.finish(P0, 4)
    assert tracker.position(P0) == 5


def test_later_batch_finishing_first_does_not_move_the_commit() -> None:
    tracker = OffsetTracker()
    for offset in range(10, 20):
        tracker.track(P0, offset)
    for offset in range(14, 20):  # the second batch finishes first
        tracker.finish(P0, offset)
    assert tracker.committable() == {P0: 10}


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.track(P0, 0)
    tracker.track(P1, 7)
    tracker.finish(P1, 7)
    assert tracker.committable() == {P0: 0, P1: 8}


def test_committable_reports_only_progress_since_last_commit() -> None:
    tracker = OffsetTracker()
    tracker.track(P0, 0)
    tracker.finish(P0, 0)
    tracker.mark_committed(tracker.committable())
    assert tracker.committable() == {}
    tracker.track(P0, 1)
    assert tracker.committable() == {}
    tracker.finish(P0, 1)
    assert tracker.committable() == {P0: 2}


def test_forget_drops_revoked_partitions() -> None:
    tracker = OffsetTracker()
    tracker.track(P0, 3)
    tracker.forget([P0])
    assert tracker.position(P0) is None
    assert tracker.unfinished() == 0


@given(
    st.lists(st.integers(0, 200), min_size=1, max_size=60, unique=True),
    st.data(),
)
def test_position_is_always_the_lowest_unfinished_offset(
    offsets: list[int], data: st.DataObject
) -> None:
    tracker = OffsetTracker()
    for offset in sorted(offsets):
        tracker.track(P0, offset)
    finished = data.draw(st.sets(st.sampled_from(offsets)))
    for offset in data.draw(st.permutations(sorted(finished))):
        tracker.finish(P0, offset)
    unfinished = set(offsets) - finished
    expected = min(unfinished) if unfinished else max(offsets) + 1
    assert tracker.position(P0) == expected
