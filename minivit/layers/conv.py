"""A 2-D convolution, written as im2col followed by one matrix product.

    out[b, f, i, j] = bias[f] + sum_{c, u, v} weight[f, c, u, v] * x_pad[b, c, s*i + u, s*j + v]

where x_pad is the input with ``padding`` zeros on each side and s is the stride: PyTorch's
``F.conv2d(x, weight, bias, stride, padding)`` (tests/test_reference_torch.py checks it).

im2col gathers, for every output position, the C*k*k input values the kernel sees into one row
of ``cols`` (B*Ho*Wo, C*k*k); the convolution is then ``cols @ W^T`` with the kernel flattened to
W (F, C*k*k).  The k*k loop below is over kernel offsets, not over pixels: each step copies one
strided slice of the whole batch.  The backward pass is the same two steps reversed: dW and
dbias from the matrix product, and col2im, which adds each row of dcols back onto the pixels it
came from (overlapping windows add up).
"""

from typing import NamedTuple

from minivit.backend import array_module


class ConvCache(NamedTuple):
    cols: object          # im2col of the input (B*Ho*Wo, C*k*k)
    weight: object        # (F, C, k, k)
    x_shape: tuple        # (B, C, H, W)
    stride: int
    padding: int


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """floor((size + 2 padding - kernel) / stride) + 1, as in PyTorch."""
    return (size + 2 * padding - kernel) // stride + 1


def conv2d_forward(x, weight, bias, stride=1, padding=0):
    """x (B, C, H, W), weight (F, C, k, k), bias (F,) -> out (B, F, Ho, Wo), cache."""
    xp = array_module(x)
    B, C, H, W = x.shape
    F, Cw, k, k2 = weight.shape
    if Cw != C or k != k2:
        raise ValueError(f"conv2d: weight {tuple(weight.shape)} does not fit input "
                         f"{tuple(x.shape)}; expected a square kernel (F, {C}, k, k)")
    Ho, Wo = conv_output_size(H, k, stride, padding), conv_output_size(W, k, stride, padding)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d: a {k}x{k} kernel does not fit a {H}x{W} input "
                         f"with padding {padding}")
    p, s = padding, stride
    xpad = xp.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
    cols = xp.empty((B, Ho, Wo, C, k, k), dtype=x.dtype)              # im2col
    for u in range(k):
        for v in range(k):
            window = xpad[:, :, u:u + s * (Ho - 1) + 1:s, v:v + s * (Wo - 1) + 1:s]
            cols[..., u, v] = window.transpose(0, 2, 3, 1)            # (B, Ho, Wo, C)
    cols = cols.reshape(B * Ho * Wo, C * k * k)
    out = cols @ weight.reshape(F, C * k * k).T + bias                # (B*Ho*Wo, F)
    out = out.reshape(B, Ho, Wo, F).transpose(0, 3, 1, 2)             # (B, F, Ho, Wo)
    return out, ConvCache(cols, weight, x.shape, stride, padding)


def conv2d_backward(dout, cache):
    """dout (B, F, Ho, Wo) -> (dx (B, C, H, W), dweight (F, C, k, k), dbias (F,))."""
    cols, weight, s, p = cache.cols, cache.weight, cache.stride, cache.padding
    B, C, H, W = cache.x_shape
    F, _, k, _ = weight.shape
    Ho, Wo = dout.shape[2], dout.shape[3]
    d2 = dout.transpose(0, 2, 3, 1).reshape(B * Ho * Wo, F)          # one row per position
    dweight = (d2.T @ cols).reshape(weight.shape)
    dbias = d2.sum(axis=0)
    xp = array_module(dout)
    dcols = (d2 @ weight.reshape(F, C * k * k)).reshape(B, Ho, Wo, C, k, k)
    dxpad = xp.zeros((B, C, H + 2 * p, W + 2 * p), dtype=dout.dtype)  # col2im
    for u in range(k):
        for v in range(k):
            dxpad[:, :, u:u + s * (Ho - 1) + 1:s, v:v + s * (Wo - 1) + 1:s] += \
                dcols[..., u, v].transpose(0, 3, 1, 2)
    return dxpad[:, :, p:p + H, p:p + W], dweight, dbias
