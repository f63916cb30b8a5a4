"""A persistent cache of compiled graphs, so a restarted worker skips most of its compile.

After a cold warm-up the generator saves PyTorch's compiler artefacts (inductor's FX graph
cache, AOTAutograd's cache, compiled Triton kernels and autotuning results, collected by
``torch.compiler.save_cache_artifacts()``) under ``<generation.compile_cache_dir>/<key>/``;
a later start with the same key loads them (``torch.compiler.load_cache_artifacts()``)
before its warm-up, which then only re-traces each graph with Dynamo and finds everything
else compiled.

The key is a digest of everything a compiled graph depends on: the model (its id and its
transformer's config), the weights' dtype and fp8 quantisation, the attention backend, the
warm-up shapes and batch sizes, how the blocks are compiled, the versions of Python, torch,
Triton, CUDA, diffusers and torchao, and the GPU. Any change gives another directory, so a
stale graph is never loaded; old directories are left for the operator to delete. Every
entry holds ``manifest.json`` (the key's fields, readable) and ``artifacts.bin`` with its
SHA-256 in the manifest: an entry that does not match is ignored with a warning and
overwritten after the warm-up, never trusted.

States reported at start (logs, ``/readyz``): ``off`` (no directory configured, or nothing
compiled), ``cold`` (no entry for this key), ``warm`` (loaded), ``corrupt`` (an entry was
there but unusable; treated as cold).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

log = structlog.get_logger(__name__)

CacheState = Literal["off", "cold", "warm", "corrupt"]

#: Bump when streamproc changes how it compiles (what apply_compile wraps, and how).
COMPILE_SCHEME = "blocks-forward-v1"

MANIFEST = "manifest.json"
ARTIFACTS = "artifacts.bin"


class ArtifactStore(Protocol):
    """Where compiler artefacts come from and go to (PyTorch's mega-cache in production)."""

    def load(self, data: bytes) -> int | None:
        """Install serialised artefacts; the number installed, or None if ``data`` is unusable."""
        ...

    def save(self) -> bytes | None:
        """Serialise every artefact compiled or loaded so far (None: there is none)."""
        ...


class TorchArtifacts:
    """``torch.compiler``'s cache artefacts (one set per process)."""

    def load(self, data: bytes) -> int | None:
        import torch.compiler

        info = torch.compiler.load_cache_artifacts(data)
        if info is None:  # torch could not read them (it logs why)
            return None
        return sum(len(keys) for keys in info.artifacts.values())

    def save(self) -> bytes | None:
        import torch.compiler

        saved = torch.compiler.save_cache_artifacts()
        return saved[0] if saved is not None else None


def fingerprint(
    *,
    model_id: str,
    transformer_config: Mapping[str, Any],
    dtype: str,
    fp8: bool,
    attention_backend: str | None,
    shapes: list[str],
    batch_sizes: list[int],
    options: Mapping[str, Any],
    device: str,
) -> dict[str, str]:
    """Every input a compiled graph depends on, as strings (the cache key's fields)."""
    # diffusers' private entries ("_use_default_values", "_name_or_path", …) describe where a
    # config came from, not the architecture; some are unordered.
    public = {k: v for k, v in transformer_config.items() if not k.startswith("_")}
    config = json.dumps(public, sort_keys=True, default=str)
    return {
        "scheme": COMPILE_SCHEME,
        "model_id": model_id,
        "transformer_config": hashlib.sha256(config.encode()).hexdigest()[:16],
        "dtype": dtype,
        "fp8": f"torchao-{_version('torchao')} float8 per-row" if fp8 else "off",
        "attention_backend": attention_backend or "default",
        "shapes": ",".join(sorted(set(shapes))),
        "batch_sizes": ",".join(str(n) for n in sorted(set(batch_sizes))),
        "options": json.dumps(dict(options), sort_keys=True, default=str),
        "device": device,
        **runtime_versions(),
    }


def runtime_versions() -> dict[str, str]:
    """Versions of what compiles and runs the graphs."""
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "triton": _version("triton"),
        "diffusers": _version("diffusers"),
    }


