"""Max-pooling over non-overlapping k x k windows (stride k), on channels-last (NHWC) arrays,
as PyTorch's ``F.max_pool2d(x, k)``:

    out[b, i, j, c] = max_{0 <= u, v < k} x[b, k*i + u, k*j + v, c]       Ho = floor(H / k)

Rows and columns past Ho * k (an odd size under 2x2 pooling) are dropped, as there.

The forward passes over the k*k window offsets (u, v) in row-major order, each a strided slice
of the input, keeping the running maximum and the offset it came from (``argmax``, one byte
per output).  A value replaces the maximum only when it is strictly greater, so a tie goes to
the first offset, the element PyTorch's CPU kernel picks.

Backward: the gradient of each output goes to the one input it was taken from,

    dx[b, k*i + u, k*j + v, c] = dout[b, i, j, c]  where argmax[b, i, j, c] = (u, v),  else 0
"""

from typing import NamedTuple

from minivit.backend import array_module


class MaxPoolCache(NamedTuple):
    argmax: object        # (B, Ho, Wo, C) uint8: the window offset u*k + v of each maximum
    x_shape: tuple        # (B, H, W, C)
    k: int


def _window(a, u, v, k, Ho, Wo):
    """The (u, v) element of every k x k window: a (B, H, W, C) -> view (B, Ho, Wo, C)."""
    return a[:, u:u + k * (Ho - 1) + 1:k, v:v + k * (Wo - 1) + 1:k]


def maxpool2d_nhwc_forward(x, k=2):
    """x (B, H, W, C) -> (out (B, H // k, W // k, C), MaxPoolCache)."""
    if x.ndim != 4:
        raise ValueError(f"maxpool2d: expected a channels-last (B, H, W, C) input, got shape "
                         f"{tuple(x.shape)}")
    B, H, W, C = x.shape
    Ho, Wo = H // k, W // k
    if k < 1 or k * k > 255 or Ho < 1 or Wo < 1:
        raise ValueError(f"maxpool2d: a {k}x{k} window does not fit a {H}x{W} input")
    xp = array_module(x)
    out = _window(x, 0, 0, k, Ho, Wo).copy()
    argmax = xp.zeros(out.shape, dtype=xp.uint8)
    for offset in range(1, k * k):
        candidate = _window(x, offset // k, offset % k, k, Ho, Wo)
        xp.copyto(argmax, offset, where=candidate > out)
        xp.maximum(out, candidate, out=out)
    return out, MaxPoolCache(argmax, x.shape, k)


def maxpool2d_nhwc_backward(dout, cache):
    """dout (B, Ho, Wo, C) -> dx (B, H, W, C)."""
    k = cache.k
    Ho, Wo = dout.shape[1], dout.shape[2]
    dx = array_module(dout).zeros(cache.x_shape, dtype=dout.dtype)
    for offset in range(k * k):
        _window(dx, offset // k, offset % k, k, Ho, Wo)[...] = dout * (cache.argmax == offset)
    return dx
