"""The whole Vision Transformer: names and shapes like timm, parameter counts, initialisation,
end-to-end gradients (every parameter and the input image), properties and bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import randn, whole_model_check

import minivit
from minivit.backend import to_numpy
from minivit.models.init import param_shapes
from minivit.models.vit_config import CONFIGS, count_params

TINY = dict(image_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2, mlp_dim=16)

PAPER_COUNTS = {"vit-ti16": 5_717_416, "vit-s16": 22_050_664, "vit-b16": 86_567_656,
                "vit-l16": 304_326_632, "vit-h14": 632_045_800}


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_paper_parameter_counts(name):
    assert count_params(CONFIGS[name]) == PAPER_COUNTS[name]
    assert sum(math.prod(s) for s in param_shapes(CONFIGS[name]).values()) == PAPER_COUNTS[name]


@pytest.mark.parametrize("name", ["vit-ti16", "cifar-nano", "cifar-tiny", "cifar-small"])
def test_created_models_have_the_counted_parameters(name):
    model = minivit.create_model(name)
    assert model.num_params() == count_params(CONFIGS[name])


def test_cifar_configs():
    for name in ("cifar-nano", "cifar-tiny", "cifar-small"):
        c = CONFIGS[name]
        assert (c.image_size, c.patch_size, c.num_classes, c.num_patches) == (32, 4, 10, 64)
    t, s = CONFIGS["cifar-tiny"], CONFIGS["cifar-small"]
    assert (t.embed_dim, t.depth, t.num_heads, t.mlp_dim) == (192, 6, 3, 768)
    assert (s.embed_dim, s.depth, s.num_heads, s.mlp_dim) == (384, 7, 6, 1536)


def test_parameter_names_and_shapes_are_timms():
    m = minivit.create_model("cifar-nano", depth=2)
    D, N, H, K = 128, 64, 256, 10
    expect = {"cls_token": (1, 1, D), "pos_embed": (1, N + 1, D),
              "patch_embed.proj.weight": (D, 3, 4, 4), "patch_embed.proj.bias": (D,)}
    for i in range(2):
        expect.update({f"blocks.{i}.norm1.weight": (D,), f"blocks.{i}.norm1.bias": (D,),
                       f"blocks.{i}.attn.qkv.weight": (3 * D, D),
                       f"blocks.{i}.attn.qkv.bias": (3 * D,),
                       f"blocks.{i}.attn.proj.weight": (D, D), f"blocks.{i}.attn.proj.bias": (D,),
                       f"blocks.{i}.norm2.weight": (D,), f"blocks.{i}.norm2.bias": (D,),
                       f"blocks.{i}.mlp.fc1.weight": (H, D), f"blocks.{i}.mlp.fc1.bias": (H,),
                       f"blocks.{i}.mlp.fc2.weight": (D, H), f"blocks.{i}.mlp.fc2.bias": (D,)})
    expect.update({"norm.weight": (D,), "norm.bias": (D,), "head.weight": (K, D),
                   "head.bias": (K,)})
    assert list(m.params) == list(expect)                 # same names, in timm's order
    assert {k: tuple(v.shape) for k, v in m.params.items()} == expect


def test_initialisation_is_timms():
    m = minivit.create_model("cifar-tiny", seed=0)
    p = {k: minivit.to_numpy(v).astype(np.float64) for k, v in m.params.items()}
    for k in ("blocks.0.attn.qkv.weight", "blocks.3.mlp.fc1.weight", "head.weight", "pos_embed"):
        assert abs(p[k].std() - 0.02) < 0.001 and abs(p[k].mean()) < 0.001, k
        assert np.abs(p[k]).max() <= 2.0                  # truncated at +-2 (timm's bounds)
    assert np.abs(p["cls_token"]).max() < 1e-5            # normal, std 1e-6
    bound = 1 / math.sqrt(3 * 4 * 4)                      # Conv2d default: U(+-1/sqrt(fan_in))
    assert np.abs(p["patch_embed.proj.weight"]).max() <= bound
    assert p["patch_embed.proj.weight"].std() > bound / 3
    for k, v in p.items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight":
            assert (v == 1).all(), k
        elif k.endswith(".bias") and not k.startswith("patch_embed"):
            assert (v == 0).all(), k
    assert m.params["head.weight"].dtype == np.float32
    zero_head = minivit.create_model("cifar-tiny", head_init="zeros")
    assert float(abs(zero_head.params["head.weight"]).max()) == 0


def test_same_seed_same_model_other_seed_other_model():
    a, b, c = (minivit.create_model("cifar-nano", seed=s, depth=1) for s in (3, 3, 4))
    assert all((a.params[k] == b.params[k]).all() for k in a.params)
    assert not (a.params["pos_embed"] == c.params["pos_embed"]).all()


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["token", "mean"])
@pytest.mark.parametrize("gelu", ["erf", "tanh"])
def test_whole_model_gradients(xp, pool, gelu):
    model = minivit.create_model("cifar-nano", dtype="float64", pool=pool, gelu=gelu, **TINY)
    images = randn(xp, 3, 3, 8, 8)
    labels = xp.asarray([0, 3, 9])
    whole_model_check(model, images, labels, smoothing=0.1)


@pytest.mark.slow
def test_whole_model_gradients_with_dropout_and_drop_path(xp):
    model = minivit.create_model("cifar-nano", dtype="float64", drop_rate=0.2, attn_drop_rate=0.2,
                                 drop_path_rate=0.3, **TINY)
    whole_model_check(model, randn(xp, 4, 3, 8, 8), xp.asarray([1, 2, 3, 4]), train=True)


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["token", "mean"])
def test_whole_model_gradients_with_patch_dropout(xp, pool):
    model = minivit.create_model("cifar-nano", dtype="float64", pool=pool, patch_drop_rate=0.5,
                                 drop_rate=0.1, **dict(TINY, image_size=12))  # 9 patches, 4 dropped
    whole_model_check(model, randn(xp, 3, 3, 12, 12), xp.asarray([1, 2, 3]), train=True)


def test_patch_dropout_shortens_training_sequences_only(xp):
    model = minivit.create_model("cifar-nano", dtype="float64", patch_drop_rate=0.75, **TINY)
    x = randn(xp, 2, 3, 8, 8)                              # 4 patches: 1 kept + class token
    _, maps = model.forward(x, train=True, return_attention=True)
    assert maps[0].shape == (2, 2, 2, 2)
    _, maps = model.forward(x, return_attention=True)
    assert maps[0].shape == (2, 2, 5, 5)
    with pytest.raises(ValueError, match="patch_drop_rate must be in"):
        minivit.create_model("cifar-nano", patch_drop_rate=1.0)


def test_patch_dropout_off_equals_a_model_without_it(xp):
    """patch_dropout=False: no draw, every token, bit for bit the model with rate 0."""
    kw = dict(dtype="float64", drop_rate=0.1, drop_path_rate=0.1, **TINY)
    with_pd = minivit.create_model("cifar-nano", patch_drop_rate=0.5, **kw)
    without = minivit.create_model("cifar-nano", patch_drop_rate=0.0, **kw)
    x = randn(xp, 3, 3, 8, 8)
    for _ in range(2):                                     # the generators stay in step
        a = with_pd.forward(x, train=True, patch_dropout=False)
        b = without.forward(x, train=True)
        assert (to_numpy(a) == to_numpy(b)).all()
        dout = randn(xp, *a.shape, seed=5)
        assert (to_numpy(with_pd.backward(dout)) == to_numpy(without.backward(dout))).all()
        assert all((to_numpy(with_pd.grads[k]) == to_numpy(without.grads[k])).all()
                   for k in without.grads)


@pytest.mark.slow
@settings(max_examples=6)
@given(P=st.integers(1, 4), grid=st.integers(1, 3), heads=st.integers(1, 3), d=st.integers(3, 4),
       B=st.integers(1, 3), C=st.integers(1, 3), depth=st.integers(1, 2))
def test_whole_model_gradients_random_shapes(xp, P, grid, heads, d, B, C, depth):
    # (width >= 3: at width 2 a LayerNorm output is always (+-1, -+1) and its gradient ~0)
    model = minivit.create_model("cifar-nano", dtype="float64", image_size=P * grid, patch_size=P,
                                 in_chans=C, embed_dim=heads * d, num_heads=heads, depth=depth,
                                 mlp_dim=3, num_classes=4)
    whole_model_check(model, randn(xp, B, C, P * grid, P * grid),
                       xp.asarray(np.arange(B) % 4), samples=12)


def test_fresh_model_loss_is_ln10(xp):
    model = minivit.create_model("cifar-nano", seed=0, dtype="float64")
    images = randn(xp, 16, 3, 32, 32, seed=1)
    loss, _ = minivit.cross_entropy(model.forward(images), xp.asarray(np.arange(16) % 10))
    assert abs(loss - math.log(10)) < 0.05


def test_attention_maps(xp):
    model = minivit.create_model("cifar-nano", dtype="float64", **TINY)
    logits, maps = model.forward(randn(xp, 2, 3, 8, 8), return_attention=True)
    assert logits.shape == (2, 10) and len(maps) == 2
    assert all(m.shape == (2, 2, 5, 5) for m in maps)
    assert float(abs(maps[0].sum(-1) - 1).max()) < 1e-14


def test_eval_is_deterministic_and_train_mode_uses_dropout(xp):
    model = minivit.create_model("cifar-nano", dtype="float64", drop_rate=0.5, **TINY)
    x = randn(xp, 2, 3, 8, 8)
    assert (model.forward(x) == model.forward(x)).all()
    assert not (model.forward(x, train=True) == model.forward(x)).all()


def test_overfits_twenty_images(xp):
    """A tiny ViT reaches 100% training accuracy on 20 random images in a few hundred steps."""
    model = minivit.create_model("cifar-nano", seed=0, image_size=16, patch_size=4, embed_dim=32,
                                 depth=2, num_heads=2, mlp_dim=64)
    images = randn(xp, 20, 3, 16, 16, seed=3).astype(xp.float32)
    labels = xp.asarray(np.random.default_rng(4).integers(0, 10, size=20))
    opt = minivit.AdamW(model.params, lr=2e-3, weight_decay=0.0)
    for step in range(300):
        loss, dlogits = minivit.cross_entropy(model.forward(images, train=True), labels)
        model.backward(dlogits)
        opt.step(model.params, model.grads)
        acc = float((model.forward(images).argmax(-1) == labels).mean())
        if acc == 1.0:
            break
    assert acc == 1.0, f"accuracy {acc} after {step + 1} steps (loss {loss:.3f})"


def test_backward_needs_forward(xp):
    model = minivit.create_model("cifar-nano", **TINY)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(xp.zeros((1, 10), dtype=xp.float32))


@pytest.mark.parametrize("images, message", [
    ("list", r"must be a NumPy/CuPy array of shape \(B, 3, 8, 8\)"),
    ((3, 8, 8), r"must have 4 dimensions \(B, C, H, W\), got shape \(3, 8, 8\)"),
    ((2, 1, 8, 8), "images have 1 channels, expected 3"),
    ((2, 3, 10, 10), "image size 10x10 is not divisible by the patch size 4"),
    ((2, 3, 12, 12), "images are 12x12, expected 8x8"),
    ("uint8", "must be floating point .* got dtype uint8"),
    ("float64", "images have dtype float64, expected the model's dtype float32"),
])
def test_bad_images_give_clear_errors(xp, images, message):
    model = minivit.create_model("cifar-nano", **TINY)
    if images == "list":
        x = [[0.0]]
    elif images == "uint8":
        x = xp.zeros((2, 3, 8, 8), dtype=xp.uint8)
    elif images == "float64":
        x = xp.zeros((2, 3, 8, 8), dtype=xp.float64)
    else:
        x = xp.zeros(images, dtype=xp.float32)
    with pytest.raises(ValueError, match=message):
        model.forward(x)


def test_bad_configs():
    with pytest.raises(ValueError, match="patch size 5 does not divide image size 32"):
        minivit.create_model("cifar-nano", patch_size=5)
    with pytest.raises(ValueError, match="unknown config 'vit-zz'"):
        minivit.create_model("vit-zz")
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        minivit.create_model("cifar-nano", num_heads=3)
    with pytest.raises(ValueError, match="dtype must be one of"):
        minivit.create_model("cifar-nano", dtype="float16")
    with pytest.raises(ValueError, match="pool"):
        minivit.create_model("cifar-nano", pool="max")


def test_mismatched_params_are_all_listed():
    cfg = minivit.get_config("cifar-nano", **TINY)
    params = dict(minivit.create_model(cfg).params)
    del params["norm.weight"], params["head.bias"]
    params["extra"] = params["cls_token"]
    params["pos_embed"] = params["pos_embed"][:, :3]
    with pytest.raises(ValueError) as e:
        minivit.VisionTransformer(cfg, params)
    msg = str(e.value)
    assert "norm.weight" in msg and "head.bias" in msg and "extra" in msg
    assert "pos_embed: got (1, 3, 8), expected (1, 5, 8)" in msg


def test_forward_without_cache_gives_the_same_logits_and_refuses_backward(xp):
    model = minivit.create_model("cifar-nano", dtype="float64", **TINY)
    x = randn(xp, 2, 3, 8, 8)
    assert (model.forward(x, keep_cache=False) == model.forward(x)).all()
    model.forward(x, keep_cache=False)
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(xp.zeros((2, 10)))
