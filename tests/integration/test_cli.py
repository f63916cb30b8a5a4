"""The `streamproc` command end to end, as a user runs it (real subprocesses)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import av
import pytest

from tests.helpers import Patience, event, read_jsonl
from tests.integration.workers import progress_of, run_to_end, streamproc_command

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "prompts.jsonl"


def streamproc(
    *args: str, cwd: Path, input: bytes | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[bytes]:
    """Run the command to its end; it fails only after ``timeout`` seconds in which it made
    no progress (CPU time, output), however long a busy machine makes the whole run."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return run_to_end(streamproc_command(*args), cwd=cwd, env=env, input=input, stall_s=timeout)


def probe(url: str) -> tuple[int, int, int]:
    """(frames, width, height) of the MP4 at a file:// URL, decoded with PyAV."""
    data = Path(url2pathname(urlparse(url).path)).read_bytes()
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return frames, stream.width, stream.height


@pytest.mark.slow
@pytest.mark.timeout(900)  # a ceiling only: the run fails sooner when it stops progressing
def test_example_file_gives_playable_videos_results_and_dead_letters(tmp_path: Path) -> None:
    proc = streamproc("run", "--input", str(EXAMPLE), "--log-format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    results = read_jsonl(tmp_path / "streamproc-out" / "results.jsonl")
    dead = read_jsonl(tmp_path / "streamproc-out" / "dead-letters.jsonl")
    lines = [
        json.loads(x) if x.startswith("{") and x.endswith("}") else None
        for x in EXAMPLE.read_text().splitlines()
    ]
    assert len(results) + len(dead) == len(lines) == 20
    assert sorted(d["reason"] for d in dead) == [
        "malformed",
        "schema_violation",
        "unsupported_parameter",
    ]
    asked = {e["event_id"]: e for e in lines if e}
    caches = sorted(r["cache"] for r in results)
    assert caches.count("hit-exact") == 3
    for result in results:
        assert result["status"] == "ok"
        want = asked[result["event_id"]]
        assert probe(result["video_url"]) == (want["num_frames"], want["width"], want["height"])
    assert b"20 events" in proc.stderr


def test_stdin_input_and_stdout_results(tmp_path: Path) -> None:
    lines = [json.dumps(event("s1", "a kite")), "oops"]
    proc = streamproc(
        "run",
        "-i",
        "-",
        "--results",
        "-",
        "--dead-letters",
        str(tmp_path / "dl.jsonl"),
        cwd=tmp_path,
        input=("\n".join(lines) + "\n").encode(),
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    [result] = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert result["event_id"] == "s1" and result["status"] == "ok"
    assert read_jsonl(tmp_path / "dl.jsonl")[0]["reason"] == "malformed"


def test_sigterm_finishes_in_flight_work_then_exits(tmp_path: Path) -> None:
    proc, err = sigterm_mid_run(tmp_path, close_stdin=True)
    assert proc.returncode == 0, err.decode()[-2000:]
    results = tmp_path / "streamproc-out" / "results.jsonl"
    assert sorted(r["event_id"] for r in read_jsonl(results)) == ["t0", "t1", "t2"]
    assert b'"signal_received"' in err


def test_sigterm_with_stdin_still_open_exits_0(tmp_path: Path) -> None:
    """Stopped by SIGTERM while its standard input stays open (a terminal, a pipe whose
    writer lives on), the run still ends with exit status 0 after its summary."""
    proc, err = sigterm_mid_run(tmp_path, close_stdin=False)
    assert b"streamproc: 3 events: 3 results" in err
    assert proc.returncode == 0, err.decode()[-2000:]


def sigterm_mid_run(tmp_path: Path, *, close_stdin: bool) -> tuple[subprocess.Popen[bytes], bytes]:
    """`run -i -` given three events on stdin, sent SIGTERM once it wrote a result; stdin is
    closed right after the signal (``close_stdin``) or only once the process has ended."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log_path = tmp_path / "stderr.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamproc",
                "run",
                "-i",
                "-",
                "--log-format",
                "json",
                "--window-ms",
                "20",
            ],
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stderr=log,
            env=env,
        )
    assert proc.stdin is not None
    try:
        for i in range(3):
            proc.stdin.write((json.dumps(event(f"t{i}", f"prompt {i}")) + "\n").encode())
        proc.stdin.flush()
        results = tmp_path / "streamproc-out" / "results.jsonl"
        # Wait until the worker has admitted the events (first result is written), then stop
        # it with stdin still open: only the signal can end this run.
        wait_on_progress(lambda: bool(read_jsonl(results)), proc, log_path)
        proc.send_signal(signal.SIGTERM)
        if close_stdin:
            proc.stdin.close()
        wait_on_progress(lambda: proc.poll() is not None, proc, log_path)
    finally:
        proc.kill()
        proc.stdin.close()
    return proc, log_path.read_bytes()


def test_ctrl_c_while_starting_says_so_in_one_line(tmp_path: Path) -> None:
    """Interrupted before the worker handles signals itself (the model loading): exit 130
    and a line that says nothing was read, not a traceback."""
    events = tmp_path / "in.jsonl"
    events.write_text(json.dumps(event("e0", "a prompt")) + "\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log_path = tmp_path / "stderr.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            streamproc_command("run", "-i", str(events), "--log-format", "json"),
            cwd=tmp_path,
            stderr=log,
            env=env,
        )
    try:
        # The ops server starts before the model loads.
        wait_on_progress(lambda: b"ops_server_started" in log_path.read_bytes(), proc, log_path)
        proc.send_signal(signal.SIGINT)
        wait_on_progress(lambda: proc.poll() is not None, proc, log_path)
    finally:
        proc.kill()
    err = log_path.read_text()
    # (Seconds of model and cache loading lie between the ops server and the worker.)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted while starting, before any event was read" in err
    assert "Traceback" not in err
    assert not (tmp_path / "streamproc-out" / "results.jsonl").exists() or not read_jsonl(
        tmp_path / "streamproc-out" / "results.jsonl"
    )


def wait_on_progress(
    condition: Callable[[], bool], proc: subprocess.Popen[bytes], log_path: Path
) -> None:
    """Wait until ``condition()`` holds; fail when ``proc`` makes no progress for 90 s."""
    patience = Patience(90)
    while not condition():
        stalled = patience.expired(progress_of(proc.pid, log_path))
        assert stalled is None, f"{stalled}\n{log_path.read_text()[-3000:]}"
        time.sleep(0.1)


def test_produce_writes_valid_events(tmp_path: Path) -> None:
    proc = streamproc("produce", "--count", "5", "--repeat-ratio", "0.5", cwd=tmp_path)
    assert proc.returncode == 0
    events = [json.loads(x) for x in proc.stdout.decode().splitlines()]
    assert len(events) == 5 and len({e["event_id"] for e in events}) == 5


def test_bad_flag_values_fail_with_one_line_not_a_traceback(tmp_path: Path) -> None:
    proc = streamproc("run", "-i", str(EXAMPLE), "--max-batch-size", "0", cwd=tmp_path)
    assert proc.returncode == 1
    assert b"Traceback" not in proc.stderr
    assert b"max_batch_size" in proc.stderr


def test_missing_input_fails_cleanly(tmp_path: Path) -> None:
    proc = streamproc("run", "-i", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert proc.returncode == 1
    assert b"cannot open input" in proc.stderr and b"Traceback" not in proc.stderr


def test_run_without_input_explains_what_to_pass(tmp_path: Path) -> None:
    proc = streamproc("run", cwd=tmp_path)
    assert proc.returncode == 1 and b"--input" in proc.stderr


@pytest.mark.parametrize("command", [[], ["run"], ["produce"], ["schemas"]])
def test_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    proc = streamproc(*command, "--help", cwd=tmp_path)
    assert proc.returncode == 0 and b"Usage:" in proc.stdout


def test_schema_files_are_current(tmp_path: Path) -> None:
    proc = streamproc("schemas", "--check", "--dir", str(ROOT / "schemas"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache.internal:6380/2", "redis://cache.internal:6380/2"),
    ],
)
def test_config_show_hides_the_password_of_the_redis_url_and_shows_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, shown: str
) -> None:
    monkeypatch.setenv("STREAMPROC_CACHE__REDIS_URL", url)
    monkeypatch.setenv("STREAMPROC_KAFKA__SASL_PASSWORD", "hunter3")
    proc = streamproc("config", "show", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    settings = json.loads(proc.stdout)
    assert settings["cache"]["redis_url"] == shown
    assert settings["kafka"]["sasl_password"] == "**********"
    assert b"hunter" not in proc.stdout + proc.stderr
