"""Learning-rate schedule: linear warmup, then cosine decay (Loshchilov & Hutter 2017).

    step < warmup:   lr = base_lr * (step + 1) / warmup
    after:           lr = min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * progress)),
                     progress = (step - warmup) / max(1, total - warmup), clamped to [0, 1]

``step`` counts optimizer steps from 0; the value is the lr used *for* that step.

The airbench teacher's schedule (``shape="triangle"``) instead multiplies the lr by a
piecewise-linear triangle through (0, 0.2), (int(0.23 total), 1) and (total, 0.07).

``Schedule`` is a run's steps and learning rate; ``epoch_order`` the shuffled order of the
training images in each epoch.
"""

import math
from dataclasses import dataclass

from minivit.backend import host_rng, host_xp

DATA_STREAM = 0     # seeds [seed, DATA_STREAM, epoch]: the data order (train.py's streams)


def warmup_cosine(step: int, base_lr: float, total_steps: int, warmup_steps: int = 0,
                  min_lr: float = 0.0) -> float:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], "
                         f"got {warmup_steps}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


TRIANGLE = (0.2, 0.23, 0.07)      # start factor, where the peak (1) is, end factor
SCHEDULE_SHAPES = ("cosine", "triangle")


def triangle(step: int, total: int, start=TRIANGLE[0], peak=TRIANGLE[1],
             end=TRIANGLE[2]) -> float:
    """The triangle's factor at ``step`` (from 0) of ``total`` steps."""
    top = max(1, int(peak * total))
    return float(host_xp().interp(step, [0, top, total], [start, 1.0, end]))


SHORT_RUN_UNMASKED_SHARE = 0.1   # a run shorter than an epoch: its unmasked share


def unmasked_steps(tail: int, total: int, steps_per_epoch: int) -> int:
    """The last steps of a run of ``total`` steps that train without patch dropout: the
    recipe's tail (``unmasked_epochs`` epochs), cut to the run.  A run shorter than one epoch
    (``--steps 300``: a first look) would be all tail; it keeps a tenth of its length
    unmasked instead, so that it trains with patch dropout as the recipe does."""
    if total < steps_per_epoch:
        return min(tail, int(total * SHORT_RUN_UNMASKED_SHARE))
    return min(tail, total)


@dataclass(frozen=True)
class Schedule:
    """Steps and learning rate of a run."""
    steps_per_epoch: int
    total: int
    warmup: int
    unmasked: int           # unmasked tuning: the last steps see every patch token
    lr: float
    min_lr: float
    shape: str = "cosine"   # or "triangle" (no warmup, no min_lr)

    def lr_at(self, step: int) -> float:
        if self.shape == "triangle":
            return self.lr * triangle(step, self.total)
        return warmup_cosine(step, self.lr, self.total, self.warmup, self.min_lr)

    @property
    def epochs(self) -> int:
        """The run's epochs (the last may be short)."""
        return self.epochs_done(self.total)

    def epochs_done(self, step: int) -> int:
        """Epochs finished after ``step`` steps (the last may be short)."""
        return step // self.steps_per_epoch + (step == self.total
                                               and step % self.steps_per_epoch != 0)

    def patch_dropout_at(self, step: int) -> bool:
        return step < self.total - self.unmasked

    def same_start(self, other: "Schedule", steps: int) -> bool:
        """Steps 0..steps-1 have the same learning rate and patch dropout in both schedules:
        both still warming up over the same steps (the warmup's ramp does not depend on the
        run's length) and neither's unmasked tail begun."""
        return (self.warmup == other.warmup and steps <= self.warmup
                and (self.lr, self.min_lr) == (other.lr, other.min_lr)
                and steps <= self.total - self.unmasked and steps <= other.total - other.unmasked)


def epoch_order(seed: int, epoch: int, n: int):
    """The shuffled training order of one epoch: a pure function of (seed, epoch).

    Returns (permutation, the generator after drawing it)."""
    gen = host_rng([seed, DATA_STREAM, epoch])
    return gen.permutation(n), gen
