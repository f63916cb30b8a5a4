"""`streamproc run` serves the operations endpoints, or says in one line why it cannot."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Patience, event, free_port
from tests.integration.ops.scrape import get, scrape_until, value
from tests.integration.workers import progress_of


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamproc", "run", "--no-progress", *args]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def test_a_taken_metrics_port_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            command("--input", "-", "--metrics-port", str(port)),
            cwd=tmp_path,
            input=b"",
            capture_output=True,
            env={**ENV, "STREAMPROC_METRICS__HOST": "127.0.0.1"},
            timeout=120,
            check=False,
        )
    assert proc.returncode == 1
    [line] = proc.stderr.decode().strip().splitlines()
    assert line.startswith(f"streamproc: error: cannot serve metrics on 127.0.0.1:{port}")


@pytest.mark.slow
async def test_a_running_worker_answers_probes_and_counts_what_it_reads(tmp_path: Path) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *command("--input", "-", "--metrics-port", str(port), "--log-format", "json"),
        cwd=tmp_path,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**ENV, "STREAMPROC_METRICS__HOST": "127.0.0.1"},
    )
    assert proc.stdin is not None and proc.stderr is not None
    try:
        # However long the model takes to load on a busy machine, while it progresses.
        patience = Patience(90)
        while (await get(port, "/readyz"))[0] != 200:
            assert proc.returncode is None, "worker exited"
            assert patience.expired(progress_of(proc.pid)) is None, "never ready"
            await asyncio.sleep(0.2)
        assert (await get(port, "/healthz"))[0] == 200
        proc.stdin.write(json.dumps(event("cli-1")).encode() + b"\n")
        await proc.stdin.drain()
        after = await scrape_until(
            port,
            lambda s: value(s, "streamproc_events_finished_total", outcome="generated") == 1,
        )
        assert value(after, "streamproc_events_received_total") == 1
        assert value(after, "streamproc_videos_generated_total") == 1
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 120) == 0
        stderr = (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = [json.loads(x) for x in stderr.splitlines() if x.startswith("{")]
    generated = [x for x in lines if x["event"] == "event_generated"]
    assert generated and generated[0]["event_id"] == "cli-1" and generated[0]["batch_id"] == "b1"
    assert any(x["event"] == "ops_server_started" and x["port"] == port for x in lines)
