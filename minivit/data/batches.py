"""Batching and normalisation: index batches on the host, per-channel statistics, and
``normalize`` on whichever backend the images live.

A training loop takes index batches from ``iterate_batches``, moves them with ``to_device``
and calls ``normalize`` on the device.
"""

from __future__ import annotations

import math

from minivit.backend import array_module, host_rng, host_xp, resolve_dtype
from minivit.errors import UserError

np = host_xp()


def channel_stats(x):
    """Per-channel mean and std in [0, 1] units of uint8 images (N, C, H, W) -> two (C,) float64.

    Uses a 256-bin histogram per channel: exact, and no float copy of the images.
    """
    if x.dtype != np.uint8 or x.ndim != 4 or len(x) == 0:
        raise ValueError("channel_stats needs uint8 images (N>0, C, H, W), "
                         f"got {x.dtype} {x.shape}")
    levels = np.arange(256, dtype=np.float64) / 255.0
    mean, std = np.empty(x.shape[1]), np.empty(x.shape[1])
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        p = counts / counts.sum()
        mean[c] = p @ levels
        std[c] = np.sqrt(p @ (levels - mean[c]) ** 2)
    return mean, std


# --------------------------------------------------------------------------- batching

def batch_indices(n: int, batch_size: int, rng=None, drop_last: bool = False):
    """Yield host int64 index arrays of length ``batch_size`` covering range(n).

    ``rng``: None -> in order (evaluation); an int seed or a NumPy Generator
    (``backend.host_rng``) -> a shuffled order. ``drop_last`` drops a short final batch.
    """
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if rng is None:
        order = np.arange(n)
    else:
        if isinstance(rng, (int, np.integer)):
            rng = host_rng(int(rng))
        order = rng.permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def iterate_batches(x, y, batch_size: int, rng=None, drop_last: bool = False):
    """Yield host batches ``(x[idx], y[idx])``: x (B, 3, 32, 32) uint8, y (B,) int64.

    Same ``rng`` / ``drop_last`` meaning as ``batch_indices``.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} images but y has {len(y)} labels")
    for idx in batch_indices(len(x), batch_size, rng, drop_last):
        yield x[idx], y[idx]


def normalize(x, mean, std, dtype=None):
    """uint8 images (B, C, H, W) on any backend -> float ``(x / 255 - mean) / std`` per channel.

    ``mean``, ``std``: (C,) in [0, 1] units (e.g. ``CIFAR10Data.mean``); ``dtype``: float32
    (default) or float64. Runs where ``x`` lives (NumPy or CuPy).
    """
    xp = array_module(x)
    dt = resolve_dtype(dtype)
    if x.ndim != 4:
        raise ValueError(f"normalize expects images (B, C, H, W), got shape {x.shape}")
    mean = xp.asarray(mean, dtype=dt).reshape(1, -1, 1, 1)
    std = xp.asarray(std, dtype=dt).reshape(1, -1, 1, 1)
    return (x.astype(dt) / dt.type(255) - mean) / std


def renormalize(x, mean, std, to_mean, to_std):
    """Images normalised with ``mean`` / ``std`` -> the same images normalised with
    ``to_mean`` / ``to_std`` (each (C,), [0, 1] units): ``x * std / to_std + (mean - to_mean)
    / to_std`` per channel, in x's dtype, where x lives.  ``x`` itself when the two agree."""
    mean, std = np.asarray(mean, "float64"), np.asarray(std, "float64")
    to_mean, to_std = np.asarray(to_mean, "float64"), np.asarray(to_std, "float64")
    if np.array_equal(mean, to_mean) and np.array_equal(std, to_std):
        return x
    xp = array_module(x)
    scale = xp.asarray(std / to_std, dtype=x.dtype).reshape(1, -1, 1, 1)
    shift = xp.asarray((mean - to_mean) / to_std, dtype=x.dtype).reshape(1, -1, 1, 1)
    return x * scale + shift


# The normalisation of images from files (minivit predict, inspect, explain): CIFAR-10's
# training-set statistics, and the range a --mean / --std must keep to.
CIFAR10_MEAN = (0.4915, 0.4821, 0.4464)
CIFAR10_STD = (0.2472, 0.2437, 0.2617)
MIN_STD = 0.001             # pixels in [0, 1] divided by less than this blow up float32


def check_normalisation(mean, std, channels: int = 3) -> None:
    """UserError unless mean and std have one value per channel, mean in [0, 1] and std in
    [MIN_STD, 1] (the ranges the help states: pixels are in [0, 1])."""
    for name, values, lo in (("mean", mean, 0.0), ("std", std, MIN_STD)):
        if len(values) != channels:
            raise UserError(f"--{name} needs one value per channel ({channels}), got "
                            f"{len(values)}")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= 1
                   for v in values):
            raise UserError(f"--{name} values must be numbers in [{lo:g}, 1] (pixels are "
                            f"scaled to [0, 1]), got {list(values)}")


