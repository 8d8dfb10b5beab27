"""The optimiser both writing models (the LM and the translator) train with, in one place so
their schedules cannot drift apart."""

from __future__ import annotations

from typing import Any


def adamw_one_cycle(model: Any, learning_rate: float, steps: int) -> tuple[Any, Any]:
    """AdamW (weight decay 0.01) and a one-cycle schedule over `steps`, warming up for 10% of
    them and never fewer than 2 steps (a tiny run would otherwise divide by zero)."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=learning_rate, total_steps=steps,
                                                   pct_start=max(0.1, 2 / steps))
    return optimizer, schedule
