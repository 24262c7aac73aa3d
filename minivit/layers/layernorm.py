"""Layer normalisation over the last axis (Ba et al. 2016), eps = 1e-6 as in ViT.

    y = (x - mean) / sqrt(var + eps) * weight + bias      (mean, var over the D features)

Backward, with xhat = (x - mean) * rstd and g = dy * weight:
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
"""

EPS = 1e-6


def layernorm_forward(x, weight, bias, eps=EPS):
    """x (..., D), weight (D,), bias (D,) -> y (..., D).  cache = (xhat, rstd, weight)."""
    mean = x.mean(axis=-1, keepdims=True)
    xhat = x - mean                                # new array, centred
    var = (xhat * xhat).mean(axis=-1, keepdims=True)
    rstd = 1.0 / (var + eps) ** 0.5
    xhat *= rstd                                   # in place on our own array (saves a pass)
    y = xhat * weight
    y += bias
    return y, (xhat, rstd, weight)


def layernorm_backward(dy, cache):
    """dy (..., D) -> (dx (..., D), dweight (D,), dbias (D,))."""
    xhat, rstd, weight = cache
    D = xhat.shape[-1]
    dweight = (dy * xhat).reshape(-1, D).sum(axis=0)
    dbias = dy.reshape(-1, D).sum(axis=0)
    g = dy * weight
    mean_g = g.mean(axis=-1, keepdims=True)
    mean_gx = (g * xhat).mean(axis=-1, keepdims=True)
    dx = g - mean_g                                # new array; then in place on it:
    dx -= xhat * mean_gx
    dx *= rstd                                     # dx = rstd (g - mean(g) - xhat mean(g xhat))
    return dx, dweight, dbias
