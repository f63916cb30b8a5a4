"""The decode benchmark's CPU smoke path (what ``bench/gpu_decode.py --tiny --device cpu``
runs) ends to end and writes its report."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[3] / "bench" / "gpu_decode.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_decode", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_cpu_run_reports_every_strategy_against_diffusers(tmp_path: Path) -> None:
    out = tmp_path / "decode.json"
    load_bench().main(["--tiny", "--device", "cpu", "--out", str(out)])
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
