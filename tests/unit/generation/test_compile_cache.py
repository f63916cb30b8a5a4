"""The persistent compile cache: keying, invalidation, damaged entries (CPU)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from structlog.testing import capture_logs

from streamproc.generation import compile_cache
from streamproc.generation.compile_cache import (
    ARTIFACTS,
    MANIFEST,
    CompileCache,
    TorchArtifacts,
    fingerprint,
    key_of,
)


class FakeArtifacts:
    """Stands in for torch's artefact store: remembers what it was given."""

    def __init__(self, produces: bytes | None = b"compiled graphs", accepts: bool = True) -> None:
        self.produces = produces
        self.accepts = accepts
        self.loaded: list[bytes] = []

    def load(self, data: bytes) -> int | None:
        self.loaded.append(data)
        return 3 if self.accepts else None

    def save(self) -> bytes | None:
        return self.produces


BASE: dict[str, Any] = {
    "model_id": "streamproc/wan2.2-ti2v-5b-random@seed0",
    "transformer_config": {"num_layers": 30, "ffn_dim": 14336},
    "dtype": "torch.float16",
    "fp8": False,
    "attention_backend": "_native_cudnn",
    "shapes": ["832x480x17/cfg"],
    "batch_sizes": [1, 2, 3, 4],
    "options": {"batched_cfg": True, "dynamic_batch": False},
    "device": "NVIDIA H200 sm90",
}


def fields(**changes: Any) -> dict[str, str]:
    return fingerprint(**{**BASE, **changes})


def saved_entry(root: Path, entry_fields: dict[str, str], data: bytes = b"graphs") -> Path:
    cache = CompileCache(root, entry_fields, store=FakeArtifacts(produces=data))
    assert cache.save()
    return cache.directory


def test_the_same_configuration_gives_the_same_key() -> None:
    assert key_of(fields()) == key_of(fields())
    assert key_of(fields(shapes=["832x480x17/cfg", "832x480x17/cfg"])) == key_of(fields())
    # diffusers' private config entries (one is an unordered list) are not the architecture.
    config = {**BASE["transformer_config"], "_use_default_values": ["eps", "image_dim"]}
    reordered = {**config, "_use_default_values": ["image_dim", "eps"]}
    assert key_of(fields(transformer_config=config)) == key_of(fields(transformer_config=reordered))


@pytest.mark.parametrize(
    "change",
    [
        {"model_id": "/models/Wan2.2-TI2V-5B-Diffusers"},
        {"transformer_config": {"num_layers": 40, "ffn_dim": 14336}},
        {"dtype": "torch.bfloat16"},
        {"fp8": True},
        {"attention_backend": "_native_flash"},
        {"shapes": ["832x480x17/cfg", "1280x704x121/cfg"]},
        {"batch_sizes": [1, 2]},
        {"options": {"batched_cfg": True, "dynamic_batch": True}},
        {"device": "NVIDIA H100 80GB HBM3 sm90"},
    ],
)
def test_any_input_of_the_graphs_changes_the_key(change: dict[str, Any]) -> None:
    assert key_of(fields(**change)) != key_of(fields())


@pytest.mark.parametrize("package", ["torch", "diffusers", "triton", "cuda", "python"])
def test_a_new_torch_or_diffusers_version_changes_the_key(
    monkeypatch: pytest.MonkeyPatch, package: str
) -> None:
    before = key_of(fields())
    versions = compile_cache.runtime_versions()
    monkeypatch.setattr(compile_cache, "runtime_versions", lambda: {**versions, package: "99.0"})
    assert key_of(fields()) != before


def test_a_saved_entry_is_loaded_warm_by_the_next_start(tmp_path: Path) -> None:
    saved_entry(tmp_path, fields(), b"graphs of the last start")
    store = FakeArtifacts()
    cache = CompileCache(tmp_path, fields(), store=store)
    with capture_logs() as logs:
        assert cache.load() == "warm"
    assert store.loaded == [b"graphs of the last start"]
    assert [e["event"] for e in logs] == ["compile_cache_warm"]


def test_a_start_without_an_entry_is_cold_and_saves_one(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path, fields(), store=FakeArtifacts(produces=b"new graphs"))
    assert cache.load() == "cold"
    assert cache.save()
    manifest = json.loads((cache.directory / MANIFEST).read_text())
    assert manifest["fields"] == fields()  # readable: says what the entry was compiled for
    assert (cache.directory / ARTIFACTS).read_bytes() == b"new graphs"


def test_a_changed_key_never_loads_the_old_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved_entry(tmp_path, fields())
    versions = compile_cache.runtime_versions()
    monkeypatch.setattr(compile_cache, "runtime_versions", lambda: {**versions, "torch": "9.9"})
    store = FakeArtifacts()
    cache = CompileCache(tmp_path, fields(), store=store)
    with capture_logs() as logs:
        assert cache.load() == "cold"
    assert store.loaded == []
    assert logs[0]["other_keys"] == 1  # the old entry stays for the operator to delete


def _truncate_artifacts(directory: Path) -> None:
    (directory / ARTIFACTS).write_bytes(b"grap")


def _garble_manifest(directory: Path) -> None:
    (directory / MANIFEST).write_text("{not json")


def _foreign_manifest(directory: Path) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest["fields"]["model_id"] = "another model"
    (directory / MANIFEST).write_text(json.dumps(manifest))


def _lose_artifacts(directory: Path) -> None:
    (directory / ARTIFACTS).unlink()


@pytest.mark.parametrize(
    "damage", [_truncate_artifacts, _garble_manifest, _foreign_manifest, _lose_artifacts]
)
def test_a_damaged_entry_is_ignored_with_a_warning_and_replaced(
    tmp_path: Path, damage: Any
) -> None:
    damage(saved_entry(tmp_path, fields()))
    store = FakeArtifacts(produces=b"fresh graphs")
    cache = CompileCache(tmp_path, fields(), store=store)
    with capture_logs() as logs:
        assert cache.load() == "corrupt"
    assert store.loaded == []  # nothing of it reached torch
    [warning] = logs
    assert warning["event"] == "compile_cache_corrupt" and warning["log_level"] == "warning"
    assert cache.save()  # the warm-up's graphs replace it
    assert CompileCache(tmp_path, fields(), store=FakeArtifacts()).load() == "warm"


def test_artefacts_torch_refuses_make_the_entry_corrupt(tmp_path: Path) -> None:
    saved_entry(tmp_path, fields())
    cache = CompileCache(tmp_path, fields(), store=FakeArtifacts(accepts=False))
    assert cache.load() == "corrupt"


def test_a_cache_directory_that_cannot_be_written_only_warns(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the directory should be")
    cache = CompileCache(blocker, fields(), store=FakeArtifacts())
    with capture_logs() as logs:
        assert cache.load() == "cold"
        assert not cache.save()
    assert logs[-1]["event"] == "compile_cache_not_saved"


def test_torch_refuses_garbage_artefacts() -> None:
    assert TorchArtifacts().load(b"not a cache artefact") is None


@pytest.mark.slow
def test_torch_artefacts_round_trip_through_the_cache(tmp_path: Path) -> None:
    @torch.compile(fullgraph=True)
    def scaled_sum(x: torch.Tensor) -> torch.Tensor:
        return (x * 3.0).sin().sum(dim=-1)

    scaled_sum(torch.randn(4, 8))
    cache = CompileCache(tmp_path, fields())
    assert cache.load() == "cold"
    assert cache.save()
    again = CompileCache(tmp_path, fields())
    assert again.load() == "warm"
    assert "artefacts" in again.detail
