"""A cache worker process for tests: one semantic cache on Redis, driven over stdin/stdout.

    python -m tests.integration.cache.cache_worker REDIS_URL NAMESPACE

Prints ``{"ready": true, "entries": N}`` once warmed, then answers one JSON line per command:
``{"op": "insert", "prompt": ..., "event_id": ...}`` or ``{"op": "lookup", "prompt": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from streamproc.cache.base import CacheEntry, CacheScope
from streamproc.cache.redis_store import RedisStore
from streamproc.logs import configure_logging
from streamproc.settings import LogSettings
from tests.helpers import semantic_cache

SCOPE = CacheScope("m", 64, 32, 5, 2, 5.0)


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main(url: str, namespace: str) -> None:
    configure_logging(LogSettings(format="json", level="warning"), stream=sys.stderr)
    cache = semantic_cache(shared=RedisStore(url, namespace=namespace, block_s=0.2))
    await cache.start()
    reply({"ready": True, "entries": len(cache.store)})
    try:
        while line := await asyncio.to_thread(sys.stdin.readline):
            command = json.loads(line)
            if command["op"] == "insert":
                entry = CacheEntry(
                    object_key=f"k-{command['event_id']}",
                    video_url=f"file:///{command['event_id']}.mp4",
                    event_id=command["event_id"],
                    prompt=command["prompt"],
                    created_at=time.time(),
                )
                await cache.insert(command["prompt"], SCOPE, entry)
                reply({"ok": True})
            else:
                hit = await cache.lookup(command["prompt"], SCOPE)
                reply(
                    {
                        "hit": hit is not None,
                        "outcome": hit.outcome.value if hit else None,
                        "event_id": hit.entry.event_id if hit else None,
                        "similarity": hit.similarity if hit else None,
                    }
                )
    finally:
        await cache.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
