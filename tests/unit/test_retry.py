"""The one retry policy: transient errors only, bounded or not, logged and counted."""

from __future__ import annotations

import pytest

from streamproc.errors import RecordRejected, StorageError
from streamproc.metrics import Metrics
from streamproc.retry import RetryPolicy
from streamproc.settings import Settings


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then answers ``"ok"``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def counted(metrics: Metrics, operation: str) -> float:
    return float(metrics.retries.labels(operation)._value.get())


async def test_a_transient_error_is_retried_until_the_call_succeeds() -> None:
    metrics = Metrics()
    policy = RetryPolicy(0.001, 0.002, metrics=metrics)
    op = Flaky(5, StorageError("down"))
    assert await policy.call(op, "store_put") == "ok"
    assert op.calls == 6
    assert counted(metrics, "store_put") == 5


async def test_a_permanent_error_is_raised_at_once() -> None:
    metrics = Metrics()
    op = Flaky(1, RecordRejected("too large", component="store"))
    with pytest.raises(RecordRejected):
        await RetryPolicy(0.001, 0.002, metrics=metrics).call(op, "store_put")
    assert op.calls == 1
    assert counted(metrics, "store_put") == 0


async def test_an_unclassified_exception_is_not_retried() -> None:
    op = Flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await RetryPolicy(0.001, 0.002).call(op, "publish")
    assert op.calls == 1


async def test_a_bounded_policy_raises_the_last_transient_error() -> None:
    op = Flaky(10, StorageError("still down"))
    with pytest.raises(StorageError, match="still down"):
        await RetryPolicy(0.001, 0.002, attempts=3).call(op, "s3_put_object")
    assert op.calls == 3


async def test_the_hook_sees_every_retry_with_its_attempt_number() -> None:
    seen: list[tuple[str, int, str]] = []
    policy = RetryPolicy(0.001, 0.002).hooked(lambda op, n, exc: seen.append((op, n, str(exc))))
    await policy.call(Flaky(2, StorageError("down")), "ledger")
    assert seen == [("ledger", 1, "down"), ("ledger", 2, "down")]


def test_policies_take_their_backoff_from_the_existing_settings() -> None:
    settings = Settings.model_validate(
        {
            "storage": {
                "retry_initial_s": 0.3,
                "retry_max_s": 7.0,
                "s3": {
                    "bucket": "b",
                    "max_attempts": 6,
                    "backoff_initial_s": 0.05,
                    "backoff_max_s": 1.5,
                },
            }
        }
    )
    steps = RetryPolicy.for_steps(settings.storage)
    assert (steps.initial_s, steps.max_s, steps.attempts) == (0.3, 7.0, None)
    s3 = RetryPolicy.for_s3(settings.storage.s3)
    assert (s3.initial_s, s3.max_s, s3.attempts) == (0.05, 1.5, 6)
    reconnect = RetryPolicy.for_reconnect(5.0)
    assert (reconnect.initial_s, reconnect.max_s, reconnect.attempts) == (0.1, 5.0, None)
