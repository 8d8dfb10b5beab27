"""Triton's statistics extension: per model version, how many requests succeeded and failed,
and how long they spent in total, queued and computing — cumulative since the server started.

The numbers are kept here, fed by the same hooks as the Prometheus metrics (the dataplane's
outcome and the batcher's observer), so every front — HTTP `GET /v2/models/stats` and gRPC
`ModelStatistics` — reports the same counts. The report is Triton's JSON shape
(`model_statistics.md`), which the gRPC front parses into `ModelStatisticsResponse` as it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, count: int = 1) -> None:
        self.count += count
        self.ns += int(seconds * 1e9) * count

    def doc(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class ModelStatistics:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    #: rows inferred, and model executions (batches) that inferred them
    inference_count: int = 0
    execution_count: int = 0
    #: milliseconds since the epoch of the last successful request (0: none yet)
    last_inference: int = 0
    #: per batch size (rows): executions and their cumulative compute time
    batches: dict[int, Duration] = field(default_factory=dict)

    def outcome(self, ok: bool, seconds: float) -> None:
        if ok:
            self.success.add(seconds)
            self.last_inference = int(time.time() * 1000)
        else:
            self.fail.add(seconds)

    def computed(self, seconds: float, rows: int, requests: int) -> None:
        """One model execution of `rows` rows for `requests` requests: each request is counted
        with the batch's compute time, as Triton counts it."""
        self.compute_infer.add(seconds, requests)
        self.inference_count += rows
        self.execution_count += 1
        self.batches.setdefault(rows, Duration()).add(seconds)

    def doc(self, name: str, version: str) -> dict[str, Any]:
        zero = Duration().doc()
        return {
            "name": name, "version": version, "last_inference": self.last_inference,
            "inference_count": self.inference_count, "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.doc(), "fail": self.fail.doc(), "queue": self.queue.doc(),
                "compute_input": zero, "compute_infer": self.compute_infer.doc(), "compute_output": zero,
                "cache_hit": zero, "cache_miss": zero,
            },
            "batch_stats": [{"batch_size": rows, "compute_input": zero, "compute_infer": d.doc(), "compute_output": zero}
                            for rows, d in sorted(self.batches.items())],
        }


class Statistics:
    """Every model version's statistics, created on first use and kept across reloads."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, str], ModelStatistics] = {}

    def model(self, name: str, version: str) -> ModelStatistics:
        stats = self._models.get((name, version))
        if stats is None:
            stats = self._models[(name, version)] = ModelStatistics()
        return stats

    def report(self, versions: list[tuple[str, str]]) -> dict[str, Any]:
        """Triton's `{"model_stats": [...]}` for these model versions, in this order."""
        return {"model_stats": [self.model(name, version).doc(name, version) for name, version in versions]}
