"""BatchNorm2d on channels-last arrays (train and eval modes, the fused ReLU, running
statistics, pooled shard statistics) and the soft-distillation KL loss: finite differences in
float64 and agreement with PyTorch."""

import numpy as np
import pytest
from support import check_layer, randn

from minivit.layers.batchnorm import (
    BatchStats,
    batchnorm2d_backward,
    batchnorm2d_forward,
    pool_batch_stats,
    update_running_stats,
)
from minivit.layers.distill import soft_distillation_backward, soft_distillation_forward
from minivit.reference.numerical import TOL_REF64, numerical_gradient, rel_error


def _bn_inputs(xp, shape=(4, 5, 5, 3)):
    C = shape[-1]
    return (randn(xp, *shape, seed=1) * 2 + 0.5, 1 + 0.1 * randn(xp, C, seed=2),
            0.1 * randn(xp, C, seed=3), 0.1 * randn(xp, C, seed=4),
            1 + 0.1 * abs(randn(xp, C, seed=5)))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_gradients_finite_differences(xp, train, relu):
    x, w, b, rm, rv = _bn_inputs(xp)
    check_layer(lambda x, w, b: batchnorm2d_forward(x, w, b, rm, rv, train, relu=relu)[:2],
                batchnorm2d_backward, [x, w, b], ["x", "weight", "bias"])


def test_batchnorm_training_normalises_each_channel(xp):
    x, w, b, rm, rv = _bn_inputs(xp)
    out, _, stats = batchnorm2d_forward(x, xp.ones(3), xp.zeros(3), rm, rv, True)
    assert np.allclose(out.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    assert np.allclose(out.var(axis=(0, 1, 2)), 1, atol=1e-4)
    assert stats.count == 4 * 25


def test_pooled_shard_stats_are_the_whole_batch_stats(xp):
    x = _bn_inputs(xp, (7, 2, 2, 3))[0]
    ones, zeros = xp.ones(3), xp.zeros(3)
    whole = batchnorm2d_forward(x, ones, zeros, zeros, ones, True)[2]
    shards = [batchnorm2d_forward(x[s], ones, zeros, zeros, ones, True)[2]
              for s in (slice(0, 3), slice(3, 7))]
    pooled = pool_batch_stats(shards)
    assert pooled.count == whole.count
    assert rel_error(pooled.mean, whole.mean) < 1e-14
    assert rel_error(pooled.var, whole.var) < 1e-14


@pytest.mark.parametrize("relu", [False, True])
def test_batchnorm_matches_torch_train_and_eval(relu):
    torch = pytest.importorskip("torch")
    x, w, b, rm, rv = _bn_inputs(np)
    nchw = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy())     # noqa: E731
    bn = torch.nn.BatchNorm2d(3).double()
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(w)), bn.bias.copy_(torch.from_numpy(b))
        bn.running_mean.copy_(torch.from_numpy(rm)), bn.running_var.copy_(torch.from_numpy(rv))
    dout = randn(np, *x.shape, seed=9)
    for train in (True, False):
        bn.train(train)
        bn.zero_grad()
        xt = nchw(x).requires_grad_(True)
        yt = torch.relu(bn(xt)) if relu else bn(xt)
        (yt * nchw(dout)).sum().backward()
        out, cache, stats = batchnorm2d_forward(x, w, b, rm, rv, train, relu=relu)
        dx, dw, db = batchnorm2d_backward(dout, cache)
        assert rel_error(out, yt.detach().numpy().transpose(0, 2, 3, 1)) < TOL_REF64
        assert rel_error(dx, xt.grad.numpy().transpose(0, 2, 3, 1)) < TOL_REF64
        assert rel_error(dw, bn.weight.grad.numpy()) < TOL_REF64
        assert rel_error(db, bn.bias.grad.numpy()) < TOL_REF64
        if train:
            rm, rv = update_running_stats(rm, rv, stats)
            assert rel_error(rm, bn.running_mean.numpy()) < TOL_REF64
            assert rel_error(rv, bn.running_var.numpy()) < TOL_REF64


def test_running_stats_update_makes_new_arrays():
    rm, rv = np.zeros(2), np.ones(2)
    new_m, new_v = update_running_stats(rm, rv, BatchStats(np.ones(2), np.ones(2), 5))
    assert np.array_equal(rm, np.zeros(2)) and np.allclose(new_m, 0.1)
    assert np.allclose(new_v, 0.9 + 0.1 * 5 / 4)


def test_batchnorm_refuses_a_single_value_per_channel():
    with pytest.raises(ValueError, match="more than one value"):
        batchnorm2d_forward(np.ones((1, 1, 1, 2)), np.ones(2), np.zeros(2), np.zeros(2),
                            np.ones(2), True)


def test_batchnorm_refuses_channels_first():
    with pytest.raises(ValueError, match="channels last"):
        batchnorm2d_forward(np.ones((2, 3, 4, 4)), np.ones(3), np.zeros(3), np.zeros(3),
                            np.ones(3), True)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_soft_distillation_gradient_finite_differences(xp, tau):
    s, t = randn(xp, 5, 4, seed=1) * 2, randn(xp, 5, 4, seed=2) * 2
    loss, cache = soft_distillation_forward(s, t, tau)
    ds = soft_distillation_backward(1.0, cache)
    num = numerical_gradient(lambda: soft_distillation_forward(s, t, tau)[0], s)
    assert rel_error(ds, num) < 1e-8
    assert loss >= 0
    assert abs(soft_distillation_forward(t, t, tau)[0]) < 1e-14


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_soft_distillation_matches_torch_kl_div(tau):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    s, t = randn(np, 6, 5, seed=3) * 3, randn(np, 6, 5, seed=4) * 3
    st = torch.from_numpy(s.copy()).requires_grad_(True)
    ref = tau ** 2 * F.kl_div(F.log_softmax(st / tau, dim=1),
                              F.log_softmax(torch.from_numpy(t) / tau, dim=1),
                              reduction="batchmean", log_target=True)
    ref.backward()
    loss, cache = soft_distillation_forward(s, t, tau)
    assert abs(loss - ref.item()) < 1e-12 * max(1.0, abs(ref.item()))
    assert rel_error(soft_distillation_backward(1.0, cache), st.grad.numpy()) < TOL_REF64


def test_soft_distillation_refuses_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        soft_distillation_forward(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="tau"):
        soft_distillation_forward(np.zeros((2, 3)), np.zeros((2, 3)), 0.0)
