"""Every layer's hand-written backward against central finite differences (float64), with
shapes drawn by hypothesis, plus the properties each layer must have."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import check_layer, randn

from minivit.backend import rng as device_rng
from minivit.backend import to_numpy
from minivit.layers.attention import (
    attention_backward,
    attention_core_backward,
    attention_core_forward,
    attention_forward,
)
from minivit.layers.block import BLOCK_PARAM_NAMES, block_backward, block_forward
from minivit.layers.dropout import (
    drop_path_backward,
    drop_path_forward,
    dropout_backward,
    dropout_forward,
)
from minivit.layers.gelu import gelu_backward, gelu_forward
from minivit.layers.layernorm import layernorm_backward, layernorm_forward
from minivit.layers.linear import linear_backward, linear_forward
from minivit.layers.loss import cross_entropy
from minivit.layers.masking import masking_noise, random_masking
from minivit.layers.mlp import mlp_backward, mlp_forward
from minivit.layers.patch_dropout import patch_dropout_backward, patch_dropout_forward
from minivit.layers.patch_embed import patch_embed_backward, patch_embed_forward
from minivit.layers.patches import patchify, unpatchify
from minivit.layers.softmax import softmax_backward, softmax_forward
from minivit.layers.tokens import embed_tokens_backward, embed_tokens_forward
from minivit.reference.numerical import rel_error

small = st.integers(1, 4)


# ---------------------------------------------------------------- patches and patch embedding
@given(B=small, C=st.integers(1, 3), P=st.integers(1, 4), h=st.integers(1, 3), w=st.integers(1, 3))
def test_unpatchify_inverts_patchify(xp, B, C, P, h, w):
    x = randn(xp, B, C, h * P, w * P)
    patches = patchify(x, P)
    assert patches.shape == (B, h * w, P * P * C)
    assert (unpatchify(patches, P, C, (h, w)) == x).all()


def test_patch_order_is_row_major_with_channel_last(xp):
    # 1 image, 2 channels, 4x4 pixels, 2x2 patches: check against a hand-made loop.
    x = xp.arange(2 * 4 * 4, dtype=xp.float64).reshape(1, 2, 4, 4)
    patches = to_numpy(patchify(x, 2))
    xn = to_numpy(x)
    n = 0
    for gi in range(2):            # grid row
        for gj in range(2):        # grid column
            expect = xn[0, :, 2 * gi:2 * gi + 2, 2 * gj:2 * gj + 2].transpose(1, 2, 0).reshape(-1)
            assert (patches[0, n] == expect).all()
            n += 1


def test_patchify_rejects_indivisible_size(xp):
    with pytest.raises(ValueError, match="does not divide"):
        patchify(randn(xp, 1, 3, 10, 10), 4)


def _conv2d_stride_p(x, w, b):
    """Direct convolution with stride = kernel = P, written as the textbook sum (NumPy)."""
    B, C, H, W = x.shape
    D, _, P, _ = w.shape
    out = np.zeros((B, D, H // P, W // P))
    for i in range(H // P):
        for j in range(W // P):
            window = x[:, :, i * P:(i + 1) * P, j * P:(j + 1) * P]          # (B, C, P, P)
            out[:, :, i, j] = np.einsum("bcpq,dcpq->bd", window, w) + b
    return out.reshape(B, D, -1).transpose(0, 2, 1)                        # (B, N, D)


@given(B=small, C=st.integers(1, 3), P=st.integers(1, 4), g=st.integers(1, 3), D=st.integers(1, 6))
def test_patch_embedding_is_a_stride_p_convolution(xp, B, C, P, g, D):
    x, w, b = (randn(xp, B, C, g * P, g * P, seed=1), randn(xp, D, C, P, P, seed=2),
               randn(xp, D, seed=3))
    tokens, _ = patch_embed_forward(x, w, b)
    expect = _conv2d_stride_p(to_numpy(x), to_numpy(w), to_numpy(b))
    assert rel_error(tokens, expect) < 1e-13


@given(B=small, C=st.integers(1, 3), P=st.integers(1, 3), g=st.integers(1, 3), D=st.integers(1, 5))
def test_patch_embed_gradients(xp, B, C, P, g, D):
    x, w, b = (randn(xp, B, C, g * P, g * P, seed=1), randn(xp, D, C, P, P, seed=2),
               randn(xp, D, seed=3))
    check_layer(patch_embed_forward, patch_embed_backward, [x, w, b], ["images", "weight", "bias"])


@given(B=small, N=st.integers(1, 5), D=st.integers(1, 5))
def test_class_token_and_position_embedding_gradients(xp, B, N, D):
    tokens, cls, pos = (randn(xp, B, N, D, seed=1), randn(xp, 1, 1, D, seed=2),
                        randn(xp, 1, N + 1, D, seed=3))
    z0, _ = embed_tokens_forward(tokens, cls, pos)
    assert z0.shape == (B, N + 1, D)
    assert rel_error(z0[:, 0], xp.broadcast_to((cls + pos[:, :1])[0], (B, D))) == 0
    check_layer(embed_tokens_forward, embed_tokens_backward, [tokens, cls, pos])


def test_position_embedding_shape_is_checked(xp):
    with pytest.raises(ValueError, match="pos_embed has shape"):
        embed_tokens_forward(randn(xp, 2, 4, 3), randn(xp, 1, 1, 3), randn(xp, 1, 4, 3))


# ---------------------------------------------------------------- linear, LayerNorm, GELU, MLP
@given(B=small, T=small, fin=st.integers(1, 6), fout=st.integers(1, 6), bias=st.booleans())
def test_linear_gradients(xp, B, T, fin, fout, bias):
    x, w = randn(xp, B, T, fin, seed=1), randn(xp, fout, fin, seed=2)
    if bias:
        check_layer(linear_forward, linear_backward, [x, w, randn(xp, fout, seed=3)])
    else:
        check_layer(lambda x, w: linear_forward(x, w, None),
                    lambda d, c: linear_backward(d, c)[:2], [x, w])


@given(B=small, T=small, D=st.integers(3, 8), scale=st.sampled_from([1e-3, 1.0, 1e3]))
# (D >= 3: with D = 2 every normalised token is (+-1, -+1), so dx is ~0 and the check is vacuous)
def test_layernorm_gradients(xp, B, T, D, scale):
    x = randn(xp, B, T, D, seed=1, scale=scale)
    check_layer(layernorm_forward, layernorm_backward,
                [x, randn(xp, D, seed=2), randn(xp, D, seed=3)],
                h=1e-5 * min(scale, 1.0))   # the step must be small against the inputs


@given(B=small, T=small, D=st.integers(2, 16))
def test_layernorm_normalises_each_token(xp, B, T, D):
    x = randn(xp, B, T, D, seed=4) * 5 + 3
    y, _ = layernorm_forward(x, xp.ones(D), xp.zeros(D))
    assert float(abs(y.mean(-1)).max()) < 1e-12
    # variance is 1 up to eps / var (eps = 1e-6 inside the square root)
    var = x.var(-1)
    assert float(abs(y.var(-1) - var / (var + 1e-6)).max()) < 1e-10


@pytest.mark.parametrize("approximate", ["erf", "tanh"])
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3))
def test_gelu_gradients(xp, approximate, shape):
    x = randn(xp, *shape, seed=5, scale=3.0)
    check_layer(lambda x: gelu_forward(x, approximate), gelu_backward, [x])


def test_gelu_values(xp):
    xs = np.linspace(-8, 8, 101)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in xs])
    y, _ = gelu_forward(xp.asarray(xs), "erf")
    assert float(abs(to_numpy(y) - exact).max()) < 1e-15
    y_tanh, _ = gelu_forward(xp.asarray(xs), "tanh")
    assert float(abs(to_numpy(y_tanh) - exact).max()) < 1e-3   # the approximation is close


def test_gelu_rejects_unknown_form(xp):
    with pytest.raises(ValueError, match="approximate"):
        gelu_forward(randn(xp, 3), "relu")


@given(B=small, T=small, D=st.integers(1, 5), H=st.integers(1, 6))
def test_mlp_gradients(xp, B, T, D, H):
    inputs = [randn(xp, B, T, D, seed=1), randn(xp, H, D, seed=2), randn(xp, H, seed=3),
              randn(xp, D, H, seed=4), randn(xp, D, seed=5)]
    check_layer(mlp_forward, mlp_backward, inputs)


# ---------------------------------------------------------------- softmax and attention
@given(B=small, K=st.integers(1, 7))
def test_softmax_gradients_and_rows(xp, B, K):
    x = randn(xp, B, 3, K, seed=6, scale=4.0)
    check_layer(softmax_forward, softmax_backward, [x])
    p, _ = softmax_forward(x)
    assert float(abs(p.sum(-1) - 1).max()) < 1e-14
    p_shift, _ = softmax_forward(x + 123.0)
    assert rel_error(p, p_shift) < 1e-13


@given(B=small, K=st.integers(1, 9), N=st.integers(1, 4))
def test_softmax_down_the_columns_is_the_row_softmax_transposed(xp, B, K, N):
    x = randn(xp, B, 2, K, N, seed=7, scale=4.0)
    check_layer(lambda x: softmax_forward(x, axis=-2),
                lambda dp, p: softmax_backward(dp, p, axis=-2), [x])
    p, _ = softmax_forward(x, axis=-2)
    p_rows, _ = softmax_forward(x.swapaxes(-1, -2))
    assert rel_error(p, p_rows.swapaxes(-1, -2)) < 1e-14


@pytest.mark.parametrize("K", [1, 2, 3, 5, 8, 17, 33, 65])
def test_column_max_by_halving_is_numpys_maximum(xp, K):
    from minivit.layers.softmax import _column_max
    x = randn(xp, 3, 2, K, 7, seed=K)
    assert bool((_column_max(x) == x.max(axis=-2, keepdims=True)).all())
    x[1, 0, K // 2, 3] = float("nan")
    m = _column_max(x)
    assert bool(xp.isnan(m[1, 0, 0, 3])) and int(xp.isnan(m).sum()) == 1


def test_sums_as_matrix_vector_products_match_numpys(xp):
    from minivit.layers.sums import column_sum, row_mean, sum_over
    x = randn(xp, 4, 3, 5, 6, seed=8)
    for axis in (-1, -2, 0, 1):
        assert rel_error(sum_over(x, axis), x.sum(axis=axis, keepdims=True)) < 1e-14
    assert rel_error(row_mean(x), x.mean(axis=-1, keepdims=True)) < 1e-14
    assert rel_error(column_sum(x), x.reshape(-1, 6).sum(axis=0)) < 1e-14


def test_softmax_is_stable_for_huge_inputs(xp):
    p, _ = softmax_forward(xp.asarray([[1000.0, 1000.0, -1000.0], [1e300, 0.0, -1e300]]))
    assert bool(xp.isfinite(p).all())
    assert rel_error(p[0], xp.asarray([0.5, 0.5, 0.0])) < 1e-15


@given(B=small, H=st.integers(1, 3), T=st.integers(1, 5), d=st.integers(1, 4))
def test_attention_core_gradients(xp, B, H, T, d):
    q, k, v = (randn(xp, B, H, T, d, seed=s) for s in (1, 2, 3))

    def fwd(q, k, v):
        return attention_core_forward(q, k, v)
    check_layer(fwd, attention_core_backward, [q, k, v], ["q", "k", "v"])


@given(B=small, heads=st.integers(1, 3), T=st.integers(1, 5), d=st.integers(1, 3),
       attn_drop=st.sampled_from([0.0, 0.3]), proj_drop=st.sampled_from([0.0, 0.2]))
def test_attention_gradients(xp, B, heads, T, d, attn_drop, proj_drop):
    D = heads * d
    inputs = [randn(xp, B, T, D, seed=1), randn(xp, 3 * D, D, seed=2), randn(xp, 3 * D, seed=3),
              randn(xp, D, D, seed=4), randn(xp, D, seed=5)]

    def fwd(x, wq, bq, wp, bp):   # a fresh generator with the same seed -> the same masks
        return attention_forward(x, wq, bq, wp, bp, heads, attn_drop, proj_drop,
                                 rng=device_rng(7, xp), train=True)
    check_layer(fwd, attention_backward, inputs)


def test_attention_probabilities_are_returned(xp):
    B, T, heads, d = 2, 5, 3, 2
    D = heads * d
    x = randn(xp, B, T, D)
    _, cache = attention_forward(x, randn(xp, 3 * D, D, seed=1), None, randn(xp, D, D, seed=2),
                                 None, heads)
    probs = cache.probs
    assert probs.shape == (B, heads, T, T)
    assert float(abs(probs.sum(-1) - 1).max()) < 1e-14
    assert float(probs.min()) >= 0


def test_qkv_layout_is_timms(xp):
    """Row blocks of attn.qkv.weight are q | k | v, each split into heads in order."""
    B, T, heads, d = 1, 3, 2, 2
    D = heads * d
    x = randn(xp, B, T, D)
    wqkv = randn(xp, 3 * D, D, seed=1)
    probs = attention_forward(x, wqkv, None, xp.eye(D), None, heads)[1].probs
    # head 1 by hand: q = x Wq[h1]^T with Wq = rows 0..D-1, head 1 = rows d..2d-1
    q = x[0] @ wqkv[d:2 * d].T
    k = x[0] @ wqkv[D + d:D + 2 * d].T
    s = q @ k.T / math.sqrt(d)
    p = xp.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    assert rel_error(probs[0, 1], p) < 1e-14


def test_self_attention_is_permutation_equivariant(xp):
    """Without position embeddings, permuting the tokens permutes the block's output."""
    B, T, heads, d, H = 2, 6, 2, 3, 8
    D = heads * d
    x = randn(xp, B, T, D)
    p = {name: randn(xp, *shape, seed=i) for i, (name, shape) in enumerate({
        "norm1.weight": (D,), "norm1.bias": (D,), "attn.qkv.weight": (3 * D, D),
        "attn.qkv.bias": (3 * D,), "attn.proj.weight": (D, D), "attn.proj.bias": (D,),
        "norm2.weight": (D,), "norm2.bias": (D,), "mlp.fc1.weight": (H, D), "mlp.fc1.bias": (H,),
        "mlp.fc2.weight": (D, H), "mlp.fc2.bias": (D,)}.items())}
    perm = xp.asarray(np.random.default_rng(0).permutation(T))
    y, _ = block_forward(x, p, heads)
    y_perm, _ = block_forward(x[:, perm], p, heads)
    assert rel_error(y[:, perm], y_perm) < 1e-13


