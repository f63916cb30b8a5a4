"""Which S3 faults are retried, which refuse a record or the whole service, and the one line
each becomes."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
    SSLError,
)

from streamproc.errors import (
    PermanentError,
    RecordRejected,
    ServiceRefused,
    StorageError,
    TransientError,
)
from streamproc.storage.s3faults import classify, explain, is_transient


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
        client_error("EntityTooLarge", 400),
        client_error("NotImplemented", 501),
        client_error("NoSuchUpload", 404),
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
        ("put_object", client_error("RequestTimeTooSkewed", 403), "synchronise the clock"),
        ("put_object", client_error("NotImplemented", 501), "storage.s3.checksums"),
        ("put_object", client_error("EntityTooLarge", 400), "S3 refused this object"),
    ],
)
def test_permanent_failures_are_one_line_naming_the_fix(
    what: str, exc: BaseException, expected: str
) -> None:
    message = explain(what, exc, 4, "b", "http://minio:9000")
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "exc",
    [
        client_error("SlowDown", 503),
        client_error("InternalError", 500),
        client_error("Throttling", 400),
        client_error("TooManyRequestsException", 429),
        EndpointConnectionError(endpoint_url="http://x"),
        ReadTimeoutError(endpoint_url="http://x"),
        ResponseStreamingError(error="reset"),
        ConnectionResetError(),
        TimeoutError(),
    ],
)
def test_an_outage_that_outlasts_the_attempts_is_a_storage_error(exc: BaseException) -> None:
    error = classify("put_object", exc, 4, "b", "http://minio:9000")
    assert type(error) is StorageError and isinstance(error, TransientError)


@pytest.mark.parametrize("code", ["NoSuchUpload", "InvalidPart", "BadDigest"])
def test_a_spoilt_upload_is_a_storage_error_so_the_put_runs_again(code: str) -> None:
    error = classify("complete_multipart_upload", client_error(code, 400), 1, "b", "e")
    assert type(error) is StorageError


@pytest.mark.parametrize("code", ["EntityTooLarge", "MetadataTooLarge", "MaxMessageLengthExceeded"])
def test_an_object_refused_alone_is_record_rejected(code: str) -> None:
    error = classify("put_object", client_error(code, 400), 1, "b", "http://minio:9000")
    assert isinstance(error, RecordRejected) and error.component == "store"
    assert "bucket 'b' at http://minio:9000" in str(error)


@pytest.mark.parametrize(
    ("what", "exc", "expected"),
    [
        ("put_object", client_error("AccessDenied", 403), "access denied"),
        ("head_bucket", client_error("403", 403), "access denied"),
        ("put_object", client_error("InvalidAccessKeyId", 403), "access denied"),
        ("put_object", client_error("SignatureDoesNotMatch", 403), "access denied"),
        ("put_object", client_error("ExpiredToken", 400), "access denied"),
        ("put_object", client_error("NoSuchBucket", 404), "does not exist"),
        ("head_bucket", client_error("404", 404), "does not exist"),
        ("head_bucket", client_error("301", 301), "another region"),
        ("put_object", client_error("PermanentRedirect", 301), "another region"),
        ("put_object", client_error("RequestTimeTooSkewed", 403), "clock"),
        ("put_object", client_error("NotImplemented", 501), "does not support"),
        ("put_object", client_error("InvalidArgument", 400), "InvalidArgument: m"),
        ("put_object", NoCredentialsError(), "no usable S3 credentials"),
        ("presign", PartialCredentialsError(provider="env", cred_var="secret"), "credentials"),
        ("put_object", CredentialRetrievalError(provider="sts", error_msg="x"), "credentials"),
        (
            "put_object",
            SSLError(endpoint_url="https://x", error="certificate verify failed"),
            "TLS",
        ),
    ],
)
def test_a_refusal_of_all_work_is_service_refused_with_one_line(
    what: str, exc: BaseException, expected: str
) -> None:
    error = classify(what, exc, 1, "b", "http://minio:9000")
    assert isinstance(error, ServiceRefused) and isinstance(error, PermanentError)
    assert error.component == "store"
    assert expected in str(error) and "\n" not in str(error)
