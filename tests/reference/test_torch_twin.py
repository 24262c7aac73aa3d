"""minivit agrees with PyTorch to the last digit (issue 3).

Every op, the whole ViT (logits, loss, the gradient of every parameter and of the images) and
ten optimizer steps are compared with PyTorch, which computes its gradients by autograd from
``tests/torch_vit.py`` (timm's module names).  One relative error per tensor,
``minivit.reference.numerical.rel_error``, must stay below

    float64: TOL_REF64 = 1e-10        float32: TOL_REF32 = 1e-5

Upstream gradients are random, so each backward pass is checked as a full vector-Jacobian
product.  Tests taking ``xp`` run on NumPy and, where a GPU is present, on CuPy.
"""

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch not installed: pip install torch==2.13.0 (CPU build) to run the "
                    "reference tests")
import torch.nn.functional as F  # noqa: E402
from torch_vit import build_torch_vit, from_torch, reference_gradients, to_torch  # noqa: E402

import minivit  # noqa: E402
from minivit.backend import to_device  # noqa: E402
from minivit.layers.attention import attention_core_backward, attention_core_forward  # noqa: E402
from minivit.layers.conv import conv2d_backward, conv2d_forward  # noqa: E402
from minivit.layers.gelu import gelu_backward, gelu_forward  # noqa: E402
from minivit.layers.layernorm import layernorm_backward, layernorm_forward  # noqa: E402
from minivit.layers.linear import linear_backward, linear_forward  # noqa: E402
from minivit.layers.loss import cross_entropy  # noqa: E402
from minivit.layers.masking import masking_noise, random_masking  # noqa: E402
from minivit.layers.patch_embed import patch_embed_backward, patch_embed_forward  # noqa: E402
from minivit.layers.softmax import softmax_backward, softmax_forward  # noqa: E402
from minivit.models.init import param_shapes  # noqa: E402
from minivit.models.vit_config import ViTConfig  # noqa: E402
from minivit.reference.numerical import TOL_REF32, TOL_REF64, rel_error  # noqa: E402
from minivit.training.optim import decays  # noqa: E402
from minivit.training.schedule import warmup_cosine  # noqa: E402

pytestmark = pytest.mark.torch

DTYPES = ["float64", "float32"]
TOL = {"float64": TOL_REF64, "float32": TOL_REF32}

# A small ViT, so that the whole-model tests take milliseconds: 16 px, 4 x 4 patches (16 tokens
# + class token), D 32, 2 blocks of 4 heads, MLP 64, 10 classes.
SMALL = ViTConfig(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, mlp_dim=64,
                  num_classes=10, name="small")


def randn(xp, *shape, seed=0, scale=1.0, dtype="float64"):
    """Deterministic normal array on backend xp (drawn on the host)."""
    a = np.random.default_rng(seed).standard_normal(shape) * scale
    return xp.asarray(a.astype(dtype))


def leaf(x):
    """A torch leaf tensor holding a copy of x, recording gradients."""
    return to_torch(x).requires_grad_(True)


def assert_close(ours, theirs, dtype, what):
    err = rel_error(ours, from_torch(theirs) if isinstance(theirs, torch.Tensor) else theirs)
    assert err < TOL[dtype], f"{what}: rel error {err:.3e} >= {TOL[dtype]:g} ({dtype})"
    return err


# ==================================================================== single ops

