"""`streamproc run` with two ranks on the CPU (gloo), as an operator runs it: it answers, and
a rank killed mid-run ends the worker with one clear line, exit status 5, nothing lost and
no process left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import Patience, event
from tests.integration.workers import (
    alive,
    descendants,
    progress_of,
    streamproc_command,
    streamproc_env,
    summary_of,
)

pytestmark = pytest.mark.slow


def lines(path: Path) -> list[dict[str, object]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def test_a_killed_rank_stops_the_worker_with_exit_5_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    source = tmp_path / "prompts.jsonl"
    count = 200  # far more than the run gets through before the kill
    source.write_text(
        "".join(
            json.dumps(event(f"p{i:03d}", f"scene {i}: a tram at dawn")) + "\n"
            for i in range(count)
        )
    )
    results, letters = tmp_path / "results.jsonl", tmp_path / "dead-letters.jsonl"
    args = [
        "run", "-i", str(source), "--results", str(results), "--dead-letters", str(letters),
        "--store-dir", str(tmp_path / "store"), "--cache-backend", "none",
        "--max-in-flight", "8", "--log-format", "json", "--no-progress",
    ]  # fmt: skip
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            streamproc_command(*args),
            cwd=tmp_path,
            env=streamproc_env(STREAMPROC_GENERATION__GPUS_PER_WORKER="2"),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    children: dict[int, int] = {}
    try:
        patience = Patience(120)
        while len(lines(results)) < 2:  # both ranks have answered batches
            assert proc.poll() is None, f"exited {proc.returncode}: {stderr.read_text()[-2000:]}"
            assert patience.expired(progress_of(proc.pid)) is None, "no results"
            time.sleep(0.1)
        log = [json.loads(line) for line in stderr.read_text().splitlines() if line.startswith("{")]
        (spawned,) = [e for e in log if e.get("event") == "context_parallel_spawned"]
        (rank_pid,) = spawned["pids"]  # type: ignore[misc]
        children = descendants(proc.pid)
        assert rank_pid in children
        os.kill(rank_pid, signal.SIGKILL)
        status = proc.wait(timeout=60)
        output = stderr.read_text()
        assert status == 5, output[-3000:]
        # Whichever noticed first (the rank watcher, or the batch whose collective failed).
        assert re.search(
            r"a worker task crashed: (generator|batch runner): GeneratorLost: rank 1 of 2", output
        )
        said = [line for line in output.splitlines() if not line.startswith("{")]  # not logs
        assert "was killed by SIGKILL" in said[-1] and "Traceback" not in "\n".join(said)
        summary = summary_of(output)
        assert summary.adds_up and summary.abandoned > 0
        # Nothing of the lost batch was dead-lettered for the machine's fault.
        assert lines(letters) == [] and summary.dead_letters == 0
        gone_by = time.monotonic() + 5
        while any(alive(*c) for c in children.items()) and time.monotonic() < gone_by:
            time.sleep(0.05)
        assert [pid for pid, started in children.items() if alive(pid, started)] == []
    finally:
        proc.kill()
        for pid, started in children.items():  # only what this test started, by pid
            if alive(pid, started):
                os.kill(pid, signal.SIGKILL)
