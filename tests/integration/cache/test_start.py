"""Starting with a shared cache that does not answer: one error line before the model loads,
unless ``cache.degrade_at_start``; then the run goes on and what Redis never got is reported."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from streamproc.cache.memory import MemoryStore
from streamproc.cache.redis_store import RedisStore, check_reachable
from streamproc.errors import ServiceRefused, TransientError
from tests.helpers import RedisServer, event, free_port, read_jsonl, slow_redis, write_jsonl
from tests.integration.test_cli import streamproc

HINT = "or set cache.degrade_at_start=true to run without it until it answers"


def run_with_redis(tmp_path: Path, url: str, *extra: str) -> tuple[int, list[str]]:
    """``streamproc run`` of one small event against ``url``: exit status, stderr lines."""
    source = write_jsonl(tmp_path / "in.jsonl", [event("r1", "a red fox in the snow")])
    proc = streamproc(
        "run", "-i", str(source), "--cache-backend", "redis", "--redis-url", url,
        "--no-metrics", "--log-format", "json", *extra,
        cwd=tmp_path, timeout=180,
    )  # fmt: skip
    return proc.returncode, proc.stderr.decode().strip().splitlines()


def logged(lines: list[str], name: str) -> list[dict[str, Any]]:
    records = [json.loads(x) for x in lines if x.startswith("{")]
    return [r for r in records if r.get("event") == name]


def test_an_unreachable_redis_ends_the_start_with_one_line_before_the_model_loads(
    tmp_path: Path,
) -> None:
    port = free_port()
    status, lines = run_with_redis(tmp_path, f"redis://:hunter2@127.0.0.1:{port}/0")
    assert status == 1
    assert lines == [
        f"streamproc: error: cannot reach the shared cache at redis://127.0.0.1:{port}/0 "
        f"(connection refused); start it, fix cache.redis_url, {HINT}"
    ]  # no traceback, no password, and no model_ready: the model was never loaded


def test_with_degrade_at_start_the_run_ends_normally_and_reports_unsent_writes(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = tmp_path / "streamproc.toml"
    config.write_text("[cache]\ndegrade_at_start = true\n")
    status, lines = run_with_redis(tmp_path, f"redis://127.0.0.1:{port}/0", "--config", str(config))
    assert status == 0, "\n".join(lines[-20:])
    [down] = logged(lines, "cache_shared_store_unavailable")
    assert down["level"] == "warning"
    assert (down["address"], down["error"]) == (f"redis://127.0.0.1:{port}/0", "connection refused")
    [unsent] = logged(lines, "cache_shared_store_writes_unsent")
    assert (unsent["level"], unsent["count"]) == ("warning", 1)  # the one generated video
    assert logged(lines, "model_ready")
    [result] = read_jsonl(tmp_path / "streamproc-out" / "results.jsonl")
    assert (result["event_id"], result["status"]) == ("r1", "ok")


def test_credentials_the_real_redis_rejects_end_the_start(tmp_path: Path, redis_url: str) -> None:
    # No such ACL user: Redis answers WRONGPASS whether or not it has a password of its own.
    status, lines = run_with_redis(
        tmp_path, "redis://streamproc-no-such-user:hunter2@127.0.0.1:6379/0"
    )
    assert status == 1
    [line] = lines
    assert line.startswith(
        "streamproc: error: the shared cache at redis://127.0.0.1:6379/0 refused this worker "
        "(authentication failed"
    )
    assert line.endswith(HINT) and "hunter2" not in line


def test_a_wrong_password_ends_the_start(tmp_path: Path) -> None:
    """A private redis-server that requires a password refuses a wrong one: exit 1, one line
    naming the Redis, never the password."""
    server = RedisServer(tmp_path / "redis", password="the-right-one")
    server.start()
    try:
        url = f"redis://:streamproc-wrong-password@127.0.0.1:{server.port}/0"
        status, lines = run_with_redis(tmp_path, url)
    finally:
        server.stop()
    assert status == 1
    [line] = lines
    assert f"redis://127.0.0.1:{server.port}/0 refused this worker (authentication failed" in line
    assert "streamproc-wrong-password" not in line and "the-right-one" not in line


async def test_a_redis_store_that_must_answer_raises_instead_of_starting(
    redis_prefix: str,
) -> None:
    port = free_port()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", namespace=redis_prefix, op_timeout_s=0.2)
    with pytest.raises(TransientError, match=rf"at redis://127\.0\.0\.1:{port}/0 \("):
        await store.start(MemoryStore(8))
    assert not store.available
    await store.stop()  # nothing started, nothing to stop: still fine


async def test_a_server_that_accepts_but_never_answers_is_a_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; nothing ever replies
        port = silent.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(TransientError, match=r"\(timed out after 200 ms\)"):
            await check_reachable(f"redis://127.0.0.1:{port}/0", timeout_s=0.2)
        assert time.monotonic() - began < 2


async def test_an_unknown_host_is_named_as_such() -> None:
    with pytest.raises(TransientError, match=r"no-such-host\.invalid:6379/0 \(unknown host\)"):
        await check_reachable("redis://no-such-host.invalid:6379/0", timeout_s=2.0)


async def test_a_database_redis_does_not_have_is_refused(redis_url: str) -> None:
    with pytest.raises(ServiceRefused, match=r"redis://127\.0\.0\.1:6379/100000 refused"):
        await check_reachable("redis://127.0.0.1:6379/100000", timeout_s=1.0)


async def test_a_busy_redis_that_answers_slower_than_a_command_may_still_start_the_store(
    redis_prefix: str,
) -> None:
    """The PING at start waits ``start_timeout_s``, not a command's ``op_timeout_s``: on a
    busy host the first answer may be slow, and nothing but the start waits on it."""
    async with slow_redis(delay_s=0.3) as url:
        with pytest.raises(TransientError, match=r"\(timed out after 100 ms\)"):
            await check_reachable(url, timeout_s=0.1)  # a command's budget: too short here
        store = RedisStore(url, namespace=redis_prefix, op_timeout_s=0.1, start_timeout_s=3.0)
        await store.start(MemoryStore(8))  # the start check itself must not time out
        await store.stop()
