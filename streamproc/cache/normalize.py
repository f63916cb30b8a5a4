"""Prompt normalisation: the text the cache keys, embeds and compares.

Both the exact key and the embedding of a prompt are taken from :func:`normalize_prompt`, so
two prompts that normalise alike are one cache entry, and an entry's vector is the vector of
its key text. The attribute guard parses the same text (:mod:`streamproc.cache.scene`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# Framing that describes the medium or the request, not the scene: "generate a video of",
# "a short clip showing", "cinematic footage of". A medium noun must be followed by a
# connector and a word, so "a movie theater" and "a video of: a fox" stay. "shot" counts
# only as "cinematic shot": "a shot of espresso" is a scene.
_LEADING_FILLER: Final = re.compile(
    r"(?:please\s+)?"
    r"(?:(?:generate|create|make|render|produce|show)(?:\s+me)?\s+)?"
    r"(?:(?:a|an|one|the)\s+)?"
    r"(?:(?:short|brief|quick|cinematic|high[- ]quality|hq|hd|4k|8k|stock|video)\s+)*"
    r"(?:video|clip|footage|movie|cinematic\s+shot)"
    r"\s+(?:of|showing|depicting|featuring|about)\s+(?=\w)"
)
# Quality tags after the scene (", 4k, high quality", ", cinematic"): a trailing
# comma-separated part made only of these words is dropped, as are trailing resolution tags.
_TAG_WORDS: Final = frozenset(
    [
        "4k",
        "8k",
        "hd",
        "uhd",
        "ultra",
        "full",
        "1080p",
        "720p",
        "resolution",
        "high",
        "quality",
        "best",
        "res",
        "hq",
        "highly",
        "detailed",
        "cinematic",
        "masterpiece",
        "sharp",
        "focus",
        "definition",
        "in",
        "and",
    ]
)
_RESOLUTION_TAGS: Final = frozenset(["4k", "8k", "hd", "uhd", "1080p", "720p"])
# NFKC and case folding can each undo the other's fixed point for a few code points, so
# both are repeated until the text is stable; real text settles in one or two passes.
_MAX_PASSES: Final = 8


def _is_edge_char(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("P")


def _strip_edges(text: str) -> str:
    start, end = 0, len(text)
    while start < end and _is_edge_char(text[start]):
        start += 1
    while end > start and _is_edge_char(text[end - 1]):
        end -= 1
    return text[start:end]


def _canonical_text(text: str) -> str:
    for _ in range(_MAX_PASSES):
        following = unicodedata.normalize("NFKC", text)
        following = unicodedata.normalize("NFKC", following.casefold())
        following = _strip_edges(" ".join(following.split()))
        if following == text:
            break
        text = following
    return text


def _drop_filler(text: str) -> str:
    # Each round removes something, so the loop ends; stacked filler ("a clip of footage of")
    # goes entirely.
    while True:
        before = text
        match = _LEADING_FILLER.match(text)
        if match is not None:
            text = _strip_edges(text[match.end() :])
        head, comma, tail = text.rpartition(",")
        tags = set(tail.split())
        if comma and head and tags <= _TAG_WORDS and tags - {"in", "and"}:
            text = _strip_edges(head)
        words = text.split()
        if len(words) > 1 and words[-1] in _RESOLUTION_TAGS:
            text = _strip_edges(" ".join(words[:-1]))
        if text == before:
            return text


def normalize_prompt(text: str, *, drop_filler: bool = True) -> str:
    """The prompt as the cache keys and embeds it.

    Unicode NFKC, case-folded, whitespace collapsed to single spaces, punctuation stripped
    from both ends and (when ``drop_filler``) framing such as "generate a video of" or "a
    short clip showing" and trailing quality tags such as ", 4k, high quality" removed.
    Deterministic and idempotent; inner punctuation and word order are kept.
    """
    text = _canonical_text(text)
    return _drop_filler(text) if drop_filler else text
