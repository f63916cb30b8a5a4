"""The decode benchmark's CPU smoke path (``bench/gpu_decode.py --tiny --device cpu``) runs
end to end, writes its report and needs nothing of streamproc but the decode modules."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

#: What the GPU host of the benchmark lacks (carried as wheels for the worker, not for this).
ABSENT_THERE = ["pydantic", "pydantic_settings", "structlog", "av", "aiokafka", "ftfy", "torchao"]

# Runs the smoke path in a fresh interpreter, then names the modules that got imported.
SCRIPT = """
import json, runpy, sys
runpy.run_path("bench/gpu_decode.py", run_name="bench")["main"](sys.argv[1:])
print(json.dumps(sorted(sys.modules)))
"""


def test_tiny_cpu_run_reports_every_strategy_against_diffusers(tmp_path: Path) -> None:
    out = tmp_path / "decode.json"
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    args = ["--tiny", "--device", "cpu", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    imported = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert imported.isdisjoint(ABSENT_THERE)
    assert {m for m in imported if m.startswith("streamproc.")} == {
        "streamproc.generation",
        "streamproc.generation.decode",
        "streamproc.generation.taehv",
        "streamproc.generation.vae_configs",
    }
    report = json.loads(out.read_text())
    assert report["matmul_tflops_bf16"] is None  # measured on CUDA only
    (shape,) = report["shapes"]
    assert shape["size"] == "64x32x17"
    assert shape["latents"] == [1, 48, 5, 2, 4]
    results = {v["variant"]: v for v in shape["variants"]}
    assert list(results) == ["diffusers", "chunked", "compiled-cl", "tiny"]
    for result in results.values():
        assert result["s_per_clip"] > 0
        assert result["tflop_per_clip"] > 0
    assert results["diffusers"]["error_vs_diffusers"]["max_abs"] == 0
    assert results["diffusers"]["error_vs_diffusers"]["psnr_db"] is None  # identical
    for same in ("chunked", "compiled-cl"):
        error = results[same]["error_vs_diffusers"]
        assert error["max_abs"] < 1e-5 and error["psnr_db"] > 100
        assert error["max_grey_levels"] <= 1
        # Same arithmetic as diffusers' decode: the same FLOPs.
        assert math.isclose(
            results[same]["tflop_per_clip"], results["diffusers"]["tflop_per_clip"], rel_tol=0.01
        )
    assert results["tiny"]["label"] == "taehv:random@seed0"
    assert "random weights" in results["tiny"]["note"]
