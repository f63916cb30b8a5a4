"""Prompt filler recognised by its shape: labels, leading tag lists, bare requests, trailing
requests around tags. Sentences written for these tests (none from a labelled pair file)."""

from __future__ import annotations

import pytest

from streamproc.cache.guard import AttributeGuard
from streamproc.cache.normalize import normalize_prompt

GUARD = AttributeGuard()


@pytest.mark.parametrize(
    "framed",
    [
        # a label of request, medium or quality words before a colon
        "Render request: a heron wading through a marsh at dawn",
        "promo clip please: a heron wading through a marsh at dawn",
        "Create: a heron wading through a marsh at dawn",
        "8k, hdr: a heron wading through a marsh at dawn",
        # the same before a comma
        "quick clip, a heron wading through a marsh at dawn",
        # a request verb with no medium
        "could you please render a heron wading through a marsh at dawn",
        # tags and a request around them at the end
        "a heron wading through a marsh at dawn, hyperrealistic, 4k",
        "a heron wading through a marsh at dawn, make it look cinematic please",
        "a heron wading through a marsh at dawn, cinematic shot",
    ],
)
def test_filler_of_a_known_shape_goes(framed: str) -> None:
    assert normalize_prompt(framed) == "a heron wading through a marsh at dawn"
    assert GUARD.check(framed, "A heron wading through a marsh at dawn").accepted


@pytest.mark.parametrize(
    "scene",
    [
        # a label that names the scene stays, and so does a part with a scene word
        "winter night: a fox crossing an empty road",
        "a fox, crossing an empty road",
        "rain, a fox crossing an empty road",
        # "make" and "show" before a determiner are not requests on their own
        "make a wish over a birthday cake",
        # a trailing part with a scene word stays; a medium word alone or with a framing
        # that changes the picture stays too
        "a fox crossing an empty road, make it snow",
        "a fox crossing an empty road, wide shot",
    ],
)
def test_a_part_with_a_scene_word_stays(scene: str) -> None:
    assert normalize_prompt(scene) == scene


def test_what_the_filler_dropped_is_not_compared_but_the_scene_still_is() -> None:
    verdict = GUARD.check(
        "Render request: a heron wading through a marsh", "a stork wading through a marsh"
    )
    assert verdict.reason == "word_mismatch: heron vs stork"
