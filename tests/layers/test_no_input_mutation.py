"""No layer changes what it is given: every forward/backward pair of minivit/layers, and the
whole ViT's forward/backward, leaves its inputs, parameters and upstream gradients as they
were (the layers work in place only on arrays they created).  NumPy, float32 and float64:
float32 takes the in-place erf path of the exact GELU."""

import numpy as np
import pytest

import minivit
from minivit.backend import rng as device_rng
from minivit.layers.attention import (
    attention_backward,
    attention_core_backward,
    attention_core_forward,
    attention_forward,
)
from minivit.layers.batchnorm import batchnorm2d_backward, batchnorm2d_forward
from minivit.layers.block import BLOCK_PARAM_NAMES, block_backward, block_forward
from minivit.layers.color_prediction import patch_ce_backward, patch_ce_forward
from minivit.layers.conv import (
    conv2d_backward,
    conv2d_forward,
    conv2d_nhwc_backward,
    conv2d_nhwc_forward,
)
from minivit.layers.conv_stem import conv_stem_backward, conv_stem_forward
from minivit.layers.dropout import (
    drop_path_backward,
    drop_path_forward,
    dropout_backward,
    dropout_forward,
)
from minivit.layers.encoder import encoder_backward, encoder_forward
from minivit.layers.gelu import gelu_backward, gelu_forward
from minivit.layers.layernorm import layernorm_backward, layernorm_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.loss import cross_entropy
from minivit.layers.masking import (
    corrupt_tokens_backward,
    corrupt_tokens_forward,
    gather_tokens_backward,
    gather_tokens_forward,
    unshuffle_forward,
)
from minivit.layers.mlp import mlp_backward, mlp_forward
from minivit.layers.patch_dropout import patch_dropout_backward, patch_dropout_forward
from minivit.layers.patch_embed import patch_embed_backward, patch_embed_forward
from minivit.layers.patches import patchify_backward, patchify_forward
from minivit.layers.reconstruction import (
    masked_mse_backward,
    masked_mse_forward,
    patch_targets_backward,
    patch_targets_forward,
)
from minivit.layers.relu import relu_backward, relu_forward
from minivit.layers.softmax import log_softmax, softmax_backward, softmax_forward
from minivit.layers.tokens import embed_tokens_backward, embed_tokens_forward

B, T, D, H, M = 2, 5, 8, 2, 16


def _block_params(g, dt):
    shapes = {"norm1.weight": (D,), "norm1.bias": (D,), "attn.qkv.weight": (3 * D, D),
              "attn.qkv.bias": (3 * D,), "attn.proj.weight": (D, D), "attn.proj.bias": (D,),
              "norm2.weight": (D,), "norm2.bias": (D,), "mlp.fc1.weight": (M, D),
              "mlp.fc1.bias": (M,), "mlp.fc2.weight": (D, M), "mlp.fc2.bias": (D,)}
    assert set(shapes) == set(BLOCK_PARAM_NAMES)
    return {k: g.standard_normal(s).astype(dt) * 0.5 for k, s in shapes.items()}


