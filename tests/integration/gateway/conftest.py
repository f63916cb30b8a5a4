"""A real gateway for tests: the parts started against the session's Tansu broker and the
machine's Redis (a fresh key prefix per test), served by uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn

from streamproc.gateway.app import Parts, build_app
from streamproc.gateway.auth import generate_key, key_digest
from streamproc.gateway.http import AccessLog
from streamproc.gateway.service import started_parts
from streamproc.settings import Settings, load_settings
from tests.integration.workers import streamproc_command, streamproc_env
from tests.kafka_broker import Topics, create_topics

REDIS_URL = "redis://127.0.0.1:6379/0"
#: Key prefixes of the gateways made by the running test (their keys are deleted after it).
_PREFIXES: set[str] = set()


@pytest.fixture(autouse=True)
def _forget_redis_keys() -> Iterator[None]:
    """Delete the Redis keys (gateway and ledger) of the gateways the test made."""
    yield
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        for prefix in _PREFIXES:
            for pattern in (f"{prefix}:*", f"{prefix}-ledger:*"):
                keys = list(client.scan_iter(match=pattern, count=1000))
                if keys:
                    client.delete(*keys)
    finally:
        client.close()
        _PREFIXES.clear()


@dataclass(frozen=True)
class GatewayTopics:
    """The test's topics: the usual three plus status and control."""

    names: Topics
    status: str
    control: str

    def kafka(self, bootstrap: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.names.settings(bootstrap),
            "status_topic": self.status,
            "control_topic": self.control,
            **extra,
        }


@pytest.fixture
async def gw_topics(kafka_bootstrap: str) -> GatewayTopics:
    names = Topics.random()
    tag = names.prompts.removeprefix("p-")
    topics = GatewayTopics(names, f"s-{tag}", f"c-{tag}")
    await create_topics(
        kafka_bootstrap,
        {
            names.prompts: 3,
            names.results: 1,
            names.dead_letters: 1,
            topics.status: 1,
            topics.control: 1,
        },
    )
    return topics


@dataclass
class Keys:
    """API keys made for a test: tenant → key."""

    by_tenant: dict[str, str]

    def auth(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.by_tenant[tenant]}"}


def gateway_settings(
    bootstrap: str,
    topics: GatewayTopics,
    keys: Keys,
    *,
    prefix: str | None = None,
    tenants: dict[str, Any] | None = None,
    gateway: dict[str, Any] | None = None,
    redis_url: str = REDIS_URL,
    **sections: Any,
) -> Settings:
    """Settings of a test gateway: keys of ``keys`` configured, generous limits unless
    ``tenants`` says otherwise."""
    prefix = prefix or f"gw-test-{uuid.uuid4().hex[:10]}"
    _PREFIXES.add(prefix)
    limits = tenants or {
        t: {"requests_per_s": 1000, "burst_requests": 1000} for t in keys.by_tenant
    }
    return load_settings(
        None,
        kafka=topics.kafka(bootstrap),
        ledger={"backend": "redis", "redis_url": redis_url, "key_prefix": f"{prefix}-ledger"},
        gateway={
            "port": 0,
            "host": "127.0.0.1",
            "redis_url": redis_url,
            "key_prefix": prefix,
            "tenants": limits,
            "api_keys": [{"tenant": t, "sha256": key_digest(k)} for t, k in keys.by_tenant.items()],
            **(gateway or {}),
        },
        **sections,
    )


def tracked(prefix: str) -> str:
    """``prefix``, whose Redis keys are deleted after the test (for gateway processes)."""
    _PREFIXES.add(prefix)
    return prefix


def make_keys(*tenants: str) -> Keys:
    return Keys({t: generate_key() for t in tenants})


@dataclass
class Served:
    """A running gateway: its base URL and its parts."""

    url: str
    parts: Parts

    def client(self, **kw: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kw)


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Served]:
    """The gateway of ``settings`` on a free loopback port, for an ``async with`` block."""
    async with started_parts(settings) as parts:
        app = AccessLog(build_app(parts), parts.metrics, log_prompts=False)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="off"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            yield Served(f"http://127.0.0.1:{port}", parts)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 30)


def gateway_process(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """A `streamproc gateway` process with ``env`` (STREAMPROC_* settings), logging to
    ``log_path``."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            streamproc_command("gateway"),
            env=streamproc_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
