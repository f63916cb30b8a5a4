"""Builds every component from the settings and runs a worker.

This is the one place that chooses implementations; tests pass their own components in.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack

import structlog

from streamproc.bus.base import Sink, Source
from streamproc.bus.kafka_sink import KafkaSink
from streamproc.bus.kafka_source import KafkaSource
from streamproc.bus.local import JsonlSink, JsonlSource
from streamproc.cache.base import Cache
from streamproc.cache.null import NullCache
from streamproc.control.plane import build_control_plane
from streamproc.errors import ConfigError, TransientError
from streamproc.generation.base import Generator, ReportsBatchSizes, ReportsStartup
from streamproc.generation.encode import EncoderPool
from streamproc.health import Check, OpsServer, Readiness, readiness_of
from streamproc.ledger.base import ResultLedger
from streamproc.metrics import GpuProbe, Metrics
from streamproc.processor import Processor, ProcessorObserver, RunSummary
from streamproc.settings import Settings
from streamproc.storage.base import CheckableStore, ObjectStore
from streamproc.storage.local import LocalObjectStore

log = structlog.get_logger(__name__)


def build_source(settings: Settings, metrics: Metrics | None = None) -> Source:
    """The configured source of prompt records."""
    if settings.transport == "kafka":
        return KafkaSource(settings.kafka, client_id=settings.worker_id, metrics=metrics)
    if settings.local.input is None:
        raise ConfigError("no input: pass --input FILE (or '-' for stdin)")
    return JsonlSource(settings.local.input, max_record_bytes=settings.local.max_record_bytes)


def build_sink(settings: Settings) -> Sink:
    """The configured sink for results and dead letters."""
    if settings.transport == "kafka":
        return KafkaSink(settings.kafka, client_id=settings.worker_id)
    return JsonlSink(settings.local.results, settings.local.dead_letters)


def build_store(settings: Settings, metrics: Metrics | None = None) -> CheckableStore:
    """The configured object store (S3's is an async context manager: enter it first)."""
    if settings.storage.backend == "s3":
        # Imported here, as are the cache's backends below: a worker that does not use them
        # starts without loading boto, FAISS, Redis or sentence-transformers.
        from streamproc.storage.s3 import S3ObjectStore

        return S3ObjectStore(settings.storage.s3, metrics=metrics)
    return LocalObjectStore(settings.storage.local_dir)


def build_cache(settings: Settings, metrics: Metrics | None = None) -> Cache:
    """The configured cache: the semantic cache, in process or shared through Redis.

    Loads the embedding model (blocking: about a second for MiniLM).
    """
    config = settings.cache
    if config.backend == "none":
        return NullCache()
    from streamproc.cache.embedder import BatchingEmbedder, SentenceTransformerEncoder
    from streamproc.cache.guard import HitPolicy
    from streamproc.cache.memory import MemoryStore
    from streamproc.cache.redis_store import RedisStore, namespace_for
    from streamproc.cache.semantic import SemanticCache

    encoder = SentenceTransformerEncoder(
        config.embedder_model,
        device=config.embedder_device,
        max_seq_length=config.embed_max_tokens,
        threads=config.embedder_threads,
    )
    shared = None
    if config.backend == "redis":
        shared = RedisStore(
            config.redis_url.get_secret_value(),
            namespace=namespace_for(config.key_prefix, encoder.name, encoder.dimension),
            op_timeout_s=config.redis_timeout_ms / 1000.0,
            start_timeout_s=config.redis_start_timeout_ms / 1000.0,
            stream_max_len=config.redis_stream_max_len,
            max_pending=config.redis_max_pending,
            degrade_at_start=config.degrade_at_start,
            metrics=metrics,
        )
    return SemanticCache(
        BatchingEmbedder(
            encoder, max_batch=config.embed_batch_size, window_s=config.embed_window_ms / 1000.0
        ),
        store=MemoryStore(
            encoder.dimension, max_entries=config.max_entries, ivf_from=config.ivf_from_entries
        ),
        shared=shared,
        policy=HitPolicy.from_settings(config),
        ttl_s=config.ttl_s,
        refresh_ttl_on_hit=config.refresh_ttl_on_hit,
        candidates=config.candidates,
        lookup_timeout_s=config.lookup_timeout_ms / 1000.0,
        sweep_interval_s=config.sweep_interval_s,
    )


async def check_cache(settings: Settings) -> None:
    """Fail fast when the shared cache must answer at start and does not (one PING, within
    ``cache.redis_start_timeout_ms`` per step); nothing to do for other caches or when degrading."""
    config = settings.cache
    if config.backend != "redis" or config.degrade_at_start:
        return
    from streamproc.cache.redis_store import check_reachable

    await check_reachable(
        config.redis_url.get_secret_value(), timeout_s=config.redis_start_timeout_ms / 1000.0
    )


def build_generator(settings: Settings) -> Generator:
    """The configured video generator."""
    # Imported here: torch and diffusers take seconds to load, and commands such as
    # `storage check` build other components only.
    from streamproc.generation.wan import WanGenerator

    if settings.generation.gpus_per_worker > 1:
        from streamproc.generation.parallel import ContextParallelGenerator

        return ContextParallelGenerator(
            settings.generation, max_batch_size=settings.batch.max_batch_size, batch=settings.batch
        )
    return WanGenerator(
        settings.generation, max_batch_size=settings.batch.max_batch_size, batch=settings.batch
    )


def build_ledger(settings: Settings) -> ResultLedger | None:
    """The configured result ledger (None: ``ledger.backend = "none"``)."""
    backend = settings.ledger_backend
    if backend == "none":
        return None
    if backend == "redis":
        from streamproc.ledger.redis import RedisLedger

        return RedisLedger(
            settings.ledger_redis_url,
            prefix=settings.ledger.key_prefix,
            ttl_s=settings.ledger.ttl_s,
            timeout_s=max(settings.cache.redis_timeout_ms / 1000.0, 1.0),
            start_timeout_s=settings.cache.redis_start_timeout_ms / 1000.0,
        )
    from streamproc.ledger.sqlite import SqliteLedger

    return SqliteLedger(settings.ledger_path, ttl_s=settings.ledger.ttl_s)


async def start_ledger(settings: Settings, stack: AsyncExitStack) -> ResultLedger | None:
    """Build and start the configured ledger (stopped by ``stack``), before the model loads:
    one that cannot answer ends the start at once. With ``ledger.backend = auto`` and
    ``cache.degrade_at_start``, an unreachable Redis falls back to this machine's SQLite
    ledger, as the cache falls back to this worker's entries."""
    ledger = build_ledger(settings)
    if ledger is None:
        return None
    stack.push_async_callback(ledger.stop)  # idempotent: also undoes a failed start
    try:
        await ledger.start()
    except TransientError as exc:
        if settings.ledger.backend != "auto" or not settings.cache.degrade_at_start:
            raise
        from streamproc.ledger.sqlite import SqliteLedger

        log.warning("ledger_degraded", error=str(exc), path=str(settings.ledger_path))
        ledger = SqliteLedger(settings.ledger_path, ttl_s=settings.ledger.ttl_s)
        stack.push_async_callback(ledger.stop)
        await ledger.start()
    return ledger


async def run_worker(
    settings: Settings,
    *,
    source: Source | None = None,
    sink: Sink | None = None,
    store: ObjectStore | None = None,
    cache: Cache | None = None,
    generator: Generator | None = None,
    observers: Sequence[ProcessorObserver] = (),
    handle_signals: bool = True,
    replay_id: str | None = None,
    metrics: Metrics | None = None,
    encoder: EncoderPool | None = None,
    ledger: ResultLedger | None = None,
    reprocess: bool = False,
    skip_answered: bool = False,
) -> RunSummary:
    """Start everything, process until the input ends or SIGINT/SIGTERM, drain, stop.

    ``ledger`` defaults to the configured one (``ledger.backend``); ``reprocess`` and
    ``skip_answered`` are explained at :class:`~streamproc.processor.Processor`.
    ``replay_id`` marks the results as made by a replay (``streamproc replay``). The
    operations server (``/metrics``, ``/healthz``, ``/readyz``) starts first, so probes
    answer while the model loads; ``/readyz`` passes once every component below is up.
    """
    metrics = metrics if metrics is not None else Metrics()
    readiness = Readiness()
    model_ready = readiness.add_flag("model", "model not loaded and warmed up yet")
    async with AsyncExitStack() as stack:
        if settings.metrics.enabled:
            await stack.enter_async_context(
                OpsServer(
                    metrics,
                    readiness,
                    host=settings.metrics.host,
                    port=settings.metrics.port,
                    # A local run beside another must not fail on the default port; a port
                    # someone chose (flag, environment, file) and any Kafka worker's must hold.
                    fallback=settings.transport == "local"
                    and "port" not in settings.metrics.model_fields_set,
                )
            )
        store = store if store is not None else build_store(settings, metrics)
        if isinstance(store, AbstractAsyncContextManager):
            # First: a store that cannot be used fails the start before the model loads.
            await stack.enter_async_context(store)
        readiness.add("store", readiness_of(store, "embedded store"))
        if cache is None:
            # Before the model loads too: a Redis that must answer and does not ends the start
            # in milliseconds, not after minutes of loading (the cache's own start checks again).
            await check_cache(settings)
        if ledger is None:
            ledger = await start_ledger(settings, stack)
        else:
            stack.push_async_callback(ledger.stop)
            await ledger.start()
        if generator is None:
            # Off the loop: importing torch and diffusers takes seconds, and probes must answer.
            generator = await asyncio.to_thread(build_generator, settings)
        await generator.start()
        stack.push_async_callback(generator.stop)
        if isinstance(generator, ReportsBatchSizes):
            metrics.batch_sizes(generator.chosen_batch_sizes, generator.batch_throughput)
        _watch_gpu(settings, metrics, stack)
        sink = await stack.enter_async_context(sink if sink is not None else build_sink(settings))
        source = await stack.enter_async_context(
            source if source is not None else build_source(settings, metrics)
        )
        readiness.add("broker", readiness_of(source, "embedded transport"))
        if cache is None:
            cache = await asyncio.to_thread(build_cache, settings, metrics)
        stack.push_async_callback(cache.stop)  # idempotent: also undoes a failed start
        await cache.start()
        readiness.add("cache", readiness_of(cache, "in-process cache"))
        # Status output and control input: best effort beside the data path (docs/control.md).
        control = await stack.enter_async_context(
            build_control_plane(settings, metrics, replay=replay_id is not None)
        )
        processor = Processor(
            settings,
            source=source,
            sink=sink,
            store=store,
            generator=generator,
            cache=cache,
            observers=observers,
            replay_id=replay_id,
            metrics=metrics,
            encoder=encoder,
            ledger=ledger,
            reprocess=reprocess,
            skip_answered=skip_answered,
            control=control,
        )
        readiness.add("worker", _health_of(processor))
        # Warm-up ran in generator.start(); every other component is up by now.
        model_ready(
            True, generator.startup_detail if isinstance(generator, ReportsStartup) else "ok"
        )
        metrics.model_loaded.set(1)
        stack.callback(metrics.model_loaded.set, 0)
        stack.callback(model_ready, False)
        if handle_signals:
            _install_signal_handlers(processor, stack)
        log.info("worker_started", worker_id=settings.worker_id, model_id=generator.model_id)
        summary = await processor.run()
        log.info(
            "worker_stopped",
            received=summary.received,
            **{k.value.replace("-", "_"): v for k, v in summary.outcomes.items()},
            batches=summary.batches,
            abandoned=summary.abandoned,
            faulted=summary.faulted,
            crashed=summary.crashed,
            exit_status=summary.exit_status,
        )
        return summary


def _health_of(processor: Processor) -> Check:
    async def check() -> tuple[bool, str]:
        return processor.healthy

    return check


def _watch_gpu(settings: Settings, metrics: Metrics, stack: AsyncExitStack) -> None:
    """Export GPU memory (and utilisation) when the model runs on CUDA."""
    if GpuProbe.available(settings.generation.device):
        probe = GpuProbe(metrics, settings.generation.device)
        stack.callback(metrics.add_refresher(probe.refresh))


def _install_signal_handlers(processor: Processor, stack: AsyncExitStack) -> None:
    loop = asyncio.get_running_loop()
    count = 0

    def on_signal(signame: str) -> None:
        nonlocal count
        count += 1
        log.info("signal_received", signal=signame, count=count)
        # A second signal abandons in-flight work (it stays uncommitted and is re-delivered).
        processor.request_stop(force=count > 1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig.name)

            def remove(s: signal.Signals = sig) -> None:
                loop.remove_signal_handler(s)

            stack.callback(remove)
