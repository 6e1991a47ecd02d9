"""The notebooks' learning-rate schedule, without depending on transformers."""

from __future__ import annotations

import math

import torch


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer,
    warmup_steps: int,
    total_steps: int,
    num_cycles: float = 0.475,
    min_lr: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """HF get_cosine_schedule_with_warmup (num_cycles 0.475 ends near 0.6 % of the peak), with
    the 0828 notebook's floor applied: the lr never drops below `min_lr`."""
    peak = optimizer.param_groups[0]["lr"]
    floor = min_lr / peak if peak > 0 else 0.0

    def factor(step: int) -> float:
        if step < warmup_steps:
            return max(floor, step / max(1, warmup_steps))
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(floor, 0.5 * (1.0 + math.cos(math.pi * num_cycles * 2.0 * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
