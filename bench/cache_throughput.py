"""Events per second and added latency of the cache path, up to the batcher.

Usage:
    HF_HUB_OFFLINE=1 python bench/cache_throughput.py [--events 3000] [--threads N]
        [--backend memory|redis] [--redis-url URL] [--rates 100,200,300]

Each event takes the processor's path up to the GPU queue: decode and validate the JSON
record, build the scope, look up the semantic cache (real all-MiniLM-L6-v2, FAISS, guard);
a miss then asks the in-flight registry for a near-duplicate, registers as a leader and is
submitted to the MicroBatcher (a consumer drains it; leaders stay open 200 ms, as if
generating). Three workloads, each with its own freshly filled cache:

* exact — repeats of stored prompts with other case and punctuation (no embedding);
* semantic — reworded stored prompts ("in a meadow, a red fox runs" for "a red fox running
  in a meadow"), every text distinct, so every event is embedded;
* miss — prompts of the same templates with subjects the cache does not hold: embedded,
  searched, guard-checked against close neighbours and in-flight leaders, then batched.

Two loads: saturation (64 events in flight, as ``batch.max_in_flight``) gives events/s;
paced arrivals at fixed rates give added latency (arrival to hit, or to batcher) at a load
the worker sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from streamproc.batching import MicroBatcher, ShapeKey  # noqa: E402
from streamproc.cache.base import CacheEntry, CacheScope  # noqa: E402
from streamproc.cache.coalesce import InFlight  # noqa: E402
from streamproc.cache.embedder import BatchingEmbedder, SentenceTransformerEncoder  # noqa: E402
from streamproc.cache.guard import HitPolicy  # noqa: E402
from streamproc.cache.redis_store import RedisStore  # noqa: E402
from streamproc.cache.semantic import SemanticCache  # noqa: E402
from streamproc.events import EventLimits, canonical_prompt, decode_prompt  # noqa: E402

MODEL = "bench-model"
SIZE = {"width": 832, "height": 480, "num_frames": 17, "num_inference_steps": 16}
SUBJECTS = [
    "red fox",
    "grey wolf",
    "brown bear",
    "white horse",
    "black cat",
    "golden eagle",
    "snow leopard",
    "young deer",
    "spotted owl",
    "orange tiger",
    "green parrot",
    "sea otter",
]
OTHER_SUBJECTS = [
    "polar bear",
    "barn owl",
    "grey heron",
    "red panda",
    "wild boar",
    "lynx",
    "koala",
    "camel",
]
ACTIONS = [
    ("running", "runs"),
    ("resting", "rests"),
    ("playing", "plays"),
    ("walking", "walks"),
    ("sleeping", "sleeps"),
    ("hunting", "hunts"),
    ("eating", "eats"),
    ("jumping", "jumps"),
    ("drinking", "drinks"),
    ("climbing", "climbs"),
]
PLACES = [
    "snowy forest",
    "quiet meadow",
    "rocky beach",
    "green valley",
    "misty lake shore",
    "dry canyon",
    "bamboo grove",
    "frozen tundra",
    "sunny orchard",
    "muddy riverbank",
]
TIMES = ["at dawn", "at night", "at sunset", "in the rain"]  # fmt: skip


def stored_prompt(subject: str, action: tuple[str, str], place: str, when: str) -> str:
    return f"a {subject} {action[0]} in a {place} {when}"


def reworded(subject: str, action: tuple[str, str], place: str, when: str) -> str:
    return f"{when}, in a {place}, a {subject} {action[1]}"


def record(i: int, prompt: str) -> bytes:
    return json.dumps({"event_id": f"b{i}", "prompt": prompt, **SIZE}).encode()


@dataclass
class Workload:
    name: str
    stored: list[str]
    requests: list[bytes]


def workloads(count: int, seed: int) -> list[Workload]:
    rng = random.Random(seed)
    combos = list(itertools.product(SUBJECTS, ACTIONS, PLACES, TIMES))
    rng.shuffle(combos)
    combos = combos[:count]
    stored = [stored_prompt(*c) for c in combos]
    exact = [record(i, p.upper() + "!") for i, p in enumerate(stored)]
    semantic = [record(i, reworded(*c)) for i, c in enumerate(combos)]
    others = list(itertools.product(OTHER_SUBJECTS, ACTIONS, PLACES, TIMES))
    rng.shuffle(others)
    miss = [record(i, stored_prompt(*c)) for i, c in enumerate(itertools.islice(
        itertools.cycle(others), count))]  # fmt: skip
    return [
        Workload("exact", stored, exact),
        Workload("semantic", stored, semantic),
        Workload("miss", stored, miss),
    ]


class EventPath:
    """The processor's path up to the batcher, for one cache."""

    def __init__(self, cache: SemanticCache) -> None:
        self.cache = cache
        self.inflight = InFlight(cache)
        self.batcher: MicroBatcher[str] = MicroBatcher(
            window_s=0.1, max_batch_size=4, capacity=100_000
        )
        self.limits = EventLimits()
        self.outcomes: dict[str, int] = {}

    async def handle(self, raw: bytes) -> None:
        event = decode_prompt(raw, self.limits)
        prompt = canonical_prompt(event.prompt)
        scope = CacheScope(
            MODEL, event.width, event.height, event.num_frames, event.num_inference_steps,
            event.guidance_scale, None, event.tenant,
        )  # fmt: skip
        hit = await self.cache.lookup(prompt, scope)
        if hit is None:
            hit = await self.inflight.follow(prompt, scope)
        if hit is not None:
            self.outcomes[hit.outcome.value] = self.outcomes.get(hit.outcome.value, 0) + 1
            return
        self.outcomes["miss"] = self.outcomes.get("miss", 0) + 1
        lead = self.inflight.lead(prompt, scope)
        shape = ShapeKey(MODEL, event.width, event.height, event.num_frames,
                         event.num_inference_steps, event.guidance_scale)  # fmt: skip
        await self.batcher.submit(event.event_id, shape)
        asyncio.get_running_loop().call_later(0.2, lead.finish, None)

    async def drain(self) -> None:
        while await self.batcher.next_batch() is not None:
            pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def saturate(path: EventPath, requests: list[bytes], width: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = iter(requests)

    async def worker() -> None:
        for raw in queue:
            began = time.perf_counter()
            await path.handle(raw)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    return len(requests) / (time.perf_counter() - began), latencies


async def paced(path: EventPath, requests: list[bytes], rate: float) -> list[float]:
    latencies: list[float] = []
    start = time.perf_counter()
    tasks = []

    async def one(raw: bytes, due: float) -> None:
        await path.handle(raw)
        latencies.append(time.perf_counter() - due)

    for i, raw in enumerate(requests):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(raw, due)))
    await asyncio.gather(*tasks)
    return latencies


