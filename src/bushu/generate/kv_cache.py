"""The key/value cache as slots: one row per running sequence, kept contiguous (0..n-1) so a
decode step reads a view of the cache, never a gathered copy.

A sequence that leaves hands its row to the last one (one copy of that sequence's keys and
values), so the rows stay packed. Capacity grows by doubling, in rows and in length, up to the
limits the engine sets; memory is bounded by those limits, admission by `max_tokens_in_flight`.
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, layers: int, heads: int, head_dim: int, *, dtype: torch.dtype, device: str = "cpu",
                 max_slots: int, max_length: int, max_source: int = 0) -> None:
        self.layers, self.heads, self.head_dim = layers, heads, head_dim
        self.dtype, self.device = dtype, device
        self.max_slots, self.max_length, self.max_source = max_slots, max_length, max_source
        self.k = self.v = torch.empty(0)
        #: An encoder-decoder's cross-attention keys/values per slot, and each slot's source length.
        self.ck = self.cv = torch.empty(0)
        self.source_lengths = torch.zeros(0, dtype=torch.long, device=device)
        self._alloc(min(4, max_slots), min(64, max_length), min(64, max_source))

    def _grown(self, old: torch.Tensor, slots: int, length: int) -> torch.Tensor:
        new = torch.zeros((self.layers, slots, self.heads, length, self.head_dim), dtype=self.dtype, device=self.device)
        if old.numel():
            new[:, :old.shape[1], :, :old.shape[3]] = old
        return new

    def _alloc(self, slots: int, length: int, source: int) -> None:
        self.k, self.v = self._grown(self.k, slots, length), self._grown(self.v, slots, length)
        if self.max_source:
            self.ck, self.cv = self._grown(self.ck, slots, source), self._grown(self.cv, slots, source)
            lengths = torch.zeros(slots, dtype=torch.long, device=self.device)
            lengths[:self.source_lengths.shape[0]] = self.source_lengths
            self.source_lengths = lengths

    @property
    def source(self) -> int:
        return self.ck.shape[3] if self.max_source else 0

    @property
    def slots(self) -> int:
        return self.k.shape[1]

    @property
    def length(self) -> int:
        return self.k.shape[3]

    def reserve(self, slots: int, length: int, source: int = 0) -> None:
        """Make room for `slots` rows of `length` positions (doubling, within the limits)."""
        if slots > self.max_slots or length > self.max_length or source > self.max_source:
            raise ValueError(f"cache asked for {slots} slots × {length} positions ({source} source); limits "
                             f"{self.max_slots} × {self.max_length} ({self.max_source})")
        if slots <= self.slots and length <= self.length and source <= self.source:
            return
        grow = lambda have, need, cap: min(cap, max(have, 1 << max(0, need - 1).bit_length()))  # noqa: E731
        self._alloc(grow(self.slots, slots, self.max_slots), grow(self.length, length, self.max_length),
                    grow(self.source, source, self.max_source) if self.max_source else 0)

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy slot `src`'s first `length` positions into slot `dst` (a leaving sequence's row)."""
        if src == dst:
            return
        self.k[:, dst, :, :length] = self.k[:, src, :, :length]
        self.v[:, dst, :, :length] = self.v[:, src, :, :length]
        if self.max_source:
            n = int(self.source_lengths[src])
            self.ck[:, dst, :, :n] = self.ck[:, src, :, :n]
            self.cv[:, dst, :, :n] = self.cv[:, src, :, :n]
            self.source_lengths[dst] = n

    def nbytes(self) -> int:
        return 2 * (self.k.numel() + self.ck.numel()) * self.k.element_size()
