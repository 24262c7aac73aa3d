"""Layer normalisation over the last axis (Ba et al. 2016), eps = 1e-6 as in ViT.

    y = (x - mean) / sqrt(var + eps) * weight + bias      (mean, var over the D features)

Backward, with xhat = (x - mean) * rstd and g = dy * weight:
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
"""

from minivit.backend import array_module

EPS = 1e-6


def layernorm_forward(x, weight, bias, eps=EPS):
    """x (..., D), weight (D,), bias (D,) -> y (..., D).  cache = (xhat, rstd, weight)."""
    xp = array_module(x)
    mean = x.mean(axis=-1, keepdims=True)
    xhat = x - mean                                # new array, centred
    y = xhat * xhat                                # new array: squares now, the output below
    var = y.mean(axis=-1, keepdims=True)
    rstd = 1.0 / (var + eps) ** 0.5
    xhat *= rstd                                   # in place on our own arrays from here on
    xp.multiply(xhat, weight, out=y)
    y += bias
    return y, (xhat, rstd, weight)


def layernorm_backward(dy, cache):
    """dy (..., D) -> (dx (..., D), dweight (D,), dbias (D,))."""
    xhat, rstd, weight = cache
    xp = array_module(dy)
    D = xhat.shape[-1]
    t = dy * xhat                                  # new scratch array, reused twice below
    dweight = t.reshape(-1, D).sum(axis=0)
    dbias = dy.reshape(-1, D).sum(axis=0)
    dx = dy * weight                               # g: new array, becomes dx in place
    mean_g = dx.mean(axis=-1, keepdims=True)
    xp.multiply(dx, xhat, out=t)
    mean_gx = t.mean(axis=-1, keepdims=True)
    dx -= mean_g
    xp.multiply(xhat, mean_gx, out=t)
    dx -= t
    dx *= rstd                                     # dx = rstd (g - mean(g) - xhat mean(g xhat))
    return dx, dweight, dbias
