"""The storage seam and the content address of a video.

A video's key is a hash of everything that decides its bytes (model id, generation parameters,
seed, the prompt as the model saw it, encoder settings). Re-processing an event after a crash
therefore writes the same key: a retry overwrites, it never duplicates.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from streamproc.events import GenerationParameters

#: Bump when the MP4 encoding changes in a way that changes bytes for the same inputs.
ENCODING_VERSION = 1


def object_key(
    model_id: str,
    prompt: str,
    params: GenerationParameters,
    prefix: str = "",
    encoding: Mapping[str, object] | None = None,
) -> str:
    """Content-addressed key ``[prefix]videos/<model-slug>/<h[:2]>/<h>.mp4``.

    ``encoding`` holds the encoder settings that change the picture (preset, crf).
    """
    material = json.dumps(
        {
            "model": model_id,
            "prompt": prompt,
            # A request class without a step cache keeps the keys it had before classes existed.
            "params": params.model_dump(
                mode="json", exclude={"step_cache"} if params.step_cache is None else None
            ),
            "encoding": [ENCODING_VERSION, dict(encoding or {})],
        },
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()
    return f"{prefix}videos/{_slug(model_id)}/{digest[:2]}/{digest}.mp4"


def _slug(model_id: str) -> str:
    tail = model_id.rstrip("/").rsplit("/", 2)[-2:]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(tail)).strip("-.")
    return slug[:64] or "model"


class ObjectStore(Protocol):
    """Keeps MP4s under content-addressed keys and says where they can be fetched."""

    async def put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> str:
        """Store ``data`` under ``key`` (idempotent) and return its URL.

        Returns only once the object is durable. Raises
        :class:`~streamproc.errors.StorageError` on an outage: the caller retries and never
        publishes a result for an object that is not stored;
        :class:`~streamproc.errors.RecordRejected` when this object cannot be kept (the record
        dead-letters); :class:`~streamproc.errors.ServiceRefused` when the store refuses all
        work (denied access, a missing bucket).
        """
        ...

    async def url_for(self, key: str) -> str:
        """A URL for an already stored ``key`` (fresh, for stores with expiring URLs, which
        say so with a true ``urls_expire`` attribute); raises like :meth:`put`."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        ...


@dataclass(frozen=True)
class CheckStep:
    """One step of ``streamproc storage check``: what was tried and how it went."""

    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str


class CheckableStore(ObjectStore, Protocol):
    """A store that can probe itself end to end (write, read back, delete a small object)."""

    async def check(self) -> list[CheckStep]:
        """Run the probe; stops at the first failed step. Opens and closes what it needs."""
        ...
