"""Two `streamproc run` processes, one after the other, sharing the cache through Redis."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.helpers import event, read_jsonl, write_jsonl
from tests.integration.workers import run_to_end

ROOT = Path(__file__).resolve().parents[3]


def run(cwd: Path, input_file: Path, redis_url: str, prefix: str) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        # This checkout, whatever the installed copy is.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "STREAMPROC_CACHE__KEY_PREFIX": prefix,
    }
    # Fails after 90 s without progress (CPU time, output), not after a fixed time.
    proc = run_to_end(
        [sys.executable, "-m", "streamproc", "run", "-i", str(input_file), "--log-format",
         "json", "--cache-backend", "redis", "--redis-url", redis_url],
        cwd=cwd,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(900)  # a ceiling only: each run fails sooner when it stops progressing
def test_a_later_run_answers_from_what_an_earlier_one_stored_in_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    first = write_jsonl(
        tmp_path / "first.jsonl", [event("w1", "a red fox crossing a frozen lake at dawn")]
    )
    second = write_jsonl(
        tmp_path / "second.jsonl",
        [
            event("w2", "at dawn, a red fox crosses a frozen lake"),
            event("w3", "A red fox crossing a frozen lake at dawn."),
            event("w4", "a red fox crossing a frozen lake at night"),
        ],
    )
    run(tmp_path, first, redis_url, redis_prefix)
    run(tmp_path, second, redis_url, redis_prefix)
    results = {r["event_id"]: r for r in read_jsonl(tmp_path / "streamproc-out" / "results.jsonl")}
    assert results["w1"]["cache"] == "miss"
    assert (results["w2"]["cache"], results["w2"]["matched_event_id"]) == ("hit-semantic", "w1")
    assert (results["w3"]["cache"], results["w3"]["similarity"]) == ("hit-exact", 1.0)
    assert results["w4"]["cache"] == "miss"  # night is not dawn
    assert results["w2"]["video_url"] == results["w1"]["video_url"]
