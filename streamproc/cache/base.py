"""The cache seam.

A cache maps (prompt, scope) to a stored video. Only entries of the same :class:`CacheScope`
may answer a request: a 480p request never gets a 720p video. The processor calls
:meth:`Cache.lookup` before batching a request and :meth:`Cache.insert` once its video is
stored; a cache failure is never fatal (the event is generated instead).

Prompts are compared as :func:`match_text` gives them (:func:`~streamproc.cache.normalize.
normalize_prompt`: NFKC, case-folded, whitespace collapsed, edge punctuation, a leading
request such as "can you make a video of" and trailing quality tags removed; then
:func:`~streamproc.cache.words.canonical_text`: US spelling, and one word for each thing,
"lorry" as "truck"). The exact key and the embedding of a prompt both come from that text, so
what is "exact" and what is "near" never disagree.

The parts behind :class:`~streamproc.cache.semantic.SemanticCache` have their own small
seams here: :class:`Encoder` (a sentence-embedding model), :class:`Embedder` (the same, off
the event loop), :class:`VectorIndex` (nearest neighbours of one scope) and
:class:`SharedStore` (entries shared between workers, e.g. Redis).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from streamproc.cache.normalize import normalize_prompt
from streamproc.cache.words import canonical_text
from streamproc.events import CacheOutcome, GenerationParameters, PromptEvent, canonical_prompt

if TYPE_CHECKING:
    from streamproc.cache.memory import MemoryStore

Vector = npt.NDArray[np.float32]
"""One L2-normalised embedding (1-D float32)."""


def match_text(prompt: str) -> str:
    """The prompt as the cache keys and embeds it (see the module docstring)."""
    return canonical_text(normalize_prompt(prompt))


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
    #: Step-cache hook of the request class (a draft video never answers a standard request).
    step_cache: str | None = None

    def key(self) -> str:
        """A short stable id of the scope."""
        fields = asdict(self)
        if fields["step_cache"] is None:
            del fields["step_cache"]  # keeps the ids scopes had before request classes
        if fields["negative_prompt"] is not None:
            fields["negative_prompt"] = normalize_prompt(
                fields["negative_prompt"], drop_filler=False
            )
        material = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(material.encode("utf-8")).hexdigest()[:24]


def scope_of(event: PromptEvent, model_id: str, step_cache: str | None) -> CacheScope:
    """The scope an event's video belongs to, on a worker serving ``model_id``."""
    negative = canonical_prompt(event.negative_prompt) if event.negative_prompt else None
    return CacheScope(
        model_id=model_id,
        width=event.width,
        height=event.height,
        num_frames=event.num_frames,
        num_inference_steps=event.num_inference_steps,
        guidance_scale=event.guidance_scale,
        negative_prompt=negative,
        tenant=event.tenant,
        step_cache=step_cache,
    )


@dataclass(frozen=True)
class CacheEntry:
    """A stored video that may answer later requests of the same scope.

    ``parameters`` are those the video was made with (seed included); a hit's result reports
    them, so it always describes the video it points to. Entries without them (written by an
    older version) are never served.
    """

    object_key: str
    video_url: str
    event_id: str
    prompt: str
    created_at: float
    parameters: GenerationParameters | None = None

    def serves(self, seed: int | None) -> bool:
        """Whether this video may answer a request for ``seed`` (None: any seed will do)."""
        if self.parameters is None:
            return False
        return seed is None or self.parameters.seed == seed


@dataclass(frozen=True)
class CacheHit:
    """A lookup that found a reusable video; ``similarity`` is the cosine (1.0 when exact)."""

    entry: CacheEntry
    outcome: CacheOutcome
    similarity: float | None = None


def exact_key(prompt: str, scope: CacheScope) -> str:
    """The exact-match key of a request: scope plus normalised prompt."""
    digest = hashlib.sha256(match_text(prompt).encode("utf-8")).hexdigest()[:32]
    return f"{scope.key()}:{digest}"


