"""The airbench optimisation pieces: Nesterov SGD with a scaled bias learning rate against
torch.optim.SGD with two parameter groups; lookahead against the update written out by hand."""

import numpy as np
import pytest
from support import randn

from minivit.models.airbench import create_airbench
from minivit.models.airbench_config import AirbenchConfig
from minivit.reference.numerical import rel_error
from minivit.training.lookahead import Lookahead, LookaheadSchedule
from minivit.training.optim import SGD


def _params():
    return {"conv.weight": randn(np, 4, 3, seed=1), "norm.bias": randn(np, 4, seed=2),
            "head.weight": randn(np, 2, 4, seed=3)}


def test_nesterov_sgd_with_scaled_bias_lr_matches_torch():
    torch = pytest.importorskip("torch")
    lr, wd, f, momentum = 0.05, 0.01, 64.0, 0.85
    params = _params()
    tparams = {k: torch.nn.Parameter(torch.from_numpy(v.copy())) for k, v in params.items()}
    groups = [dict(params=[tparams["norm.bias"]], lr=lr * f, weight_decay=wd / f),
              dict(params=[tparams["conv.weight"], tparams["head.weight"]], lr=lr,
                   weight_decay=wd)]
    topt = torch.optim.SGD(groups, momentum=momentum, nesterov=True)
    opt = SGD(params, lr=lr, momentum=momentum, weight_decay=wd, nesterov=True,
              lr_scale={"norm.bias": f}, decay_vectors=True)
    for i in range(5):
        grads = {k: np.sin(3 * v + i) for k, v in params.items()}
        for k, p in tparams.items():
            p.grad = torch.from_numpy(grads[k].copy())
        topt.step()
        opt.step(params, grads)
    for k, p in tparams.items():
        assert rel_error(params[k], p.detach().numpy()) < 1e-12, k


def test_a_zero_factor_freezes_a_parameter_and_bad_factors_are_refused():
    params = _params()
    before = params["conv.weight"].copy()
    opt = SGD(params, lr=0.1, momentum=0.9, lr_scale={"conv.weight": 0.0})
    opt.step(params, {k: np.ones_like(v) for k, v in params.items()})
    assert np.array_equal(params["conv.weight"], before)
    assert "momentum_buffer.conv.weight" not in opt.state
    with pytest.raises(ValueError, match="unknown parameters"):
        SGD(params, lr_scale={"nope": 2.0})


def test_lookahead_schedule_is_airbench():
    s = LookaheadSchedule()
    assert not s.due(2, 10) and s.due(3, 10) and not s.due(3, 11)
    assert s.decay(50, 100) == pytest.approx(0.95 ** 5 * 0.125)


def test_lookahead_averages_parameters_and_running_statistics():
    model = create_airbench(AirbenchConfig(widths=(3, 4, 5), image_size=12, num_classes=5),
                            dtype="float64")
    slow = Lookahead(model)
    start = {k: v.copy() for k, v in model.params.items()}
    start_mean = model.buffers["block1.norm1.running_mean"].copy()
    for k in model.params:                                   # the fast weights move
        model.params[k] = model.params[k] + 1.0
    model.forward(randn(np, 4, 3, 12, 12, seed=4), train=True, keep_cache=False)
    fast_mean = model.buffers["block1.norm1.running_mean"].copy()
    slow.update(model, 0.75)
    for k, v in start.items():
        assert rel_error(model.params[k], 0.75 * v + 0.25 * (v + 1.0)) < 1e-14, k
    assert rel_error(model.buffers["block1.norm1.running_mean"],
                     0.75 * start_mean + 0.25 * fast_mean) < 1e-14
    assert int(model.buffers["block1.norm1.num_batches_tracked"]) == 1
    averaged = model.flat_params.copy()
    model.params["head.weight"] = model.params["head.weight"] * 0      # decay 1: copy back
    slow.update(model, 1.0)
    assert np.array_equal(model.flat_params, averaged)


