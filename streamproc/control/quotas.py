"""Per-tenant limits: events in flight and events per minute, on one worker.

An event over a limit is refused at admission (:class:`~streamproc.errors.EventRefused`,
dead letter ``quota_exceeded``), never deferred: deferring would hold the record uncommitted
and, on a Kafka partition, everything behind it (docs/control.md says why).

Invariants: :meth:`TenantQuotas.acquire` either takes one in-flight slot and one token or
raises and takes nothing; every successful acquire is matched by exactly one
:meth:`TenantQuotas.release` (the processor releases when the record's task ends, whatever
ended it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from streamproc.errors import EventRefused
from streamproc.events import DeadLetterReason
from streamproc.settings import TenantSettings


class TenantQuotas:
    """In-flight counts and token buckets per tenant (None: the anonymous tenant)."""

    def __init__(
        self, settings: TenantSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._in_flight: dict[str | None, int] = {}
        self._buckets: dict[str | None, tuple[float, float]] = {}

    def in_flight(self, tenant: str | None) -> int:
        """Events of ``tenant`` admitted and not yet finished."""
        return self._in_flight.get(tenant, 0)

    def acquire(self, tenant: str | None) -> None:
        """Count one more event of ``tenant``; raises :class:`EventRefused` (reason
        ``quota_exceeded``, the limit in ``detail``) when a limit refuses it."""
        quota = self._settings.quota(tenant)
        who = f"tenant {tenant}" if tenant is not None else "events without a tenant"
        held = self._in_flight.get(tenant, 0)
        if quota.max_in_flight and held >= quota.max_in_flight:
            raise EventRefused(
                DeadLetterReason.QUOTA_EXCEEDED,
                f"in_flight: {who} has {held} events in flight on this worker, the limit is "
                f"{quota.max_in_flight}; send it again later",
            )
        if quota.events_per_minute:
            capacity = max(quota.events_per_minute, 1.0)
            now = self._clock()
            tokens, at = self._buckets.get(tenant, (capacity, now))
            tokens = min(capacity, tokens + (now - at) * quota.events_per_minute / 60.0)
            if tokens < 1.0:
                self._buckets[tenant] = (tokens, now)
                raise EventRefused(
                    DeadLetterReason.QUOTA_EXCEEDED,
                    f"rate: {who} sent more than {quota.events_per_minute:g} events per minute "
                    "to this worker; send it again later",
                )
            self._buckets[tenant] = (tokens - 1.0, now)
        self._in_flight[tenant] = held + 1

    def release(self, tenant: str | None) -> None:
        """One event of ``tenant`` finished (or was abandoned)."""
        held = self._in_flight.get(tenant, 0) - 1
        if held > 0:
            self._in_flight[tenant] = held
        else:
            self._in_flight.pop(tenant, None)
