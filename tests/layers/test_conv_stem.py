"""The convolutional stem (the ViT paper's hybrid input): conv2d (NCHW, and the channels-last
pair under it, in chunks of images too) and ReLU against finite differences and a textbook
loop, the stem inside the whole model, config and name checks.
(PyTorch agreement: tests/reference/test_torch_twin.py.)"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import check_layer, randn, whole_model_check

import minivit
from minivit.backend import to_numpy
from minivit.layers import conv
from minivit.layers.conv import (
    conv2d_backward,
    conv2d_forward,
    conv2d_nhwc_backward,
    conv2d_nhwc_forward,
    conv_output_size,
)
from minivit.layers.conv_stem import conv_stem_backward, conv_stem_forward
from minivit.layers.relu import relu_backward, relu_forward
from minivit.models.init import param_shapes
from minivit.models.vit_config import ViTConfig


def _conv2d_loops(x, w, b, stride, padding):
    """The convolution sum written out, one output value at a time (NumPy, float64)."""
    x, w, b = to_numpy(x), to_numpy(w), to_numpy(b)
    B, C, H, W = x.shape
    F, _, k, _ = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho, Wo = conv_output_size(H, k, stride, padding), conv_output_size(W, k, stride, padding)
    out = np.zeros((B, F, Ho, Wo))
    for n in range(B):
        for f in range(F):
            for i in range(Ho):
                for j in range(Wo):
                    win = xpad[n, :, i * stride:i * stride + k, j * stride:j * stride + k]
                    out[n, f, i, j] = (win * w[f]).sum() + b[f]
    return out


@settings(max_examples=12)
@given(B=st.integers(1, 2), C=st.integers(1, 3), F=st.integers(1, 3), k=st.integers(1, 3),
       stride=st.integers(1, 3), padding=st.integers(0, 2), H=st.integers(3, 7),
       W=st.integers(3, 7))
def test_conv2d_is_the_convolution_sum(xp, B, C, F, k, stride, padding, H, W):
    x, w, b = randn(xp, B, C, H, W), randn(xp, F, C, k, k, seed=1), randn(xp, F, seed=2)
    out, _ = conv2d_forward(x, w, b, stride, padding)
    assert np.allclose(to_numpy(out), _conv2d_loops(x, w, b, stride, padding), atol=1e-12)


@settings(max_examples=10)
@given(B=st.integers(1, 2), C=st.integers(1, 3), F=st.integers(1, 3), k=st.integers(1, 3),
       stride=st.integers(1, 2), padding=st.integers(0, 1), H=st.integers(3, 6))
def test_conv2d_gradients(xp, B, C, F, k, stride, padding, H):
    x, w, b = randn(xp, B, C, H, H + 1), randn(xp, F, C, k, k, seed=1), randn(xp, F, seed=2)
    check_layer(lambda x, w, b: conv2d_forward(x, w, b, stride, padding), conv2d_backward,
                [x, w, b], names=["x", "weight", "bias"])


@pytest.mark.parametrize("stride,padding,k", [(1, 1, 3), (2, 1, 3), (2, 0, 1), (1, 0, 1),
                                            (1, 2, 3), (1, 1, 1)])
@pytest.mark.parametrize("chunk_bytes", [conv.CHUNK_BYTES, 1])
def test_conv2d_nhwc_gradients_sum_and_chunks(xp, monkeypatch, stride, padding, k, chunk_bytes):
    """Channels last: the convolution sum, finite differences (the stride-1 backward as a
    convolution, the others by col2im), the same numbers with one image per chunk
    (chunk_bytes=1) and without a cache."""
    monkeypatch.setattr(conv, "CHUNK_BYTES", chunk_bytes)
    x, w, b = randn(xp, 3, 5, 6, 2), randn(xp, 4, 2, k, k, seed=1), randn(xp, 4, seed=2)
    out, _ = conv2d_nhwc_forward(x, w, b, stride, padding)
    expect = _conv2d_loops(x.transpose(0, 3, 1, 2), w, b, stride, padding).transpose(0, 2, 3, 1)
    assert np.allclose(to_numpy(out), expect, atol=1e-12)
    bare, cache = conv2d_nhwc_forward(x, w, b, stride, padding, keep_cache=False)
    assert cache is None and np.array_equal(to_numpy(bare), to_numpy(out))
    check_layer(lambda x, w, b: conv2d_nhwc_forward(x, w, b, stride, padding),
                conv2d_nhwc_backward, [x, w, b], names=["x", "weight", "bias"])


def test_conv2d_nhwc_chunks_give_the_same_bits(monkeypatch):
    g = np.random.default_rng(0)
    x, w = g.standard_normal((5, 8, 8, 3), dtype=np.float32), g.standard_normal(
        (4, 3, 3, 3), dtype=np.float32)
    whole, cache = conv2d_nhwc_forward(x, w, None, 1, 1)
    monkeypatch.setattr(conv, "CHUNK_BYTES", 2 * 64 * 27 * 4)           # two images a chunk
    parts, cache2 = conv2d_nhwc_forward(x, w, None, 1, 1)
    assert np.array_equal(whole, parts)
    dout = g.standard_normal(whole.shape, dtype=np.float32)
    for a, b in zip(conv2d_nhwc_backward(dout, cache), conv2d_nhwc_backward(dout, cache2)):
        assert a is b is None or np.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_conv2d_rejects_mismatched_kernels(xp):
    with pytest.raises(ValueError, match="does not fit input"):
        conv2d_forward(randn(xp, 1, 3, 8, 8), randn(xp, 4, 2, 3, 3), randn(xp, 4), 1, 1)
    with pytest.raises(ValueError, match="does not fit a 2x2 input"):
        conv2d_forward(randn(xp, 1, 3, 2, 2), randn(xp, 4, 3, 3, 3), randn(xp, 4), 1, 0)
    with pytest.raises(ValueError, match="channels last"):
        conv2d_nhwc_forward(randn(xp, 1, 3, 8, 8), randn(xp, 4, 3, 3, 3), None, 1, 1)


def test_relu_gradients_and_values(xp):
    x = randn(xp, 3, 5, 7) + 0.05         # (no input within 1e-5 of the kink)
    x = xp.where(abs(x) < 1e-3, 0.5, x)
    check_layer(relu_forward, relu_backward, [x])
    out, _ = relu_forward(x)
    assert (to_numpy(out) == np.maximum(to_numpy(x), 0)).all()


@settings(max_examples=6)
@given(B=st.integers(1, 2), C=st.integers(1, 3), depth=st.integers(1, 2), D=st.integers(2, 5))
def test_conv_stem_gradients(xp, B, C, depth, D):
    chans = [3, 4][:depth]
    convs, c_in = [], C
    for i, c in enumerate(chans):
        convs.append((randn(xp, c, c_in, 3, 3, seed=10 + i), randn(xp, c, seed=20 + i, scale=0.1)))
        c_in = c
    pw, pb = randn(xp, D, c_in, 1, 1, seed=30), randn(xp, D, seed=31)
    images = randn(xp, B, C, 4 * 2 ** depth, 2 ** depth * 2)
    flat = [images] + [a for wb in convs for a in wb] + [pw, pb]

    def forward(images, *rest):
        cs = [(rest[2 * i], rest[2 * i + 1]) for i in range(depth)]
        return conv_stem_forward(images, cs, rest[-2], rest[-1])

    def backward(dtokens, cache):
        dimages, dconvs, dw, db = conv_stem_backward(dtokens, cache)
        return (dimages, *[g for wb in dconvs for g in wb], dw, db)

    tokens, _ = forward(*flat)
    assert tokens.shape == (B, 4 * 2, D)              # a 4 x 2 grid of tokens
    check_layer(forward, backward, flat)


@pytest.mark.slow
@pytest.mark.parametrize("pool", ["token", "mean"])
def test_whole_model_gradients_with_a_conv_stem(xp, pool):
    model = minivit.create_model("cifar-nano", dtype="float64", pool=pool, image_size=8,
                                 patch_size=4, conv_stem=(3, 4), embed_dim=8, depth=2,
                                 num_heads=2, mlp_dim=16)
    whole_model_check(model, randn(xp, 3, 3, 8, 8), xp.asarray([0, 3, 9]), smoothing=0.1)


def test_conv_stem_names_shapes_and_initialisation():
    cfg = minivit.get_config("cifar-nano", conv_stem=[64, 128])
    assert cfg.conv_stem == (64, 128)                 # a JSON list becomes a tuple
    shapes = param_shapes(cfg)
    assert list(shapes)[:8] == [
        "cls_token", "pos_embed",
        "patch_embed.backbone.0.conv.weight", "patch_embed.backbone.0.conv.bias",
        "patch_embed.backbone.1.conv.weight", "patch_embed.backbone.1.conv.bias",
        "patch_embed.proj.weight", "patch_embed.proj.bias"]
    assert shapes["patch_embed.backbone.1.conv.weight"] == (128, 64, 3, 3)
    assert shapes["patch_embed.proj.weight"] == (128, 128, 1, 1)
    m = minivit.create_model(cfg, seed=0, dtype="float64")
    w = to_numpy(m.params["patch_embed.backbone.1.conv.weight"])
    assert abs(w.std() / np.sqrt(2 / (64 * 9)) - 1) < 0.02       # He normal
    assert (to_numpy(m.params["patch_embed.backbone.1.conv.bias"]) == 0).all()
    assert np.abs(to_numpy(m.params["patch_embed.proj.weight"])).max() <= 1 / np.sqrt(128)
    plain = minivit.create_model("cifar-nano", seed=0, dtype="float64")
    assert m.num_params() - plain.num_params() == (
        64 * 27 + 64 + 128 * 64 * 9 + 128 + 128 * 128 - 128 * 48)


def test_conv_stem_configs_are_checked():
    with pytest.raises(ValueError, match="patch_size == 2\\*\\*len"):
        ViTConfig(patch_size=4, conv_stem=(16,))
    with pytest.raises(ValueError, match="positive channel counts"):
        ViTConfig(patch_size=4, conv_stem=(16, 0))
    with pytest.raises(ValueError, match="channel counts such as"):
        ViTConfig(patch_size=4, conv_stem="a,b")
    assert ViTConfig(patch_size=4, conv_stem="8, 16").conv_stem == (8, 16)
    assert ViTConfig.from_dict(ViTConfig(conv_stem=(8, 16)).to_dict()).conv_stem == (8, 16)


def test_saved_hybrid_loads_with_its_stem_and_config_is_inferred(tmp_path):
    pytest.importorskip("safetensors")
    from minivit.io.serialization import infer_config
    m = minivit.create_model("cifar-nano", seed=3, conv_stem=(8, 16), depth=1)
    minivit.save(m, tmp_path / "h.safetensors")
    back = minivit.load(tmp_path / "h.safetensors")
    assert back.config.conv_stem == (8, 16)
    assert all((to_numpy(back.params[k]) == to_numpy(v)).all() for k, v in m.params.items())
    cfg = infer_config({k: v.shape for k, v in m.params.items()}, num_heads=4)
    assert (cfg.conv_stem, cfg.patch_size, cfg.in_chans, cfg.image_size) == ((8, 16), 4, 3, 32)


def test_hybrids_are_refused_where_they_cannot_work(tmp_path):
    from minivit.io.official_npz import export_official_npz
    from minivit.models.mae import MAEConfig
    from minivit.models.masked_patch_prediction import MPPConfig
    m = minivit.create_model("cifar-nano", conv_stem=(8, 16), depth=1)
    with pytest.raises(ValueError, match="no official .npz layout"):
        export_official_npz(m, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
    for cls in (MAEConfig, MPPConfig):
        with pytest.raises(ValueError, match="overlap the neighbouring patches"):
            cls(encoder=m.config)
