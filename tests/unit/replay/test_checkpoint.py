"""The replay checkpoint: what it records as finished, and its file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamproc.errors import ConfigError
from streamproc.replay.checkpoint import Checkpoint, PartitionState


def checkpoint(path: Path | None = None, start: int = 10, stop: int = 20) -> Checkpoint:
    return Checkpoint(
        path=path,
        replay_id="r1",
        topic="prompts",
        from_text=str(start),
        to_text=str(stop - 1),
        from_ms=None,
        to_ms=None,
        partitions={0: PartitionState(start=start, stop=stop, watermark=start)},
        created_at="2026-11-25T17:00:00+00:00",
    )


def test_out_of_order_finishes_keep_the_watermark_at_the_lowest_unfinished_offset() -> None:
    cp = checkpoint()
    for offset in (10, 11, 12):
        cp.handed(0, offset)
    cp.finished(0, 12)
    cp.finished(0, 11)
    state = cp.partitions[0]
    assert state.watermark == 10 and state.done == {11, 12}
    assert cp.is_finished(0, 12) and not cp.is_finished(0, 10)
    cp.finished(0, 10)
    assert state.watermark == 13 and state.done == set()


def test_records_needing_no_work_and_gaps_move_the_watermark() -> None:
    cp = checkpoint()
    cp.passed(0, 10)  # outside the time bounds
    cp.handed(0, 12)
    cp.read_past(0, 15)  # 11, 13 and 14 were no records (e.g. transaction markers)
    assert cp.partitions[0].watermark == 12
    cp.finished(0, 12)
    assert cp.partitions[0].watermark == 15
    cp.read_past(0, 20)
    assert cp.complete


def test_a_confirmed_time_bound_ends_the_range_early() -> None:
    cp = checkpoint()
    cp.handed(0, 10)
    cp.finished(0, 10)
    cp.end_at(0, 11)
    assert cp.partitions[0].stop == 11 and cp.complete


@given(
    st.permutations(list(range(10, 20))),
    st.integers(min_value=0, max_value=10),
)
def test_the_watermark_never_passes_an_unfinished_offset(order: list[int], cut: int) -> None:
    cp = checkpoint()
    for offset in range(10, 20):
        cp.handed(0, offset)
    finished = set(order[:cut])
    for offset in order[:cut]:
        cp.finished(0, offset)
    state = cp.partitions[0]
    unfinished = set(range(10, 20)) - finished
    assert state.watermark == (min(unfinished) if unfinished else 20)
    assert {o for o in range(10, 20) if cp.is_finished(0, o)} == finished


def test_the_file_round_trips_and_a_resume_skips_exactly_the_finished_offsets(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cp.json"
    cp = checkpoint(path)
    for offset in range(10, 16):
        cp.handed(0, offset)
    for offset in (10, 11, 13, 15):
        cp.finished(0, offset)
    cp.save()

    again = Checkpoint.load(path)
    assert again.replay_id == "r1" and again.topic == "prompts"
    state = again.partitions[0]
    assert (state.start, state.stop, state.watermark, state.done) == (10, 20, 12, {13, 15})
    assert [o for o in range(10, 20) if not again.is_finished(0, o)] == [12, 14, 16, 17, 18, 19]
    assert json.loads(path.read_text())["complete"] is False


def test_a_write_that_fails_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cp.json"
    cp = checkpoint(path)
    cp.save()
    before = path.read_bytes()
    cp.handed(0, 10)
    cp.finished(0, 10)

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        cp.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cp.json"]  # no temporary file left


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not JSON"),
        ('{"version": 1}', "is not a replay checkpoint"),
        ('{"version": 7}', "has version 7"),
    ],
)
def test_unusable_files_are_config_errors(content: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "cp.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        Checkpoint.load(path)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        Checkpoint.load(tmp_path / "nope.json")
