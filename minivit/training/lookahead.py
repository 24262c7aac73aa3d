"""Lookahead as airbench uses it (after hlb-CIFAR10): every few steps, late in training, the
weights are pulled to a slow exponential average of themselves and the average is copied
back into the model, so the fast optimizer restarts from the averaged point.

    every ``every`` steps from epoch ``start_epoch`` on:
        slow <- decay * slow + (1 - decay) * fast         decay = base^every * (step / total)^power
        fast <- slow
    the first such step only takes the copy (slow <- fast); at the end of every epoch after it
    the model gets the average once more (decay 1: fast <- slow).

The averaged state is the model's flat parameter buffer and its floating-point buffers (the
BatchNorm running statistics, as airbench averages the whole float state dict); integer
buffers (num_batches_tracked) are left alone.  airbench: base 0.95, every 5, power 3, from
epoch 3.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LookaheadSchedule:
    start_epoch: int = 3
    every: int = 5
    base: float = 0.95
    power: float = 3.0

    def due(self, epoch: int, step: int) -> bool:
        """Whether step (counted from 1 over the whole run) of ``epoch`` (from 0) averages."""
        return epoch >= self.start_epoch and step % self.every == 0

    def decay(self, step: int, total_steps: int) -> float:
        """The share of the slow weights kept at ``step`` of ``total_steps``."""
        return self.base ** self.every * (step / total_steps) ** self.power


def _float_buffers(model) -> dict:
    return {k: v for k, v in getattr(model, "buffers", {}).items() if v.dtype.kind == "f"}


class Lookahead:
    """The slow copy of a model's parameters (and float buffers)."""

    def __init__(self, model):
        self.params = model.flat_params.copy()
        self.buffers = {k: v.copy() for k, v in _float_buffers(model).items()}

    def update(self, model, decay: float) -> None:
        """slow <- decay slow + (1 - decay) fast, then fast <- slow (in the model)."""
        if decay != 1.0:
            self.params *= decay
            self.params += (1.0 - decay) * model.flat_params
            for k, v in _float_buffers(model).items():
                self.buffers[k] = decay * self.buffers[k] + (1.0 - decay) * v
        model.flat_params[...] = self.params
        for k, v in self.buffers.items():
            model.buffers[k] = v.copy()

    def state_dict(self) -> dict:
        return {"params": self.params, **{f"buffer.{k}": v for k, v in self.buffers.items()}}


__all__ = ["Lookahead", "LookaheadSchedule"]
