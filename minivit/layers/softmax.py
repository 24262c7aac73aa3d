"""Numerically stable softmax over one axis (the last, unless told).

    p_i = exp(x_i - max_j x_j) / sum_k exp(x_k - max_j x_j)

Subtracting the maximum changes nothing mathematically (softmax is unchanged by adding a
constant to a row) but keeps exp() from overflowing.  Backward (Jacobian-vector product):
    dx_i = p_i (dp_i - sum_j dp_j p_j)

Speed note: these arrays are the largest of the model ((B, heads, T, T) in attention), and on
the CPU the time goes into passes over memory, not arithmetic.  So intermediate results are
updated in place (``out=``, ``*=``) -- only ever arrays this function has just created, never
an input or a cached array -- and the sums are matrix-vector products (minivit/layers/sums.py).
Attention takes its softmax over axis -2, down the columns of (..., keys, queries): there the
maximum is a few elementwise ``maximum`` passes over whole contiguous rows (``_column_max``),
2.5x faster on the CPU than NumPy's maximum over short rows (T = 65, measured 2026-12-06).
"""

from minivit.backend import array_module, is_cupy_array
from minivit.layers.sums import sum_over


def _column_max(x):
    """x (..., K, N) -> the maximum over axis -2, shape (..., 1, N), by halving: the larger of
    rows i and i + K/2, then of the K/4 rows left... (elementwise maxima of whole rows)."""
    xp = array_module(x)
    K = x.shape[-2]
    if K == 1 or is_cupy_array(x):                 # on a GPU the reduction is one kernel
        return x.max(axis=-2, keepdims=True)
    half = K // 2
    m = xp.maximum(x[..., :half, :], x[..., half:2 * half, :])       # new array (..., K/2, N)
    if K % 2:
        xp.maximum(m[..., :1, :], x[..., K - 1:, :], out=m[..., :1, :])
    rows = half
    for _ in range(rows.bit_length() - 1):         # halve m in place until one row is left
        half = rows // 2
        xp.maximum(m[..., :half, :], m[..., half:2 * half, :], out=m[..., :half, :])
        if rows % 2:
            xp.maximum(m[..., :1, :], m[..., rows - 1:rows, :], out=m[..., :1, :])
        rows = half
    return m[..., :1, :]


def _max_over(x, axis):
    return _column_max(x) if axis == -2 else x.max(axis=axis, keepdims=True)


def softmax_forward(x, axis=-1):
    """x -> p of the same shape, summing to one over ``axis`` (-1 or -2).  cache = p."""
    xp = array_module(x)
    p = x - _max_over(x, axis)                     # new array: shifted scores
    xp.exp(p, out=p)                               # e = exp(x - max)
    p /= sum_over(p, axis)                         # p = e / sum(e)
    return p, p


def softmax_backward(dp, cache, axis=-1):
    """dp -> dx (the shape of p), for the softmax over ``axis`` that gave ``cache`` = p."""
    p = cache
    xp = array_module(dp)
    dx = dp * p                                    # new array
    inner = sum_over(dx, axis)                     # sum_j dp_j p_j
    xp.subtract(dp, inner, out=dx)
    dx *= p                                        # dx = p (dp - inner)
    return dx


def log_softmax(x):
    """log p, computed stably as x - max - log(sum exp(x - max))."""
    xp = array_module(x)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
