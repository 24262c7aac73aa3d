"""Optimizers, schedule and clipping (the agreement with torch.optim is in test_reference_torch)."""

import math

import pytest

import minivit
from minivit.training.optim import SGD, AdamW, clip_grad_norm, decays, global_grad_norm
from minivit.training.schedule import warmup_cosine


def _params(xp):
    return {"blocks.0.attn.qkv.weight": xp.ones((3, 2)), "blocks.0.attn.qkv.bias": xp.ones(3),
            "cls_token": xp.ones((1, 1, 2)), "pos_embed": xp.ones((1, 2, 2))}


def test_no_weight_decay_on_biases_norms_class_token_and_position_embedding(xp):
    params = _params(xp)
    assert [decays(k, v) for k, v in params.items()] == [True, False, False, False]
    zero = {k: xp.zeros_like(v) for k, v in params.items()}
    AdamW(params, lr=0.1, weight_decay=0.5).step(params, zero)
    assert float(params["blocks.0.attn.qkv.weight"][0, 0]) == pytest.approx(1 - 0.1 * 0.5)
    for k in ("blocks.0.attn.qkv.bias", "cls_token", "pos_embed"):
        assert (params[k] == 1).all(), k


def test_adamw_first_step_moves_each_entry_by_lr(xp):
    params = {"w": xp.asarray([[1.0, -2.0]])}
    AdamW(params, lr=0.01, weight_decay=0.0).step(params, {"w": xp.asarray([[3.0, -0.5]])})
    assert minivit.rel_error(params["w"], xp.asarray([[0.99, -1.99]])) < 1e-9


def test_sgd_momentum_minimises_a_quadratic(xp):
    params = {"w": xp.asarray([[5.0, -3.0]])}
    opt = SGD(params, lr=0.1, momentum=0.9)
    for _ in range(200):
        opt.step(params, {"w": params["w"]})              # gradient of |w|^2 / 2
    assert float(abs(params["w"]).max()) < 1e-3


def test_optimizer_state_round_trip_continues_identically(xp):
    def run(steps, opt, params):
        for i in range(steps):
            opt.step(params, {k: xp.sin(v + i) for k, v in params.items()})

    p1, p2 = _params(xp), _params(xp)
    o1 = AdamW(p1, lr=0.1)
    run(6, o1, p1)
    o2 = AdamW(p2, lr=0.1)
    run(3, o2, p2)
    saved = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in o2.state_dict().items()}
    o3 = AdamW(p2, lr=0.1)
    o3.load_state_dict(saved)
    for i in range(3, 6):
        o3.step(p2, {k: xp.sin(v + i) for k, v in p2.items()})
    assert all((p1[k] == p2[k]).all() for k in p1)


def test_missing_gradients_are_named(xp):
    params = _params(xp)
    with pytest.raises(ValueError, match="cls_token"):
        AdamW(params).step(params, {k: v for k, v in params.items() if k != "cls_token"})


def test_clip_grad_norm(xp):
    grads = {"a": xp.full((3,), 3.0), "b": xp.full((1,), 4.0 * math.sqrt(3))}
    norm = global_grad_norm(grads)
    assert norm == pytest.approx(math.sqrt(27 + 48))
    clipped, before = clip_grad_norm(grads, 1.0)
    assert before == pytest.approx(norm)
    assert global_grad_norm(clipped) == pytest.approx(1.0, rel=1e-5)
    assert float(grads["a"][0]) == 3.0                    # input untouched
    same, _ = clip_grad_norm(grads, 100.0)
    assert all((same[k] == grads[k]).all() for k in grads)


def test_warmup_cosine_schedule():
    lrs = [warmup_cosine(s, 1.0, total_steps=110, warmup_steps=10, min_lr=0.1) for s in range(110)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.9 * 0.5)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert warmup_cosine(500, 1.0, 110, 10, 0.1) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(0, 1.0, total_steps=5, warmup_steps=6)
    with pytest.raises(ValueError, match="total_steps"):
        warmup_cosine(0, 1.0, total_steps=0)


def test_bad_hyperparameters(xp):
    with pytest.raises(ValueError, match="learning rate"):
        AdamW(_params(xp), lr=-1)
    with pytest.raises(ValueError, match="weight_decay"):
        SGD(_params(xp), weight_decay=-0.1)