@pytest.mark.parametrize("dtype", DTYPES)
def test_linear(xp, dtype):
    x, w, b = randn(xp, 2, 5, 7, dtype=dtype), randn(xp, 4, 7, seed=1, dtype=dtype), \
        randn(xp, 4, seed=2, dtype=dtype)
    y, cache = linear_forward(x, w, b)
    dy = randn(xp, *y.shape, seed=3, dtype=dtype)
    dx, dw, db = linear_backward(dy, cache)
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ty = F.linear(tx, tw, tb)
    ty.backward(to_torch(dy))
    for name, ours, theirs in [("y", y, ty), ("dx", dx, tx.grad), ("dw", dw, tw.grad),
                               ("db", db, tb.grad)]:
        assert_close(ours, theirs, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm(xp, dtype):
    D = 16
    # features with an offset and a spread, as the residual stream has
    x = randn(xp, 3, 5, D, dtype=dtype, scale=3.0) + randn(xp, 3, 5, 1, seed=9, dtype=dtype)
    w, b = randn(xp, D, seed=1, dtype=dtype), randn(xp, D, seed=2, dtype=dtype)
    y, cache = layernorm_forward(x, w, b)
    dy = randn(xp, *y.shape, seed=3, dtype=dtype)
    dx, dw, db = layernorm_backward(dy, cache)
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ty = F.layer_norm(tx, (D,), tw, tb, eps=1e-6)
    ty.backward(to_torch(dy))
    for name, ours, theirs in [("y", y, ty), ("dx", dx, tx.grad), ("dweight", dw, tw.grad),
                               ("dbias", db, tb.grad)]:
        assert_close(ours, theirs, dtype, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate,torch_name", [("erf", "none"), ("tanh", "tanh")])
def test_gelu(xp, dtype, approximate, torch_name):
    x = randn(xp, 4, 257, dtype=dtype, scale=3.0)          # reaches far into both tails
    y, cache = gelu_forward(x, approximate)
    dy = randn(xp, *y.shape, seed=1, dtype=dtype)
    dx = gelu_backward(dy, cache)
    tx = leaf(x)
    ty = F.gelu(tx, approximate=torch_name)
    ty.backward(to_torch(dy))
    assert_close(y, ty, dtype, f"gelu({approximate})")
    assert_close(dx, tx.grad, dtype, f"gelu({approximate}) backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, -2])
def test_softmax(xp, dtype, axis):
    x = randn(xp, 3, 4, 9, dtype=dtype, scale=5.0)
    p, cache = softmax_forward(x, axis=axis)
    dp = randn(xp, *p.shape, seed=1, dtype=dtype)
    dx = softmax_backward(dp, cache, axis=axis)
    tx = leaf(x)
    tp = F.softmax(tx, dim=axis)
    tp.backward(to_torch(dp))
    assert_close(p, tp, dtype, "softmax")
    assert_close(dx, tx.grad, dtype, "softmax backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["explicit", "sdpa"])
def test_attention_core(xp, dtype, form):
    B, H, T, d = 2, 3, 7, 8
    q, k, v = (randn(xp, B, H, T, d, seed=s, dtype=dtype) for s in (0, 1, 2))
    out, cache = attention_core_forward(q, k, v)
    probs = cache.probs
    dout = randn(xp, *out.shape, seed=3, dtype=dtype)
    dq, dk, dv = attention_core_backward(dout, cache)
    tq, tk, tv = leaf(q), leaf(k), leaf(v)
    if form == "sdpa":
        tout = F.scaled_dot_product_attention(tq, tk, tv)
    else:                                              # softmax(q k^T / sqrt(d)) v, written out
        tprobs = torch.softmax(tq @ tk.transpose(-2, -1) / d ** 0.5, dim=-1)
        assert_close(probs, tprobs, dtype, "attention probabilities")
        tout = tprobs @ tv
    tout.backward(to_torch(dout))
    for name, ours, theirs in [("out", out, tout), ("dq", dq, tq.grad), ("dk", dk, tk.grad),
                               ("dv", dv, tv.grad)]:
        assert_close(ours, theirs, dtype, f"{form}: {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("targets", ["hard", "soft"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(xp, dtype, targets, smoothing):
    B, K = 6, 5
    logits = randn(xp, B, K, dtype=dtype, scale=4.0)
    if targets == "hard":
        labels = xp.asarray(np.random.default_rng(1).integers(0, K, size=B))
    else:                                              # probabilities, as mixup/cutmix make them
        e = np.exp(np.random.default_rng(1).standard_normal((B, K)) * 2.0)
        labels = xp.asarray((e / e.sum(axis=1, keepdims=True)).astype(dtype))
    loss, dlogits = cross_entropy(logits, labels, label_smoothing=smoothing)
    tl = leaf(logits)
    tloss = F.cross_entropy(tl, to_torch(labels), label_smoothing=smoothing)
    tloss.backward()
    assert_close(loss, tloss.item(), dtype, "loss")
    assert_close(dlogits, tl.grad, dtype, "dlogits")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("H,W", [(8, 8), (8, 12)])
def test_patch_projection_is_conv2d(xp, dtype, H, W):
    B, C, P, D = 2, 3, 4, 6
    x = randn(xp, B, C, H, W, dtype=dtype)
    w, b = randn(xp, D, C, P, P, seed=1, dtype=dtype), randn(xp, D, seed=2, dtype=dtype)
    tokens, cache = patch_embed_forward(x, w, b)
    dtokens = randn(xp, *tokens.shape, seed=3, dtype=dtype)
    dx, dw, db = patch_embed_backward(dtokens, cache)
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    ttokens = F.conv2d(tx, tw, tb, stride=P).flatten(2).transpose(1, 2)   # (B, N, D), row-major
    ttokens.backward(to_torch(dtokens))
    for name, ours, theirs in [("tokens", tokens, ttokens), ("dimages", dx, tx.grad),
                               ("dweight", dw, tw.grad), ("dbias", db, tb.grad)]:
        assert_close(ours, theirs, dtype, name)


# ==================================================================== the whole model

def _batch(xp, cfg, dtype, B=3, seed=0):
    gen = np.random.default_rng(seed)
    images = to_device(gen.standard_normal((B, cfg.in_chans, cfg.image_size, cfg.image_size)),
                       dtype)
    labels = to_device(gen.integers(0, cfg.num_classes, size=B))
    return images, labels


def test_torch_model_has_minivit_names_shapes_and_order():
    tm = build_torch_vit(SMALL)
    ours = param_shapes(SMALL)
    theirs = {k: tuple(v.shape) for k, v in tm.state_dict().items()}
    assert list(theirs) == list(ours)                 # timm's state-dict order
    assert theirs == ours


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool,gelu,smoothing", [
    ("token", "erf", 0.0), ("mean", "erf", 0.0), ("token", "erf", 0.1), ("mean", "erf", 0.1),
    ("token", "tanh", 0.0), ("mean", "tanh", 0.1)])
@pytest.mark.parametrize("conv_stem", [(), (8, 16)], ids=["patchify", "conv-stem"])
def test_model_logits_loss_and_every_gradient(xp, dtype, pool, gelu, smoothing, conv_stem):
    model = minivit.create_model(SMALL, seed=1, dtype=dtype, pool=pool, gelu=gelu,
                                 conv_stem=conv_stem)
    images, labels = _batch(xp, model.config, dtype)
    logits = model.forward(images)
    loss, dlogits = cross_entropy(logits, labels, label_smoothing=smoothing)
    dimages = model.backward(dlogits)

    t_logits, t_loss, t_grads, t_dimages = reference_gradients(
        model.config, model.params, images, labels, label_smoothing=smoothing)
    assert_close(logits, t_logits, dtype, "logits")
    assert_close(loss, t_loss, dtype, "loss")
    assert_close(dimages, t_dimages, dtype, "d images")
    assert list(t_grads) == list(model.grads)
    for name, g in model.grads.items():
        assert_close(g, t_grads[name], dtype, f"d {name}")


@pytest.mark.parametrize("pool", ["token", "mean"])
def test_model_against_fused_attention_and_soft_targets(xp, pool):
    """Same model, PyTorch side through F.scaled_dot_product_attention, mixup-style targets."""
    model = minivit.create_model(SMALL, seed=2, dtype="float64", pool=pool)
    images, _ = _batch(xp, model.config, "float64", seed=3)
    e = np.exp(np.random.default_rng(4).standard_normal((images.shape[0], 10)))
    targets = to_device(e / e.sum(axis=1, keepdims=True), "float64")
    loss, dlogits = cross_entropy(model.forward(images), targets, label_smoothing=0.1)
    dimages = model.backward(dlogits)
    _, t_loss, t_grads, t_dimages = reference_gradients(
        model.config, model.params, images, targets, label_smoothing=0.1, fused_attn=True)
    assert_close(loss, t_loss, "float64", "loss")
    assert_close(dimages, t_dimages, "float64", "d images")
    for name, g in model.grads.items():
        assert_close(g, t_grads[name], "float64", f"d {name}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool", ["token", "mean"])
def test_model_with_patch_dropout(xp, dtype, pool):
    """Training mode with PatchDropout: PyTorch gathers the same patch tokens (timm's
    PatchDropout, indices drawn here from the same generator state) and agrees everywhere."""
    model = minivit.create_model(SMALL, seed=1, dtype=dtype, pool=pool, patch_drop_rate=0.5)
    images, labels = _batch(xp, model.config, dtype)
    model.rng = minivit.backend.rng(7, minivit.backend.array_module(images))
    logits = model.forward(images, train=True)
    loss, dlogits = cross_entropy(logits, labels, label_smoothing=0.1)
    dimages = model.backward(dlogits)

    noise = masking_noise(minivit.backend.rng(7, minivit.backend.array_module(images)),
                          images.shape[0], model.config.num_patches)
    keep, _, _ = random_masking(noise, 0.5)
    assert keep.shape[1] == model.config.num_patches // 2
    t_logits, t_loss, t_grads, t_dimages = reference_gradients(
        model.config, model.params, images, labels, label_smoothing=0.1, keep_indices=keep)
    assert_close(logits, t_logits, dtype, "logits")
    assert_close(loss, t_loss, dtype, "loss")
    assert_close(dimages, t_dimages, dtype, "d images")
    for name, g in model.grads.items():
        assert_close(g, t_grads[name], dtype, f"d {name}")


# ==================================================================== optimizer trajectories

STEPS, WARMUP = 10, 3
TRAIN_CFG = SMALL.replace(depth=1, name="train-small")
OPTIMIZERS = {
    #  name              minivit class, torch class, keyword arguments (same for both)
    "adamw": (minivit.AdamW, torch.optim.AdamW,
              dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)),
    "sgd-momentum": (minivit.SGD, torch.optim.SGD,
                     dict(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=False)),
    "sgd-nesterov": (minivit.SGD, torch.optim.SGD,
                     dict(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True)),
}


@pytest.mark.slow
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_ten_steps_follow_the_same_trajectory(xp, opt_name):
    """Ten steps, warmup-cosine schedule, weight decay on the decayed parameters only, global
    grad-norm clipping; each side computes its own gradients every step."""
    ours_cls, torch_cls, kw = OPTIMIZERS[opt_name]
    base_lr, min_lr, max_norm, smoothing = kw["lr"], kw["lr"] * 0.1, 0.5, 0.1

    def lr_at(step):
        return warmup_cosine(step, base_lr, STEPS, WARMUP, min_lr)

    model = minivit.create_model(TRAIN_CFG, seed=3, dtype="float64")
    opt = ours_cls(model.params, **kw)

    tm = build_torch_vit(model.config, model.params)
    named = dict(tm.named_parameters())
    decay = [p for n, p in named.items() if decays(n, model.params[n])]
    no_decay = [p for n, p in named.items() if not decays(n, model.params[n])]
    assert decay and no_decay
    t_opt = torch_cls([{"params": decay, "weight_decay": kw["weight_decay"]},
                       {"params": no_decay, "weight_decay": 0.0}], **kw)
    # LambdaLR multiplies the base lr by the factor, so hand it the same function over base_lr
    sched = torch.optim.lr_scheduler.LambdaLR(t_opt, lambda step: lr_at(step) / base_lr)

    clipped = 0
    for step in range(STEPS):
        images, labels = _batch(xp, model.config, "float64", B=4, seed=100 + step)
        # minivit: its own forward, backward, clipping and update
        loss, dlogits = cross_entropy(model.forward(images, train=True), labels, smoothing)
        model.backward(dlogits)
        grads, norm = minivit.clip_grad_norm(model.grads, max_norm)
        opt.step(model.params, grads, lr=lr_at(step))
        # PyTorch: autograd, clip_grad_norm_, the optimizer and the scheduler
        t_opt.zero_grad()
        t_loss = F.cross_entropy(tm(to_torch(images)), to_torch(labels), label_smoothing=smoothing)
        t_loss.backward()
        t_norm = torch.nn.utils.clip_grad_norm_(tm.parameters(), max_norm)
        assert t_opt.param_groups[0]["lr"] == pytest.approx(lr_at(step), rel=1e-14)
        t_opt.step()
        sched.step()

        clipped += norm > max_norm
        assert_close(loss, t_loss.item(), "float64", f"step {step}: loss")
        assert_close(norm, t_norm.item(), "float64", f"step {step}: grad norm")
        for name, p in model.params.items():
            assert_close(p, named[name], "float64", f"step {step}: {name}")
    assert clipped >= 1, "max_norm never clipped: the test would not cover clipping"


# ==================================================================== the convolutional stem

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("stride,padding,k", [(2, 1, 3), (1, 1, 3), (2, 0, 3), (1, 0, 1)])
def test_conv2d_matches_torch(xp, dtype, stride, padding, k):
    x = randn(xp, 2, 3, 9, 8, dtype=dtype)
    w, b = randn(xp, 5, 3, k, k, seed=1, dtype=dtype), randn(xp, 5, seed=2, dtype=dtype)
    out, cache = conv2d_forward(x, w, b, stride, padding)
    dout = randn(xp, *out.shape, seed=3, dtype=dtype)
    dx, dw, db = conv2d_backward(dout, cache)
    tx, tw, tb = leaf(x), leaf(w), leaf(b)
    tout = F.conv2d(tx, tw, tb, stride=stride, padding=padding)
    tout.backward(to_torch(dout))
    for name, ours, theirs in [("out", out, tout), ("dx", dx, tx.grad), ("dweight", dw, tw.grad),
                               ("dbias", db, tb.grad)]:
        assert_close(ours, theirs, dtype, name)


def test_hybrid_torch_model_has_minivit_names_in_order():
    cfg = SMALL.replace(conv_stem=(8, 16))
    theirs = {k: tuple(v.shape) for k, v in build_torch_vit(cfg).state_dict().items()}
    assert list(theirs) == list(param_shapes(cfg)) and theirs == param_shapes(cfg)
