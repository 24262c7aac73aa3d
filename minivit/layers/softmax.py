"""Numerically stable softmax over the last axis.

    p_i = exp(x_i - max_j x_j) / sum_k exp(x_k - max_j x_j)

Subtracting the row maximum changes nothing mathematically (softmax is unchanged by adding a
constant to a row) but keeps exp() from overflowing.  Backward (Jacobian-vector product):
    dx_i = p_i (dp_i - sum_j dp_j p_j)
"""

from minivit.backend import array_module


def softmax_forward(x):
    """x (..., K) -> p (..., K), rows summing to one.  cache = p."""
    xp = array_module(x)
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    p = e / e.sum(axis=-1, keepdims=True)
    return p, p


def softmax_backward(dp, cache):
    """dp (..., K) -> dx (..., K)."""
    p = cache
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


def log_softmax(x):
    """log p, computed stably as x - max - log(sum exp(x - max))."""
    xp = array_module(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
