"""The airbench teacher: names and counts, whole-model gradients by finite differences in
float64, agreement with a PyTorch twin (logits, every gradient, running statistics) in training
and evaluation mode, the patch whitening, data-parallel BatchNorm statistics, save/load."""

import numpy as np
import pytest
from support import randn

import minivit
from minivit.backend import to_numpy
from minivit.layers.loss import cross_entropy
from minivit.models.airbench import AirbenchNet, create_airbench
from minivit.models.airbench_config import AirbenchConfig, count_airbench_params
from minivit.models.whitening import patch_matrix, patch_whitening_weights
from minivit.parallel.threads import DataParallel
from minivit.reference.numerical import TOL_REF64, numerical_gradient, rel_error, sample_indices
from minivit.training.objectives.classification import classify

TINY = dict(widths=(3, 4, 5), image_size=12, num_classes=5)      # 11 -> 5 -> 2 -> 1 pixels


def _tiny(xp, seed=0, **kw):
    model = create_airbench(AirbenchConfig(**{**TINY, **kw}), seed=seed, dtype="float64")
    model.init_whitening(randn(xp, 6, 3, 12, 12, seed=seed + 7))
    gen = np.random.default_rng(seed + 1)
    for k in model.params:          # biases away from 0, a head that is not tiny
        scale = 0.3 if k.endswith(".bias") else 0.0
        scale = 3.0 if k == "head.weight" else scale
        model.params[k] = model.params[k] + xp.asarray(scale * gen.standard_normal(
            model.params[k].shape))
    return model


def test_names_and_counts():
    m = create_airbench("airbench")
    assert m.num_params() == count_airbench_params(m.config) == 1_971_640
    assert list(m.params)[:4] == ["whiten.weight", "whiten.bias", "block1.conv1.weight",
                                  "block1.norm1.bias"]
    assert "block1.norm1.weight" not in m.params
    assert m.buffers["block3.norm2.running_var"].shape == (256,)
    w = to_numpy(m.params["block2.conv1.weight"])               # identity on the first 64
    assert w[5, 5, 1, 1] == 1 and w[5, 6].sum() == 0 and w[5, 5].sum() == 1


def test_config_refuses_images_too_small():
    with pytest.raises(ValueError, match="too small"):
        AirbenchConfig(image_size=8)


@pytest.mark.parametrize("train", [True, False])
def test_whole_airbench_gradients_finite_differences(xp, train):
    model = _tiny(xp)
    x, y = randn(xp, 3, 3, 12, 12, seed=2), xp.asarray([0, 3, 4])
    model.buffers["block1.norm1.running_var"] = model.buffers["block1.norm1.running_var"] * 1.5

    def loss():
        return cross_entropy(model.forward(x, train=train, keep_cache=False), y, 0.2)[0]

    _, dlogits = cross_entropy(model.forward(x, train=train), y, 0.2)
    dx = model.backward(dlogits)
    for name, p in [*model.params.items(), ("images", x)]:
        g = dx if name == "images" else model.grads[name]
        idx = sample_indices(p.size, 12)
        num = numerical_gradient(loss, p, indices=idx)
        assert rel_error(to_numpy(g).reshape(-1)[idx], num) < 1e-6, name


@pytest.mark.parametrize("train", [True, False])
def test_airbench_matches_torch(train):
    torch = pytest.importorskip("torch")
    from torch_airbench import build_torch_airbench
    model = _tiny(np)
    tm = build_torch_airbench(model).train(train)
    x, y = randn(np, 4, 3, 12, 12, seed=3), np.array([1, 0, 4, 2])
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
    tbuf = {k: v for k, v in tm.state_dict().items() if k not in tgrads}
    assert set(tbuf) == set(model.buffers)
    for k, v in tbuf.items():
        assert rel_error(model.buffers[k], v.numpy()) < TOL_REF64, k


def test_whitening_decorrelates_the_patches(xp):
    gen = np.random.default_rng(4)
    mix = gen.standard_normal((3, 3)) + 2 * np.eye(3)             # correlated channels
    images = xp.asarray(np.einsum("dc,bchw->bdhw", mix, gen.standard_normal((20, 3, 9, 9))))
    w = patch_whitening_weights(images, k=2, eps=0.0)               # (24, 3, 2, 2)
    assert w.shape == (24, 3, 2, 2) and rel_error(w[12:], -w[:12]) == 0
    X = patch_matrix(images, 2)                                     # (n, 12)
    Z = X @ w[:12].reshape(12, -1).T                                # whitened coordinates
    assert rel_error(Z.T @ Z / Z.shape[0], xp.eye(12)) < 1e-9


def test_eval_uses_running_stats_with_airbench_momentum(xp):
    model = _tiny(xp)
    x = randn(xp, 4, 3, 12, 12, seed=4)
    model.forward(x, train=True, keep_cache=False)
    assert int(model.buffers["block1.norm1.num_batches_tracked"]) == 1
    fresh = create_airbench(model.config, dtype="float64")
    fresh.params = model.params
    fresh.bn_momentum = 1.0                                          # the batch's own stats
    fresh.forward(x, train=True, keep_cache=False)
    m, ran = 0.4, fresh.buffers["block1.norm1.running_mean"]
    assert rel_error(model.buffers["block1.norm1.running_mean"], m * ran) < 1e-12


def test_data_parallel_pools_the_shards_statistics(xp):
    if xp.__name__ != "numpy":
        pytest.skip("DataParallel threads are for NumPy")
    x, y = randn(xp, 6, 3, 12, 12, seed=5), xp.asarray([0, 1, 2, 3, 4, 0])
    two, by_hand = _tiny(xp), _tiny(xp)
    with DataParallel(two, 2) as dp:
        classify(dp, x, y)
    shards = [by_hand.replica() for _ in range(2)]
    for r, s in zip(shards, (slice(0, 3), slice(3, 6))):
        r.forward(x[s], train=True, keep_cache=False)
    by_hand.merge_replica_stats(shards)
    for k in two.buffers:
        assert np.array_equal(two.buffers[k], by_hand.buffers[k]), k


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_save_load_round_trip(tmp_path, suffix):
    model = _tiny(np)
    model.forward(randn(np, 4, 3, 12, 12, seed=6), train=True, keep_cache=False)
    minivit.save(model, tmp_path / f"m{suffix}")
    back = minivit.load(tmp_path / f"m{suffix}")
    assert isinstance(back, AirbenchNet) and back.config == model.config
    for k in model.params:
        assert np.array_equal(back.params[k], model.params[k]), k
    for k in model.buffers:
        assert np.array_equal(back.buffers[k], model.buffers[k]), k
    x = randn(np, 2, 3, 12, 12, seed=7)
    assert np.array_equal(back.forward(x), model.forward(x))
