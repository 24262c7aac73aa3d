"""Masked patch prediction (ViT paper 4.6): corruption (layer gradients, the 50% / 80-10-10
split), colour targets, the whole objective against finite differences (float64) and against
a PyTorch version written here with the reference blocks."""

import numpy as np
import pytest
from support import check_layer, randn

from minivit.backend import rng as device_rng
from minivit.backend import to_device, to_numpy
from minivit.io.pretrained import load_mpp, save_mpp
from minivit.layers.color_prediction import mean_color_targets, patch_ce_backward, patch_ce_forward
from minivit.layers.masking import corrupt_tokens_backward, corrupt_tokens_forward
from minivit.models.masked_patch_prediction import (
    MPPConfig,
    corruption,
    create_mpp,
    draw_corruption,
)
from minivit.models.vit_config import get_config
from minivit.reference.numerical import (
    TOL_FD64,
    TOL_REF64,
    numerical_gradient,
    rel_error,
    sample_indices,
)

TINY_ENC = dict(image_size=8, patch_size=2, embed_dim=8, depth=1, num_heads=2, mlp_dim=12)


def tiny_mpp(**fields):
    return create_mpp(MPPConfig(encoder=get_config("cifar-nano", **TINY_ENC), **fields),
                      dtype="float64")


def randomise(model, scale=0.3, seed=1):
    gen = np.random.default_rng(seed)
    for k, v in model.params.items():
        model.params[k] = v + to_device(gen.standard_normal(v.shape) * scale, v.dtype)


def test_corrupt_tokens_gradients_with_repeated_sources(xp):
    B, N, D = 2, 5, 3
    r_tok = xp.asarray([[1, 0, 0, 0, 1], [0, 0, 1, 0, 0]], dtype=xp.float64)
    r_rand = xp.asarray([[0, 1, 0, 1, 0], [1, 0, 0, 0, 1]], dtype=xp.float64)
    src = xp.asarray([[0, 7, 0, 7, 0], [3, 0, 0, 0, 2]])          # patch 7 copied twice
    x, tok = randn(xp, B, N, D), randn(xp, 1, 1, D, seed=1)
    out, _ = corrupt_tokens_forward(x, r_tok, r_rand, src, tok)
    assert (out[0, 0] == tok[0, 0]).all() and (out[0, 1] == x[1, 2]).all()
    assert (out[0, 2] == x[0, 2]).all() and (out[1, 0] == x[0, 3]).all()
    check_layer(lambda x, t: corrupt_tokens_forward(x, r_tok, r_rand, src, t),
                corrupt_tokens_backward, [x, tok])


def test_corruption_split_and_sources(xp):
    cfg = MPPConfig(encoder=get_config("cifar-nano"))              # 64 patches
    draws = draw_corruption(device_rng(0, xp), 200, 64)
    ids, corrupted, r_tok, r_rand = (to_numpy(a) for a in corruption(draws, cfg))
    assert (corrupted.sum(1) == 32).all() and ids.shape == (200, 32)   # exactly half
    assert (np.take_along_axis(corrupted, ids, 1) == 1).all()
    assert ((r_tok + r_rand) <= corrupted).all()
    n = corrupted.sum()
    assert abs(r_tok.sum() / n - 0.8) < 0.01 and abs(r_rand.sum() / n - 0.1) < 0.01
    src = to_numpy(draws["src"])
    own = np.arange(200 * 64).reshape(200, 64)
    assert (src != own).all() and src.min() >= 0 and src.max() < 200 * 64


def test_mean_colour_classes(xp):
    pixels = xp.zeros((1, 3, 4, 4))
    pixels[0, 0, :2, :2] = 1.0                  # patch 0: pure red -> r = 7
    pixels[0, 1, :2, 2:] = 0.5                  # patch 1: g = 0.5 -> 4
    pixels[0, 2, 2:, :2] = 0.126                # patch 2: b = 0.126 -> 1
    pixels[0, :, 2:, 2:] = 0.999                # patch 3: (7, 7, 7) = 511
    t = to_numpy(mean_color_targets(pixels, 2))
    assert t.tolist() == [[7 * 64, 4 * 8, 1, 511]]
    assert t.dtype == np.int64


def _targets(xp, B, seed=0):
    return xp.asarray(np.random.default_rng(seed).integers(0, 512, size=(B, 16)))


@pytest.mark.slow
def test_whole_mpp_gradients(xp):
    model = tiny_mpp()
    randomise(model)
    images, targets = randn(xp, 3, 3, 8, 8, seed=4), _targets(xp, 3)
    draws = draw_corruption(device_rng(2, xp), 3, 16)
    loss_fn = lambda: model.forward(images, targets, draws=draws)[0]  # noqa: E731
    loss, logits, labels, corrupted = model.forward(images, targets, draws=draws)
    assert logits.shape == (3, 8, 512) and labels.shape == (3, 8)
    dimages = model.backward()
    errors = {}
    for name, x, g in [("images", images, dimages)] + [(k, model.params[k], model.grads[k])
                                                        for k in model.params]:
        idx = sample_indices(x.size, 12)
        errors[name] = rel_error(g.reshape(-1)[idx], numerical_gradient(loss_fn, x, indices=idx))
    bad = {k: v for k, v in errors.items() if not v < TOL_FD64}
    assert not bad, bad


