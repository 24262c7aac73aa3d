"""Optimizers: SGD with momentum and AdamW (Loshchilov & Hutter 2019), plus gradient clipping.

Both follow PyTorch's update rules line by line (``torch.optim.SGD`` / ``torch.optim.AdamW``),
so trajectories agree with PyTorch to rounding (tests/reference/test_torch_twin.py).  Their state is
a flat dict of arrays ("step", "exp_avg.<name>", ...) that ``state_dict`` /
``load_state_dict`` save and restore.

AdamW updates one flat buffer (minivit/models/flat_params.py): a model's ``params`` /
``grads`` are views into ``flat_params`` / ``flat_grads``, so a step is a dozen whole-buffer
operations done in place, element for element the same arithmetic as the per-tensor rule.
Plain dicts of arrays work too: they are packed into a buffer for the step and each entry is
replaced by its new value.  The gradient norm and clipping run on the device over the flat
gradient buffer (one reduction, the scale applied in place); nothing is read back to the host.

Weight decay is not applied to biases, norm weights (every 1-D parameter), the class token or
the position embeddings, as in timm (``no_weight_decay`` + 1-D rule).

``AdamW(..., lr_scale={name: factor})`` gives each tensor the learning rate ``lr * factor``
(its weight decay too), as PyTorch's parameter groups with ``lr * factor`` would: layer-wise
decay (minivit/training/layer_decay.py).  The factors become one vector over the flat buffer, built
once (one entry per parameter in the parameters' dtype: half the memory of the two moments),
so the step stays a few whole-buffer operations.
"""

from __future__ import annotations

from minivit.backend import array_module, host_xp
from minivit.models.flat_params import FlatDict, Layout

NO_DECAY_NAMES = ("cls_token", "pos_embed", "dist_token")
# NumPy: AdamW runs over the flat buffer in slices of this many entries, so that the dozen
# operations of a slice work in the CPU's cache (one pass over the whole buffer per operation
# is slower than the per-tensor loop); a GPU takes the whole buffer at once.
HOST_CHUNK = 1 << 15


def decays(name: str, param) -> bool:
    """True when weight decay applies to this parameter."""
    return param.ndim > 1 and name not in NO_DECAY_NAMES


def _flat(arrays: dict, layout: Layout):
    """(1-D buffer of ``arrays`` in ``layout``'s order, whether it is their own buffer)."""
    if isinstance(arrays, FlatDict) and (arrays.layout is layout or arrays.layout == layout):
        return arrays.flat, True
    return layout.pack(arrays), False


def _layout(arrays: dict) -> Layout:
    return arrays.layout if isinstance(arrays, FlatDict) else \
        Layout.of({k: tuple(v.shape) for k, v in arrays.items()})


def flat_grad_norm(flat):
    """sqrt(sum of g^2) over a 1-D buffer: a 0-d float64 array on the buffer's device."""
    xp = array_module(flat)
    return xp.sqrt(xp.vdot(flat, flat).astype("float64"))


def clip_flat_grads(flat, max_norm: float):
    """Scale the 1-D gradient buffer in place so its norm is at most max_norm; returns the
    norm before clipping (a 0-d device array, not read back).  As
    torch.nn.utils.clip_grad_norm_: factor = min(1, max_norm / (norm + 1e-6))."""
    xp = array_module(flat)
    norm = flat_grad_norm(flat)
    flat *= xp.minimum(max_norm / (norm + 1e-6), 1.0).astype(flat.dtype)
    return norm


def global_grad_norm(grads: dict) -> float:
    """sqrt(sum over all gradient entries of g^2)."""
    return float(flat_grad_norm(_flat(grads, _layout(grads))[0]))


def clip_grad_norm(grads: dict, max_norm: float) -> tuple[dict, float]:
    """Scale all gradients together so their global norm is at most max_norm.

    Returns (new grads dict, norm before clipping); the input dict is not modified."""
    layout = _layout(grads)
    flat = layout.pack(grads)                               # a copy
    norm = clip_flat_grads(flat, max_norm)
    return layout.views(flat), float(norm)


