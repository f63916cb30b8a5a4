"""The production object store: S3 or an S3-compatible server (MinIO) through aioboto3.

Keys are the content addresses of :func:`~streamproc.storage.base.object_key` below the
configured prefix. A put first asks (HEAD) whether the same bytes are already stored — their
SHA-256 travels in the object's metadata — and uploads only when they are not; videos of
``multipart_threshold_bytes`` or more go up in parts. URLs are the public (CDN) base URL plus
the key when one is configured, else presigned GET URLs signed at every call, so an answer
from the cache never carries an expired link.

Each request is retried by the worker's retry policy (:mod:`streamproc.retry`: exponential
backoff, full jitter) on transient faults (connection errors, timeouts, 5xx, throttling),
``max_attempts`` attempts at most; then
:class:`StorageError` is raised, which the processor retries until shutdown, publishing
nothing before the object exists: an outage delays results but never yields a dead URL. A
permanent fault is raised at once, classified in :mod:`~streamproc.storage.s3faults`:
:class:`ServiceRefused` when the store refuses all work (denied access, bad credentials, a
missing bucket, a wrong region), :class:`RecordRejected` when it refuses this object only
(``EntityTooLarge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote
from urllib.request import urlopen

import aioboto3
import structlog
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from streamproc import __version__
from streamproc.errors import (
    ConfigError,
    RecordRejected,
    ServiceRefused,
    StorageError,
)
from streamproc.metrics import Metrics
from streamproc.resource import AsyncResource
from streamproc.retry import BOTOCORE_RETRIES, RetryPolicy
from streamproc.settings import S3Settings
from streamproc.storage.base import CheckStep
from streamproc.storage.metadata import METADATA_LIMIT, encode_metadata
from streamproc.storage.s3faults import (
    COMPONENT,
    DENIED,
    NOT_FOUND,
    classify,
    error_code,
    is_transient,
)

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_s3.client import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = structlog.get_logger(__name__)
T = TypeVar("T")

CONTENT_TYPE = "video/mp4"
#: The bytes under a content address never change meaning, so any cache may keep them.
CACHE_CONTROL = "public, max-age=31536000, immutable"
#: Metadata key of the SHA-256 of the object's bytes (what the duplicate check compares).
HASH_KEY = "sha256"
#: Where ``storage check`` writes its probe objects, below the prefix.
CHECK_FOLDER = ".streamproc-check/"
_ABORT_TIMEOUT_S = 5.0


class _GaveUp(Exception):
    """The request failed for good with ``error``; carries it past the retry policy (which
    would otherwise retry a :class:`StorageError`). Never leaves the store."""

    def __init__(self, error: StorageError | RecordRejected | ServiceRefused) -> None:
        super().__init__(str(error))
        self.error = error


class _Answered(Exception):
    """S3 answered with one of the codes the caller expects (``404`` to a HEAD): an answer,
    not a fault. Never leaves the store."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class S3ObjectStore(AsyncResource):
    """Keeps videos in an S3 bucket; an async context manager (``start``/``stop``)."""

    def __init__(
        self,
        settings: S3Settings,
        *,
        session: aioboto3.Session | None = None,
        metrics: Metrics | None = None,
        retries: RetryPolicy | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else Metrics()
        self._retries = retries or RetryPolicy.for_s3(settings, self._metrics)
        if not settings.bucket:
            raise ConfigError("storage.s3.bucket is not set")
        self._settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.key_prefix
        self._session = session or aioboto3.Session()
        self._stack: AsyncExitStack | None = None
        self._client: S3Client | None = None
        self._signer: S3Client | None = None

    @property
    def urls_expire(self) -> bool:
        """Whether the URLs it gives expire (presigned, no public base URL): a re-published
        result then gets a fresh one."""
        return not self._settings.public_base_url

    @property
    def endpoint(self) -> str:
        """The endpoint, for messages."""
        return self._settings.endpoint_url or f"AWS S3 ({self._settings.region})"

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the client and, unless disabled, check that the bucket can be used.

        Raises one line saying what is wrong, better at startup than on every event:
        :class:`ServiceRefused` for a missing bucket, denied access, a wrong region or a
        client that cannot be built; :class:`StorageError` for an endpoint that does not
        answer within the attempts.
        """
        if self._stack is not None:
            return
        await self._open()
        if self._settings.verify_on_start:
            try:
                await self.verify_bucket()
            except BaseException:
                await self.stop()
                raise
        log.info(
            "s3_store_started",
            endpoint=self.endpoint,
            bucket=self.bucket,
            prefix=self.prefix,
            urls="public" if self._settings.public_base_url else "presigned",
        )

    async def stop(self) -> None:
        """Close the client; safe to call more than once."""
        stack, self._stack = self._stack, None
        self._client = self._signer = None
        if stack is not None:
            await stack.aclose()

    async def _open(self) -> None:
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                self._new_client(self._settings.endpoint_url)
            )
            presign_at = self._settings.presign_endpoint_url
            self._signer = (
                await stack.enter_async_context(self._new_client(presign_at))
                if presign_at
                else self._client
            )
        except (BotoCoreError, ValueError) as exc:
            await stack.aclose()
            self._client = self._signer = None
            raise ServiceRefused(
                f"cannot create an S3 client for {self.endpoint}: {exc}", component=COMPONENT
            ) from exc
        self._stack = stack

    def _new_client(self, endpoint_url: str | None) -> ClientCreatorContext[S3Client]:
        s = self._settings
        config = AioConfig(
            region_name=s.region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if s.path_style else "auto"},
            retries=BOTOCORE_RETRIES,  # one attempt per call: the retry policy retries
            connect_timeout=s.connect_timeout_s,
            read_timeout=s.read_timeout_s,
            request_checksum_calculation=s.checksums,
            response_checksum_validation=s.checksums,
            user_agent_extra=f"streamproc/{__version__}",
        )
        return self._session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=s.region,
            aws_access_key_id=s.access_key_id,
            aws_secret_access_key=_reveal(s.secret_access_key),
            aws_session_token=_reveal(s.session_token),
            config=config,
        )

    @property
    def _s3(self) -> S3Client:
        if self._client is None:
            raise StorageError("the S3 store is not started")
        return self._client

    # -- the ObjectStore seam ------------------------------------------------------------

    async def put(self, key: str, data: bytes, metadata: Mapping[str, str]) -> str:
        """Upload ``data`` under the prefixed ``key`` unless the same bytes are there.

        Raises :class:`StorageError` (retry), :class:`RecordRejected` (this video cannot be
        kept) or :class:`ServiceRefused` (the store refuses all work); see ``s3faults``.
        """
        full = self.prefix + key
        digest = await asyncio.to_thread(_sha256, data)
        if await self._holds(full, data, digest):
            log.debug("s3_object_exists", key=full)
            return await self.url_for(key)
        meta = encode_metadata(metadata, METADATA_LIMIT - len(HASH_KEY) - len(digest))
        meta[HASH_KEY] = digest
        attributes: dict[str, Any] = {
            "ContentType": CONTENT_TYPE,
            "CacheControl": CACHE_CONTROL,
            "Metadata": meta,
        }
        if len(data) >= self._settings.multipart_threshold_bytes:
            parts = await self._put_parts(full, data, attributes)
        else:
            parts = 1
            await self._call(
                "put_object",
                partial(self._s3.put_object, Bucket=self.bucket, Key=full, Body=data, **attributes),
            )
        log.debug("s3_object_stored", key=full, size=len(data), parts=parts)
        return await self.url_for(key)

    async def url_for(self, key: str) -> str:
        """The public URL of ``key``, or a presigned GET URL signed now."""
        full = self.prefix + key
        if self._settings.public_base_url:
            return f"{self._settings.public_base_url.rstrip('/')}/{quote(full)}"
        if self._signer is None:
            raise StorageError("the S3 store is not started")
        try:
            return await self._signer.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": full},
                ExpiresIn=self._settings.presign_expiry_s,
            )
        except (BotoCoreError, ClientError) as exc:
            raise classify("presign", exc, 1, self.bucket, self.endpoint) from exc

    async def exists(self, key: str) -> bool:
        """Whether the prefixed ``key`` is stored."""
        try:
            await self._call(
                "head_object",
                partial(self._s3.head_object, Bucket=self.bucket, Key=self.prefix + key),
                answers=NOT_FOUND,
            )
        except _Answered:
            return False
        return True

    async def readiness(self) -> tuple[bool, str]:
        """Ready when the bucket answers (one HEAD, with the usual retries)."""
        await self.verify_bucket()
        return True, f"bucket {self.bucket} answers"

    async def verify_bucket(self) -> None:
        """Return when the bucket exists and may be used; else raise :class:`ServiceRefused`
        (missing, denied, another region) or :class:`StorageError` (no answer)."""
        await self._call("head_bucket", partial(self._s3.head_bucket, Bucket=self.bucket))

    # -- uploads -------------------------------------------------------------------------

    async def _holds(self, full: str, data: bytes, digest: str) -> bool:
        """Whether ``full`` already holds ``data``: same SHA-256 in its metadata, or — for an
        object written by something else — same size and an ETag equal to the bytes' MD5."""
        try:
            head = await self._call(
                "head_object",
                partial(self._s3.head_object, Bucket=self.bucket, Key=full),
                # 403: without s3:ListBucket S3 answers a missing key with 403; just upload
                # (credentials that may not upload either fail on the PUT, naming the cause).
                answers=NOT_FOUND | DENIED,
            )
        except _Answered:
            return False
        stored = head.get("Metadata", {}).get(HASH_KEY)
        if stored is not None:
            return stored == digest
        etag = head.get("ETag", "").strip('"')
        return head.get("ContentLength") == len(data) and etag == _md5(data)

    async def _put_parts(self, full: str, data: bytes, attributes: dict[str, Any]) -> int:
        """A multipart upload of ``data``; aborted when any part finally fails."""
        crc: dict[str, Any] = (
            {"ChecksumAlgorithm": "CRC32"} if self._settings.checksums == "when_supported" else {}
        )
        upload = await self._call(
            "create_multipart_upload",
            partial(
                self._s3.create_multipart_upload,
                Bucket=self.bucket,
                Key=full,
                **attributes,
                **crc,
            ),
        )
        upload_id = upload["UploadId"]
        step = self._settings.multipart_chunk_bytes
        parts: list[CompletedPartTypeDef] = []
        try:
            for number, start in enumerate(range(0, len(data), step), start=1):
                answer = await self._call(
                    "upload_part",
                    partial(
                        self._s3.upload_part,
                        Bucket=self.bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data[start : start + step],
                        **crc,
                    ),
                )
                part: CompletedPartTypeDef = {"PartNumber": number, "ETag": answer["ETag"]}
                if crc and "ChecksumCRC32" in answer:
                    part["ChecksumCRC32"] = answer["ChecksumCRC32"]
                parts.append(part)
            await self._call(
                "complete_multipart_upload",
                partial(
                    self._s3.complete_multipart_upload,
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                ),
            )
        except BaseException:
            # Best effort, and brief (this may run during shutdown): stored parts cost money
            # until aborted. What a crash leaves behind is removed by the bucket's
            # AbortIncompleteMultipartUpload rule (docs/storage.md).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._s3.abort_multipart_upload(
                        Bucket=self.bucket, Key=full, UploadId=upload_id
                    ),
                    _ABORT_TIMEOUT_S,
                )
            raise
        return len(parts)

    # -- requests ------------------------------------------------------------------------

    async def _call(
        self, what: str, op: Callable[[], Awaitable[T]], *, answers: frozenset[str] = frozenset()
    ) -> T:
        """Run one S3 request under the retry policy (:meth:`RetryPolicy.for_s3`): a transient
        fault is retried (logged as ``retrying`` with operation ``s3_<request>``, counted in
        ``streamproc_s3_retries_total`` too). An error code in ``answers`` raises
        :class:`_Answered`; any other failure the one classified error of
        :func:`~streamproc.storage.s3faults.classify` (a permanent one at once)."""
        try:
            async for attempt in self._retries.attempts_of(f"s3_{what}"):
                with attempt:
                    return await self._attempt(
                        what, op, attempt.retry_state.attempt_number, answers
                    )
        except _GaveUp as gave_up:
            raise gave_up.error from gave_up.error.__cause__
        raise AssertionError("unreachable: the policy re-raises the last error")  # pragma: no cover

    async def _attempt(
        self, what: str, op: Callable[[], Awaitable[T]], attempt: int, answers: frozenset[str]
    ) -> T:
        try:
            return await op()
        except (BotoCoreError, ClientError, OSError, TimeoutError) as exc:
            if isinstance(exc, ClientError) and error_code(exc) in answers:
                raise _Answered(error_code(exc)) from exc
            error = classify(what, exc, attempt, self.bucket, self.endpoint)
            error.__cause__ = exc
            if not is_transient(exc) or attempt >= self._settings.max_attempts:
                # Final for this request (a StorageError of a failed upload is retried by the
                # caller as a whole put, not here).
                self._metrics.s3_errors.labels(what).inc()
                raise _GaveUp(error) from exc
            self._metrics.s3_retries.labels(what).inc()
            raise error from exc

    # -- storage check -------------------------------------------------------------------

    async def check(self) -> list[CheckStep]:
        """Head the bucket, then put, get, fetch by URL and delete a small probe object
        below the prefix. Opens its own client when the store is not started."""
        opened_here = self._stack is None
        if opened_here:
            try:
                await self._open()
            except ServiceRefused as exc:
                return [CheckStep("client", "fail", str(exc))]
        full = f"{self.prefix}{CHECK_FOLDER}{uuid.uuid4().hex}.txt"
        body = f"streamproc storage check {full}\n".encode()
        steps: list[CheckStep] = []

        async def step(
            name: str, op: Callable[[], Awaitable[str]], failed: Literal["fail", "warn"] = "fail"
        ) -> bool:
            try:
                detail = await op()
            except (StorageError, RecordRejected, ServiceRefused) as exc:
                steps.append(CheckStep(name, failed, str(exc)))
                return False
            steps.append(CheckStep(name, "ok", detail))
            return True

        try:
            if not await step("bucket", self._check_bucket):
                return steps
            if not await step("put", partial(self._check_put, full, body)):
                return steps
            if await step("get", partial(self._check_get, full, body)):
                # Consumers may reach the URL where this host cannot (a CDN, another network).
                await step("url", partial(self._check_url, full, body), failed="warn")
            await step("delete", partial(self._check_delete, full))
            return steps
        finally:
            if opened_here:
                await self.stop()

    async def _check_bucket(self) -> str:
        await self.verify_bucket()
        return f"bucket {self.bucket!r} reachable at {self.endpoint}"

    async def _check_put(self, full: str, body: bytes) -> str:
        await self._call(
            "put_object",
            partial(
                self._s3.put_object,
                Bucket=self.bucket,
                Key=full,
                Body=body,
                ContentType="text/plain",
            ),
        )
        return f"wrote {full} ({len(body)} bytes)"

    async def _check_get(self, full: str, body: bytes) -> str:
        answer = await self._call(
            "get_object", partial(self._s3.get_object, Bucket=self.bucket, Key=full)
        )
        async with answer["Body"] as stream:
            try:
                read = await stream.read()
            except Exception as exc:
                raise StorageError(f"reading {full} back failed: {exc}") from exc
        if read != body:
            raise StorageError(f"read {full} back with different bytes")
        return f"read {full} back, bytes equal"

    async def _check_url(self, full: str, body: bytes) -> str:
        url = await self.url_for(full.removeprefix(self.prefix))
        mode = "public" if self._settings.public_base_url else "presigned"
        try:
            fetched = await asyncio.to_thread(_fetch, url, self._settings.read_timeout_s)
        except (OSError, ValueError) as exc:
            raise StorageError(
                f"{mode} URL of the probe cannot be fetched from here: {exc}"
            ) from exc
        if fetched != body:
            raise StorageError(f"{mode} URL of the probe returns different bytes")
        return f"{mode} URL serves the probe"

    async def _check_delete(self, full: str) -> str:
        await self._call(
            "delete_object", partial(self._s3.delete_object, Bucket=self.bucket, Key=full)
        )
        return f"deleted {full}"


def _reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _fetch(url: str, timeout: float) -> bytes:
    with urlopen(url, timeout=timeout) as response:
        data: bytes = response.read()
        return data
