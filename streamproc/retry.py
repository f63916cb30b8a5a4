"""The worker's one retry policy, built on tenacity.

Every retry in streamproc goes through :class:`RetryPolicy`: it retries a
:class:`~streamproc.errors.TransientError` (an outage) and nothing else, waits with exponential
backoff and full jitter (attempt *n* waits ``uniform(0, min(max_s, initial_s * 2**(n-1)))``, so
workers that met the same outage do not retry in step), logs each retry as ``retrying`` and
counts it in ``streamproc_retries_total{operation}``. A :class:`~streamproc.errors.PermanentError`
or any other exception passes through at once.

The parameters come from the existing settings, each read in one constructor here:

====================  =====================================  ===========================
policy                backoff                                attempts
====================  =====================================  ===========================
:meth:`for_steps`     ``storage.retry_initial_s`` …          until the step succeeds or
                      ``storage.retry_max_s``                is cancelled (shutdown grace,
                                                             revoked partition)
:meth:`for_s3`        ``storage.s3.backoff_initial_s`` …     ``storage.s3.max_attempts``
                      ``storage.s3.backoff_max_s``           per request
:meth:`for_reconnect`  0.1 s … ``max_s`` (Redis: 5 s)         until it succeeds
====================  =====================================  ===========================

The client libraries' own retries are off, here and nowhere else, so an attempt is one request
and every retry is visible once (in this policy's log line and metric):
:data:`BOTOCORE_RETRIES` (botocore would otherwise retry each call up to 5 times, unlogged,
inside one of our attempts) and :func:`redis_no_retry` (redis-py retries a failed command on a
new connection by default, which would stretch ``op_timeout_s`` and hide outages).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_random_exponential,
)

from streamproc.errors import ServiceRefused, TransientError

if TYPE_CHECKING:
    from redis.asyncio.retry import Retry

    from streamproc.metrics import Metrics
    from streamproc.settings import S3Settings, StorageSettings

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: botocore's retry configuration: one attempt per call (the policy retries, bounded and logged).
BOTOCORE_RETRIES: dict[str, Any] = {"total_max_attempts": 1}

#: Called before the policy sleeps: the operation, the attempt that failed (1-based), its error.
RetryHook = Callable[[str, int, BaseException], None]


async def redis_call(call: Awaitable[T], *, service: str, refused: str, component: str) -> T:
    """Await one Redis call of ``service`` (e.g. "the result ledger at HOST:PORT"), its failure
    classified once for every Redis client: a failover's read-only replica, a full server, a
    lost connection or a timeout may heal (:class:`TransientError`: retried by the policy); a
    refused login, a missing permission or a rejected command will not
    (:class:`ServiceRefused` for ``component``, "``service`` refused ``refused``")."""
    from redis.exceptions import (
        AuthenticationError,
        AuthorizationError,
        OutOfMemoryError,
        ReadOnlyError,
        RedisError,
        ResponseError,
    )

    try:
        return await call
    except (ReadOnlyError, OutOfMemoryError) as exc:
        raise TransientError(f"{service}: {exc}") from None
    except (AuthenticationError, AuthorizationError, ResponseError) as exc:
        raise ServiceRefused(f"{service} refused {refused}: {exc}", component=component) from None
    except (RedisError, OSError, TimeoutError) as exc:
        raise TransientError(
            f"{service} did not answer: {type(exc).__name__}: {exc}".rstrip(": ")
        ) from None


def redis_no_retry() -> Retry:
    """redis-py's retry object for every client: no retries inside a command."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Retry(NoBackoff(), 0)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter over :class:`TransientError`, logged and counted."""

    initial_s: float
    max_s: float
    #: Attempts in all (the first included); None retries until success or cancellation.
    attempts: int | None = None
    metrics: Metrics | None = None
    #: Extra bookkeeping per retry (a component's own counters).
    on_retry: RetryHook | None = None
    #: Log retries at debug level: background reconnects, whose outage is logged once by
    #: their owner instead of at every attempt.
    quiet: bool = False

    @classmethod
    def for_steps(cls, storage: StorageSettings, metrics: Metrics | None = None) -> RetryPolicy:
        """The processor stages' durable steps (store, publish, dead letter, ledger): retried
        for as long as the worker runs; the record stays unfinished meanwhile."""
        return cls(storage.retry_initial_s, storage.retry_max_s, None, metrics)

    @classmethod
    def for_s3(cls, s3: S3Settings, metrics: Metrics | None = None) -> RetryPolicy:
        """One S3 request: ``storage.s3.max_attempts`` attempts, then the error goes up."""
        return cls(s3.backoff_initial_s, s3.backoff_max_s, s3.max_attempts, metrics)

    @classmethod
    def for_reconnect(cls, max_s: float, metrics: Metrics | None = None) -> RetryPolicy:
        """A background connection (Redis follower, Kafka poll) coming back after an outage."""
        return cls(min(0.1, max_s), max_s, None, metrics, quiet=True)

    def hooked(self, on_retry: RetryHook) -> RetryPolicy:
        """This policy, also calling ``on_retry`` before each retry's sleep."""
        return replace(self, on_retry=on_retry)

    def attempts_of(self, operation: str) -> AsyncRetrying:
        """tenacity's attempt iterator for ``operation`` (``async for attempt in …: with
        attempt: …``), for callers that need the attempt number; else use :meth:`call`."""
        return AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_random_exponential(multiplier=self.initial_s, max=self.max_s),
            stop=stop_never if self.attempts is None else stop_after_attempt(self.attempts),
            before_sleep=lambda state: self._retrying(operation, state),
            reraise=True,
        )

    async def call(self, op: Callable[[], Awaitable[T]], operation: str) -> T:
        """Run ``op`` until it returns; a :class:`TransientError` backs off and tries again
        (at most :attr:`attempts` times, then it is raised); anything else is raised at once."""
        async for attempt in self.attempts_of(operation):
            with attempt:
                return await op()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _retrying(self, operation: str, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        assert error is not None  # before_sleep runs after a failed attempt only
        delay = state.upcoming_sleep
        emit = log.debug if self.quiet else log.warning
        emit(
            "retrying",
            operation=operation,
            attempt=state.attempt_number,
            delay_s=round(delay, 3),
            error=str(error)[:300],
        )
        if self.metrics is not None:
            self.metrics.retries.labels(operation).inc()
        if self.on_retry is not None:
            self.on_retry(operation, state.attempt_number, error)
