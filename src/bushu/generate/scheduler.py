"""Which sequences run this step, and with how many tokens (after vLLM v1's scheduler).

The scheduler touches no tensor: it hands the runner a `SchedulerOutput` — cache rows to move,
the running sequences to decode by one token, prompt chunks to prefill — and is told back
what was sampled. Invariants it keeps: running sequences occupy cache rows 0..n-1 in order
(a decode step reads a view); prefilling ones hold rows above them, in admission order, and
join the running ones in that order; a sequence is admitted only if the tokens it may ever
hold (prompt + max new tokens) fit under `max_tokens_in_flight` beside those already admitted,
so a running sequence never has to be evicted. Prefill is chunked: each step carries at most
`prefill_chunk` prompt tokens, so running sequences wait for at most one chunk; a step with no
sequence decoding carries up to `idle_prefill` (a burst of prompts prefilled in one forward).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from bushu.errors import Overloaded
from bushu.generate.config import EngineSettings
from bushu.generate.sequence import Sequence

__all__ = ["Scheduler", "SchedulerOutput"]


@dataclass
class SchedulerOutput:
    #: (from row, to row, positions) copies, in order, before anything runs.
    moves: list[tuple[int, int, int]] = field(default_factory=list)
    #: Running sequences, in row order (row i = decode[i]), one token each.
    decode: list[Sequence] = field(default_factory=list)
    #: (sequence, first prompt token, end) chunks to prefill, in order.
    prefill: list[tuple[Sequence, int, int]] = field(default_factory=list)
    #: Cache rows and positions this step needs.
    rows: int = 0
    length: int = 0
    #: Source tokens (an encoder-decoder's cross-attention) this step needs.
    source: int = 0

    @property
    def empty(self) -> bool:
        return not self.decode and not self.prefill


class Scheduler:
    def __init__(self, settings: EngineSettings, *, encoder_decoder: bool = False) -> None:
        self.settings = settings
        self.encoder_decoder = encoder_decoder
        self.waiting: deque[Sequence] = deque()
        self.prefilling: list[Sequence] = []
        self.running: list[Sequence] = []
        self.reserved = 0
        self._moves: list[tuple[int, int, int]] = []

    def need(self, seq: Sequence) -> int:
        """Cache positions a sequence may hold at most."""
        return len(seq.prompt) + seq.params.max_new_tokens + (1 if self.encoder_decoder else 0)

    def add(self, seq: Sequence) -> None:
        if len(self.waiting) >= self.settings.max_waiting:
            raise Overloaded(f"{len(self.waiting)} requests already wait for the cache (--max-waiting)")
        self.waiting.append(seq)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.prefilling or self.running)

    def _drop(self, seq: Sequence) -> None:
        """Free a finished or cancelled sequence's row and tokens; the last running row fills the hole."""
        self.reserved -= seq.reserved
        if seq in self.prefilling:
            self.prefilling.remove(seq)
            return
        row = seq.slot
        last = self.running.pop()
        if last is not seq:
            self.running[row] = last
            self._moves.append((last.slot, row, last.cache_len))
            last.slot = row

    def finish(self, seq: Sequence) -> None:
        self._drop(seq)

    def schedule(self) -> SchedulerOutput:
        for seq in [s for s in (*self.running, *self.prefilling) if s.cancelled]:
            self._drop(seq)
        if any(s.cancelled for s in self.waiting):
            self.waiting = deque(s for s in self.waiting if not s.cancelled)
        while self.prefilling and self.prefilling[0].prefilled == len(self.prefilling[0].prompt):
            seq = self.prefilling.pop(0)  # prefill done: it joins the running rows, in order
            row = len(self.running)
            if seq.slot != row:
                self._moves.append((seq.slot, row, seq.cache_len))
                seq.slot = row
            self.running.append(seq)
        out = SchedulerOutput(moves=self._moves, decode=list(self.running))
        self._moves = []
        budget = self.settings.prefill_chunk if self.running else max(self.settings.prefill_chunk,
                                                                       self.settings.idle_prefill)
        for seq in self.prefilling:
            if budget <= 0:
                break
            budget -= self._chunk(out, seq, budget)
        while budget > 0 and self.waiting and self._admit(self.waiting[0]):
            budget -= self._chunk(out, self.waiting.popleft(), budget)
        active = (*self.running, *self.prefilling)
        out.rows = max((s.slot for s in active), default=-1) + 1
        if self.encoder_decoder:
            out.length = max((s.params.max_new_tokens + 1 for s in active), default=0)
            out.source = max((len(s.prompt) for s in active), default=0)
        else:
            out.length = max((self.need(s) for s in active), default=0)
        return out

    def _admit(self, seq: Sequence) -> bool:
        row = max([len(self.running)] + [s.slot + 1 for s in self.prefilling])
        need = self.need(seq)
        if row >= self.settings.max_sequences or self.reserved + need > self.settings.max_tokens_in_flight:
            return False
        seq.slot, seq.reserved = row, need
        self.reserved += need
        self.prefilling.append(seq)
        return True

    def _chunk(self, out: SchedulerOutput, seq: Sequence, budget: int) -> int:
        """Schedule the next piece of `seq`'s prompt; an encoder-decoder's source goes whole."""
        start = seq.prefilled
        end = len(seq.prompt) if self.encoder_decoder else min(len(seq.prompt), start + budget)
        out.prefill.append((seq, start, end))
        return end - start

    def update(self, out: SchedulerOutput) -> None:
        """After the step ran: positions now in the cache."""
        for seq in out.decode:
            seq.cache_len += 1
        for seq, _, end in out.prefill:
            seq.prefilled = end
            if end == len(seq.prompt):
                seq.cache_len = 1 if self.encoder_decoder else end
