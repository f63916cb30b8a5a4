"""The `streamproc` command end to end, as a user runs it (real subprocesses)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import av
import pytest

from tests.helpers import event, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "prompts.jsonl"


def streamproc(
    *args: str, cwd: Path, input: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "streamproc", *args],
        cwd=cwd,
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def probe(url: str) -> tuple[int, int, int]:
    """(frames, width, height) of the MP4 at a file:// URL, decoded with PyAV."""
    data = Path(url2pathname(urlparse(url).path)).read_bytes()
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return frames, stream.width, stream.height


@pytest.mark.slow
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
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
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
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stderr is not None
    for i in range(3):
        proc.stdin.write((json.dumps(event(f"t{i}", f"prompt {i}")) + "\n").encode())
    proc.stdin.flush()
    results = tmp_path / "streamproc-out" / "results.jsonl"
    deadline = time.monotonic() + 120
    # Wait until the worker has admitted the events (first result is written), then stop it
    # with stdin still open: only the signal can end this run.
    while not read_jsonl(results) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert sorted(r["event_id"] for r in read_jsonl(results)) == ["t0", "t1", "t2"]
    assert b'"signal_received"' in err


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