def entry_id(prompt: str, scope: CacheScope) -> int:
    """The 63-bit id of the entry that :func:`exact_key` names (FAISS ids are int64).

    Equal on every worker, so an entry inserted twice (two workers, a refresh) replaces
    itself instead of appearing twice.
    """
    digest = hashlib.sha256(exact_key(prompt, scope).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


@dataclass(frozen=True)
class StoredEntry:
    """One entry as the stores keep it: the video, the prompt it was inserted with (the guard
    compares requests with it) and the vector of that prompt's :func:`match_text`."""

    entry_id: int
    scope_key: str
    prompt: str
    entry: CacheEntry
    vector: Vector
    expires_at: float


class Cache(Protocol):
    """Finds reusable videos and remembers new ones."""

    async def start(self) -> None:
        """Get ready (e.g. warm from a shared store); called before the first event."""
        ...

    async def stop(self) -> None:
        """Release what :meth:`start` took; idempotent."""
        ...

    async def lookup(
        self, prompt: str, scope: CacheScope, *, seed: int | None = None
    ) -> CacheHit | None:
        """The best reusable entry for ``prompt`` in ``scope``, or None (a miss).

        With ``seed`` (the event asked for one) only a video made with that seed is a hit;
        without, a video of any seed is.
        """
        ...

    async def insert(self, prompt: str, scope: CacheScope, entry: CacheEntry) -> None:
        """Remember ``entry`` (called after its video is stored)."""
        ...

    async def closest(
        self, prompt: str, scope: CacheScope, others: Sequence[str]
    ) -> tuple[int, float] | None:
        """Which of ``others`` (prompts of ``scope`` being generated right now) may answer
        ``prompt`` by the rules of :meth:`lookup`: its index and similarity, or None."""
        ...


class Encoder(Protocol):
    """A sentence-embedding model. Blocking: called on a worker thread, never on the loop."""

    @property
    def name(self) -> str:
        """Identifies the model; vectors of different encoders never meet."""
        ...

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised row per text."""
        ...


class Embedder(Protocol):
    """Turns prompts into unit vectors without blocking the event loop."""

    @property
    def name(self) -> str:
        """The encoder's name."""
        ...

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    async def embed(self, text: str) -> Vector:
        """The vector of ``text``; concurrent calls are batched together."""
        ...

    def known(self, text: str) -> Vector | None:
        """The vector of ``text`` if it was computed lately, else None (never encodes)."""
        ...

    async def stop(self) -> None:
        """Release the worker thread (idempotent; a later :meth:`embed` starts it again)."""
        ...


class VectorIndex(Protocol):
    """Nearest neighbours by inner product among the vectors of one scope."""

    def add(self, entry_id: int, vector: Vector) -> None:
        """Add or replace the vector of ``entry_id``."""
        ...

    def remove(self, entry_id: int) -> None:
        """Forget ``entry_id`` (no error when absent)."""
        ...

    def search(self, vector: Vector, k: int) -> list[tuple[int, float]]:
        """Up to ``k`` (entry id, inner product) pairs, best first."""
        ...

    def __len__(self) -> int: ...


class SharedStore(Protocol):
    """Entries shared by every worker (Redis). Each worker answers from its own
    :class:`~streamproc.cache.memory.MemoryStore`; this keeps that copy in sync.

    Nothing here may block or fail a lookup or an insert: writes are queued, and while the
    shared store is unreachable the worker goes on with what it has.
    """

    async def start(self, local: MemoryStore) -> None:
        """Fill ``local`` with the live shared entries, then keep it in sync until stop.

        Returns even when the store is unreachable (it keeps retrying in the background).
        """
        ...

    async def stop(self) -> None:
        """Stop syncing and close connections (idempotent)."""
        ...

    def put(self, stored: StoredEntry) -> None:
        """Share a new or replaced entry (queued)."""
        ...

    def touch(self, entry_id: int, expires_at: float) -> None:
        """Move an entry's expiry (queued): a hit refreshed its TTL."""
        ...

    async def expiries(self, entry_ids: Sequence[int]) -> dict[int, float] | None:
        """Current expiry of those of ``entry_ids`` the store still holds; None when
        unreachable. Called before dropping entries that look expired locally."""
        ...

    async def collect_garbage(self, now: float) -> None:
        """Drop bookkeeping of entries that expired (any worker may call it)."""
        ...

    @property
    def available(self) -> bool:
        """Whether the store answered lately."""
        ...
