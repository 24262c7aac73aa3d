"""A 2-D convolution, written as im2col followed by one matrix product, on channels-last
(NHWC) arrays; ``conv2d_forward`` / ``conv2d_backward`` take and give NCHW around them.

    out[b, i, j, f] = bias[f] + sum_{u, v, c} weight[f, c, u, v] * x_pad[b, s*i + u, s*j + v, c]

where x_pad is the input with ``padding`` zeros on each side and s is the stride: PyTorch's
``F.conv2d(x, weight, bias, stride, padding)`` (tests/reference/test_torch_twin.py checks it); the
weight keeps PyTorch's layout (F, C, k, k).

im2col gathers, for every output position, the k*k*C input values the kernel sees into one row
of ``cols`` (B*Ho*Wo, k*k*C), ordered (u, v, c).  The loop is over the k*k kernel offsets, not
over pixels: each step copies one strided slice of the images, whose rows are C contiguous
values in channels-last order.  The convolution is then one product ``cols @ W`` with the
kernel flattened to W (k*k*C, F), and the result (B*Ho*Wo, F) already is the NHWC output.
On the CPU, im2col and the product run a few images at a time, as many as fit their columns
in about CHUNK_BYTES, so that the product reads columns still in the processor's cache; the
columns are not kept for the backward pass (9x the input for a 3x3 kernel), which makes them
again from the padded input it keeps, a chunk at a time.

Backward, with d = dout as (B*Ho*Wo, F):

    dweight = cols^T d = sum over chunks of cols_chunk^T d_chunk   (k*k*C, F)
    dbias = column sums of d

and dx in one of two ways:

* stride 1: the transposed convolution is a convolution again, of dout padded by k - 1 - p
  with the kernel flipped in space and its two channel axes swapped,
      dx[b, y, x, c] = sum_{u, v, f} dout_pad[b, y + u, x + v, f] * weight[f, c, k-1-u, k-1-v]
  so im2col of dout and one product (B*H*W, k*k*F) @ (k*k*F, C);
* stride > 1: col2im, dcols = d W^T (B*Ho*Wo, k*k*C), each row added back onto the pixels it
  came from (overlapping windows add up).
"""

from typing import NamedTuple

from minivit.backend import array_module, is_cupy_array

CHUNK_BYTES = 1 << 20     # the columns of one chunk of images: about a core's L2 cache


class ConvCache(NamedTuple):
    xpad: object          # the input with its padding (B, H + 2p, W + 2p, C)
    weight: object        # (F, C, k, k)
    x_shape: tuple        # (B, H, W, C)
    stride: int
    padding: int


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """floor((size + 2 padding - kernel) / stride) + 1, as in PyTorch."""
    return (size + 2 * padding - kernel) // stride + 1


def pad_hw(x, p):
    """x (B, H, W, C) -> (B, H + 2p, W + 2p, C) with p zeros around each image (a new array)."""
    if not p:
        return x
    B, H, W, C = x.shape
    out = array_module(x).zeros((B, H + 2 * p, W + 2 * p, C), dtype=x.dtype)
    out[:, p:p + H, p:p + W] = x
    return out


def im2col(xpad, k, stride, out=None):
    """xpad (B, Hp, Wp, C), already padded -> cols (B*Ho*Wo, k*k*C), row (b, i, j) = the
    window of output (i, j); written into ``out`` if given."""
    B, Hp, Wp, C = xpad.shape
    s = stride
    Ho, Wo = conv_output_size(Hp, k, s, 0), conv_output_size(Wp, k, s, 0)
    if out is None:
        out = array_module(xpad).empty((B * Ho * Wo, k * k * C), dtype=xpad.dtype)
    cols = out.reshape(B, Ho, Wo, k, k, C)
    for u in range(k):
        for v in range(k):
            cols[:, :, :, u, v] = xpad[:, u:u + s * (Ho - 1) + 1:s, v:v + s * (Wo - 1) + 1:s]
    return out


