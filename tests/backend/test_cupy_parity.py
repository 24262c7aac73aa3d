"""NumPy and CuPy run the same code; their results agree to float32 tolerance.

(Every other test that takes the ``xp`` fixture also runs on CuPy; this file compares the two.)
Skipped, with the reason, where CuPy or a GPU is missing.
"""

import numpy as np
import pytest
from conftest import requires_cupy

import minivit
import minivit.backend as backend

pytestmark = [pytest.mark.cupy, requires_cupy]


def _run(name, images, labels, **overrides):
    backend.set_backend(name)
    try:
        model = minivit.create_model("cifar-nano", seed=0, dtype="float32", depth=2, **overrides)
        x, y = backend.to_device(images), backend.to_device(labels)
        logits = model.forward(x)
        loss, dlogits = minivit.cross_entropy(logits, y, label_smoothing=0.1)
        dimages = model.backward(dlogits)
        out = {"logits": logits, "dimages": dimages,
               **{"grad." + k: g for k, g in model.grads.items()}}
        return loss, {k: backend.to_numpy(v) for k, v in out.items()}
    finally:
        backend.set_backend("numpy")


@pytest.mark.parametrize("overrides", [{}, {"conv_stem": (32, 64), "pool": "mean"}],
                         ids=["patchify", "conv-stem"])
def test_numpy_and_cupy_agree(overrides):
    gen = np.random.default_rng(0)
    images = gen.standard_normal((8, 3, 32, 32)).astype(np.float32)
    labels = gen.integers(0, 10, size=8)
    loss_np, np_out = _run("numpy", images, labels, **overrides)
    loss_cp, cp_out = _run("cupy", images, labels, **overrides)
    assert abs(loss_np - loss_cp) < 1e-5
    bad = {k: e for k in np_out if (e := minivit.rel_error(np_out[k], cp_out[k])) > 1e-4}
    assert not bad, bad
