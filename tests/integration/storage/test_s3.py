"""The S3 object store against moto's S3 server: keys, duplicates, parts, URLs, failures."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse
from urllib.request import urlopen

import pytest

from streamproc.errors import ServiceRefused, StorageError
from streamproc.metrics import Metrics
from streamproc.storage.base import object_key
from streamproc.storage.metadata import METADATA_LIMIT, decode_metadata
from streamproc.storage.s3 import CACHE_CONTROL, S3ObjectStore
from tests.integration.ops.scrape import parse, total, value
from tests.integration.storage.conftest import MotoS3
from tests.unit.storage.test_local import PARAMS

T = TypeVar("T")
KEY = object_key("org/model", "a fox in the snow", PARAMS)
META = {"event_id": "e1", "model_id": "org/model", "parameters": PARAMS.model_dump_json()}


@pytest.fixture
async def store(moto_s3: MotoS3, bucket: str) -> AsyncIterator[S3ObjectStore]:
    async with S3ObjectStore(moto_s3.s3_settings(bucket, prefix="tenant-a")) as store:
        yield store


def versions(moto_s3: MotoS3, bucket: str, key: str) -> list[dict[str, Any]]:
    found = moto_s3.client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [v for v in found if v["Key"] == key]


def fetch(url: str) -> bytes:
    with urlopen(url, timeout=30) as response:
        data: bytes = response.read()
        return data


async def test_put_stores_the_video_under_the_prefixed_content_key(
    store: S3ObjectStore, moto_s3: MotoS3, bucket: str
) -> None:
    await store.put(KEY, b"mp4 bytes", META)
    head = moto_s3.client.head_object(Bucket=bucket, Key=f"tenant-a/{KEY}")
    assert head["ContentType"] == "video/mp4"
    assert head["CacheControl"] == CACHE_CONTROL
    assert moto_s3.read(bucket, f"tenant-a/{KEY}") == b"mp4 bytes"
    meta = decode_metadata(head["Metadata"])
    assert meta["event-id"] == "e1" and meta["model-id"] == "org/model"
    assert json.loads(meta["parameters"]) == json.loads(PARAMS.model_dump_json())
    assert await store.exists(KEY)
    assert not await store.exists(KEY.replace(".mp4", "-other.mp4"))


async def test_second_put_of_the_same_bytes_does_not_upload_again(
    store: S3ObjectStore, moto_s3: MotoS3, bucket: str
) -> None:
    await store.put(KEY, b"same video", META)
    await store.put(KEY, b"same video", {**META, "event_id": "e2"})
    # The bucket is versioned: every upload would leave a version behind.
    assert len(versions(moto_s3, bucket, f"tenant-a/{KEY}")) == 1
    head = moto_s3.client.head_object(Bucket=bucket, Key=f"tenant-a/{KEY}")
    assert head["Metadata"]["event-id"] == "e1"


async def test_same_bytes_written_by_another_client_are_not_uploaded_again(
    store: S3ObjectStore, moto_s3: MotoS3, bucket: str
) -> None:
    moto_s3.client.put_object(Bucket=bucket, Key=f"tenant-a/{KEY}", Body=b"from elsewhere")
    await store.put(KEY, b"from elsewhere", META)  # no hash in its metadata: size and MD5 ETag
    assert len(versions(moto_s3, bucket, f"tenant-a/{KEY}")) == 1


async def test_different_bytes_under_the_same_key_replace_the_object(
    store: S3ObjectStore, moto_s3: MotoS3, bucket: str
) -> None:
    await store.put(KEY, b"first encoding", META)
    await store.put(KEY, b"second encoding", META)
    assert len(versions(moto_s3, bucket, f"tenant-a/{KEY}")) == 2
    assert moto_s3.read(bucket, f"tenant-a/{KEY}") == b"second encoding"


@pytest.mark.parametrize("checksums", ["when_supported", "when_required"])
async def test_large_video_goes_up_in_parts_and_arrives_whole(
    moto_s3: MotoS3, bucket: str, checksums: str
) -> None:
    settings = moto_s3.s3_settings(
        bucket,
        multipart_threshold_bytes=1 << 20,
        multipart_chunk_bytes=5 << 20,
        checksums=checksums,
    )
    data = os.urandom((11 << 20) + 123)  # three parts: 5 MiB, 5 MiB, the rest
    async with S3ObjectStore(settings) as store:
        url = await store.put(KEY, data, META)
        await store.put(KEY, data, META)  # the duplicate check works for multipart objects too
    head = moto_s3.client.head_object(Bucket=bucket, Key=KEY)
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a three-part upload
    assert head["ContentType"] == "video/mp4" and head["Metadata"]["event-id"] == "e1"
    assert len(versions(moto_s3, bucket, KEY)) == 1
    assert moto_s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert fetch(url) == data


class FailingSecondPart(S3ObjectStore):
    """The real store, with its second part upload failing for good."""

    async def _call(
        self, what: str, op: Callable[[], Awaitable[T]], *, answers: frozenset[str] = frozenset()
    ) -> T:
        if what == "upload_part" and getattr(op, "keywords", {}).get("PartNumber") == 2:
            raise StorageError("injected part failure")
        return await super()._call(what, op, answers=answers)


async def test_failed_multipart_upload_is_aborted_and_leaves_nothing(
    moto_s3: MotoS3, bucket: str
) -> None:
    settings = moto_s3.s3_settings(
        bucket, multipart_threshold_bytes=1, multipart_chunk_bytes=5 << 20
    )
    async with FailingSecondPart(settings) as store:
        with pytest.raises(StorageError, match="injected"):
            await store.put(KEY, os.urandom(6 << 20), META)
        assert not await store.exists(KEY)
    assert moto_s3.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


async def test_presigned_url_downloads_the_exact_bytes_with_plain_http(
    moto_s3: MotoS3, bucket: str
) -> None:
    data = os.urandom(50_000)
    async with S3ObjectStore(moto_s3.s3_settings(bucket, presign_expiry_s=900)) as store:
        url = await store.put(KEY, data, META)
    query = parse_qs(urlparse(url).query)
    assert query["X-Amz-Expires"] == ["900"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert fetch(url) == data


async def test_url_for_signs_a_new_url_at_every_call(store: S3ObjectStore) -> None:
    first = await store.put(KEY, b"video", META)
    await asyncio.sleep(1.1)  # presigned URLs carry their signing time in whole seconds
    again = await store.url_for(KEY)
    assert (
        parse_qs(urlparse(again).query)["X-Amz-Date"]
        > parse_qs(urlparse(first).query)["X-Amz-Date"]
    )
    assert fetch(again) == b"video"


async def test_public_base_url_mode_appends_the_key_to_the_base(
    moto_s3: MotoS3, bucket: str
) -> None:
    base = f"{moto_s3.endpoint}/{bucket}/"  # what a CDN in front of the bucket would serve
    public_read = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/cdn/*",
            }
        ],
    }
    moto_s3.client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(public_read))
    settings = moto_s3.s3_settings(bucket, prefix="cdn/", public_base_url=base)
    async with S3ObjectStore(settings) as store:
        url = await store.put(KEY, b"public video", META)
        assert await store.url_for(KEY) == url
    assert url == f"{base}cdn/{KEY}"
    assert fetch(url) == b"public video"


async def test_presign_endpoint_puts_the_consumers_host_into_urls(
    moto_s3: MotoS3, bucket: str
) -> None:
    outside = f"http://localhost:{moto_s3.port}"
    settings = moto_s3.s3_settings(bucket, presign_endpoint_url=outside)
    async with S3ObjectStore(settings) as store:
        url = await store.put(KEY, b"seen from outside", META)
    assert url.startswith(f"{outside}/{bucket}/{KEY}?")
    assert fetch(url) == b"seen from outside"


async def test_metadata_stays_ascii_and_within_the_limit(
    store: S3ObjectStore, moto_s3: MotoS3, bucket: str
) -> None:
    params = PARAMS.model_copy(update={"negative_prompt": "ぼやけた 低品質 " * 200})
    meta = {**META, "parameters": params.model_dump_json()}
    await store.put(KEY, b"video", meta)
    stored = moto_s3.client.head_object(Bucket=bucket, Key=f"tenant-a/{KEY}")["Metadata"]
    assert all(v.isascii() for v in stored.values())
    assert sum(len(k) + len(v) for k, v in stored.items()) <= METADATA_LIMIT
    readable = decode_metadata(stored)
    assert readable["truncated"] == "parameters"
    assert readable["event-id"] == "e1"
    assert params.model_dump_json().startswith(readable["parameters"])


async def test_start_fails_fast_with_one_line_when_the_bucket_is_missing(
    moto_s3: MotoS3,
) -> None:
    with pytest.raises(ServiceRefused, match=r"'no-such-bucket' .* does not exist") as caught:
        await S3ObjectStore(moto_s3.s3_settings("no-such-bucket")).start()
    assert "\n" not in str(caught.value)
    assert caught.value.component == "store"


async def test_start_fails_fast_when_the_endpoint_cannot_be_reached(moto_s3: MotoS3) -> None:
    settings = moto_s3.s3_settings("any", endpoint_url="http://127.0.0.1:9", max_attempts=3)
    with pytest.raises(StorageError, match=r"cannot reach S3 .*after 3 attempts"):
        await S3ObjectStore(settings).start()


async def test_start_with_an_unknown_access_key_is_refused_naming_bucket_and_endpoint(
    moto_s3: MotoS3, bucket: str
) -> None:
    settings = moto_s3.s3_settings(bucket, access_key_id="AKIANOSUCHKEY0000000", max_attempts=4)
    with moto_s3.enforcing_iam(), pytest.raises(ServiceRefused) as caught:
        await S3ObjectStore(settings).start()
    assert str(caught.value) == (
        f"access denied to bucket {bucket!r} at {moto_s3.endpoint} (403 on head_bucket): "
        "check the storage.s3 credentials and the bucket policy"
    )


@pytest.mark.parametrize(
    ("size", "request_name"), [(1000, "put_object"), (6 << 20, "create_multipart_upload")]
)
async def test_put_denied_by_policy_is_refused_at_once_without_retries(
    moto_s3: MotoS3, bucket: str, size: int, request_name: str
) -> None:
    key_id, secret = moto_s3.iam_user(deny=("s3:PutObject",))
    settings = moto_s3.s3_settings(
        bucket,
        access_key_id=key_id,
        secret_access_key=secret,
        max_attempts=4,
        multipart_threshold_bytes=5 << 20,
        multipart_chunk_bytes=5 << 20,
    )
    metrics = Metrics()
    with moto_s3.enforcing_iam():
        async with S3ObjectStore(settings, metrics=metrics) as store:  # HEAD bucket: allowed
            with pytest.raises(ServiceRefused) as caught:
                await store.put(KEY, os.urandom(size), META)
    assert str(caught.value) == (
        f"access denied to bucket {bucket!r} at {moto_s3.endpoint} (AccessDenied on "
        f"{request_name}): check the storage.s3 credentials and the bucket policy"
    )
    assert caught.value.component == "store"
    scraped = parse((await metrics.render()).decode())
    assert total(scraped, "streamproc_s3_retries_total") == 0  # refused at the first answer
    assert value(scraped, "streamproc_s3_errors_total", operation=request_name) == 1
    assert moto_s3.client.list_object_versions(Bucket=bucket).get("Versions", []) == []


async def test_bucket_deleted_while_running_refuses_the_put(moto_s3: MotoS3, bucket: str) -> None:
    async with S3ObjectStore(moto_s3.s3_settings(bucket, max_attempts=4)) as store:
        await store.put(KEY, b"video", META)
        moto_s3.delete_bucket(bucket)
        with pytest.raises(ServiceRefused) as caught:
            await store.put(KEY.replace(".mp4", "-2.mp4"), b"other video", META)
        assert str(caught.value) == (
            f"bucket {bucket!r} at {moto_s3.endpoint} does not exist: create it or fix "
            "storage.s3.bucket"
        )
        moto_s3.create_bucket(bucket)  # the store keeps no state: it works once it exists
        url = await store.put(KEY, b"video", META)
    assert fetch(url) == b"video"


async def test_readiness_fails_once_the_bucket_is_gone(moto_s3: MotoS3, bucket: str) -> None:
    async with S3ObjectStore(moto_s3.s3_settings(bucket)) as store:
        assert await store.readiness() == (True, f"bucket {bucket} answers")
        moto_s3.delete_bucket(bucket)
        with pytest.raises(ServiceRefused, match="does not exist"):
            await store.readiness()
        moto_s3.create_bucket(bucket)


async def test_put_while_the_server_is_down_fails_after_bounded_attempts(
    moto_s3: MotoS3, bucket: str
) -> None:
    async with S3ObjectStore(moto_s3.s3_settings(bucket, max_attempts=3)) as store:
        moto_s3.stop()
        try:
            started = time.monotonic()
            with pytest.raises(StorageError, match=r"cannot reach S3 .*after 3 attempts"):
                await store.put(KEY, b"video", META)
            assert time.monotonic() - started < 10  # bounded: the processor decides what next
        finally:
            moto_s3.start()
        url = await store.put(KEY, b"video", META)  # the same client recovers
    assert fetch(url) == b"video"


async def test_stop_is_idempotent_and_a_stopped_store_refuses_work(
    moto_s3: MotoS3, bucket: str
) -> None:
    store = S3ObjectStore(moto_s3.s3_settings(bucket))
    await store.start()
    await store.stop()
    await store.stop()
    with pytest.raises(StorageError, match="not started"):
        await store.put(KEY, b"video", META)


async def test_check_probes_the_bucket_and_cleans_up(moto_s3: MotoS3, bucket: str) -> None:
    steps = await S3ObjectStore(moto_s3.s3_settings(bucket, prefix="p")).check()
    assert [(s.name, s.status) for s in steps] == [
        ("bucket", "ok"),
        ("put", "ok"),
        ("get", "ok"),
        ("url", "ok"),
        ("delete", "ok"),
    ]
    listed = moto_s3.client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert listed == []


async def test_check_stops_at_a_missing_bucket(moto_s3: MotoS3) -> None:
    [step] = await S3ObjectStore(moto_s3.s3_settings("not-there")).check()
    assert step.name == "bucket" and step.status == "fail"
    assert "does not exist" in step.detail