def _cases(g, dt):
    """name -> (arrays the call is given, a function of them running forward then backward)."""
    r = lambda *s: g.standard_normal(s).astype(dt)                      # noqa: E731
    rng = lambda: device_rng(0)                                         # noqa: E731
    x3, dy3 = r(B, T, D), r(B, T, D)
    ids = np.array([[3, 0], [1, 4]])
    cases = {
        "linear": ([x3, r(M, D), r(M), r(B, T, M)],
                   lambda x, w, b, dy: linear_backward(dy, linear_forward(x, w, b)[1])),
        "layernorm": ([x3, r(D), r(D), dy3],
                      lambda x, w, b, dy: layernorm_backward(dy, layernorm_forward(x, w, b)[1])),
        "gelu erf": ([x3 * 3, dy3], lambda x, dy: gelu_backward(dy, gelu_forward(x)[1])),
        "gelu tanh": ([x3 * 3, dy3],
                      lambda x, dy: gelu_backward(dy, gelu_forward(x, "tanh")[1])),
        "softmax": ([x3, dy3], lambda x, dy: (softmax_backward(dy, softmax_forward(x)[1]),
                                              log_softmax(x))),
        "dropout": ([x3, dy3], lambda x, dy: dropout_backward(
            dy, dropout_forward(x, 0.3, rng())[1])),
        "drop_path": ([x3, dy3], lambda x, dy: drop_path_backward(
            dy, drop_path_forward(x, 0.5, rng())[1])),
        "relu": ([x3, dy3], lambda x, dy: relu_backward(dy, relu_forward(x)[1])),
        "attention core": ([r(B, H, T, D // H), r(B, H, T, D // H), r(B, H, T, D // H),
                            r(B, H, T, D // H)],
                           lambda q, k, v, dy: attention_core_backward(
                               dy, attention_core_forward(q, k, v, 0.2, rng(), True)[1])),
        "attention": ([x3, r(3 * D, D), r(3 * D), r(D, D), r(D), dy3],
                      lambda x, wq, bq, wp, bp, dy: attention_backward(
                          dy, attention_forward(x, wq, bq, wp, bp, H, 0.1, 0.1, rng(), True)[1])),
        "mlp": ([x3, r(M, D), r(M), r(D, M), r(D), dy3],
                lambda x, w1, b1, w2, b2, dy: mlp_backward(
                    dy, mlp_forward(x, w1, b1, w2, b2, "erf", 0.1, rng(), True)[1])),
        "conv2d": ([r(B, 3, 8, 8), r(4, 3, 3, 3), r(4), r(B, 4, 4, 4)],
                   lambda x, w, b, dy: conv2d_backward(dy, conv2d_forward(x, w, b, 2, 1)[1])),
        "conv2d nhwc": ([r(B, 8, 8, 3), r(4, 3, 3, 3), r(B, 8, 8, 4)],
                        lambda x, w, dy: conv2d_nhwc_backward(
                            dy, conv2d_nhwc_forward(x, w, None, 1, 1)[1])),
        "batchnorm2d relu": ([r(B, 4, 4, 3), r(3), r(3), r(3), r(3) ** 2 + 0.5, r(B, 4, 4, 3)],
                             lambda x, w, b, rm, rv, dy: batchnorm2d_backward(
                                 dy, batchnorm2d_forward(x, w, b, rm, rv, True, relu=True)[1])),
        "batchnorm2d eval": ([r(B, 4, 4, 3), r(3), r(3), r(3), r(3) ** 2 + 0.5, r(B, 4, 4, 3)],
                             lambda x, w, b, rm, rv, dy: batchnorm2d_backward(
                                 dy, batchnorm2d_forward(x, w, b, rm, rv, False)[1])),
        "relu in place on a copy": ([x3, dy3], lambda x, dy: relu_backward(
            dy, relu_forward(x.copy(), inplace=True)[1])),
        "conv_stem": ([r(B, 3, 8, 8), r(4, 3, 3, 3), r(4), r(D, 4, 1, 1), r(D), r(B, 16, D)],
                      lambda x, cw, cb, w, b, dy: conv_stem_backward(
                          dy, conv_stem_forward(x, [(cw, cb)], w, b)[1])),
        "patch_embed": ([r(B, 3, 8, 8), r(D, 3, 4, 4), r(D), r(B, 4, D)],
                        lambda x, w, b, dy: patch_embed_backward(
                            dy, patch_embed_forward(x, w, b)[1])),
        "patchify": ([r(B, 3, 8, 8), r(B, 4, 48)],
                     lambda x, dy: patchify_backward(dy, patchify_forward(x, 4)[1])),
        "tokens": ([r(B, T - 1, D), r(1, 1, D), r(1, T, D), dy3],
                   lambda x, c, p, dy: (embed_tokens_forward(x, c, p), embed_tokens_backward(dy))),
        "patch_dropout": ([x3, r(B, 3, D)], lambda x, dy: patch_dropout_backward(
            dy, patch_dropout_forward(x, 0.5, rng())[1])),
        "gather/unshuffle": ([x3, r(B, 2, D)], lambda x, dy: (
            gather_tokens_backward(dy, gather_tokens_forward(x, ids)[1]),
            unshuffle_forward(x, np.array([[4, 3, 2, 1, 0], [0, 2, 4, 1, 3]])))),
        "corrupt_tokens": ([x3, np.array([[1, 0, 0, 0, 1], [0, 0, 1, 0, 0]], dt),
                            np.array([[0, 1, 0, 0, 0], [0, 0, 0, 1, 0]], dt),
                            np.arange(B * T).reshape(B, T)[::-1].copy(), r(1, 1, D), dy3],
                           lambda x, rt, rr, src, mt, dy: corrupt_tokens_backward(
                               dy, corrupt_tokens_forward(x, rt, rr, src, mt)[1])),
        "patch_targets": ([r(B, 3, 8, 8), r(B, 4, 48)],
                          lambda x, dy: patch_targets_backward(
                              dy, patch_targets_forward(x, 4, norm_pix=True)[1])),
        "masked_mse": ([r(B, 4, 48), r(B, 4, 48), np.array([[1, 0, 1, 0], [0, 1, 1, 1]], dt)],
                       lambda p, t, m: masked_mse_backward(1.0, masked_mse_forward(p, t, m)[1])),
        "patch_ce": ([r(B, 4, 10), np.array([[1, 2, 3, 9], [0, 0, 5, 7]])],
                     lambda lg, lb: patch_ce_backward(1.0, patch_ce_forward(lg, lb)[1])),
        "cross_entropy": ([r(B, 10), np.array([3, 7]), np.full((B, 10), 0.1, dt)],
                          lambda lg, lb, soft: (cross_entropy(lg, lb, 0.1),
                                                cross_entropy(lg, soft))),
    }
    bp = _block_params(g, dt)
    cases["block"] = ([x3, dy3, *bp.values()], lambda x, dy, *p: block_backward(
        dy, block_forward(x, dict(zip(bp, p)), H, "erf", 0.1, 0.1, 0.2, rng(), True)[1]))
    bp2 = _block_params(g, dt)
    cases["encoder"] = ([x3, dy3, *bp.values(), *bp2.values()], lambda x, dy, *p: encoder_backward(
        dy, encoder_forward(x, [dict(zip(bp, p[:12])), dict(zip(bp2, p[12:]))], H,
                            drop_paths=[0.0, 0.3], rng=rng(), train=True)[1]))
    return cases


CASE_NAMES = sorted(_cases(np.random.default_rng(0), np.float64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_layer_leaves_its_inputs_alone(name, dtype):
    arrays, run = _cases(np.random.default_rng(1), dtype)[name]
    before = [a.copy() for a in arrays]
    run(*arrays)
    for i, (a, b) in enumerate(zip(arrays, before)):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"{name}: argument {i} changed"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("overrides", [{}, {"drop_rate": 0.1, "drop_path_rate": 0.2,
                                            "attn_drop_rate": 0.1, "patch_drop_rate": 0.5,
                                            "pool": "mean"}])
def test_model_forward_backward_leaves_inputs_and_params_alone(dtype, overrides):
    model = minivit.create_model("cifar-nano", seed=0, dtype=dtype, depth=2, **overrides)
    g = np.random.default_rng(2)
    images = g.standard_normal((3, 3, 32, 32)).astype(dtype)
    keep_images = images.copy()
    keep_params = {k: v.copy() for k, v in model.params.items()}
    logits = model.forward(images, train=True)
    loss, dlogits = cross_entropy(logits, np.array([1, 2, 3]))
    keep_dlogits = dlogits.copy()
    model.backward(dlogits)
    model.forward(images, train=False, keep_cache=False)
    minivit.predict_logits(model, images, threads=2, batch_size=2)
    assert images.tobytes() == keep_images.tobytes()
    assert dlogits.tobytes() == keep_dlogits.tobytes()
    for k, v in model.params.items():
        assert v.tobytes() == keep_params[k].tobytes(), k


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_resnet_forward_backward_leaves_inputs_params_and_buffers_alone(dtype):
    from minivit.models.resnet import create_resnet
    model = create_resnet("resnet8", seed=0, dtype=dtype, widths=(4, 8, 8), image_size=8)
    images = np.random.default_rng(3).standard_normal((4, 3, 8, 8)).astype(dtype)
    keep_images = images.copy()
    keep = {k: v.copy() for k, v in {**model.params, **model.buffers}.items()}
    buffers = dict(model.buffers)                 # the arrays the update must not write into
    _, dlogits = cross_entropy(model.forward(images, train=True), np.array([1, 2, 3, 0]))
    keep_dlogits = dlogits.copy()
    model.backward(dlogits)
    model.forward(images, train=False, keep_cache=False)
    assert images.tobytes() == keep_images.tobytes()
    assert dlogits.tobytes() == keep_dlogits.tobytes()
    for k, v in model.params.items():
        assert v.tobytes() == keep[k].tobytes(), k
    for k, v in buffers.items():
        assert v.tobytes() == keep[k].tobytes(), k
