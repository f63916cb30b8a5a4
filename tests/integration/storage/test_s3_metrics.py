"""S3 faults are counted: retried requests and requests that failed for good."""

from __future__ import annotations

import pytest

from streamproc.errors import StorageError
from streamproc.metrics import Metrics
from streamproc.storage.s3 import S3ObjectStore
from tests.integration.ops.scrape import parse, total, value
from tests.integration.storage.conftest import MotoS3

KEY = "videos/m/ab/metrics.mp4"
META = {"event_id": "e1", "model_id": "m"}


async def test_an_unreachable_server_counts_retries_and_the_final_error(
    moto_s3: MotoS3, bucket: str
) -> None:
    metrics = Metrics()
    async with S3ObjectStore(moto_s3.s3_settings(bucket, max_attempts=3), metrics=metrics) as store:
        await store.put(KEY, b"video", META)
        healthy = parse((await metrics.render()).decode())
        assert total(healthy, "streamproc_s3_retries_total") == 0
        assert total(healthy, "streamproc_s3_errors_total") == 0
        moto_s3.stop()
        try:
            with pytest.raises(StorageError):
                await store.put("videos/m/cd/other.mp4", b"other", META)
        finally:
            moto_s3.start()
    failed = parse((await metrics.render()).decode())
    # The first request of the put (the duplicate check) was tried three times, then gave up.
    assert value(failed, "streamproc_s3_retries_total", operation="head_object") == 2
    assert value(failed, "streamproc_s3_errors_total", operation="head_object") == 1
