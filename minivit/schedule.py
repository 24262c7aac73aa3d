"""Learning-rate schedule: linear warmup, then cosine decay (Loshchilov & Hutter 2017).

    step < warmup:   lr = base_lr * (step + 1) / warmup
    after:           lr = min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * progress)),
                     progress = (step - warmup) / max(1, total - warmup), clamped to [0, 1]

``step`` counts optimizer steps from 0; the value is the lr used *for* that step.
"""

import math


def warmup_cosine(step: int, base_lr: float, total_steps: int, warmup_steps: int = 0,
                  min_lr: float = 0.0) -> float:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
