"""The CuPy stand-in (tests/cupy_standin) is as strict as CuPy where it matters, and logs
device -> host syncs with the minivit line behind them."""

import sys

import cupy_standin
import numpy as np
import pytest
from cupy_standin._names import NAMES, VERSION

import minivit.backend as backend
from minivit.training.optim import global_grad_norm


@pytest.fixture
def cp():
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in ("cupy", "cupyx")}
    cupy_standin.install()
    yield sys.modules["cupy"]
    for k in [k for k in sys.modules if k.split(".")[0] in ("cupy", "cupyx")]:
        del sys.modules[k]
    sys.modules.update(saved)


def test_the_names_come_from_the_cupy_14_wheel():
    assert VERSION.startswith("14.")
    assert {"asarray", "asnumpy", "einsum", "random", "cuda"} <= NAMES["cupy"]
    assert "default_rng" in NAMES["cupy.random"] and "normal" not in NAMES["cupy.random.Generator"]
    assert "erf" in NAMES["cupyx.scipy.special"] and "get" in NAMES["cupy.ndarray"]


def test_host_arrays_are_refused_as_on_cupy(cp):
    x = cp.arange(6, dtype="float32").reshape(2, 3)
    assert type(x).__module__ == "cupy" and not isinstance(x, np.ndarray)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Unsupported type"):
        x + np.ones(3)
    with pytest.raises(TypeError, match="Unsupported type"):
        np.ones(3) * x
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.concatenate([x, np.ones((2, 3))])
    assert isinstance(np.exp(x), cp.ndarray)            # NumPy's ufuncs dispatch to CuPy's
    assert cp.asnumpy(x @ x.T).shape == (2, 2)


def test_only_cupys_names_exist(cp):
    for missing in ("frompyfunc", "asmatrix"):           # NumPy has them, CuPy 14 does not
        assert missing not in NAMES["cupy"]
        with pytest.raises(AttributeError, match="no such name"):
            getattr(cp, missing)
    x = cp.zeros(3)
    with pytest.raises(AttributeError, match="no such attribute"):
        x.itemset                                        # noqa: B018  (NumPy-only method)
    with pytest.raises(AttributeError, match="no such method"):
        cp.random.default_rng(0).normal                  # noqa: B018
    with pytest.raises(TypeError):                       # no __index__, as on CuPy
        range(cp.asarray(3))


def test_generator_follows_cupys_rules_and_restores_its_state(cp):
    gen = cp.random.default_rng(0)
    with pytest.raises(TypeError, match="a is required"):
        gen.beta(np.float64(0.8), 0.8)                   # CuPy wants a Python float
    assert gen.beta(0.8, 0.8).shape == ()
    saved = gen.bit_generator._state.copy()
    first = cp.asnumpy(gen.random(5, dtype="float32"))
    gen.bit_generator._state[...] = saved
    assert np.array_equal(cp.asnumpy(gen.random(5, dtype="float32")), first)


def test_syncs_are_logged_with_the_minivit_line(cp, monkeypatch):
    monkeypatch.setitem(backend._cupy, "module", cp)     # minivit.backend finds the stand-in
    grads = {"a": cp.ones((2, 2)), "b": cp.ones(3)}
    cupy_standin.reset_syncs()
    assert global_grad_norm(grads) == pytest.approx(7 ** 0.5)
    x = cp.arange(4)
    len(x), list(x), x.shape                             # not syncs
    log = cupy_standin.syncs()
    assert [k for k, _ in log] == ["float()"]            # one reduction of the flat buffer
    assert all(w.startswith("minivit/training/optim.py:") for _, w in log)
    x[x > 1]
    assert cupy_standin.syncs()[-1][0] == "boolean mask index"
