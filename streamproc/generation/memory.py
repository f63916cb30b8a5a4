"""Batch size from a GPU memory budget, per shape.

At warm-up the generator measures the peak memory of denoising one and two videos of each
configured shape, and of decoding one. Denoising memory grows linearly with the batch, and a
decode of the previous batch may run at the same time (overlap), so

    peak(n) ~ base + n * per_video,  base = peak(1) - per_video + (decode peak - resident)

and the largest batch within the budget is ``(budget - base) / per_video``. Shapes that were
not measured are estimated from the measured bytes per latent token (the largest seen), which
errs on the safe side for larger shapes. Without measurements (CPU) there is no limit here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from streamproc.batching import ShapeKey


def latent_tokens(shape: ShapeKey, spatial: int = 16, temporal: int = 4, patch: int = 2) -> int:
    """Transformer tokens of one video of ``shape`` (Wan2.2-TI2V-5B factors by default)."""
    frames = (shape.num_frames - 1) // temporal + 1
    return frames * (shape.height // spatial // patch) * (shape.width // spatial // patch)


@dataclass(frozen=True)
class Measurement:
    """Peak bytes of denoising one and two videos of a shape, and of decoding one; ``resident``
    is what was allocated before (the weights)."""

    tokens: int
    resident: int
    peak_one: int
    peak_two: int
    decode_peak: int

    @property
    def per_video(self) -> int:
        """Extra bytes per video in the batch."""
        return max(self.peak_two - self.peak_one, 1)

    @property
    def base(self) -> int:
        """Bytes of a batch of zero: weights, fixed buffers and a concurrent decode."""
        return self.peak_one - self.per_video + max(self.decode_peak - self.resident, 0)


@dataclass
class MemoryBudget:
    """Largest batch per shape that fits ``budget_bytes``."""

    budget_bytes: int
    measurements: dict[tuple[int, int, int, bool], Measurement] = field(default_factory=dict)

    @staticmethod
    def _key(shape: ShapeKey) -> tuple[int, int, int, bool]:
        # Memory depends on the frame size and on guidance (which doubles the batch), not on
        # the number of steps.
        return (shape.width, shape.height, shape.num_frames, shape.guidance_scale > 1.0)

    def record(self, shape: ShapeKey, measurement: Measurement) -> None:
        """Remember a warm-up measurement of ``shape``."""
        self.measurements[self._key(shape)] = measurement

    def _base_and_per_video(self, shape: ShapeKey) -> tuple[int, int] | None:
        if not self.measurements:
            return None
        known = self.measurements.get(self._key(shape))
        if known is not None:
            return known.base, known.per_video
        seen = self.measurements.values()
        per_token = max(m.per_video / max(m.tokens, 1) for m in seen)
        # Decode memory grows with the frame size too: scale the largest base by token ratio.
        base = max(
            m.base
            if latent_tokens(shape) <= m.tokens
            else m.resident + math.ceil((m.base - m.resident) * latent_tokens(shape) / m.tokens)
            for m in seen
        )
        return base, math.ceil(per_token * latent_tokens(shape))

    def max_batch(self, shape: ShapeKey) -> int | None:
        """The largest batch of ``shape`` within budget (at least 1), or None if unknown."""
        estimate = self._base_and_per_video(shape)
        if estimate is None:
            return None
        base, per_video = estimate
        return max(1, (self.budget_bytes - base) // per_video)
