"""Cancellation: what control events asked to withdraw, remembered for a bounded time.

A cancel names one event (``event_id``) or a tenant (every event of it created, or else
received, up to the cancel's ``issued_at``). The registry answers "is this event cancelled?"
at each checkpoint of the data flow and tells its listeners of every new cancel, so queued
and generating events are reached at once (docs/control.md).

Invariants: the registry holds at most ``max_entries`` event cancels and forgets each after
``memory_s`` (oldest first); :meth:`CancelRegistry.apply` and :meth:`CancelRegistry.match`
never block and never raise for a valid :class:`ControlEvent`; a listener that raises is
logged and does not stop the others.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from streamproc.events import ControlEvent

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Cancel:
    """One remembered cancel."""

    reason: str | None
    #: Unix time the cancel was issued (a tenant cancel covers events up to it).
    issued_at: float
    #: Unix time this worker learned of it (it is forgotten ``memory_s`` later).
    learned_at: float
    event_id: str | None = None
    tenant: str | None = None

    def covers(self, event_id: str, tenant: str | None, event_time: float) -> bool:
        """Whether this cancel withdraws the event ``event_id`` of ``tenant`` made at
        ``event_time`` (Unix time)."""
        if self.event_id is not None:
            return self.event_id == event_id
        return tenant is not None and tenant == self.tenant and event_time <= self.issued_at


Listener = Callable[[Cancel], None]


class CancelRegistry:
    """The cancels this worker knows of."""

    def __init__(
        self, *, memory_s: float, max_entries: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._memory = memory_s
        self._max = max_entries
        self._clock = clock
        self._by_id: OrderedDict[str, Cancel] = OrderedDict()
        self._by_tenant: dict[str, Cancel] = {}
        self._listeners: list[Listener] = []

    def __len__(self) -> int:
        return len(self._by_id) + len(self._by_tenant)

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every cancel applied from now on."""
        self._listeners.append(listener)

    def apply(self, event: ControlEvent, *, record_time: float | None = None) -> Cancel:
        """Remember ``event`` (its ``issued_at``, else ``record_time``, else now) and tell the
        listeners."""
        now = self._clock()
        issued = event.issued_at.timestamp() if event.issued_at is not None else None
        issued = issued if issued is not None else record_time if record_time else now
        cancel = Cancel(event.reason, issued, now, event.event_id, event.tenant)
        if event.event_id is not None:
            self._by_id.pop(event.event_id, None)
            self._by_id[event.event_id] = cancel
        elif event.tenant is not None:
            earlier = self._by_tenant.get(event.tenant)
            if earlier is None or earlier.issued_at <= issued:
                self._by_tenant[event.tenant] = cancel
        self._forget(now)
        for listener in self._listeners:
            try:
                listener(cancel)
            except Exception:  # one listener's bug must not hide the cancel from the others
                log.exception("cancel_listener_failed")
        return cancel

    def match(self, event_id: str, tenant: str | None, event_time: float) -> Cancel | None:
        """The cancel that withdraws this event, if one is remembered."""
        self._forget(self._clock())
        cancel = self._by_id.get(event_id)
        if cancel is not None:
            return cancel
        if tenant is not None:
            bulk = self._by_tenant.get(tenant)
            if bulk is not None and bulk.covers(event_id, tenant, event_time):
                return bulk
        return None

    def _forget(self, now: float) -> None:
        horizon = now - self._memory
        while self._by_id:
            oldest = next(iter(self._by_id.values()))
            if oldest.learned_at >= horizon and len(self._by_id) <= self._max:
                break
            self._by_id.popitem(last=False)
        for tenant in [t for t, c in self._by_tenant.items() if c.learned_at < horizon]:
            del self._by_tenant[tenant]
