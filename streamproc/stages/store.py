"""Store: encode frames as MP4 (in the encoder processes) and keep the video in the object
store under its content address.

Failure policy: a transient store fault (:class:`~streamproc.errors.StorageError`) is retried
by the worker's retry policy for as long as the worker runs, the record staying unfinished,
so no result ever names a video that does not exist; a video the store cannot keep
(:class:`~streamproc.errors.RecordRejected`) dead-letters; a store that refuses the worker
(:class:`~streamproc.errors.ServiceRefused`) faults it. A dead encoder process is replaced by
the pool and the encode retried; a video that kills it three times dead-letters.
"""

from __future__ import annotations

import hashlib
import time

import structlog

from streamproc.errors import PermanentError
from streamproc.events import safe_text, utcnow
from streamproc.generation.encode import EncoderPool
from streamproc.retry import RetryPolicy
from streamproc.stages.base import Admitted, Generated, StageClock, Stored
from streamproc.storage.base import ObjectStore, object_key

log = structlog.get_logger(__name__)


class Keep:
    """The store stage: MP4 encoding and the object store."""

    def __init__(
        self,
        store: ObjectStore,
        encoder: EncoderPool,
        *,
        model_id: str,
        retries: RetryPolicy,
        clock: StageClock,
    ) -> None:
        self._store = store
        self.encoder = encoder
        self._model_id = model_id
        self._retries = retries
        self._clock = clock
        #: Whether the store's URLs expire (presigned): a re-published answer gets a new one.
        self.urls_expire = bool(getattr(store, "urls_expire", False))

    async def keep(self, request: Admitted, generated: Generated) -> Stored:
        """Encode ``generated`` and put it under its content address; returns once durable."""
        params = request.params
        started = time.perf_counter()
        data = await self.encoder.encode(generated.frames, params.fps)
        self._clock("mp4_encode", time.perf_counter() - started)
        # The encoder's own account of what changes the picture (preset, crf, and the codec
        # unless it is libx264), so NVENC and x264 videos never share an address.
        key = object_key(self._model_id, request.prompt, params, encoding=self.encoder.key_material)
        metadata = {
            "event_id": request.event.event_id,
            "model_id": self._model_id,
            "parameters": params.model_dump_json(),
        }
        started = time.perf_counter()
        url = await self._retries.call(lambda: self._store.put(key, data, metadata), "store_put")
        self._clock("store", time.perf_counter() - started)
        return Stored(key=key, url=url, generated=generated, stored_at=utcnow())

    async def url_for(self, key: str) -> str:
        """A URL for the stored object ``key`` (fresh where URLs expire)."""
        return await self._retries.call(lambda: self._store.url_for(key), "store_url")

    async def keep_original(self, value: bytes) -> str | None:
        """Keep a whole over-long original of a dead letter; its URL, or None when the store
        refuses it (the dead letter then carries the capped original only)."""
        key = f"dead-letters/{hashlib.sha256(value).hexdigest()}.bin"
        try:
            return await self._retries.call(
                lambda: self._store.put(key, value, {"content": "dead-letter-original"}),
                "store_original",
            )
        except PermanentError as exc:
            log.warning("dead_letter_original_not_stored", error=safe_text(str(exc), 300))
            return None
