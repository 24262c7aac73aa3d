"""Check every gradient of a whole ViT: against finite differences, and against PyTorch.

For one small batch the model computes its loss and, by hand, the gradient of the loss with
respect to every parameter tensor and to the input images.  Each of those gradients is then
compared with two independent answers:

* central finite differences, (L(x + h e_i) - L(x - h e_i)) / 2h, on a deterministic random
  sample of entries of each tensor (``minivit.reference.numerical.sample_indices``): two
  forward passes per entry, always in float64 (a float32 model is copied to float64 for
  this).  A perturbed parameter of block i only changes what comes after it, so those passes
  start at block i (``StagedLoss``);
* PyTorch autograd on the full tensor (``minivit/reference/torch_twin.py``), when torch is
  installed.  PyTorch is optional: it is imported here only inside ``torch_errors``.

Each comparison is one relative error, ``minivit.reference.numerical.rel_error``, checked
against the thresholds of ``minivit.reference.numerical``:

    finite differences      TOL_FD64 (1e-6) for a float64 model; TOL_REF32 (1e-5) for float32
    PyTorch                 TOL_REF64 (1e-10) for float64;       TOL_REF32 (1e-5) for float32

(for a float32 model the float32 gradients are compared with float64 finite differences).
Sampled gradients too small for finite differences to resolve are judged by their absolute
error instead (``fd_scale_floor``).  Dropout and stochastic depth must be off: the loss must be
a fixed function.  A model with patch dropout (the training recipe's) is checked in training
mode with one fixed mask: every forward pass draws it from a generator seeded ``mask_seed``
anew (``forward_fixed``), and PyTorch gathers the same tokens (``patch_keep_indices``).

    report = gradcheck(create_model("cifar-nano", dtype="float64"), images, labels)
    report.ok, report.worst_fd, report.worst_torch
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from minivit.backend import array_module, rng, to_numpy
from minivit.layers.block import block_forward
from minivit.layers.layernorm import layernorm_forward
from minivit.layers.linear import linear_forward
from minivit.layers.loss import cross_entropy
from minivit.layers.masking import masking_noise, random_masking
from minivit.layers.patch_dropout import patch_dropout_forward
from minivit.layers.tokens import embed_tokens_forward
from minivit.models.vit import VisionTransformer
from minivit.models.vit_config import STOCHASTIC_FIELDS
from minivit.reference.numerical import (
    TOL_FD64,
    TOL_REF32,
    TOL_REF64,
    numerical_gradient,
    rel_error,
    sample_indices,
)

IMAGES = "images"          # the row name of the input-image gradient


@dataclass
class Row:
    """One tensor's line of the report."""
    name: str
    shape: tuple
    checked: int                    # entries compared with finite differences
    fd_error: float | None = None
    torch_error: float | None = None
    fd_near_zero: bool = False      # sampled gradient below the finite-difference noise floor

    def ok(self, fd_tol: float, torch_tol: float) -> bool:
        return ((self.fd_error is None or self.fd_error < fd_tol)
                and (self.torch_error is None or self.torch_error < torch_tol))


@dataclass
class Report:
    rows: list
    fd_tol: float
    torch_tol: float
    dtype: str
    loss: float
    torch_used: bool = False
    torch_missing: str = ""                  # why torch was not used, when it was wanted
    outputs: dict = field(default_factory=dict)   # "logits"/"loss" -> rel error vs torch
    seconds: dict = field(default_factory=dict)   # "analytic"/"torch"/"fd" -> wall time

    @property
    def worst_fd(self) -> tuple[float, str]:
        return max(((r.fd_error, r.name) for r in self.rows if r.fd_error is not None),
                   default=(0.0, "-"))

    @property
    def worst_torch(self) -> tuple[float, str]:
        errs = [(r.torch_error, r.name) for r in self.rows if r.torch_error is not None]
        errs += [(e, k) for k, e in self.outputs.items()]
        return max(errs, default=(0.0, "-"))

    @property
    def ok(self) -> bool:
        return (all(r.ok(self.fd_tol, self.torch_tol) for r in self.rows)
                and all(e < self.torch_tol for e in self.outputs.values()))


def thresholds(dtype: str) -> tuple[float, float]:
    """(finite-difference tolerance, PyTorch tolerance) for a model of this dtype."""
    return (TOL_FD64, TOL_REF64) if dtype == "float64" else (TOL_REF32, TOL_REF32)


def check_deterministic(config) -> None:
    """Raise ValueError if the model's loss would be random: dropout, attention dropout or
    stochastic depth on (patch dropout is allowed: its mask is held fixed)."""
    on = {k: getattr(config, k) for k in STOCHASTIC_FIELDS
          if k != "patch_drop_rate" and getattr(config, k)}
    if on:
        raise ValueError("a gradient check needs a fixed loss; turn off "
                         + ", ".join(f"{k}={v:g}" for k, v in on.items()))