# ---------------------------------------------------------------- dropout, drop-path, block
def test_dropout_is_identity_at_eval_and_deterministic(xp):
    x = randn(xp, 4, 50)
    y, cache = dropout_forward(x, 0.5, device_rng(0, xp), train=False)
    assert y is x and cache is None
    y1, _ = dropout_forward(x, 0.5, device_rng(0, xp), train=True)
    y2, _ = dropout_forward(x, 0.5, device_rng(0, xp), train=True)
    assert (y1 == y2).all()
    kept = to_numpy(y1 != 0)
    assert 0.35 < kept.mean() < 0.65
    assert rel_error(y1[y1 != 0], 2 * x[y1 != 0]) < 1e-15     # survivors scaled by 1/(1-p)


def test_drop_path_drops_whole_samples(xp):
    x = randn(xp, 64, 3, 4) + 10
    y, mask = drop_path_forward(x, 0.5, device_rng(1, xp), train=True)
    per_sample = to_numpy((y == 0).reshape(64, -1))
    assert (per_sample.all(1) | (~per_sample).all(1)).all()   # all or nothing per sample
    assert 0 < per_sample.all(1).sum() < 64


@pytest.mark.parametrize("layer", ["dropout", "drop_path"])
def test_dropout_gradients(xp, layer):
    fwd, bwd = {"dropout": (dropout_forward, dropout_backward),
                "drop_path": (drop_path_forward, drop_path_backward)}[layer]
    check_layer(lambda x: fwd(x, 0.4, device_rng(3, xp), True), bwd, [randn(xp, 5, 3, 4)])


