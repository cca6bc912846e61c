"""Prometheus metrics of one app, correct with several uvicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``fedpa-aggregator serve --workers N`` sets it), every worker
writes its values to files there and ``/metrics`` sums all workers (prometheus-client's
multiprocess mode); without it, the metrics are this process's only. Each app gets its own
registry so tests can build many apps in one process.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "multiprocess_dir"]

_AGG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def multiprocess_dir() -> str | None:
    """The shared metrics directory of a multi-worker server, if any."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """The counters and histograms the service updates; ``render()`` is the /metrics body."""

    def __init__(self) -> None:
        self._multiprocess = multiprocess_dir() is not None
        # In multiprocess mode values live in files, so metrics are not registered anywhere.
        self.registry = CollectorRegistry()
        reg = None if self._multiprocess else self.registry
        self.uploads_accepted = Counter(
            "fedpa_uploads_accepted", "Updates accepted (committed) per model", ["model_id"], registry=reg)
        self.uploads_rejected = Counter(
            "fedpa_uploads_rejected", "Update uploads refused, by error code", ["reason"], registry=reg)
        self.upload_bytes = Counter(
            "fedpa_upload_bytes", "Bytes of accepted update bodies", ["model_id"], registry=reg)
        self.aggregations = Counter(
            "fedpa_aggregations", "Aggregations (closed rounds / flushed buffers)", ["model_id", "trigger"],
            registry=reg)
        self.aggregations_refused = Counter(
            "fedpa_aggregations_refused", "Aggregations refused by the safety check (state unchanged), by reason",
            ["model_id", "reason"], registry=reg)
        self.aggregated_updates = Counter(
            "fedpa_aggregated_updates", "Updates folded into the shared state", ["model_id"], registry=reg)
        self.aggregation_seconds = Histogram(
            "fedpa_aggregation_duration_seconds", "Wall time of one aggregation transaction", ["model_id"],
            buckets=_AGG_BUCKETS, registry=reg)
        self.aggregation_size = Histogram(
            "fedpa_aggregation_updates", "Updates per aggregation", ["model_id"], buckets=_SIZE_BUCKETS,
            registry=reg)
        self.intake_batch_size = Histogram(
            "fedpa_intake_batch_updates", "Uploads stored per intake transaction (group commit)",
            buckets=_SIZE_BUCKETS, registry=reg)
        self.state_downloads = Counter(
            "fedpa_state_downloads", "Shared-state downloads (200 and 304)", ["model_id", "status"],
            registry=reg)

    def accepted(self, model_id: str, nbytes: int) -> None:
        self.uploads_accepted.labels(model_id).inc()
        self.upload_bytes.labels(model_id).inc(nbytes)

    def intake_batch(self, size: int) -> None:
        self.intake_batch_size.observe(size)

    def rejected(self, reason: str) -> None:
        self.uploads_rejected.labels(reason).inc()

    def aggregated(self, model_id: str, *, trigger: str, updates: int, seconds: float) -> None:
        self.aggregations.labels(model_id, trigger).inc()
        self.aggregated_updates.labels(model_id).inc(updates)
        self.aggregation_seconds.labels(model_id).observe(seconds)
        self.aggregation_size.labels(model_id).observe(updates)

    def aggregation_refused(self, model_id: str, *, reason: str) -> None:
        self.aggregations_refused.labels(model_id, reason).inc()

    def render(self) -> bytes:
        """Prometheus text exposition (all workers' sum in multiprocess mode)."""
        if self._multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