async def fresh_cache(args: argparse.Namespace, encoder: SentenceTransformerEncoder,
                      stored: list[str], run: int) -> SemanticCache:  # fmt: skip
    shared = None
    if args.backend == "redis":
        shared = RedisStore(args.redis_url, namespace=f"streamproc-bench:{os.getpid()}:{run}")
    policy = HitPolicy(similarity_threshold=args.similarity_threshold)
    cache = SemanticCache(BatchingEmbedder(encoder), shared=shared, policy=policy)
    await cache.start()
    scope = CacheScope(MODEL, SIZE["width"], SIZE["height"], SIZE["num_frames"],
                       SIZE["num_inference_steps"], 5.0)  # fmt: skip
    for start in range(0, len(stored), 64):  # batches the embedder can take in one call
        await asyncio.gather(*(
            cache.insert(p, scope, CacheEntry(f"k{i}", f"file:///{i}.mp4", f"s{i}", p, 0.0))
            for i, p in enumerate(stored[start : start + 64], start)
        ))  # fmt: skip
    if len(cache.store) != len(stored):
        raise SystemExit(f"prefill stored {len(cache.store)} of {len(stored)} entries")
    return cache


def row(label: str, rate: float | None, latencies: list[float], outcomes: dict[str, int]) -> str:
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    shown = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    head = f"{rate:>9,.0f}/s" if rate is not None else " " * 11
    return f"{label:<28} {head}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  [{shown}]"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--width", type=int, default=64, help="events in flight (saturation)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--backend", choices=["memory", "redis"], default="memory")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rates", default="100,200,300", help="paced rates, semantic/miss")
    parser.add_argument("--exact-rates", default="1000,3000")
    parser.add_argument("--workloads", default="exact,semantic,miss")
    parser.add_argument(
        "--similarity-threshold", type=float, default=HitPolicy().similarity_threshold
    )
    args = parser.parse_args()

    encoder = SentenceTransformerEncoder(threads=args.threads)
    import torch

    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}, "
          f"torch threads {torch.get_num_threads()}, backend {args.backend}, "
          f"{args.events} events per run, threshold {args.similarity_threshold}")  # fmt: skip
    run = itertools.count()
    for load in workloads(args.events, seed=0):
        if load.name not in args.workloads.split(","):
            continue
        # Lookups change nothing a later run would see (no hit refreshes, no inserts), so
        # one filled cache serves every run of a workload; leaders are gone in between.
        cache = await fresh_cache(args, encoder, load.stored, next(run))
        embedder = cache._embedder
        assert isinstance(embedder, BatchingEmbedder)
        embedder.forget()
        path = EventPath(cache)
        drain = asyncio.create_task(path.drain())
        calls, encoded = embedder.batches, embedder.encoded
        throughput, latencies = await saturate(path, load.requests, args.width)
        print(row(f"{load.name}: saturation", throughput, latencies, path.outcomes))
        calls, encoded = embedder.batches - calls, embedder.encoded - encoded
        if calls:
            print(f"{'':<28} {calls} embedding calls, {encoded / calls:.1f} prompts per call")
        path.batcher.close()
        await drain
        rates = args.exact_rates if load.name == "exact" else args.rates
        for rate in (float(r) for r in rates.split(",") if r):
            await asyncio.sleep(0.3)  # the last leaders finish
            embedder.forget()  # every request text is encoded again: no remembered vectors
            path = EventPath(cache)
            drain = asyncio.create_task(path.drain())
            count = min(len(load.requests), int(rate * 5))
            latencies = await paced(path, load.requests[:count], rate)
            print(row(f"{load.name}: paced", rate, latencies, path.outcomes))
            path.batcher.close()
            await drain
        await cache.stop()


if __name__ == "__main__":
    asyncio.run(main())