def forward_fixed(model: VisionTransformer, images, mask_seed=0):
    """model.forward as a fixed function of the parameters and images: in evaluation mode, or,
    with patch dropout, in training mode with the mask drawn from a generator seeded
    ``mask_seed`` anew on every call (the same tokens dropped each time)."""
    if not model.config.patch_drop_rate:
        return model.forward(images, train=False)
    model.rng = rng(mask_seed, array_module(images))
    return model.forward(images, train=True)


def patch_keep_indices(config, images, mask_seed=0):
    """(B, K) the patch tokens ``forward_fixed`` keeps (None without patch dropout): the same
    draw from the same seed, for PyTorch's twin."""
    if not config.patch_drop_rate:
        return None
    noise = masking_noise(rng(mask_seed, array_module(images)), images.shape[0],
                          config.num_patches)
    return random_masking(noise, config.patch_drop_rate)[0]


def analytic_gradients(model: VisionTransformer, images, labels, label_smoothing=0.0,
                       mask_seed=0):
    """(loss, logits, {name: grad} with IMAGES last), from minivit's own backward pass."""
    logits = forward_fixed(model, images, mask_seed)
    loss, dlogits = cross_entropy(logits, labels, label_smoothing)
    dimages = model.backward(dlogits)
    return loss, logits, {**model.grads, IMAGES: dimages}


def torch_errors(model: VisionTransformer, images, labels, grads, logits, loss,
                 label_smoothing=0.0, mask_seed=0):
    """Relative errors against PyTorch autograd: ({tensor name: error}, {"logits"/"loss": error}).

    Raises ImportError when PyTorch is not installed.
    """
    from minivit.reference.torch_twin import reference_gradients  # imports torch

    t_logits, t_loss, t_grads, t_dimages = reference_gradients(
        model.config, model.params, images, labels, label_smoothing,
        keep_indices=patch_keep_indices(model.config, images, mask_seed))
    t_grads[IMAGES] = t_dimages
    errors = {k: rel_error(g, t_grads[k]) for k, g in grads.items()}
    return errors, {"logits": rel_error(logits, t_logits), "loss": rel_error(loss, t_loss)}


def float64_copy(model: VisionTransformer) -> VisionTransformer:
    """The same model in float64 (itself when it already is): finite differences need it."""
    if model.dtype.name == "float64":
        return model
    return VisionTransformer(model.config,
                             {k: v.astype("float64") for k, v in model.params.items()})


class StagedLoss:
    """The loss of a float64 model as a function of its parameters, for finite differences.

    Perturbing a parameter of block i (or of the final norm or head) cannot change anything the
    layers before it compute.  So the input of every block is computed once, and the two forward
    passes per perturbed entry start from the block that owns the entry: on average this halves
    the cost of the check.  Tensors used before the first block (patch embedding, class token,
    position embeddings, the images) go through the full ``model.forward``.

    The shortened forward pass repeats the last lines of ``VisionTransformer.forward``; the
    constructor checks that it still gives the same loss as the model, bit for bit in practice.
    """

    def __init__(self, model: VisionTransformer, images, labels, label_smoothing=0.0,
                 mask_seed=0):
        self.model, self.images, self.labels = model, images, labels
        self.label_smoothing, self.mask_seed = label_smoothing, mask_seed
        cfg, p = model.config, model.params
        x, _ = model.embed_patches(images)    # P x P patches or a convolutional stem
        z, _ = embed_tokens_forward(x, p["cls_token"], p["pos_embed"])
        z, _ = patch_dropout_forward(z, cfg.patch_drop_rate, rng(mask_seed, array_module(z)))
        self.block_inputs = [z]                # block_inputs[i]: input of block i (depth: of norm)
        for i in range(cfg.depth):
            z, _ = block_forward(z, model.block_params(i), cfg.num_heads, cfg.gelu)
            self.block_inputs.append(z)
        self.loss0 = self.full()
        staged = self.from_stage(0)
        if abs(self.loss0 - staged) > 1e-12 * max(1.0, abs(self.loss0)):
            raise RuntimeError(f"gradcheck's staged forward pass gives loss {staged!r} but "
                               f"VisionTransformer.forward gives {self.loss0!r}; update StagedLoss")

    def full(self) -> float:
        """The loss through the model's own forward pass."""
        logits = forward_fixed(self.model, self.images, self.mask_seed)
        return cross_entropy(logits, self.labels, self.label_smoothing)[0]

    def from_stage(self, start: int) -> float:
        """The loss recomputed from block ``start`` on (start = depth: from the final norm)."""
        cfg, p = self.model.config, self.model.params
        z = self.block_inputs[start]
        for i in range(start, cfg.depth):
            z, _ = block_forward(z, self.model.block_params(i), cfg.num_heads, cfg.gelu)
        z, _ = layernorm_forward(z, p["norm.weight"], p["norm.bias"])
        pooled = z[:, 0] if cfg.pool == "token" else z[:, 1:].mean(axis=1)
        logits, _ = linear_forward(pooled, p["head.weight"], p["head.bias"])
        return cross_entropy(logits, self.labels, self.label_smoothing)[0]

    def for_tensor(self, name: str):
        """(the array to perturb, a function computing the loss after perturbing it)."""
        if name == IMAGES:
            return self.images, self.full
        x = self.model.params[name]
        if name.startswith("blocks."):
            start = int(name.split(".")[1])
        elif name.startswith(("norm.", "head.")):
            start = self.model.config.depth
        else:                                  # patch_embed.*, cls_token, pos_embed
            return x, self.full
        return x, lambda: self.from_stage(start)


