"""Batch normalisation over the channels of an image batch (Ioffe & Szegedy 2015), as
PyTorch's ``nn.BatchNorm2d``, on channels-last (NHWC) arrays: the B * H * W values of a
channel are one column of the input seen as a matrix (n, C).

Training: each channel is normalised by the mean and (biased) variance of the batch,
over the n = B * H * W values it has; evaluation: by the running statistics instead.

    mu_c = mean_{b,i,j} x[b, i, j, c]           var_c = mean (x - mu_c)^2      (biased)
    xhat = (x - mu_c) / sqrt(var_c + eps)       out = weight_c xhat + bias_c

The variance is taken of the centred values (two passes, not E[x^2] - mu^2, which loses
digits in float32 when |mu| >> std); the centred array is normalised in place into xhat.  In
evaluation the affine map is folded into one scale and shift, out = x s + (bias - mu s) with
s = weight / sqrt(var + eps).  ``relu=True`` applies the ReLU that follows in place on the
output (its backward masks dout by out > 0 first).

Running statistics (buffers, not parameters: no gradient, no weight decay), updated after each
training forward with momentum m (PyTorch's convention, m = 0.1) and the *unbiased* variance:

    running_mean <- (1 - m) running_mean + m mu
    running_var  <- (1 - m) running_var + m var n / (n - 1)

The update is its own function (``update_running_stats``), so that a batch split over threads
(minivit.parallel.threads) can first pool the shards' statistics (``pool_batch_stats``) into
those of the whole batch and update once, in a fixed order.

Backward of training mode, with g = dout * weight:

    dx = (g - mean(g) - xhat mean(g xhat)) / sqrt(var + eps)
       = (dout - dbias / n - xhat dweight / n) * weight / sqrt(var + eps)
    dweight = sum dout xhat          dbias = sum dout

In evaluation mode mu and var are constants: dx = g / sqrt(running_var + eps).
"""

from typing import NamedTuple

from minivit.backend import array_module
from minivit.layers.relu import relu_backward

EPS = 1e-5
MOMENTUM = 0.1


class BatchStats(NamedTuple):
    mean: object          # (C,) batch mean
    var: object           # (C,) biased batch variance
    count: int            # values per channel, B * H * W


class BatchNormCache(NamedTuple):
    x: object             # (n, C) the input as a matrix
    xhat: object          # (n, C) normalised input (training); None in evaluation
    mean: object          # (C,) the mean it was normalised by
    inv_std: object       # (C,) 1 / sqrt(var + eps)
    weight: object        # (C,)
    out: object           # (n, C) the output of the fused ReLU, or None without one
    train: bool           # batch statistics (True) or running statistics (False)


def channel_sums(x2):
    """x2 (n, C) -> (C,) column sums, as one matrix-vector product (on a tall, narrow matrix
    several times faster than x2.sum(axis=0))."""
    return array_module(x2).ones(x2.shape[0], dtype=x2.dtype) @ x2


def _channel_dots(a, b):
    """(n, C), (n, C) -> (C,): sum_n a * b, without the product as a temporary."""
    return array_module(a).einsum("nc,nc->c", a, b)


def batchnorm2d_forward(x, weight, bias, running_mean, running_var, train=True, eps=EPS,
                        relu=False):
    """x (B, H, W, C) channels last, weight / bias / running stats (C,) -> (out (B, H, W, C),
    cache, stats).

    stats: the batch's BatchStats in training (for update_running_stats), None in evaluation.
    The running statistics are only read here; relu=True: out = max(out, 0)."""
    xp = array_module(x)
    C = x.shape[-1]
    if x.ndim != 4 or weight.shape != (C,):
        raise ValueError(f"batchnorm2d: weight {tuple(weight.shape)} does not fit input "
                         f"{tuple(x.shape)}; expected channels last (B, H, W, C) and weight "
                         f"({C},)")
    x2 = x.reshape(-1, C)                                    # (n, C), n = B * H * W
    n = x2.shape[0]
    if train:
        if n < 2:
            raise ValueError(f"batchnorm2d in training needs more than one value per channel, "
                             f"got input {tuple(x.shape)}")
        mean = channel_sums(x2) / n
        xhat = x2 - mean                                     # centred, a new array
        var = _channel_dots(xhat, xhat) / n
        stats = BatchStats(mean, var, n)
        inv_std = 1.0 / xp.sqrt(var + eps)
        xhat *= inv_std                                      # normalised in place
        out = xhat * weight
        out += bias
    else:
        mean, stats, xhat = running_mean, None, None
        inv_std = 1.0 / xp.sqrt(running_var + eps)
        scale = weight * inv_std
        out = x2 * scale
        out += bias - mean * scale
    if relu:
        xp.maximum(out, 0, out=out)
    cache = BatchNormCache(x2, xhat, mean, inv_std, weight, out if relu else None, train)
    return out.reshape(x.shape), cache, stats


def batchnorm2d_backward(dout, cache):
    """dout (B, H, W, C) -> (dx (B, H, W, C), dweight (C,), dbias (C,))."""
    C = dout.shape[-1]
    d = dout.reshape(-1, C)                                  # (n, C)
    if cache.out is not None:                                # the fused ReLU
        d = relu_backward(d, cache.out)
    n = d.shape[0]
    xhat = cache.xhat if cache.train else (cache.x - cache.mean) * cache.inv_std
    dbias = channel_sums(d)
    dweight = _channel_dots(d, xhat)
    scale = cache.weight * cache.inv_std
    if not cache.train:
        return (d * scale).reshape(dout.shape), dweight, dbias
    dx = xhat * (-dweight / n)                               # a new array, then in place
    dx += d
    dx -= dbias / n
    dx *= scale
    return dx.reshape(dout.shape), dweight, dbias


def pool_batch_stats(shards):
    """The BatchStats of a batch from those of its shards, in the order given:
    mean = sum n_s mu_s / n,  var = sum n_s (var_s + (mu_s - mean)^2) / n."""
    n = sum(s.count for s in shards)
    mean = sum(s.mean * (s.count / n) for s in shards)
    var = sum((s.var + (s.mean - mean) ** 2) * (s.count / n) for s in shards)
    return BatchStats(mean, var, n)


def update_running_stats(running_mean, running_var, stats: BatchStats, momentum=MOMENTUM):
    """-> (new running_mean, new running_var): new arrays, the old ones are not changed."""
    n = stats.count
    unbiased = stats.var * (n / (n - 1))
    return ((1 - momentum) * running_mean + momentum * stats.mean,
            (1 - momentum) * running_var + momentum * unbiased)