def device_name(device: Any) -> str:
    """The GPU model and compute capability (graphs are compiled for one), or ``cpu``."""
    import torch

    if getattr(device, "type", "cpu") != "cuda":
        return "cpu"
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)} sm{major}{minor}"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def key_of(fields: Mapping[str, str]) -> str:
    """The directory name of ``fields``: a digest of their canonical JSON."""
    canonical = json.dumps(dict(fields), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


@dataclass
class CompileCache:
    """One key's entry under ``root``: loaded before the warm-up, saved after a cold one."""

    root: Path
    fields: dict[str, str]
    store: ArtifactStore = field(default_factory=TorchArtifacts)
    state: CacheState = "cold"
    detail: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """This entry's directory name."""
        return key_of(self.fields)

    @property
    def directory(self) -> Path:
        """Where this entry lives."""
        return self.root / self.key

    def load(self) -> CacheState:
        """Install this key's artefacts if a sound entry exists; returns (and keeps) the state.

        Never raises for a missing, unreadable or damaged entry: that start is cold.
        """
        started = time.perf_counter()
        self.state, self.detail = self._load()
        self.seconds["load"] = time.perf_counter() - started
        others = self._other_keys()
        if self.state == "corrupt":
            log.warning(
                "compile_cache_corrupt",
                key=self.key,
                directory=str(self.directory),
                reason=self.detail,
                other_keys=others,
            )
        else:
            log.info(
                f"compile_cache_{self.state}",
                key=self.key,
                directory=str(self.directory),
                detail=self.detail,
                other_keys=others,
                load_s=round(self.seconds["load"], 3),
            )
        return self.state

    def _load(self) -> tuple[CacheState, str]:
        manifest_path = self.directory / MANIFEST
        if not manifest_path.exists():
            return "cold", "no entry for this key"
        try:
            manifest = json.loads(manifest_path.read_text())
            data = (self.directory / ARTIFACTS).read_bytes()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return "corrupt", f"unreadable: {type(exc).__name__}: {exc}"
        if not isinstance(manifest, dict) or manifest.get("fields") != self.fields:
            return "corrupt", "manifest does not match this key"
        if manifest.get("sha256") != hashlib.sha256(data).hexdigest():
            return "corrupt", f"{ARTIFACTS} does not match its checksum"
        loaded = self.store.load(data)
        if loaded is None:
            return "corrupt", "torch refused the artefacts"
        return "warm", f"{loaded} artefacts, {len(data)} bytes"

    def save(self) -> bool:
        """Write this process's artefacts as the key's entry (atomically: a reader sees the
        old entry or the new one). False when there is nothing to save or the directory is
        not writable (logged; the worker runs on)."""
        started = time.perf_counter()
        data = self.store.save()
        if not data:
            log.info("compile_cache_nothing_to_save", key=self.key)
            return False
        manifest = {
            "fields": self.fields,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Artefacts first, manifest last: a manifest always names a complete file.
            write_atomic(self.directory / ARTIFACTS, data)
            write_atomic(self.directory / MANIFEST, json.dumps(manifest, indent=2).encode())
        except OSError as exc:
            log.warning(
                "compile_cache_not_saved",
                key=self.key,
                directory=str(self.directory),
                error=str(exc),
            )
            return False
        self.seconds["save"] = time.perf_counter() - started
        log.info(
            "compile_cache_saved",
            key=self.key,
            directory=str(self.directory),
            bytes=len(data),
            save_s=round(self.seconds["save"], 3),
        )
        return True

    def _other_keys(self) -> int:
        with contextlib.suppress(OSError):
            return sum(1 for p in self.root.iterdir() if p.is_dir() and p.name != self.key)
        return 0


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole or not at all (temporary file + rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:  # outcome: re-raised once the temporary file is gone
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