def fd_scale_floor(loss: float, h: float) -> float:
    """The smallest gradient scale that finite differences can judge by relative error.

    Each loss value is rounded, so a central difference carries an absolute error of about
    eps |L| / h (eps = 2.2e-16 in float64; ~1e-11 for h = 1e-5).  Where the sampled gradient
    entries are all far smaller than ~1e4 times that, their relative error measures only this
    noise: the key part of ``attn.qkv.bias``, for one, has an exactly zero gradient (adding a
    constant to a row of scores does not change its softmax).  ``rel_error``'s ``tiny`` puts
    this floor under its denominator: such entries are then judged by their absolute error,
    which must stay below floor * threshold, a margin of 10 above the rounding noise.
    """
    return 10.0 * 2.2e-16 * max(1.0, abs(loss)) / h / TOL_FD64


def finite_difference_error(staged: StagedLoss, name, grad, samples=20, seed=0, h=1e-5):
    """(entries checked, rel error, scale) of ``grad`` against central differences of the loss.

    ``name`` picks the tensor perturbed: a parameter of the model, or IMAGES.  The tensor is
    modified in place and restored; only the sampled entries are compared.  ``scale`` is
    max|analytic| + max|numeric| over them, the denominator of the relative error unless it is
    below ``fd_scale_floor``.
    """
    x, loss = staged.for_tensor(name)
    idx = sample_indices(x.size, samples, seed=seed)
    numeric = to_numpy(numerical_gradient(loss, x, h=h, indices=idx))
    analytic = to_numpy(grad).reshape(-1)[idx].astype("float64")
    scale = float(abs(analytic).max() + abs(numeric).max())
    err = rel_error(analytic, numeric, tiny=fd_scale_floor(staged.loss0, h))
    return len(idx), err, scale


def gradcheck(model: VisionTransformer, images, labels, samples=20, seed=0, h=1e-5,
              use_torch=True, label_smoothing=0.0, on_row=None) -> Report:
    """Check every parameter gradient and the image gradient; see the module docstring.

    on_row(row, report) is called as each row is finished (the CLI prints the table as it goes).
    ``seed`` also seeds the patch dropout mask of a model that has one.
    """
    check_deterministic(model.config)
    dtype = model.dtype.name
    fd_tol, torch_tol = thresholds(dtype)

    t0 = time.perf_counter()
    loss, logits, grads = analytic_gradients(model, images, labels, label_smoothing, seed)
    report = Report(rows=[], fd_tol=fd_tol, torch_tol=torch_tol, dtype=dtype, loss=loss)
    report.seconds["analytic"] = time.perf_counter() - t0

    t_err = {}
    if use_torch:
        t0 = time.perf_counter()
        try:
            t_err, report.outputs = torch_errors(model, images, labels, grads, logits, loss,
                                                 label_smoothing, seed)
            report.torch_used = True
        except ImportError as e:
            report.torch_missing = str(e)
        report.seconds["torch"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    images64 = images.astype("float64")               # a copy: perturbing it is harmless
    staged = StagedLoss(float64_copy(model), images64, labels, label_smoothing, seed)
    for i, (name, g) in enumerate(grads.items()):
        # a different (but fixed) sample of entries for each tensor
        checked, fd, scale = finite_difference_error(staged, name, g, samples, seed=seed + i,
                                                     h=h)
        row = Row(name, tuple(g.shape), checked, fd, t_err.get(name),
                  fd_near_zero=scale < fd_scale_floor(staged.loss0, h))
        report.rows.append(row)
        if on_row is not None:
            on_row(row, report)
    report.seconds["fd"] = time.perf_counter() - t0
    return report


__all__ = ["IMAGES", "Report", "Row", "StagedLoss", "analytic_gradients", "check_deterministic",
           "fd_scale_floor", "finite_difference_error", "forward_fixed", "patch_keep_indices",
           "float64_copy", "gradcheck", "thresholds", "torch_errors"]
