"""The quantities ``minivit explain`` computes for its page, in float64: the per-token
gradients of the backward trace and the pixel gradient against central finite differences, the
logit lens against the model's own logits and a LayerNorm + head written out here, and the
forward story's pieces against each other."""

import numpy as np
import pytest

from minivit.explain.backward_story import backward_story, class_backward
from minivit.explain.forward_story import forward_story
from minivit.explain.logit_lens import logit_lens, logits_after
from minivit.layers.loss import cross_entropy
from minivit.models.vit import create_model
from minivit.reference.numerical import numerical_gradient, rel_error

TOL = 1e-6


def tiny(pool="mean", seed=0):
    return create_model("cifar-nano", seed=seed, dtype="float64", image_size=8, patch_size=4,
                        embed_dim=16, depth=2, num_heads=2, mlp_dim=24, pool=pool,
                        num_classes=5)


def images(seed=1):
    return np.random.default_rng(seed).standard_normal((1, 3, 8, 8))


def loss_of(logits, k):
    return cross_entropy(logits, np.asarray([k]))[0]


@pytest.mark.parametrize("pool", ["mean", "token"])
def test_token_gradients_match_finite_differences(pool):
    model, x, k = tiny(pool), images(), 3
    trace = {}
    logits = model.forward(x, trace=trace)
    _, d_logits = cross_entropy(logits, np.asarray([k]))
    back = {}
    model.backward(d_logits, back)
    states = [trace["embedded"], *trace["blocks"]]          # z_0 .. z_L
    L = model.config.depth
    assert len(back["d_blocks"]) == L + 1
    for block in range(L + 1):                               # dL/dz_block
        z = states[block].copy()
        numeric = numerical_gradient(lambda z=z, b=block: loss_of(logits_after(model, z, b), k), z)
        assert rel_error(back["d_blocks"][L - block], numeric) < TOL, block
    np.testing.assert_array_equal(back["d_patch_tokens"], back["d_blocks"][-1][:, 1:])


def test_pixel_gradient_and_story_match_finite_differences():
    model, x, k = tiny(), images(), 2
    story = class_backward(model, x, k)
    numeric = numerical_gradient(lambda: loss_of(model.forward(x, keep_cache=False), k), x)
    assert rel_error(story["d_image"], numeric[0]) < 1e-4       # the story keeps float32
    np.testing.assert_allclose(story["grad_x_input"], (numeric[0] * x[0]).sum(axis=0),
                               rtol=1e-4, atol=1e-8)
    assert story["token_grad_norms"].shape == (model.config.depth + 1, 5)
    p = np.exp(model.forward(x, keep_cache=False)[0])
    np.testing.assert_allclose(story["d_logits"], p / p.sum() - np.eye(5)[k], rtol=1e-5)


def test_every_class_and_the_parameter_gradients():
    model, x = tiny(), images()
    story = backward_story(model, x)
    assert story["d_image"].shape == (5, 3, 8, 8)
    assert story["param_names"] == list(model.params.keys())
    model.forward(x)
    _, d_logits = cross_entropy(model.forward(x), np.asarray([4]))
    model.backward(d_logits)
    norms = [np.linalg.norm(g) for g in model.grads.values()]
    np.testing.assert_allclose(story["param_grad_norms"][4], norms, rtol=1e-5)
    assert not np.allclose(story["d_image"][0], story["d_image"][1])


@pytest.mark.parametrize("pool", ["mean", "token"])
def test_logit_lens(pool):
    model, x = tiny(pool), images()
    trace = {}
    logits = model.forward(x, keep_cache=False, trace=trace)
    tokens, pooled = logit_lens(model, trace["blocks"])
    np.testing.assert_allclose(pooled[-1], logits, rtol=1e-12, atol=1e-12)
    p = model.params
    for z, t in zip(trace["blocks"], tokens):                 # LN and head, written out
        normed = (z - z.mean(-1, keepdims=True)) / np.sqrt(z.var(-1, keepdims=True) + 1e-6)
        normed = normed * p["norm.weight"] + p["norm.bias"]
        np.testing.assert_allclose(t, normed @ p["head.weight"].T + p["head.bias"], rtol=1e-10,
                                   atol=1e-12)


def test_trace_changes_nothing():
    model, x = tiny(), images()
    plain = model.forward(x)
    dx_plain = model.backward(np.ones_like(plain))
    traced = model.forward(x, trace={})
    dx_traced = model.backward(np.ones_like(traced), {})
    np.testing.assert_array_equal(plain, traced)
    np.testing.assert_array_equal(dx_plain, dx_traced)


def test_forward_story_pieces_agree():
    model, x = tiny(), images()
    story = forward_story(model, x)
    scores, probs = story["scores"].astype("float64"), story["probs"]
    e = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(-1, keepdims=True), probs, atol=1e-6)
    np.testing.assert_allclose(story["lens_pooled"][-1], story["logits"], rtol=1e-6)
    # the residual stream: z_0 and the updates of block 1 give block 2's input norm
    trace = {}
    model.forward(x, keep_cache=False, trace=trace)
    np.testing.assert_allclose(story["residual_norms"][1, :, 0],
                               np.linalg.norm(trace["blocks"][0][0], axis=-1), rtol=1e-6)
    np.testing.assert_allclose(story["patch_tokens"] + model.params["pos_embed"][0, 1:],
                               story["embedded"][1:], rtol=1e-6, atol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("pool", ["mean", "token"])
def test_token_gradients_match_pytorch(pool):
    torch = pytest.importorskip("torch", reason="the PyTorch comparison needs torch")
    from torch_vit import build_torch_vit, from_torch, to_torch
    model, x, k = tiny(pool), images(), 1
    reference = build_torch_vit(model.config, model.params)
    block_inputs, final = [], []

    def keep(_module, args):                   # each block's input z_{l-1}, its grad kept
        args[0].retain_grad()
        block_inputs.append(args[0])

    def keep_output(_module, _args, out):       # z_L, the last block's output
        out.retain_grad()
        final.append(out)

    for block in reference.blocks:
        block.register_forward_pre_hook(keep)
    reference.blocks[-1].register_forward_hook(keep_output)
    logits = reference(to_torch(x))
    torch.nn.functional.cross_entropy(logits, torch.tensor([k])).backward()
    trace = {}
    _, d_logits = cross_entropy(model.forward(x), np.asarray([k]))
    model.backward(d_logits, trace)
    expected = [from_torch(final[0].grad)] + [from_torch(z.grad) for z in block_inputs[::-1]]
    for ours, theirs in zip(trace["d_blocks"], expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
