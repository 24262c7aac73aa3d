"""A fully connected layer, y = x W^T + b, with PyTorch's weight layout W: (out, in)."""


def linear_forward(x, weight, bias=None):
    """x (..., in), weight (out, in), bias (out,) -> y (..., out).  cache = (x, weight, has_bias)."""
    y = x @ weight.T
    if bias is not None:
        y = y + bias
    return y, (x, weight, bias is not None)


def linear_backward(dy, cache):
    """dy (..., out) -> (dx (..., in), dweight (out, in), dbias (out,) or None)."""
    x, weight, has_bias = cache
    out_features, in_features = weight.shape
    dy2 = dy.reshape(-1, out_features)            # (M, out), M = product of leading dims
    x2 = x.reshape(-1, in_features)               # (M, in)
    dweight = dy2.T @ x2                          # (out, in)
    dbias = dy2.sum(axis=0) if has_bias else None
    dx = dy @ weight                              # (..., in)
    return dx, dweight, dbias
