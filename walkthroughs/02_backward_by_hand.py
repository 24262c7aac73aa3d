# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · The backward pass, by hand, and how we know it is right
#
# minivit has no autograd: every layer has a `*_backward(dout, cache)` written from a short
# derivation. For six operations (softmax, cross-entropy, LayerNorm, GELU, attention, the
# patch projection) this walkthrough gives the derivation, prints the code that implements it,
# and checks it twice:
#
# * against **central finite differences** in float64, $\partial f/\partial x_i \approx
#   (f(x + h e_i) - f(x - h e_i)) / 2h$ with $h = 10^{-5}$ (`minivit.reference.numerical`), where a correct
#   gradient agrees to about $10^{-9}$ and a wrong one is off by $10^{-1}$;
# * against **PyTorch autograd**, when torch is installed (agreement near $10^{-15}$ in float64).
#
# Each check uses one relative error for a whole tensor,
# $\text{rel}(a, b) = \max|a - b| / (\max|a| + \max|b|)$ (`minivit.rel_error`).
#
# A backward pass receives $\bar y = \partial \ell / \partial y$ (the gradient of the final loss
# with respect to the layer's output, "dout") and returns $\bar x = \partial \ell / \partial x$.
# To check it for any layer we use the scalar $f(x) = \sum_i y_i(x)\, \bar y_i$ for a random
# fixed $\bar y$: its gradient is exactly what the backward pass must return.
#
# The walkthrough ends with the same check for every parameter of a whole ViT
# (`minivit.reference.gradcheck`, also `minivit gradcheck` on the command line).

# %%
import inspect

from _setup import shown, walkthrough   # this checkout's minivit, FAST, OUT, save()
FAST, OUT, ASSETS, save = walkthrough("02_backward_by_hand")

import matplotlib.pyplot as plt
import numpy as np

import minivit
from minivit.reference.numerical import TOL_FD64, TOL_REF64, numerical_gradient, rel_error


try:
    import torch
    TORCH = True
    print("PyTorch", torch.__version__, "found: every check also runs against autograd")
except ImportError:
    TORCH = False
    print("PyTorch not installed: the autograd comparisons are skipped")

print("fast mode" if FAST else "full mode", "| figures in", shown(OUT))
rng = np.random.default_rng(0)
RESULTS = {}                                          # op -> (worst FD error, worst torch error)


def check(op, forward, backward, inputs, names, torch_fn=None):
    """Check backward(dout, cache) against finite differences of f = sum(forward(*inputs) * dout)
    and, if available, against PyTorch autograd of torch_fn on the same inputs (float64)."""
    out, cache = forward(*inputs)
    dout = rng.standard_normal(out.shape)
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)

    def f():
        return float((forward(*inputs)[0] * dout).sum())

    t_grads = {}
    if TORCH and torch_fn is not None:
        ts = [torch.tensor(x, requires_grad=True) for x in inputs]
        t_out = torch_fn(*ts)
        assert rel_error(out, t_out.detach().numpy()) < TOL_REF64, "forward differs from torch"
        (t_out * torch.tensor(dout)).sum().backward()
        t_grads = {n: t.grad.numpy() for n, t in zip(names, ts)}
    worst_fd = worst_t = 0.0
    for name, x, g in zip(names, inputs, grads):
        fd = rel_error(g, numerical_gradient(f, x))
        line = f"  d{name:<7} {str(x.shape):<15} vs finite differences {fd:.1e}"
        worst_fd = max(worst_fd, fd)
        assert fd < TOL_FD64, f"{op}: d{name} is wrong ({fd:.1e})"
        if name in t_grads:
            te = rel_error(g, t_grads[name])
            worst_t = max(worst_t, te)
            line += f"   vs torch {te:.1e}"
            assert te < TOL_REF64, f"{op}: d{name} differs from torch ({te:.1e})"
        print(line)
    RESULTS[op] = (worst_fd, worst_t if t_grads else None)


# %% [markdown]
# ## 1. Softmax
#
# $p_i = e^{x_i} / \sum_k e^{x_k}$ (computed as $e^{x_i - \max x}$ so that nothing overflows).
# Its Jacobian is $\partial p_i / \partial x_j = p_i(\delta_{ij} - p_j)$, so
#
# $$\bar x_j = \sum_i \bar p_i\, p_i (\delta_{ij} - p_j) = p_j \Big(\bar p_j - \sum_i \bar p_i p_i\Big).$$
#
# No $K \times K$ Jacobian is ever built: one dot product per row and an elementwise product.

