"""Next-token choice per sequence: greedy for the whole batch in one argmax; otherwise
repetition penalty, temperature, top-k and top-p (in `transformers`' order and semantics),
then a draw from the sequence's own seeded generator, so a seed gives the same tokens
whichever other sequences share the step."""

from __future__ import annotations

import torch

from bushu.generate.config import SamplingParams


def generator_for(params: SamplingParams) -> torch.Generator | None:
    if params.greedy:
        return None
    generator = torch.Generator()
    generator.manual_seed(params.seed if params.seed is not None else int(torch.randint(0, 2**62, ()).item()))
    return generator


def penalise(logits: torch.Tensor, seen: list[int], penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (as `transformers` applies it): seen tokens' logits shrink."""
    if penalty == 1.0 or not seen:
        return logits
    ids = torch.tensor(sorted(set(seen)), dtype=torch.long)
    chosen = logits[ids]
    logits = logits.clone()
    logits[ids] = torch.where(chosen < 0, chosen * penalty, chosen / penalty)
    return logits


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None, seen: list[int]) -> int:
    """One token from one row of logits (float32)."""
    logits = penalise(logits.float(), seen, params.repetition_penalty)
    if params.greedy:
        return int(logits.argmax())
    logits = logits / params.temperature
    if params.top_k:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1])).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=False)
        cumulative = ordered.softmax(-1).cumsum(-1)
        drop = cumulative <= 1 - params.top_p
        drop[-1] = False
        logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))
