"""Prometheus metrics (prometheus-client): one registry per app, so tests can make several.

With several server processes (WEB_CONCURRENCY > 1), server.run sets PROMETHEUS_MULTIPROC_DIR and
prometheus-client's multiprocess mode adds every process's values up at each scrape; gauges say
how (livesum: the live processes' sum; max: the same in every process).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# Routes are labelled by their path only when the app has it, so no client can grow the series.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
MODEL_LABELS = ("checkpoint", "torch", "device", "cuda", "driver", "gpu")


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def has_header(path: str) -> bool:
    """A worker creates its file empty and then sizes it; read in between, prometheus-client's
    reader fails the whole scrape (struct.error, a 500). An empty file holds no values yet."""
    try:
        return os.path.getsize(path) >= 8
    except FileNotFoundError:  # a dead worker's live gauges, just removed
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        pass
    return True


def drop_dead_workers(folder: str) -> None:
    """A worker killed -9 never marks itself dead: its live gauges (in flight, queue depth)
    would stay in the sums for ever. Their files are dropped once its pid is gone."""
    for path in glob.glob(os.path.join(folder, "gauge_live*_*.db")):
        pid = os.path.basename(path).rsplit("_", 1)[1].removesuffix(".db")
        if pid.isdigit() and not alive(int(pid)):
            mark_process_dead(int(pid), path=folder)


class WorkerFiles:
    """MultiProcessCollector over the live workers' files that are past their creation."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def collect(self):
        drop_dead_workers(self.folder)
        files = [f for f in glob.glob(os.path.join(self.folder, "*.db")) if has_header(f)]
        return MultiProcessCollector.merge(files, accumulate=True)


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
            "inference_queue_depth", "Requests waiting for a batch", registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.in_flight = Gauge(
            "predict_in_flight", "/predict requests being answered", registry=r,
            multiprocess_mode="livesum",
        )  # fmt: skip
        self.model = Gauge(
            "model_info", "The model being served (value 1)", MODEL_LABELS, registry=r,
            multiprocess_mode="max",
        )  # fmt: skip

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's metrics, or every worker's."""
        if folder := multiprocess_dir():
            registry = CollectorRegistry()
            registry.register(WorkerFiles(folder))
            return generate_latest(registry)
        return generate_latest(self.registry)

    def process_exits(self) -> None:
        """Drop this process's live gauges from the sums."""
        if folder := multiprocess_dir():
            mark_process_dead(os.getpid(), path=folder)
