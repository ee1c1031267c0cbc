"""Prometheus metrics of one server: requests, queue depth, forward passes, per-stage durations."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from distilkit.serve.settings import ServeSettings

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
STAGES = ("tokenize", "queue", "forward", "decode")


def powers_of_two_to(limit: int) -> tuple[int, ...]:
    """1, 2, 4, ... below ``limit``, then ``limit`` itself: the top bucket is the configured budget."""
    buckets, b = [], 1
    while b < limit:
        buckets.append(b)
        b *= 2
    return (*buckets, limit)


class ServerMetrics:
    """Metric families on a private registry (several apps in one process do not collide).

    The pass histograms end at the configured budgets, so ``_bucket{le="<max>"}`` equal to
    ``_count`` shows that no forward pass went past them.
    """

    def __init__(self, max_batch_size: int = ServeSettings.max_batch_size,
                 max_batch_tokens: int = ServeSettings.max_batch_tokens) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.requests = Counter("distilkit_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.request_seconds = Histogram("distilkit_request_seconds", "Request latency", ["route"],
                                         buckets=STAGE_BUCKETS, registry=r)
        self.queue_depth = Gauge("distilkit_queue_depth", "Inputs waiting for a forward pass", ["model"],
                                 registry=r)
        self.batch_rows = Histogram("distilkit_batch_rows", "Rows per forward pass", ["model"],
                                    buckets=powers_of_two_to(max_batch_size), registry=r)
        self.batch_padded_tokens = Histogram(
            "distilkit_batch_padded_tokens", "Padded tokens (rows x padded length) per forward pass",
            ["model"], buckets=powers_of_two_to(max_batch_tokens), registry=r)
        self.batch_tokens = Histogram(
            "distilkit_batch_tokens", "Real tokens per forward pass (the encoder's GEMMs skip the padding)",
            ["model"], buckets=powers_of_two_to(max_batch_tokens), registry=r)
        self.batch_seconds = Histogram("distilkit_batch_seconds", "Duration of one forward pass", ["model"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.stage_seconds = Histogram("distilkit_stage_seconds",
                                       "Time per request and stage: " + ", ".join(STAGES),
                                       ["model", "stage"], buckets=STAGE_BUCKETS, registry=r)

    def child(self, family: Any, *values: str) -> Any:
        """``family.labels(*values)``, kept: finding a labelled child costs more than what is recorded
        on it, several times per request (the label values are routes, statuses, models, stages)."""
        key = (id(family), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = family.labels(*values)
        return found
