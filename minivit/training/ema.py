"""An exponential moving average of the weights, for evaluation (timm's ``ModelEmaV3``;
Polyak averaging).

    opt = WithEMA(AdamW(model.params, ...), model, decay=0.999)
    opt.step(model.params, model.grads, lr=lr)     # the optimizer's step, then the average
    with opt.ema_weights(model):                   # the model computes with the average
        evaluate(model, ...); save(model, path)

After the t-th optimizer step (t = 1, 2, ...) the average moves towards the parameters,

    decay_t = min(decay, t / (t + 9))              # the warmup: (1 + n) / (10 + n), n = t - 1
    ema     = ema + (1 - decay_t) * (params - ema) # = decay_t * ema + (1 - decay_t) * params

as three in-place operations over the flat parameter buffer (minivit/models/flat_params.py);
the decay is a Python number, so nothing is read back from the device.  The warmup
(TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``) lets the average forget the
initial weights within the first steps of a short run; it reaches ``decay`` after
9 * decay / (1 - decay) steps (8,991 for 0.999; the default recipe has 13,338).  The average
starts from the parameters as they are when it is made (after ``--init-from``).

The average is the optimizer's state too: ``state_dict`` adds "ema.<name>" views of its
buffer to the optimizer's, so a checkpoint stores it and a resume continues bit for bit;
``snapshot`` / ``restore`` cover it.  Memory: two buffers of the parameters' size (the
average and a scratch buffer).  Buffers that are not parameters (a ResNet's BatchNorm
running statistics) are not averaged: the model keeps its own while it uses the average.
"""

from __future__ import annotations

from contextlib import contextmanager

from minivit.backend import array_module

WARMUP = 10         # decay_t = min(decay, (1 + n) / (WARMUP + n)), n = updates done before


def ema_decay(decay: float, step: int) -> float:
    """The decay used by the ``step``-th update (1, 2, ...)."""
    return min(decay, step / (step + WARMUP - 1))


class WithEMA:
    """An optimizer whose step also updates a moving average of the parameters."""

    PREFIX = "ema."

    def __init__(self, optimizer, model, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        self.optimizer, self.decay = optimizer, decay
        self.layout = model.params.layout
        self.ema = model.flat_params.copy()
        self.scratch = array_module(self.ema).empty_like(self.ema)

    @property
    def step_count(self) -> int:
        return self.optimizer.step_count

    def step(self, params, grads, lr: float | None = None) -> None:
        self.optimizer.step(params, grads, lr=lr)
        w = 1.0 - ema_decay(self.decay, self.optimizer.step_count)
        flat = params.flat
        xp = array_module(flat)
        xp.subtract(flat, self.ema, out=self.scratch)
        self.scratch *= self.ema.dtype.type(w)
        self.ema += self.scratch                        # ema + (1 - d) (params - ema)

    @contextmanager
    def ema_weights(self, model):
        """The model's parameter buffer holds the average inside the block (its replicas
        share the buffer); its own parameters come back after."""
        flat = model.flat_params
        self.scratch[...] = flat
        flat[...] = self.ema
        try:
            yield model
        finally:
            flat[...] = self.scratch

    # -- state: the optimizer's, and the average's named views
    def state_dict(self) -> dict:
        views = self.layout.views(self.ema)
        return {**self.optimizer.state_dict(),
                **{self.PREFIX + k: v for k, v in views.items()}}

    def load_state_dict(self, state: dict) -> None:
        mine = {k[len(self.PREFIX):]: v for k, v in state.items() if k.startswith(self.PREFIX)}
        missing = [k for k in self.layout.names if k not in mine]
        if missing:
            raise ValueError(f"the optimizer state holds no EMA weights of {missing[:3]} (the "
                             "run was saved without --ema)")
        self.ema[...] = self.layout.pack(mine)
        self.optimizer.load_state_dict({k: v for k, v in state.items()
                                        if not k.startswith(self.PREFIX)})

    def snapshot(self):
        return self.optimizer.snapshot(), self.ema.copy()

    def restore(self, snapshot) -> None:
        inner, ema = snapshot
        self.optimizer.restore(inner)
        self.ema[...] = ema


@contextmanager
def evaluation_weights(optimizer, model):
    """The weights a run evaluates and saves: the average under a ``WithEMA``, else the
    model's own."""
    if isinstance(optimizer, WithEMA):
        with optimizer.ema_weights(model):
            yield model
    else:
        yield model


__all__ = ["WARMUP", "WithEMA", "ema_decay", "evaluation_weights"]