def _airbench_in_torch(torch, tm, batches, per_epoch, lr, wd, momentum, schedule, total):
    """airbench94's training loop (parameter groups, frozen whitening, LambdaLR triangle,
    LookaheadState), in PyTorch on a mean loss."""
    from minivit.training.airbench_recipe import BIAS_SCALE, WHITEN_BIAS_EPOCHS
    from minivit.training.schedule import triangle
    tm.whiten.weight.requires_grad = False
    named = list(tm.named_parameters())
    biases = [p for k, p in named if "norm" in k]
    others = [p for k, p in named if "norm" not in k and k != "whiten.weight"]
    opt = torch.optim.SGD([dict(params=biases, lr=lr * BIAS_SCALE, weight_decay=wd / BIAS_SCALE),
                           dict(params=others, lr=lr, weight_decay=wd)],
                          momentum=momentum, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: triangle(i, total))
    slow, steps = None, 0
    for epoch in range(total // per_epoch):
        tm.whiten.bias.requires_grad = epoch < WHITEN_BIAS_EPOCHS
        tm.train()
        for x, y in batches[epoch * per_epoch:(epoch + 1) * per_epoch]:
            loss = torch.nn.functional.cross_entropy(tm(x), y, label_smoothing=0.2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
            if epoch >= schedule.start_epoch and steps % schedule.every == 0:
                if slow is None:
                    slow = {k: v.clone() for k, v in tm.state_dict().items()}
                else:
                    _lerp(tm, slow, schedule.decay(steps, total))
        if slow is not None:
            _lerp(tm, slow, 1.0)


def _lerp(tm, slow, decay):
    import torch
    for k, v in tm.state_dict().items():
        if v.dtype == torch.float64:
            slow[k].lerp_(v, 1 - decay)
            v.copy_(slow[k])


def test_airbench_optimizer_matches_airbench_loop_in_torch():
    """Five epochs of four steps: whitening bias frozen from epoch 3, lookahead from epoch 1
    every 2 steps, the triangle; parameters and running statistics agree with PyTorch."""
    torch = pytest.importorskip("torch")
    from torch_airbench import build_torch_airbench

    from minivit.layers.loss import cross_entropy
    from minivit.training.airbench_recipe import AirbenchOptimizer, airbench_lr
    cfg = AirbenchConfig(widths=(3, 4, 5), image_size=12, num_classes=5)
    model = create_airbench(cfg, dtype="float64")
    model.init_whitening(randn(np, 6, 3, 12, 12, seed=7))
    tm = build_torch_airbench(model)
    per_epoch, epochs = 4, 5
    total = per_epoch * epochs
    gen = np.random.default_rng(8)
    data = [(randn(np, 6, 3, 12, 12, seed=20 + i), gen.integers(0, 5, 6)) for i in range(total)]
    lr, wd = airbench_lr(6)
    schedule = LookaheadSchedule(start_epoch=1, every=2)
    opt = AirbenchOptimizer(model, per_epoch, total, lr, wd, lookahead=schedule)
    for x, y in data:
        model.backward(cross_entropy(model.forward(x, train=True), y, 0.2)[1])
        opt.step(model.params, model.grads)
    _airbench_in_torch(torch, tm, [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data],
                       per_epoch, lr, wd, 0.85, schedule, total)
    state = tm.state_dict()
    for k in [*model.params, *model.buffers]:
        mine = model.params[k] if k in model.params else model.buffers[k]
        assert rel_error(mine, state[k].numpy()) < 1e-9, k
    assert not np.allclose(model.params["whiten.bias"], 0)


def test_airbench_optimizer_state_round_trip_continues_identically():
    from minivit.layers.loss import cross_entropy
    from minivit.training.airbench_recipe import AirbenchOptimizer
    cfg = AirbenchConfig(widths=(3, 4, 5), image_size=12, num_classes=5)
    data = [(randn(np, 4, 3, 12, 12, seed=30 + i), np.arange(4) % 5) for i in range(8)]
    schedule = LookaheadSchedule(start_epoch=1, every=1)

    def run(model, opt, batches):
        for x, y in batches:
            model.backward(cross_entropy(model.forward(x, train=True), y, 0.2)[1])
            opt.step(model.params, model.grads)

    a = create_airbench(cfg, dtype="float64")
    run(a, AirbenchOptimizer(a, 2, 8, 0.1, 0.01, lookahead=schedule), data)
    b = create_airbench(cfg, dtype="float64")
    first = AirbenchOptimizer(b, 2, 8, 0.1, 0.01, lookahead=schedule)
    run(b, first, data[:5])
    saved = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in first.state_dict().items()}
    assert any(k.startswith("lookahead.") for k in saved)
    c = create_airbench(cfg, dtype="float64")                  # a resumed run
    c.params, c.buffers = b.params, dict(b.buffers)
    second = AirbenchOptimizer(c, 2, 8, 0.1, 0.01, lookahead=schedule)
    second.load_state_dict(saved)
    snap, params, buffers = first.snapshot(), b.flat_params.copy(), dict(b.buffers)
    run(b, first, data[5:6])                                   # a step taken back
    first.restore(snap)
    b.params, b.buffers = b.params.layout.views(params), buffers
    run(b, first, data[5:])
    run(c, second, data[5:])
    assert np.array_equal(a.flat_params, b.flat_params)
    assert np.array_equal(a.flat_params, c.flat_params)


@pytest.mark.parametrize("total", [8, 97, 880])
def test_triangle_schedule_is_airbench94s(total):
    """airbench94's triangle(steps, start=0.2, end=0.07, peak=0.23), in PyTorch."""
    torch = pytest.importorskip("torch")
    from minivit.training.schedule import Schedule, triangle
    xp = torch.tensor([0, int(0.23 * total), total])
    fp = torch.tensor([0.2, 1, 0.07], dtype=torch.float64)
    x = torch.arange(1 + total)
    m = (fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1])
    b = fp[:-1] - (m * xp[:-1])
    idx = torch.clamp(torch.sum(torch.ge(x[:, None], xp[None, :]), 1) - 1, 0, len(m) - 1)
    want = (m[idx] * x + b[idx]).numpy()
    got = np.array([triangle(i, total) for i in range(total + 1)])
    assert rel_error(got, want) < 1e-12
    sched = Schedule(10, total, 0, 0, 0.5, 0.0, "triangle")
    assert sched.lr_at(3) == pytest.approx(0.5 * want[3])
