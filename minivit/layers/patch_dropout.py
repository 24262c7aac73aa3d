"""PatchDropout: in training, each image keeps only a random subset of its patch tokens.

Liu et al. 2022, "PatchDropout: Economizing Vision Transformers Using Patch Dropout" (timm's
``VisionTransformer(patch_drop_rate=...)``, applied right after the position embeddings).
Every later layer then works on K + 1 tokens instead of N + 1, so a training step costs
about K / N of the full one (less than that in attention, which is quadratic in tokens);
the class token is always kept.  It is a regulariser as well as a saving, like MAE's masking
but with nothing to reconstruct.  Evaluation (train=False) sees every token.

    z         (B, 1+N, D)    class token, then N patch tokens, position embeddings added
    noise     (B, N)         U(0, 1) from the model's generator, one number per patch
    ids_keep  (B, K)         the K lowest-noise patches, K = N - round(N * p)   (masking.py)
    out       (B, 1+K, D)    [z[:, 0]; z[1 + ids_keep[b, k]] for k < K]

No rescaling: a token is either there or not (unlike dropout, nothing is divided by 1 - p).
With mean pooling the head averages the K kept tokens.

Backward: the class token's gradient passes straight through; the kept patch tokens' go back
to the places they were gathered from (gather_tokens_backward), and dropped tokens get zero.
"""

from minivit.backend import array_module
from minivit.layers.masking import (
    gather_tokens_backward,
    gather_tokens_forward,
    masking_noise,
    num_masked,
    random_masking,
)


def patch_dropout_forward(z, p, rng, train=True, num_prefix=1):
    """z (B, 1+N, D) -> (out (B, 1+K, D), cache).  cache is None when nothing is dropped
    (evaluation, p == 0, or N * p rounding to 0).  num_prefix: tokens before the patches that
    are always kept (2 for a distilled ViT: class and distillation tokens)."""
    if not train or p == 0.0:
        return z, None
    if rng is None:
        raise ValueError("patch dropout with p > 0 in training needs a random generator (rng)")
    xp = array_module(z)
    B, T, D = z.shape
    N = T - num_prefix
    m = num_masked(N, p)
    if m == 0:
        return z, None
    if m >= N:
        raise ValueError(f"patch_drop_rate {p} drops all {N} patch tokens; lower it so that "
                         "at least one is kept")
    ids_keep, _, _ = random_masking(masking_noise(rng, B, N), p)          # (B, K)
    kept, gather_cache = gather_tokens_forward(z[:, num_prefix:], ids_keep)   # (B, K, D)
    return xp.concatenate([z[:, :num_prefix], kept], axis=1), gather_cache


def patch_dropout_backward(dout, cache, num_prefix=1):
    """dout (B, 1+K, D) -> dz (B, 1+N, D): zeros where a token was dropped."""
    if cache is None:
        return dout
    xp = array_module(dout)
    dpatches = gather_tokens_backward(dout[:, num_prefix:], cache)        # (B, N, D)
    return xp.concatenate([dout[:, :num_prefix], dpatches], axis=1)
