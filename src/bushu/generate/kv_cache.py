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
                 max_slots: int, max_length: int) -> None:
        self.layers, self.heads, self.head_dim = layers, heads, head_dim
        self.dtype, self.device = dtype, device
        self.max_slots, self.max_length = max_slots, max_length
        self.k = self.v = torch.empty(0)
        self._alloc(min(4, max_slots), min(64, max_length))

    def _alloc(self, slots: int, length: int) -> None:
        shape = (self.layers, slots, self.heads, length, self.head_dim)
        k, v = (torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in range(2))
        if self.k.numel():
            s, t = self.k.shape[1], self.k.shape[3]
            k[:, :s, :, :t] = self.k
            v[:, :s, :, :t] = self.v
        self.k, self.v = k, v

    @property
    def slots(self) -> int:
        return self.k.shape[1]

    @property
    def length(self) -> int:
        return self.k.shape[3]

    def reserve(self, slots: int, length: int) -> None:
        """Make room for `slots` rows of `length` positions (doubling, within the limits)."""
        if slots > self.max_slots or length > self.max_length:
            raise ValueError(f"cache asked for {slots} slots × {length} positions; limits {self.max_slots} × {self.max_length}")
        if slots <= self.slots and length <= self.length:
            return
        grow = lambda have, need, cap: min(cap, max(have, 1 << (need - 1).bit_length()))  # noqa: E731
        self._alloc(grow(self.slots, slots, self.max_slots), grow(self.length, length, self.max_length))

    def move(self, src: int, dst: int, length: int) -> None:
        """Copy slot `src`'s first `length` positions into slot `dst` (a leaving sequence's row)."""
        if src != dst and length:
            self.k[:, dst, :, :length] = self.k[:, src, :, :length]
            self.v[:, dst, :, :length] = self.v[:, src, :, :length]

    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()
