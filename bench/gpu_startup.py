"""Worker start-up time, process start to ready, with and without the persistent compile cache.

Each run starts a real worker process (``python -m streamproc run``) on an empty input, with
the full-size random-weight model compiled for one warm-up shape, and reads its JSON log
lines as they arrive: ``model_loaded`` (weights on the GPU), ``warmup_call`` (one per batch
size), ``compile_cache_*``, ``model_ready`` and ``worker_started`` (the moment ``/readyz``
passes). Times are seconds since the process was started.

* a ``cold`` run starts with an empty compile-cache directory and fresh inductor and Triton
  caches (a new machine): it compiles everything, then saves the cache;
* a ``warm`` run keeps the compile-cache directory of the cold run before it, with fresh
  inductor and Triton caches again (a new container whose volume survived).

    python bench/gpu_startup.py --runs fp16-cold,fp16-warm,fp8-cold,fp8-warm --out start.json
    python bench/gpu_startup.py --tiny --runs fp16-cold,fp16-warm      # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

EVENTS = ("model_loaded", "model_ready", "worker_started")


def worker_command(args: argparse.Namespace, fp8: bool, cache_dir: Path, work: Path) -> list[str]:
    empty = work / "empty.jsonl"
    empty.write_text("")
    command = [
        sys.executable,
        "-m",
        "streamproc",
        "run",
        "--input",
        str(empty),
        "--results",
        str(work / "results.jsonl"),
        "--dead-letters",
        str(work / "dead.jsonl"),
        "--store-dir",
        str(work / "store"),
        "--cache-backend",
        "none",
        "--metrics-port",
        "0",
        "--log-format",
        "json",
        "--log-level",
        "info",
        "--no-progress",
        "--compile",
        "--compile-cache-dir",
        str(cache_dir),
        "--max-batch-size",
        str(args.batch),
        "--warmup-shape",
        args.shape,
    ]
    if args.tiny:
        command += ["--model", "tiny", "--device", "cpu"]
    else:
        command += ["--model", "random-5b", "--device", "cuda"]
        command += ["--attention-backend", args.attention_backend]
    if fp8:
        command.append("--fp8")
    return command


def start_once(
    args: argparse.Namespace, name: str, cache_dir: Path, scratch: Path
) -> dict[str, Any]:
    """One worker start; returns when it exits (or is killed at the timeout)."""
    fp8 = name.startswith("fp8")
    work = scratch / name
    work.mkdir(parents=True)
    env = dict(os.environ)
    # Fresh per-process compiler caches: only the compile-cache directory carries over.
    env["TORCHINDUCTOR_CACHE_DIR"] = str(work / "inductor")
    env["TRITON_CACHE_DIR"] = str(work / "triton")
    env["STREAMPROC_GENERATION__VAE_CHANNELS_LAST"] = "true"
    env["STREAMPROC_GENERATION__COMPILE_DYNAMIC_BATCH"] = str(args.dynamic_batch).lower()
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    events: dict[str, float] = {}
    fields: dict[str, Any] = {}
    warmup: list[dict[str, Any]] = []
    tail: list[str] = []
    started = time.perf_counter()
    proc = subprocess.Popen(
        worker_command(args, fp8, cache_dir, work),
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            now = time.perf_counter() - started
            tail.append(line.rstrip()[:400])
            del tail[:-40]
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            event = str(record.get("event", ""))
            if event in EVENTS or event.startswith("compile_cache_"):
                events.setdefault(event, round(now, 2))
            if event == "warmup_call":
                warmup.append({"at_s": round(now, 2), **_drop(record)})
            if event == "model_ready" or event.startswith("compile_cache_"):
                fields[event] = _drop(record)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        outcome: int | str = f"killed after {args.timeout} s (exit {code})"
    else:
        outcome = code
    reader.join(timeout=10)
    result: dict[str, Any] = {
        "run": name,
        "exit": outcome,
        "events_s": events,
        "warmup_calls": warmup,
        "fields": fields,
    }
    if "worker_started" in events:
        result["process_to_ready_s"] = events["worker_started"]
        if "model_loaded" in events:
            result["weights_to_ready_s"] = round(
                events["worker_started"] - events["model_loaded"], 2
            )
    if code != 0:
        result["log_tail"] = tail
    return result


def _drop(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("event", "level", "timestamp", "logger")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="fp16-cold,fp16-warm,fp8-cold,fp8-warm")
    parser.add_argument("--shape", default=None, help="warm-up shape [832x480x17/16/5.0]")
    parser.add_argument("--batch", type=int, default=4, help="largest batch warmed up")
    parser.add_argument("--attention-backend", default="_native_cudnn")
    parser.add_argument("--dynamic-batch", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU")
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds per start")
    parser.add_argument("--cache-root", type=Path, help="keep the compile caches here")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.shape = args.shape or ("256x256x9/4/5.0" if args.tiny else "832x480x17/16/5.0")

    scratch = Path(tempfile.mkdtemp(prefix="streamproc-startup-"))
    cache_root = args.cache_root or scratch / "compile-cache"
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "shape": args.shape,
        "batch": args.batch,
        "dynamic_batch": args.dynamic_batch,
        "runs": [],
    }
    try:
        for name in (n.strip() for n in args.runs.split(",") if n.strip()):
            precision, _, state = name.partition("-")
            cache_dir = cache_root / precision
            if state == "cold":
                shutil.rmtree(cache_dir, ignore_errors=True)
            result = start_once(args, name, cache_dir, scratch)
            report["runs"].append(result)
            print(json.dumps(result), flush=True)
            if args.out:
                args.out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
