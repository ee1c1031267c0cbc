"""Prometheus metrics of one server: requests, queue depth, batch sizes, per-stage durations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServerMetrics:
    """Metric families on a private registry (several apps in one process do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("distilkit_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.request_seconds = Histogram("distilkit_request_seconds", "Request latency", ["route"],
                                         buckets=STAGE_BUCKETS, registry=r)
        self.queue_depth = Gauge("distilkit_queue_depth", "Inputs waiting for a batch", ["model"], registry=r)
        self.batch_size = Histogram("distilkit_batch_size", "Rows per forward pass", ["model"],
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.batch_tokens = Histogram("distilkit_batch_tokens", "Tokens per forward pass", ["model"],
                                      buckets=(16, 64, 256, 512, 1024, 2048, 4096, 8192), registry=r)
        self.stage_seconds = Histogram("distilkit_stage_seconds", "Time per stage (tokenize, queue, infer)",
                                       ["model", "stage"], buckets=STAGE_BUCKETS, registry=r)
