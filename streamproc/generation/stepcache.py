"""Step-cache hooks per request class (diffusers' FirstBlockCache and MagCache).

A request class (``attributes.quality`` of an event, e.g. ``draft``) may trade fidelity for
speed: its batches run with a diffusers cache hook on the transformer that skips most blocks
on steps where the model's output is predicted to change little. The hook is attached for
one pipeline call and removed afterwards, so its state never leaks into another batch and a
standard batch always computes every step. Random weights show the speed of a hook, not its
quality: thresholds must be chosen on real weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from streamproc.errors import ConfigError, GenerationError
from streamproc.settings import StepCacheSpec


def hook_config(spec: StepCacheSpec, num_inference_steps: int) -> Any:
    """The diffusers cache config of ``spec`` for a call of ``num_inference_steps`` steps."""
    from diffusers import FirstBlockCacheConfig, MagCacheConfig

    if spec.kind == "first-block":
        return FirstBlockCacheConfig(threshold=spec.threshold)
    return MagCacheConfig(
        threshold=spec.threshold,
        max_skip_steps=spec.max_skip_steps,
        retention_ratio=spec.retention_ratio,
        num_inference_steps=num_inference_steps,
        mag_ratios=spec.mag_ratios,
    )


class StepCaches:
    """The configured request classes, looked up by the label batches carry."""

    def __init__(self, classes: Mapping[str, StepCacheSpec]) -> None:
        self._by_label = {spec.label(): spec for spec in classes.values()}
        for spec in classes.values():
            try:
                hook_config(spec, 16)  # diffusers checks MagCache's ratios here: fail at start
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"step cache {spec.label()!r}: {exc}") from None

    @contextlib.contextmanager
    def attached(
        self, transformer: Any, label: str | None, num_inference_steps: int
    ) -> Iterator[None]:
        """Run the body with the hook ``label`` on ``transformer`` (None: no hook)."""
        if label is None:
            yield
            return
        spec = self._by_label.get(label)
        if spec is None:
            raise GenerationError(f"step cache {label!r} is not configured on this worker")
        transformer.enable_cache(hook_config(spec, num_inference_steps))
        try:
            yield
        finally:
            transformer.disable_cache()
