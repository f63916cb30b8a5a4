"""The embedded object store: a directory, ``file://`` URLs.

A failed write is classified like the S3 store's: a full or failing disk is an outage
(:class:`StorageError`, retried); a directory this process may not write (permissions, a
read-only file system, a file where a directory should be) refuses all work
(:class:`ServiceRefused`); a file too large for the file system, or a key outside the root,
refuses this object only (:class:`RecordRejected`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

from streamproc.errors import RecordRejected, ServiceRefused, StorageError
from streamproc.storage.base import CheckStep


class LocalObjectStore:
    """Writes each object atomically (temp file + rename) under ``root``."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``."""
        path = (self._root / key).resolve()
        if self._root not in path.parents:
            raise RecordRejected(f"key escapes the store: {key!r}", component=_COMPONENT)
        return path

    async def put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> str:
        path = self.path_for(key)
        try:
            await asyncio.to_thread(_write_atomic, path, data, dict(metadata))
        except OSError as exc:
            raise _classify(path, exc) from exc
        return path.as_uri()

    async def url_for(self, key: str) -> str:
        return self.path_for(key).as_uri()

    async def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    async def check(self) -> list[CheckStep]:
        """Write, read back and delete a probe file under the root."""
        body = b"streamproc storage check\n"
        key = f".streamproc-check/{uuid.uuid4().hex}.txt"
        try:
            await self.put(key, body, {})
        except (StorageError, ServiceRefused, RecordRejected) as exc:
            return [CheckStep("put", "fail", str(exc))]
        path = self.path_for(key)
        return [
            CheckStep("put", "ok", f"wrote {path}"),
            *await asyncio.to_thread(_read_and_remove, path, body),
        ]


_COMPONENT = "store"
#: The directory cannot be written by this process at all.
_REFUSED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST})


def _classify(path: Path, exc: OSError) -> StorageError | ServiceRefused | RecordRejected:
    message = f"cannot write {path}: {exc.strerror or exc}"
    if exc.errno in _REFUSED:
        return ServiceRefused(f"{message}: check storage.local_dir", component=_COMPONENT)
    if exc.errno == errno.EFBIG:
        return RecordRejected(message, component=_COMPONENT)
    return StorageError(message)  # ENOSPC, EIO, …: may heal


def _write_atomic(path: Path, data: bytes, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size == len(data):
        return  # same content address, same bytes: already there
    for target, payload in (
        (path.with_suffix(path.suffix + ".json"), json.dumps(metadata, sort_keys=True).encode()),
        (path, data),  # the video last, so an existing video always has its metadata
    ):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _read_and_remove(path: Path, body: bytes) -> list[CheckStep]:
    """The rest of the probe: read ``path`` back, then delete it and its metadata."""
    try:
        same = path.read_bytes() == body
        path.unlink()
        path.with_suffix(path.suffix + ".json").unlink()
    except OSError as exc:
        return [CheckStep("get", "fail", f"{path}: {exc.strerror}")]
    read = "bytes equal" if same else "different bytes"
    return [
        CheckStep("get", "ok" if same else "fail", f"read {path} back, {read}"),
        CheckStep("delete", "ok", f"deleted {path}"),
    ]
