"""Optimizers: SGD with momentum and AdamW (Loshchilov & Hutter 2019), plus gradient clipping.

Both follow PyTorch's update rules line by line (``torch.optim.SGD`` / ``torch.optim.AdamW``),
so trajectories agree with PyTorch to rounding (tests/test_reference_torch.py).  Their state is
a flat dict of arrays ("step", "exp_avg.<name>", ...) that ``state_dict`` /
``load_state_dict`` save and restore.

Weight decay is not applied to biases, norm weights (every 1-D parameter), the class token or
the position embeddings, as in timm (``no_weight_decay`` + 1-D rule).
"""

from __future__ import annotations

from minivit.backend import array_module

NO_DECAY_NAMES = ("cls_token", "pos_embed", "dist_token")


def decays(name: str, param) -> bool:
    """True when weight decay applies to this parameter."""
    return param.ndim > 1 and name not in NO_DECAY_NAMES


def global_grad_norm(grads: dict) -> float:
    """sqrt(sum over all gradient entries of g^2)."""
    total = 0.0
    for g in grads.values():
        total += float((g * g).sum())
    return total ** 0.5


def clip_grad_norm(grads: dict, max_norm: float) -> tuple[dict, float]:
    """Scale all gradients together so their global norm is at most max_norm.

    Returns (new grads dict, norm before clipping); the input dict is not modified.
    Matches torch.nn.utils.clip_grad_norm_: factor = min(1, max_norm / (norm + 1e-6)).
    """
    norm = global_grad_norm(grads)
    factor = max_norm / (norm + 1e-6)
    if factor >= 1.0:
        return dict(grads), norm
    return {k: g * factor for k, g in grads.items()}, norm


class Optimizer:
    """Shared bookkeeping: learning rate, weight decay, state (a dict of arrays)."""

    def __init__(self, params: dict, lr: float, weight_decay: float):
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.names = list(params)
        self.step_count = 0
        self.state: dict = {}

    def _check(self, params, grads):
        missing = [k for k in self.names if k not in grads]
        if missing:
            raise ValueError(f"gradients missing for parameters: {missing}")

    def state_dict(self) -> dict:
        """{"step": int, "<slot>.<param name>": array, ...} (arrays are not copied)."""
        return {"step": self.step_count, **self.state}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step"])
        self.state = {}
        for k, v in state.items():
            if k == "step":
                continue
            slot, name = k.split(".", 1)
            if name not in self.names:
                raise ValueError(f"optimizer state names unknown parameter {name!r}")
            self.state[k] = v


class SGD(Optimizer):
    """torch.optim.SGD with momentum (dampening 0) and coupled weight decay:

        g = grad + wd * p            (decayed parameters only)
        buf = momentum * buf + g     (buf = g on the first step)
        p = p - lr * (g + momentum * buf if nesterov else buf)
    """

    def __init__(self, params, lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov

    def step(self, params: dict, grads: dict, lr: float | None = None) -> None:
        """Update ``params`` in place (each array is replaced by its new value)."""
        self._check(params, grads)
        lr = self.lr if lr is None else lr
        for name in self.names:
            p, g = params[name], grads[name]
            if self.weight_decay and decays(name, p):
                g = g + self.weight_decay * p
            if self.momentum:
                key = "momentum_buffer." + name
                buf = g.copy() if key not in self.state else self.momentum * self.state[key] + g
                self.state[key] = buf
                g = g + self.momentum * buf if self.nesterov else buf
            params[name] = p - lr * g
        self.step_count += 1


class AdamW(Optimizer):
    """torch.optim.AdamW: decoupled weight decay, bias-corrected moments.

        p = p * (1 - lr * wd)                        (decayed parameters only)
        m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2
        p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05):
        super().__init__(params, lr, weight_decay)
        self.beta1, self.beta2 = betas
        self.eps = eps

    def step(self, params: dict, grads: dict, lr: float | None = None) -> None:
        """Update ``params`` in place (each array is replaced by its new value)."""
        self._check(params, grads)
        lr = self.lr if lr is None else lr
        self.step_count += 1
        t, b1, b2 = self.step_count, self.beta1, self.beta2
        bc1, bc2_sqrt = 1.0 - b1 ** t, (1.0 - b2 ** t) ** 0.5
        for name in self.names:
            p, g = params[name], grads[name]
            xp = array_module(p)
            m = self.state.get("exp_avg." + name)
            v = self.state.get("exp_avg_sq." + name)
            m = (1.0 - b1) * g if m is None else b1 * m + (1.0 - b1) * g
            v = (1.0 - b2) * g * g if v is None else b2 * v + (1.0 - b2) * g * g
            self.state["exp_avg." + name], self.state["exp_avg_sq." + name] = m, v
            if self.weight_decay and decays(name, p):
                p = p * (1.0 - lr * self.weight_decay)
            params[name] = p - (lr / bc1) * m / (xp.sqrt(v) / bc2_sqrt + self.eps)
