"""Host-side cost of the control plane's status events, on this machine's CPU.

Measures what the worker's event loop and GPU thread pay for status (the GPU itself does no
extra work: a step boundary is a Python call between two scheduler steps):

* **per event**: ``ControlPlane.emit`` (build a StatusEvent, queue it) plus the sender's share
  (serialise, write a JSONL line) — microseconds per status event, times the five states every
  generated event passes (accepted, queued, stored, answered, and one generating);
* **per step**: a batch's step boundary with progress on (``status.step_interval_s = 0``, so
  every step reports): the GPU-thread call and the loop-side report for each video;
* **tiny pipeline**: denoising time of the tiny random-weight model with and without a step
  control (a noisy CPU figure: the tiny model's 2 ms steps dwarf the hook).

    python bench/control_overhead.py --out bench/results/2026-12-01-cpu/control_overhead.json

The ≤ 1 % check of the issue is against GPU time per video and needs a GPU run (not measured
here); the figures below are the numerators of that ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from streamproc.batching import ShapeKey
from streamproc.control.plane import ControlPlane
from streamproc.control.status import JsonlStatusSink
from streamproc.events import StatusState
from streamproc.generation.base import GenerationRequest, StepControl
from streamproc.generation.wan import WanGenerator, load_pipeline
from streamproc.metrics import Metrics
from streamproc.settings import GenerationSettings, Settings


async def per_event(n: int) -> dict[str, float]:
    """Microseconds per status event: emit alone, and emit + send (JSONL)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.model_validate({"worker_id": "bench", "status": {"buffer_size": n}})
        plane = ControlPlane(
            settings,
            metrics=Metrics(),
            status_sink=JsonlStatusSink(str(Path(tmp) / "status.jsonl")),
        )
        started = time.perf_counter()
        for i in range(n):
            plane.emit(f"event-{i}", StatusState.QUEUED, tenant="acme", lane=0, queue_position=3)
        emitted = time.perf_counter() - started
        await plane.start()
        await plane.stop()  # sends what is buffered, then closes the file
        total = time.perf_counter() - started
        assert plane.status is not None
        assert plane.status.sent == n
    return {"emit_us": emitted / n * 1e6, "emit_and_send_us": total / n * 1e6}


async def per_step(steps: int, batch: int) -> dict[str, float]:
    """Microseconds per step boundary of a batch of ``batch`` videos, progress reported at
    every step (GPU-thread call, then the loop-side report of each video)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.model_validate({"worker_id": "bench", "status": {"buffer_size": 10**6}})
        plane = ControlPlane(
            settings, metrics=Metrics(), status_sink=JsonlStatusSink(str(Path(tmp) / "s.jsonl"))
        )
        await plane.start()
        loop = asyncio.get_running_loop()

        def report(done: int, total: int) -> None:
            for row in range(batch):
                plane.emit(
                    f"e{row}",
                    StatusState.GENERATING,
                    step=done,
                    total_steps=total,
                    batch_size=batch,
                )

        def on_step(done: int, total: int) -> None:
            loop.call_soon_threadsafe(report, done, total)

        control = StepControl(batch, on_step=on_step, interval_s=0.0)
        bare = StepControl(batch)

        def run(c: StepControl) -> float:
            start = time.perf_counter()
            for k in range(1, steps + 1):
                c.step(k, steps)
            return time.perf_counter() - start

        thread_bare = await asyncio.to_thread(run, bare)
        thread_on = await asyncio.to_thread(run, control)
        started = time.perf_counter()
        for k in range(1, steps + 1):  # what each call_soon_threadsafe'd report costs the loop
            report(k, steps)
        loop_side = time.perf_counter() - started
        await plane.stop()
    return {
        "gpu_thread_us_per_step_no_progress": thread_bare / steps * 1e6,
        "gpu_thread_us_per_step_with_progress": thread_on / steps * 1e6,
        "loop_us_per_step_per_batch": loop_side / steps * 1e6,
        "batch_size": batch,
    }


async def tiny(steps: int, repeats: int) -> dict[str, Any]:
    """Seconds of a tiny-pipeline batch call with and without a reporting step control."""
    generator = WanGenerator(
        GenerationSettings(device="cpu"), loaded=load_pipeline(GenerationSettings(device="cpu"))
    )
    await generator.start()
    shape = ShapeKey(generator.model_id, 64, 32, 5, steps, 5.0)
    requests = [GenerationRequest(f"e{i}", f"prompt {i}", None, i) for i in range(4)]
    seen = []
    plain, controlled = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        await generator.generate(shape, requests)
        plain.append(time.perf_counter() - start)
        control = StepControl(4, on_step=lambda d, t: seen.append(d), interval_s=0.0)
        start = time.perf_counter()
        await generator.generate(shape, requests, control)
        controlled.append(time.perf_counter() - start)
    await generator.stop()
    return {
        "steps": steps,
        "batch_size": 4,
        "median_s_without_control": statistics.median(plain),
        "median_s_with_control": statistics.median(controlled),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report = {
        "machine": "CPU only (no GPU figure: see the module docstring)",
        "per_event": await per_event(args.events),
        "per_step": await per_step(args.steps, batch=4),
        "tiny_pipeline": await tiny(steps=16, repeats=5),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    asyncio.run(main())
