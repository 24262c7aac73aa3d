"""minivit.analysis.attention: the ViT paper's Fig. 6/7 analyses on inputs whose answers are
known."""

import itertools
import math

import numpy as np
import pytest

import minivit
from minivit.analysis import attention as A
from minivit.analysis import embeddings as E


def random_attention(rng, B, H, T):
    """Row-stochastic (B, H, T, T) probabilities."""
    e = rng.random((B, H, T, T)) ** 4
    return e / e.sum(axis=-1, keepdims=True)


def identity_attention(B, H, T):
    return np.broadcast_to(np.eye(T), (B, H, T, T)).copy()


# --------------------------------------------------------------------------- rollout

def test_rollout_of_identity_attention_is_identity():
    attn = [identity_attention(2, 3, 10) for _ in range(4)]
    for fusion in A.HEAD_FUSIONS:
        r = A.attention_rollout(attn, head_fusion=fusion)
        assert r.shape == (2, 10, 10)
        np.testing.assert_allclose(r, np.broadcast_to(np.eye(10), (2, 10, 10)), atol=1e-15)


def test_rollout_matches_the_definition_and_rows_sum_to_one():
    rng = np.random.default_rng(0)
    attn = [random_attention(rng, 2, 3, 5) for _ in range(3)]
    expected = np.broadcast_to(np.eye(5), (2, 5, 5))
    for a in attn:                                   # A_hat = 0.5 A + 0.5 I, renormalised
        a_hat = 0.5 * a.mean(axis=1) + 0.5 * np.eye(5)
        a_hat /= a_hat.sum(axis=-1, keepdims=True)
        expected = a_hat @ expected
    r = A.attention_rollout(attn)
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    np.testing.assert_allclose(r.sum(axis=-1), 1.0, rtol=1e-12)
    # a stacked (L, B, h, T, T) array is the same as the list
    np.testing.assert_allclose(A.attention_rollout(np.stack(attn)), r, rtol=1e-12)


def test_rollout_discard_ratio_zeroes_the_smallest_weights_of_each_row():
    rng = np.random.default_rng(1)
    a = random_attention(rng, 1, 1, 6)
    r = A.attention_rollout([a], discard_ratio=0.5)      # 3 of 6 weights per row dropped
    kept = np.where(a[0, 0] >= np.sort(a[0, 0], axis=-1)[:, 3:4], a[0, 0], 0.0)
    a_hat = 0.5 * kept + 0.5 * np.eye(6)
    np.testing.assert_allclose(r[0], a_hat / a_hat.sum(axis=-1, keepdims=True), rtol=1e-12)
    # ties (uniform attention) still drop exactly that many per row
    u = np.full((1, 1, 4, 4), 0.25)
    r = A.attention_rollout([u], discard_ratio=0.5)
    assert ((r[0] > 0).sum(axis=-1) >= 2).all()


def test_cls_attention_map_takes_row_zero_over_the_patch_grid():
    rng = np.random.default_rng(2)
    attn = random_attention(rng, 2, 3, 1 + 6)           # grid 2 x 3
    per_head = A.cls_attention_map(attn, (2, 3), head=1)
    assert per_head.shape == (2, 2, 3)
    np.testing.assert_array_equal(per_head.reshape(2, 6), attn[:, 1, 0, 1:])
    mean = A.cls_attention_map(attn, (2, 3))
    np.testing.assert_allclose(mean.reshape(2, 6), attn[:, :, 0, 1:].mean(axis=1))
    rollout = A.attention_rollout([attn])
    assert A.cls_attention_map(rollout, (2, 3)).shape == (2, 2, 3)


def test_cls_attention_map_of_the_distillation_token_takes_row_one():
    rng = np.random.default_rng(3)
    attn = random_attention(rng, 2, 3, 2 + 4)           # class and distillation token, grid 2 x 2
    dist = A.cls_attention_map(attn, 2, num_prefix_tokens=2, head=0, token=1)
    np.testing.assert_array_equal(dist.reshape(2, 4), attn[:, 0, 1, 2:])
    cls = A.cls_attention_map(attn, 2, num_prefix_tokens=2, head=0)
    np.testing.assert_array_equal(cls.reshape(2, 4), attn[:, 0, 0, 2:])


# --------------------------------------------------------------------------- attention distance

def brute_force_mean_pairwise_distance(g, P):
    """Mean over all (query, key) patch pairs of the pixel distance of their centres."""
    centres = [(P * (r + 0.5), P * (c + 0.5)) for r in range(g) for c in range(g)]
    total = sum(math.dist(a, b) for a, b in itertools.product(centres, centres))
    return total / len(centres) ** 2


def test_attention_distance_of_a_head_that_attends_to_itself_is_zero():
    g, P = 4, 4
    attn = identity_attention(3, 2, 1 + g * g)
    d = A.mean_attention_distance([attn, attn], g, P)
    assert d.shape == (2, 2)
    np.testing.assert_array_equal(d, 0.0)


