"""airbench's optimisation of its net (airbench94) as one optimizer over an AirbenchNet:
Nesterov SGD with a 64x learning rate on the BatchNorm biases, every parameter decayed, the
whitening filters fixed and their bias trained for the first 3 epochs only, lookahead
(minivit/training/lookahead.py), and a triangular learning-rate schedule.

    opt = AirbenchOptimizer(model, steps_per_epoch, total_steps, *airbench_lr(batch_size))
    opt.step(model.params, model.grads)                   # lr = opt.lr * triangle(step)

airbench states its hyperparameters per 1,024 images and for a *summed* loss, decoupled from
the momentum: lr 11.5, weight decay 0.0153, momentum 0.85.  For minivit's mean loss over a
batch of B images, the same steps are (``airbench_lr``)

    sgd_lr = 11.5 B / (1024 (1 + 1 / (1 - momentum)))
    sgd_wd = 0.0153 B / (1024 (1 + 1 / (1 - momentum))) / sgd_lr = 0.0153 / 11.5

(B = 1024: lr 1.5, wd 0.00133), so that the decay per step sgd_lr * sgd_wd is airbench's.
The schedule multiplies the learning rate by a piecewise-linear triangle through (0, 0.2),
(int(0.23 total), 1) and (total, 0.07) (minivit/training/schedule.py, ``triangle``).
"""

from __future__ import annotations

from minivit.training.lookahead import Lookahead, LookaheadSchedule
from minivit.training.optim import SGD
from minivit.training.schedule import triangle

LR_PER_1024, WEIGHT_DECAY_PER_1024, MOMENTUM = 11.5, 0.0153, 0.85
BIAS_SCALE = 64.0                 # the norms' biases step 64x further, their decay unchanged
WHITEN_BIAS_EPOCHS = 3            # the whitening bias trains in the first 3 epochs only
LABEL_SMOOTHING = 0.2


def airbench_lr(batch_size: int, lr=LR_PER_1024, weight_decay=WEIGHT_DECAY_PER_1024,
                momentum=MOMENTUM) -> tuple[float, float]:
    """airbench's decoupled lr and weight decay -> (SGD lr, SGD weight decay) for a mean
    loss over batches of ``batch_size``."""
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    sgd_lr = lr * batch_size / kilostep
    return sgd_lr, weight_decay * batch_size / kilostep / sgd_lr


RECIPE_BATCH_SIZE, RECIPE_EPOCHS, RECIPE_TTA = 512, 10, 2


def recipe_defaults(batch_size: int = RECIPE_BATCH_SIZE) -> dict:
    """What ``minivit train --config airbench`` uses for the TrainConfig fields not given on
    the command line: airbench's optimisation, label smoothing, no clipping and no warmup
    (the triangle starts low), test-time augmentation level 2 in every evaluation, and 10
    epochs of batch 512 (93.28% test in 58 minutes on 2 CPU cores, docs/distillation.md)."""
    lr, weight_decay = airbench_lr(batch_size)
    return {"optimizer": "airbench", "batch_size": batch_size, "epochs": RECIPE_EPOCHS,
            "lr": lr, "weight_decay": weight_decay, "label_smoothing": LABEL_SMOOTHING,
            "clip_grad": 0.0, "warmup_epochs": 0.0, "tta": RECIPE_TTA}


class AirbenchOptimizer:
    """SGD over an AirbenchNet's parameters with airbench's groups, freezing and lookahead."""

    PREFIX = "lookahead."

    def __init__(self, model, steps_per_epoch: int, total_steps: int, lr: float,
                 weight_decay: float, momentum=MOMENTUM, lookahead=LookaheadSchedule()):
        scales = {k: BIAS_SCALE for k in model.params if ".norm" in k}
        scales["whiten.weight"] = 0.0
        self.sgd = SGD(model.params, lr, momentum, weight_decay, nesterov=True,
                       lr_scale=scales, decay_vectors=True)
        self.model, self.lr = model, lr
        self.steps_per_epoch, self.total = steps_per_epoch, total_steps
        self.schedule, self.slow = lookahead, None

    @property
    def step_count(self) -> int:
        return self.sgd.step_count

    def lr_at(self, step: int) -> float:
        return self.lr * triangle(step, self.total)

    def step(self, params, grads, lr: float | None = None) -> None:
        """One step (lr: default the triangular schedule's), then the lookahead's turn."""
        step = self.sgd.step_count
        epoch = step // self.steps_per_epoch
        self.sgd.lr_scale["whiten.bias"] = 1.0 if epoch < WHITEN_BIAS_EPOCHS else 0.0
        self.sgd.step(params, grads, self.lr_at(step) if lr is None else lr)
        done = step + 1
        if self.schedule.due(epoch, done):
            if self.slow is None:
                self.slow = Lookahead(self.model)
            else:
                self.slow.update(self.model, self.schedule.decay(done, self.total))
        if self.slow is not None and (done % self.steps_per_epoch == 0 or done == self.total):
            self.slow.update(self.model, 1.0)                 # the epoch ends on the average

    # -- state: the SGD's, and the slow weights once lookahead has started
    def state_dict(self) -> dict:
        state = self.sgd.state_dict()
        if self.slow is not None:
            state.update({self.PREFIX + k: v for k, v in self.slow.state_dict().items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        mine = {k[len(self.PREFIX):]: v for k, v in state.items() if k.startswith(self.PREFIX)}
        self.slow = None
        if mine:
            self.slow = Lookahead(self.model)
            self.slow.params[...] = mine["params"]
            self.slow.buffers = {k: mine[f"buffer.{k}"].copy() for k in self.slow.buffers}
        self.sgd.load_state_dict({k: v for k, v in state.items()
                                  if not k.startswith(self.PREFIX)})

    def snapshot(self):
        slow = self.slow and (self.slow.params.copy(), dict(self.slow.buffers))
        return self.sgd.snapshot(), slow

    def restore(self, snapshot) -> None:
        inner, slow = snapshot
        self.sgd.restore(inner)
        if slow is None:
            self.slow = None
        else:
            self.slow = self.slow or Lookahead(self.model)
            self.slow.params[...], self.slow.buffers = slow[0], dict(slow[1])


__all__ = ["AirbenchOptimizer", "LABEL_SMOOTHING", "airbench_lr", "recipe_defaults"]
