"""The ResNet teacher: names and counts, whole-model gradients by finite differences in
float64, agreement with a PyTorch ResNet (logits, every gradient, running statistics) in
training and evaluation mode, data-parallel BatchNorm statistics, save/load."""

import numpy as np
import pytest
from support import randn

from minivit.backend import to_numpy
from minivit.layers.loss import cross_entropy
from minivit.models.resnet import ResNet, create_resnet
from minivit.models.resnet_config import RESNET_CONFIGS, ResNetConfig, count_resnet_params
from minivit.parallel.threads import DataParallel
from minivit.reference.numerical import TOL_REF64, numerical_gradient, rel_error, sample_indices
from minivit.training.objectives.classification import classify

TINY = dict(blocks=(1, 1), widths=(3, 4), image_size=8, num_classes=5)


def _tiny(xp, seed=0, **kw):
    model = create_resnet(ResNetConfig(**{**TINY, **kw}), seed=seed, dtype="float64")
    gen = np.random.default_rng(seed + 1)
    for k in model.params:          # BN weights and biases away from 1 and 0
        if ".bn" in k or "downsample.1" in k or k.startswith("bn1"):
            model.params[k] = model.params[k] + xp.asarray(0.2 * gen.standard_normal(
                model.params[k].shape))
    return model


def test_named_configs_and_counts():
    assert set(RESNET_CONFIGS) >= {"resnet8", "resnet20"}
    m = create_resnet("resnet20")
    assert m.num_params() == count_resnet_params(m.config) == 272_474
    assert "layer2.0.downsample.0.weight" in m.params and "layer1.0.downsample.0.weight" \
        not in m.params
    assert m.buffers["layer3.2.bn2.running_var"].shape == (64,)


@pytest.mark.parametrize("train", [True, False])
def test_whole_resnet_gradients_finite_differences(xp, train):
    model = _tiny(xp)
    x, y = randn(xp, 3, 3, 8, 8, seed=2), xp.asarray([0, 3, 4])
    model.buffers["bn1.running_var"] = model.buffers["bn1.running_var"] * 1.5

    def loss():
        out = model.forward(x, train=train, keep_cache=False)
        return cross_entropy(out, y)[0]

    _, dlogits = cross_entropy(model.forward(x, train=train), y)
    dx = model.backward(dlogits)
    for name, p in [*model.params.items(), ("images", x)]:
        g = dx if name == "images" else model.grads[name]
        idx = sample_indices(p.size, 12)
        num = numerical_gradient(loss, p, indices=idx)
        assert rel_error(to_numpy(g).reshape(-1)[idx], num) < 1e-6, name


@pytest.mark.parametrize("train", [True, False])
def test_resnet_matches_torch(train):
    torch = pytest.importorskip("torch")
    from torch_resnet import build_torch_resnet
    model = _tiny(np, blocks=(2, 1), widths=(3, 5))
    tm = build_torch_resnet(model).train(train)
    x, y = randn(np, 4, 3, 8, 8, seed=3), np.array([1, 0, 4, 2])
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out_t = tm(xt)
    torch.nn.functional.cross_entropy(out_t, torch.from_numpy(y)).backward()
    logits = model.forward(x, train=train)
    dx = model.backward(cross_entropy(logits, y)[1])
    assert rel_error(logits, out_t.detach().numpy()) < TOL_REF64
    assert rel_error(dx, xt.grad.numpy()) < TOL_REF64
    tgrads = {k: p.grad.numpy() for k, p in tm.named_parameters()}
    assert list(tgrads) == list(model.grads)
    for k in tgrads:
        assert rel_error(model.grads[k], tgrads[k]) < TOL_REF64, k
    tbuf = dict(tm.named_buffers())
    assert set(tbuf) == set(model.buffers)
    for k, v in tbuf.items():
        assert rel_error(model.buffers[k], v.numpy()) < TOL_REF64, k


def test_eval_uses_running_stats_and_train_updates_them(xp):
    model = _tiny(xp)
    x = randn(xp, 4, 3, 8, 8, seed=4)
    before = dict(model.buffers)
    a = model.forward(x, keep_cache=False)
    assert all(model.buffers[k] is v for k, v in before.items())
    model.forward(x, train=True, keep_cache=False)
    assert int(model.buffers["bn1.num_batches_tracked"]) == 1
    assert not np.allclose(to_numpy(model.buffers["bn1.running_mean"]), 0)
    assert not np.allclose(to_numpy(model.forward(x, keep_cache=False)), to_numpy(a))


def test_data_parallel_pools_the_shards_statistics(xp):
    """Two threads: each shard is normalised by its own batch statistics, and the running
    statistics are updated once with the shards' statistics pooled in shard order (for the
    first BatchNorm, whose input the split does not change, those of the whole batch)."""
    if xp.__name__ != "numpy":
        pytest.skip("DataParallel threads are for NumPy")
    x, y = randn(xp, 6, 3, 8, 8, seed=5), xp.asarray([0, 1, 2, 3, 4, 0])
    one, two, by_hand = _tiny(xp), _tiny(xp), _tiny(xp)
    classify(DataParallel(one, 1), x, y)
    with DataParallel(two, 2) as dp:
        classify(dp, x, y)
    shards = [by_hand.replica() for _ in range(2)]
    for r, s in zip(shards, (slice(0, 3), slice(3, 6))):
        r.forward(x[s], train=True, keep_cache=False)
    by_hand.merge_replica_stats(shards)
    assert all(r.batch_stats is None for r in shards)
    for k in two.buffers:
        assert np.array_equal(two.buffers[k], by_hand.buffers[k]), k
    assert rel_error(one.buffers["bn1.running_mean"], two.buffers["bn1.running_mean"]) < 1e-14
    assert rel_error(one.buffers["bn1.running_var"], two.buffers["bn1.running_var"]) < 1e-14
    assert int(two.buffers["bn1.num_batches_tracked"]) == 1


def test_replica_shares_params_and_buffers():
    m = create_resnet("resnet8")
    r = m.replica()
    assert r.flat_params is m.flat_params and r.buffers is m.buffers and r.records_stats
    assert r.flat_grads is not m.flat_grads


def test_save_load_round_trip(tmp_path):
    pytest.importorskip("safetensors")
    from minivit.io.serialization import load, save
    m = _tiny(np)
    m.forward(randn(np, 4, 3, 8, 8, seed=6), train=True, keep_cache=False)
    for suffix in (".safetensors", ".npz"):
        path = tmp_path / f"r{suffix}"
        save(m, path)
        back = load(path)
        assert isinstance(back, ResNet) and back.config == m.config
        for k in m.params:
            assert np.array_equal(back.params[k], m.params[k])
        for k in m.buffers:
            assert np.array_equal(back.buffers[k], m.buffers[k])
            assert back.buffers[k].dtype == m.buffers[k].dtype


def test_bad_configs():
    with pytest.raises(ValueError, match="one width per stage"):
        ResNetConfig(blocks=(1, 1), widths=(4,))
    with pytest.raises(ValueError, match="positive integers"):
        ResNetConfig(blocks=(1, 0))
    with pytest.raises(ValueError, match="unknown ResNet config"):
        create_resnet("resnet1000")
