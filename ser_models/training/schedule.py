"""Learning-rate schedules."""

from __future__ import annotations

import torch


def tri_stage_lambda(total_steps: int, warmup_ratio: float, hold_ratio: float, final_scale: float = 0.0):
    """Multiplier for a tri-stage schedule: linear warm-up, a flat phase, then linear decay.

    This is the schedule AFTER (and wav2vec2 fine-tuning) uses. With ``total_steps`` S, warm-up covers
    ``warmup_ratio * S`` steps from 0 to 1, the flat phase ``hold_ratio * S`` steps at 1, and the rest decays
    linearly to ``final_scale``.

    Returns:
        A function ``step -> multiplier`` for ``torch.optim.lr_scheduler.LambdaLR``.
    """
    total = max(int(total_steps), 1)
    warm = int(round(warmup_ratio * total))
    hold = int(round(hold_ratio * total))
    decay = max(total - warm - hold, 1)

    def multiplier(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if step < warm + hold:
            return 1.0
        frac = min((step - warm - hold) / decay, 1.0)
        return 1.0 - (1.0 - final_scale) * frac

    return multiplier


def tri_stage_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float,
                        hold_ratio: float) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` over :func:`tri_stage_lambda` for every parameter group."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, tri_stage_lambda(total_steps, warmup_ratio, hold_ratio))
