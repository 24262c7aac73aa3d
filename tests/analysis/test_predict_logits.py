"""minivit.predict_logits: the logits of model.forward, batch by batch over threads."""

import numpy as np
import pytest

import minivit
from minivit.parallel.threads import DataParallel


@pytest.mark.parametrize("threads,batch_size", [(1, 256), (2, 256), (2, 3), (0, 4)])
def test_predict_logits_matches_forward(threads, batch_size):
    model = minivit.create_model("cifar-nano", seed=0, depth=2)
    x = np.random.default_rng(0).standard_normal((7, 3, 32, 32)).astype(np.float32)
    want = model.forward(x, train=False, keep_cache=False)
    got = minivit.predict_logits(model, x, threads=threads, batch_size=batch_size)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_predict_logits_with_an_open_data_parallel_and_bad_batch_size():
    model = minivit.create_model("cifar-nano", seed=0, depth=2)
    x = np.random.default_rng(1).standard_normal((5, 3, 32, 32)).astype(np.float32)
    with DataParallel(model, 2) as dp:
        got = minivit.predict_logits(model, x, batch_size=2, parallel=dp)
    np.testing.assert_allclose(got, model.forward(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        minivit.predict_logits(model, x, batch_size=0)