def test_patch_dropout_keeps_the_class_token_and_a_random_subset(xp):
    B, N, D, p = 6, 16, 5, 0.25
    z = randn(xp, B, 1 + N, D)
    same, cache = patch_dropout_forward(z, p, device_rng(0, xp), train=False)
    assert same is z and cache is None                     # evaluation sees every token
    out, _ = patch_dropout_forward(z, p, device_rng(0, xp), train=True)
    assert out.shape == (B, 1 + 12, D)                     # K = 16 - round(16 * 0.25)
    assert (out[:, 0] == z[:, 0]).all()
    # the kept tokens are the 12 lowest-noise patches of each image, with no rescaling
    ids, _, _ = random_masking(masking_noise(device_rng(0, xp), B, N), p)
    zn, on, idn = to_numpy(z), to_numpy(out), to_numpy(ids)
    for b in range(B):
        assert (on[b, 1:] == zn[b, 1 + idn[b]]).all()
    assert len({tuple(sorted(r)) for r in idn}) > 1        # each image draws its own subset
    again, _ = patch_dropout_forward(z, p, device_rng(0, xp), train=True)
    assert (again == out).all()                            # same generator state, same tokens


def test_patch_dropout_gradients(xp):
    z = randn(xp, 3, 1 + 9, 4)
    check_layer(lambda x: patch_dropout_forward(x, 0.4, device_rng(3, xp), True),
                patch_dropout_backward, [z])
    out, cache = patch_dropout_forward(z, 0.4, device_rng(3, xp), True)
    dz = to_numpy(patch_dropout_backward(xp.ones_like(out), cache))
    assert (dz[:, 1:].sum(axis=(1, 2)) == 5 * 4).all()      # 9 - round(3.6) = 5 kept, others 0
    assert (dz[:, 0] == 1).all()


