"""A local run interrupted and run again (`streamproc run -i FILE` twice, same output): the
second run finishes what the first left, and answers nothing twice."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Patience, event, read_jsonl, write_jsonl
from tests.integration.answers import counted, log_entries
from tests.integration.workers import (
    progress_of,
    run_to_end,
    streamproc_command,
    streamproc_env,
    summary_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

SUBJECTS = ["a heron", "a tugboat", "a windmill", "a violinist", "a glacier", "a beehive"]
PLACES = ["at dawn", "in heavy rain", "under neon lights", "in a snowstorm", "at noon", "by night"]
# About a second per batch of four: a run of 36 events is still busy when it is interrupted.
SHAPE = {"width": 64, "height": 64, "num_frames": 9, "num_inference_steps": 4}
BAD_LINES = ["{not json", '{"event_id": "no-prompt"}', "[1, 2, 3]"]


def input_lines() -> list[dict[str, Any] | str]:
    """36 events of distinct prompts with three bad lines among them."""
    lines: list[dict[str, Any] | str] = [
        event(f"loc-{n:02d}", f"{subject} {place}", **SHAPE)
        for n, (subject, place) in enumerate((s, p) for s in SUBJECTS for p in PLACES)
    ]
    for at, bad in zip((5, 17, 29), BAD_LINES, strict=True):
        lines.insert(at, bad)
    return lines


def rerun_command(input_path: Path, *more: str) -> list[str]:
    return streamproc_command(
        "run",
        "-i",
        str(input_path),
        "--log-format",
        "json",
        "--max-in-flight",
        "4",
        "--window-ms",
        "20",
        *more,
    )


def interrupted_run(command: list[str], cwd: Path, results: Path) -> tuple[int, str]:
    """Run ``command`` and send SIGINT to the process once some, not all, results are
    written; its exit status and stderr. Each look is taken with the process frozen."""
    log_path = cwd / "interrupted.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, cwd=cwd, env=streamproc_env(), stdout=subprocess.DEVNULL, stderr=log
        )
    try:
        patience = Patience(90)
        while True:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            stalled = patience.expired(progress_of(proc.pid, log_path))
            assert stalled is None, f"{stalled}\n{log_path.read_text()[-3000:]}"
            proc.send_signal(signal.SIGSTOP)
            written = results.read_bytes().count(b"\n") if results.exists() else 0
            if written >= 4:  # whole lines: the process may be frozen halfway through one
                proc.send_signal(signal.SIGINT)  # handled once the process runs on
                proc.send_signal(signal.SIGCONT)
                break
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.1)
        patience = Patience(90)
        while proc.poll() is None:
            stalled = patience.expired(progress_of(proc.pid, log_path))
            assert stalled is None, f"{stalled}\n{log_path.read_text()[-3000:]}"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, log_path.read_text()


def answers_in(out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return read_jsonl(out / "results.jsonl"), read_jsonl(out / "dead-letters.jsonl")


def test_a_rerun_after_sigint_answers_only_what_is_left_and_a_third_run_nothing(
    tmp_path: Path,
) -> None:
    """Interrupted with SIGINT, a run drains and exits 0; the same command again answers the
    rest (its summary counts what was `already answered`), so the outputs hold exactly one
    answer per input line and no event was generated twice; a third run answers everything
    from the ledger and writes nothing."""
    lines = input_lines()
    input_path = write_jsonl(tmp_path / "prompts.jsonl", lines)
    out = tmp_path / "streamproc-out"
    command = rerun_command(input_path)

    status, first_log = interrupted_run(command, tmp_path, out / "results.jsonl")
    first = summary_of(first_log)
    assert status == 0, first_log[-3000:]
    assert first.adds_up and first.abandoned == 0
    assert 0 < first.received < len(lines)  # interrupted mid-run
    answered_first = sum(len(a) for a in answers_in(out))
    assert answered_first == first.results + first.dead_letters

    second_run = run_to_end(command, cwd=tmp_path, env=streamproc_env())
    second_log = second_run.stderr.decode()
    assert second_run.returncode == 0, second_log[-3000:]
    second = summary_of(second_log)
    assert second.received == len(lines) and second.adds_up and second.abandoned == 0
    assert second.already_answered == answered_first
    assert f"{answered_first} already answered" in second_log
    results, dead = answers_in(out)
    assert len(results) + len(dead) == len(lines)  # one answer per line, none twice
    events = [line for line in lines if isinstance(line, dict)]
    assert sorted(r["event_id"] for r in results) == sorted(e["event_id"] for e in events)
    assert sorted(d["origin"]["offset"] for d in dead) == [5, 17, 29]
    generated = counted(log_entries(first_log), "event_generated") + counted(
        log_entries(second_log), "event_generated"
    )
    assert [e for e, n in generated.items() if n > 1] == []
    assert not any(r["redelivery"] for r in results)

    before = [(out / name).read_bytes() for name in ("results.jsonl", "dead-letters.jsonl")]
    third_run = run_to_end(command, cwd=tmp_path, env=streamproc_env())
    third_log = third_run.stderr.decode()
    assert third_run.returncode == 0, third_log[-3000:]
    third = summary_of(third_log)
    assert (third.received, third.already_answered) == (len(lines), len(lines))
    assert (third.results, third.dead_letters) == (0, 0)
    assert f"{len(lines)} already answered" in third_log
    assert counted(log_entries(third_log), "event_generated") == Counter()
    after = [(out / name).read_bytes() for name in ("results.jsonl", "dead-letters.jsonl")]
    assert after == before


def test_reprocess_answers_every_line_again(tmp_path: Path) -> None:
    """`--reprocess` answers every line anew, those the ledger holds included: each event
    gets a second result (not a redelivery) and each bad line a second dead letter."""
    lines = input_lines()[:12]
    input_path = write_jsonl(tmp_path / "prompts.jsonl", lines)
    out = tmp_path / "streamproc-out"
    done = run_to_end(rerun_command(input_path), cwd=tmp_path, env=streamproc_env())
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    once = answers_in(out)

    again = run_to_end(rerun_command(input_path, "--reprocess"), cwd=tmp_path, env=streamproc_env())
    log = again.stderr.decode()
    assert again.returncode == 0, log[-3000:]
    summary = summary_of(log)
    assert summary.already_answered == 0 and "already answered" not in log
    assert (summary.received, summary.results + summary.dead_letters) == (len(lines), len(lines))
    results, dead = answers_in(out)
    assert results[: len(once[0])] == once[0] and dead[: len(once[1])] == once[1]
    anew = results[len(once[0]) :]
    assert sorted(r["event_id"] for r in anew) == sorted(r["event_id"] for r in once[0])
    assert not any(r["redelivery"] for r in anew)
    assert len(dead) == 2 * len(once[1]) == 2
