"""Batch normalisation over the channels of an image batch (Ioffe & Szegedy 2015), as
PyTorch's ``nn.BatchNorm2d``.

Training: each channel is normalised by the mean and (biased) variance of the batch,
over the B * H * W values it has; evaluation: by the running statistics instead.

    mu_c = mean_{b,i,j} x[b, c, i, j]           var_c = mean (x - mu_c)^2      (biased)
    xhat = (x - mu_c) / sqrt(var_c + eps)       out = weight_c xhat + bias_c

Running statistics (buffers, not parameters: no gradient, no weight decay), updated after each
training forward with momentum m (PyTorch's convention, m = 0.1) and the *unbiased* variance:

    running_mean <- (1 - m) running_mean + m mu          running_var <- (1 - m) running_var + m var n / (n - 1)

The update is its own function (``update_running_stats``), so that a batch split over threads
(minivit.parallel) can first pool the shards' statistics (``pool_batch_stats``) into those of
the whole batch and update once, in a fixed order.

Backward of training mode (n = B H W values per channel), with g = dout * weight:

    dx = (g - mean(g) - xhat mean(g xhat)) / sqrt(var + eps)
    dweight = sum dout xhat          dbias = sum dout

In evaluation mode mu and var are constants: dx = g / sqrt(running_var + eps).
"""

from typing import NamedTuple

from minivit.backend import array_module

EPS = 1e-5
MOMENTUM = 0.1


class BatchStats(NamedTuple):
    mean: object          # (C,) batch mean
    var: object           # (C,) biased batch variance
    count: int            # values per channel, B * H * W


class BatchNormCache(NamedTuple):
    xhat: object          # (B, C, H, W) normalised input
    inv_std: object       # (C,) 1 / sqrt(var + eps)
    weight: object        # (C,)
    train: bool           # batch statistics (True) or running statistics (False)


def _channel(v):
    return v.reshape(1, -1, 1, 1)


def batchnorm2d_forward(x, weight, bias, running_mean, running_var, train=True, eps=EPS):
    """x (B, C, H, W), weight / bias / running stats (C,) -> (out, cache, stats).

    stats: the batch's BatchStats in training (for update_running_stats), None in evaluation.
    The running statistics are only read here."""
    xp = array_module(x)
    B, C, H, W = x.shape
    if weight.shape != (C,):
        raise ValueError(f"batchnorm2d: weight {tuple(weight.shape)} does not fit input "
                         f"{tuple(x.shape)}; expected ({C},)")
    if train:
        n = B * H * W
        if n < 2:
            raise ValueError(f"batchnorm2d in training needs more than one value per channel, "
                             f"got input {tuple(x.shape)}")
        mean = x.mean(axis=(0, 2, 3))
        centred = x - _channel(mean)
        var = (centred * centred).mean(axis=(0, 2, 3))
        stats = BatchStats(mean, var, n)
    else:
        mean, var, stats = running_mean, running_var, None
        centred = x - _channel(mean)
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = centred * _channel(inv_std)
    out = xhat * _channel(weight) + _channel(bias)
    return out, BatchNormCache(xhat, inv_std, weight, train), stats


def batchnorm2d_backward(dout, cache):
    """dout (B, C, H, W) -> (dx, dweight (C,), dbias (C,))."""
    xhat, inv_std = cache.xhat, cache.inv_std
    dbias = dout.sum(axis=(0, 2, 3))
    dweight = (dout * xhat).sum(axis=(0, 2, 3))
    g = dout * _channel(cache.weight)
    if not cache.train:
        return g * _channel(inv_std), dweight, dbias
    B, C, H, W = dout.shape
    n = B * H * W
    mean_g = g.mean(axis=(0, 2, 3))
    mean_gx = (g * xhat).mean(axis=(0, 2, 3))
    dx = (g - _channel(mean_g) - xhat * _channel(mean_gx)) * _channel(inv_std)
    return dx, dweight, dbias


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
