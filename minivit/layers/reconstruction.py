"""The MAE reconstruction loss (He et al. 2021, section 3, "Reconstruction target").

Mean squared error per patch against the patch's pixels t = patchify(images), averaged over
the *removed* patches only,

    L = sum_n m_n mean_q (pred_nq - t_nq)^2 / sum_n m_n,          m_n = 1 if patch n is hidden

and with ``norm_pix`` the target is each patch normalised by its own statistics,
t = (t - mean(t)) / sqrt(var(t) + 1e-6), var the unbiased (N-1) variance as the reference's
``torch.var``.  The target depends on the images too, so its backward returns a gradient for
the images.
"""

from typing import NamedTuple

from minivit.layers.patches import patchify_backward, patchify_forward

NORM_PIX_EPS = 1e-6


class TargetCache(NamedTuple):
    patches: tuple        # patchify cache
    xc: object            # (B, N, Q) centred patches, or None without normalisation
    s: object             # (B, N, 1) sqrt(var + eps), or None


def patch_targets_forward(images, patch_size, norm_pix=False):
    """images (B, C, H, W) -> (target (B, N, Q), cache): patchify, optionally normalised per
    patch, t = (x - mean) / sqrt(var + 1e-6) with the unbiased variance over the Q values."""
    x, patch_cache = patchify_forward(images, patch_size)
    if not norm_pix:
        return x, TargetCache(patch_cache, None, None)
    Q = x.shape[-1]
    xc = x - x.mean(axis=-1, keepdims=True)
    s = ((xc * xc).sum(axis=-1, keepdims=True) / (Q - 1) + NORM_PIX_EPS) ** 0.5
    return xc / s, TargetCache(patch_cache, xc, s)


def patch_targets_backward(dtarget, cache):
    """dtarget (B, N, Q) -> dimages.  With normalisation (s = sqrt(var + eps), xc = x - mean):

        dx = (dt - mean(dt)) / s - xc * sum(dt * xc) / ((Q - 1) s^3)
    """
    if cache.xc is not None:
        xc, s = cache.xc, cache.s
        Q = xc.shape[-1]
        dtarget = ((dtarget - dtarget.mean(axis=-1, keepdims=True)) / s
                   - xc * (dtarget * xc).sum(axis=-1, keepdims=True) / ((Q - 1) * s ** 3))
    return patchify_backward(dtarget, cache.patches)


def masked_mse_forward(pred, target, mask):
    """pred, target (B, N, Q), mask (B, N) 1 = removed -> (loss, cache); the loss is a 0-d
    array on the device (not read back).

    loss = sum_bn m_bn mean_q (pred - target)^2 / sum_bn m_bn."""
    diff = pred - target
    per_patch = (diff * diff).mean(axis=-1)                          # (B, N)
    count = mask.sum()
    loss = (per_patch * mask).sum() / count
    return loss, (diff, mask, count)


def masked_mse_backward(dloss, cache):
    """dloss (a float) -> (dpred, dtarget), each (B, N, Q): 2 (pred - t) m dloss / (Q sum m);
    exactly 0 where m = 0."""
    diff, mask, count = cache
    dpred = diff * (2.0 * dloss / (diff.shape[-1] * count)) * mask[..., None]
    return dpred, -dpred
