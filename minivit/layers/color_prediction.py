"""The loss of masked patch prediction (ViT paper, section 4.6 and appendix B.1.2): predict
the 3-bit mean colour of every corrupted patch, a K-way classification, K = 2^(bits * C).

Colour classes: the mean of each channel over the patch, for pixels in [0, 1], quantised to
``bits`` bits, q_c = min(floor(mean_c 2^bits), 2^bits - 1), class = sum_c q_c 2^(bits (C-1-c))
(for RGB: 64 r + 8 g + b).  The classes are constants: no gradient flows into them.

    L = cross_entropy(logits (B*M, K), labels (B*M,))      the mean over the B*M patches
"""

from minivit.backend import array_module
from minivit.layers.loss import cross_entropy_device
from minivit.layers.patches import patchify


def mean_color_targets(pixels, patch_size, bits=3):
    """pixels (B, C, H, W) in [0, 1] -> colour class of each patch (B, N), int64."""
    xp = array_module(pixels)
    B, C = pixels.shape[:2]
    x = patchify(pixels, patch_size)                                  # (B, N, P*P*C)
    mean = x.reshape(B, x.shape[1], -1, C).mean(axis=2)              # (B, N, C)
    levels = 2 ** bits
    q = xp.clip(xp.floor(mean * levels), 0, levels - 1).astype(xp.int64)
    weights = levels ** xp.arange(C - 1, -1, -1, dtype=xp.int64)    # levels^(C-1-c)
    return (q * weights).sum(axis=-1)


def patch_ce_forward(logits, labels):
    """logits (B, M, K), labels (B, M) ints in [0, K) -> (loss (0-d array, on the device),
    cache = dloss/dlogits (B, M, K))."""
    B, M, K = logits.shape
    loss, dlogits = cross_entropy_device(logits.reshape(B * M, K), labels.reshape(-1))
    return loss, dlogits.reshape(logits.shape)


def patch_ce_backward(dloss, cache):
    """dloss (a float) -> dlogits (B, M, K)."""
    return cache * dloss
