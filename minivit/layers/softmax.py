"""Numerically stable softmax over the last axis.

    p_i = exp(x_i - max_j x_j) / sum_k exp(x_k - max_j x_j)

Subtracting the row maximum changes nothing mathematically (softmax is unchanged by adding a
constant to a row) but keeps exp() from overflowing.  Backward (Jacobian-vector product):
    dx_i = p_i (dp_i - sum_j dp_j p_j)

Speed note: these arrays are the largest of the model ((B, heads, T, T) in attention), and on
the CPU the time goes into passes over memory, not arithmetic.  So intermediate results are
updated in place (``out=``, ``*=``) -- only ever arrays this function has just created, never
an input or a cached array.
"""

from minivit.backend import array_module


def softmax_forward(x):
    """x (..., K) -> p (..., K), rows summing to one.  cache = p."""
    xp = array_module(x)
    p = x - x.max(axis=-1, keepdims=True)          # new array: shifted scores
    xp.exp(p, out=p)                               # e = exp(x - max)
    p /= p.sum(axis=-1, keepdims=True)             # p = e / sum(e)
    return p, p


def softmax_backward(dp, cache):
    """dp (..., K) -> dx (..., K)."""
    p = cache
    xp = array_module(dp)
    dx = dp * p                                    # new array
    inner = dx.sum(axis=-1, keepdims=True)         # sum_j dp_j p_j
    xp.subtract(dp, inner, out=dx)
    dx *= p                                        # dx = p (dp - inner)
    return dx


def log_softmax(x):
    """log p, computed stably as x - max - log(sum exp(x - max))."""
    xp = array_module(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
