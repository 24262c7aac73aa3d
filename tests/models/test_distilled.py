"""The distilled ViT (DeiT): a distillation token and head beside the class token and head.
Whole-model gradients by finite differences in float64, agreement with the PyTorch reference
(both heads' logits and every gradient), timm's names, save/load, position-embedding
resampling with two prefix tokens, and timm's VisionTransformerDistilled where it imports."""

import numpy as np
import pytest
from support import randn

import minivit
from minivit.backend import rng as make_rng
from minivit.backend import to_numpy
from minivit.reference.numerical import (
    TOL_FD64,
    TOL_REF64,
    numerical_gradient,
    rel_error,
    sample_indices,
)

TINY = dict(image_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2, mlp_dim=16,
            num_classes=5)


def _model(xp, **kw):
    model = minivit.create_model("cifar-nano", dtype="float64", distilled=True,
                                 **{**TINY, **kw})
    gen = np.random.default_rng(1)
    for k, v in model.params.items():
        model.params[k] = v + minivit.to_device(gen.standard_normal(v.shape) * 0.3, v.dtype)
    return model


def test_names_shapes_and_counts_are_timms():
    m = minivit.create_model("cifar-tiny", distilled=True)
    assert list(m.params)[-3:] == ["dist_token", "head_dist.weight", "head_dist.bias"]
    assert m.params["dist_token"].shape == (1, 1, 192)
    assert m.params["pos_embed"].shape == (1, 64 + 2, 192)
    assert m.num_params() == minivit.count_params(m.config)
    plain = minivit.create_model("cifar-tiny")
    assert m.num_params() - plain.num_params() == 192 + 192 + 10 * 192 + 10
    assert "distilled" in repr(m)


def test_mean_pooling_is_refused():
    with pytest.raises(ValueError, match="pool='token'"):
        minivit.get_config("cifar-nano", distilled=True, pool="mean")


@pytest.mark.parametrize("train,patch_drop", [(True, 0.0), (False, 0.0), (True, 0.5)])
def test_whole_distilled_model_gradients(xp, train, patch_drop):
    model = _model(xp, patch_drop_rate=patch_drop, image_size=12)
    images = randn(xp, 2, 3, 12, 12, seed=2)

    def forward():
        model.rng = make_rng(5, xp)          # the same patch-dropout draw each time
        return model.forward(images, train=train)

    out = forward()
    assert out.shape == ((2, 2, 5) if train else (2, 5))
    dout = randn(xp, *out.shape, seed=3)
    dimages = model.backward(dout)

    def loss():
        return float((forward() * dout).sum())

    for name, x, g in [("images", images, dimages)] + [(k, model.params[k], model.grads[k])
                                                        for k in model.params]:
        idx = sample_indices(x.size, 20)
        err = rel_error(to_numpy(g).reshape(-1)[idx], numerical_gradient(loss, x, indices=idx))
        assert err < TOL_FD64, (name, err)


def test_eval_logits_are_the_mean_of_the_two_heads(xp):
    model = _model(xp)
    images = randn(xp, 3, 3, 8, 8, seed=4)
    both = model.forward(images, train=True, keep_cache=False)
    assert rel_error(model.forward(images, keep_cache=False), (both[0] + both[1]) / 2) < 1e-15


def test_split_heads_returns_both_heads_in_evaluation(xp):
    from minivit.analysis.attention import capture_attention
    model = _model(xp)
    images = randn(xp, 3, 3, 8, 8, seed=4)
    both = model.forward(images, train=True, keep_cache=False)
    split = model.forward(images, split_heads=True, keep_cache=False)
    assert split.shape == (2, 3, 5)
    assert rel_error(split, both) < 1e-15
    logits, attn = capture_attention(model, images, batch_size=2, split_heads=True)
    assert logits.shape == (2, 3, 5) and rel_error(logits, both) < 1e-15
    assert attn[0].shape == (3, 2, 4 + 2, 4 + 2)
    with pytest.raises(ValueError, match="needs a distilled model"):
        minivit.create_model("cifar-nano", dtype="float64",
                             **TINY).forward(images, split_heads=True)


@pytest.mark.parametrize("train", [True, False])
def test_distilled_model_matches_torch(train):
    pytest.importorskip("torch")
    from torch_vit import build_torch_vit, to_torch, torch_grads
    model = _model(np)
    images = randn(np, 3, 3, 8, 8, seed=5)
    out = model.forward(images, train=train)
    dout = randn(np, *out.shape, seed=6)
    dimages = model.backward(dout)
    tm = build_torch_vit(model.config, model.params)
    x = to_torch(images).requires_grad_(True)
    ref = tm(x, both_heads=train)
    (ref * to_torch(dout)).sum().backward()
    assert rel_error(out, ref.detach().numpy()) < TOL_REF64
    assert rel_error(dimages, x.grad.numpy()) < TOL_REF64
    tg = torch_grads(tm)
    assert set(tg) == set(model.grads)
    for k in tg:
        assert rel_error(model.grads[k], tg[k]) < TOL_REF64, k


def test_save_load_round_trip_and_inferred_config(tmp_path):
    pytest.importorskip("safetensors")
    from minivit.io.files import write_arrays
    model = _model(np)
    images = randn(np, 2, 3, 8, 8, seed=7)
    for suffix in (".safetensors", ".npz"):
        path = tmp_path / f"m{suffix}"
        minivit.save(model, path)
        back = minivit.load(path)
        assert back.config == model.config and back.config.distilled
        assert np.array_equal(back.forward(images), model.forward(images))
    bare = tmp_path / "timm.safetensors"                 # a state dict without minivit metadata
    write_arrays(bare, {k: to_numpy(v) for k, v in model.params.items()}, {})
    back = minivit.load(bare, num_heads=2)
    assert back.config.distilled and back.config.image_size == 8
    assert np.array_equal(back.forward(images), model.forward(images))


def test_resampling_keeps_both_prefix_tokens(tmp_path):
    pytest.importorskip("safetensors")
    model = _model(np)
    path = tmp_path / "m.safetensors"
    minivit.save(model, path)
    big = minivit.load(path, image_size=16)
    pe, old = big.params["pos_embed"], model.params["pos_embed"]
    assert pe.shape == (1, 2 + 16, 8)
    assert np.array_equal(pe[:, :2], old[:, :2])
    assert big.forward(randn(np, 1, 3, 16, 16)).shape == (1, 5)


def test_loads_into_timm_vision_transformer_distilled():
    torch = pytest.importorskip("torch")
    try:
        from timm.models.deit import VisionTransformerDistilled
    except Exception as e:           # timm missing, or (timm 1.x) torchvision missing
        pytest.skip(f"timm's VisionTransformerDistilled does not import here: {e}")
    model = _model(np)
    c = model.config
    tm = VisionTransformerDistilled(img_size=c.image_size, patch_size=c.patch_size,
                                    embed_dim=c.embed_dim, depth=c.depth, num_heads=c.num_heads,
                                    mlp_ratio=c.mlp_dim / c.embed_dim, num_classes=c.num_classes,
                                    qkv_bias=c.qkv_bias).double().eval()
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.params.items()},
                       strict=True)
    images = randn(np, 2, 3, 8, 8, seed=8)
    with torch.no_grad():
        ref = tm(torch.from_numpy(images)).numpy()
    assert rel_error(model.forward(images), ref) < TOL_REF64
