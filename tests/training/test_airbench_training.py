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
