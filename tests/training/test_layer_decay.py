"""Layer-wise learning-rate decay: the layer ids, and AdamW's fused update against a loop over
the parameters in float64 (PyTorch's rule with one parameter group per layer)."""

import numpy as np
import pytest

import minivit
from minivit.backend import to_numpy
from minivit.training.layer_decay import layer_decay_scales, layer_id
from minivit.training.optim import AdamW, decays


def test_layer_ids_follow_mae_lr_decay():
    depth = 3
    ids = {"cls_token": 0, "dist_token": 0, "pos_embed": 0, "patch_embed.proj.weight": 0,
           "patch_embed.backbone.0.conv.weight": 0, "blocks.0.norm1.weight": 1,
           "blocks.2.mlp.fc2.bias": 3, "norm.weight": 4, "head.weight": 4,
           "head_dist.bias": 4}
    assert {k: layer_id(k, depth) for k in ids} == ids
    scales = layer_decay_scales(list(ids), depth, 0.5)
    assert scales["head.weight"] == 1.0 and scales["blocks.2.mlp.fc2.bias"] == 0.5
    assert scales["blocks.0.norm1.weight"] == 0.5 ** 3 and scales["pos_embed"] == 0.5 ** 4
    assert layer_decay_scales(list(ids), depth, 1.0) is None


def _reference_adamw(params, grads_per_step, lrs, scales, wd, b1=0.9, b2=0.999, eps=1e-8):
    """torch.optim.AdamW, one group per parameter with lr * scale: a loop in float64."""
    p = {k: v.astype(np.float64).copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v2 = {k: np.zeros_like(v) for k, v in p.items()}
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), 1):
        for k in p:
            lr_k, g = lr * scales[k], grads[k]
            if decays(k, p[k]):
                p[k] = p[k] * (1 - lr_k * wd)
            m[k] = b1 * m[k] + (1 - b1) * g
            v2[k] = b2 * v2[k] + (1 - b2) * g * g
            denom = np.sqrt(v2[k]) / np.sqrt(1 - b2 ** t) + eps
            p[k] = p[k] - (lr_k / (1 - b1 ** t)) * m[k] / denom
    return p


def test_adamw_with_layer_decay_matches_a_loop_over_parameters(xp):
    model = minivit.create_model("cifar-nano", seed=0, dtype="float64", depth=2,
                                 embed_dim=16, num_heads=2, mlp_dim=32)
    start = {k: to_numpy(v).copy() for k, v in model.params.items()}
    scales = layer_decay_scales(model.params, model.config.depth, 0.6)
    opt = AdamW(model.params, lr=1e-2, weight_decay=0.3, lr_scale=scales)
    gen = np.random.default_rng(0)
    grads = [{k: gen.standard_normal(v.shape) for k, v in start.items()} for _ in range(3)]
    lrs = [1e-2, 5e-3, 2e-3]
    for g, lr in zip(grads, lrs):
        opt.step(model.params, {k: xp.asarray(v) for k, v in g.items()}, lr=lr)
    want = _reference_adamw(start, grads, lrs, scales, wd=0.3)
    for k, v in model.params.items():
        np.testing.assert_allclose(to_numpy(v), want[k], rtol=1e-12, atol=1e-15, err_msg=k)
    # the embeddings moved least: their rate is lr * 0.6 ** 3
    moved = {k: float(np.abs(to_numpy(model.params[k]) - start[k]).max()) for k in
             ("pos_embed", "head.weight")}
    assert moved["pos_embed"] < moved["head.weight"]


def test_adamw_without_scales_is_unchanged_and_unknown_names_are_refused(xp):
    params = {"w": xp.ones((2, 3)), "b": xp.ones(3)}
    a, b = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in params.items()}
    AdamW(a, lr=0.1).step(a, {k: xp.full_like(v, 0.5) for k, v in a.items()})
    AdamW(b, lr=0.1, lr_scale={"w": 1.0, "b": 1.0}).step(
        b, {k: xp.full_like(v, 0.5) for k, v in b.items()})
    assert all(bool((a[k] == b[k]).all()) for k in a)
    with pytest.raises(ValueError, match="unknown parameters"):
        AdamW(params, lr_scale={"nope": 0.5})