def test_patch_dropout_rounding_and_bad_rates(xp):
    z = randn(xp, 2, 1 + 4, 3)
    out, cache = patch_dropout_forward(z, 0.1, device_rng(0, xp), True)  # round(0.4) = 0 dropped
    assert out is z and cache is None
    with pytest.raises(ValueError, match="drops all 4 patch tokens"):
        patch_dropout_forward(z, 0.9, device_rng(0, xp), True)
    with pytest.raises(ValueError, match="random generator"):
        patch_dropout_forward(z, 0.5, None, True)


def test_dropout_needs_a_generator(xp):
    with pytest.raises(ValueError, match="random generator"):
        dropout_forward(randn(xp, 3), 0.5, None, train=True)


@pytest.mark.slow
@given(B=small, T=st.integers(1, 4), heads=st.integers(1, 2), d=st.integers(1, 3),
       drop=st.sampled_from([0.0, 0.25]), approximate=st.sampled_from(["erf", "tanh"]))
def test_block_gradients(xp, B, T, heads, d, drop, approximate):
    D, H = heads * d, 2 * heads * d
    shapes = {"norm1.weight": (D,), "norm1.bias": (D,), "attn.qkv.weight": (3 * D, D),
              "attn.qkv.bias": (3 * D,), "attn.proj.weight": (D, D), "attn.proj.bias": (D,),
              "norm2.weight": (D,), "norm2.bias": (D,), "mlp.fc1.weight": (H, D),
              "mlp.fc1.bias": (H,), "mlp.fc2.weight": (D, H), "mlp.fc2.bias": (D,)}
    assert tuple(shapes) == BLOCK_PARAM_NAMES
    names = list(shapes)
    inputs = ([randn(xp, B, T, D, seed=99)]
              + [randn(xp, *s, seed=i) for i, s in enumerate(shapes.values())])

    def fwd(z, *ps):
        return block_forward(z, dict(zip(names, ps)), heads, approximate, drop, drop, drop,
                             rng=device_rng(11, xp), train=True)

    def bwd(dout, cache):
        dz, g = block_backward(dout, cache)
        return (dz,) + tuple(g[n] for n in names)
    check_layer(fwd, bwd, inputs, ["z"] + names)


