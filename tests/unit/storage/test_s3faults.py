"""Which S3 faults are retried, and the one line a permanent one becomes."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)

from streamproc.storage.s3faults import explain, is_transient


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(
    "exc",
    [
        client_error("SlowDown", 503),
        client_error("InternalError", 500),
        client_error("ServiceUnavailable", 503),
        client_error("RequestTimeout", 400),
        client_error("TooManyRequestsException", 429),
        client_error("XMinioServerNotInitialized", 503),
        EndpointConnectionError(endpoint_url="http://x"),
        ConnectTimeoutError(endpoint_url="http://x"),
        ReadTimeoutError(endpoint_url="http://x"),
        ConnectionResetError(),
        TimeoutError(),
    ],
)
def test_transient_faults_are_retried(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        client_error("NoSuchBucket", 404),
        client_error("AccessDenied", 403),
        client_error("InvalidAccessKeyId", 403),
        client_error("SignatureDoesNotMatch", 403),
        client_error("404", 404),
        NoCredentialsError(),
        SSLError(endpoint_url="https://x", error="certificate verify failed"),
    ],
)
def test_permanent_faults_are_not_retried(exc: BaseException) -> None:
    assert not is_transient(exc)


@pytest.mark.parametrize(
    ("what", "exc", "expected"),
    [
        ("put_object", client_error("NoSuchBucket", 404), "does not exist: create it"),
        ("head_bucket", client_error("404", 404), "does not exist: create it"),
        ("put_object", client_error("InvalidAccessKeyId", 403), "access denied to bucket 'b'"),
        ("head_bucket", client_error("301", 301), "in another region: fix storage.s3.region"),
        ("put_object", NoCredentialsError(), "no usable S3 credentials"),
        ("put_object", client_error("SlowDown", 503), "failed (after 4 attempts): SlowDown: m"),
        ("put_object", EndpointConnectionError(endpoint_url="http://x"), "cannot reach S3"),
    ],
)
def test_permanent_failures_are_one_line_naming_the_fix(
    what: str, exc: BaseException, expected: str
) -> None:
    message = explain(what, exc, 4, "b", "http://minio:9000")
    assert expected in message
    assert "\n" not in message
