"""The decode step with fixed shapes, for CUDA graphs (the GPU path).

The cache is allocated whole up front (every row, the whole context, plus one scratch position
at the end); a step of n running rows is padded up to the next bucket size, and the padding rows
write their keys and values to the scratch position, which no real row attends to. With every
shape fixed per bucket, one CUDA graph per bucket is captured once and replayed every step: the
step's hundreds of small kernel launches become one. `graphs=False` runs the very same padded
step eagerly, which is how it is tested on a CPU.
"""

from __future__ import annotations

import bisect

import torch


class StaticDecode:
    def __init__(self, model, cache, buckets: tuple[int, ...], *, graphs: bool) -> None:
        self.model, self.cache = model, cache
        self.buckets = tuple(sorted(b for b in buckets if b <= cache.max_slots)) or (cache.max_slots,)
        cache.reserve(cache.max_slots, cache.max_length, cache.max_source)  # static: allocated once
        self.scratch = cache.length - 1
        device = cache.device
        self.ids = {b: torch.zeros(b, dtype=torch.long, device=device) for b in self.buckets}
        self.lengths = {b: torch.full((b,), self.scratch, dtype=torch.long, device=device) for b in self.buckets}
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        if graphs:
            self._capture()

    def _run(self, bucket: int) -> torch.Tensor:
        return self.model.decode(self.ids[bucket], self.lengths[bucket], self.cache, end=self.cache.length)

    def _capture(self) -> None:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for bucket in self.buckets:  # warm-up outside the graph (allocator, kernels)
                self._run(bucket)
        torch.cuda.current_stream().wait_stream(stream)
        pool = None
        for bucket in reversed(self.buckets):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                out = self._run(bucket)
            pool = graph.pool()
            self.graphs[bucket] = (graph, out)
        torch.cuda.synchronize()

    def __call__(self, ids: torch.Tensor, lengths: torch.Tensor, cache) -> torch.Tensor:
        n = ids.shape[0]
        bucket = self.buckets[min(bisect.bisect_left(self.buckets, n), len(self.buckets) - 1)]
        if n > bucket:  # beyond the largest bucket: eager, dynamic shapes
            return self.model.decode(ids, lengths, cache)
        self.ids[bucket][:n].copy_(ids, non_blocking=True)
        self.ids[bucket][n:].zero_()
        self.lengths[bucket][:n].copy_(lengths, non_blocking=True)
        self.lengths[bucket][n:].fill_(self.scratch)
        if bucket in self.graphs:
            graph, out = self.graphs[bucket]
            graph.replay()
            return out[:n]
        return self._run(bucket)[:n]
