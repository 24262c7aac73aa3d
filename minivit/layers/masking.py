"""Per-sample random masking of patch tokens, as in the MAE reference code (He et al. 2021).

MAE, section 3: "we randomly sample a subset of patches without replacement, following a
uniform distribution"; the encoder sees only the visible subset, the decoder puts mask tokens
where the others were.  The reference code does this with one sort per image:

    noise       ~ U(0, 1)                  (B, N)   one number per patch, from a passed generator
    ids_shuffle = argsort(noise, axis=1)   (B, N)   patches by rising noise
    ids_restore = argsort(ids_shuffle)     (B, N)   the inverse permutation: rank of each patch
    ids_keep    = ids_shuffle[:, :K]       (B, K)   the K lowest-noise patches stay visible
    mask[b, n]  = 1 if ids_restore[b, n] >= K else 0     (B, N), 1 = removed (hidden)

Rounding: exactly ``round(N * mask_ratio)`` patches of every image are hidden (Python's
``round``, half to even) and K = N - round(N * mask_ratio) stay visible.  (The reference code
keeps ``int(N * (1 - mask_ratio))``; for the ratios and grids used here, e.g. 64 patches at
0.75 -> 48 hidden, 16 kept, the two agree.)

Two index operations move tokens around, both batched (no loop over samples):

    gather:     out[b, k] = x[b, ids[b, k]]         (B, N, D), ids (B, K) -> (B, K, D)
    unshuffle:  gather with ids_restore             (B, N, D) in shuffled order -> original order

The indices of one row are distinct (a permutation, or the first K entries of one), so the
backward pass of a gather is a plain scatter, dx[b, ids[b, k]] = dout[b, k], with zeros
elsewhere; no two gradients land on the same place, so nothing needs to be accumulated.
Rows are addressed with flat indices b * N + ids[b, k] into x viewed as (B*N, D).

BERT-style corruption (Devlin et al. 2019; ViT paper section 4.6, masked patch prediction)
replaces chosen tokens by a learnable mask token, by another token, or leaves them:

    x'_i = mask_token      where r_i = 1            r, s (B, N) 0/1, never both 1
    x'_i = x_{src_i}       where s_i = 1            src (B, N) flat indices into (B*N) tokens
    x'_i = x_i             elsewhere

Backward: dx_i gets dx'_i where neither r nor s is set, plus dx'_j from every j with
s_j = 1 and src_j = i (a token may be copied to several places: an add, ``xp.add.at``);
dmask_token = sum_i r_i dx'_i.
"""

from typing import NamedTuple

from minivit.backend import array_module


def num_masked(num_patches: int, mask_ratio: float) -> int:
    """round(N * mask_ratio): how many of N patches each image hides."""
    return int(round(num_patches * float(mask_ratio)))


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """K = N - round(N * mask_ratio), checked to leave at least one patch visible and hide one."""
    m = num_masked(num_patches, mask_ratio)
    if not 0 < m < num_patches:
        raise ValueError(f"mask ratio {mask_ratio} hides {m} of {num_patches} patches; it must "
                         "hide at least one and keep at least one")
    return num_patches - m


def masking_noise(rng, batch: int, num_patches: int, dtype="float64"):
    """Uniform noise (B, N) in [0, 1) from ``rng`` (a NumPy/CuPy Generator): one draw per patch."""
    return rng.random((batch, num_patches), dtype=dtype)


def random_masking(noise, mask_ratio):
    """noise (B, N) -> (ids_keep (B, K), mask (B, N) 0/1 in noise's dtype, ids_restore (B, N)).

    mask is 1 where a patch is removed.  ids_keep lists each image's visible patches in the
    order of rising noise (the order the encoder sees them in), not in grid order.
    """
    xp = array_module(noise)
    B, N = noise.shape
    K = num_kept(N, mask_ratio)
    ids_shuffle = xp.argsort(noise, axis=1)            # ascending: small noise is kept
    ids_restore = xp.argsort(ids_shuffle, axis=1)      # inverse permutation
    ids_keep = ids_shuffle[:, :K]
    mask = (ids_restore >= K).astype(noise.dtype)      # = gather(ones with zeros first, restore)
    return ids_keep, mask, ids_restore