# ---------------------------------------------------------------- cross-entropy
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@given(B=small, K=st.integers(2, 7))
def test_cross_entropy_gradients(xp, smoothing, B, K):
    logits = randn(xp, B, K, seed=1, scale=3)
    labels = xp.asarray(np.random.default_rng(2).integers(0, K, size=B))
    soft = xp.asarray(np.random.default_rng(3).dirichlet(np.ones(K), size=B))
    for target in (labels, soft):
        check_layer(lambda z: (cross_entropy(z, target, smoothing)[0] * xp.ones(()), None),
                    lambda d, c: cross_entropy(logits, target, smoothing)[1] * float(d), [logits])


def test_cross_entropy_values(xp):
    logits = xp.asarray([[2.0, 0.0, -1.0]])
    logp = np.log(np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum())
    loss, _ = cross_entropy(logits, xp.asarray([0]))
    assert abs(loss + logp[0]) < 1e-15
    loss_s, _ = cross_entropy(logits, xp.asarray([0]), label_smoothing=0.3)
    assert abs(loss_s + (0.7 + 0.1) * logp[0] + 0.1 * logp[1] + 0.1 * logp[2]) < 1e-15
    # soft one-hot targets equal hard labels
    assert abs(cross_entropy(logits, xp.asarray([[1.0, 0.0, 0.0]]))[0] - loss) < 1e-15
    # stable for huge logits
    big, d = cross_entropy(xp.asarray([[1e4, -1e4]]), xp.asarray([1]))
    assert abs(big - 2e4) < 1e-9 and bool(xp.isfinite(d).all())


def test_cross_entropy_bad_input(xp):
    logits = randn(xp, 3, 4)
    with pytest.raises(ValueError, match="labels out of range.*expected 0 <= label < 4"):
        cross_entropy(logits, xp.asarray([0, 1, 4]))
    with pytest.raises(ValueError, match="labels out of range"):
        cross_entropy(logits, xp.asarray([0, -1, 2]))
    with pytest.raises(ValueError, match="batch size mismatch: 3 logits but 2 labels"):
        cross_entropy(logits, xp.asarray([0, 1]))
    with pytest.raises(ValueError, match="must be integers"):
        cross_entropy(logits, xp.asarray([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"soft targets have shape \(3, 3\), expected \(3, 4\)"):
        cross_entropy(logits, xp.ones((3, 3)) / 3)
    with pytest.raises(ValueError, match=r"logits must have shape \(B, K\)"):
        cross_entropy(randn(xp, 3), xp.asarray([0, 1, 2]))
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(logits, xp.asarray([0, 1, 2]), label_smoothing=1.5)
