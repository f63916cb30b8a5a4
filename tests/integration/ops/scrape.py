"""Reading a worker's operations endpoints the way Prometheus and a prober do."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def get(port: int, path: str) -> tuple[int, str]:
    """Status and body of ``GET http://127.0.0.1:port/path``; (0, error) when refused."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"http://127.0.0.1:{port}{path}") as response,
        ):
            return response.status, await response.text()
    except aiohttp.ClientConnectionError as exc:
        return 0, repr(exc)


async def scrape(port: int) -> Samples:
    """Every sample of ``/metrics``, keyed by name and labels."""
    status, body = await get(port, "/metrics")
    assert status == 200, body
    return parse(body)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name{labels}``, 0 when absent."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over every sample whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets of ``name`` present."""
    return [dict(ls) for (n, ls) in samples if n == name]


async def ready(port: int) -> tuple[int, dict[str, Any]]:
    status, body = await get(port, "/readyz")
    return status, json.loads(body) if status else {}


async def scrape_until(
    port: int, check: Callable[[Samples], bool], seconds: float = 60.0
) -> Samples:
    """Scrape until ``check`` holds for the samples; fail after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        samples = await scrape(port)
        if check(samples):
            return samples
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("metric condition not reached in time")
        await asyncio.sleep(0.1)