# %%
from minivit.layers.softmax import softmax_backward, softmax_forward

print(inspect.getsource(softmax_backward))
check("softmax", softmax_forward, softmax_backward, [rng.standard_normal((3, 7))], ["x"],
      lambda x: torch.softmax(x, dim=-1))

# %% [markdown]
# ## 2. Cross-entropy with label smoothing
#
# With $p = \text{softmax}(x_b)$ and targets $t_b$ (one-hot of the label, mixed with the uniform
# distribution by label smoothing $\varepsilon$: $t \leftarrow (1-\varepsilon)t + \varepsilon/K$),
# the mean loss over the batch is $\ell = -\frac1B \sum_b \sum_k t_{bk} \log p_{bk}$.
# Since $\log p_k = x_k - \log\sum_j e^{x_j}$,
# $\partial \ell / \partial x_{bk} = \frac1B\big(p_{bk} \sum_j t_{bj} - t_{bk}\big) = \frac1B(p_{bk} - t_{bk})$:
# the prediction minus the target. `cross_entropy` returns the loss and this gradient together.

# %%
from minivit.layers.loss import cross_entropy, cross_entropy_device

src = inspect.getsource(cross_entropy_device)       # cross_entropy: checks, then this
print(src[src.index("    B = logits.shape[0]"):])
logits, labels = rng.standard_normal((4, 10)), np.array([3, 0, 9, 3])
loss, dlogits = cross_entropy(logits, labels, label_smoothing=0.1)
fd = rel_error(dlogits, numerical_gradient(lambda: cross_entropy(logits, labels, 0.1)[0], logits))
line = f"  loss {loss:.6f}   dlogits {dlogits.shape} vs finite differences {fd:.1e}"
assert fd < TOL_FD64
te = None
if TORCH:
    t = torch.tensor(logits, requires_grad=True)
    t_loss = torch.nn.functional.cross_entropy(t, torch.tensor(labels), label_smoothing=0.1)
    t_loss.backward()
    te = max(rel_error(loss, t_loss.item()), rel_error(dlogits, t.grad.numpy()))
    line += f"   vs torch {te:.1e}"
    assert te < TOL_REF64
print(line)
RESULTS["cross-entropy"] = (fd, te)

# %% [markdown]
# ## 3. LayerNorm
#
# Per token (over its $D$ features): $\mu = \frac1D\sum x_i$, $\sigma^2 = \frac1D \sum (x_i - \mu)^2$,
# $r = (\sigma^2 + \epsilon)^{-1/2}$, $\hat x = (x - \mu) r$, $y = \gamma \hat x + \beta$.
# The parameters are easy: $\bar\gamma = \sum_\text{tokens} \bar y \hat x$, $\bar\beta = \sum_\text{tokens} \bar y$.
# For $x$, write $g = \bar y \gamma$; since $\partial \hat x_i / \partial x_j = \frac rD\,(D\delta_{ij} - 1 - \hat x_i \hat x_j)$,
#
# $$\bar x = r\,\big(g - \text{mean}(g) - \hat x\, \text{mean}(g \hat x)\big).$$
#
# The forward pass keeps $\hat x$, $r$ and $\gamma$: all the backward pass needs.

# %%
from minivit.layers.layernorm import EPS, layernorm_backward, layernorm_forward

print(inspect.getsource(layernorm_backward))
D = 8
check("LayerNorm", layernorm_forward, layernorm_backward,
      [rng.standard_normal((2, 3, D)), 1 + 0.1 * rng.standard_normal(D), 0.1 * rng.standard_normal(D)],
      ["x", "weight", "bias"],
      lambda x, w, b: torch.nn.functional.layer_norm(x, (D,), w, b, eps=EPS))

# %% [markdown]
# ## 4. GELU
#
# $\text{GELU}(x) = x\,\Phi(x)$ with $\Phi$ the standard normal CDF, so by the product rule
# $\text{GELU}'(x) = \Phi(x) + x\,\varphi(x)$, $\varphi(x) = e^{-x^2/2}/\sqrt{2\pi}$.
# (The tanh approximation has its own derivative, in the same file.) The backward pass is
# $\bar x = \bar y\, \text{GELU}'(x)$, elementwise.

