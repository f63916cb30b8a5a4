"""Example prompt events, for trying the product and for load tests."""

from __future__ import annotations

import random
from collections.abc import Iterator

from streamproc.events import PromptEvent, utcnow

_SUBJECTS = (
    "a red fox",
    "two golden retrievers",
    "a paper boat",
    "an old lighthouse keeper",
    "a hummingbird",
    "a vintage tram",
    "a snow leopard",
    "three hot-air balloons",
    "a street drummer",
    "a bowl of ramen",
    "a sailing yacht",
    "a child flying a kite",
)
_SCENES = (
    "crossing a frozen lake at dawn",
    "in a neon-lit alley during rain",
    "over rolling green hills at sunset",
    "on a busy market street at noon",
    "beneath a starry night sky",
    "along a misty forest path in autumn",
    "in slow motion on a sandy beach",
    "through a field of sunflowers",
)
_STYLES = ("cinematic lighting", "handheld camera", "aerial view", "35mm film look", "")


def example_prompt(rng: random.Random) -> str:
    """One plausible text-to-video prompt."""
    parts = [rng.choice(_SUBJECTS), rng.choice(_SCENES)]
    style = rng.choice(_STYLES)
    return ", ".join([" ".join(parts), style]) if style else " ".join(parts)


def example_events(
    count: int,
    *,
    seed: int = 0,
    repeat_ratio: float = 0.0,
    width: int = 832,
    height: int = 480,
    num_frames: int = 17,
    num_inference_steps: int = 16,
    guidance_scale: float = 5.0,
    id_prefix: str = "example",
) -> Iterator[PromptEvent]:
    """``count`` prompt events; about ``repeat_ratio`` of them repeat an earlier prompt."""
    rng = random.Random(seed)
    prompts: list[str] = []
    for i in range(count):
        if prompts and rng.random() < repeat_ratio:
            prompt = rng.choice(prompts)
        else:
            prompt = example_prompt(rng)
            prompts.append(prompt)
        yield PromptEvent(
            event_id=f"{id_prefix}-{seed}-{i:06d}",
            prompt=prompt,
            width=width,
            height=height,
            num_frames=num_frames,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            seed=rng.randrange(2**31),
            created_at=utcnow(),
        )
