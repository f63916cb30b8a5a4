"""Route: in a mixed fleet, hand clips above a size to the context-parallel lane.

A one-GPU worker with ``routing.large_above_tokens`` set forwards each admitted event whose
clip has more latent tokens than that — after the ledger (an event answered before is
answered again here) and the cache (a hit costs no GPU) — to ``routing.large_topic``, the
prompts topic of the workers that split one video over several GPUs.

Failure policy: the forward is a durable produce (acknowledged by the brokers, as results
are) retried like a publish while it is transient; the record is finished (its offset may
be committed) only once the forward returned, so a crash before that delivers it again and
it is forwarded again (the large lane's ledger answers a copy with the same result). A
permanent refusal (missing topic, no authorisation) faults the worker like any sink refusal.
"""

from __future__ import annotations

import time

import structlog

from streamproc.batching import ShapeKey
from streamproc.bus.base import Record, Sink
from streamproc.generation.memory import latent_tokens
from streamproc.outcome import Outcome
from streamproc.retry import RetryPolicy
from streamproc.settings import RoutingSettings
from streamproc.stages.base import StageClock

log = structlog.get_logger(__name__)


class Route:
    """The routing stage (inert unless ``routing.large_above_tokens`` is set)."""

    def __init__(
        self, settings: RoutingSettings, sink: Sink, retries: RetryPolicy, clock: StageClock
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._retries = retries
        self._clock = clock

    def elsewhere(self, shape: ShapeKey) -> bool:
        """Whether clips of ``shape`` belong to the large-clip lane."""
        limit = self._settings.large_above_tokens
        return limit is not None and latent_tokens(shape) > limit

    async def forward(self, record: Record, shape: ShapeKey) -> Outcome:
        """Forward ``record`` durably; its outcome once the brokers hold it."""
        started = time.perf_counter()
        topic = self._settings.large_topic
        await self._retries.call(lambda: self._sink.forward(record, topic), "forward")
        self._clock("forward", time.perf_counter() - started)
        log.info("event_forwarded", to_topic=topic, tokens=latent_tokens(shape))
        return Outcome.FORWARDED
