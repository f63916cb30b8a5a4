"""Stopping the cache's background tasks for sure."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

log = structlog.get_logger(__name__)


async def cancel_and_wait(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until they end, cancelling again if one swallowed it (the
    Redis client can, when a cancel races with a reply)."""
    for _ in range(20):
        running = [task for task in tasks if not task.done()]
        if not running:
            return
        for task in running:
            task.cancel()
        await asyncio.wait(running, timeout=0.5)
    log.warning("cache_task_did_not_stop", tasks=[t.get_name() for t in tasks if not t.done()])
