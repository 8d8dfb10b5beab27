"""Latency and throughput, measured interleaved so that every variant sees the same machine.

On a shared or throttling machine, timing variant A for a minute and then variant B measures
the machine as much as the variants. Here each round calls every variant once at batch 1 and
once at the serving batch, in a rotating order, and the percentiles are taken per variant over
the rounds — the load that slows one call slows its neighbours too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

Runner = Callable[[dict[str, np.ndarray]], object]


@dataclass(frozen=True)
class Timing:
    p50_ms_b1: float
    p95_ms_b1: float
    p50_ms_batch: float
    p95_ms_batch: float
    batch: int

    @property
    def throughput(self) -> float:
        """Samples per second at the serving batch, from the median call."""
        return self.batch / (self.p50_ms_batch / 1000)

    def as_metrics(self) -> dict[str, float]:
        return {
            "latency_p50_ms_b1": round(self.p50_ms_b1, 3),
            "latency_p95_ms_b1": round(self.p95_ms_b1, 3),
            f"latency_p50_ms_b{self.batch}": round(self.p50_ms_batch, 3),
            f"latency_p95_ms_b{self.batch}": round(self.p95_ms_batch, 3),
            "throughput_per_s": round(self.throughput, 2),
        }


def _timed(run: Runner, inputs: dict[str, np.ndarray]) -> float:
    start = time.perf_counter()
    run(inputs)
    return (time.perf_counter() - start) * 1000


@dataclass(frozen=True)
class Workload:
    """What one variant is timed on: its runner, a batch-1 input and a serving-batch input."""

    run: Runner
    single: dict[str, np.ndarray]
    batch: dict[str, np.ndarray]


def time_interleaved(workloads: Mapping[str, Workload], rounds: int, warmup: int = 2) -> dict[str, Timing]:
    """p50/p95 latency at batch 1 and at the serving batch for every workload, interleaved."""
    names = list(workloads)
    for name in names:
        w = workloads[name]
        for _ in range(warmup):
            w.run(w.single)
            w.run(w.batch)
    ones: dict[str, list[float]] = {n: [] for n in names}
    many: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            w = workloads[name]
            ones[name].append(_timed(w.run, w.single))
            many[name].append(_timed(w.run, w.batch))
    return {
        n: Timing(
            float(np.percentile(ones[n], 50)), float(np.percentile(ones[n], 95)),
            float(np.percentile(many[n], 50)), float(np.percentile(many[n], 95)),
            len(next(iter(workloads[n].batch.values()))),
        )
        for n in names
    }
