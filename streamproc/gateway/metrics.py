"""Prometheus metrics of one gateway process, in a registry of its own (served on ``/metrics``).

Labels are low-cardinality: the route template (never the path with an id), the method, the
status code, the tenant (a configured name), the limit. Never a key, an id or a prompt.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

#: Submissions wait for acks=all: sub-millisecond on loopback to seconds in an outage.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class GatewayMetrics:
    """The gateway's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "streamproc_gateway_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "streamproc_gateway_request_seconds",
            "Time from request to the end of the response (SSE streams excluded).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.accepted = Counter(
            "streamproc_gateway_videos_accepted_total",
            "Submissions the brokers acknowledged (202), by tenant; retries of an accepted "
            "submission are counted in streamproc_gateway_idempotent_replays_total.",
            ["tenant"],
            registry=self.registry,
        )
        self.replays = Counter(
            "streamproc_gateway_idempotent_replays_total",
            "Submissions answered from an earlier one with the same Idempotency-Key.",
            ["tenant"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "streamproc_gateway_rejected_total",
            "Requests refused before Kafka, by error code (auth, limits, bad bodies).",
            ["code"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "streamproc_gateway_rate_limited_total",
            "Requests answered 429, by tenant and limit (requests, videos).",
            ["tenant", "limit"],
            registry=self.registry,
        )
        self.produce_latency = Histogram(
            "streamproc_gateway_produce_seconds",
            "Time to produce one record with acks=all.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cancels = Counter(
            "streamproc_gateway_cancels_total",
            "Cancel control events produced, by tenant.",
            ["tenant"],
            registry=self.registry,
        )

        self.webhooks = Counter(
            "streamproc_gateway_webhooks_total",
            "Webhook attempts by tenant and outcome (delivered, retried, given_up).",
            ["tenant", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
