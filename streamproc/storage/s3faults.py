"""How S3 faults are told apart (retry or give up) and put into one readable line.

Transient: connection errors, timeouts, HTTP 5xx and 429, and the throttling and timeout codes
of S3 and MinIO — worth another attempt after a backoff. Everything else (missing bucket,
denied access, wrong region, bad request) fails at once with a message that names the setting
to fix. Messages never contain credentials.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, SSLError
from botocore.exceptions import ConnectionError as BotoConnectionError

TRANSIENT_CODES = frozenset(
    {
        "BandwidthLimitExceeded",
        "InternalError",
        "OperationAborted",
        "PriorRequestNotComplete",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "XMinioServerNotInitialized",
    }
)
#: Codes of "these credentials may not do that" (HEAD answers carry only the status).
DENIED = frozenset(
    {
        "403",
        "AccessDenied",
        "AllAccessDisabled",
        "ExpiredToken",
        "Forbidden",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
    }
)
#: Codes of a missing object (or, for HEAD, a missing bucket: HEAD answers have no body).
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_MISSING_BUCKET = frozenset({"NoSuchBucket"})
_WRONG_REGION = frozenset({"301", "AuthorizationHeaderMalformed", "PermanentRedirect"})


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the request that raised ``exc`` soon may succeed."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in TRANSIENT_CODES or status >= 500 or status == 429
    if isinstance(exc, SSLError):
        return False  # a certificate problem does not heal within seconds
    return isinstance(exc, BotoConnectionError | HTTPClientError | OSError | TimeoutError)


def error_code(exc: ClientError) -> str:
    """S3's error code (``NoSuchBucket``), or the HTTP status of a body-less answer."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def brief(exc: BaseException) -> str:
    """``Code: message`` of an S3 answer, else the exception's class and text."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '?')}: {error.get('Message') or 'no message'}"
    return f"{type(exc).__name__}: {exc}"


def explain(what: str, exc: BaseException, attempts: int, bucket: str, endpoint: str) -> str:
    """One line saying why request ``what`` failed for good and what to fix."""
    where = f"bucket {bucket!r} at {endpoint}"
    tries = f" (after {attempts} attempts)" if attempts > 1 else ""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in _MISSING_BUCKET or (what == "head_bucket" and code in NOT_FOUND):
            return f"{where} does not exist: create it or fix storage.s3.bucket"
        if code in DENIED:
            return (
                f"access denied to {where} ({code} on {what}): check the storage.s3 "
                "credentials and the bucket policy"
            )
        if code in _WRONG_REGION:
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            region = headers.get("x-amz-bucket-region")
            actual = f" ({region})" if region else ""
            return f"{where} is in another region{actual}: fix storage.s3.region"
        return f"S3 {what} on {where} failed{tries}: {brief(exc)}"
    if isinstance(exc, BotoCoreError) and "credentials" in type(exc).__name__.lower():
        return (
            "no usable S3 credentials: set storage.s3.access_key_id and "
            f"storage.s3.secret_access_key, or configure the AWS credential chain ({exc})"
        )
    if is_transient(exc):
        return f"cannot reach S3 at {endpoint} ({what}){tries}: {exc}"
    return f"S3 {what} on {where} failed: {exc}"
