"""``streamproc gateway``: build the parts from the settings, start them, serve HTTP.

Start order: Redis (keys, limits, video ids), the result ledger (Redis), the Kafka producer
(which checks that the prompts topic exists), the status reader; then uvicorn. Any of the
first three failing stops the start with one line (exit status 1), before a port is opened.
SIGINT/SIGTERM stop accepting connections, let requests in flight finish (uvicorn's graceful
shutdown, ``SHUTDOWN_GRACE_S``) and close the parts in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from collections.abc import AsyncIterator, Iterator

import structlog
import uvicorn

from streamproc.errors import ConfigError, StreamprocError
from streamproc.gateway.app import Parts, build_app, video_links
from streamproc.gateway.auth import ApiKeys
from streamproc.gateway.http import AccessLog
from streamproc.gateway.limits import RateLimiter
from streamproc.gateway.metrics import GatewayMetrics
from streamproc.gateway.producer import PromptProducer
from streamproc.gateway.redis import GatewayRedis
from streamproc.gateway.status import StatusView
from streamproc.gateway.videos import VideoBook
from streamproc.gateway.webhooks import Webhooks
from streamproc.ledger.redis import RedisLedger
from streamproc.settings import Settings

log = structlog.get_logger(__name__)
#: How long requests in flight may finish after SIGTERM.
SHUTDOWN_GRACE_S = 10.0
#: How far back a starting replica reads the status topic.
STATUS_LOOKBACK_S = 900.0


@contextlib.asynccontextmanager
async def started_parts(settings: Settings) -> AsyncIterator[Parts]:
    """Every part of the gateway, started; closed in reverse order on exit."""
    if settings.ledger_backend != "redis":
        raise ConfigError(
            "the gateway reads answers from the shared result ledger: set ledger.backend to "
            "'redis' (STREAMPROC_LEDGER__BACKEND=redis) here and on the workers"
        )
    tenants = settings.gateway_tenants()
    if not tenants:
        log.warning("gateway_without_tenants", hint="every key is refused: set gateway.tenants")
    gateway = settings.gateway
    client_id = f"streamproc-gateway-{settings.worker_id}"
    async with contextlib.AsyncExitStack() as stack:
        redis = await stack.enter_async_context(
            GatewayRedis(
                settings.gateway_redis_url,
                prefix=gateway.key_prefix,
                timeout_s=gateway.redis_timeout_ms / 1000,
            )
        )
        ledger = await stack.enter_async_context(
            RedisLedger(
                settings.ledger_redis_url,
                prefix=settings.ledger.key_prefix,
                ttl_s=settings.ledger.ttl_s,
                timeout_s=gateway.redis_timeout_ms / 1000,
            )
        )
        producer = await stack.enter_async_context(
            PromptProducer(
                settings.kafka,
                client_id=client_id,
                timeout_s=gateway.produce_timeout_ms / 1000,
                linger_ms=gateway.linger_ms,
            )
        )
        metrics = GatewayMetrics()
        videos = VideoBook(redis, ttl_s=gateway.idempotency_ttl_s)
        secrets = {
            name: limits.webhook_secret
            for name, limits in gateway.tenants.items()
            if limits.webhook_secret is not None
        }
        webhooks = await stack.enter_async_context(
            Webhooks(
                redis,
                ledger,
                videos,
                secrets,
                poll_s=gateway.webhook_poll_s,
                max_attempts=gateway.webhook_max_attempts,
                timeout_s=gateway.webhook_timeout_s,
                ttl_s=gateway.idempotency_ttl_s,
                links=functools.partial(video_links, gateway.public_url or ""),
                on_outcome=lambda tenant, outcome: metrics.webhooks.labels(tenant, outcome).inc(),
            )
        )
        status = await stack.enter_async_context(
            StatusView(
                settings.kafka,
                client_id=client_id,
                lookback_s=STATUS_LOOKBACK_S,
                on_final=webhooks.wake,
            )
        )
        yield Parts(
            settings=gateway,
            limits=settings.event_limits(),
            redis=redis,
            keys=ApiKeys(gateway, redis, tenants),
            limiter=RateLimiter(redis, tenants),
            videos=videos,
            producer=producer,
            ledger=ledger,
            status=status,
            metrics=metrics,
            control_topic=settings.kafka.control_topic,
            webhooks=webhooks,
        )


async def serve(settings: Settings) -> None:
    """Run the gateway until SIGINT/SIGTERM."""
    async with started_parts(settings) as parts:
        app = AccessLog(build_app(parts), parts.metrics, log_prompts=settings.gateway.log_prompts)
        config = uvicorn.Config(
            app,
            host=settings.gateway.host,
            port=settings.gateway.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
            server_header=False,
        )
        server = _Server(config)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.stop_on_signal)
        log.info(
            "gateway_listening",
            host=settings.gateway.host,
            port=settings.gateway.port,
            prompts_topic=parts.producer.topic,
            tenants=len(settings.gateway_tenants()),
        )
        serving = asyncio.create_task(server.serve(), name="gateway-http")
        try:
            # Supervised: the status reader retries outages itself, so its end is a bug;
            # the gateway then stops (exit status 5) rather than serve stale progress.
            watched = {parts.status.task, parts.webhooks.task}
            await asyncio.wait({serving, *watched}, return_when=asyncio.FIRST_COMPLETED)
            crashed = None if serving.done() else next((t for t in watched if t.done()), None)
            if crashed is not None:
                server.should_exit = True
            await serving
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        if crashed is not None:
            error = crashed.exception()
            log.error("task_crashed", task=crashed.get_name(), error=repr(error))
            raise TaskCrashed(f"the gateway's task {crashed.get_name()} crashed: {error!r}")
    log.info("gateway_stopped")


class TaskCrashed(StreamprocError):
    """A supervised task of the gateway ended with an unexpected error (exit status 5)."""


class _Server(uvicorn.Server):
    """uvicorn's server, with the signals left to us: the first SIGINT/SIGTERM drains, a
    second one closes connections at once; the process then exits 0 (uvicorn would re-raise
    the signal and die by it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop_on_signal(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True
        log.info("gateway_stopping")