# %%
from minivit.layers.gelu import gelu_backward, gelu_forward

print(inspect.getsource(gelu_backward))
for approx in ("erf", "tanh"):
    print(f" approximate={approx!r}")
    check(f"GELU ({approx})", lambda x, a=approx: gelu_forward(x, a), gelu_backward,
          [rng.standard_normal((4, 6)) * 2], ["x"],
          lambda x, a=approx: torch.nn.functional.gelu(x, approximate="none" if a == "erf" else "tanh"))

u = np.linspace(-4, 4, 81)
_, cache = gelu_forward(u)
analytic = gelu_backward(np.ones_like(u), cache)
h = 1e-5
numeric = (gelu_forward(u + h)[0] - gelu_forward(u - h)[0]) / (2 * h)
fig, axes = plt.subplots(1, 2, figsize=(8, 3), layout="constrained")
axes[0].plot(u, gelu_forward(u)[0], label="GELU(x)")
axes[0].plot(u, analytic, label="GELU'(x), by hand")
axes[0].plot(u[::4], numeric[::4], "k.", label="finite differences")
axes[0].legend(fontsize=8)
axes[0].grid(alpha=0.3)
axes[1].semilogy(u, np.abs(analytic - numeric) + 1e-17)
axes[1].set_title("|by hand - finite differences|")
axes[1].grid(alpha=0.3)
save(fig, "01_gelu_derivative")

# %% [markdown]
# ## 5. Attention
#
# Per head, with $s = 1/\sqrt d$: $S = s\, q k^\top$, $A = \text{softmax}(S)$ row by row,
# $O = A v$. Going backwards through the three steps:
#
# $$\bar v = A^\top \bar O, \qquad \bar A = \bar O\, v^\top, \qquad
#   \bar S_{ij} = A_{ij}\Big(\bar A_{ij} - \sum_k \bar A_{ik} A_{ik}\Big), \qquad \bar q = s\, \bar S k, \qquad \bar k = s\, \bar S^\top q,$$
#
# $\bar S$ being the softmax backward of section 1, row by row (`softmax_backward`).
#
# All heads and all images go through the same batched matrix products, shapes (B, h, T, d).
# The code computes the scores transposed, $S^\top = s\, k q^\top$ (keys down, queries across),
# and takes the softmax down each column: the same numbers, but on a CPU a maximum and a sum
# over the rows of a column are elementwise passes over whole contiguous rows, much faster
# than NumPy's reductions along rows of 65 numbers. So the code reads $\bar v = (A^\top)\bar O$,
# $\bar A^\top = v \bar O^\top$, $\bar q = s\,(\bar S^\top)^\top k$ and $\bar k = s\,\bar S^\top q$.
# (The linear maps around it, `qkv` and `proj`, are `linear_backward`: $\bar W = \bar y^\top x$,
# $\bar b = \sum \bar y$, $\bar x = \bar y W$.) PyTorch's reference here is
# `scaled_dot_product_attention`.

# %%
from minivit.layers.attention import attention_core_backward, attention_core_forward

print(inspect.getsource(attention_core_backward))

shape = (2, 2, 5, 4)                                  # (B, heads, T, d)
check("attention", attention_core_forward, attention_core_backward,
      [rng.standard_normal(shape) for _ in range(3)], ["q", "k", "v"],
      lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v))

# %% [markdown]
# ## 6. The patch projection
#
# Forward: `patchify` (a reshape and transpose) then one linear map,
# $Y = X_p E^\top + b$. Backward: $\bar E = \bar Y^\top X_p$ (reshaped back to the kernel's
# (D, C, P, P) layout), $\bar b = \sum \bar Y$, $\bar X_p = \bar Y E$, and the pixels' gradient is
# `unpatchify` of $\bar X_p$ (the backward of a permutation is the inverse permutation).
# PyTorch's reference is a stride-$P$ convolution, as in timm.

# %%
from minivit.layers.patch_embed import patch_embed_backward, patch_embed_forward