def column_chunks(xpad, k, stride):
    """Yield (rows, cols) a chunk of images at a time: rows, the slice of the output rows
    (B*Ho*Wo in all) of the chunk's images; cols, their im2col (rows, k*k*C), in one scratch
    array that the next chunk overwrites.  One chunk on CuPy."""
    xp = array_module(xpad)
    B, Hp, Wp, C = xpad.shape
    n_rows = conv_output_size(Hp, k, stride, 0) * conv_output_size(Wp, k, stride, 0)
    K = k * k * C
    n = B if is_cupy_array(xpad) else max(1, min(B, CHUNK_BYTES // (n_rows * K * xpad.itemsize)))
    scratch = xp.empty((n * n_rows, K), dtype=xpad.dtype)
    for b0 in range(0, B, n):
        rows = slice(b0 * n_rows, min(b0 + n, B) * n_rows)
        yield rows, im2col(xpad[b0:b0 + n], k, stride, scratch[:rows.stop - rows.start])


def conv_matmul(xpad, k, stride, wmat):
    """im2col(xpad) @ wmat: xpad (B, Hp, Wp, C) padded, wmat (k*k*C, F) -> (B*Ho*Wo, F)."""
    B, Hp, Wp, _ = xpad.shape
    n_rows = conv_output_size(Hp, k, stride, 0) * conv_output_size(Wp, k, stride, 0)
    xp = array_module(xpad)
    out = xp.empty((B * n_rows, wmat.shape[1]), dtype=xpad.dtype)
    for rows, cols in column_chunks(xpad, k, stride):
        xp.matmul(cols, wmat, out=out[rows])
    return out


def conv_weight_grad(xpad, k, stride, d2):
    """cols^T d2 with the columns made again: xpad (B, Hp, Wp, C), d2 (B*Ho*Wo, F)
    -> (k*k*C, F)."""
    xp = array_module(xpad)
    K, F = k * k * xpad.shape[3], d2.shape[1]
    total, part = xp.zeros((K, F), dtype=d2.dtype), xp.empty((K, F), dtype=d2.dtype)
    for rows, cols in column_chunks(xpad, k, stride):
        xp.matmul(cols.T, d2[rows], out=part)
        total += part
    return total


def col2im(dcols, x_shape, k, stride, padding):
    """dcols (B, Ho, Wo, k, k, C) -> dx (B, H, W, C): every window's values added back."""
    B, H, W, C = x_shape
    s, p = stride, padding
    Ho, Wo = dcols.shape[1], dcols.shape[2]
    dxpad = array_module(dcols).zeros((B, H + 2 * p, W + 2 * p, C), dtype=dcols.dtype)
    for u in range(k):
        for v in range(k):
            dxpad[:, u:u + s * (Ho - 1) + 1:s, v:v + s * (Wo - 1) + 1:s] += dcols[:, :, :, u, v]
    return dxpad[:, p:p + H, p:p + W]


def conv2d_nhwc_forward(x, weight, bias=None, stride=1, padding=0, keep_cache=True):
    """x (B, H, W, C), weight (F, C, k, k), bias (F,) or None -> out (B, Ho, Wo, F), cache.
    keep_cache=False: no backward follows (the cache is None).  Without padding the cache
    holds x itself."""
    B, H, W, C = x.shape
    F, Cw, k, k2 = weight.shape
    if Cw != C or k != k2:
        raise ValueError(f"conv2d: weight {tuple(weight.shape)} does not fit an input of "
                         f"{C} channels {tuple(x.shape)} (channels last); expected a square "
                         f"kernel (F, {C}, k, k)")
    Ho, Wo = conv_output_size(H, k, stride, padding), conv_output_size(W, k, stride, padding)
    if Ho < 1 or Wo < 1:
        raise ValueError(f"conv2d: a {k}x{k} kernel does not fit a {H}x{W} input "
                         f"with padding {padding}")
    wmat = weight.transpose(2, 3, 1, 0).reshape(k * k * C, F)       # (k*k*C, F), rows (u, v, c)
    xpad = pad_hw(x, padding)
    out = conv_matmul(xpad, k, stride, wmat)                          # (B*Ho*Wo, F)
    if bias is not None:
        out += bias
    cache = ConvCache(xpad, weight, x.shape, stride, padding) if keep_cache else None
    return out.reshape(B, Ho, Wo, F), cache


def conv2d_nhwc_backward(dout, cache, need_bias=True):
    """dout (B, Ho, Wo, F) -> (dx (B, H, W, C), dweight (F, C, k, k), dbias (F,) or None)."""
    weight, s, p = cache.weight, cache.stride, cache.padding
    B, H, W, C = cache.x_shape
    F, _, k, _ = weight.shape
    Ho, Wo = dout.shape[1], dout.shape[2]
    d2 = dout.reshape(B * Ho * Wo, F)                                 # one row per position
    dweight = conv_weight_grad(cache.xpad, k, s, d2)                  # (k*k*C, F)
    dweight = dweight.reshape(k, k, C, F).transpose(3, 2, 0, 1)      # (F, C, k, k)
    dbias = d2.sum(axis=0) if need_bias else None
    if s == 1 and p <= k - 1:               # a convolution of dout with the flipped kernel
        flipped = weight[:, :, ::-1, ::-1].transpose(2, 3, 0, 1).reshape(k * k * F, C)
        dx = conv_matmul(pad_hw(dout, k - 1 - p), k, 1, flipped).reshape(B, H, W, C)
    else:
        dcols = d2 @ weight.transpose(0, 2, 3, 1).reshape(F, k * k * C)
        dx = col2im(dcols.reshape(B, Ho, Wo, k, k, C), cache.x_shape, k, s, p)
    return dx, dweight, dbias


def conv2d_forward(x, weight, bias, stride=1, padding=0):
    """x (B, C, H, W), weight (F, C, k, k), bias (F,) -> out (B, F, Ho, Wo), cache."""
    if x.ndim != 4 or weight.ndim != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"conv2d: weight {tuple(weight.shape)} does not fit input "
                         f"{tuple(x.shape)}; expected a square kernel (F, {x.shape[1]}, k, k)")
    out, cache = conv2d_nhwc_forward(x.transpose(0, 2, 3, 1), weight, bias, stride, padding)
    return out.transpose(0, 3, 1, 2), cache


def conv2d_backward(dout, cache):
    """dout (B, F, Ho, Wo) -> (dx (B, C, H, W), dweight (F, C, k, k), dbias (F,))."""
    dx, dweight, dbias = conv2d_nhwc_backward(dout.transpose(0, 2, 3, 1), cache)
    return dx.transpose(0, 3, 1, 2), dweight, dbias
