"""Prometheus metrics of the generation engines: time to first token, inter-token latency,
tokens generated (their rate is tokens/s), sequences running and waiting."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bushu.generate.sequence import GenerationObserver

_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GenerationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["model", "version"]
        self.ttft = Histogram("bushu_time_to_first_token_seconds", "From request to its first token", labels,
                              buckets=_TOKEN_BUCKETS, registry=registry)
        self.itl = Histogram("bushu_inter_token_seconds", "Between two tokens of one sequence", labels,
                             buckets=_TOKEN_BUCKETS, registry=registry)
        self.tokens = Counter("bushu_generated_tokens", "Tokens generated (rate: tokens/s)", labels, registry=registry)
        self.running = Gauge("bushu_sequences_running", "Sequences in the decode batch or prefilling", labels,
                             registry=registry, multiprocess_mode="livesum")
        self.waiting = Gauge("bushu_sequences_waiting", "Sequences waiting for room in the KV cache", labels,
                             registry=registry, multiprocess_mode="livesum")

    def observer(self, model: str, version: str) -> GenerationObserver:
        running, waiting = self.running.labels(model, version), self.waiting.labels(model, version)

        def load(run: int, wait: int) -> None:
            running.set(run)
            waiting.set(wait)

        return GenerationObserver(first_token=self.ttft.labels(model, version).observe,
                                  inter_token=self.itl.labels(model, version).observe,
                                  tokens=self.tokens.labels(model, version).inc, load=load)