print(inspect.getsource(patch_embed_backward))
P = 4
check("patch projection", patch_embed_forward, patch_embed_backward,
      [rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((5, 3, P, P)) * 0.2,
       rng.standard_normal(5)], ["images", "weight", "bias"],
      lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride=P).flatten(2).transpose(1, 2))

# %%
names = list(RESULTS)
fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
xs = np.arange(len(names))
ax.bar(xs - 0.2, [RESULTS[n][0] for n in names], 0.4, label="vs finite differences")
if TORCH:
    ax.bar(xs + 0.2, [max(RESULTS[n][1], 1e-18) for n in names], 0.4, label="vs PyTorch")
ax.axhline(TOL_FD64, color="C0", ls="--", lw=1, label=f"threshold {TOL_FD64:g}")
ax.axhline(TOL_REF64, color="C1", ls="--", lw=1, label=f"threshold {TOL_REF64:g}")
ax.set_yscale("log")
ax.set_xticks(xs, names, rotation=20, fontsize=8)
ax.set_ylabel("relative error (worst input)")
ax.legend(fontsize=7, ncol=2)
ax.set_title("every hand-written backward pass, float64")
save(fig, "02_op_errors")

# %% [markdown]
# ## 7. The whole ViT
#
# Finally the same two checks for the loss of a whole model: every parameter tensor and the
# input images. `minivit.reference.gradcheck.gradcheck` runs the model's `backward`, then, for a sample of
# entries of each tensor, two forward passes with that entry moved by $\pm h$ (float64), and,
# when torch is installed, PyTorch autograd on the full tensors of a timm-structured copy of the
# model (`minivit/reference/torch_twin.py`). The command line does the same: `minivit gradcheck`.

# %%
from minivit import ViTConfig, create_model
from minivit.reference.gradcheck import gradcheck

if FAST:
    cfg = ViTConfig(image_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, mlp_dim=32,
                    name="tiny")
    samples = 3
else:
    cfg, samples = minivit.get_config("cifar-nano"), 10
model = create_model(cfg, seed=0, dtype="float64")
images = rng.standard_normal((2, 3, cfg.image_size, cfg.image_size))
labels = np.array([1, 7])
print(f"{model!r}, {samples} entries per tensor")
print(f"{'tensor':<26} {'shape':<14} {'vs FD':>9} {'vs torch':>9}")


def show(row, report):
    t = "-" if row.torch_error is None else f"{row.torch_error:.1e}"
    print(f"{row.name:<26} {'x'.join(map(str, row.shape)):<14} {row.fd_error:>9.1e} {t:>9}"
          + ("  (~0)" if row.fd_near_zero else ""))


report = gradcheck(model, images, labels, samples=samples, on_row=show if FAST else None)
if not FAST:                                          # print every 5th row; all are in the figure
    for row in report.rows[:-1:5] + report.rows[-1:]:
        show(row, report)
print(f"worst vs finite differences {report.worst_fd[0]:.1e} ({report.worst_fd[1]}), "
      + (f"worst vs torch {report.worst_torch[0]:.1e} ({report.worst_torch[1]})"
         if report.torch_used else f"PyTorch skipped ({report.torch_missing})"))
assert report.ok

fig, ax = plt.subplots(figsize=(9, 3.2), layout="constrained")
xs = np.arange(len(report.rows))
ax.semilogy(xs, [r.fd_error for r in report.rows], "o", ms=3, label="vs finite differences")
if report.torch_used:
    ax.semilogy(xs, [max(r.torch_error, 1e-18) for r in report.rows], "s", ms=3, label="vs PyTorch")
ax.axhline(report.fd_tol, ls="--", color="C0", lw=1, label=f"threshold vs FD, {report.fd_tol:g}")
if report.torch_used:
    ax.axhline(report.torch_tol, ls="--", color="C1", lw=1,
               label=f"threshold vs PyTorch, {report.torch_tol:g}")
ax.set_xlabel("tensor (patch embedding ... blocks ... head, images last)")
ax.set_ylabel("relative error")
ax.set_title(f"every gradient of {cfg.name} (float64)")
ax.legend(fontsize=7, ncol=2, loc="center right")
save(fig, "03_whole_vit")

# %% [markdown]
# All below threshold: the hand-written backward passes compute the gradient of the loss.
# Run `minivit gradcheck --config cifar-small` or `minivit --backend cupy gradcheck` to check
# bigger models or the GPU.
