"""Latency-aware batch sizes: batch only where batching pays.

A batch of ``n`` videos finishes all of them together, so each event waits for the whole
call. Short clips gain throughput from batching (the GPU is not saturated by one); long ones
gain almost nothing and every event waits ``n`` times longer. At warm-up the generator times
one call per batch size of each warm-up shape (or reads the times from a stored file) and
:func:`choose_batch_size` keeps a larger batch only where it raises throughput (videos per
second) by at least ``min_gain`` over the size chosen so far:

    chosen = 1; for n = 2, 3, ...: if rate(n) >= (1 + min_gain) * rate(chosen): chosen = n

Measurements are kept per frame size and guidance (which doubles the transformer's batch);
the step count changes every size's time alike, so it is not part of the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from streamproc.batching import ShapeKey
from streamproc.errors import ConfigError
from streamproc.generation.compile_cache import write_atomic

log = structlog.get_logger(__name__)

#: Version of the stored-measurements file; another version is ignored (measured anew).
FILE_VERSION = 1


def choose_batch_size(seconds_per_call: Mapping[int, float], min_gain: float) -> int:
    """The batch size to use, given the seconds one call of each measured size took.

    Sizes are tried in ascending order; one is taken when its videos per second beat those of
    the size taken so far by at least ``min_gain`` (0.05: 5 %). The smallest measured size is
    the start. Raises ValueError without measurements.
    """
    if not seconds_per_call:
        raise ValueError("no measurements to choose a batch size from")
    sizes = sorted(seconds_per_call)
    chosen = sizes[0]
    for n in sizes[1:]:
        if rate(n, seconds_per_call[n]) >= (1.0 + min_gain) * rate(
            chosen, seconds_per_call[chosen]
        ):
            chosen = n
    return chosen


def rate(batch: int, seconds: float) -> float:
    """Videos per second of a call of ``batch`` videos that took ``seconds``."""
    return batch / max(seconds, 1e-9)


def shape_label(shape: ShapeKey) -> str:
    """What measurements are kept under: ``832x480x17/cfg`` (frame size and guidance)."""
    cfg = "cfg" if shape.guidance_scale > 1.0 else "nocfg"
    return f"{shape.width}x{shape.height}x{shape.num_frames}/{cfg}"


@dataclass
class ThroughputProfile:
    """Seconds per call by batch size, per shape label, and the size chosen for each."""

    min_gain: float
    seconds: dict[str, dict[int, float]] = field(default_factory=dict)
    chosen: dict[str, int] = field(default_factory=dict)
    #: Where each shape's figures came from: 'measured' or 'stored'.
    origin: dict[str, str] = field(default_factory=dict)

    def record(self, shape: ShapeKey, seconds: Mapping[int, float], origin: str) -> int:
        """Keep the measurements of ``shape``, choose its batch size, log it; returns it."""
        label = shape_label(shape)
        self.seconds[label] = dict(sorted(seconds.items()))
        self.chosen[label] = choose_batch_size(seconds, self.min_gain)
        self.origin[label] = origin
        log.info(
            "batch_size_chosen",
            shape=label,
            batch_size=self.chosen[label],
            origin=origin,
            min_gain=self.min_gain,
            videos_per_s={str(n): round(rate(n, s), 4) for n, s in self.seconds[label].items()},
        )
        return self.chosen[label]

    def max_batch(self, shape: ShapeKey) -> int | None:
        """The chosen size for ``shape`` (None: not measured, no opinion)."""
        return self.chosen.get(shape_label(shape))


@dataclass(frozen=True)
class StoredThroughput:
    """A JSON file of measurements, so a restart need not measure again.

    Entries are keyed by model id, device name and shape label: figures of another card or
    model are never used. Writes are atomic (temporary file, then rename).
    """

    path: Path

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read batch throughput file {self.path}: {exc}") from None
        if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
            log.warning("batch_throughput_file_ignored", path=str(self.path), reason="version")
            return []
        entries = data.get("entries", [])
        return [e for e in entries if isinstance(e, dict)]

    def load(self, model_id: str, device: str, label: str) -> dict[int, float] | None:
        """The stored seconds per call of ``label`` for this model and device, if any."""
        for entry in self._read():
            if (entry.get("model_id"), entry.get("device"), entry.get("shape")) == (
                model_id,
                device,
                label,
            ):
                seconds = entry.get("seconds_per_call", {})
                try:
                    return {int(n): float(s) for n, s in seconds.items()} or None
                except (TypeError, ValueError, AttributeError):
                    return None
        return None

    def save(self, model_id: str, device: str, label: str, seconds: Mapping[int, float]) -> None:
        """Add or replace the entry of ``label`` for this model and device."""
        key = (model_id, device, label)
        entries = [
            e for e in self._read() if (e.get("model_id"), e.get("device"), e.get("shape")) != key
        ]
        entries.append(
            {
                "model_id": model_id,
                "device": device,
                "shape": label,
                "seconds_per_call": {str(n): round(s, 6) for n, s in sorted(seconds.items())},
            }
        )
        text = json.dumps({"version": FILE_VERSION, "entries": entries}, indent=2) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, text.encode("utf-8"))
