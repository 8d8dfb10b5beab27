"""Prometheus metrics for the server, in a registry of its own (one per app, so tests can
run several servers in one process), and beside them the statistics extension's counts
(`serve.statistics`), fed by the same hooks.

Under `bushu serve --workers N` every worker records into prometheus-client's multiprocess
files (`PROMETHEUS_MULTIPROC_DIR`, set by the supervisor before a worker starts) and `/metrics`
on any worker renders the sum over all of them, so a scrape that lands on one worker still
sees the whole server. Gauges add up the live workers' values (`livesum`). The statistics
extension stays per process.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from bushu.serve.batcher import BatchObserver
from bushu.serve.generate_metrics import GenerationMetrics
from bushu.serve.statistics import ModelStatistics, Statistics

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["model", "version"]
        self.requests = Counter(
            "bushu_requests", "Inference requests by outcome (ok, client_error, overloaded, timeout, error)",
            [*labels, "outcome"], registry=self.registry,
        )

        def histogram(name: str, what: str, buckets: tuple[float, ...] = _LATENCY_BUCKETS) -> Histogram:
            return Histogram(name, what, labels, buckets=buckets, registry=self.registry)

        self.request_seconds = histogram("bushu_request_seconds", "Time from decoded request to encoded response")
        self.queue_seconds = histogram("bushu_queue_seconds", "Time a request waited in the batch queue")
        self.compute_seconds = histogram("bushu_compute_seconds", "Time one batch spent in the model")
        self.batch_size = histogram("bushu_batch_size", "Rows per batch run by the model", _BATCH_BUCKETS)
        self.queue_depth = Gauge("bushu_queue_depth", "Requests waiting in the batch queue", labels,
                                 registry=self.registry, multiprocess_mode="livesum")
        self.generation = GenerationMetrics(self.registry)
        self.statistics = Statistics()
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram, ModelStatistics]] = {}

    def observer(self, model: str, version: str) -> BatchObserver:
        queued = self.queue_seconds.labels(model, version)
        computed = self.compute_seconds.labels(model, version)
        batch = self.batch_size.labels(model, version)
        depth = self.queue_depth.labels(model, version)
        stats = self.statistics.model(model, version)

        def on_queued(seconds: float) -> None:
            queued.observe(seconds)
            stats.queue.add(seconds)

        def on_compute(seconds: float, rows: int, requests: int) -> None:
            computed.observe(seconds)
            batch.observe(rows)
            stats.computed(seconds, rows, requests)

        return BatchObserver(queued=on_queued, computed=on_compute, depth=depth.set)

    def outcome(self, model: str, version: str, status: int, seconds: float | None = None) -> None:
        """Count one request's outcome (and its latency) in the metrics and the statistics. The
        labelled children are looked up once per (model, version, status): `labels()` takes a
        lock and validates on every call."""
        children = self._children.get((model, version, status))
        if children is None:
            children = self._children[(model, version, status)] = (
                self.requests.labels(model, version, _outcome(status)), self.request_seconds.labels(model, version),
                self.statistics.model(model, version))
        children[0].inc()
        children[2].outcome(status < 400, seconds or 0.0)
        if seconds is not None:
            children[1].observe(seconds)

    def render(self) -> bytes:
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not shared:
            return generate_latest(self.registry)
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, path=shared)
        return generate_latest(every_worker)


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 504:
        return "timeout"
    if status in (429, 503):
        return "overloaded"
    return "client_error" if status < 500 else "error"
