"""Max-pooling: finite differences in float64, agreement with PyTorch's max_pool2d (values,
gradients, ties, odd sizes)."""

import numpy as np
import pytest
from support import check_layer, randn

from minivit.layers.maxpool import maxpool2d_nhwc_backward, maxpool2d_nhwc_forward
from minivit.reference.numerical import TOL_REF64, rel_error


@pytest.mark.parametrize("shape, k", [((2, 4, 6, 3), 2), ((2, 5, 7, 3), 2), ((1, 6, 6, 2), 3)])
def test_maxpool_finite_differences(xp, shape, k):
    check_layer(lambda x: maxpool2d_nhwc_forward(x, k), maxpool2d_nhwc_backward,
                [randn(xp, *shape, seed=1)])


@pytest.mark.parametrize("shape, k", [((3, 8, 8, 4), 2), ((2, 7, 5, 3), 2), ((2, 3, 3, 5), 3)])
def test_maxpool_matches_torch(shape, k):
    torch = pytest.importorskip("torch")
    x = randn(np, *shape, seed=2)
    x[0, :2, :2] = 0.5                          # a tie: the first element of the window wins
    out, cache = maxpool2d_nhwc_forward(x, k)
    dout = randn(np, *out.shape, seed=3)
    dx = maxpool2d_nhwc_backward(dout, cache)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    out_t = torch.nn.functional.max_pool2d(xt, k)
    out_t.backward(torch.from_numpy(dout.transpose(0, 3, 1, 2).copy()))
    assert rel_error(out, out_t.detach().numpy().transpose(0, 2, 3, 1)) < TOL_REF64
    assert np.array_equal(dx, xt.grad.numpy().transpose(0, 2, 3, 1))


def test_maxpool_refuses_a_window_larger_than_the_input():
    with pytest.raises(ValueError, match="3x3 window does not fit a 2x2"):
        maxpool2d_nhwc_forward(np.zeros((1, 2, 2, 1)), 3)
