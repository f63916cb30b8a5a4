"""How S3 faults are told apart and put into one readable line: the store's seam for errors.

Every failed S3 request ends in :func:`classify`, once; the rest of streamproc sees only
:class:`~streamproc.errors.StorageError` (an outage, retried), :class:`RecordRejected` (this
video cannot be kept) or :class:`ServiceRefused` (the store refuses all work). The table is
in :func:`classify`'s docstring and in ``docs/storage.md``. Messages never contain credentials.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ChecksumError,
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from streamproc.errors import RecordRejected, ServiceRefused, StorageError

#: The component named by the permanent errors of the store.
COMPONENT = "store"

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
        "AccountProblem",
        "AllAccessDisabled",
        "ExpiredToken",
        "Forbidden",
        "InvalidAccessKeyId",
        "InvalidToken",
        "NotSignedUp",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
    }
)
#: Codes of a missing object (or, for HEAD, a missing bucket: HEAD answers have no body).
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
#: Codes of a request refused for this object only: other videos can still be stored.
REJECTED = frozenset({"EntityTooLarge", "MaxMessageLengthExceeded", "MetadataTooLarge"})
#: Codes after which the same put, started again from scratch, may succeed (an upload
#: aborted under us, bytes damaged on the way): not retried inside the store, but by the
#: processor, which runs the whole put again.
REDO = frozenset(
    {
        "BadDigest",
        "InvalidDigest",
        "InvalidPart",
        "InvalidPartOrder",
        "NoSuchUpload",
        "XAmzContentSHA256Mismatch",
    }
)
#: Features this server lacks (a 501 that retrying cannot mend), e.g. the CRC32 checksum
#: headers on some S3-compatible servers.
UNSUPPORTED = frozenset({"NotImplemented"})
_MISSING_BUCKET = frozenset({"NoSuchBucket"})
_CLOCK = frozenset({"RequestTimeTooSkewed"})
_WRONG_REGION = frozenset({"301", "AuthorizationHeaderMalformed", "PermanentRedirect"})


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the request that raised ``exc`` soon may succeed (the store's own
    attempts): connection errors, timeouts, HTTP 5xx and 429, throttling codes."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in TRANSIENT_CODES:
            return True
        if code in UNSUPPORTED:
            return False
        status = _status(exc)
        return status >= 500 or status == 429
    if isinstance(exc, SSLError):
        return False  # a certificate problem does not heal within seconds
    return isinstance(
        exc,
        BotoConnectionError
        | HTTPClientError
        | IncompleteReadError
        | ChecksumError
        | FlexibleChecksumError
        | OSError
        | TimeoutError,
    )


def classify(
    what: str, exc: BaseException, attempts: int, bucket: str, endpoint: str
) -> StorageError | RecordRejected | ServiceRefused:
    """The one error a request ``what`` that failed for good with ``exc`` becomes.

    ====================================================  ===================  ===============
    the request failed with                               becomes              then
    ====================================================  ===================  ===============
    connection error, timeout, HTTP 5xx or 429,           ``StorageError``     retried (store,
    throttling code (``SlowDown``, ``RequestTimeout``…)   after the store's    then processor)
                                                          attempts
    ``NoSuchUpload``, ``InvalidPart``, ``BadDigest``…     ``StorageError``     the put runs
    (this upload went wrong, a new one may not)           at once              again
    ``EntityTooLarge``, ``MetadataTooLarge``,             ``RecordRejected``   the record
    ``MaxMessageLengthExceeded``                          at once              dead-letters
    ``AccessDenied``, 403, ``InvalidAccessKeyId``,        ``ServiceRefused``   the worker
    ``SignatureDoesNotMatch``, ``ExpiredToken``,          at once              faults (exits
    ``RequestTimeTooSkewed``…; ``NoSuchBucket`` (or 404                        at start)
    on ``head_bucket``); wrong region (301,
    ``PermanentRedirect``…); ``NotImplemented`` (501);
    missing credentials; a TLS certificate refused;
    any other 4xx code
    ====================================================  ===================  ===============

    An unknown 4xx code counts as refused: S3 answered, and asking again will not change
    its mind; a fault is visible where an endless retry would only hold the partition.
    """
    message = explain(what, exc, attempts, bucket, endpoint)
    if is_transient(exc):
        return StorageError(message)
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in REDO:
            return StorageError(message)
        if code in REJECTED:
            return RecordRejected(message, component=COMPONENT)
    return ServiceRefused(message, component=COMPONENT)


def error_code(exc: ClientError) -> str:
    """S3's error code (``NoSuchBucket``), or the HTTP status of a body-less answer."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


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
        if code in _CLOCK:
            return (
                f"S3 at {endpoint} refuses requests signed with this host's clock ({code} on "
                f"{what}): synchronise the clock (NTP)"
            )
        if code in UNSUPPORTED:
            return (
                f"S3 at {endpoint} does not support {what} as sent ({brief(exc)}): for an "
                "S3-compatible server try storage.s3.checksums = 'when_required'"
            )
        if code in REJECTED:
            return f"S3 refused this object in {where} ({what}): {brief(exc)}"
        return f"S3 {what} on {where} failed{tries}: {brief(exc)}"
    if isinstance(exc, BotoCoreError) and _about_credentials(exc):
        return (
            "no usable S3 credentials: set storage.s3.access_key_id and "
            f"storage.s3.secret_access_key, or configure the AWS credential chain ({exc})"
        )
    if isinstance(exc, SSLError):
        return f"TLS to S3 at {endpoint} failed ({what}): {exc}"
    if is_transient(exc):
        return f"cannot reach S3 at {endpoint} ({what}){tries}: {exc}"
    return f"S3 {what} on {where} failed: {exc}"


def _about_credentials(exc: BotoCoreError) -> bool:
    name = type(exc).__name__.lower()
    return "credential" in name or "token" in name
