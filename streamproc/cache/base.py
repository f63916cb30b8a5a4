"""The cache seam.

A cache maps (prompt, scope) to a stored video. Only entries of the same :class:`CacheScope`
may answer a request: a 480p request never gets a 720p video. The processor calls
:meth:`Cache.lookup` before batching a request and :meth:`Cache.insert` once its video is
stored; a cache failure is never fatal (the event is generated instead).
"""

from __future__ import annotations

import hashlib
import json
import string
import unicodedata
from dataclasses import asdict, dataclass
from typing import Protocol

from streamproc.events import CacheOutcome

_EDGE_PUNCTUATION = string.punctuation + "\u201c\u201d\u2018\u2019\u2026 "


def match_text(prompt: str) -> str:
    """The prompt as the cache compares it: NFKC, case-folded, whitespace collapsed,
    punctuation at both ends removed."""
    text = " ".join(unicodedata.normalize("NFKC", prompt).casefold().split())
    return text.strip(_EDGE_PUNCTUATION)


@dataclass(frozen=True)
class CacheScope:
    """The generation parameters that must be equal for a cached video to be reusable."""

    model_id: str
    width: int
    height: int
    num_frames: int
    num_inference_steps: int
    guidance_scale: float
    negative_prompt: str | None = None
    tenant: str | None = None

    def key(self) -> str:
        """A short stable id of the scope."""
        fields = asdict(self)
        if fields["negative_prompt"] is not None:
            fields["negative_prompt"] = match_text(fields["negative_prompt"])
        material = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class CacheEntry:
    """A stored video that may answer later requests of the same scope."""

    object_key: str
    video_url: str
    event_id: str
    prompt: str
    created_at: float


@dataclass(frozen=True)
class CacheHit:
    """A lookup that found a reusable video."""

    entry: CacheEntry
    outcome: CacheOutcome
    similarity: float | None = None


def exact_key(prompt: str, scope: CacheScope) -> str:
    """The exact-match key of a request: scope plus normalised prompt."""
    digest = hashlib.sha256(match_text(prompt).encode("utf-8")).hexdigest()[:32]
    return f"{scope.key()}:{digest}"


class Cache(Protocol):
    """Finds reusable videos and remembers new ones."""

    async def lookup(self, prompt: str, scope: CacheScope) -> CacheHit | None:
        """The best reusable entry for ``prompt`` in ``scope``, or None (a miss)."""
        ...

    async def insert(self, prompt: str, scope: CacheScope, entry: CacheEntry) -> None:
        """Remember ``entry`` (called after its video is stored)."""
        ...
