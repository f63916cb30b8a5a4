"""Prometheus metrics of one worker, in a registry of its own.

The app builds one :class:`Metrics` from the settings and hands it to the components through
their constructors; a component built without one gets a private, unexported instance, so
instrumentation never needs an ``if``. Names start with ``streamproc_`` and carry their unit;
labels are low-cardinality (outcome, stage, operation, topic, partition), never an event id
or a prompt. ``docs/operations.md`` lists every metric and what it means.

Some values are read when Prometheus scrapes rather than pushed as they change: the GPU
memory (``torch.cuda``), the consumer lag of the Kafka source and the commit watermark of the
processor. Their owners register a *refresher* (:meth:`Metrics.add_refresher`) that the HTTP
server awaits before it renders ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

if TYPE_CHECKING:
    from streamproc.bus.base import Partition

log = structlog.get_logger(__name__)

Refresher = Callable[[], Awaitable[None]]
"""Updates scrape-time gauges; awaited before every ``/metrics`` render."""

#: End-to-end latency runs from sub-second cache hits to minutes of GPU queueing.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)
SIMILARITY_BUCKETS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99, 1.0)

#: Outcomes of a record (the values of :class:`streamproc.processor.Outcome`).
OUTCOMES = (
    "hit-exact",
    "hit-semantic",
    "generated",
    "dead-lettered",
    "failed",
    "already-answered",
    "cancelled",
)
#: Most distinct tenant label values; later tenants are counted under ``other`` (labels
#: stay low-cardinality however many tenants send events).
MAX_TENANT_LABELS = 50
#: Stages timed per event (cache_lookup, mp4_encode, store, publish) and per
#: batch (text_encode, denoise, vae_decode, as the generator reports them).
STAGES = (
    "cache_lookup",
    "text_encode",
    "denoise",
    "vae_decode",
    "mp4_encode",
    "store",
    "publish",
)


@dataclass(frozen=True)
class MetricInfo:
    """One metric as exported: its name, type, help text and label names."""

    name: str
    kind: str
    help: str
    labels: tuple[str, ...]

    @property
    def series_names(self) -> tuple[str, ...]:
        """The sample names Prometheus stores (what PromQL queries name)."""
        if self.kind == "counter":
            return (f"{self.name}_total",)
        if self.kind == "histogram":
            return tuple(f"{self.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
        return (self.name,)


class Metrics:
    """Every metric of a worker; ``registry`` is what ``/metrics`` exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._refreshers: list[Refresher] = []
        self._partition_labels: dict[int, set[tuple[str, str]]] = {}
        self._lookups = 0
        self._hits = 0
        r = self.registry
        self.events_received = Counter(
            "streamproc_events_received", "Records admitted from the source.", registry=r
        )
        self.events_finished = Counter(
            "streamproc_events_finished",
            "Records whose outcome is durable, by outcome.",
            ["outcome"],
            registry=r,
        )
        for outcome in OUTCOMES:
            self.events_finished.labels(outcome)
        self.events_abandoned = Counter(
            "streamproc_events_abandoned",
            "Records left unfinished (uncommitted, so delivered again): stopped before they "
            "finished, partition revoked, or held by a permanent fault.",
            registry=r,
        )
        self.redeliveries = Counter(
            "streamproc_redeliveries",
            "Events delivered again and answered from the result ledger (no cache lookup, no "
            "generation).",
            registry=r,
        )
        self.dead_letters = Counter(
            "streamproc_dead_letters",
            "Dead letters published, by reason.",
            ["reason"],
            registry=r,
        )
        self.faults = Counter(
            "streamproc_permanent_faults",
            "Permanent faults (a service refused this worker for good), by component; the "
            "worker stops faults.exit_after_s later.",
            ["component"],
            registry=r,
        )
        self.task_crashes = Counter(
            "streamproc_task_crashes",
            "Supervised tasks (input, gpu loop, batch runner, commit loop) that crashed.",
            ["task"],
            registry=r,
        )
        self.events_in_flight = Gauge(
            "streamproc_events_in_flight", "Records admitted but not finished.", registry=r
        )
        self.end_to_end_latency = Histogram(
            "streamproc_end_to_end_latency_seconds",
            "From the event's timestamp (created_at, else the record's, else admission) to "
            "its result or dead letter being published, by outcome.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_duration = Histogram(
            "streamproc_stage_duration_seconds",
            "Time spent per stage (per event, or per batch for the generator's stages).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "streamproc_batch_size",
            "Videos per pipeline call.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batches = Counter("streamproc_batches", "Pipeline calls started.", registry=r)
        self.batcher_queue_depth = Gauge(
            "streamproc_batcher_queue_depth",
            "Cache misses waiting in the micro-batcher.",
            registry=r,
        )
        self.batcher_wait = Histogram(
            "streamproc_batcher_wait_seconds",
            "From joining the micro-batcher to the batch being handed to the generator.",
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "streamproc_queue_depth",
            "Events waiting for the GPU, per priority lane and tenant ('-': no tenant; "
            "'other': beyond the first 50 tenants seen).",
            ["lane", "tenant"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "streamproc_queue_wait_seconds",
            "From joining the queue to the batch being handed to the generator, per lane and "
            "tenant.",
            ["lane", "tenant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cancellations = Counter(
            "streamproc_cancellations",
            "Events ended by a cancel, by where the cancel found them (admission, queued, "
            "generating, generated: after its batch, before storing).",
            ["stage"],
            registry=r,
        )
        self.expirations = Counter(
            "streamproc_expirations",
            "Events dead-lettered as expired (control.max_event_age_s), by stage (admission, "
            "generation).",
            ["stage"],
            registry=r,
        )
        self.quota_rejections = Counter(
            "streamproc_quota_rejections",
            "Events dead-lettered as quota_exceeded, by limit (in_flight, rate).",
            ["limit"],
            registry=r,
        )
        self.control_events = Counter(
            "streamproc_control_events",
            "Control events read, by result (applied, invalid).",
            ["result"],
            registry=r,
        )
        self.status_sent = Counter(
            "streamproc_status_sent", "Status events handed to the status sink.", registry=r
        )
        self.status_dropped = Counter(
            "streamproc_status_dropped",
            "Status events dropped (buffer full, or the sink failed): status is best effort.",
            registry=r,
        )
        self._tenant_labels: set[str] = set()
        self.videos_generated = Counter(
            "streamproc_videos_generated",
            "Videos the generator produced (rate() of it is videos/s).",
            registry=r,
        )
        self.cache_lookups = Counter(
            "streamproc_cache_lookups",
            "Cache lookups of reuse-mode events, by result (hit-exact, hit-semantic, miss).",
            ["result"],
            registry=r,
        )
        for result in ("hit-exact", "hit-semantic", "miss"):
            self.cache_lookups.labels(result)
        self.cache_hit_ratio = Gauge(
            "streamproc_cache_hit_ratio",
            "Share of cache lookups answered from the cache since the worker started.",
            registry=r,
        )
        self.cache_similarity = Histogram(
            "streamproc_cache_similarity",
            "Cosine similarity of the cache hits (1.0 for exact hits).",
            buckets=SIMILARITY_BUCKETS,
            registry=r,
        )
        self.gpu_memory_used = Gauge(
            "streamproc_gpu_memory_used_bytes",
            "GPU memory held by tensors now (torch.cuda.memory_allocated); CUDA only.",
            ["device"],
            registry=r,
        )
        self.gpu_memory_peak = Gauge(
            "streamproc_gpu_memory_peak_bytes",
            "Peak GPU memory held by tensors since start (torch.cuda.max_memory_allocated).",
            ["device"],
            registry=r,
        )
        self.gpu_utilization = Gauge(
            "streamproc_gpu_utilization_ratio",
            "GPU busy share over the last sample period (NVML); CUDA with pynvml only.",
            ["device"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "streamproc_consumer_lag_records",
            "Records in the partition beyond the consumer's position (high watermark - position).",
            ["topic", "partition"],
            registry=r,
        )
        self.high_watermark = Gauge(
            "streamproc_partition_high_watermark",
            "Offset one past the last record of the partition, as last fetched.",
            ["topic", "partition"],
            registry=r,
        )
        self.committed_offset = Gauge(
            "streamproc_committed_offset",
            "Commit watermark: the position committed for the partition (every offset below "
            "it is finished).",
            ["topic", "partition"],
            registry=r,
        )
        self.commits = Counter(
            "streamproc_commits", "Offset commits, by result (ok, failed).", ["result"], registry=r
        )
        self.retries = Counter(
            "streamproc_retries",
            "Retries of the worker's one retry policy (transient errors), by operation: "
            "store_put, publish, ledger, s3_<request>, redis_reconnect, kafka_poll, ...",
            ["operation"],
            registry=r,
        )
        self.redis_errors = Counter(
            "streamproc_redis_errors",
            "Failed Redis operations of the shared cache store, by operation (connect, "
            "write, query, gc, rejected).",
            ["operation"],
            registry=r,
        )
        self.redis_retries = Counter(
            "streamproc_redis_retries",
            "Redis reconnect attempts and re-queued write batches, by operation.",
            ["operation"],
            registry=r,
        )
        self.redis_dropped_writes = Counter(
            "streamproc_redis_dropped_writes",
            "Queued cache writes dropped because Redis stayed unreachable too long.",
            registry=r,
        )
        self.redis_up = Gauge(
            "streamproc_redis_up", "1 while the shared cache store answers.", registry=r
        )
        self.s3_errors = Counter(
            "streamproc_s3_errors",
            "S3 requests that failed for good (after their retries), by operation.",
            ["operation"],
            registry=r,
        )
        self.s3_retries = Counter(
            "streamproc_s3_retries",
            "S3 requests retried after a transient fault, by operation.",
            ["operation"],
            registry=r,
        )
        self.ready = Gauge(
            "streamproc_ready", "1 while /readyz answers 200 (as of the last probe).", registry=r
        )
        self.model_loaded = Gauge(
            "streamproc_model_loaded", "1 once the model is loaded and warmed up.", registry=r
        )
        self.batch_size_chosen = Gauge(
            "streamproc_batch_size_chosen",
            "Batch size the throughput policy chose at warm-up, per shape "
            "(WIDTHxHEIGHTxFRAMES/cfg|nocfg); absent with batch.size_policy 'largest'.",
            ["shape"],
            registry=r,
        )
        self.batch_throughput = Gauge(
            "streamproc_batch_throughput_videos_per_second",
            "Videos per second of one call of each batch size, per shape, as measured at "
            "warm-up (or read from batch.throughput_file).",
            ["shape", "batch_size"],
            registry=r,
        )

    def catalogue(self) -> list[MetricInfo]:
        """Every metric this class exports, in definition order."""
        return [
            MetricInfo(m._name, str(m._type), m._documentation, tuple(m._labelnames))
            for m in vars(self).values()
            if isinstance(m, MetricWrapperBase)
        ]

    # -- recording helpers ------------------------------------------------------------------

    def cache_lookup(self, result: str, similarity: float | None) -> None:
        """Count a lookup (``hit-exact``, ``hit-semantic`` or ``miss``) and update the ratio."""
        self.cache_lookups.labels(result).inc()
        if similarity is not None:
            self.cache_similarity.observe(similarity)
        self._lookups += 1
        self._hits += result != "miss"
        self.cache_hit_ratio.set(self._hits / self._lookups)

    def tenant_label(self, tenant: str | None) -> str:
        """The label value of ``tenant``: its name for the first :data:`MAX_TENANT_LABELS`
        tenants seen, ``-`` for none, ``other`` beyond."""
        if tenant is None:
            return "-"
        if tenant in self._tenant_labels:
            return tenant
        if len(self._tenant_labels) < MAX_TENANT_LABELS:
            self._tenant_labels.add(tenant)
            return tenant
        return "other"

    def stage(self, name: str, seconds: float) -> None:
        """Observe ``seconds`` spent in stage ``name``."""
        self.stage_duration.labels(name).observe(seconds)

    def set_partition(self, gauge: Gauge, values: Mapping[Partition, int]) -> None:
        """Set a per-partition gauge to ``values``; partitions not in it are removed."""
        seen = {(p.topic, str(p.partition)): v for p, v in values.items()}
        for labels, value in seen.items():
            gauge.labels(*labels).set(value)
        # Partitions this worker gave away must not linger as stale series.
        before = self._partition_labels.setdefault(id(gauge), set())
        for labels in before - set(seen):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        self._partition_labels[id(gauge)] = set(seen)

    def batch_sizes(
        self, chosen: Mapping[str, int], rates: Mapping[str, Mapping[int, float]]
    ) -> None:
        """Export the batch sizes the throughput policy chose and the rates behind them."""
        for shape, size in chosen.items():
            self.batch_size_chosen.labels(shape).set(size)
        for shape, by_size in rates.items():
            for size, videos_per_s in by_size.items():
                self.batch_throughput.labels(shape, str(size)).set(videos_per_s)

    # -- scrape-time values -----------------------------------------------------------------

    def add_refresher(self, refresher: Refresher) -> Callable[[], None]:
        """Run ``refresher`` before each render; returns a function that unregisters it."""
        self._refreshers.append(refresher)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._refreshers.remove(refresher)

        return remove

    async def render(self) -> bytes:
        """The exposition text, after every refresher ran (a failing one is logged)."""
        for refresher in list(self._refreshers):
            try:
                async with asyncio.timeout(2.0):
                    await refresher()
            except Exception as exc:
                log.warning("metrics_refresh_failed", error=repr(exc)[:200])
        return generate_latest(self.registry)


class GpuProbe:
    """Reads CUDA memory (and NVML utilisation, when pynvml is installed) into the gauges."""

    def __init__(self, metrics: Metrics, device: str = "cuda") -> None:
        import torch

        self._torch = torch
        self._metrics = metrics
        self._device = torch.device(device if device != "auto" else "cuda")
        self._label = str(self._device)
        self._utilization = True

    @staticmethod
    def available(device: str) -> bool:
        """Whether ``device`` (a generation.device setting) runs on CUDA here."""
        if device == "cpu":
            return False
        import torch

        return bool(torch.cuda.is_available())

    async def refresh(self) -> None:
        """Update memory in use/peak and utilisation."""
        cuda = self._torch.cuda
        m = self._metrics
        m.gpu_memory_used.labels(self._label).set(cuda.memory_allocated(self._device))
        m.gpu_memory_peak.labels(self._label).set(cuda.max_memory_allocated(self._device))
        if self._utilization:
            try:
                percent = cuda.utilization(self._device)
            except Exception:  # no pynvml (or NVML): the gauge stays absent
                self._utilization = False
                return
            m.gpu_utilization.labels(self._label).set(percent / 100.0)
