"""Where the compile time of the transformer goes, block by block (a GPU diagnostic).

Builds only the full-size random-weight transformer, applies the product's switches (fp8
quantisation, attention backend, regional compile of the blocks' forward), then runs one
transformer call per batch size with every block timed on its own, and reports what Dynamo
compiled: graphs, recompiles and their reasons, and the time per compile phase.

    python bench/compile_probe.py --fp8 --batches 2,4 --out fp8.json
    python bench/compile_probe.py --dtype float16 --batches 2,4
    python bench/compile_probe.py --fp8 --save-artifacts a.bin     # then, in a new process:
    python bench/compile_probe.py --fp8 --load-artifacts a.bin     # the warm-cache cost

Batch sizes count transformer rows: with guidance batched, a batch of n videos is 2n rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from streamproc.generation.optimize import apply_attention_backend, apply_compile, apply_fp8

WAN_5B = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 24,
    "attention_head_dim": 128,
    "in_channels": 48,
    "out_channels": 48,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 14336,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}


class RecompileLog(logging.Handler):
    """Collects Dynamo's recompile messages (their first lines name the failed guard)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage()[:600])


class StackSampler(threading.Thread):
    """Samples the main thread's Python stack every ``interval`` seconds (a poor man's
    profiler with no overhead to speak of): where does a long compile spend its time?"""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[list[str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        main = threading.main_thread().ident
        while not self.done.wait(self.interval):
            frame = sys._current_frames().get(main or 0)
            stack = []
            while frame is not None:
                code = frame.f_code
                where = "/".join(Path(code.co_filename).parts[-2:])
                stack.append(f"{where}:{code.co_name}")
                frame = frame.f_back
            self.samples.append(stack)

    def summary(self, top: int = 30) -> dict[str, Any]:
        self.done.set()
        innermost = Counter(s[0] for s in self.samples if s)
        inclusive: Counter[str] = Counter()
        for stack in self.samples:
            inclusive.update(set(stack))
        return {
            "interval_s": self.interval,
            "samples": len(self.samples),
            "innermost": innermost.most_common(top),
            "inclusive": inclusive.most_common(3 * top),
        }


def build(dtype: torch.dtype, device: torch.device) -> Any:
    from diffusers import WanTransformer3DModel

    from streamproc.generation.fullsize import cast_keeping_fp32

    with torch.random.fork_rng(devices=[device]), device:
        torch.manual_seed(0)
        model = WanTransformer3DModel(**WAN_5B).eval()
    return cast_keeping_fp32(model, dtype)


def inputs(
    rows: int, shape: tuple[int, int, int], dtype: torch.dtype, device: torch.device
) -> dict[str, Any]:
    width, height, frames = shape
    latent = (rows, 48, (frames - 1) // 4 + 1, height // 16, width // 16)
    gen = torch.Generator(device=device).manual_seed(rows)
    return {
        "hidden_states": torch.randn(latent, generator=gen, device=device, dtype=dtype),
        "timestep": torch.full((rows,), 500.0, device=device),
        "encoder_hidden_states": torch.randn(
            (rows, 512, 4096), generator=gen, device=device, dtype=dtype
        ),
        "return_dict": False,
    }


def time_blocks(model: Any, device: torch.device) -> list[float]:
    """Wrap every block's forward with a synchronised timer; returns the list it fills."""
    times: list[float] = []
    for block in model.blocks:
        inner = block.forward

        def timed(*args: Any, _inner: Any = inner, **kwargs: Any) -> Any:
            torch.cuda.synchronize(device)
            started = time.perf_counter()
            out = _inner(*args, **kwargs)
            torch.cuda.synchronize(device)
            times.append(time.perf_counter() - started)
            return out

        block.forward = timed
    return times


def counters() -> dict[str, dict[str, int]]:
    from torch._dynamo.utils import counters as dynamo_counters

    wanted = ("stats", "inductor", "aot_autograd", "recompiles")
    return {k: dict(v) for k, v in dynamo_counters.items() if k in wanted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--fp8", action="store_true")
    parser.add_argument("--batches", default="2,4", help="transformer rows per call, in order")
    parser.add_argument("--shape", default="832x480x17")
    parser.add_argument("--attention-backend", default="_native_cudnn")
    parser.add_argument("--dynamic-batch", action="store_true")
    parser.add_argument(
        "--tune", action="store_true", help="fp8: let torchao switch on coordinate-descent tuning"
    )
    parser.add_argument(
        "--gemm-backends", help="inductor's max_autotune_gemm_backends for the blocks (ATEN)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per batch, warm")
    parser.add_argument("--load-artifacts", type=Path)
    parser.add_argument("--save-artifacts", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch._dynamo
    import torch._dynamo.utils

    handler = RecompileLog()
    torch._logging.set_logs(recompiles=True)  # type: ignore[attr-defined]
    logging.getLogger("torch._dynamo").addHandler(handler)
    device = torch.device("cuda")
    dtype = torch.bfloat16 if args.fp8 else getattr(torch, args.dtype)
    width, height, frames = (int(x) for x in args.shape.split("x"))
    shape = (width, height, frames)
    report: dict[str, Any] = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device),
        "fp8": args.fp8,
        "dtype": str(dtype),
        "dynamic_batch": args.dynamic_batch,
        "phases_s": {},
    }
    phases = report["phases_s"]
    if args.load_artifacts:
        started = time.perf_counter()
        info = torch.compiler.load_cache_artifacts(args.load_artifacts.read_bytes())
        phases["load_artifacts"] = round(time.perf_counter() - started, 2)
        report["loaded"] = {k: len(v) for k, v in info.artifacts.items()} if info else None
    started = time.perf_counter()
    model = build(dtype, device)
    torch.cuda.synchronize(device)
    phases["build"] = round(time.perf_counter() - started, 2)
    pipe = SimpleNamespace(transformer=model)
    if args.fp8:
        started = time.perf_counter()
        apply_fp8(pipe, device, kernel_tuning=args.tune)
        report["kernel_tuning"] = args.tune
        torch.cuda.synchronize(device)
        phases["quantise"] = round(time.perf_counter() - started, 2)
        report["weight_type"] = type(model.blocks[0].attn1.to_q.weight).__name__
    apply_attention_backend(pipe, args.attention_backend)
    torch.backends.cuda.matmul.allow_tf32 = True
    apply_compile(pipe, dynamic_batch=args.dynamic_batch, gemm_backends=args.gemm_backends)
    report["gemm_backends"] = args.gemm_backends
    block_times = time_blocks(model, device)
    report["batches"] = []
    for rows in (int(x) for x in args.batches.split(",")):
        kwargs = inputs(rows, shape, dtype, device)
        graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        recompiles_before = len(handler.messages)
        block_times.clear()
        sampler = StackSampler()
        sampler.start()
        started = time.perf_counter()
        with torch.inference_mode():
            model(**kwargs)
        torch.cuda.synchronize(device)
        first = time.perf_counter() - started
        stacks = sampler.summary()
        print(json.dumps({"rows": rows, "first_call_s": round(first, 2), "stacks": stacks}))
        print(torch._dynamo.utils.compile_times(repr="str"), flush=True)
        print(json.dumps({"counters": counters()}), flush=True)
        slow_blocks = [(i, round(t, 2)) for i, t in enumerate(block_times) if t > 0.5]
        steady = []
        for _ in range(args.repeat):
            block_times.clear()
            started = time.perf_counter()
            with torch.inference_mode():
                model(**kwargs)
            torch.cuda.synchronize(device)
            steady.append(time.perf_counter() - started)
        entry = {
            "rows": rows,
            "first_call_s": round(first, 2),
            "graphs_compiled": torch._dynamo.utils.counters["stats"]["unique_graphs"]
            - graphs_before,
            "recompile_messages": len(handler.messages) - recompiles_before,
            "blocks_over_0.5s": slow_blocks,
            "steady_ms": round(1000 * sorted(steady)[len(steady) // 2], 1),
            "stacks": stacks,
        }
        report["batches"].append(entry)
        print(json.dumps(entry), flush=True)
    report["counters"] = counters()
    report["recompile_reasons"] = handler.messages[:12]
    report["compile_times"] = torch._dynamo.utils.compile_times(repr="str")
    if args.save_artifacts:
        started = time.perf_counter()
        saved = torch.compiler.save_cache_artifacts()
        if saved is not None:
            data, info = saved
            args.save_artifacts.write_bytes(data)
            report["saved"] = {"bytes": len(data), **{k: len(v) for k, v in info.artifacts.items()}}
        phases["save_artifacts"] = round(time.perf_counter() - started, 2)
    print(json.dumps({k: v for k, v in report.items() if k != "compile_times"}), flush=True)
    print(report["compile_times"], flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
