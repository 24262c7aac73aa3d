"""A fully connected layer, y = x W^T + b, with PyTorch's weight layout W: (out, in).

Leading dimensions (batch, tokens) are flattened into one, so every product is a single 2-D
matrix multiply (one BLAS GEMM: NumPy's stacked/broadcast matmul is far slower on the CPU).
"""

from typing import NamedTuple

from minivit.layers.sums import column_sum


class LinearCache(NamedTuple):
    x: object             # the input (..., in); None where a caller rebuilds it (mlp.py)
    weight: object        # (out, in)
    has_bias: bool


def linear_forward(x, weight, bias=None):
    """x (..., in), weight (out, in), bias (out,) -> (y (..., out), LinearCache)."""
    out_features, in_features = weight.shape
    if x.shape[-1] != in_features:
        raise ValueError(f"linear: input width {x.shape[-1]} does not match weight "
                         f"{tuple(weight.shape)}")
    y = x.reshape(-1, in_features) @ weight.T                    # (M, out), M = prod(leading)
    if bias is not None:
        y += bias
    return y.reshape(x.shape[:-1] + (out_features,)), LinearCache(x, weight, bias is not None)


def linear_backward(dy, cache):
    """dy (..., out) -> (dx (..., in), dweight (out, in), dbias (out,) or None)."""
    x, weight = cache.x, cache.weight
    out_features, in_features = weight.shape
    dy2 = dy.reshape(-1, out_features)            # (M, out)
    x2 = x.reshape(-1, in_features)               # (M, in)
    dweight = dy2.T @ x2                          # (out, in)
    dbias = column_sum(dy2) if cache.has_bias else None
    dx = (dy2 @ weight).reshape(x.shape)          # (..., in)
    return dx, dweight, dbias
