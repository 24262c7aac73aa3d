"""Masked autoencoder: the masking (invariants and gradients), the masked pixel loss, the
whole MAE against finite differences (float64) and against a PyTorch MAE written as the
reference code writes it (tests/torch_mae.py), the sine-cosine embedding, files."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import check_layer, randn

from minivit.backend import rng as device_rng
from minivit.backend import to_device, to_numpy
from minivit.io.pretrained import load_mae, save_mae
from minivit.layers.masking import (
    gather_tokens_backward,
    gather_tokens_forward,
    masking_noise,
    num_kept,
    random_masking,
    unshuffle_backward,
    unshuffle_forward,
)
from minivit.layers.reconstruction import (
    masked_mse_backward,
    masked_mse_forward,
    patch_targets_backward,
    patch_targets_forward,
)
from minivit.models.mae import MAEConfig, create_mae, sincos_2d_pos_embed
from minivit.reference.numerical import (
    TOL_FD64,
    TOL_REF64,
    numerical_gradient,
    rel_error,
    sample_indices,
)

# 8x8 images in 2x2 patches: N = 16 patches, 12 hidden and 4 visible at ratio 0.75
TINY_ENC = dict(image_size=8, patch_size=2, embed_dim=8, depth=1, num_heads=2, mlp_dim=12)
TINY_DEC = dict(decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=2, decoder_mlp_dim=12)


def tiny_mae(xp, **fields):
    from minivit.models.vit_config import get_config
    cfg = MAEConfig(encoder=get_config("cifar-nano", **TINY_ENC), **{**TINY_DEC, **fields})
    return create_mae(cfg, seed=0, dtype="float64")


def randomise(model, scale=0.3, seed=1):
    """Move every parameter away from its initial value so that every gradient is O(1)."""
    gen = np.random.default_rng(seed)
    for k, v in model.params.items():
        model.params[k] = v + to_device(gen.standard_normal(v.shape) * scale, v.dtype)


# ------------------------------------------------------------------ masking

@given(B=st.integers(1, 4), N=st.integers(2, 40), ratio=st.floats(0.05, 0.95))
def test_masking_invariants(xp, B, N, ratio):
    hidden = round(N * ratio)
    if not 0 < hidden < N:
        with pytest.raises(ValueError, match="at least one"):
            num_kept(N, ratio)
        return
    noise = masking_noise(device_rng(3, xp), B, N)
    ids_keep, mask, ids_restore = random_masking(noise, ratio)
    K = N - hidden
    assert ids_keep.shape == (B, K) and mask.shape == (B, N) and ids_restore.shape == (B, N)
    m, n, keep, restore = (to_numpy(a) for a in (mask, noise, ids_keep, ids_restore))
    assert (m.sum(axis=1) == hidden).all()                        # exactly round(N * ratio)
    assert set(np.unique(m)) <= {0.0, 1.0}
    for b in range(B):
        assert set(keep[b]) == set(np.argsort(n[b])[:K])          # the lowest-noise patches
        assert (m[b, keep[b]] == 0).all()
        assert sorted(restore[b]) == list(range(N))               # a permutation
        shuffle = np.argsort(n[b])
        assert (shuffle[restore[b]] == np.arange(N)).all()        # restore inverts shuffle


def test_unshuffle_inverts_the_shuffle(xp):
    x = randn(xp, 3, 10, 4)
    noise = masking_noise(device_rng(0, xp), 3, 10)
    ids_shuffle = xp.argsort(noise, axis=1)
    _, _, ids_restore = random_masking(noise, 0.5)
    shuffled, _ = gather_tokens_forward(x, ids_shuffle)
    back, _ = unshuffle_forward(shuffled, ids_restore)
    assert (back == x).all()


def test_masking_is_deterministic_with_a_seed(xp):
    a = random_masking(masking_noise(device_rng(7, xp), 4, 64), 0.75)
    b = random_masking(masking_noise(device_rng(7, xp), 4, 64), 0.75)
    c = random_masking(masking_noise(device_rng(8, xp), 4, 64), 0.75)
    assert all((u == v).all() for u, v in zip(a, b))
    assert not (a[1] == c[1]).all()
    assert num_kept(64, 0.75) == 16


@given(B=st.integers(1, 3), N=st.integers(1, 6), D=st.integers(1, 4), data=st.data())
def test_gather_and_unshuffle_gradients(xp, B, N, D, data):
    K = data.draw(st.integers(1, N))
    perms = np.stack([np.random.default_rng(b).permutation(N) for b in range(B)])
    keep, restore = xp.asarray(perms[:, :K]), xp.asarray(np.argsort(perms, axis=1))
    x = randn(xp, B, N, D)
    check_layer(lambda x: gather_tokens_forward(x, keep), gather_tokens_backward, [x])
    check_layer(lambda x: unshuffle_forward(x, restore), unshuffle_backward, [x])


def test_gather_backward_puts_rows_back(xp):
    x = randn(xp, 2, 5, 3)
    ids = xp.asarray([[4, 1], [0, 2]])
    out, cache = gather_tokens_forward(x, ids)
    assert (out[1, 0] == x[1, 0]).all() and (out[0, 0] == x[0, 4]).all()
    dx = to_numpy(gather_tokens_backward(xp.ones_like(out), cache))
    assert (dx.sum(axis=2) == np.array([[0, 3, 0, 0, 3], [3, 0, 3, 0, 0]])).all()


# ------------------------------------------------------------------ the loss

@pytest.mark.parametrize("norm_pix", [False, True])
def test_patch_target_gradients(xp, norm_pix):
    images = randn(xp, 2, 3, 4, 4)
    check_layer(lambda im: patch_targets_forward(im, 2, norm_pix), patch_targets_backward,
                [images])
    if norm_pix:
        t = to_numpy(patch_targets_forward(images, 2, True)[0])
        assert abs(t.mean(axis=-1)).max() < 1e-12
        assert abs(t.var(axis=-1, ddof=1) - 1).max() < 1e-4     # unit unbiased variance


def test_masked_loss_gradients_and_visible_patches_do_not_count(xp):
    pred, target = randn(xp, 3, 5, 4, seed=1), randn(xp, 3, 5, 4, seed=2)
    mask = xp.asarray((np.random.default_rng(0).random((3, 5)) < 0.6).astype(float))
    mask[0, 0] = 1.0
    loss, cache = masked_mse_forward(pred, target, mask)
    dpred, dtarget = masked_mse_backward(1.0, cache)
    m = to_numpy(mask).astype(bool)
    expect = ((to_numpy(pred) - to_numpy(target)) ** 2).mean(-1)[m].mean()
    assert abs(loss - expect) < 1e-14
    f = lambda: masked_mse_forward(pred, target, mask)[0]  # noqa: E731
    assert rel_error(dpred, numerical_gradient(f, pred)) < TOL_FD64
    assert rel_error(dtarget, numerical_gradient(f, target)) < TOL_FD64
    assert (to_numpy(dpred)[~m] == 0).all() and (to_numpy(dtarget)[~m] == 0).all()
    # changing the prediction of a visible patch leaves the loss exactly as it was
    pred[~xp.asarray(m)] += 100.0
    assert masked_mse_forward(pred, target, mask)[0] == loss


# ------------------------------------------------------------------ the whole MAE

def whole_mae_check(model, images, noise, samples=12):
    randomise(model)
    loss_fn = lambda: model.forward(images, noise=noise)[0]  # noqa: E731
    loss, pred, mask = model.forward(images, noise=noise)
    dimages = model.backward()
    assert sorted(model.grads) == sorted(model.params)
    errors = {}
    for name, x, g in [("images", images, dimages)] + [(k, model.params[k], model.grads[k])
                                                        for k in model.params]:
        assert g.shape == x.shape, name
        idx = sample_indices(x.size, samples)
        errors[name] = rel_error(g.reshape(-1)[idx], numerical_gradient(loss_fn, x, indices=idx))
    bad = {k: v for k, v in errors.items() if not v < TOL_FD64}
    assert not bad, f"rel errors above {TOL_FD64}: {bad}"
    return errors


@pytest.mark.slow
@pytest.mark.parametrize("norm_pix, pos", [(False, "sincos"), (True, "learned")])
def test_whole_mae_gradients(xp, norm_pix, pos):
    model = tiny_mae(xp, norm_pix_loss=norm_pix, decoder_pos_embed=pos)
    images = randn(xp, 2, 3, 8, 8, seed=4)
    noise = masking_noise(device_rng(5, xp), 2, 16)
    whole_mae_check(model, images, noise)


@pytest.mark.slow
@settings(max_examples=4)
@given(P=st.integers(1, 2), grid=st.integers(2, 3), B=st.integers(1, 2), C=st.integers(1, 2),
       ratio=st.sampled_from([0.25, 0.5, 0.75]), norm_pix=st.booleans())
def test_whole_mae_gradients_random_shapes(xp, P, grid, B, C, ratio, norm_pix):
    from minivit.models.vit_config import get_config
    if norm_pix and P * P * C < 2:
        norm_pix = False
    enc = get_config("cifar-nano", image_size=P * grid, patch_size=P, in_chans=C, embed_dim=6,
                     depth=1, num_heads=2, mlp_dim=5)
    cfg = MAEConfig(encoder=enc, decoder_embed_dim=4, decoder_depth=1, decoder_num_heads=1,
                    decoder_mlp_dim=3, mask_ratio=ratio, norm_pix_loss=norm_pix)
    model = create_mae(cfg, dtype="float64")
    noise = masking_noise(device_rng(1, xp), B, grid * grid)
    whole_mae_check(model, randn(xp, B, C, P * grid, P * grid), noise, samples=6)


def test_mask_comes_from_the_generator_and_the_loss_is_finite(xp):
    model = tiny_mae(xp)
    images = randn(xp, 3, 3, 8, 8)
    l1, pred, m1 = model.forward(images, mask_rng=device_rng(0, xp))
    l2, _, m2 = model.forward(images, mask_rng=device_rng(0, xp))
    _, _, m3 = model.forward(images)                                  # model.rng
    assert l1 == l2 and (m1 == m2).all() and math.isfinite(l1)
    assert pred.shape == (3, 16, 12) and (to_numpy(m3).sum(1) == 12).all()
    with pytest.raises(RuntimeError, match="forward"):
        model._cache = None
        model.backward()


@pytest.mark.torch
@pytest.mark.parametrize("norm_pix, pos", [(False, "sincos"), (True, "sincos"),
                                           (True, "learned")])
def test_agrees_with_pytorch(norm_pix, pos):
    pytest.importorskip("torch")
    from torch_mae import torch_mae_gradients
    model = tiny_mae(np, norm_pix_loss=norm_pix, decoder_pos_embed=pos)
    randomise(model)
    images = randn(np, 3, 3, 8, 8, seed=2)
    noise = masking_noise(device_rng(9, np), 3, 16)
    loss, pred, mask = model.forward(images, noise=noise)
    dimages = model.backward()
    t_loss, t_pred, t_mask, t_grads, t_dimages = torch_mae_gradients(model, images, noise)
    assert (mask == t_mask).all()
    assert abs(loss - t_loss) / abs(t_loss) < TOL_REF64
    assert rel_error(pred, t_pred) < TOL_REF64
    assert sorted(t_grads) == sorted(model.grads)
    errors = {k: rel_error(model.grads[k], t_grads[k]) for k in t_grads}
    errors["images"] = rel_error(dimages, t_dimages)
    bad = {k: v for k, v in errors.items() if not v < TOL_REF64}
    assert not bad, bad


# ------------------------------------------------------------------ pieces and files

def test_sincos_position_embedding_is_the_mae_codes():
    emb = sincos_2d_pos_embed(8, 3)                    # (1, 1 + 9, 8)
    assert emb.shape == (1, 10, 8) and (emb[0, 0] == 0).all()
    omega = 1.0 / 10000 ** (np.arange(2) / 2.0)       # dim/2 = 4 per coordinate: 2 frequencies
    for n in range(9):
        h, w = divmod(n, 3)                            # row-major patch order
        expect = np.concatenate([np.sin(w * omega), np.cos(w * omega),
                                 np.sin(h * omega), np.cos(h * omega)])
        assert np.allclose(emb[0, 1 + n], expect, atol=1e-15)


def test_parameter_names_and_encoder_as_a_vit(xp, tmp_path):
    model = tiny_mae(xp, decoder_pos_embed="learned")
    names = list(model.params)
    assert names[:4] == ["cls_token", "pos_embed", "patch_embed.proj.weight",
                         "patch_embed.proj.bias"]
    for k in ("norm.weight", "decoder_embed.weight", "mask_token", "decoder_pos_embed",
              "decoder_blocks.0.attn.qkv.weight", "decoder_norm.bias", "decoder_pred.weight"):
        assert k in names, k
    assert model.params["mask_token"].shape == (1, 1, 8)
    assert model.params["decoder_pred.weight"].shape == (12, 8)
    assert "decoder_pos_embed" not in tiny_mae(xp).params          # sincos: fixed
    vit = model.to_vit(num_classes=5)
    assert float(abs(vit.params["head.weight"]).max()) == 0
    assert vit.forward(randn(xp, 2, 3, 8, 8)).shape == (2, 5)
    assert all((vit.params[k] == v).all() for k, v in model.encoder_params().items())  # copies
    path = tmp_path / "mae.npz"
    save_mae(model, path)
    again = load_mae(path)
    assert again.config == model.config
    assert all((to_numpy(again.params[k]) == to_numpy(v)).all() for k, v in model.params.items())


@pytest.mark.parametrize("fields, message", [
    (dict(mask_ratio=1.0), r"mask_ratio must be in \(0, 1\)"),
    (dict(mask_ratio=0.01), "hide at least one"),
    (dict(decoder_embed_dim=6, decoder_num_heads=2), "divisible by 4"),
    (dict(decoder_pos_embed="rope"), "decoder_pos_embed must be one of"),
    (dict(decoder_num_heads=3), "not divisible by decoder_num_heads"),
])
def test_bad_configs(fields, message):
    from minivit.models.vit_config import get_config
    with pytest.raises(ValueError, match=message):
        MAEConfig(encoder=get_config("cifar-nano", **TINY_ENC), **{**TINY_DEC, **fields})
    with pytest.raises(ValueError, match="no dropout"):
        MAEConfig(encoder=get_config("cifar-nano", drop_path_rate=0.1))