def test_only_corrupted_patches_count(xp):
    model = tiny_mpp()
    images, targets = randn(xp, 2, 3, 8, 8), _targets(xp, 2)
    draws = draw_corruption(device_rng(2, xp), 2, 16)
    loss, _, labels, corrupted = model.forward(images, targets, draws=draws)
    changed = xp.where(corrupted > 0, targets, (targets + 1) % 512)   # other targets elsewhere
    assert model.forward(images, changed, draws=draws)[0] == loss
    ids = to_numpy(corruption(draws, model.config)[0])
    assert (to_numpy(labels) == np.take_along_axis(to_numpy(targets), ids, 1)).all()


def _torch_mpp(model, images, targets, draws):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from minivit.reference.torch_twin import LN_EPS, Block, PatchEmbed, to_torch

    enc = model.config.encoder

    class TorchMPP(nn.Module):
        def __init__(self):
            super().__init__()
            D = enc.embed_dim
            self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
            self.pos_embed = nn.Parameter(torch.zeros(1, enc.num_patches + 1, D))
            self.patch_embed = PatchEmbed(enc)
            self.blocks = nn.ModuleList([Block(enc) for _ in range(enc.depth)])
            self.norm = nn.LayerNorm(D, eps=LN_EPS)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, D))
            self.mpp_head = nn.Linear(D, model.config.num_colors)

        def forward(self, x, r_tok, r_rand, src, ids):
            x = self.patch_embed(x)
            B, N, D = x.shape
            other = x.reshape(B * N, D)[src.reshape(-1)].reshape(B, N, D)
            x = torch.where(r_rand.bool()[..., None], other, x)
            x = torch.where(r_tok.bool()[..., None], self.mask_token.expand(B, N, D), x)
            x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1) + self.pos_embed
            for blk in self.blocks:
                x = blk(x)
            x = self.norm(x)[:, 1:]
            h = torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, D))
            return self.mpp_head(h)

    ids, _, r_tok, r_rand = corruption(draws, model.config)
    tm = TorchMPP().double()
    tm.load_state_dict({k: to_torch(v) for k, v in model.params.items()}, strict=True)
    x = to_torch(images).requires_grad_(True)
    logits = tm(x, to_torch(r_tok), to_torch(r_rand), to_torch(draws["src"]), to_torch(ids))
    labels = torch.gather(to_torch(targets), 1, to_torch(ids))
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    loss.backward()
    return loss.item(), {k: p.grad.numpy() for k, p in tm.named_parameters()}, x.grad.numpy()


@pytest.mark.torch
def test_agrees_with_pytorch():
    pytest.importorskip("torch")
    model = tiny_mpp()
    randomise(model)
    images, targets = randn(np, 4, 3, 8, 8, seed=3), _targets(np, 4, seed=5)
    draws = draw_corruption(device_rng(6, np), 4, 16)
    assert to_numpy(corruption(draws, model.config)[3]).sum() > 0     # a random copy happens
    loss, *_ = model.forward(images, targets, draws=draws)
    dimages = model.backward()
    t_loss, t_grads, t_dimages = _torch_mpp(model, images, targets, draws)
    assert abs(loss - t_loss) / t_loss < TOL_REF64
    assert sorted(t_grads) == sorted(model.grads)
    errors = {k: rel_error(model.grads[k], t_grads[k]) for k in t_grads}
    errors["images"] = rel_error(dimages, t_dimages)
    assert max(errors.values()) < TOL_REF64, errors


def test_files_and_encoder(xp, tmp_path):
    model = tiny_mpp()
    assert model.params["mpp_head.weight"].shape == (512, 8)
    vit = model.to_vit(num_classes=3)
    assert vit.forward(randn(xp, 1, 3, 8, 8)).shape == (1, 3)
    save_mpp(model, tmp_path / "m.npz")
    again = load_mpp(tmp_path / "m.npz")
    assert again.config == model.config
    assert all((to_numpy(again.params[k]) == to_numpy(v)).all() for k, v in model.params.items())


@pytest.mark.parametrize("fields, message", [
    (dict(corrupt_ratio=0.0), r"corrupt_ratio must be in \(0, 1\)"),
    (dict(mask_token_prob=0.95, random_patch_prob=0.1), "sum <= 1"),
    (dict(color_bits=0), "color_bits"),
])
def test_bad_configs(fields, message):
    with pytest.raises(ValueError, match=message):
        MPPConfig(encoder=get_config("cifar-nano", **TINY_ENC), **fields)


def test_patch_cross_entropy_gradient(xp):
    logits = randn(xp, 2, 3, 5, seed=4)
    labels = xp.asarray([[0, 4, 2], [1, 1, 3]])
    loss, cache = patch_ce_forward(logits, labels)
    dlogits = patch_ce_backward(0.5, cache)
    expect = numerical_gradient(lambda: 0.5 * patch_ce_forward(logits, labels)[0], logits)
    assert dlogits.shape == logits.shape and rel_error(dlogits, expect) < TOL_FD64
