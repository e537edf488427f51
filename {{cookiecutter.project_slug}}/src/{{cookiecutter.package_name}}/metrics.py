"""Prometheus metrics (prometheus-client), one registry per app so tests can make several."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

# Routes are labelled by their path only when the app has it, so no client can grow the series.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "http_requests", "HTTP requests answered", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "Time to answer", ["route", "status"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.batch_rows = Histogram(
            "inference_batch_rows", "Rows per forward pass", buckets=BATCH_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "inference_queue_depth", "Requests waiting for a batch", registry=r
        )
        self.in_flight = Gauge("predict_in_flight", "/predict requests being answered", registry=r)
        self.model = Info("model", "The model being served", registry=r)