class Optimizer:
    """Shared bookkeeping: learning rate, weight decay, step count."""

    def __init__(self, params: dict, lr: float, weight_decay: float):
        if lr < 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.names = list(params)
        self.step_count = 0

    def _check(self, params, grads):
        missing = [k for k in self.names if k not in grads]
        if missing:
            raise ValueError(f"gradients missing for parameters: {missing}")

    def _check_state_names(self, state: dict) -> dict:
        """The state's arrays by key, once each named parameter is known."""
        arrays = {k: v for k, v in state.items() if k != "step"}
        for k in arrays:
            name = k.split(".", 1)[1] if "." in k else k
            if name not in self.names:
                raise ValueError(f"optimizer state names unknown parameter {name!r}")
        return arrays

    def state_dict(self) -> dict:
        """{"step": int, "<slot>.<param name>": array, ...} (arrays are not copied)."""
        return {"step": self.step_count, **self.state}

    def snapshot(self):
        """Everything a step changes, copied; ``restore`` puts it back."""
        return {k: (v.copy() if hasattr(v, "copy") else v) for k, v in self.state_dict().items()}

    def restore(self, snapshot) -> None:
        self.load_state_dict(snapshot)


class SGD(Optimizer):
    """torch.optim.SGD with momentum (dampening 0) and coupled weight decay:

        g = grad + wd * p            (decayed parameters only)
        buf = momentum * buf + g     (buf = g on the first step)
        p = p - lr * (g + momentum * buf if nesterov else buf)

    ``lr_scale={name: f}``: that tensor steps with lr * f and decays with wd / f, so that its
    decay lr * wd is unchanged (airbench's 64x learning rate of the BatchNorm biases: PyTorch
    parameter groups with lr * f and weight_decay wd / f); f = 0 freezes it (no step, no
    momentum).  The dict may be changed between steps.  ``decay_vectors=True`` decays the 1-D
    parameters too (airbench decays every parameter).
    """

    def __init__(self, params, lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False,
                 lr_scale=None, decay_vectors=False):
        super().__init__(params, lr, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov
        self.lr_scale = dict(lr_scale or {})
        unknown = [k for k in self.lr_scale if k not in self.names]
        if unknown or any(f < 0 for f in self.lr_scale.values()):
            raise ValueError(f"lr_scale: unknown parameters {unknown} or a negative factor "
                             f"in {self.lr_scale}")
        self.decay_vectors = decay_vectors
        self.state: dict = {}

    def load_state_dict(self, state: dict) -> None:
        arrays = self._check_state_names(state)
        self.step_count, self.state = int(state["step"]), arrays

    def step(self, params: dict, grads: dict, lr: float | None = None) -> None:
        """Update ``params`` (each entry gets its new value)."""
        self._check(params, grads)
        lr = self.lr if lr is None else lr
        for name in self.names:
            p, g = params[name], grads[name]
            f = self.lr_scale.get(name, 1.0)
            if f == 0:
                continue
            if self.weight_decay and (self.decay_vectors or decays(name, p)):
                g = g + (self.weight_decay / f) * p
            if self.momentum:
                key = "momentum_buffer." + name
                buf = g.copy() if key not in self.state else self.momentum * self.state[key] + g
                self.state[key] = buf
                g = g + self.momentum * buf if self.nesterov else buf
            params[name] = p - (lr * f) * g
        self.step_count += 1


class AdamW(Optimizer):
    """torch.optim.AdamW: decoupled weight decay, bias-corrected moments.

        p = p * (1 - lr * wd)                        (decayed parameters only)
        m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2
        p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    The moments are two flat buffers (``exp_avg``, ``exp_avg_sq``, None before the first
    step) in the parameters' layout; ``state`` names their views ("exp_avg.<name>", ...)."""

    SLOTS = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05,
                 lr_scale: dict | None = None):
        super().__init__(params, lr, weight_decay)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.layout = _layout(params)
        self.names = list(self.layout.names)
        self.exp_avg = self.exp_avg_sq = None
        np = host_xp()
        self._decay_host = np.concatenate(
            [np.full(params[k].size, decays(k, params[k])) for k in self.names]) \
            if self.names else np.zeros(0, bool)
        self._decay = None          # the mask on the device (first step)
        self._scale_host = self._scale = None
        if lr_scale is not None:
            unknown = sorted(set(lr_scale) - set(self.names))
            if unknown:
                raise ValueError(f"lr_scale names unknown parameters {unknown}")
            dtype = params[self.names[0]].dtype if self.names else "float32"
            self._scale_host = np.concatenate(
                [np.full(params[k].size, lr_scale.get(k, 1.0), dtype) for k in self.names]) \
                if self.names else np.zeros(0, dtype)

    @property
    def state(self) -> dict:
        if self.exp_avg is None:
            return {}
        m, v = self.layout.views(self.exp_avg), self.layout.views(self.exp_avg_sq)
        return {f"{slot}.{k}": buf[k] for k in self.names
                for slot, buf in zip(self.SLOTS, (m, v))}

    def load_state_dict(self, state: dict) -> None:
        arrays = self._check_state_names(state)
        self.step_count = int(state["step"])
        if not arrays:
            self.exp_avg = self.exp_avg_sq = None
            return
        bufs = []
        for slot in self.SLOTS:
            missing = [k for k in self.names if f"{slot}.{k}" not in arrays]
            if missing:
                raise ValueError(f"optimizer state lacks {slot} of {missing}")
            bufs.append(self.layout.pack({k: arrays[f"{slot}.{k}"] for k in self.names}))
        self.exp_avg, self.exp_avg_sq = bufs

    def snapshot(self):
        return (self.step_count, None if self.exp_avg is None else self.exp_avg.copy(),
                None if self.exp_avg_sq is None else self.exp_avg_sq.copy())

    def restore(self, snapshot) -> None:
        self.step_count, m, v = snapshot
        self.exp_avg = None if m is None else m.copy()
        self.exp_avg_sq = None if v is None else v.copy()

    def step(self, params: dict, grads: dict, lr: float | None = None) -> None:
        """Update ``params``: a model's parameter buffer in place; a plain dict gets new
        arrays."""
        self._check(params, grads)
        lr = self.lr if lr is None else lr
        self.step_count += 1
        t, b1, b2 = self.step_count, self.beta1, self.beta2
        p, in_place = _flat(params, self.layout)
        g = _flat(grads, self.layout)[0]
        xp = array_module(p)
        first = self.exp_avg is None
        if first:
            self.exp_avg, self.exp_avg_sq = xp.empty_like(g), xp.empty_like(g)
        decay = None
        if self.weight_decay and self._decay_host.any():
            if self._decay is None:
                self._decay = xp.asarray(self._decay_host)
            decay = p.dtype.type(1.0 - lr * self.weight_decay)
        if self._scale_host is not None and self._scale is None:
            self._scale = xp.asarray(self._scale_host)
        scalars = (b1, b2, decay, lr / (1.0 - b1 ** t), (1.0 - b2 ** t) ** 0.5, self.eps,
                   lr * self.weight_decay)
        n = p.size
        chunk = n if xp is not host_xp() else HOST_CHUNK
        tmp, denom = xp.empty(min(chunk, n), g.dtype), xp.empty(min(chunk, n), g.dtype)
        for a in range(0, n, chunk):
            s = slice(a, min(a + chunk, n))
            k = s.stop - s.start
            self._update(xp, p[s], g[s], self.exp_avg[s], self.exp_avg_sq[s],
                         None if decay is None else self._decay[s],
                         None if self._scale is None else self._scale[s], tmp[:k], denom[:k],
                         first, scalars)
        if not in_place:
            params.update(self.layout.views(p))

    @staticmethod
    def _update(xp, p, g, m, v, decay_mask, scale, tmp, denom, first, scalars):
        """One slice of the buffers, in place: the per-tensor rule's operations in its
        order.  scale: None, or the slice's learning-rate factors."""
        b1, b2, decay, step_size, bc2_sqrt, eps, lr_wd = scalars
        if first:
            xp.multiply(g, 1.0 - b1, out=m)                              # (1 - b1) g
            xp.multiply(g, 1.0 - b2, out=v)
            v *= g                                                       # (1 - b2) g g
        else:
            m *= b1
            xp.multiply(g, 1.0 - b1, out=tmp)
            m += tmp                                                     # b1 m + (1 - b1) g
            xp.multiply(g, 1.0 - b2, out=tmp)
            tmp *= g
            v *= b2
            v += tmp                                                     # b2 v + (1 - b2) g g
        if decay is not None and scale is None:
            p *= xp.where(decay_mask, decay, p.dtype.type(1.0))         # p (1 - lr wd)
        elif decay is not None:
            xp.multiply(scale, lr_wd, out=tmp)
            xp.multiply(tmp, decay_mask, out=tmp)
            xp.subtract(1.0, tmp, out=tmp)
            p *= tmp                                                     # p (1 - lr s wd)
        xp.sqrt(v, out=denom)
        denom /= bc2_sqrt
        denom += eps
        if scale is None:
            xp.multiply(m, step_size, out=tmp)
        else:
            xp.multiply(scale, step_size, out=tmp)
            tmp *= m                                                     # (lr s / bc1) m
        tmp /= denom
        p -= tmp                                  # p - (lr / bc1) m / (sqrt(v) / bc2 + eps)
