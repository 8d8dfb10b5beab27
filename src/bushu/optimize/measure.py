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


def time_interleaved(
    runners: Mapping[str, Runner],
    single: dict[str, np.ndarray],
    batch: dict[str, np.ndarray],
    rounds: int,
    warmup: int = 2,
) -> dict[str, Timing]:
    """p50/p95 latency at batch 1 (`single`) and at the serving batch for every runner."""
    names = list(runners)
    size = len(next(iter(batch.values())))
    for name in names:
        for _ in range(warmup):
            runners[name](single)
            runners[name](batch)
    ones: dict[str, list[float]] = {n: [] for n in names}
    many: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            ones[name].append(_timed(runners[name], single))
            many[name].append(_timed(runners[name], batch))
    return {
        n: Timing(
            float(np.percentile(ones[n], 50)), float(np.percentile(ones[n], 95)),
            float(np.percentile(many[n], 50)), float(np.percentile(many[n], 95)), size,
        )
        for n in names
    }