def test_attention_distance_of_uniform_attention_is_the_mean_pairwise_patch_distance():
    g, P = 5, 4
    T = 1 + g * g
    attn = np.full((2, 3, T, T), 1.0 / T)            # class token included: renormalised away
    d = A.mean_attention_distance(attn, g, P)
    assert d.shape == (1, 3)
    np.testing.assert_allclose(d, brute_force_mean_pairwise_distance(g, P), rtol=1e-12)


def test_attention_distance_mixes_heads_layers_and_images_correctly():
    g, P, T = 3, 2, 10
    self_attn = identity_attention(2, 1, T)
    uniform = np.full((2, 1, T, T), 1.0 / T)
    layer = np.concatenate([self_attn, uniform], axis=1)          # head 0 local, head 1 global
    d = A.mean_attention_distance([layer, layer[:, ::-1]], g, P)
    far = brute_force_mean_pairwise_distance(g, P)
    np.testing.assert_allclose(d, [[0.0, far], [far, 0.0]], atol=1e-12)
    per_image = A.mean_attention_distance([layer], g, P, per_image=True)
    assert per_image.shape == (1, 2, 2)
    # a neighbour one patch to the right (or left at the border) is exactly P pixels away
    nb = np.zeros((1, 1, T, T))
    nb[0, 0, 0, 0] = 1
    for q in range(9):
        r, c = divmod(q, 3)
        nb[0, 0, 1 + q, 1 + r * 3 + (c + 1 if c < 2 else c - 1)] = 1
    np.testing.assert_allclose(A.mean_attention_distance(nb, g, P), [[P]])


def test_patch_distances():
    d = A.patch_distances((2, 3), 4)
    assert d.shape == (6, 6) and (np.diag(d) == 0).all() and np.allclose(d, d.T)
    assert d[0, 5] == pytest.approx(4 * math.sqrt(1 + 4))


# --------------------------------------------------------------------------- PCA of the filters

def test_patch_embedding_pca_components_are_orthonormal_and_reconstruct():
    rng = np.random.default_rng(3)
    D, C, P = 64, 3, 3                                   # D > C*P*P = 27: full rank 27
    weight = rng.standard_normal((D, C, P, P)) * rng.random(C * P * P).reshape(1, C, P, P)
    comps, ratio = E.patch_embedding_pca(weight, k=27)
    assert comps.shape == (27, C, P, P) and ratio.shape == (27,)
    V = comps.reshape(27, -1)
    np.testing.assert_allclose(V @ V.T, np.eye(27), atol=1e-12)
    X = weight.reshape(D, -1)
    Xc = X - X.mean(axis=0)
    np.testing.assert_allclose((Xc @ V.T) @ V, Xc, atol=1e-12)          # all components
    assert ratio.sum() == pytest.approx(1.0) and (np.diff(ratio) <= 1e-15).all()
    # fewer components: the first ones, and the variance they explain is the projection's
    c5, r5 = E.patch_embedding_pca(weight, k=5)
    np.testing.assert_allclose(c5, comps[:5])
    V5 = c5.reshape(5, -1)
    assert ((Xc @ V5.T) ** 2).sum() / (Xc ** 2).sum() == pytest.approx(r5.sum())
    # each sign is fixed: the largest-magnitude entry is positive
    assert (V5[np.arange(5), np.abs(V5).argmax(axis=1)] > 0).all()


def test_patch_embedding_pca_of_a_model(tmp_path):
    model = minivit.create_model("cifar-nano", seed=0)
    comps, ratio = E.patch_embedding_pca(model.params["patch_embed.proj.weight"])
    assert comps.shape == (28, 3, 4, 4) and ratio.shape == (28,)
    assert 0 < float(ratio.sum()) < 1


# --------------------------------------------------------------------------- position similarity

def test_position_similarity_diagonal_is_one_and_it_is_symmetric():
    rng = np.random.default_rng(4)
    pos = rng.standard_normal((1, 1 + 16, 8))
    sim = E.position_embedding_similarity(pos)
    assert sim.shape == (4, 4, 4, 4)
    flat = sim.reshape(16, 16)
    np.testing.assert_allclose(np.diag(flat), 1.0, rtol=1e-12)
    np.testing.assert_allclose(flat, flat.T, rtol=1e-12)
    assert (np.abs(flat) <= 1 + 1e-12).all()
    # the class token row is dropped: changing it changes nothing
    pos2 = pos.copy()
    pos2[0, 0] = 100
    np.testing.assert_array_equal(E.position_embedding_similarity(pos2), sim)
    # 2-D input, non-square grid
    assert E.position_embedding_similarity(pos[0], grid=(2, 8)).shape == (2, 8, 2, 8)


