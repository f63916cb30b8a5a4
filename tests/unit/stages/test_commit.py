"""The commit stage alone, over the real JSONL source: the watermark never passes an
unfinished record, transient failures wait for the next interval, refusals fault."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from streamproc.bus.base import Partition
from streamproc.bus.local import JsonlSource
from streamproc.errors import PermanentError, ServiceRefused, TransportError
from streamproc.metrics import Metrics
from streamproc.stages.commit import Commit

P0, P1 = Partition("in.jsonl", 0), Partition("in.jsonl", 1)


class CommitSource(JsonlSource):
    """The real JSONL source, remembering commits; can fail the next ones."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.commits: list[dict[Partition, int]] = []
        self.fail_with: Exception | None = None

    async def commit(self, positions: Mapping[Partition, int]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.commits.append(dict(positions))
        await super().commit(positions)


def stage(tmp_path: Path) -> tuple[Commit, CommitSource, Metrics, list[PermanentError]]:
    source = CommitSource(tmp_path / "in.jsonl")
    metrics = Metrics()
    faults: list[PermanentError] = []
    commit = Commit(source, interval_s=0.01, metrics=metrics, fault=faults.append)
    return commit, source, metrics, faults


class Faults(list[PermanentError]):
    """Faults reported, with an event set at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.reported = asyncio.Event()

    def append(self, fault: PermanentError) -> None:
        super().append(fault)
        self.reported.set()


async def test_the_commit_stops_at_the_lowest_unfinished_offset(tmp_path: Path) -> None:
    commit, source, _, _ = stage(tmp_path)
    for offset in range(4):
        commit.tracker.track(P0, offset)
    for offset in (0, 2, 3):
        commit.tracker.finish(P0, offset)
    await commit.now()
    commit.tracker.finish(P0, 1)
    await commit.now()
    await commit.now()  # nothing new: nothing sent
    assert source.commits == [{P0: 1}, {P0: 4}]


async def test_a_transient_failure_waits_for_the_next_commit(tmp_path: Path) -> None:
    commit, source, metrics, faults = stage(tmp_path)
    commit.tracker.track(P0, 0)
    commit.tracker.finish(P0, 0)
    source.fail_with = TransportError("coordinator moved")
    await commit.now()
    source.fail_with = None
    await commit.now()
    assert source.commits == [{P0: 1}] and faults == []
    assert metrics.commits.labels("failed")._value.get() == 1
    assert metrics.commits.labels("ok")._value.get() == 1


async def test_a_refused_commit_faults_the_worker(tmp_path: Path) -> None:
    source = CommitSource(tmp_path / "in.jsonl")
    faults = Faults()
    commit = Commit(source, interval_s=0.01, metrics=Metrics(), fault=faults.append)
    commit.tracker.track(P0, 0)
    commit.tracker.finish(P0, 0)
    source.fail_with = ServiceRefused("group authorisation failed", component="source")
    loop = asyncio.create_task(commit.loop())
    await asyncio.wait_for(faults.reported.wait(), 10)
    loop.cancel()
    assert "group" in str(faults[0])
    await commit.last()  # logged, not raised: the records are delivered again


async def test_revoked_partitions_commit_their_finished_work_and_are_forgotten(
    tmp_path: Path,
) -> None:
    commit, source, _, _ = stage(tmp_path)
    for partition in (P0, P1):
        commit.tracker.track(partition, 0)
        commit.tracker.finish(partition, 0)
    await commit.revoked([P1])
    assert source.commits == [{P1: 1}]
    await commit.now()
    assert source.commits == [{P1: 1}, {P0: 1}]  # P1 forgotten: never sent again
