"""`streamproc replay` as a command against the real Tansu broker: a killed replay resumes
from its checkpoint, bad ranges are refused in one line, a dry run only counts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from streamproc.cli import main
from tests.helpers import event, eventually
from tests.integration.conftest import PROMPT_PARTITIONS
from tests.integration.workers import process_progress
from tests.kafka_broker import Topics, answers, produce, read_all

# Replays load the model: their waits end on a lack of progress, not on the clock, so the
# per-test ceiling is far above their need.
pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def records(ids: list[str], shape: dict[str, int] | None = None) -> list[Any]:
    return [
        (
            i % PROMPT_PARTITIONS,
            event_id.encode(),
            json.dumps({**event(event_id, f"scene {event_id}"), **(shape or {})}).encode(),
            [],
        )
        for i, event_id in enumerate(ids)
    ]


def replay_command(bootstrap: str, topics: Topics, tmp_path: Path, *args: str) -> list[str]:
    return [
        "replay",
        "--bootstrap-servers",
        bootstrap,
        "--results-topic",
        topics.results,
        "--dead-letter-topic",
        topics.dead_letters,
        "--no-idempotence",
        "--device",
        "cpu",
        "--store-dir",
        str(tmp_path / "store"),
        "--window-ms",
        "50",
        "--no-progress",
        "--log-format",
        "json",
        *args,
    ]


def spawn(command: list[str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamproc", *command],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _running(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    assert proc.poll() is None, log_path.read_text()[-3000:]


def finished_offsets(checkpoint: dict[str, Any]) -> set[tuple[int, int]]:
    """(partition, offset) the checkpoint records as finished."""
    out = set()
    for p, state in checkpoint["partitions"].items():
        out.update((int(p), o) for o in range(state["start"], state["watermark"]))
        out.update((int(p), o) for o in state["done"])
    return out


async def test_a_killed_replay_resumed_from_its_checkpoint_finishes_the_range_and_repeats_nothing(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    ids = [f"k-{i:02d}" for i in range(18)]
    origins = dict(zip(ids, await produce(kafka_bootstrap, topics.prompts, records(ids)), strict=True))  # fmt: skip
    by_origin = {origin: event_id for event_id, origin in origins.items()}
    checkpoint_path = tmp_path / "replay.checkpoint.json"
    log_path = tmp_path / "replay.log"
    args = replay_command(kafka_bootstrap, topics, tmp_path, "--cache-backend", "none")
    first = spawn(
        [*args, "--topic", topics.prompts, "--from", "0", "--to", "now",
         "--replay-id", "r-kill", "--checkpoint", str(checkpoint_path), "--rate", "4/s"],
        log_path, tmp_path,
    )  # fmt: skip
    try:

        async def publishing() -> bool:
            # Two results on the topic and at least one of them in the checkpoint: the file is
            # written only after the broker acknowledged a result, so the topic runs ahead of it.
            if len(await answers(kafka_bootstrap, topics.results)) < 2:
                return False
            if not checkpoint_path.exists():
                return False
            return bool(finished_offsets(json.loads(checkpoint_path.read_text())))

        # However long the start takes on a busy machine, as long as the replay progresses.
        await eventually(
            publishing,
            90,
            alive=lambda: _running(first, log_path),
            context=lambda: log_path.read_text()[-3000:],
            progress=process_progress(first.pid, log_path),
        )
        first.send_signal(signal.SIGSTOP)  # hold still: file and topic agree for a moment
        checkpoint = json.loads(checkpoint_path.read_text())
        finished_at_kill = {by_origin[o] for o in finished_offsets(checkpoint)}
        published = {a["event_id"] for a in await answers(kafka_bootstrap, topics.results)}
        # At 4 events a second the replay of 18 cannot have finished by the second result.
        assert len(finished_at_kill) < len(ids), "the replay finished before it could be caught"
        first.kill()
        first.wait(timeout=30)
        # The checkpoint is written only after the broker acknowledged a result.
        assert finished_at_kill <= published
        assert finished_at_kill, "nothing finished before the kill"
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)

    second = spawn([*args, "--resume", str(checkpoint_path)], log_path, tmp_path)

    async def exited() -> bool:
        return second.poll() is not None

    try:
        await eventually(
            exited,
            90,
            context=lambda: log_path.read_text()[-3000:],
            progress=process_progress(second.pid, log_path),
        )
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, log_path.read_text()[-3000:]

    count: dict[str, int] = {}
    for answer in await answers(kafka_bootstrap, topics.results):
        count[answer["event_id"]] = count.get(answer["event_id"], 0) + 1
        assert answer["replay_id"] == "r-kill" and answer["replayed"] is True
    assert sorted(count) == ids  # every event of the range at least once
    assert {e: count[e] for e in finished_at_kill} == dict.fromkeys(finished_at_kill, 1)
    final = json.loads(checkpoint_path.read_text())
    assert final["complete"] is True
    assert len(finished_offsets(final)) == len(ids)


async def test_ctrl_c_while_the_replay_starts_says_so_in_one_line(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    await produce(kafka_bootstrap, topics.prompts, records(["c-0", "c-1"]))
    log_path = tmp_path / "replay.log"
    args = replay_command(kafka_bootstrap, topics, tmp_path, "--cache-backend", "none")
    proc = spawn(
        [*args, "--topic", topics.prompts, "--from", "0", "--to", "now"], log_path, tmp_path
    )

    def said(text: str) -> Any:
        async def check() -> bool:
            return text in log_path.read_text()

        return check

    try:
        # The range is resolved and the checkpoint named before the model loads.
        await eventually(
            said("checkpoint:"),
            90,
            alive=lambda: _running(proc, log_path),
            context=lambda: log_path.read_text()[-3000:],
            progress=process_progress(proc.pid, log_path),
        )
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = log_path.read_text()
    assert proc.returncode == 130, log[-3000:]
    assert "interrupted while starting, before any record was replayed" in log
    assert "Traceback" not in log
    assert await answers(kafka_bootstrap, topics.results) == []


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--from", "9", "--to", "3"], "--from offset 9 is after --to offset 3"),
        (["--from", "yesterday"], "is not an offset, an ISO-8601 time"),
        (["--from", "2026-01-01T00:00:00"], "has no time zone"),
        (["--from", "now"], "'now' can only end a range"),
        (["--from", "0", "--partitions", "0,7"], "has partitions 0-2, not [7]"),
        (["--from", "0", "--partitions", "x"], "is not a list of partitions"),
        (["--from", "0", "--rate", "fast"], "is not a positive number of events"),
        (["--to", "now"], "say where the range starts"),
        (["--topic", "a,b", "--from", "0"], "a replay reads one topic"),
        (["--from", "0", "--replay-id", "a/b"], "use 1-100 letters, digits"),
        (["--from", "0", "--checkpoint", "no/such/dir/cp.json"], "cannot write checkpoint"),
        (["--from", "0", "--checkpoint", "taken.json"], "taken.json exists (a replay started"),
        (["--resume", "taken.json", "--from", "0"], "--resume takes the range"),
        (["--resume", "garbage.json"], "is not JSON"),
    ],
)
def test_bad_ranges_are_refused_in_one_line(
    flags: list[str],
    message: str,
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # where a default checkpoint would go
    (tmp_path / "taken.json").write_text("{}")
    (tmp_path / "garbage.json").write_text("{nope")
    code, out = invoke(*replay_command(kafka_bootstrap, topics, tmp_path, "--topic", topics.prompts, *flags))  # fmt: skip
    assert code == 2, out
    assert message in out
    assert "Traceback" not in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.json", "taken.json"]


def test_a_missing_topic_is_refused_in_one_line(
    kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    code, out = invoke(*replay_command(kafka_bootstrap, topics, tmp_path, "--topic", "nope", "--from", "0"))  # fmt: skip
    assert code == 2 and "kafka topic nope does not exist" in out and "Traceback" not in out


def test_a_dry_run_counts_the_range_and_the_expected_hit_rate_without_generating(
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    ids = [f"d-{i:02d}" for i in range(9)]
    lines = records(ids)
    # A repeat of d-08's prompt and a line that is not an event, on partition 2.
    lines.append((2, b"d-rep", json.dumps(event("d-rep", "scene d-08")).encode(), []))
    lines.append((2, None, b"not json", []))
    asyncio.run(produce(kafka_bootstrap, topics.prompts, lines))
    env = {"STREAMPROC_CACHE__KEY_PREFIX": redis_prefix}
    cache = ["--cache-backend", "redis", "--redis-url", redis_url]
    base = replay_command(kafka_bootstrap, topics, tmp_path, "--topic", topics.prompts, *cache)
    # A replay of offsets 0-1 caches six prompts (and shows its progress as log events).
    code, out = invoke(*base, "--from", "0", "--to", "1", "--progress-interval", "0.1",
                       "--checkpoint", str(tmp_path / "cp.json"), env=env)  # fmt: skip
    assert code == 0, out
    assert '"event": "replay_progress"' in out and '"event": "replay_finished"' in out
    assert "complete: 6 processed, 0 cache hits (0 exact, 0 semantic), 6 generated" in out
    before = len(asyncio.run(read_all(kafka_bootstrap, topics.results)))
    assert before == 6

    store = redis.Redis.from_url(redis_url)
    keys_before = {k: store.dump(k) for k in store.scan_iter(match=f"{redis_prefix}:*")}

    code, out = invoke(*base, "--from", "0", "--dry-run", env=env)

    assert code == 0, out
    table = out.splitlines()
    total = next(line for line in table if line.split()[:1] == ["total"]).split()
    # events, invalid, exact, semantic, repeats, generate
    assert total[1:] == ["11", "1", "6", "0", "1", "3"]
    assert "expected cache hit rate: 70.0% (7 of 10 valid events)" in out
    assert len(asyncio.run(read_all(kafka_bootstrap, topics.results))) == before
    assert [p.name for p in tmp_path.glob("*.json")] == ["cp.json"]  # none for the dry run
    keys_after = {k: store.dump(k) for k in store.scan_iter(match=f"{redis_prefix}:*")}
    store.close()
    assert set(keys_after) == set(keys_before)  # the cache was read, not written
    changed = [k for k in keys_before if keys_after[k] != keys_before[k]]
    assert changed == [], changed
