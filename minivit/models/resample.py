"""Resize the position embeddings to a new patch grid (ViT paper, section 3.2).

"Fine-tuning and higher resolution": at a higher resolution the patch size stays the same, so
there are more patches and the pre-trained position embeddings no longer fit.  The paper
"performs 2D interpolation of the pre-trained position embeddings, according to their location
in the original image".  The class-token embedding has no location and is kept as it is
(so are both prefix tokens of a distilled DeiT model: ``num_prefix_tokens=2``).

    pos_embed (B, prefix + gh*gw, D) -> prefix tokens (B, prefix, D)   (untouched)
                                     -> grid (B, gh, gw, D) -> interpolate -> (B, nh, nw, D)
                                     -> flatten back -> (B, prefix + nh*nw, D)

Interpolation is separable: along each axis it is a linear map from ``old`` to ``new`` samples,
an (new, old) matrix M, so the 2-D resize is  out = M_h @ grid @ M_w^T  (two matmuls).  The
matrices reproduce ``torch.nn.functional.interpolate(x, size=..., mode=..., align_corners=False)``
exactly (no antialiasing):

* source coordinate of output pixel i (half-pixel centres):  s = (old / new) (i + 0.5) - 0.5
* bilinear: s clamped at 0, i0 = floor(s), weights (1 - t, t) on (i0, min(i0 + 1, old - 1))
* bicubic : Keys' cubic convolution with A = -0.75 on i0 - 1 .. i0 + 2, t = s - i0, indices
  outside the grid clamped to the border (replicate padding), as PyTorch does.
"""

from __future__ import annotations

import math

from minivit.backend import array_module, host_xp

MODES = ("bilinear", "bicubic")
CUBIC_A = -0.75          # PyTorch's (and OpenCV's) choice of Keys' parameter


def _cubic_weights(t, A=CUBIC_A):
    """Keys' kernel at distances 1 + t, t, 1 - t, 2 - t: the weights of samples i0-1 .. i0+2."""
    def near(x):         # |x| <= 1
        return ((A + 2) * x - (A + 3)) * x * x + 1
    def far(x):          # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A
    return (far(t + 1), near(t), near(1 - t), far(2 - t))


def interpolation_matrix(old: int, new: int, mode: str = "bicubic"):
    """(new, old) float64 host matrix M with  resized = M @ samples  along one axis."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    np = host_xp()
    if old == new:                     # PyTorch copies in this case; so does the identity
        return np.eye(old)
    M = np.zeros((new, old))
    scale = old / new
    for i in range(new):
        s = scale * (i + 0.5) - 0.5
        if mode == "bilinear":
            s = max(s, 0.0)
        i0 = min(math.floor(s), old - 1)
        t = min(max(s - i0, 0.0), 1.0)
        if mode == "bilinear":
            M[i, i0] += 1.0 - t
            M[i, min(i0 + 1, old - 1)] += t
        else:
            for k, w in enumerate(_cubic_weights(t)):
                M[i, min(max(i0 - 1 + k, 0), old - 1)] += w
    return M


def _pair(g, what):
    h, w = (g, g) if isinstance(g, int) else tuple(g)
    if not all(isinstance(v, int) and v >= 1 for v in (h, w)):
        raise ValueError(f"{what} must be a positive int or a pair (h, w) of them, got {g!r}")
    return h, w


def resample_pos_embed(pos_embed, new_grid, num_prefix_tokens: int = 1, mode: str = "bicubic",
                       old_grid=None):
    """Resize position embeddings to a new patch grid.

    pos_embed : (B, num_prefix_tokens + gh*gw, D) array (timm's ``pos_embed``, B = 1), NumPy or CuPy
    new_grid  : int (square) or (nh, nw)
    old_grid  : int or (gh, gw); default: the square grid that the token count implies
    mode      : "bicubic" (timm's and the paper's usual choice) or "bilinear"
    returns     (B, num_prefix_tokens + nh*nw, D), same dtype and backend; the prefix (class
                token) rows are copied unchanged
    """
    xp = array_module(pos_embed)
    if pos_embed.ndim != 3:
        raise ValueError(f"pos_embed must have shape (B, tokens, D), got {tuple(pos_embed.shape)}")
    B, T, D = pos_embed.shape
    n = T - num_prefix_tokens
    if old_grid is None:
        g = math.isqrt(max(n, 0))
        if n < 1 or g * g != n:
            raise ValueError(f"pos_embed has {n} patch tokens (after {num_prefix_tokens} prefix "
                             "tokens), not a square grid; pass old_grid=(h, w)")
        old_grid = g
    gh, gw = _pair(old_grid, "old_grid")
    nh, nw = _pair(new_grid, "new_grid")
    if gh * gw != n:
        raise ValueError(f"old_grid {gh}x{gw} needs {gh * gw} patch tokens, pos_embed has {n}")
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    Mh = xp.asarray(interpolation_matrix(gh, nh, mode), dtype=pos_embed.dtype)   # (nh, gh)
    Mw = xp.asarray(interpolation_matrix(gw, nw, mode), dtype=pos_embed.dtype)   # (nw, gw)
    grid = Mh @ grid.reshape(B, gh, gw * D)                  # rows:    (B, nh, gw*D)
    grid = Mw @ grid.reshape(B, nh, gw, D)                   # columns: (B, nh, nw, D)
    return xp.concatenate([prefix, grid.reshape(B, nh * nw, D)], axis=1)
