"""Shared fixtures: settings in a temporary directory, one tiny pipeline per session, the real
MiniLM encoder, the machine's Redis with a fresh key prefix per test."""

from __future__ import annotations

import os

# Nothing is ever downloaded: models come from packages or are built from config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Workers started by tests (in process or as CLI subprocesses) serve their metrics on a free
# loopback port, so several can run at once; tests that scrape set the port themselves.
os.environ.setdefault("STREAMPROC_METRICS__PORT", "0")
os.environ.setdefault("STREAMPROC_METRICS__HOST", "127.0.0.1")

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from streamproc.cache.embedder import SentenceTransformerEncoder
from streamproc.generation.wan import load_pipeline
from streamproc.settings import GenerationSettings, Settings, load_settings
from tests.helpers import minilm

MakeSettings = Callable[..., Settings]

# Two shared cores: wall-clock health checks and deadlines would make property tests flaky.
hypothesis_settings.register_profile(
    "streamproc", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("streamproc")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def make_settings(tmp_path: Path) -> MakeSettings:
    """Settings writing everything under ``tmp_path``; keyword arguments override sections."""

    def make(**overrides: Any) -> Settings:
        base: dict[str, Any] = {
            "worker_id": "test-worker",
            "commit_interval_ms": 20,
            "shutdown_grace_s": 20,
            "local": {
                "results": str(tmp_path / "results.jsonl"),
                "dead_letters": str(tmp_path / "dead-letters.jsonl"),
            },
            "storage": {"local_dir": str(tmp_path / "store"), "retry_initial_s": 0.01},
            "generation": {"device": "cpu"},
            "batch": {"window_ms": 30},
            # Threads keep the many short processor tests fast; the CLI tests and one
            # processor test use the default process pool.
            "encoding": {"executor": "thread"},
        }
        return load_settings(None, **_merge(base, overrides))

    return make


@pytest.fixture(scope="session")
def tiny_pipeline() -> tuple[Any, str]:
    """The tiny random-weight Wan pipeline, loaded once (it is never mutated by tests)."""
    return load_pipeline(GenerationSettings(device="cpu"))


@pytest.fixture(scope="session")
def minilm_encoder() -> SentenceTransformerEncoder:
    """The real all-MiniLM-L6-v2 encoder, loaded once per session."""
    return minilm()


MACHINE_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (``.ci/run`` starts one when none answers)."""
    client = redis.Redis.from_url(MACHINE_REDIS, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"tests need Redis on 127.0.0.1:6379 ({exc}); .ci/run starts one")
    finally:
        client.close()
    return MACHINE_REDIS


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    prefix = f"streamproc-test:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
