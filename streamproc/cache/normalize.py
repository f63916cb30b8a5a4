"""Prompt normalisation: the text the cache keys, embeds and compares.

Both the exact key and the embedding of a prompt are taken from :func:`normalize_prompt`, so
two prompts that normalise alike are one cache entry, and an entry's vector is the vector of
its key text. :func:`tokenize` splits a prompt into the word tokens the attribute guard reads.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# Leading framing words that describe the medium, not the scene. Longest first so that
# "a cinematic shot of" wins over "cinematic shot of". "a shot of" is deliberately absent:
# "a shot of espresso" is a scene.
_FILLER_PREFIXES: Final[tuple[str, ...]] = tuple(
    sorted(
        {
            "a video of",
            "video of",
            "a short video of",
            "short video of",
            "a video showing",
            "video showing",
            "a clip of",
            "clip of",
            "a short clip of",
            "short clip of",
            "footage of",
            "video footage of",
            "stock footage of",
            "footage showing",
            "a cinematic shot of",
            "cinematic shot of",
            "a cinematic video of",
            "cinematic video of",
            "cinematic footage of",
        },
        key=len,
        reverse=True,
    )
)
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


def _drop_leading_filler(text: str) -> str:
    # Each round removes a prefix, so the loop ends; stacked filler ("a clip of footage of")
    # goes entirely.
    while True:
        for prefix in _FILLER_PREFIXES:
            if text.startswith(prefix + " "):
                text = _strip_edges(text[len(prefix) + 1 :])
                break
        else:
            return text


def normalize_prompt(text: str, *, drop_filler: bool = True) -> str:
    """The prompt as the cache keys and embeds it.

    Unicode NFKC, case-folded, whitespace collapsed to single spaces, punctuation stripped
    from both ends and (when ``drop_filler``) leading framing words such as "a video of"
    removed. Deterministic and idempotent; inner punctuation and word order are kept.
    """
    text = _canonical_text(text)
    return _drop_leading_filler(text) if drop_filler else text


_TOKEN_RE: Final = re.compile(r"[^\W_]+|[,;:.!?()]")
PUNCT_TOKENS: Final = frozenset(",;:.!?()")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without accents; hyphens split words; clause punctuation kept."""
    text = normalize_prompt(text, drop_filler=False)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\bb\s*[&/]\s*w\b", " monochrome ", text)
    text = text.replace("&", " and ")
    text = re.sub(r"'s\b", "", text).replace("'", "")
    return _TOKEN_RE.findall(text)
