"""Layer normalisation over the last axis (Ba et al. 2016), eps = 1e-6 as in ViT.

    y = (x - mean) / sqrt(var + eps) * weight + bias      (mean, var over the D features)

Backward, with xhat = (x - mean) * rstd and g = dy * weight:
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat))

The means over the D features and the sums over all rows are matrix-vector products
(minivit/layers/sums.py: the same numbers, faster on the CPU over rows this short).
"""

from minivit.backend import array_module
from minivit.layers.sums import column_sum, row_mean

EPS = 1e-6


def layernorm_forward(x, weight, bias, eps=EPS):
    """x (..., D), weight (D,), bias (D,) -> y (..., D).  cache = (xhat, rstd, weight)."""
    xp = array_module(x)
    xhat = x - row_mean(x)                         # new array, centred
    y = xhat * xhat                                # new array: squares now, the output below
    rstd = 1.0 / (row_mean(y) + eps) ** 0.5        # 1 / sqrt(var + eps), (..., 1)
    xhat *= rstd                                   # in place on our own arrays from here on
    xp.multiply(xhat, weight, out=y)
    y += bias
    return y, (xhat, rstd, weight)


def layernorm_backward(dy, cache):
    """dy (..., D) -> (dx (..., D), dweight (D,), dbias (D,))."""
    xhat, rstd, weight = cache
    xp = array_module(dy)
    t = dy * xhat                                  # new scratch array, reused twice below
    dweight = column_sum(t)                        # sum over every row (sample, token)
    dbias = column_sum(dy)
    dx = dy * weight                               # g: new array, becomes dx in place
    mean_g = row_mean(dx)
    xp.multiply(dx, xhat, out=t)
    mean_gx = row_mean(t)
    dx -= mean_g
    xp.multiply(xhat, mean_gx, out=t)
    dx -= t
    dx *= rstd                                     # dx = rstd (g - mean(g) - xhat mean(g xhat))
    return dx, dweight, dbias