def _flat_rows(ids, n):
    """ids (B, K) into rows of (B, n, ...) -> flat indices (B*K,) into the (B*n, ...) view."""
    xp = array_module(ids)
    B = ids.shape[0]
    return (ids + xp.arange(B, dtype=ids.dtype)[:, None] * n).reshape(-1)


def gather_tokens_forward(x, ids):
    """x (B, N, D), ids (B, K) ints, distinct within a row -> (out (B, K, D), cache)."""
    B, N, D = x.shape
    if ids.ndim != 2 or ids.shape[0] != B:
        raise ValueError(f"ids must have shape (B, K) with B = {B}, got {tuple(ids.shape)}")
    rows = _flat_rows(ids, N)
    out = x.reshape(B * N, D)[rows].reshape(B, ids.shape[1], D)
    return out, (rows, x.shape)


def gather_tokens_backward(dout, cache):
    """dout (B, K, D) -> dx (B, N, D): each row goes back where it was taken from, zeros
    elsewhere."""
    rows, shape = cache
    xp = array_module(dout)
    B, N, D = shape
    dx = xp.zeros((B * N, D), dtype=dout.dtype)
    dx[rows] = dout.reshape(-1, D)                     # rows are distinct: a put, not an add
    return dx.reshape(shape)


def unshuffle_forward(x_shuffled, ids_restore):
    """x_shuffled (B, N, D) in noise order (visible first, then mask tokens) -> (B, N, D) in grid
    order: out[b, n] = x_shuffled[b, ids_restore[b, n]].  Returns (out, cache)."""
    if ids_restore.shape != x_shuffled.shape[:2]:
        raise ValueError(f"ids_restore has shape {tuple(ids_restore.shape)}, expected "
                         f"{tuple(x_shuffled.shape[:2])}")
    return gather_tokens_forward(x_shuffled, ids_restore)


unshuffle_backward = gather_tokens_backward


class CorruptCache(NamedTuple):
    keep: object              # (B, N) 1 where the token stays as it is
    replace_token: object     # (B, N) 1 where the mask token replaces it
    replace_random: object    # (B, N) 1 where another token replaces it
    src: object               # (B, N) flat indices of those other tokens


def corrupt_tokens_forward(x, replace_token, replace_random, src, mask_token):
    """x (B, N, D); replace_token, replace_random (B, N) 0/1 in x's dtype; src (B, N) ints in
    [0, B*N); mask_token (1, 1, D) -> (x' (B, N, D), cache)."""
    B, N, D = x.shape
    keep = 1.0 - replace_token - replace_random
    copied = x.reshape(B * N, D)[src.reshape(-1)].reshape(B, N, D)
    out = (x * keep[..., None] + replace_token[..., None] * mask_token
           + replace_random[..., None] * copied)
    return out, CorruptCache(keep, replace_token, replace_random, src)


def corrupt_tokens_backward(dout, cache):
    """dout (B, N, D) -> (dx (B, N, D), dmask_token (1, 1, D))."""
    keep, replace_token, replace_random, src = cache.keep, cache.replace_token, \
        cache.replace_random, cache.src
    xp = array_module(dout)
    B, N, D = dout.shape
    dmask_token = (dout * replace_token[..., None]).sum(axis=(0, 1)).reshape(1, 1, D)
    dx = (dout * keep[..., None]).reshape(B * N, D)
    # every token sends its gradient to src, zero unless it was replaced by src (a fixed
    # number of rows, so no boolean index and no device -> host read)
    sent = xp.where(replace_random.reshape(-1, 1) > 0, dout.reshape(B * N, D), 0)
    xp.add.at(dx, src.reshape(-1), sent)
    return dx.reshape(B, N, D), dmask_token


__all__ = ["num_masked", "num_kept", "masking_noise", "random_masking", "gather_tokens_forward",
           "gather_tokens_backward", "unshuffle_forward", "unshuffle_backward",
           "corrupt_tokens_forward", "corrupt_tokens_backward"]
