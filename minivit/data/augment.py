"""Batched data augmentation on the device (NumPy or CuPy, whichever holds the batch).

Every function takes its random generator explicitly, made with
``minivit.backend.rng(seed, xp)`` on the same backend as the images, so a run is
reproducible and there is no hidden global random state.  Mixup and CutMix draw only
per-batch scalars (lambda, the box, the choice between them): give them a host generator
(``minivit.backend.host_rng``), so that no draw is read back from the device.  No Python
loop runs over the samples of a batch: per-sample choices become index arrays and one gather.

Images are (B, C, H, W). ``random_crop_flip`` and ``cutmix`` accept uint8 or float;
``mixup`` needs float (apply it after ``normalize``).

Mixup / CutMix follow timm (``timm.data.Mixup``, "batch" mode): one lam ~ Beta(alpha, alpha)
per batch, each sample mixed with its mirror in the batch (``x[::-1]``), targets
``lam * onehot(y) + (1 - lam) * onehot(y[::-1])``; CutMix corrects lam to the true box area.
"""

from __future__ import annotations

import math

from minivit.backend import array_module


def random_crop_flip(x, rng, padding: int = 4, flip: bool = True):
    """Zero-pad by ``padding``, take a random HxW crop per sample, mirror half the samples.

    x: (B, C, H, W), any dtype -> same shape and dtype. ``rng``: backend generator.
    """
    xp = array_module(x)
    B, C, H, W = x.shape
    p = int(padding)
    padded = xp.zeros((B, C, H + 2 * p, W + 2 * p), dtype=x.dtype)
    padded[:, :, p:p + H, p:p + W] = x
    top = rng.integers(0, 2 * p + 1, size=B)                 # (B,) crop offsets
    left = rng.integers(0, 2 * p + 1, size=B)
    rows = top[:, None] + xp.arange(H)[None, :]               # (B, H)
    cols = left[:, None] + xp.arange(W)[None, :]              # (B, W)
    if flip:
        mirror = rng.random(B) < 0.5                          # (B,) which samples to flip
        cols = xp.where(mirror[:, None], cols[:, ::-1], cols)
    b = xp.arange(B)[:, None, None, None]
    c = xp.arange(C)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def one_hot(y, num_classes: int, smoothing: float = 0.0, dtype="float32"):
    """int labels (B,) -> (B, K) targets; with label smoothing as in timm (off = s/K)."""
    xp = array_module(y)
    off = smoothing / num_classes
    out = xp.full((len(y), num_classes), off, dtype=dtype)
    out[xp.arange(len(y)), y] = 1.0 - smoothing + off
    return out


def _targets(y, num_classes, smoothing, dtype):
    """(B,) int labels or (B, K) soft targets -> (B, K) float ``dtype``."""
    if y.ndim == 2:
        if y.shape[1] != num_classes:
            raise ValueError(f"soft targets have {y.shape[1]} classes, expected {num_classes}")
        return y.astype(dtype)
    return one_hot(y, num_classes, smoothing, dtype)


def _target_dtype(x):
    return x.dtype if x.dtype.kind == "f" else "float32"


def _sample_lam(rng, alpha: float) -> float:
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    return float(rng.beta(alpha, alpha))


def mixup(x, y, rng, alpha: float = 0.8, num_classes: int = 10, smoothing: float = 0.0):
    """Mixup: ``lam * x + (1 - lam) * x[::-1]`` with lam ~ Beta(alpha, alpha).

    x: float (B, C, H, W); y: int labels (B,) or soft targets (B, K).
    Returns (x_mixed (B, C, H, W), targets (B, K) float, rows summing to 1).
    """
    if x.dtype.kind != "f":
        raise TypeError(f"mixup needs float images (normalize first), got {x.dtype}")
    lam = _sample_lam(rng, alpha)
    t = _targets(y, num_classes, smoothing, x.dtype)
    x_mixed = x * x.dtype.type(lam) + x[::-1] * x.dtype.type(1.0 - lam)
    return x_mixed, t * lam + t[::-1] * (1.0 - lam)


def cutmix_box(lam: float, H: int, W: int, rng):
    """timm's ``rand_bbox``: a box of side ~sqrt(1 - lam) at a random centre, clipped.

    Returns (y0, y1, x0, x1) as Python ints.
    """
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(H * ratio), int(W * ratio)
    cy, cx = int(rng.integers(0, H)), int(rng.integers(0, W))
    y0, y1 = min(max(cy - cut_h // 2, 0), H), min(max(cy + cut_h // 2, 0), H)
    x0, x1 = min(max(cx - cut_w // 2, 0), W), min(max(cx + cut_w // 2, 0), W)
    return y0, y1, x0, x1


def cutmix(x, y, rng, alpha: float = 1.0, num_classes: int = 10, smoothing: float = 0.0):
    """CutMix: paste a box of ``x[::-1]`` into ``x``; lam = 1 - box area / image area.

    x: (B, C, H, W) any dtype; y: int labels (B,) or soft targets (B, K).
    Returns (x_mixed, targets (B, K) float, rows summing to 1).
    """
    H, W = x.shape[-2:]
    y0, y1, x0, x1 = cutmix_box(_sample_lam(rng, alpha), H, W, rng)
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)              # the area actually pasted
    out = x.copy()
    out[:, :, y0:y1, x0:x1] = x[::-1, :, y0:y1, x0:x1]
    t = _targets(y, num_classes, smoothing, _target_dtype(x))
    return out, t * lam + t[::-1] * (1.0 - lam)


def mix_batch(x, y, rng, num_classes: int = 10, mixup_alpha: float = 0.8,
              cutmix_alpha: float = 1.0, switch_prob: float = 0.5, smoothing: float = 0.0):
    """timm's default Mixup: per batch, CutMix with prob ``switch_prob``, else Mixup.

    An alpha of 0 turns that method off; both 0 -> only (smoothed) one-hot targets.
    Returns (x_mixed, targets (B, K)).
    """
    use_mixup, use_cutmix = mixup_alpha > 0, cutmix_alpha > 0
    if use_mixup and use_cutmix:
        use_cutmix = float(rng.random()) < switch_prob
        use_mixup = not use_cutmix
    if use_cutmix:
        return cutmix(x, y, rng, cutmix_alpha, num_classes, smoothing)
    if use_mixup:
        return mixup(x, y, rng, mixup_alpha, num_classes, smoothing)
    return x, _targets(y, num_classes, smoothing, _target_dtype(x))