def test_capture_attention_matches_model_forward():
    model = minivit.create_model("cifar-nano", seed=0, depth=2)
    x = np.random.default_rng(5).standard_normal((5, 3, 32, 32)).astype("float32")
    logits, attn = A.capture_attention(model, x, batch_size=2)
    ref_logits, ref_attn = model.forward(x, return_attention=True)
    assert logits.shape == (5, 10) and len(attn) == 2 and attn[0].shape == (5, 4, 65, 65)
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-5, atol=1e-6)
    for a, b in zip(attn, ref_attn):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_confident_mistakes_orders_by_true_class_probability():
    logits = np.array([[5.0, 0, 0], [0, 5, 0], [0, 1, 0], [0, 0, 9], [3, 0, 0]])
    labels = np.array([0, 0, 1, 0, 1])
    # wrong: 3 (p_true ~ 1e-4), 1 (~ 7e-3), 4 (~ 0.045); 0 and 2 are right
    assert A.confident_mistakes(logits, labels, k=8).tolist() == [3, 1, 4]
    assert A.confident_mistakes(logits, labels, k=1).tolist() == [3]


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, match", [
    (lambda: A.attention_rollout([]), "empty list"),
    (lambda: A.attention_rollout([np.zeros((2, 3, 4))]), r"attn\[0\] must be a \(B, heads, T, T\)"),
    (lambda: A.attention_rollout([np.zeros((1, 1, 4, 5))]), "must be equal"),
    (lambda: A.attention_rollout([np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 5, 5))]),
     "layer 1 has shape"),
    (lambda: A.attention_rollout([np.eye(4)[None, None]], head_fusion="median"), "head_fusion"),
    (lambda: A.attention_rollout([np.eye(4)[None, None]], discard_ratio=1.0), "discard_ratio"),
    (lambda: A.attention_rollout("attention"), "got str"),
    (lambda: A.mean_attention_distance(np.zeros((1, 1, 17, 17)), 3, 4), "17 tokens"),
    (lambda: A.mean_attention_distance(np.zeros((1, 1, 17, 17)), 4, 0), "patch_size"),
    (lambda: A.mean_attention_distance(np.zeros((1, 1, 17, 17)), 0, 4), "grid"),
    (lambda: A.mean_attention_distance(np.zeros((1, 1, 17, 17), "int64"), 4, 4), "floating"),
    (lambda: A.cls_attention_map(np.zeros((1, 17, 17)), 4, num_prefix_tokens=0), "class token"),
    (lambda: A.cls_attention_map(np.zeros((1, 2, 17, 17)), 4, head=2), "head"),
    (lambda: A.cls_attention_map(np.zeros((17, 17)), 4), "rollout"),
    (lambda: A.cls_attention_map(np.zeros((1, 17, 17)), 4, token=1), r"token must be .* 0\.\.0"),
    (lambda: E.patch_embedding_pca(np.zeros((8, 3, 4))), r"\(D, C, P, P\)"),
    (lambda: E.patch_embedding_pca(np.zeros((8, 3, 4, 2))), "square"),
    (lambda: E.patch_embedding_pca(np.zeros((8, 3, 2, 2)), k=9), r"k must be an int in 1\.\.8"),
    (lambda: E.position_embedding_similarity(np.zeros((1, 1 + 15, 4)) + 1), "not a square grid"),
    (lambda: E.position_embedding_similarity(np.ones((2, 17, 4))), "pos_embed must be"),
    (lambda: E.position_embedding_similarity(np.zeros((1, 17, 4))), "all-zero"),
    (lambda: E.position_embedding_similarity(np.ones((1, 17, 4)), grid=(3, 5)), "grid 3x5"),
    (lambda: A.capture_attention(None, np.zeros((0, 3, 32, 32))), "non-empty"),
    (lambda: A.confident_mistakes(np.zeros((3, 2)), np.zeros(3)), "integers"),
])
def test_bad_input_raises_value_error_naming_the_problem(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_pooled_attention_map_reads_what_each_pooling_reads():
    """pool="token": the class token's row; pool="mean": the patch queries' rows averaged over
    the patch keys, which is the weight each patch's value has in the mean of the outputs."""
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 5, 5))
    a /= a.sum(-1, keepdims=True)                              # (B, heads, 1 + 4, 1 + 4)
    v = rng.standard_normal((2, 5, 7))                         # values (B, T, d), one head
    np.testing.assert_array_equal(A.pooled_attention_map(a, 2, "token"),
                                  A.cls_attention_map(a, 2))
    m = A.pooled_attention_map(a, 2, "mean", head=1).reshape(2, 4)
    pooled_out = (a[:, 1] @ v)[:, 1:].mean(axis=1)             # mean over patch queries
    np.testing.assert_allclose(pooled_out - a[:, 1, 1:, 0].mean(1)[:, None] * v[:, 0],
                               np.einsum("bk,bkd->bd", m, v[:, 1:]), rtol=1e-12)
    with pytest.raises(ValueError, match="pool must be"):
        A.pooled_attention_map(a, 2, "max")
